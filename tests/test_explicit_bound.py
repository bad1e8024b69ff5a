"""Our explicit-constant Theorem 3.2 bound: it holds at chapter 4's grid, and the check fails
when the bracketing entropy or the constant is made wrong (mutation tests)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats

from multisource.common.validation import InputError
from multisource.experiments.gaussian import (
    PUBLISHED_DEFAULTS,
    PUBLISHED_SWEEPS,
    exact_expected_risk,
)
from multisource.sources import shared_dimension
from multisource.theory import bracketing as br
from multisource.theory.explicit_bound import (
    check_bound_holds,
    entropy_detection_factor,
    explicit_bound,
    high_probability_bound,
    risk_function,
)

D = 10


def _chapter4_points() -> list[tuple[int, int, int, str]]:
    """(K, d1, n, estimator) at every setting of chapter 4's three sweeps (Figure 1)."""
    points = set()
    for sweep, values in PUBLISHED_SWEEPS.items():
        for value in values:
            params = {**PUBLISHED_DEFAULTS, sweep: value}
            d1 = D - shared_dimension(float(params["sim"]), D)
            for est in ("multi", "single"):
                points.add((int(params["K"]), d1, int(params["n"]), est))
    return sorted(points)


@pytest.fixture(scope="module")
def grid() -> tuple[list, np.ndarray]:
    points = _chapter4_points()
    bounds = [explicit_bound(K, D, d1, n, est) for K, d1, n, est in points]
    exact = np.array([exact_expected_risk(K, D, d1, n, est) for K, d1, n, est in points])
    return bounds, exact


def _bounds(bounds: list) -> np.ndarray:
    return np.array([b.bound for b in bounds])


def test_the_bound_holds_at_every_point_of_chapter_4(grid) -> None:
    bounds, exact = grid
    smallest = check_bound_holds(_bounds(bounds), exact)
    assert 1.0 < smallest < 100.0
    # the transfer to the sample-mean estimator costs under 1% of the bound on this grid
    assert max(b.p_outside / b.bound for b in bounds) < 1e-2
    assert max(b.q_empty for b in bounds) < 1e-3


@pytest.mark.parametrize("factor", [1e3, 1e4])
def test_an_entropy_too_small_by_a_factor_fails_the_check(grid, factor) -> None:
    bounds, exact = grid
    wrong = np.array([explicit_bound(b.K, b.d, b.d1, b.n, b.estimator,
                                     log_brackets=b.log_brackets / factor).bound for b in bounds])
    with pytest.raises(AssertionError, match="the explicit bound fails at point"):
        check_bound_holds(wrong, exact)


def test_the_single_gaussian_count_for_the_conditional_class_is_too_small_but_not_caught(grid
                                                                                         ) -> None:
    """A wrong bracketing number of a plausible kind: one Gaussian family's count (d log m)
    in place of the conditional class's (D log m). The check cannot see it: its power is
    limited to errors larger than the bound's slack, which the next test measures."""
    bounds, exact = grid
    wrong = np.array([explicit_bound(b.K, b.d, b.d1, b.n, b.estimator, log_brackets=(
        br.log_bracket_count_family(b.epsilon, b.d, b.K + 2.0))).bound for b in bounds])
    assert check_bound_holds(wrong, exact) > 1.0


def test_the_detection_factor_is_where_the_check_flips(grid) -> None:
    bounds, exact = grid
    i = int(np.argmin(_bounds(bounds) / exact))
    factor = entropy_detection_factor(bounds[i], float(exact[i]))
    assert 10.0 < factor < 1e4
    for scale, fails in ((0.9, False), (1.1, True)):
        wrong = explicit_bound(bounds[i].K, D, bounds[i].d1, bounds[i].n, bounds[i].estimator,
                               log_brackets=bounds[i].log_brackets / (scale * factor))
        assert (wrong.bound < exact[i]) == fails


def test_a_wrong_constant_fails_the_check(grid) -> None:
    bounds, exact = grid
    smallest = check_bound_holds(_bounds(bounds), exact)
    with pytest.raises(AssertionError):
        check_bound_holds(_bounds(bounds) / (1.05 * smallest), exact)
    check_bound_holds(_bounds(bounds) / (0.95 * smallest), exact)


@pytest.mark.parametrize("width, offset", [(0.05, 0.3), (0.5, 0.0), (1.0, 1.5), (3.0, -2.0)])
def test_the_deterministic_step_r_below_g_of_one_minus_rho(width, offset) -> None:
    """Step 4 of the proof on a 1-D cell bracket: TV(p_hat, p*) <= g(1 - rho) for p_hat in the
    cell, with rho = int sqrt(u p*) computed by quadrature and epsilon the cell's exact size."""
    low, high = offset, offset + width
    eps = br.bracket_size_1d(width)

    def sqrt_up(x: float) -> float:
        _, upper = br.envelopes(np.array([[x]]), np.array([low]), np.array([high]))
        return math.sqrt(float(upper[0]) * stats.norm.pdf(x))

    rho = integrate.quad(sqrt_up, -40, 40, points=[low, high], limit=200)[0]
    for mean in np.linspace(low, high, 5):
        tv = 2 * stats.norm.cdf(abs(mean) / 2) - 1
        assert tv <= risk_function(1 - rho, eps) + 1e-12


def test_the_high_probability_bound_covers_the_simulated_risk_quantile() -> None:
    from multisource.experiments.gaussian import simulate_risks

    K, d1, n, delta = 5, 5, 20_000, 0.01
    b = explicit_bound(K, D, d1, n, "multi")
    bound = high_probability_bound(b.log_brackets, n, b.epsilon, delta)
    risks = simulate_risks(K, D, d1, n, 2000, 7).risk_multi.to_numpy()
    assert np.quantile(risks, 1 - delta) < bound < 1


def test_inputs_are_checked() -> None:
    with pytest.raises(InputError):
        explicit_bound(5, 10, 5, 500, "pooled")
    with pytest.raises(InputError):
        explicit_bound(5, 10, 11, 500, "multi")
    with pytest.raises(InputError):
        check_bound_holds(np.ones(3), np.ones(2))
