"""The Gaussian instantiation (Figure 1 of the paper): replication, exact risk, fast simulation.

Three ways to get the average TV risk of the multi- and single-source MLEs:

1. `replicate`: the published procedure, random stream for random stream (torch RNG), with
   the official Monte-Carlo TV estimate 1/2 mean |p_hat/p* - 1| over 500 test points.
2. `exact_expected_risk`: E[R] in closed form up to one numerical integral. The error of
   the fitted mean e is Gaussian given the counts, TV(N(e, I), N(0, I)) = P(|Z| < |e|/2) for
   an independent Z ~ N(0, 1), so E[TV | n_k = m] = P(4 chi2_1 - chi2_{d1}/m - chi2_{ds}/n < 0)
   (multi) or P(4 chi2_1 - chi2_d/m < 0) (single): the CDF of a quadratic form in Gaussians,
   which Imhof's (1961) formula gives as a one-dimensional integral (single-source: an
   incomplete beta function). Averaged over the binomial law of n_k (conditioned on n_k >= 1,
   the only case where the MLE exists) inside that one integral, so it stays fast at n = 10^6.
3. `simulate_risks`: thousands of seeds per second, drawing the sufficient statistics (counts,
   then the mean errors) and applying the closed-form TV; no test points, no Monte-Carlo noise.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy import integrate, special

from multisource.common.validation import InputError, check_choice, check_float, check_int
from multisource.experiments import Experiment, register
from multisource.metrics import tv_from_distance
from multisource.sources import check_source_distribution, nonempty_count_law, shared_dimension
from multisource.theory.bounds import bound_ratio, gaussian_rate_multi, gaussian_rate_single

PUBLISHED_SEEDS: tuple[int, ...] = (3, 33, 520, 2025, 25731)
PUBLISHED_DEFAULTS: dict[str, float] = {"K": 5, "D": 10, "sim": 0.5, "n": 500}
PUBLISHED_SWEEPS: dict[str, tuple[float, ...]] = {
    "K": (1, 3, 5, 10, 15),
    "n": (100, 300, 500, 1000, 5000),
    "sim": (0.0, 0.3, 0.5, 0.7, 1.0),
}
ESTIMATORS = ("multi", "single")
MAX_SEED = 2**63 - 1


# --------------------------------------------------------------------------------------------
# 1. The published procedure
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ReplicationSetting:
    """One setting of the published simulation: K sources in D dimensions, int(sim*D) shared
    coordinates (the last ones), n training points, `test_size` test points."""

    K: int
    D: int
    sim: float
    n: int
    test_size: int = 500

    def __post_init__(self) -> None:
        object.__setattr__(self, "K", check_int("K", self.K, minimum=1))
        object.__setattr__(self, "D", check_int("D", self.D, minimum=1))
        object.__setattr__(self, "sim", check_float("sim", self.sim, minimum=0.0, maximum=1.0))
        object.__setattr__(self, "n", check_int("n", self.n, minimum=1))
        object.__setattr__(self, "test_size",
                           check_int("test_size", self.test_size, minimum=1))

    @property
    def d_shared(self) -> int:
        """Shared coordinates, int(sim * D) as in the official code."""
        return shared_dimension(self.sim, self.D)

    @property
    def d1(self) -> int:
        """Source-specific coordinates."""
        return self.D - self.d_shared


@dataclass(frozen=True)
class SeedResult:
    """The two Monte-Carlo TV estimates of one seed."""

    seed: int
    tv_single_mc: float
    tv_multi_mc: float


@dataclass(frozen=True)
class ReplicationResult:
    """Means over seeds (the published row value) and the per-seed values."""

    setting: ReplicationSetting
    per_seed: tuple[SeedResult, ...]
    tv_single_mc: float = field(init=False)
    tv_multi_mc: float = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tv_single_mc",
                           float(np.mean([r.tv_single_mc for r in self.per_seed])))
        object.__setattr__(self, "tv_multi_mc",
                           float(np.mean([r.tv_multi_mc for r in self.per_seed])))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the setting, the two means and `per_seed` (NaN becomes None)."""
        return {
            **asdict(self.setting),
            "d1": self.setting.d1,
            "tv_single_mc": _json_float(self.tv_single_mc),
            "tv_multi_mc": _json_float(self.tv_multi_mc),
            "per_seed": [{"seed": r.seed, "tv_single_mc": _json_float(r.tv_single_mc),
                          "tv_multi_mc": _json_float(r.tv_multi_mc)} for r in self.per_seed],
        }


