"""How fast is the Figure-1 replication? Vectorised procedure vs a per-test-point baseline.

Both run in this process on the same settings and seeds. The baseline is
`multisource.models.gaussian_naive` (one MultivariateNormal object per test point, as the
published script does). Reports the full replication's compute time (3 sweeps x 5 values x
5 seeds, 500 test points each, imports excluded) and the speed-up ratio on a sample of runs.

    python benchmarks/gaussian_replication.py [--baseline-runs 3] [--update-results]

Writes _build/benchmarks/gaussian_replication.json (gitignored); `--update-results` writes the
committed benchmarks/results/gaussian_replication.json instead.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from multisource.common.paths import BUILD_DIR, REPO_ROOT
from multisource.common.provenance import atomic_write_text, environment_record
from multisource.experiments.gaussian import (
    PUBLISHED_SEEDS,
    ReplicationSetting,
    published_settings,
    replicate_seed,
)
from multisource.models.gaussian_naive import naive_replicate_seed

COMMITTED = REPO_ROOT / "benchmarks" / "results" / "gaussian_replication.json"


def time_full_replication(repeats: int = 5) -> float:
    """Best-of-`repeats` seconds for all 15 rows x 5 seeds with the vectorised procedure."""
    runs = [(s, seed) for _, s in published_settings() for seed in PUBLISHED_SEEDS]
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for setting, seed in runs:
            replicate_seed(setting, seed)
        best = min(best, time.perf_counter() - start)
    return best


def time_per_run(baseline_runs: int) -> tuple[float, float]:
    """Mean seconds per run (fast, naive) over the first `baseline_runs` published runs."""
    sample = [(s, seed) for _, s in published_settings() for seed in PUBLISHED_SEEDS]
    sample = sample[:baseline_runs]
    start = time.perf_counter()
    for setting, seed in sample:
        replicate_seed(setting, seed)
    fast = (time.perf_counter() - start) / len(sample)
    start = time.perf_counter()
    for setting, seed in sample:
        naive_replicate_seed(setting.K, setting.D, setting.sim, setting.n, seed, setting.test_size)
    naive = (time.perf_counter() - start) / len(sample)
    return fast, naive


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline-runs", type=int, default=3,
                        help="published runs timed with the slow baseline (each takes seconds)")
    parser.add_argument("--update-results", action="store_true",
                        help=f"write the committed {COMMITTED.relative_to(REPO_ROOT)} instead "
                             f"of _build/benchmarks/")
    args = parser.parse_args()
    ReplicationSetting(5, 10, 0.5, 500)  # warm-up: first torch calls pay one-off costs
    replicate_seed(ReplicationSetting(5, 10, 0.5, 500), 0)
    full = time_full_replication()
    fast, naive = time_per_run(args.baseline_runs)
    report = {
        "full_replication_seconds": round(full, 4),
        "runs_in_full_replication": 15 * len(PUBLISHED_SEEDS),
        "per_run_seconds_vectorised": fast,
        "per_run_seconds_naive": naive,
        "speedup_ratio": round(naive / fast, 1),
        "baseline_runs_timed": args.baseline_runs,
        "torch_threads": torch.get_num_threads(),
        "environment": environment_record(),
    }
    out = COMMITTED if args.update_results else BUILD_DIR / "benchmarks" / COMMITTED.name
    atomic_write_text(out, json.dumps(report, indent=2) + "\n")
    print(f"full Figure-1 replication (75 runs): {full:.3f} s of compute")
    print(f"per run: vectorised {fast * 1e3:.2f} ms, naive {naive:.2f} s "
          f"-> speed-up x{naive / fast:.0f}")
    print(f"wrote {out.relative_to(REPO_ROOT)}")
    print(f"wrote {out.relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    main()
