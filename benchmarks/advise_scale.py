"""`multisource advise` at scale: end to end against just reading the same file.

In one process, on a generated CSV of `--rows` rows (3 features, `--sources` sources, shifted
means): the time pandas (pyarrow engine) takes to read the file, and the time `advise` takes
end to end in a fresh subprocess (`python -m multisource advise FILE`: start-up, reading,
cross-validation, report), the median of `--repeats` runs each, their ratio (target <= 2),
the advise process's peak resident memory, and whether it imported torch.

    python benchmarks/advise_scale.py                   # 10^6 rows
    python benchmarks/advise_scale.py --rows 100000     # quicker

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
    """Seconds for pandas with the pyarrow engine to read the file."""
    start = time.perf_counter()
    pd.read_csv(path, engine="pyarrow")
    return time.perf_counter() - start


def time_advise(path: Path) -> tuple[float, float, bool]:
    """Seconds, peak RSS (MB) and torch-imported flag of `advise` in a fresh process."""
    probe = ("import resource, sys, time; t = time.perf_counter(); "
             "from multisource.cli import main; code = main(['advise', sys.argv[1]]); "
             "print('@@', time.perf_counter() - t, "
             "resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "
             "'torch' in sys.modules, file=sys.stderr); sys.exit(code)")
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", probe, str(path)], capture_output=True,
                          text=True, env={**os.environ}, check=True)
    wall = time.perf_counter() - start
    line = next(x for x in done.stderr.splitlines() if x.startswith("@@"))
    _, _, peak, torch = line.split()
    return wall, float(peak), torch == "True"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10**6)
    parser.add_argument("--sources", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--update-results", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "samples.csv"
        write_csv(path, args.rows, args.sources, args.seed)
        reads, runs = [], []
        for _ in range(args.repeats):
            reads.append(time_pandas(path))
            runs.append(time_advise(path))
        size_mb = path.stat().st_size / 2**20
    read = float(np.median(reads))
    wall = float(np.median([r[0] for r in runs]))
    result = {"rows": args.rows, "features": 3, "sources": args.sources,
              "file_mb": round(size_mb, 1), "repeats": args.repeats,
              "pandas_pyarrow_read_s": round(read, 3), "advise_end_to_end_s": round(wall, 3),
              "ratio": round(wall / read, 2), "target_ratio": 2.0,
              "advise_peak_rss_mb": round(max(r[1] for r in runs), 1),
              "advise_imported_torch": any(r[2] for r in runs)}
    print(json.dumps(result, indent=1))
    out = (ROOT / "benchmarks" / "results" if args.update_results
           else ROOT / "_build" / "benchmarks")
    out.mkdir(parents=True, exist_ok=True)
    (out / "advise_scale.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
