"""How fast is the exact expected risk? The current algorithm against the original one.

Both run in this process on the same settings (K = 5, d = 10, d1 = 5, uniform p_Y, both
estimators). The original (`exact_expected_risk_reference`: one Imhof integral per binomial
count) is timed up to n = 5000; the current one (`exact_expected_risk`: incomplete-beta closed
form for single-source, one Imhof integral with the binomial sum inside for multi-source) up
to n = 10^6. Reports per-call seconds (best of `--repeats`), the speed-up ratio at each n where
both run, and the largest absolute difference between the two.

    python benchmarks/exact_risk.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

from multisource.common.paths import REPO_ROOT
from multisource.common.provenance import atomic_write_text, environment_record
from multisource.experiments.gaussian import (
    ESTIMATORS,
    exact_expected_risk,
    exact_expected_risk_reference,
)

SETTING = {"K": 5, "d": 10, "d1": 5}
BOTH_N = (100, 500, 1000, 2000, 5000)
FAST_ONLY_N = (10_000, 100_000, 1_000_000)


def best_time(function: Callable[[], float], repeats: int) -> tuple[float, float]:
    """(best seconds over `repeats` calls, the value returned)."""
    best, value = float("inf"), float("nan")
    for _ in range(repeats):
        start = time.perf_counter()
        value = function()
        best = min(best, time.perf_counter() - start)
    return best, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="calls per timing (best kept)")
    args = parser.parse_args()
    exact_expected_risk(**SETTING, n=100, estimator="multi")  # warm-up (imports, caches)
    rows = []
    for n in (*BOTH_N, *FAST_ONLY_N):
        for estimator in ESTIMATORS:
            fast_s, fast_value = best_time(
                lambda n=n, e=estimator: exact_expected_risk(**SETTING, n=n, estimator=e),
                args.repeats)
            row = {"n": n, "estimator": estimator, "fast_seconds": fast_s, "risk": fast_value}
            if n in BOTH_N:
                ref_s, ref_value = best_time(
                    lambda n=n, e=estimator: exact_expected_risk_reference(**SETTING, n=n,
                                                                           estimator=e),
                    1)
                row.update({"reference_seconds": ref_s, "speedup_ratio": ref_s / fast_s,
                            "abs_difference": abs(fast_value - ref_value)})
            rows.append(row)
            extra = (f"  reference {row['reference_seconds']:.3f} s  x{row['speedup_ratio']:.0f}"
                     f"  |diff| {row['abs_difference']:.1e}" if "reference_seconds" in row else "")
            print(f"n={n:>8} {estimator:6s} fast {fast_s:.4f} s{extra}")
    both = [r for r in rows if "abs_difference" in r]
    at_5000 = {r["estimator"]: r["speedup_ratio"] for r in rows if r["n"] == 5000}
    at_million = {r["estimator"]: r["fast_seconds"] for r in rows if r["n"] == 1_000_000}
    report = {
        "setting": SETTING,
        "rows": rows,
        "max_abs_difference": max(r["abs_difference"] for r in both),
        "speedup_ratio_at_n5000": at_5000,
        "fast_seconds_at_n1e6": at_million,
        "repeats": args.repeats,
        "environment": environment_record(),
    }
    out = REPO_ROOT / "benchmarks" / "results" / "exact_risk.json"
    atomic_write_text(out, json.dumps(report, indent=2) + "\n")
    print(f"largest |fast - reference| where both run: {report['max_abs_difference']:.1e}")
    print(f"speed-up at n=5000: {at_5000}; seconds at n=10^6: {at_million}")
    print(f"wrote {out.relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    main()