def _json_float(value: float) -> float | None:
    return None if math.isnan(value) else value


def check_seeds(seeds: Sequence[int]) -> tuple[int, ...]:
    """Seeds must be a non-empty list of integers in [0, 2**63 - 1]."""
    if len(seeds) == 0:
        raise InputError("seeds must list at least one integer seed")
    return tuple(check_int("seed", s, minimum=0, maximum=MAX_SEED) for s in seeds)


def _draw_published(generator: torch.Generator, p_y: torch.Tensor, means: torch.Tensor,
                    count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels by torch.multinomial, then each source's rows by torch.randn, in source order."""
    labels = torch.multinomial(p_y, count, replacement=True, generator=generator)
    K, D = means.shape
    xs, ys = [], []
    for k in range(K):
        n_k = int((labels == k).sum())
        xs.append(torch.randn(n_k, D, generator=generator) + means[k])
        ys.append(torch.full((n_k,), k, dtype=torch.long))
    return torch.cat(xs), torch.cat(ys)


@dataclass(frozen=True)
class PublishedRun:
    """One seed of the published procedure: the fits, the truth and the test sample."""

    setting: ReplicationSetting
    seed: int
    true_means: torch.Tensor
    single_means: torch.Tensor
    multi_means: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    def mc_tv(self, estimator: str) -> float:
        """The official estimate 1/2 mean |p_hat(x|y) / p*(x|y) - 1| over the test points."""
        estimate = self.multi_means if estimator == "multi" else self.single_means
        x = self.x_test.double()
        log_true = -0.5 * ((x - self.true_means[self.y_test].double()) ** 2).sum(dim=1)
        log_hat = -0.5 * ((x - estimate[self.y_test].double()) ** 2).sum(dim=1)
        return float(0.5 * (torch.exp(log_hat - log_true) - 1.0).abs().mean())

    def exact_tv(self, estimator: str) -> float:
        """The exact average TV of the same fit under uniform p_Y (closed form, no test points)."""
        estimate = self.multi_means if estimator == "multi" else self.single_means
        distance = torch.linalg.vector_norm(estimate.double() - self.true_means.double(), dim=1)
        return float(np.mean(tv_from_distance(distance.numpy())))


def run_published(setting: ReplicationSetting, seed: int) -> PublishedRun:
    """One run of the published procedure (float32 data, as in the official torch code).

    The official script seeds Python, NumPy and torch; only torch's stream is drawn from, and a
    private torch.Generator seeded the same way reproduces it without touching global state.
    A source that receives no training point has an undefined MLE (NaN), as in the original.
    """
    generator = torch.Generator().manual_seed(int(seed))
    K, D, d1 = setting.K, setting.D, setting.d1
    means = torch.zeros(K, D)
    means[:, :d1] = torch.arange(1, K + 1, dtype=torch.float32)[:, None]
    p_y = torch.ones(K) / K

    x, y = _draw_published(generator, p_y, means, setting.n)
    single = torch.stack([x[y == k].mean(dim=0) for k in range(K)])
    multi = single.clone()
    if setting.d_shared > 0:
        multi[:, d1:] = x[:, d1:].mean(dim=0)
    x_test, y_test = _draw_published(generator, p_y, means, setting.test_size)
    return PublishedRun(setting, int(seed), means, single, multi, x_test, y_test)


def replicate_seed(setting: ReplicationSetting, seed: int) -> SeedResult:
    """The two official Monte-Carlo TV estimates of one seed of the published procedure."""
    run = run_published(setting, seed)
    return SeedResult(int(seed), run.mc_tv("single"), run.mc_tv("multi"))


def replicate(setting: ReplicationSetting, seeds: Sequence[int] = PUBLISHED_SEEDS
              ) -> ReplicationResult:
    """The published procedure over `seeds`; the row value is the mean over seeds."""
    return ReplicationResult(setting, tuple(replicate_seed(setting, s) for s in check_seeds(seeds)))


def published_settings() -> list[tuple[str, ReplicationSetting]]:
    """The 15 (sweep, setting) rows of Figure 1, in the order of the reference CSV."""
    rows = []
    for sweep, values in PUBLISHED_SWEEPS.items():
        for value in values:
            params = {**PUBLISHED_DEFAULTS, sweep: value}
            rows.append((sweep, ReplicationSetting(K=int(params["K"]), D=int(params["D"]),
                                                   sim=float(params["sim"]), n=int(params["n"]))))
    return rows


def replicate_published(reference: pd.DataFrame, seeds: Sequence[int] = PUBLISHED_SEEDS
                        ) -> pd.DataFrame:
    """Our replication of every row of the published table, side by side with it."""
    out = []
    for row in reference.itertuples(index=False):
        setting = ReplicationSetting(K=int(row.K), D=int(row.D), sim=float(row.sim), n=int(row.n))
        result = replicate(setting, seeds)
        out.append({
            "sweep": row.sweep, "K": setting.K, "D": setting.D, "sim": setting.sim,
            "n": setting.n,
            "published_single": row.tv_single_mc, "ours_single": result.tv_single_mc,
            "published_multi": row.tv_multi_mc, "ours_multi": result.tv_multi_mc,
        })
    frame = pd.DataFrame(out)
    frame["max_abs_diff"] = np.maximum((frame.ours_single - frame.published_single).abs(),
                                       (frame.ours_multi - frame.published_multi).abs())
    return frame


# --------------------------------------------------------------------------------------------
# 2. Exact expected risk
# --------------------------------------------------------------------------------------------

def quadratic_form_cdf_at_zero(weights: Sequence[np.ndarray], dofs: Sequence[int]) -> np.ndarray:
    """P(sum_j w_j chi2_{h_j} < 0) by Imhof's formula, vectorised over arrays of weights.

    `weights[j]` is an array (all of one shape) of the j-th weight, `dofs[j]` its degrees of
    freedom. P(Q < 0) = 1/2 - (1/pi) int_0^inf sin(theta(u)) / (u rho(u)) du with
    theta(u) = 1/2 sum_j h_j atan(w_j u) and rho(u) = prod_j (1 + w_j^2 u^2)^(h_j / 4).
    """
    terms = [(np.asarray(w, float), h) for w, h in zip(weights, dofs, strict=True) if h > 0]
    shape = np.broadcast(*[w for w, _ in terms]).shape

    def integrand(u: float) -> np.ndarray:
        if u == 0.0:
            return 0.5 * sum(h * w for w, h in terms) * np.ones(shape)
        theta = 0.5 * sum(h * np.arctan(w * u) for w, h in terms)
        log_rho = sum(0.25 * h * np.log1p((w * u) ** 2) for w, h in terms)
        return np.sin(theta) / u * np.exp(-log_rho)

    # Split at the scales 1/|w| where the integrand changes, so the adaptive rule sees them.
    scales = sorted({float(s) for w, _ in terms for s in np.atleast_1d(1.0 / np.abs(w))})
    edges = [0.0, *[s for s in scales if s > 0], np.inf]
    total = np.zeros(shape)
    for lo, hi in itertools.pairwise(edges):
        value, _ = integrate.quad_vec(integrand, lo, hi, epsabs=1e-13, epsrel=1e-11, limit=400)
        total += value
    return 0.5 - total / np.pi


def expected_tv_given_count(m: np.ndarray, d: int, d1: int, n: int, estimator: str
                            ) -> np.ndarray:
    """E[TV(p_hat(.|k), p*(.|k)) | n_k = m] for each m >= 1 (identity covariance)."""
    check_choice("estimator", estimator, ESTIMATORS)
    m = np.asarray(m, float)
    if estimator == "single" or d1 == d:
        return quadratic_form_cdf_at_zero([4.0 + 0 * m, -1.0 / m], [1, d])
    return quadratic_form_cdf_at_zero([4.0 + 0 * m, -1.0 / m, -1.0 / n + 0 * m],
                                      [1, d1, d - d1])


def _single_tv_given_count(m: np.ndarray, d: int) -> np.ndarray:
    """E[TV | n_k = m] when all d coordinates are estimated from m points: closed form.

    P(4 chi2_1 < chi2_d / m) = P(B < 1 / (4m + 1)) with B = chi2_1 / (chi2_1 + chi2_d) ~ Beta(1/2,
    d/2), the regularized incomplete beta function.
    """
    return special.betainc(0.5, 0.5 * d, 1.0 / (4.0 * np.asarray(m, float) + 1.0))


def _multi_tv_mixed_over_counts(m: np.ndarray, weights: np.ndarray, d: int, d1: int,
                                n: int) -> float:
    """sum_m weights_m E[TV | n_k = m] for the multi-source estimator (0 < d1 < d), with the sum
    over counts inside one Imhof integral: P(Q_m < 0) is linear in the integrand, so the mixture
    needs one scalar integral instead of one per count."""
    d_shared = d - d1
    inv_m = 1.0 / np.asarray(m, float)
    mass = float(np.sum(weights))

    def integrand(u: float) -> float:
        if u == 0.0:  # the limit u -> 0 of sin(theta) / (u rho), summed over the counts
            return 0.5 * ((4.0 - d_shared / n) * mass - d1 * float(np.dot(weights, inv_m)))
        theta = 0.5 * (math.atan(4.0 * u) - d1 * np.arctan(u * inv_m)
                       - d_shared * math.atan(u / n))
        log_rho = 0.25 * (math.log1p(16.0 * u * u) + d1 * np.log1p((u * inv_m) ** 2)
                          + d_shared * math.log1p((u / n) ** 2))
        return float(np.dot(weights, np.sin(theta) * np.exp(-log_rho))) / u

    # The integrand changes on the scales 1/4, the counts and n. Beyond 1/4 it is integrated in
    # t = log u (integrand u g(u), smooth and decaying like exp(-t (1 + d) / 2)), with
    # breakpoints at those scales and every factor 8 between them; the last piece runs 100
    # units of t past 64 n, where the integrand is below exp(-100) of its size there.
    pieces = int(np.ceil(np.log(256.0 * n) / np.log(8.0))) + 1
    edges = sorted({*np.geomspace(0.25, 64.0 * n, pieces).tolist(), float(m[0]), float(m[-1])})
    log_edges = [math.log(e) for e in edges if e >= 0.25] + [math.log(64.0 * n) + 100.0]
    total, _ = integrate.quad(integrand, 0.0, 0.25, epsabs=1e-13, epsrel=1e-11, limit=400)
    for lo, hi in itertools.pairwise(log_edges):
        value, _ = integrate.quad(lambda t: integrand(math.exp(t)) * math.exp(t), lo, hi,
                                  epsabs=1e-13, epsrel=1e-11, limit=400)
        total += value
    return 0.5 * mass - total / math.pi


def exact_expected_tv_per_source(K: int, d: int, d1: int, n: int, estimator: str,
                                 p_y: np.ndarray | None = None, *, tail: float = 1e-15
                                 ) -> np.ndarray:
    """E[TV(p_hat(.|k), p*(.|k)) | n_k >= 1] for every source k (shape (K,)), exactly.

    n_k ~ Binomial(n, p_Y(k)), conditioned on n_k >= 1 (where the MLE exists); counts beyond
    probability `tail` in either tail are dropped, which changes the result by at most 2 tail.
    Single-source (and multi-source with nothing shared) uses the incomplete-beta closed form;
    multi-source with everything shared needs no count at all; the mixed case is one Imhof
    integral with the binomial sum inside. Sources with p_Y(k) = 0 get NaN.
    """
    K = check_int("K", K, minimum=1)
    d = check_int("d", d, minimum=1)
    d1 = check_int("d1", d1, minimum=0, maximum=d)
    n = check_int("n", n, minimum=1)
    check_choice("estimator", estimator, ESTIMATORS)
    tail = check_float("tail", tail, minimum=0.0, maximum=0.01)
    p_y = np.full(K, 1.0 / K) if p_y is None else check_source_distribution(p_y, K)
    values: dict[float, float] = {}
    for p in p_y:
        if p == 0 or p in values:
            continue
        if estimator == "multi" and d1 == 0:
            values[p] = float(_single_tv_given_count(np.array(n), d))
            continue
        m, weights = nonempty_count_law(n, float(p), tail)
        if estimator == "single" or d1 == d:
            values[p] = float(np.dot(weights, _single_tv_given_count(m, d)))
        else:
            values[p] = _multi_tv_mixed_over_counts(m, weights, d, d1, n)
    return np.array([values[p] if p > 0 else np.nan for p in p_y])


def exact_expected_risk(K: int, d: int, d1: int, n: int, estimator: str,
                        p_y: np.ndarray | None = None, *, tail: float = 1e-15) -> float:
    """E[R] = sum_k p_Y(k) E[TV_k | n_k >= 1], with n_k ~ Binomial(n, p_Y(k)).

    Terms of the binomial beyond probability `tail` in either tail are dropped (error <= 2 tail).
    Fast at any n (about 0.1 s at n = 10^6); agrees with `exact_expected_risk_reference` to
    rounding (see tests/test_gaussian.py and benchmarks/exact_risk.py).
    """
    p = np.full(K, 1.0 / K) if p_y is None else check_source_distribution(p_y, K)
    per_source = exact_expected_tv_per_source(K, d, d1, n, estimator, p, tail=tail)
    return float(np.dot(p[p > 0], per_source[p > 0]))


def exact_expected_risk_reference(K: int, d: int, d1: int, n: int, estimator: str,
                                  p_y: np.ndarray | None = None, *, tail: float = 1e-15
                                  ) -> float:
    """The original algorithm, kept as the reference for tests and benchmarks: one Imhof
    integral per binomial count (`expected_tv_given_count`). Slow above n ~ 5000."""
    K = check_int("K", K, minimum=1)
    d = check_int("d", d, minimum=1)
    d1 = check_int("d1", d1, minimum=0, maximum=d)
    n = check_int("n", n, minimum=1)
    p_y = np.full(K, 1.0 / K) if p_y is None else check_source_distribution(p_y, K)
    risk = 0.0
    cache: dict[float, tuple[np.ndarray, np.ndarray]] = {}
    for p in p_y:
        if p == 0:
            continue
        if p not in cache:
            m, weights = nonempty_count_law(n, float(p), tail)
            cache[p] = (weights, expected_tv_given_count(m, d, d1, n, estimator))
        weights, values = cache[p]
        risk += p * float(np.dot(weights, values))
    return risk


def probability_empty_source(K: int, n: int, p_y: np.ndarray | None = None) -> float:
    """P(some source gets no training point) <= sum_k (1 - p_k)^n (union bound, returned)."""
    p_y = np.full(K, 1.0 / K) if p_y is None else np.asarray(p_y, float)
    return float(min(1.0, np.sum((1.0 - p_y) ** n)))


# --------------------------------------------------------------------------------------------
# 3. Fast simulation from sufficient statistics
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SimulatedSourceErrors:
    """Per-source TV of both MLEs over simulated data sets: arrays of shape (n_seeds, K)."""

    counts: np.ndarray
    tv_single: np.ndarray
    tv_multi: np.ndarray


def simulate_source_tvs(K: int, d: int, d1: int, n: int, n_seeds: int, seed: int,
                        p_y: np.ndarray | None = None) -> SimulatedSourceErrors:
    """TV of every source's fitted conditional, both MLEs, for `n_seeds` independent data sets.

    Given counts n_k, source k's mean error is N(0, I/n_k); multi-source replaces the shared
    coordinates by the count-weighted average of the K sources' errors, which is exactly the
    pooled mean's error. Both estimators therefore see the same data (common random numbers).
    Draws with an empty source are redrawn (the MLE does not exist there).
    """
    K = check_int("K", K, minimum=1)
    d = check_int("d", d, minimum=1)
    d1 = check_int("d1", d1, minimum=0, maximum=d)
    n = check_int("n", n, minimum=1)
    n_seeds = check_int("n_seeds", n_seeds, minimum=1)
    p_y = np.full(K, 1.0 / K) if p_y is None else check_source_distribution(p_y, K)
    if np.any(p_y == 0):
        raise InputError("p_y must give every source positive probability for simulate_risks")
    if probability_empty_source(K, n, p_y) > 0.5:
        raise InputError(f"n={n} is too small for K={K}: most data sets leave a source empty")
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n, p_y, size=n_seeds)
    while np.any(empty := (counts == 0).any(axis=1)):
        counts[empty] = rng.multinomial(n, p_y, size=int(empty.sum()))
    errors = rng.standard_normal((n_seeds, K, d)) / np.sqrt(counts)[:, :, None]
    tv_single = tv_from_distance(np.linalg.norm(errors, axis=2))
    multi = errors.copy()
    if d1 < d:
        pooled = (counts[:, :, None] * errors[:, :, d1:]).sum(axis=1) / n
        multi[:, :, d1:] = pooled[:, None, :]
    tv_multi = tv_from_distance(np.linalg.norm(multi, axis=2))
    return SimulatedSourceErrors(counts, tv_single, tv_multi)


