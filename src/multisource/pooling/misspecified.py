"""Exact risks of pooled and separate Gaussian MLEs when the "shared" parameter differs.

Our construction (the paper assumes exact sharing). K unit-covariance Gaussian sources in d
dimensions. As in the paper, the first d1 mean coordinates are source-specific (phi_k) and the
last d_s = d - d1 are declared shared; here the truth on that block is psi + Delta_k. The exact
computations use two groups: the sources in `group` sit a distance `delta` from the others on
the shared block (Delta_k = delta * v * (1[k in group] - p_group), v a unit vector), so the
pooled estimate's bias depends on one extra count. Simulations accept any Delta.

Given the counts, source k's error under the separate MLE is N(0, I/n_k) on all d coordinates.
Under the pooled (multi-source) MLE it is N(0, I/n_k) on the specific block and
N(b_k, I/n) on the shared one, with b_k = sum_j (n_j/n) Delta_j - Delta_k = delta v (M/n -
1[k in group]) and M the number of samples from the group. With TV = P(4 chi2_1 < |e|^2)
(chapter 4), E[TV_k | n_k = m, M] = P(4 chi2_1 - chi2_{d1}/m - chi2_{d_s}(n |b_k|^2)/n < 0),
a non-central quadratic form; `quadform` averages it over the exact law of (n_k, M).

The law of the counts. The simulators (`draw_counts`; the raw-sample checks in the tests do
the same) redraw a data set that leaves any source empty, so the counts are multinomial
given the event A = {n_j >= 1 for every j}. The exact risks condition on the same event
(`condition="all"`, the default) by inclusion-exclusion over the set S of sources that are
empty: with 1_A = 1[n_k >= 1] * sum_{S not containing k} (-1)^|S| 1[n_j = 0 for j in S],

    E[TV_k 1_A] = sum_S (-1)^|S| (1 - p_S)^n P'(n_k >= 1) E'[TV_k | n_k >= 1],

where P', E' are the multinomial law of the other sources' counts given n_S = 0
(probabilities p_j / (1 - p_S)), under which (n_k, M) is again binomial then binomial; and
P(A) = sum_{S} (-1)^|S| (1 - p_S)^n over all subsets. This is exact (terms whose weight
(1 - p_S)^n is below 1e-18 are dropped). `condition="each"` is chapter 4's convention: each
source's risk conditions only on its own n_k >= 1 (binomial given n_k >= 1); the two differ
by at most of the order of P(some source empty).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from multisource.common.validation import InputError, check_choice, check_float, check_int
from multisource.metrics import tv_from_distance, tv_gaussian_identity
from multisource.models.gaussian import fit_multi, fit_single
from multisource.pooling.quadform import chi2_factor, log_grid

ESTIMATORS = ("pooled", "separate")
CONDITIONS = ("all", "each")
SUBSET_TAIL = 1e-18  # inclusion-exclusion terms with (1 - p_S)^n below this are dropped
COUNT_TAIL = 1e-15  # binomial mass dropped in each tail of a count's law


@dataclass(frozen=True)
class MisspecifiedGaussian:
    """K Gaussian sources N(mu_k, I_d) whose declared-shared block differs by group.

    `group`: indices of the sources shifted by `delta` on the shared block; `p_y`: source
    probabilities (uniform when omitted); `condition`: the law of the counts the exact risks
    use, "all" (every source non-empty, as the simulators draw them) or "each" (each source's
    risk given its own count >= 1, chapter 4's convention).
    """

    K: int
    d: int
    d1: int
    delta: float
    group: tuple[int, ...] = (0,)
    p_y: tuple[float, ...] | None = None
    condition: str = "all"
    p: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_int("K", self.K, minimum=2)
        check_int("d", self.d, minimum=1)
        check_int("d1", self.d1, minimum=0, maximum=self.d - 1)
        check_float("delta", self.delta, minimum=0.0)
        check_choice("condition", self.condition, CONDITIONS)
        group = tuple(sorted({check_int("group index", g, minimum=0, maximum=self.K - 1)
                              for g in self.group}))
        if not 0 < len(group) < self.K:
            raise InputError(f"group must hold between 1 and K-1={self.K - 1} sources")
        object.__setattr__(self, "group", group)
        p = np.full(self.K, 1.0 / self.K) if self.p_y is None else np.asarray(self.p_y, float)
        if p.shape != (self.K,) or np.any(p <= 0) or not np.isclose(p.sum(), 1.0):
            raise InputError(f"p_y must be {self.K} positive probabilities summing to 1")
        object.__setattr__(self, "p", p / p.sum())

    @property
    def d_shared(self) -> int:
        """Coordinates declared shared, d - d1."""
        return self.d - self.d1

    @property
    def in_group(self) -> np.ndarray:
        """Boolean mask of the shifted sources."""
        mask = np.zeros(self.K, bool)
        mask[list(self.group)] = True
        return mask

    @property
    def p_group(self) -> float:
        """Probability that a sample comes from the shifted group."""
        return float(self.p[self.in_group].sum())

    @property
    def deltas(self) -> np.ndarray:
        """Delta_k on the shared block, shape (K, d_s): v spread evenly over the block and
        centred so that sum_k p_k Delta_k = 0."""
        v = np.full(self.d_shared, 1.0 / np.sqrt(self.d_shared))
        return self.delta * (self.in_group.astype(float) - self.p_group)[:, None] * v

    @property
    def means(self) -> np.ndarray:
        """True means (K, d): k + 1 on the specific block (as in the paper's code), Delta_k on
        the shared one (psi = 0)."""
        means = np.zeros((self.K, self.d))
        means[:, : self.d1] = np.arange(1, self.K + 1)[:, None]
        means[:, self.d1:] = self.deltas
        return means

    def population_bias(self) -> np.ndarray:
        """|b_k| at the expected counts: the distance from source k's shared block to the
        p_Y-weighted average that pooling converges to (n -> infinity)."""
        return np.linalg.norm(self.p @ self.deltas - self.deltas, axis=1)

    def misspecification_kl(self) -> float:
        """sum_k p_k KL(p*_k || pooled limit_k) = 1/2 sum_k p_k |b_k|^2 (nats)."""
        return 0.5 * float(self.p @ self.population_bias() ** 2)


# ---------------------------------------------------------------------------------------------
# Exact expected risk
# ---------------------------------------------------------------------------------------------

def _count_window(n: int, p: float, minimum: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Values and probabilities of Binomial(n, p) given >= minimum, tails below COUNT_TAIL cut."""
    law = stats.binom(n, p)
    lo = max(minimum, int(law.ppf(COUNT_TAIL)) - 1)
    hi = min(n, int(law.isf(COUNT_TAIL)) + 1)
    values = np.arange(lo, hi + 1)
    return values, law.pmf(values) / law.sf(minimum - 1)


def _risk_given_own_count(setting: MisspecifiedGaussian, n: int, p_k: float, p_g: float,
                          in_group: bool, estimator: str) -> float:
    """E[TV_k | n_k >= 1] when the counts are multinomial with P(source k) = p_k and P(group)
    = p_g (the group includes k when `in_group`)."""
    d, d1, ds = setting.d, setting.d1, setting.d_shared
    m, p_m = _count_window(n, min(p_k, 1.0), minimum=1)
    if estimator == "separate":
        grid = log_grid([np.array([4.0]), -1.0 / m], [1, d])
        phi = chi2_factor(grid.u, 4.0, 1) * (p_m[:, None] * chi2_factor(grid.u, -1.0 / m[:, None],
                                                                        d)).sum(axis=0)
        return float(grid.integrate_cdf(phi))

    rest = 1.0 - p_k   # M = [m if in group] + Binomial(n - m, q): the group's other samples
    q = 0.0 if rest <= 1e-15 else float(np.clip(((p_g - p_k) if in_group else p_g) / rest,
                                               0.0, 1.0))
    big_m, _ = _count_window(n, min(p_g, 1.0))
    offset = m[:, None] if in_group else 0
    p_big = stats.binom.pmf(big_m[None, :] - offset, (n - m)[:, None], q)
    bias2 = setting.delta**2 * (big_m / n - float(in_group)) ** 2
    noncentrality = n * bias2
    grid = log_grid([np.array([4.0]), -1.0 / m, np.array([-1.0 / n])], [1, d1, ds],
                    [np.zeros(1), np.zeros(1), noncentrality])
    specific = chi2_factor(grid.u, -1.0 / m[:, None], d1) if d1 else np.ones((m.size, 1))
    shared = chi2_factor(grid.u, -1.0 / n, ds, noncentrality[:, None])      # (R_M, T)
    inner = p_big @ shared                                                   # (R_m, T)
    phi = chi2_factor(grid.u, 4.0, 1) * (p_m[:, None] * specific * inner).sum(axis=0)
    return float(grid.integrate_cdf(phi))


def _empty_subsets(p: np.ndarray, n: int, exclude: int | None = None
                   ) -> list[tuple[tuple[int, ...], float]]:
    """(S, (-1)^|S| (1 - p_S)^n) for the subsets S of sources (not containing `exclude`)
    whose weight is not negligible; the empty set first."""
    others = [j for j in range(len(p)) if j != exclude]
    out: list[tuple[tuple[int, ...], float]] = []
    for size in range(len(others) + 1):
        kept = 0
        for subset in itertools.combinations(others, size):
            left = 1.0 - float(p[list(subset)].sum())
            weight = left**n if left > 0 else 0.0
            if weight > SUBSET_TAIL:
                out.append((subset, (-1.0) ** size * weight))
                kept += 1
        if size and not kept:   # a superset of a negligible subset is negligible too
            break
    return out


def prob_all_nonempty(p: np.ndarray, n: int) -> float:
    """P(every source gets at least one of the n samples), by inclusion-exclusion."""
    return float(sum(w for _, w in _empty_subsets(np.asarray(p, float), n)))


def source_risk(setting: MisspecifiedGaussian, n: int, k: int, estimator: str) -> float:
    """E[TV(p_hat(.|k), p*(.|k))] exactly for one source k, given every source non-empty
    (`setting.condition == "all"`) or given n_k >= 1 (`"each"`)."""
    check_choice("estimator", estimator, ESTIMATORS)
    n = check_int("n", n, minimum=1)
    k = check_int("k", k, minimum=0, maximum=setting.K - 1)
    p, in_group = setting.p, bool(setting.in_group[k])
    if setting.condition == "each":
        return _risk_given_own_count(setting, n, float(p[k]), setting.p_group, in_group,
                                     estimator)
    if n < setting.K:
        raise InputError(f"n={n} samples cannot leave all K={setting.K} sources non-empty")
    cache: dict[tuple[float, float], float] = {}
    total = 0.0
    for subset, weight in _empty_subsets(p, n, exclude=k):
        left = 1.0 - float(p[list(subset)].sum())
        p_k = float(p[k]) / left
        p_g = float(p[setting.in_group].sum() - p[[j for j in subset
                                                    if setting.in_group[j]]].sum()) / left
        key = (round(p_k, 14), round(p_g, 14))
        if key not in cache:
            cache[key] = _risk_given_own_count(setting, n, p_k, p_g, in_group, estimator)
        own_nonempty = 1.0 - (1.0 - p_k) ** n if p_k < 1.0 else 1.0
        total += weight * own_nonempty * cache[key]
    return total / prob_all_nonempty(p, n)


def source_risks(setting: MisspecifiedGaussian, n: int, estimator: str) -> np.ndarray:
    """Exact E[TV_k] of every source (sources with the same p_k and group share one value)."""
    cache: dict[tuple[float, bool], float] = {}
    out = np.empty(setting.K)
    for k in range(setting.K):
        key = (float(setting.p[k]), bool(setting.in_group[k]) and estimator == "pooled")
        if key not in cache:
            cache[key] = source_risk(setting, n, k, estimator)
        out[k] = cache[key]
    return out


def expected_risk(setting: MisspecifiedGaussian, n: int, estimator: str) -> float:
    """Exact average TV risk E[R] = sum_k p_k E[TV_k]."""
    return float(setting.p @ source_risks(setting, n, estimator))


def risk_difference(setting: MisspecifiedGaussian, n: int) -> float:
    """E[R_pooled] - E[R_separate]: negative where pooling wins."""
    return expected_risk(setting, n, "pooled") - expected_risk(setting, n, "separate")


def crossover(setting: MisspecifiedGaussian, n_min: int | None = None,
              n_max: int = 10**6) -> int | None:
    """Exact n*: the smallest n >= n_min at which separate training has the lower risk.

    Assumes one sign change (pooling wins below n*, loses above); the chapter checks this on a
    grid. Returns n_min if pooling already loses there, None if it still wins at n_max.
    """
    n_min = max(2 * setting.K, 2) if n_min is None else check_int("n_min", n_min, minimum=1)
    if setting.delta == 0:
        return None
    if risk_difference(setting, n_min) > 0:
        return n_min
    lo, hi = n_min, n_min
    while risk_difference(setting, hi) <= 0:
        lo, hi = hi, 2 * hi
        if hi > n_max:
            return None
    while hi - lo > 1:   # invariant: pooled wins at lo, loses at hi
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if risk_difference(setting, mid) <= 0 else (lo, mid)
    return hi


def crossover_mse(setting: MisspecifiedGaussian) -> float:
    """Back-of-envelope n* from squared errors (ours): pooling saves (K-1) d_s / n of summed
    variance and costs sum_k p_k |b_k|^2 of squared bias, so n* ~ (K-1) d_s / sum p_k |b_k|^2."""
    bias2 = float(setting.p @ setting.population_bias() ** 2)
    return np.inf if bias2 == 0 else (setting.K - 1) * setting.d_shared / bias2


# ---------------------------------------------------------------------------------------------
# Simulation: from sufficient statistics (any Delta) and from raw samples
# ---------------------------------------------------------------------------------------------

def draw_counts(n: int, p: np.ndarray, n_seeds: int, rng: np.random.Generator) -> np.ndarray:
    """Multinomial counts (n_seeds, K), redrawing data sets that leave a source empty."""
    counts = rng.multinomial(n, p, size=n_seeds)
    while np.any(empty := (counts == 0).any(axis=1)):
        counts[empty] = rng.multinomial(n, p, size=int(empty.sum()))
    return counts


def simulate_source_tv(deltas: np.ndarray, d1: int, p: np.ndarray, n: int, n_seeds: int,
                       rng: np.random.Generator, weights: tuple[float, ...] = (0.0, 1.0)
                       ) -> dict[float, np.ndarray]:
    """Per-source TV (n_seeds, K) of the partially pooled MLE for each pooling weight w.

    The shared block is (1 - w) * own mean + w * pooled mean; w = 0 is separate training, w = 1
    the pooled (multi-source) MLE. Every weight sees the same simulated data. Drawn from the
    sufficient statistics: counts, then each source's mean error N(0, I/n_k).
    """
    deltas = np.asarray(deltas, float)
    K, ds = deltas.shape
    n = check_int("n", n, minimum=K)
    counts = draw_counts(n, p, check_int("n_seeds", n_seeds, minimum=2), rng)
    scale = 1.0 / np.sqrt(counts)[:, :, None]
    specific2 = ((rng.standard_normal((n_seeds, K, d1)) * scale) ** 2).sum(axis=2)
    own = rng.standard_normal((n_seeds, K, ds)) * scale                     # own error
    pooled_mean = np.einsum("sk,skj->sj", counts / n, deltas[None] + own)
    pooled = pooled_mean[:, None, :] - deltas[None]                         # pooled error
    out = {}
    for w in weights:
        shared = (1.0 - w) * own + w * pooled
        out[float(w)] = tv_from_distance(np.sqrt(specific2 + (shared**2).sum(axis=2)))
    return out


def simulate_risks(setting: MisspecifiedGaussian, n: int, n_seeds: int, seed: int
                   ) -> pd.DataFrame:
    """Average-TV risk of both estimators on `n_seeds` simulated data sets (one row each)."""
    rng = np.random.default_rng(seed)
    tv = simulate_source_tv(setting.deltas, setting.d1, setting.p, n, n_seeds, rng)
    return pd.DataFrame({"seed_index": np.arange(n_seeds),
                         "risk_separate": tv[0.0] @ setting.p, "risk_pooled": tv[1.0] @ setting.p})


def sample(setting: MisspecifiedGaussian, n: int, rng: np.random.Generator
           ) -> tuple[np.ndarray, np.ndarray]:
    """n raw samples (x, y): y ~ p_Y, x | y ~ N(mu_y, I)."""
    y = rng.choice(setting.K, size=check_int("n", n, minimum=1), p=setting.p)
    return setting.means[y] + rng.standard_normal((n, setting.d)), y


def fit_partial(x: np.ndarray, y: np.ndarray, K: int, d1: int, weight: float) -> np.ndarray:
    """Means of the partially pooled fit: (1 - w) separate + w pooled (same on the d1 block)."""
    return (1.0 - weight) * fit_single(x, y, K) + weight * fit_multi(x, y, K, d1)


def average_tv(setting: MisspecifiedGaussian, fitted_means: np.ndarray) -> float:
    """Exact average TV of fitted means (closed form, no test points)."""
    return float(setting.p @ tv_gaussian_identity(fitted_means, setting.means))
