"""The fast exact expected risk against the original per-count algorithm and an independent
series, and its per-source form."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special, stats

from multisource.common.validation import InputError
from multisource.experiments import gaussian
from multisource.sources import nonempty_count_law

SETTINGS = [  # (K, d, d1, n, p_y)
    (5, 10, 5, 500, None),
    (3, 10, 10, 100, None),
    (5, 10, 0, 300, None),
    (1, 10, 5, 200, None),
    (10, 4, 1, 50, None),
    (2, 1, 0, 3, None),
    (7, 20, 13, 300, None),
    (3, 10, 5, 400, np.array([0.02, 0.49, 0.49])),
    (4, 3, 1, 60, np.array([0.1, 0.2, 0.3, 0.4])),
]


@pytest.mark.parametrize(("K", "d", "d1", "n", "p_y"), SETTINGS)
def test_fast_risk_agrees_with_the_original_algorithm(K, d, d1, n, p_y) -> None:
    for estimator in gaussian.ESTIMATORS:
        fast = gaussian.exact_expected_risk(K, d, d1, n, estimator, p_y)
        reference = gaussian.exact_expected_risk_reference(K, d, d1, n, estimator, p_y)
        assert abs(fast - reference) < 1e-8, (estimator, fast, reference)


def test_single_source_closed_form_matches_imhof() -> None:
    m = np.array([1, 3, 17, 250])
    for d in (1, 2, 7):
        imhof = gaussian.expected_tv_given_count(m, d, d, 1000, "single")
        beta = special.betainc(0.5, d / 2, 1.0 / (4.0 * m + 1.0))
        np.testing.assert_allclose(beta, imhof, atol=1e-10, rtol=0)


def _negative_binomial_series_risk(K: int, d: int, d1: int, n: int) -> float:
    """Independent check at large n: lam chi2_d1 = sum_j NB_j(d1/2, 1/lam) chi2_{d1+2j}, so
    E[TV | m] = sum_j NB_j(d1/2, m/n) I_{1/(4n+1)}(1/2, d/2 + j) (no numerical integral)."""
    m, weights = nonempty_count_law(n, 1.0 / K)
    j = np.arange(0, int(stats.nbinom.isf(1e-16, d1 / 2, m.min() / n)) + 50)
    terms = special.betainc(0.5, d / 2 + j, 1.0 / (4.0 * n + 1.0))
    mixture = stats.nbinom.pmf(j[None, :], d1 / 2, (m / n)[:, None])
    assert mixture.sum(axis=1).min() > 1 - 1e-13  # the series is summed far enough
    return float(weights @ (mixture @ terms))


@pytest.mark.parametrize(("K", "d", "d1", "n"), [(5, 10, 5, 100_000), (3, 4, 1, 200_000)])
def test_fast_risk_agrees_with_an_independent_series_at_large_n(K, d, d1, n) -> None:
    fast = gaussian.exact_expected_risk(K, d, d1, n, "multi")
    assert fast == pytest.approx(_negative_binomial_series_risk(K, d, d1, n), abs=1e-11)


def test_per_source_risks_average_to_the_risk() -> None:
    p_y = np.array([0.05, 0.15, 0.8])
    for estimator in gaussian.ESTIMATORS:
        per_source = gaussian.exact_expected_tv_per_source(3, 6, 2, 400, estimator, p_y)
        assert per_source.shape == (3,)
        assert np.all(np.diff(per_source) < 0)  # rarer sources are estimated worse
        assert p_y @ per_source == pytest.approx(
            gaussian.exact_expected_risk(3, 6, 2, 400, estimator, p_y), rel=1e-14)


def test_per_source_risk_matches_simulation() -> None:
    p_y = np.array([0.1, 0.3, 0.6])
    sims = gaussian.simulate_source_tvs(3, 4, 2, 200, 40_000, seed=5, p_y=p_y)
    for estimator, tv in (("single", sims.tv_single), ("multi", sims.tv_multi)):
        exact = gaussian.exact_expected_tv_per_source(3, 4, 2, 200, estimator, p_y)
        se = tv.std(axis=0, ddof=1) / np.sqrt(len(tv))
        assert np.all(np.abs(tv.mean(axis=0) - exact) < 5 * se), estimator


def test_bad_tail_is_rejected() -> None:
    with pytest.raises(InputError, match=r"^tail must"):
        gaussian.exact_expected_risk(3, 2, 1, 50, "multi", tail=0.5)