def simulate_risks(K: int, d: int, d1: int, n: int, n_seeds: int, seed: int,
                   p_y: np.ndarray | None = None) -> pd.DataFrame:
    """Average-TV risk of both MLEs for `n_seeds` independent data sets (one row each), from
    `simulate_source_tvs` (same draws, same seed)."""
    sims = simulate_source_tvs(K, d, d1, n, n_seeds, seed, p_y)
    weights = np.full(K, 1.0 / K) if p_y is None else np.asarray(p_y, float)
    return pd.DataFrame({"seed_index": np.arange(sims.counts.shape[0]),
                         "risk_single": sims.tv_single @ weights,
                         "risk_multi": sims.tv_multi @ weights})


# --------------------------------------------------------------------------------------------
# The registered experiment: all three views of the Figure-1 grid
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class GaussianFigure1Config:
    """The Figure-1 grid and how many simulated seeds back each point."""

    D: int = 10
    defaults: tuple[tuple[str, float], ...] = tuple(PUBLISHED_DEFAULTS.items())
    sweeps: tuple[tuple[str, tuple[float, ...]], ...] = tuple(PUBLISHED_SWEEPS.items())
    replication_seeds: tuple[int, ...] = PUBLISHED_SEEDS
    simulated_seeds: int = 2000
    simulation_seed: int = 2025
    test_size: int = 500
    procedure_seeds: int = 1000          # extra runs of the published procedure per setting
    procedure_first_seed: int = 100_000  # their seeds: first, first + 1, ... (not the paper's)
    five_seed_groups: int = 20_000       # random groups of 5 runs for the five-seed-mean band


