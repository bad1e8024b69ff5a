"""Where a simulated risk difference changes sign, with intervals that can exclude the truth.

Input: for each sample size n on a grid, the per-seed paired differences
R_pooled - R_separate (each seed redraws the data). The crossover is where the mean
difference crosses zero, interpolated linearly in log n between the two grid points around
the sign change; its interval comes from a bootstrap over seeds (seeds resampled
independently at every n, since different n use different data sets).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from multisource.common.validation import InputError


@dataclass(frozen=True)
class MeanInterval:
    """A mean with a two-sided Student-t interval."""

    mean: float
    low: float
    high: float
    n: int

    def contains(self, value: float) -> bool:
        """Whether `value` lies in the interval."""
        return self.low <= value <= self.high


LARGE_DF = 200   # from here on the t quantile's expansion in 1/df is within 4e-9 (p < 0.99999)


def t_quantile(df: int, p: float) -> float:
    """Quantile p of Student's t with df degrees of freedom.

    For df >= LARGE_DF the Cornish-Fisher expansion of Abramowitz & Stegun 26.7.5 around the
    normal quantile (four terms; the error is of order df^-5), so that large data sets need
    no scipy; below, scipy's stdtrit."""
    if df >= LARGE_DF:
        from statistics import NormalDist

        x = NormalDist().inv_cdf(p)
        g1 = (x**3 + x) / 4
        g2 = (5 * x**5 + 16 * x**3 + 3 * x) / 96
        g3 = (3 * x**7 + 19 * x**5 + 17 * x**3 - 15 * x) / 384
        g4 = (79 * x**9 + 776 * x**7 + 1482 * x**5 - 1920 * x**3 - 945 * x) / 92160
        return x + g1 / df + g2 / df**2 + g3 / df**3 + g4 / df**4
    from scipy import special

    return float(special.stdtrit(df, p))


def t_interval(values: np.ndarray, level: float = 0.95) -> MeanInterval:
    """Student-t interval for the mean of i.i.d. values."""
    values = np.asarray(values, float)
    if values.size < 2:
        raise InputError("a t interval needs at least 2 values")
    mean = float(values.mean())
    half = float(t_quantile(values.size - 1, 0.5 + level / 2)
                 * values.std(ddof=1) / np.sqrt(values.size))
    return MeanInterval(mean, mean - half, mean + half, int(values.size))


def zero_crossing(ns: Sequence[float], means: Sequence[float]) -> float:
    """n where the mean difference first turns positive, linear in log n; nan if it never does,
    ns[0] if it is positive from the start."""
    ns = np.asarray(ns, float)
    means = np.asarray(means, float)
    positive = np.flatnonzero(means > 0)
    if positive.size == 0:
        return float("nan")
    j = int(positive[0])
    if j == 0:
        return float(ns[0])
    x0, x1 = np.log(ns[j - 1]), np.log(ns[j])
    y0, y1 = means[j - 1], means[j]
    return float(np.exp(x0 + (x1 - x0) * (-y0) / (y1 - y0)))


@dataclass(frozen=True)
class CrossoverEstimate:
    """A simulated crossover with its bootstrap percentile interval."""

    estimate: float
    low: float
    high: float

    def contains(self, value: float) -> bool:
        """Whether `value` lies in the interval."""
        return self.low <= value <= self.high


def crossover_from_differences(ns: Sequence[int], differences: Sequence[np.ndarray],
                               rng: np.random.Generator, n_boot: int = 1000,
                               level: float = 0.95) -> CrossoverEstimate:
    """The crossover of simulated paired differences and a bootstrap interval over seeds."""
    if len(ns) != len(differences) or len(ns) < 2:
        raise InputError("need the same number (>= 2) of sample sizes and difference arrays")
    if any(b <= a for a, b in itertools.pairwise(ns)):
        raise InputError("sample sizes must increase")
    diffs = [np.asarray(d, float) for d in differences]
    estimate = zero_crossing(ns, [d.mean() for d in diffs])
    boot = np.empty(n_boot)
    for b in range(n_boot):
        boot[b] = zero_crossing(ns, [d[rng.integers(0, d.size, d.size)].mean() for d in diffs])
    finite = boot[np.isfinite(boot)]
    # a resample without a sign change puts the upper end past the grid
    high = float("inf") if finite.size < n_boot else float(np.quantile(finite, 0.5 + level / 2))
    low = float(np.quantile(finite, 0.5 - level / 2)) if finite.size else float("nan")
    return CrossoverEstimate(estimate, low, high)
