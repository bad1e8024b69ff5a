"""`multisource advise` at scale: end to end against just reading the same file.

On a generated CSV of `--rows` rows (3 features, `--sources` sources, shifted means), the
median of `--repeats` runs each of:

- the time pandas (pyarrow engine) takes to read the file in this process (pandas and
  pyarrow imported and warmed up on a small file first);
- `advise` end to end in this process (`multisource.cli.main(["advise", FILE])`: reading,
  cross-validation, report; its modules imported and warmed up on a small file first);
- the same read in a fresh subprocess (`python -c "import pandas; pd.read_csv(...)"`: start-up
  and imports counted);
- `advise` end to end in a fresh subprocess (`python -m multisource advise FILE`: start-up,
  imports, reading, cross-validation, report);

and the ratios of like to like: advise over the read, both in this process
(`ratio_in_process`) and both in fresh processes (`ratio_subprocess`); the target is met when
both are at most 2. `ratio_mixed` (a fresh advise process over the warm in-process read) is
reported too: it charges start-up and imports (about 0.1-0.2 s here) to advise alone. Also the
advise process's peak resident memory, and whether it imported torch or pandas. The four are
interleaved within each repeat, so they share the machine's load.

With `--parquet-rows N` it also writes an N-row Parquet file (same law, written in row groups
of 10^6 rows so the writer never holds the file) and times `advise --out-of-core` on it in a
fresh subprocess (three streaming passes, `multisource.pooling.outofcore`): wall time, peak
resident memory (VmHWM of that process), the file size and the answer. The disk must hold
the file (about 26 bytes per row). Without it, `--update-results` keeps the stored
out-of-core entry, marked as from an earlier run.

    python benchmarks/advise_scale.py                   # 10^6 rows
    python benchmarks/advise_scale.py --rows 100000     # quicker
    python benchmarks/advise_scale.py --parquet-rows 100000000 --folder /tmp

Writes _build/benchmarks/advise_scale.json; `--update-results` writes
benchmarks/results/advise_scale.json instead.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
# A subprocess's own peak resident memory: VmHWM belongs to its address space. (ru_maxrss
# does not: Linux carries the parent's peak across fork and exec, so a child of this process,
# which holds pandas and the data, would report at least the parent's size.)
PEAK_MB = ("int(next(line for line in open('/proc/self/status') "
           "if line.startswith('VmHWM')).split()[1]) / 1024")


def write_csv(path: Path, rows: int, sources: int, seed: int) -> None:
    """rows x 3 Gaussian features, source s shifted by 0.05 s on the first feature."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, sources, rows)
    x = rng.standard_normal((rows, 3))
    x[:, 0] += 0.05 * y
    frame = pd.DataFrame(x, columns=["x1", "x2", "x3"])
    frame.insert(0, "source", pd.Series(y).map(lambda k: f"s{k}"))
    frame.to_csv(path, index=False, float_format="%.6g")


def time_pandas(path: Path) -> float:
    """Seconds for pandas with the pyarrow engine to read the file (in this process)."""
    start = time.perf_counter()
    pd.read_csv(path, engine="pyarrow")
    return time.perf_counter() - start


def time_advise_in_process(path: Path) -> float:
    """Seconds for `multisource advise FILE` in this process (its report discarded)."""
    import contextlib
    import io

    from multisource.cli import main

    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(["advise", str(path)])
    elapsed = time.perf_counter() - start
    if code != 0:
        raise RuntimeError(f"advise exited {code}")
    return elapsed


def time_pandas_subprocess(path: Path) -> float:
    """Seconds for a fresh process to import pandas and read the file (pyarrow engine)."""
    probe = "import sys; import pandas as pd; pd.read_csv(sys.argv[1], engine='pyarrow')"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", probe, str(path)], check=True)
    return time.perf_counter() - start


def time_advise(path: Path) -> tuple[float, float, bool, bool]:
    """Seconds, peak RSS (MB) and torch- and pandas-imported flags of `advise` in a fresh
    process."""
    probe = ("import sys, time; t = time.perf_counter(); "
             "from multisource.cli import main; code = main(['advise', sys.argv[1]]); "
             "print('@@', time.perf_counter() - t, "
             f"{PEAK_MB}, "
             "'torch' in sys.modules, 'pandas' in sys.modules, file=sys.stderr); "
             "sys.exit(code)")
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", probe, str(path)], capture_output=True,
                          text=True, env={**os.environ}, check=True)
    wall = time.perf_counter() - start
    line = next(x for x in done.stderr.splitlines() if x.startswith("@@"))
    _, _, peak, torch, pandas = line.split()
    return wall, float(peak), torch == "True", pandas == "True"