def _tasks(config: GaussianFigure1Config) -> list[dict[str, Any]]:
    return [{"sweep": sweep, "value": value} for sweep, values in config.sweeps for value in values]


def figure1_row(config: GaussianFigure1Config, sweep: str, value: float) -> dict[str, Any]:
    """Everything the chapter shows for one point of the grid."""
    params = {**dict(config.defaults), "D": config.D, sweep: value}
    setting = ReplicationSetting(K=int(params["K"]), D=int(params["D"]), sim=float(params["sim"]),
                                 n=int(params["n"]), test_size=config.test_size)
    K, d, d1, n = setting.K, setting.D, setting.d1, setting.n
    replication = replicate(setting, config.replication_seeds)
    sims = simulate_risks(K, d, d1, n, config.simulated_seeds, config.simulation_seed)
    row: dict[str, Any] = {
        "sweep": sweep, "K": K, "D": d, "sim": setting.sim, "d1": d1, "n": n,
        "beta_sim": (d - d1) / d,
        "rate_single": gaussian_rate_single(K, d, n),
        "rate_multi": gaussian_rate_multi(K, d, d1, n),
        "bound_ratio": float(bound_ratio(K, (d - d1) / d)),
        "replication_single": replication.tv_single_mc,
        "replication_multi": replication.tv_multi_mc,
        "exact_single": exact_expected_risk(K, d, d1, n, "single"),
        "exact_multi": exact_expected_risk(K, d, d1, n, "multi"),
        "p_empty_source": probability_empty_source(K, n),
        "simulated_seeds": config.simulated_seeds,
    }
    for estimator in ESTIMATORS:
        values = sims[f"risk_{estimator}"]
        row[f"sim_mean_{estimator}"] = float(values.mean())
        row[f"sim_sd_{estimator}"] = float(values.std(ddof=1))
        row[f"sim_q05_{estimator}"] = float(values.quantile(0.05))
        row[f"sim_q95_{estimator}"] = float(values.quantile(0.95))
    row["sim_mean_ratio"] = float((sims.risk_multi / sims.risk_single).mean())
    row["exact_ratio"] = row["exact_multi"] / row["exact_single"]
    row.update(procedure_summary(config, setting))
    return row


