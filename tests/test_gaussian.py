"""The Gaussian instantiation: closed-form TV, the MLEs, replication, exact risk, simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, stats

from multisource.common.validation import InputError
from multisource.experiments import gaussian
from multisource.metrics import tv_gaussian_identity
from multisource.models.gaussian import fit_multi, fit_single, log_density
from multisource.models.gaussian_naive import naive_replicate_seed
from multisource.sources import GaussianSources


# ---------------------------------------------------------------- closed-form TV
@pytest.mark.parametrize("a, b", [(0.0, 0.3), (-1.0, 1.5), (2.0, 2.0), (0.0, 6.0)])
def test_tv_closed_form_matches_integration_1d(a: float, b: float) -> None:
    numeric, _ = integrate.quad(lambda x: 0.5 * abs(stats.norm.pdf(x, a) - stats.norm.pdf(x, b)),
                                min(a, b) - 12, max(a, b) + 12, points=[(a + b) / 2],
                                epsabs=1e-13, limit=200)
    assert tv_gaussian_identity([a], [b]) == pytest.approx(numeric, abs=1e-9)


def test_tv_closed_form_matches_integration_2d() -> None:
    mu_a, mu_b = np.array([0.3, -0.4]), np.array([-0.2, 0.5])

    def integrand(y: float, x: float) -> float:
        p = math.exp(log_density(np.array([x, y]), mu_a))
        q = math.exp(log_density(np.array([x, y]), mu_b))
        return 0.5 * abs(p - q)

    numeric, _ = integrate.dblquad(integrand, -9, 9, -9, 9, epsabs=1e-9)
    assert tv_gaussian_identity(mu_a, mu_b) == pytest.approx(numeric, abs=1e-6)


def test_tv_closed_form_matches_monte_carlo() -> None:
    rng = np.random.default_rng(0)
    mu_a, mu_b = np.zeros(5), np.full(5, 0.25)
    x = rng.standard_normal((400_000, 5)) + mu_a
    ratio = np.exp(log_density(x, mu_b) - log_density(x, mu_a))
    terms = 0.5 * np.abs(ratio - 1)
    se = terms.std() / math.sqrt(len(terms))
    assert abs(terms.mean() - tv_gaussian_identity(mu_a, mu_b)) < 5 * se


# ---------------------------------------------------------------- the MLEs
@settings(max_examples=30, deadline=None)
@given(K=st.integers(1, 5), d=st.integers(1, 6), data=st.data())
def test_mle_equals_sample_means(K: int, d: int, data: st.DataObject) -> None:
    d1 = data.draw(st.integers(0, d))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    y = np.concatenate([np.arange(K), rng.integers(0, K, size=3 * K)])
    x = rng.standard_normal((len(y), d)) + y[:, None]
    single, multi = fit_single(x, y, K), fit_multi(x, y, K, d1)
    for k in range(K):
        np.testing.assert_allclose(single[k], x[y == k].mean(axis=0), atol=1e-12)
        np.testing.assert_allclose(multi[k, :d1], x[y == k, :d1].mean(axis=0), atol=1e-12)
        np.testing.assert_allclose(multi[k, d1:], x[:, d1:].mean(axis=0), atol=1e-12)

    def loglik_multi(means: np.ndarray) -> float:
        return float(log_density(x, means[y]).sum())

    # Any perturbation that respects the sharing constraint lowers the likelihood.
    step = rng.standard_normal((K, d)) * 0.05
    step[:, d1:] = step[0, d1:]
    assert loglik_multi(multi) > loglik_multi(multi + step)


def test_multi_equals_single_when_nothing_is_shared_or_one_source() -> None:
    for K, D, sim in [(5, 10, 0.0), (1, 10, 0.5), (1, 4, 1.0)]:
        result = gaussian.replicate(gaussian.ReplicationSetting(K, D, sim, 300), seeds=(1, 2))
        # Equal up to float32 summation order (the pooled and per-source means reduce
        # the same numbers in different orders).
        assert result.tv_multi_mc == pytest.approx(result.tv_single_mc, abs=1e-7)
        d1 = D - int(sim * D)
        assert gaussian.exact_expected_risk(K, D, d1, 300, "multi") == pytest.approx(
            gaussian.exact_expected_risk(K, D, d1, 300, "single"), rel=1e-9)
        sims = gaussian.simulate_risks(K, D, d1, 300, 50, seed=0)
        np.testing.assert_allclose(sims.risk_multi, sims.risk_single, rtol=1e-12)


# ---------------------------------------------------------------- replication
def test_all_fifteen_published_rows_reproduced(published_figure1) -> None:
    table = gaussian.replicate_published(published_figure1)
    assert len(table) == 15
    assert table.max_abs_diff.max() < 1e-6


def test_replicate_agrees_with_the_naive_procedure_on_unpublished_settings() -> None:
    for K, D, sim, n, seed in [(7, 20, 0.25, 300, 7), (2, 3, 0.34, 40, 11), (4, 6, 1.0, 80, 0)]:
        fast = gaussian.replicate_seed(gaussian.ReplicationSetting(K, D, sim, n, test_size=25),
                                       seed)
        slow = naive_replicate_seed(K, D, sim, n, seed, test_size=25)
        assert fast.tv_single_mc == pytest.approx(slow[0], abs=1e-6)
        assert fast.tv_multi_mc == pytest.approx(slow[1], abs=1e-6)


def test_same_seed_same_numbers() -> None:
    setting = gaussian.ReplicationSetting(6, 8, 0.5, 200)
    assert gaussian.replicate(setting, (5, 9)) == gaussian.replicate(setting, (5, 9))
    assert gaussian.replicate_seed(setting, 5) != gaussian.replicate_seed(setting, 6)
    a = gaussian.simulate_risks(5, 10, 5, 500, 20, seed=3)
    b = gaussian.simulate_risks(5, 10, 5, 500, 20, seed=3)
    assert a.equals(b)


def test_shared_dimension_truncates_like_python_int() -> None:
    assert gaussian.ReplicationSetting(5, 10, 0.7, 10).d_shared == 7
    assert gaussian.ReplicationSetting(5, 100, 0.29, 10).d_shared == 28  # 28.999... -> 28


@pytest.mark.parametrize("kwargs, parameter", [
    ({"K": 0, "D": 10, "sim": 0.5, "n": 10}, "K"),
    ({"K": 2, "D": 0, "sim": 0.5, "n": 10}, "D"),
    ({"K": 2, "D": 10, "sim": -0.1, "n": 10}, "sim"),
    ({"K": 2, "D": 10, "sim": 1.01, "n": 10}, "sim"),
    ({"K": 2, "D": 10, "sim": 0.5, "n": 0}, "n"),
    ({"K": 2, "D": 10, "sim": float("nan"), "n": 10}, "sim"),
])
def test_bad_settings_are_rejected(kwargs: dict, parameter: str) -> None:
    with pytest.raises(InputError, match=rf"^{parameter} must"):
        gaussian.ReplicationSetting(**kwargs)


# ---------------------------------------------------------------- exact risk
def test_quadratic_form_cdf_matches_direct_integral() -> None:
    # Single-source case: P(4 chi2_1 < chi2_d / m) = E_Z[chi2.sf(4 m Z^2, d)].
    for d, m in [(1, 3), (4, 50), (10, 120)]:
        direct, _ = integrate.quad(lambda z, d=d, m=m: 2 * stats.norm.pdf(z)
                                   * stats.chi2.sf(4 * m * z * z, d), 0, np.inf, epsabs=1e-13)
        imhof = gaussian.quadratic_form_cdf_at_zero([np.array(4.0), np.array(-1.0 / m)], [1, d])
        assert float(imhof) == pytest.approx(direct, abs=1e-9)


@pytest.mark.parametrize("K, d1, n", [(5, 5, 500), (3, 10, 100), (5, 0, 300)])
def test_exact_risk_matches_simulation(K: int, d1: int, n: int) -> None:
    sims = gaussian.simulate_risks(K, 10, d1, n, 40_000, seed=11)
    for estimator in gaussian.ESTIMATORS:
        values = sims[f"risk_{estimator}"]
        se = values.std() / math.sqrt(len(values))
        exact = gaussian.exact_expected_risk(K, 10, d1, n, estimator)
        assert abs(values.mean() - exact) < 5 * se


def test_simulation_matches_data_level_fit() -> None:
    # The sufficient-statistics shortcut has the same law as fitting real samples.
    sources = GaussianSources(K=3, d=4, d1=2)
    rng = np.random.default_rng(1)
    risks = []
    for _ in range(3000):
        x, y = sources.sample(60, rng)
        if np.bincount(y, minlength=3).min() == 0:
            continue
        risks.append([tv_gaussian_identity(fit(x, y), sources.means) @ sources.p_y
                      for fit in (lambda x, y: fit_single(x, y, 3),
                                  lambda x, y: fit_multi(x, y, 3, 2))])
    risks = np.array(risks)
    sims = gaussian.simulate_risks(3, 4, 2, 60, 40_000, seed=2)
    for column, values in zip(("risk_single", "risk_multi"), risks.T, strict=True):
        se = math.hypot(values.std() / math.sqrt(len(values)),
                        sims[column].std() / math.sqrt(len(sims)))
        assert abs(values.mean() - sims[column].mean()) < 5 * se


def test_multi_risk_below_single_when_sources_share() -> None:
    for K, d1 in [(3, 5), (10, 5), (5, 0)]:
        assert gaussian.exact_expected_risk(K, 10, d1, 500, "multi") < \
            gaussian.exact_expected_risk(K, 10, d1, 500, "single")
