"""Power of the paired comparisons: the minimum detectable effect of a one-sample t-test.

A verdict "not significant" means little without the effect the design could have detected.
For S paired replicates (seeds) whose differences have standard deviation `sd`, the two-sided
level-`alpha` t-test rejects with probability `power` when the true mean difference is at least

    MDE = delta  solving  P(|T'| > t_{1 - alpha/2, S-1}) = power,
    T' ~ noncentral t with S - 1 degrees of freedom and noncentrality delta sqrt(S) / sd.

This is exact under normal differences (no large-sample approximation); `seeds_for_mde` inverts
it for the number of seeds a target MDE needs.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import brentq
from scipy.stats import nct
from scipy.stats import t as student_t

from multisource.common.validation import InputError, check_float, check_int


def detection_power(effect: float, sd: float, seeds: int, alpha: float = 0.05) -> float:
    """Probability that a two-sided paired t-test at level `alpha` over `seeds` replicates
    rejects when the true mean difference is `effect` and the differences have SD `sd`."""
    seeds = check_int("seeds", seeds, minimum=2)
    alpha = check_float("alpha", alpha, minimum=1e-6, maximum=0.5)
    sd = check_float("sd", sd, minimum=0.0)
    if sd == 0.0:
        return 1.0 if effect != 0 else alpha
    df = seeds - 1
    critical = float(student_t.ppf(1 - alpha / 2, df))
    shift = abs(effect) * math.sqrt(seeds) / sd
    upper = float(nct.sf(critical, df, shift))
    # The far tail; scipy returns NaN for it at large noncentrality, where it is ~0.
    lower = float(np.nan_to_num(nct.cdf(-critical, df, shift), nan=0.0))
    return min(1.0, upper + lower)


def minimum_detectable_effect(sd: float, seeds: int, alpha: float = 0.05,
                              power: float = 0.8) -> float:
    """Smallest |mean difference| detected with probability `power` (two-sided, level alpha)."""
    power = check_float("power", power, minimum=0.05, maximum=0.999)
    sd = check_float("sd", sd, minimum=0.0)
    seeds = check_int("seeds", seeds, minimum=2)
    if power <= alpha:
        raise InputError(f"power must exceed alpha ({alpha}), got {power}")
    if sd == 0.0 or not math.isfinite(sd):
        return 0.0 if sd == 0.0 else math.nan
    upper = sd
    while detection_power(upper, sd, seeds, alpha) < power:
        upper *= 2.0
    return float(brentq(lambda e: detection_power(e, sd, seeds, alpha) - power, 0.0, upper,
                        xtol=1e-10 * sd))


def mde_of(differences: np.ndarray, alpha: float = 0.05, power: float = 0.8) -> float:
    """The minimum detectable effect of a design, with the SD estimated from its own paired
    differences (finite values only; NaN when fewer than two)."""
    values = np.asarray(differences, float)
    values = values[np.isfinite(values)]
    if values.size < 2:
        return math.nan
    return minimum_detectable_effect(float(values.std(ddof=1)), int(values.size), alpha, power)


def seeds_for_mde(sd: float, target: float, alpha: float = 0.05, power: float = 0.8,
                  most: int = 10_000) -> int:
    """Fewest seeds (>= 2) whose minimum detectable effect is at most `target`."""
    target = check_float("target", target, minimum=1e-300)
    low, high = 2, 2
    while minimum_detectable_effect(sd, high, alpha, power) > target:
        if high >= most:
            raise InputError(f"target needs more than {most} seeds (sd={sd}, target={target})")
        low, high = high, min(2 * high, most)
    while low < high:
        middle = (low + high) // 2
        if minimum_detectable_effect(sd, middle, alpha, power) <= target:
            high = middle
        else:
            low = middle + 1
    return high