def procedure_summary(config: GaussianFigure1Config, setting: ReplicationSetting
                      ) -> dict[str, Any]:
    """The published procedure (Monte-Carlo TV over test points) run on many more seeds.

    Per estimator: mean and sd over runs of the Monte-Carlo estimate (`proc_mean_mc`,
    `proc_sd_mc`); sd over runs of the exact TV of the same fits (`proc_sd_exact`, the spread
    due to the data alone); the root-mean-square of Monte-Carlo minus exact TV of the same fit
    (`proc_rms_mc_error`, the test-point noise alone); and the 5% and 95% quantiles of the mean
    of five runs (`proc5_q05`, `proc5_q95`), the law of a published five-seed point. Runs that
    leave a source empty (undefined MLE) are dropped and counted (`proc_dropped`).
    """
    if config.procedure_seeds == 0:
        return {}
    values = []
    for i in range(config.procedure_seeds):
        run = run_published(setting, config.procedure_first_seed + i)
        values.append([run.mc_tv("single"), run.mc_tv("multi"),
                       run.exact_tv("single"), run.exact_tv("multi")])
    table = np.array(values)
    table = table[np.all(np.isfinite(table), axis=1)]
    rng = np.random.default_rng(config.simulation_seed)
    groups = rng.integers(0, len(table), size=(config.five_seed_groups, 5))
    out: dict[str, Any] = {"proc_runs": len(table),
                           "proc_dropped": config.procedure_seeds - len(table)}
    for estimator, (mc_column, exact_column) in {"single": (0, 2), "multi": (1, 3)}.items():
        mc, exact = table[:, mc_column], table[:, exact_column]
        five = mc[groups].mean(axis=1)
        out[f"proc_mean_mc_{estimator}"] = float(mc.mean())
        out[f"proc_sd_mc_{estimator}"] = float(mc.std(ddof=1))
        out[f"proc_sd_exact_{estimator}"] = float(exact.std(ddof=1))
        out[f"proc_mean_exact_{estimator}"] = float(exact.mean())
        out[f"proc_rms_mc_error_{estimator}"] = float(np.sqrt(np.mean((mc - exact) ** 2)))
        out[f"proc5_q05_{estimator}"] = float(np.quantile(five, 0.05))
        out[f"proc5_q95_{estimator}"] = float(np.quantile(five, 0.95))
    return out


def _run_task(config: GaussianFigure1Config, task: dict[str, Any], device: torch.device
              ) -> list[dict[str, Any]]:
    del device  # closed forms and NumPy: the device does not matter here
    return [figure1_row(config, task["sweep"], task["value"])]


register(Experiment(
    name="gaussian",
    description="Figure 1: published replication, exact expected risk and simulated seeds",
    chapter="04_gaussian",
    profiles={
        "smoke": GaussianFigure1Config(simulated_seeds=100, replication_seeds=(3,),
                                       sweeps=(("K", (1, 5)), ("n", (100, 500)),
                                               ("sim", (0.0, 1.0))),
                                       procedure_seeds=20, five_seed_groups=200),
        "book": GaussianFigure1Config(),
        "paper": GaussianFigure1Config(simulated_seeds=100_000, procedure_seeds=10_000),
    },
    tasks=_tasks,
    run_task=_run_task,
))
