"""One calibrated inference layer for every chapter: paired per-seed summaries, t intervals,
multiplicity within a declared family, and the power beside every non-detection.

Design. Every seed of an experiment redraws data (and, where it applies, the truth) and fits
every arm on the same draw, so seeds are the independent replicates and every comparison is
paired within a seed. Each test below first reduces a seed to ONE number, then applies a
one-sample Student-t test and interval to those numbers (df = seeds - 1):

* a mean difference: the seed's difference a - b (`mean_difference`);
* a trend over a covariate (log K, measured similarity, log n): the seed's own least-squares
  slope over the settings (`trend`), the "summary measures" analysis of repeated
  measurements. We choose it over a regression with seed fixed effects on purpose: in a
  balanced design both give the same point estimate, but the fixed-effects standard error
  treats the seed x setting residuals as independent with one variance (df = S(J-1) - 1).
  Here they are not: the single-source model of the anchor is the same model at every K of a
  seed, and a seed whose data favour sharing does so at every setting, so slopes vary between
  seeds. The per-seed-slope interval carries that between-seed variation and is exact for
  normal slopes; `coverage_table` measures the fixed-effects interval beside it;
* a contrast of settings (`contrast`): the seed's weighted sum of its values, weights summing
  to zero;
* a ratio of mean risks against a predicted value r0 (`ratio_test`): the seed's residual
  multi - r0 single, whose mean is zero exactly when the ratio of means is r0; the interval
  is Fieller's, the set of r0 the same test does not reject (so test and interval agree).

Multiplicity: Holm's step-down adjustment within the family a claim registry declares
(`holm`), Benjamini-Hochberg beside it (`benjamini_hochberg`). The minimum detectable effect of
the one-sample t-test (80% power, two-sided 5%, exact noncentral t) is computed for every test
and printed beside every non-detection: "not detected" is never "no effect". A percentile
bootstrap is refused below `MIN_BOOTSTRAP_SEEDS` seeds: at 4 seeds it under-covers badly
(`coverage_table` shows by how much).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import pandas as pd
from scipy.optimize import brentq
from scipy.stats import binom, nct
from scipy.stats import t as student_t

LEVEL = 0.95
ALPHA = 0.05
POWER = 0.80
MIN_BOOTSTRAP_SEEDS = 10
OUTCOMES = ("supported", "contradicted", "not detected")
Direction = Literal["negative", "positive", "zero"]
"""The sign of the estimand a claim predicts; "zero": the claim is an equality (a predicted
value), which the data can contradict but a t-test cannot confirm."""


@dataclass(frozen=True)
class Estimate:
    """A one-sample t reading of per-seed summaries: mean, interval, two-sided p against
    `null`, standard error, degrees of freedom, seeds and the minimum detectable effect."""

    estimate: float
    low: float
    high: float
    p: float
    se: float
    df: int
    seeds: int
    mde: float
    level: float = LEVEL
    null: float = 0.0


def _clean(values: Sequence[float] | np.ndarray | pd.Series) -> np.ndarray:
    """Finite values as a float array."""
    array = np.asarray(values, float).ravel()
    return array[np.isfinite(array)]


def t_estimate(values: Sequence[float] | np.ndarray | pd.Series, level: float = LEVEL,
               null: float = 0.0) -> Estimate:
    """Student-t interval for the mean of per-seed values, the two-sided p-value of mean =
    `null`, and the MDE (80% power, two-sided 5%). Needs at least two finite values."""
    values = _clean(values)
    if values.size < 2:
        raise ValueError(f"a t interval needs at least 2 seeds, got {values.size}")
    if not 0.5 <= level < 1.0:
        raise ValueError(f"level must be in [0.5, 1), got {level}")
    n, mean, sd = values.size, float(values.mean()), float(values.std(ddof=1))
    se = sd / math.sqrt(n)
    quantile = float(student_t.ppf(0.5 + level / 2, n - 1))
    if se > 0:
        p = float(2 * student_t.sf(abs(mean - null) / se, n - 1))
    else:
        p = 1.0 if mean == null else 0.0
    return Estimate(mean, mean - quantile * se, mean + quantile * se, p, se, n - 1, n,
                    minimum_detectable_effect(sd, n), level, null)


def paired_differences(a: pd.Series, b: pd.Series) -> pd.Series:
    """a - b per seed, aligned on the index (the seed); seeds missing from either side, or
    with a non-finite value, are dropped."""
    both = pd.concat({"a": a, "b": b}, axis=1, join="inner").astype(float)
    diff = (both["a"] - both["b"]).replace([np.inf, -np.inf], np.nan).dropna()
    if diff.empty:
        raise ValueError("no seed is present in both series")
    return diff


def mean_difference(a: pd.Series, b: pd.Series, level: float = LEVEL) -> Estimate:
    """Mean of the paired per-seed differences a - b with its t interval."""
    return t_estimate(paired_differences(a, b), level)


def wide(frame: pd.DataFrame, value: str, setting: str, seed: str = "seed") -> pd.DataFrame:
    """Seeds x settings table of `value`; a seed missing any setting is dropped (complete
    pairs only), a duplicated (seed, setting) is an error."""
    if frame.duplicated([seed, setting]).any():
        raise ValueError(f"({seed}, {setting}) must identify one row")
    table = frame.pivot(index=seed, columns=setting, values=value).astype(float)
    return table.dropna(how="any")


def seed_slopes(table: pd.DataFrame, covariate: Mapping[object, float] | pd.DataFrame
                ) -> pd.Series:
    """Each seed's least-squares slope of its values (a row of `table`, one column per
    setting) on the covariate: a value per column, or a table of per-seed values aligned
    with `table` (a covariate measured per seed)."""
    y = table.to_numpy(float)
    if isinstance(covariate, pd.DataFrame):
        x = covariate.loc[table.index, table.columns].to_numpy(float)
    else:
        x = np.tile(np.array([covariate[c] for c in table.columns], float), (len(table), 1))
    if y.shape[1] < 2:
        raise ValueError("a slope needs at least two settings")
    xc = x - x.mean(axis=1, keepdims=True)
    sxx = (xc ** 2).sum(axis=1)
    if np.any(sxx <= 0):
        raise ValueError("every seed needs at least two distinct covariate values")
    return pd.Series((xc * (y - y.mean(axis=1, keepdims=True))).sum(axis=1) / sxx,
                     index=table.index, name="slope")


def trend(table: pd.DataFrame, covariate: Mapping[object, float] | pd.DataFrame,
          level: float = LEVEL) -> Estimate:
    """Slope of the values over the covariate: per-seed slopes, then a t interval over seeds
    (paired within seed; see the module docstring for why not seed fixed effects)."""
    return t_estimate(seed_slopes(table, covariate), level)


def contrast(table: pd.DataFrame, weights: Mapping[object, float], level: float = LEVEL
             ) -> Estimate:
    """A contrast of settings paired within seed: per seed sum_s w_s value_s (the weights
    must sum to zero), then a t interval over seeds."""
    total = float(sum(weights.values()))
    if abs(total) > 1e-12:
        raise ValueError(f"contrast weights must sum to zero, got {total}")
    per_seed = sum(w * table[s] for s, w in weights.items())
    return t_estimate(per_seed, level)


def ratio_test(multi: pd.Series, single: pd.Series, null: float, level: float = LEVEL
               ) -> Estimate:
    """Ratio of mean risks R = mean(multi) / mean(single) tested against `null`: a t-test of
    the per-seed residuals multi - null x single, with Fieller's interval (the values of
    `null` this test keeps; infinite ends when the single-source mean is not itself
    significant). `estimate`, `low`, `high` are on the ratio scale; `mde` is that of the
    residual in risk units, divided by the mean single-source risk (a ratio-scale MDE)."""
    both = pd.concat({"m": multi, "s": single}, axis=1, join="inner").dropna().astype(float)
    m, s = both["m"].to_numpy(), both["s"].to_numpy()
    n = m.size
    if n < 2:
        raise ValueError(f"a ratio test needs at least 2 seeds, got {n}")
    ratio = float(m.mean() / s.mean())
    test = t_estimate(m - null * s, level)
    q = float(student_t.ppf(0.5 + level / 2, n - 1)) ** 2 / n
    vm, vs, cms = m.var(ddof=1), s.var(ddof=1), np.cov(m, s, ddof=1)[0, 1]
    # |mean(m) - r mean(s)|^2 <= q var(m - r s): a quadratic a r^2 + b r + c <= 0
    a = s.mean() ** 2 - q * vs
    b = -2 * (m.mean() * s.mean() - q * cms)
    c = m.mean() ** 2 - q * vm
    disc = b * b - 4 * a * c
    if a > 0 and disc >= 0:
        root = math.sqrt(disc)
        low, high = (-b - root) / (2 * a), (-b + root) / (2 * a)
    else:
        low, high = -math.inf, math.inf
    return Estimate(ratio, float(low), float(high), test.p, test.se / abs(s.mean()), n - 1, n,
                    test.mde / abs(s.mean()), level, null)


def sign_test(values: Sequence[float] | np.ndarray | pd.Series) -> tuple[int, int, float]:
    """Exact two-sided sign test of median zero across settings: (positives, non-zero
    values, p). Zeros are dropped."""
    values = _clean(values)
    values = values[values != 0]
    n, k = values.size, int((values > 0).sum())
    if n == 0:
        return 0, 0, 1.0
    p = min(1.0, 2 * min(binom.cdf(k, n, 0.5), binom.sf(k - 1, n, 0.5)))
    return k, n, float(p)


# --- multiplicity -----------------------------------------------------------------------------

def holm(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error), in the input order."""
    p = np.asarray(pvalues, float)
    order = np.argsort(p, kind="stable")
    m = p.size
    stepped = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out = np.empty(m)
    out[order] = np.minimum(stepped, 1.0)
    return out


