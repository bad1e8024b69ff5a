"""Does a complexity term describe the risk? The check of chapter 2.

At a fixed n, Theorem 3.2 with the poster's Gaussian rates says the risk of each estimator is of
the order sqrt(C / n) with C = (K-1) d1 + d (multi-source) or K d (single-source). If C is the
right complexity, risk / sqrt(C/n) is one constant across settings (K, d, d1, estimator); a wrong
C spreads it. The check asserts a bounded spread.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from multisource.common.validation import InputError
from multisource.theory.bounds import free_parameters_multi

#: Candidate complexity terms C(K, d, d1, estimator) for the Gaussian classes. Only the first is
#: the poster's; the others are deliberately wrong alternatives the check must reject.
COMPLEXITY_TERMS: dict[str, Callable[[int, int, int, str], int]] = {
    "poster: (K-1)d1+d multi, Kd single":
        lambda K, d, d1, est: free_parameters_multi(K, d, d1) if est == "multi" else K * d,
    "no sharing: Kd for both": lambda K, d, d1, est: K * d,
    "dimension only: d for both": lambda K, d, d1, est: d,
    "sharing for both: (K-1)d1+d": lambda K, d, d1, est: free_parameters_multi(K, d, d1),
}
#: Allowed spread of risk / sqrt(C/n) across settings. For a Gaussian error e with
#: E||e||^2 = C/n the first-order risk is E||e|| / sqrt(2 pi), and E||e|| / sqrt(C/n) runs from
#: sqrt(2/pi) = 0.80 (C = 1) to 1 (C large): a spread of 1.25 from the constant alone. We allow
#: 1.5, i.e. 20% more for finite-n effects, fixed before comparing the candidates.
MAX_COMPLEXITY_SPREAD = 1.5


def risk_complexity_spread(risks: np.ndarray, complexities: np.ndarray, n: int) -> float:
    """max / min over settings of risk / sqrt(complexity / n) (1 = exactly proportional)."""
    risks = np.asarray(risks, float)
    complexities = np.asarray(complexities, float)
    if risks.shape != complexities.shape or risks.ndim != 1 or risks.size < 2:
        raise InputError("risks and complexities must be 1-D arrays of equal length >= 2")
    if np.any(risks <= 0) or np.any(complexities <= 0) or n <= 0:
        raise InputError("risks, complexities and n must be positive")
    scaled = risks / np.sqrt(complexities / n)
    return float(scaled.max() / scaled.min())


def check_complexity_term(risks: np.ndarray, complexities: np.ndarray, n: int,
                          max_spread: float = MAX_COMPLEXITY_SPREAD) -> float:
    """Assert that the risks track sqrt(complexity / n) across settings at fixed n: one constant
    c with c / sqrt(max_spread) <= risk / sqrt(C/n) <= c sqrt(max_spread). Returns the spread;
    raises AssertionError (naming the spread) when the term does not describe the risks."""
    spread = risk_complexity_spread(risks, complexities, n)
    assert spread <= max_spread, (
        f"risk / sqrt(C/n) varies by a factor {spread:.3f} > {max_spread} across settings: "
        "this complexity term does not describe the risk")
    return spread
