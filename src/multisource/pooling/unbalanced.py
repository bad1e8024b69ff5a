"""Who pays for pooling: per-source, average and worst-source exact risks (our analysis).

With p_Y far from uniform, the pooled estimate of the shared block is the count-weighted
average of the sources, so it sits near the common sources. Its bias lands on whichever
sources differ from that average; the average risk weights them by p_Y, the worst-source risk
does not. `misspecified.source_risks` gives the exact per-source risks this module summarises.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import numpy as np

from multisource.common.validation import check_choice, check_int
from multisource.pooling import misspecified as ms

CRITERIA = ("average", "worst")


@lru_cache(maxsize=4096)
def risk_summary(setting: ms.MisspecifiedGaussian, n: int) -> dict[str, float]:
    """Exact average and worst-source risk of both estimators at sample size n (cached: the
    two crossovers and a figure ask for the same points)."""
    out: dict[str, float] = {}
    for estimator in ms.ESTIMATORS:
        risks = ms.source_risks(setting, n, estimator)
        out[f"average_{estimator}"] = float(setting.p @ risks)
        out[f"worst_{estimator}"] = float(risks.max())
        out[f"worst_source_{estimator}"] = int(np.argmax(risks))
    return out


def first_sign_change(difference: Callable[[int], float], n_min: int, n_max: int) -> int | None:
    """Smallest n in [n_min, n_max] with difference(n) > 0, assuming one sign change
    (doubling, then bisection on integers); None if there is none up to n_max."""
    n_min = check_int("n_min", n_min, minimum=1)
    if difference(n_min) > 0:
        return n_min
    lo, hi = n_min, 2 * n_min
    while difference(hi) <= 0:
        lo, hi = hi, 2 * hi
        if hi > n_max:
            return None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if difference(mid) <= 0 else (lo, mid)
    return hi


def crossover_by(setting: ms.MisspecifiedGaussian, criterion: str, n_max: int = 10**6
                 ) -> int | None:
    """Exact n* at which separate training wins on the average or on the worst-source risk."""
    check_choice("criterion", criterion, CRITERIA)

    def difference(n: int) -> float:
        summary = risk_summary(setting, n)
        return summary[f"{criterion}_pooled"] - summary[f"{criterion}_separate"]

    return first_sign_change(difference, 2 * setting.K, n_max)
