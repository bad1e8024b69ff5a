"""Chapter 8's package code: exact risks under misspecified sharing, crossovers, AR teachers,
model collapse, model families and the decision rule."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, stats

from multisource.common.validation import InputError
from multisource.experiments.gaussian import exact_expected_risk
from multisource.experiments.gaussian import quadratic_form_cdf_at_zero as adaptive_cdf
from multisource.models import autoregressive as ar
from multisource.models.gaussian import fit_multi
from multisource.pooling import collapse, tabular
from multisource.pooling import misspecified as ms
from multisource.pooling.advise import advise
from multisource.pooling.crossover import crossover_from_differences, t_interval, zero_crossing
from multisource.pooling.families import GaussianDiagonal, GaussianUnit, TabularAR, mix
from multisource.pooling.quadform import quadratic_form_cdf_at_zero

# ---------------------------------------------------------------------------------------------
# Quadratic forms
# ---------------------------------------------------------------------------------------------


def test_central_forms_match_the_adaptive_imhof_integral() -> None:
    m = np.array([1.0, 4.0, 37.0, 500.0, 20000.0])
    for dofs in ([1, 3, 5], [1, 1, 9]):
        weights = [4.0 + 0 * m, -1.0 / m, -1.0 / 700 + 0 * m]
        ours = quadratic_form_cdf_at_zero(weights, dofs)
        assert np.abs(ours - adaptive_cdf(weights, dofs)).max() < 1e-11


@pytest.mark.parametrize("noncentrality", [0.3, 12.0, 400.0, 9000.0])
def test_noncentral_form_matches_direct_integration(noncentrality: float) -> None:
    n, dof = 250.0, 3
    # P(4 chi2_1 < Y / n), Y ~ chi2'_3(nc): integrate the chi2_1 CDF against the ncx2 density
    lo, hi = stats.ncx2.ppf([1e-14, 1 - 1e-14], dof, noncentrality)
    direct = integrate.quad(lambda y: stats.chi2.cdf(y / (4 * n), 1)
                            * stats.ncx2.pdf(y, dof, noncentrality), lo, hi,
                            limit=400, epsabs=1e-14, epsrel=1e-12)[0]
    ours = quadratic_form_cdf_at_zero([np.array(4.0), np.array(-1 / n)], [1, dof],
                                      [np.array(0.0), np.array(noncentrality)])
    assert float(ours) == pytest.approx(direct, abs=1e-11)


# ---------------------------------------------------------------------------------------------
# Misspecified Gaussian sources
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [40, 700])
def test_exact_sharing_reproduces_chapter_4(n: int) -> None:
    """With chapter 4's law of the counts (each source given its own n_k >= 1), delta = 0
    gives chapter 4's exact risks; with every source non-empty (the default) the two differ by
    less than P(some source empty)."""
    each = ms.MisspecifiedGaussian(K=5, d=10, d1=5, delta=0.0, condition="each")
    every = ms.MisspecifiedGaussian(K=5, d=10, d1=5, delta=0.0)
    empty = 1 - ms.prob_all_nonempty(every.p, n)
    for ours, theirs in (("separate", "single"), ("pooled", "multi")):
        chapter_4 = exact_expected_risk(5, 10, 5, n, theirs)
        assert ms.expected_risk(each, n, ours) == pytest.approx(chapter_4, abs=1e-12)
        assert abs(ms.expected_risk(every, n, ours) - chapter_4) <= empty + 1e-12


def test_inclusion_exclusion_by_brute_force() -> None:
    """The all-non-empty law against a direct sum over every multinomial count vector."""
    setting = ms.MisspecifiedGaussian(K=3, d=2, d1=1, delta=1.5, p_y=(0.55, 0.3, 0.15))
    n = 9
    each = ms.MisspecifiedGaussian(K=3, d=2, d1=1, delta=1.5, p_y=(0.55, 0.3, 0.15),
                                   condition="each")
    assert ms.prob_all_nonempty(setting.p, n) == pytest.approx(
        sum(stats.multinomial.pmf(c, n, setting.p) for c in _count_vectors(n, 3)
            if min(c) > 0), abs=1e-14)
    for estimator in ms.ESTIMATORS:
        # E[TV_k | all non-empty] = sum_c P(c) E[TV_k | c] / P(all), with E[TV_k | c] the "each"
        # risk at a degenerate law: computed here from single-count settings via Imhof
        direct = _brute_force_risk(setting, n, estimator)
        np.testing.assert_allclose(ms.source_risks(setting, n, estimator), direct, atol=1e-10)
        assert not np.allclose(ms.source_risks(each, n, estimator), direct, atol=1e-4)


def _count_vectors(n: int, K: int):
    if K == 1:
        yield (n,)
        return
    for first in range(n + 1):
        for rest in _count_vectors(n - first, K - 1):
            yield (first, *rest)


def _brute_force_risk(setting: ms.MisspecifiedGaussian, n: int, estimator: str) -> np.ndarray:
    """sum over count vectors with every count >= 1 of P(c) * P(4 chi2_1 < |error_k|^2)."""
    total, risks = 0.0, np.zeros(setting.K)
    in_group = setting.in_group
    for c in _count_vectors(n, setting.K):
        if min(c) == 0:
            continue
        weight = stats.multinomial.pmf(c, n, setting.p)
        total += weight
        big_m = sum(c[j] for j in range(setting.K) if in_group[j])
        for k in range(setting.K):
            m = c[k]
            if estimator == "separate":
                value = quadratic_form_cdf_at_zero([np.array(4.0), np.array(-1.0 / m)],
                                                   [1, setting.d])
            else:
                bias2 = setting.delta**2 * (big_m / n - float(in_group[k])) ** 2
                value = quadratic_form_cdf_at_zero(
                    [np.array(4.0), np.array(-1.0 / m), np.array(-1.0 / n)],
                    [1, setting.d1, setting.d_shared],
                    [np.array(0.0), np.array(0.0), np.array(n * bias2)])
            risks[k] += weight * float(value)
    return risks / total


@pytest.mark.parametrize("K, n, p_y, delta", [
    (5, 30, (0.4, 0.15, 0.15, 0.15, 0.15), 0.2),   # P(some source empty) = 0.027
    (3, 20, (0.1, 0.6, 0.3), 1.0),                  # the odd source is rare: P(empty) = 0.12
])
def test_exact_risks_match_the_simulator_at_small_n(K: int, n: int, p_y: tuple[float, ...],
                                                    delta: float) -> None:
    """Exact against the package's own simulator (which redraws data sets with an empty
    source), 300,000 data sets: within 4 standard errors. Chapter 4's law (each source given
    only its own n_k >= 1) fails the same comparison."""
    setting = ms.MisspecifiedGaussian(K=K, d=10, d1=5, delta=delta, p_y=p_y)
    each = ms.MisspecifiedGaussian(K=K, d=10, d1=5, delta=delta, p_y=p_y, condition="each")
    sims = ms.simulate_risks(setting, n, 300_000, seed=K)
    worst_each = 0.0
    for name in ms.ESTIMATORS:
        values = sims[f"risk_{name}"].to_numpy()
        se = values.std(ddof=1) / np.sqrt(values.size)
        z = (values.mean() - ms.expected_risk(setting, n, name)) / se
        assert abs(z) < 4, (name, z)
        worst_each = max(worst_each, abs(values.mean() - ms.expected_risk(each, n, name)) / se)
    assert worst_each > 6, worst_each


def test_exact_source_risks_match_raw_samples_unbalanced() -> None:
    """Per-source exact risks against fits on raw samples (4,000 data sets, 99.9% intervals),
    with unbalanced p_Y and a two-source shifted group."""
    setting = ms.MisspecifiedGaussian(K=3, d=3, d1=1, delta=1.3, group=(0, 2),
                                      p_y=(0.5, 0.3, 0.2))
    n, seeds = 40, 4000
    rng = np.random.default_rng(7)
    tv = {"pooled": [], "separate": []}
    for _ in range(seeds):
        x, y = ms.sample(setting, n, rng)
        while np.bincount(y, minlength=3).min() == 0:
            x, y = ms.sample(setting, n, rng)
        for name, w in (("pooled", 1.0), ("separate", 0.0)):
            fitted = ms.fit_partial(x, y, 3, setting.d1, w)
            tv[name].append(np.linalg.norm(fitted - setting.means, axis=1))
    for name in ms.ESTIMATORS:
        per_source = stats.norm.cdf(np.array(tv[name]) / 2) * 2 - 1
        exact = ms.source_risks(setting, n, name)
        for k in range(3):
            interval = t_interval(per_source[:, k], 0.999)
            assert interval.contains(exact[k]), (name, k, interval, exact[k])
    # the pooled estimator is biased, so the two are far apart for the shifted sources
    assert ms.source_risks(setting, n, "pooled")[0] != pytest.approx(
        ms.source_risks(setting, n, "separate")[0], abs=0.01)


def test_sufficient_statistic_simulation_matches_exact_risk() -> None:
    setting = ms.MisspecifiedGaussian(K=4, d=6, d1=2, delta=0.8)
    sims = ms.simulate_risks(setting, 150, 5000, seed=3)
    for name in ms.ESTIMATORS:
        interval = t_interval(sims[f"risk_{name}"].to_numpy(), 0.999)
        assert interval.contains(ms.expected_risk(setting, 150, name))


def test_crossover_is_a_sign_change() -> None:
    setting = ms.MisspecifiedGaussian(K=5, d=10, d1=5, delta=1.0)
    n_star = ms.crossover(setting)
    assert n_star is not None and n_star > 10
    assert ms.risk_difference(setting, n_star - 1) <= 0 < ms.risk_difference(setting, n_star)
    assert ms.crossover(ms.MisspecifiedGaussian(K=5, d=10, d1=5, delta=0.0)) is None


def test_back_of_envelope_crossover_by_hand() -> None:
    # K = 2, uniform, one odd source at distance 2: biases 1 and 1, sum p |b|^2 = 1
    setting = ms.MisspecifiedGaussian(K=2, d=4, d1=1, delta=2.0)
    np.testing.assert_allclose(setting.population_bias(), [1.0, 1.0])
    assert ms.crossover_mse(setting) == pytest.approx(1 * 3 / 1.0)
    assert setting.misspecification_kl() == pytest.approx(0.5)


def test_misspecified_setting_rejects_bad_input() -> None:
    with pytest.raises(InputError, match="group"):
        ms.MisspecifiedGaussian(K=3, d=4, d1=1, delta=1.0, group=(0, 1, 2))
    with pytest.raises(InputError, match="p_y"):
        ms.MisspecifiedGaussian(K=3, d=4, d1=1, delta=1.0, p_y=(0.5, 0.5, 0.0))
    with pytest.raises(InputError, match="d1"):
        ms.MisspecifiedGaussian(K=3, d=4, d1=4, delta=1.0)


# ---------------------------------------------------------------------------------------------
# Crossovers from simulated differences
# ---------------------------------------------------------------------------------------------


def test_zero_crossing_interpolates_in_log_n() -> None:
    assert zero_crossing([10, 100], [-1.0, 1.0]) == pytest.approx(np.sqrt(1000))
    assert np.isnan(zero_crossing([10, 100], [-1.0, -0.5]))
    assert zero_crossing([10, 100], [0.5, 1.0]) == 10


def test_bootstrap_interval_covers_a_known_crossing() -> None:
    rng = np.random.default_rng(0)
    ns = [100, 200, 400, 800]
    true_means = np.log(np.array(ns) / 300.0)          # crosses zero at n = 300
    diffs = [m + rng.standard_normal(2000) for m in true_means]
    estimate = crossover_from_differences(ns, diffs, rng, n_boot=300)
    assert estimate.contains(300.0) and estimate.high - estimate.low < 60
    with pytest.raises(InputError):
        crossover_from_differences([200, 100], diffs[:2], rng)


# ---------------------------------------------------------------------------------------------
# Tabular AR teachers
# ---------------------------------------------------------------------------------------------


def test_epsilon_zero_is_the_realizable_teacher() -> None:
    shared = ar.shared_transition_mask(5, 0.5)
    tables = tabular.misspecified_tables(3, 2, 5, shared, 0.0, 1.0, seed=4)
    assert np.allclose(tables[:, shared], tables[:1, shared])
    measured = tabular.misspecification(tables, shared)
    assert measured["kl"] == pytest.approx(0.0, abs=1e-14)
    moved = tabular.misspecified_tables(3, 2, 5, shared, 0.3, 1.0, seed=4)
    assert np.allclose(moved[:, ~shared], tables[:, ~shared])   # only shared tables move
    assert tabular.misspecification(moved, shared)["kl"] > 1e-3


def test_pooled_limit_is_where_the_pooled_mle_goes() -> None:
    shared = ar.shared_transition_mask(5, 0.5)
    tables = tabular.misspecified_tables(3, 2, 5, shared, 0.6, 1.0, seed=1)
    counts = ar.sample_transition_counts(tables[None], 4_000_000, np.random.default_rng(2))
    fitted = ar.fit_tabular(counts, shared)[0]
    limit = tabular.pooled_limit_tables(tables, shared)
    assert np.abs(fitted - limit).max() < 3e-3
    assert np.abs(limit[:, shared] - tables[:, shared]).max() > 0.05
    marginals = tabular.state_marginals(tables)
    np.testing.assert_allclose(marginals.sum(axis=-1), 1.0)


# ---------------------------------------------------------------------------------------------
# Model collapse
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("estimator", collapse.ESTIMATORS)
def test_collapse_exact_curves_match_simulated_chains(estimator: str) -> None:
    setting = collapse.CollapseSetting(K=3, d=2, n=90)
    exact = collapse.exact_curves(setting, 4, estimator).set_index("generation")
    sims = collapse.simulate_chains(setting, 4, 3000, seed=11, estimator=estimator)
    for g in (1, 4):
        at = sims[sims.generation == g]
        for column in ("kl", "retained_variance", "log_det"):
            interval = t_interval(at[column].to_numpy(), 0.999)
            assert interval.contains(exact.loc[g, column]), (g, column, interval)


def test_pooled_collapse_keeps_n_minus_k_over_n_of_the_variance() -> None:
    setting = collapse.CollapseSetting(K=4, d=3, n=100)
    curve = collapse.exact_curves(setting, 3, "pooled")
    np.testing.assert_allclose(curve.retained_variance, (96 / 100) ** np.arange(4))
    assert curve.kl.iloc[0] == 0.0
    with pytest.raises(InputError, match="n must exceed"):
        collapse.CollapseSetting(K=4, d=3, n=8)


# ---------------------------------------------------------------------------------------------
# Families and the decision rule
# ---------------------------------------------------------------------------------------------


def test_families_mix_between_the_two_mles() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((60, 3)) + np.repeat(np.arange(3), 20)[:, None]
    y = np.repeat(np.arange(3), 20)
    specific = np.array([True, False, False])
    separate, pooled = GaussianUnit().fit_pair(x, y, 3, specific)
    np.testing.assert_allclose(pooled["mean"], fit_multi(x, y, 3, 1))
    np.testing.assert_allclose(mix(separate, pooled, 0.0)["mean"], separate["mean"])
    half = mix(separate, pooled, 0.5)["mean"]
    np.testing.assert_allclose(half, 0.5 * (separate["mean"] + pooled["mean"]))
    _, pool_d = GaussianDiagonal().fit_pair(x, y, 3, specific)
    np.testing.assert_allclose(pool_d["var"][:, 1], x[:, 1].var())


def test_tabular_family_is_normalised() -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 3, size=(90, 4)).astype(float)
    y = np.repeat(np.arange(3), 30)
    family = TabularAR().configure(x)
    everything = ar.all_sequences(3, 4).astype(float)
    for params in family.fit_pair(x, y, 3, np.zeros(4, bool)):
        for k in range(3):
            total = np.exp(family.log_density(params, everything, np.full(len(everything), k)))
            assert total.sum() == pytest.approx(1.0)
    with pytest.raises(InputError, match="integer"):
        TabularAR().configure(x + 0.5)


def test_advise_tells_different_sources_apart() -> None:
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(3), 150)
    x = rng.standard_normal((450, 2)) + 1.5 * y[:, None]
    advice = advise(x, y, "gaussian")
    # equal variances: per-source means with one shared variance (shrunk) fit best
    assert advice.recommendation in ("separate", "shrunk")
    versus_pooled = next(c for c in advice.comparisons if c.other == "pooled").difference
    assert versus_pooled.low > 0 and not advice.reasons
    assert advice.pooled_or_separate == "separate"
    assert all(a.answer == "separate" for a in advice.per_source)


def test_advise_pools_identical_sources() -> None:
    rng = np.random.default_rng(2)
    y = np.repeat(np.arange(5), 60)
    x = rng.standard_normal((300, 10))
    advice = advise(x, y, "gaussian-unit")
    assert advice.pooled_or_separate == "pooled"
    assert advice.recommendation in ("pooled", "partial", "shrunk") and advice.weight >= 0.7
    gain = next(c for c in advice.comparisons if c.other == "separate").difference
    assert gain.low > 0


def test_advise_rejects_bad_input() -> None:
    x = np.zeros((40, 2))
    with pytest.raises(InputError, match="at least 2 sources"):
        advise(x, np.zeros(40, int))
    with pytest.raises(InputError, match="needs at least 10"):
        advise(x, np.r_[np.zeros(35, int), np.ones(5, int)])
    with pytest.raises(InputError, match="finite"):
        advise(np.full((40, 2), np.nan), np.repeat([0, 1], 20))


# ---------------------------------------------------------------------------------------------
# The large-n limit of n* / n*_MSE
# ---------------------------------------------------------------------------------------------


def test_mean_norm_of_a_chi_vector() -> None:
    from scipy.special import gamma

    from multisource.pooling.asymptotics import mean_norm

    for h in (1, 3, 10):
        assert mean_norm([(h, 1.0, 0.0)]) == pytest.approx(
            np.sqrt(2) * gamma((h + 1) / 2) / gamma(h / 2), rel=1e-9)
    # non-central: E|N(mu, 1)| = sqrt(2/pi) e^{-mu^2/2} + mu (1 - 2 Phi(-mu))
    mu = 1.7
    folded = np.sqrt(2 / np.pi) * np.exp(-mu**2 / 2) + mu * (1 - 2 * stats.norm.cdf(-mu))
    assert mean_norm([(1, 1.0, mu**2)]) == pytest.approx(folded, rel=1e-9)


@pytest.mark.parametrize("K", [2, 5, 10])
def test_exact_crossover_ratio_tends_to_the_limit(K: int) -> None:
    """At n = 10^4 the exact boundary's n / n*_MSE is within 1% of the n -> infinity limit."""
    from multisource.experiments.pooling_phase import boundary_delta
    from multisource.pooling.asymptotics import limit_ratio

    n = 10_000
    delta = boundary_delta(K, 10, 5, n, rtol=1e-6)
    exact = n / ms.crossover_mse(ms.MisspecifiedGaussian(K, 10, 5, delta))
    assert exact == pytest.approx(limit_ratio(ms.MisspecifiedGaussian(K, 10, 5, 1.0)), rel=0.01)
