"""The computed minimax lower bound: below the exact risk of the MLE everywhere, and of the
order sqrt(complexity / n)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import erf

from multisource.common.validation import InputError
from multisource.experiments.gaussian import (
    exact_expected_risk,
    exact_expected_tv_per_source,
    simulate_source_tvs,
)
from multisource.theory import lower_bounds as lb

GRID = [(K, d, d1, n) for K in (1, 2, 5, 15) for d, d1 in ((10, 5), (10, 0), (10, 10), (2, 1))
        for n in (30, 300, 3000, 100_000) if n >= 2 * K]


@pytest.mark.parametrize(("K", "d", "d1", "n"), GRID)
def test_lower_bound_never_exceeds_the_exact_risk_of_the_mle(K, d, d1, n) -> None:
    """The MLE's risk does not depend on the true means, so it is at least the minimax risk
    over the box; a lower bound above it would be wrong."""
    for estimator in ("multi", "single"):
        bound = lb.minimax_lower_bound(K, d, d1, n, estimator, side=K + 2.0)
        risk = exact_expected_risk(K, d, d1, n, estimator)
        assert 0 < bound < risk, (estimator, bound, risk)


def test_lower_bound_for_unbalanced_sources_stays_below_the_risk() -> None:
    p_y = np.array([0.01, 0.09, 0.3, 0.6])
    for estimator in ("multi", "single"):
        for n in (100, 1000, 20_000):
            bound = lb.minimax_lower_bound_per_source(4, 6, 2, n, estimator, p_y, side=3.0)
            risk = exact_expected_tv_per_source(4, 6, 2, n, estimator, p_y)
            assert np.all(bound < risk)


@pytest.mark.parametrize(("K", "d", "d1"), [(5, 10, 5), (15, 10, 0), (3, 4, 4), (10, 20, 3)])
def test_lower_bound_scales_like_the_square_root_of_the_parameter_count(K, d, d1) -> None:
    """At large n: c/sqrt(2) sqrt(D/n) <= bound <= c sqrt(D/n), c = Assouad's constant, with
    D = (K-1) d1 + d (multi) or K d (single): the exponents of the upper bound are necessary."""
    c = lb.assouad_constant()
    n = 10**6
    for estimator, dims in (("multi", (K - 1) * d1 + d), ("single", K * d)):
        scaled = lb.minimax_lower_bound(K, d, d1, n, estimator, side=K + 2.0) / math.sqrt(dims / n)
        assert c / math.sqrt(2) * 0.99 <= scaled <= c * 1.001, (estimator, scaled)


def test_assouad_constant() -> None:
    t = np.linspace(0.01, 6, 200_001)
    brute = np.max(t * (1 - erf(t / (2 * math.sqrt(2))))) / (4 * math.sqrt(2 * math.pi))
    assert lb.assouad_constant() == pytest.approx(brute, rel=1e-8)
    assert 0.06 < lb.assouad_constant() < 0.07


def test_block_bound_is_below_the_bayes_risk_of_the_sample_mean_on_the_cube() -> None:
    """Monte Carlo on the very prior of the proof: theta uniform on the hypercube of the chosen
    scale, the sample mean as estimator. Its Bayes risk must exceed the bound."""
    r, N, side = 4, 50, 10.0
    bound = lb.assouad_block_bound(r, np.array([N]), np.array([1.0]), side)
    rng = np.random.default_rng(0)
    errors = rng.standard_normal((200_000, r)) / math.sqrt(N)
    risk = erf(np.linalg.norm(errors, axis=1) / (2 * math.sqrt(2)))
    assert bound < risk.mean() - 5 * risk.std() / math.sqrt(len(risk))


def test_box_caps_the_bound_when_data_are_scarce() -> None:
    # With no data at all the bound is the value at delta = side: 1/4 erf(side sqrt(r) / 2 sqrt 2).
    value = lb.assouad_block_bound(3, np.array([0]), np.array([1.0]), side=0.5)
    assert value == pytest.approx(0.25 * erf(0.5 * math.sqrt(3) / (2 * math.sqrt(2))), rel=1e-9)
    assert lb.assouad_block_bound(0, np.array([5]), np.array([1.0]), side=1.0) == 0.0


def test_simulated_mle_risk_is_above_the_bound_for_a_rare_source() -> None:
    p_y = np.array([0.02, 0.98])
    sims = simulate_source_tvs(2, 3, 3, 500, 20_000, seed=3, p_y=p_y)
    bound = lb.minimax_lower_bound_per_source(2, 3, 3, 500, "single", p_y, side=4.0)
    assert np.all(sims.tv_single.mean(axis=0) > bound)


def test_bad_input() -> None:
    with pytest.raises(InputError, match=r"^estimator must"):
        lb.minimax_lower_bound(2, 3, 1, 10, "joint", side=1.0)
    with pytest.raises(InputError, match=r"^side must"):
        lb.minimax_lower_bound(2, 3, 1, 10, "multi", side=-1.0)