def benjamini_hochberg(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (false discovery rate), in the input order."""
    p = np.asarray(pvalues, float)
    m = p.size
    order = np.argsort(p, kind="stable")
    scaled = p[order] * m / np.arange(1, m + 1)
    stepped = np.minimum.accumulate(scaled[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(stepped, 1.0)
    return out


# --- power ------------------------------------------------------------------------------------

def detection_power(effect: float, sd: float, seeds: int, alpha: float = ALPHA) -> float:
    """Power of the two-sided one-sample t-test at level `alpha` (exact, noncentral t)."""
    if sd <= 0:
        return 1.0 if effect != 0 else alpha
    df = seeds - 1
    critical = float(student_t.ppf(1 - alpha / 2, df))
    shift = abs(effect) * math.sqrt(seeds) / sd
    far = float(np.nan_to_num(nct.cdf(-critical, df, shift), nan=0.0))
    return min(1.0, float(nct.sf(critical, df, shift)) + far)


def minimum_detectable_effect(sd: float, seeds: int, alpha: float = ALPHA,
                              power: float = POWER) -> float:
    """Smallest |mean| the two-sided one-sample t-test detects with probability `power`."""
    if seeds < 2 or not math.isfinite(sd):
        return math.nan
    if sd == 0:
        return 0.0
    upper = sd
    while detection_power(upper, sd, seeds, alpha) < power:
        upper *= 2.0
    return float(brentq(lambda e: detection_power(e, sd, seeds, alpha) - power, 0.0, upper,
                        xtol=1e-10 * sd))


# --- bootstrap --------------------------------------------------------------------------------

def _percentile_limits(values: np.ndarray, level: float, draws: int,
                       rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Percentile-bootstrap limits of the mean along the last axis (no seed-count check:
    `coverage_table` uses it to show the under-coverage the public function refuses)."""
    n = values.shape[-1]
    index = rng.integers(0, n, size=(*values.shape[:-1], draws, n))
    means = np.take_along_axis(values[..., None, :], index, axis=-1).mean(axis=-1)
    tail = (1 - level) / 2
    return np.quantile(means, tail, axis=-1), np.quantile(means, 1 - tail, axis=-1)


def percentile_bootstrap(values: Sequence[float] | np.ndarray, level: float = LEVEL,
                         draws: int = 4000, seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap interval for the mean of per-seed values; refused below
    `MIN_BOOTSTRAP_SEEDS` seeds (use `t_estimate`)."""
    values = _clean(values)
    if values.size < MIN_BOOTSTRAP_SEEDS:
        raise ValueError(f"a percentile bootstrap needs at least {MIN_BOOTSTRAP_SEEDS} seeds, "
                         f"got {values.size}: it under-covers with few seeds (use a t "
                         f"interval)")
    low, high = _percentile_limits(values, level, draws, np.random.default_rng(seed))
    return float(low), float(high)


# --- verdicts ---------------------------------------------------------------------------------

def _decimals(low: float, high: float) -> int:
    """Decimals that resolve an interval: at least two, and the half-width's first digit."""
    half = (high - low) / 2
    if not math.isfinite(half) or half <= 0:
        return 3
    return max(2, -math.floor(math.log10(half)))


@dataclass(frozen=True)
class Verdict:
    """A claim's reading in one chapter, metric and scope, after adjustment in its family."""

    claim: str
    estimate: float
    low: float
    high: float
    p: float
    p_adjusted: float
    outcome: str
    mde: float
    seeds: int
    direction: Direction = "negative"
    p_bh: float = math.nan
    family: str = ""
    label: dict[str, str] = field(default_factory=dict, compare=False)
    alpha: float = ALPHA
    null: float = 0.0

    def interval(self, decimals: int | None = None) -> str:
        """'-0.31 [-0.37, -0.25]'."""
        d = _decimals(self.low, self.high) if decimals is None else decimals
        return f"{self.estimate:+.{d}f} [{self.low:+.{d}f}, {self.high:+.{d}f}]"

    def phrase(self, decimals: int | None = None, with_interval: bool = False) -> str:
        """'supported: -0.31 [-0.37, -0.25]', 'contradicted: ...' or 'not detected (MDE
        0.12)'; a non-detection that only Holm's adjustment turns away says so."""
        if self.outcome != "not detected":
            return f"{self.outcome}: {self.interval(decimals)}"
        d = _decimals(self.low, self.high) if decimals is None else decimals
        what = "deviation not detected" if self.direction == "zero" else "not detected"
        if self.p <= self.alpha < self.p_adjusted:
            text = (f"{what} after Holm (p {self.p:.3f}, adjusted {self.p_adjusted:.3f}; "
                    f"MDE {self.mde:.{d}f})")
        else:
            text = f"{what} (MDE {self.mde:.{d}f})"
        return f"{text}: {self.interval(decimals)}" if with_interval else text


def outcome_of(estimate: float, p_adjusted: float, direction: Direction,
               alpha: float = ALPHA) -> str:
    """'supported' when the adjusted test rejects in the claimed direction, 'contradicted'
    when it rejects against it (for an equality claim: whenever it rejects), else 'not
    detected'."""
    if not p_adjusted <= alpha:
        return "not detected"
    if direction == "zero":
        return "contradicted"
    agrees = estimate < 0 if direction == "negative" else estimate > 0
    return "supported" if agrees else "contradicted"


def verdict(claim: str, estimate: Estimate, direction: Direction, p_adjusted: float | None = None,
            family: str = "", label: Mapping[str, str] | None = None,
            alpha: float = ALPHA) -> Verdict:
    """One test's verdict; `p_adjusted` defaults to the raw p (a family of one)."""
    adjusted = estimate.p if p_adjusted is None else float(p_adjusted)
    return Verdict(claim, estimate.estimate, estimate.low, estimate.high, estimate.p, adjusted,
                   outcome_of(estimate.estimate - estimate.null, adjusted, direction, alpha),
                   estimate.mde, estimate.seeds, direction, math.nan, family,
                   dict(label or {}), alpha, estimate.null)


def adjust_family(verdicts: Sequence[Verdict], alpha: float = ALPHA) -> list[Verdict]:
    """Holm within the family (the outcome follows the Holm-adjusted p), BH beside it."""
    p = np.array([v.p for v in verdicts], float)
    held, bh = holm(p), benjamini_hochberg(p)
    out = []
    for v, h, b in zip(verdicts, held, bh, strict=True):
        out.append(replace(v, p_adjusted=float(h), p_bh=float(b), alpha=alpha,
                           outcome=outcome_of(v.estimate - v.null, float(h), v.direction,
                                              alpha)))
    return out


def verdict_frame(verdicts: Sequence[Verdict]) -> pd.DataFrame:
    """Tidy table of verdicts: labels first, then the numbers and the phrase."""
    rows = []
    for v in verdicts:
        rows.append({**v.label, "claim": v.claim, "family": v.family, "seeds": v.seeds,
                     "estimate": v.estimate, "low": v.low, "high": v.high, "p": v.p,
                     "null": v.null, "p_holm": v.p_adjusted, "p_bh": v.p_bh, "mde": v.mde,
                     "direction": v.direction, "outcome": v.outcome, "phrase": v.phrase()})
    return pd.DataFrame(rows)