def write_parquet(path: Path, rows: int, sources: int, seed: int, group: int = 10**6) -> None:
    """The same law as `write_csv`, written row group by row group."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    names = np.array([f"s{k}" for k in range(sources)])
    writer = None
    for start in range(0, rows, group):
        m = min(group, rows - start)
        y = rng.integers(0, sources, m)
        x = rng.standard_normal((m, 3))
        x[:, 0] += 0.05 * y
        table = pa.table({"source": pa.DictionaryArray.from_arrays(
            pa.array(y.astype(np.int32)), pa.array(names)),
            "x1": x[:, 0], "x2": x[:, 1], "x3": x[:, 2]})
        if writer is None:
            writer = pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    assert writer is not None
    writer.close()


def time_out_of_core(path: Path) -> tuple[float, float, dict]:
    """Seconds, peak RSS (MB) and the JSON answer of `advise --out-of-core` in a fresh
    process."""
    probe = ("import io, contextlib, sys\n"
             "from multisource.cli import main\n"
             "out = io.StringIO()\n"
             "with contextlib.redirect_stdout(out):\n"
             "    code = main(['advise', sys.argv[1], '--out-of-core', '--json'])\n"
             "print(out.getvalue())\n"
             f"print('@@', {PEAK_MB}, "
             "file=sys.stderr)\n"
             "sys.exit(code)")
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", probe, str(path)], capture_output=True,
                          text=True, env={**os.environ}, check=True)
    wall = time.perf_counter() - start
    peak = float(next(x for x in done.stderr.splitlines() if x.startswith("@@")).split()[1])
    return wall, peak, json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10**6)
    parser.add_argument("--sources", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--parquet-rows", type=int, default=0,
                        help="also time the out-of-core path on a Parquet file of this many "
                             "rows (0: skip)")
    parser.add_argument("--folder", default=None, help="where the Parquet file is written")
    parser.add_argument("--update-results", action="store_true")
    args = parser.parse_args()
    for name in ("rows", "repeats", "sources"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be a positive integer, got {getattr(args, name)}")
    if args.parquet_rows < 0:
        parser.error(f"--parquet-rows must be >= 0, got {args.parquet_rows}")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "samples.csv"
        small = Path(folder) / "small.csv"
        write_csv(path, args.rows, args.sources, args.seed)
        write_csv(small, 25_000, args.sources, args.seed)   # past the sums path's threshold
        time_pandas(small)
        time_advise_in_process(small)                      # imports and first-call set-up
        reads, advised, fresh_reads, runs = [], [], [], []
        for _ in range(args.repeats):
            reads.append(time_pandas(path))
            advised.append(time_advise_in_process(path))
            fresh_reads.append(time_pandas_subprocess(path))
            runs.append(time_advise(path))
        size_mb = path.stat().st_size / 2**20
    read = float(np.median(reads))
    in_process = float(np.median(advised))
    fresh_read = float(np.median(fresh_reads))
    wall = float(np.median([r[0] for r in runs]))
    like_for_like = max(in_process / read, wall / fresh_read)
    result = {"rows": args.rows, "features": 3, "sources": args.sources,
              "file_mb": round(size_mb, 1), "repeats": args.repeats,
              "pandas_pyarrow_read_s": round(read, 3),
              "advise_in_process_s": round(in_process, 3),
              "ratio_in_process": round(in_process / read, 2),
              "pandas_pyarrow_read_subprocess_s": round(fresh_read, 3),
              "advise_end_to_end_s": round(wall, 3),
              "ratio_subprocess": round(wall / fresh_read, 2),
              "target_ratio": 2.0, "target_met": like_for_like <= 2.0,
              "target_rule": "ratio_in_process and ratio_subprocess both <= target_ratio",
              "ratio_mixed": round(wall / read, 2),
              "advise_peak_rss_mb": round(max(r[1] for r in runs), 1),
              "advise_imported_torch": any(r[2] for r in runs),
              "advise_imported_pandas": any(r[3] for r in runs)}
    out = (ROOT / "benchmarks" / "results" if args.update_results
           else ROOT / "_build" / "benchmarks")
    if args.parquet_rows:
        with tempfile.TemporaryDirectory(dir=args.folder) as folder:
            path = Path(folder) / "samples.parquet"
            start = time.perf_counter()
            write_parquet(path, args.parquet_rows, args.sources, args.seed)
            written = time.perf_counter() - start
            wall, peak, answer = time_out_of_core(path)
            result["out_of_core"] = {
                "rows": args.parquet_rows, "parquet_mb": round(path.stat().st_size / 2**20, 1),
                "write_s": round(written, 1), "advise_s": round(wall, 2),
                "rows_per_s": round(args.parquet_rows / wall), "peak_rss_mb": round(peak, 1),
                "recommendation": answer["recommendation"], "clear": answer["clear"]}
    elif (out / "advise_scale.json").is_file():
        earlier = json.loads((out / "advise_scale.json").read_text()).get("out_of_core")
        if earlier:
            result["out_of_core"] = {**earlier, "from_an_earlier_run": True}
    print(json.dumps(result, indent=1))
    out.mkdir(parents=True, exist_ok=True)
    (out / "advise_scale.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
