"""Property tests of the constructive Gaussian bracketing and its counts."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.integrate import quad

from multisource.common.validation import InputError
from multisource.theory import bracketing as br

FAST = settings(max_examples=60, deadline=None)
widths_st = st.floats(min_value=1e-6, max_value=20.0, allow_nan=False, allow_infinity=False)


def _gauss_legendre_nodes(a: float, b: float, c: float, reach: float = 40.0,
                          piece: float = 2.0, order: int = 24) -> tuple[np.ndarray, np.ndarray]:
    """Piecewise Gauss-Legendre nodes/weights on [a - reach, b + reach] with breakpoints at the
    envelope kinks a, c = (a+b)/2, b (the integrand is smooth between them)."""
    base_x, base_w = np.polynomial.legendre.leggauss(order)
    left_edges = np.arange(a - reach, a, piece)
    right_edges = np.arange(b + piece, b + reach + piece, piece)
    edges = [*left_edges, a, c, b, *right_edges]
    edges = np.unique(np.asarray(edges, float))
    xs, ws = [], []
    for left, right in itertools.pairwise(edges):
        if right - left <= 0:
            continue
        half = 0.5 * (right - left)
        xs.append(left + half * (base_x + 1.0))
        ws.append(half * base_w)
    return np.concatenate(xs), np.concatenate(ws)


# --------------------------------------------------------------------------- envelopes


@FAST
@given(d=st.integers(1, 4), seed=st.integers(0, 2**32 - 1),
       width=st.floats(1e-4, 6.0), centre=st.floats(-5.0, 5.0))
def test_density_of_any_mean_in_the_cell_lies_between_the_envelopes(d, seed, width, centre):
    rng = np.random.default_rng(seed)
    low = centre + rng.uniform(-1.0, 1.0, size=d)
    high = low + width * rng.uniform(0.2, 1.0, size=d)
    means = low + rng.uniform(0.0, 1.0, size=(20, d)) * (high - low)
    x = centre + rng.normal(0.0, 3.0, size=(50, d))
    lower, upper = br.envelopes(x, low, high)
    dens = br.gaussian_density(x[:, None, :], means[None, :, :])
    assert np.all(lower[:, None] <= dens * (1 + 1e-12))
    assert np.all(dens <= upper[:, None] * (1 + 1e-12))
    assert np.all(lower <= upper)


@FAST
@given(d=st.integers(1, 3), seed=st.integers(0, 2**32 - 1), width=st.floats(1e-3, 5.0))
def test_envelopes_are_attained_inside_the_cell(d, seed, width):
    """Tightness: the upper envelope is the density of the projection of x on the cell, the
    lower one the minimum over the cell's corners (brute force)."""
    rng = np.random.default_rng(seed)
    low = rng.uniform(-2.0, 2.0, size=d)
    high = low + width
    x = rng.normal(0.0, 3.0, size=(30, d))
    lower, upper = br.envelopes(x, low, high)
    corners = np.array(list(itertools.product(*zip(low, high, strict=True))))
    corner_dens = br.gaussian_density(x[:, None, :], corners[None, :, :])
    np.testing.assert_allclose(lower, corner_dens.min(axis=1), rtol=1e-12, atol=0)
    np.testing.assert_allclose(upper, br.gaussian_density(x, np.clip(x, low, high)),
                               rtol=1e-12, atol=0)


def test_envelopes_of_a_point_cell_are_the_density():
    x = np.array([[0.3, -1.2], [2.0, 0.0]])
    mu = np.array([0.5, -0.5])
    lower, upper = br.envelopes(x, mu, mu)
    np.testing.assert_allclose(lower, br.gaussian_density(x, mu), rtol=1e-14)
    np.testing.assert_allclose(upper, br.gaussian_density(x, mu), rtol=1e-14)


# --------------------------------------------------------------------------- exact sizes


@FAST
@given(width=widths_st, shift=st.floats(-3.0, 3.0))
def test_closed_form_1d_size_matches_numerical_integration(width, shift):
    low, high = shift, shift + width

    def gap(t: float) -> float:
        lower, upper = br.envelopes(np.array([[t]]), [low], [high])
        return float(upper[0] - lower[0])

    mid = 0.5 * (low + high)
    pieces = [(low - 40.0, low), (low, mid), (mid, high), (high, high + 40.0)]
    numeric = sum(quad(gap, a, b, epsabs=1e-14, epsrel=1e-13, limit=200)[0] for a, b in pieces)
    assert abs(br.bracket_size_1d(width) - numeric) < 1e-8
    assert abs(br.bracket_size([width]) - numeric) < 1e-8


@settings(max_examples=15, deadline=None)
@given(w1=st.floats(1e-3, 4.0), w2=st.floats(1e-3, 4.0), shift=st.floats(-2.0, 2.0))
def test_closed_form_2d_size_matches_tensor_quadrature(w1, w2, shift):
    low = np.array([shift, -shift])
    high = low + np.array([w1, w2])
    x1, v1 = _gauss_legendre_nodes(low[0], high[0], 0.5 * (low[0] + high[0]))
    x2, v2 = _gauss_legendre_nodes(low[1], high[1], 0.5 * (low[1] + high[1]))
    grid = np.stack(np.meshgrid(x1, x2, indexing="ij"), axis=-1)
    lower, upper = br.envelopes(grid, low, high)
    numeric = float(np.einsum("i,j,ij->", v1, v2, upper - lower))
    assert abs(br.bracket_size([w1, w2]) - numeric) < 1e-8


@FAST
@given(widths=st.lists(widths_st, min_size=1, max_size=6))
def test_envelope_masses_and_size_are_consistent(widths):
    lower, upper = br.envelope_masses(widths)
    assert 0.0 < lower <= 1.0 <= upper
    assert br.bracket_size(widths) == pytest.approx(upper - lower, rel=1e-9, abs=1e-15)


def test_size_is_accurate_for_tiny_cells():
    # small-width expansion: size ~ sqrt(2/pi) * sum(w) when every w is tiny
    for d in (1, 3, 10):
        w = 1e-9
        assert br.bracket_size_cube(w, d) == pytest.approx(math.sqrt(2 / math.pi) * d * w, rel=1e-6)


@FAST
@given(w=st.floats(0.0, 10.0), dw=st.floats(1e-6, 1.0), d=st.integers(1, 8))
def test_size_increases_with_width_and_dimension(w, dw, d):
    assert br.bracket_size_cube(w + dw, d) > br.bracket_size_cube(w, d)
    assert br.bracket_size_cube(w + dw, d + 1) > br.bracket_size_cube(w + dw, d)


# --------------------------------------------------------------------------- counts


@FAST
@given(log_eps=st.floats(-7.0, 0.5), d=st.integers(1, 8), side=st.floats(0.1, 50.0))
def test_cells_per_axis_is_the_smallest_valid_grid(log_eps, d, side):
    eps = 10.0**log_eps
    m = br.cells_per_axis(eps, d, side)
    assert br.bracket_size_cube(side / m, d) <= eps
    assert m == 1 or br.bracket_size_cube(side / (m - 1), d) > eps


@FAST
@given(log_eps=st.floats(-7.0, 0.5), factor=st.floats(1.0, 100.0), K=st.integers(1, 10),
       d=st.integers(1, 6), data=st.data(), side=st.floats(0.5, 20.0))
def test_counts_are_non_increasing_in_epsilon(log_eps, factor, K, d, data, side):
    d1 = data.draw(st.integers(0, d))
    small, large = 10.0**log_eps, 10.0**log_eps * factor
    assert br.cells_per_axis(large, d, side) <= br.cells_per_axis(small, d, side)
    for estimator in ("multi", "single"):
        assert (br.log_bracket_count(large, K, d, d1, estimator, side)
                <= br.log_bracket_count(small, K, d, d1, estimator, side))


@pytest.mark.parametrize("K", [1, 2, 3, 5, 10])
@pytest.mark.parametrize("d", [1, 2, 5])
def test_proposition_3_3_on_a_grid(K, d):
    """N(multi) <= N(single) for every epsilon, with equality iff K = 1 or d1 = d."""
    for d1 in range(d + 1):
        for eps in np.logspace(-6, 0, 13):
            multi = br.log_bracket_count(eps, K, d, d1, "multi", side=8.0)
            single = br.log_bracket_count(eps, K, d, d1, "single", side=8.0)
            assert multi <= single
            m = br.cells_per_axis(eps, d, 8.0)
            if m > 1:
                assert (multi == single) == (K == 1 or d1 == d)


@pytest.mark.parametrize(("K", "d", "d1"), [(2, 1, 0), (3, 2, 1), (5, 10, 5), (10, 4, 1),
                                            (4, 3, 3)])
def test_slopes_match_the_free_dimensions_at_small_epsilon(K, d, d1):
    eps = np.logspace(-8, -5, 10)
    table = br.bracket_count_table(eps, K, d, d1, side=6.0)
    slope_multi = br.fitted_slope(table["epsilon"], table["log_n_multi"])
    slope_single = br.fitted_slope(table["epsilon"], table["log_n_single"])
    assert slope_multi == pytest.approx((K - 1) * d1 + d, rel=0.05)
    assert slope_single == pytest.approx(K * d, rel=0.05)


@FAST
@given(seed=st.integers(0, 2**32 - 1), K=st.integers(1, 4), d=st.integers(1, 3),
       data=st.data(), log_eps=st.floats(-3.0, 0.0))
def test_multi_source_brackets_cover_the_class(seed, K, d, data, log_eps):
    """End to end: a random multi-source parameter lies in one of our brackets, whose size at
    every y (sup over y) is <= epsilon."""
    d1 = data.draw(st.integers(0, d))
    eps, low, side = 10.0**log_eps, -1.0, 4.0
    rng = np.random.default_rng(seed)
    shared = rng.uniform(low, low + side, size=d - d1)
    specific = rng.uniform(low, low + side, size=(K, d1))
    m = br.cells_per_axis(eps, d, side)
    shared_cell = br.cell_of(shared, low, side, m) if d > d1 else (np.empty(0), np.empty(0))
    x = rng.normal(0.5, 2.0, size=(40, d))
    for k in range(K):
        spec_cell = br.cell_of(specific[k], low, side, m) if d1 else (np.empty(0), np.empty(0))
        cell_low = np.concatenate([spec_cell[0], shared_cell[0]])
        cell_high = np.concatenate([spec_cell[1], shared_cell[1]])
        mean = np.concatenate([specific[k], shared])
        lower, upper = br.envelopes(x, cell_low, cell_high)
        dens = br.gaussian_density(x, mean)
        assert np.all(lower <= dens * (1 + 1e-12)) and np.all(dens <= upper * (1 + 1e-12))
        assert br.bracket_size(cell_high - cell_low) <= eps * (1 + 1e-12)


def test_fitted_slope_recovers_a_power_law():
    eps = np.logspace(-6, -1, 8)
    assert br.fitted_slope(eps, 3.0 * np.log(1 / eps) + 2.0) == pytest.approx(3.0, rel=1e-12)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(("call", "name"), [
    (lambda: br.cells_per_axis(0.0, 2, 1.0), "epsilon"),
    (lambda: br.cells_per_axis(-1.0, 2, 1.0), "epsilon"),
    (lambda: br.cells_per_axis(0.1, 0, 1.0), "d"),
    (lambda: br.cells_per_axis(0.1, 2, 0.0), "side"),
    (lambda: br.log_bracket_count(0.1, 0, 2, 1, "multi", 1.0), "K"),
    (lambda: br.log_bracket_count(0.1, 2, 2, 3, "multi", 1.0), "d1"),
    (lambda: br.log_bracket_count(0.1, 2, 2, 1, "joint", 1.0), "estimator"),
    (lambda: br.bracket_size([-1.0]), "widths"),
    (lambda: br.bracket_size_1d(float("nan")), "width"),
    (lambda: br.envelopes(np.zeros((3, 2)), [0.0, 1.0], [1.0, 0.0]), "cell"),
    (lambda: br.envelopes(np.zeros((3, 3)), [0.0, 1.0], [1.0, 2.0]), "x"),
    (lambda: br.cell_of(np.array([5.0]), 0.0, 1.0, 4), "mean"),
    (lambda: br.fitted_slope([0.1], [1.0]), "epsilons"),
])
def test_bad_input_raises_a_one_line_input_error(call, name):
    with pytest.raises(InputError) as info:
        call()
    message = str(info.value)
    assert name in message and "\n" not in message


# --------------------------------------------------------------------------- p_Y-weighted norm


def _unbalanced(K: int, p_small: float) -> np.ndarray:
    return np.r_[p_small, np.full(K - 1, (1 - p_small) / (K - 1))]


@pytest.mark.parametrize("estimator", ["multi", "single"])
@pytest.mark.parametrize("p_small", [0.2, 0.05, 0.002])
def test_weighted_brackets_have_weighted_size_at_most_epsilon(estimator, p_small):
    p_y = _unbalanced(5, p_small)
    for eps in (1e-1, 1e-3, 1e-6):
        b = br.weighted_bracketing(eps, p_y, 10, 4, estimator, side=7.0)
        assert b.size <= eps
        # recompute the size from the cells, independently of the search
        d_spec = 10 if estimator == "single" else 4
        d_sh = 0 if estimator == "single" else 6
        shared_widths = np.full(d_sh, 7.0 / b.shared_cells)
        sizes = [br.bracket_size(np.r_[np.full(d_spec, 7.0 / m), shared_widths])
                 for m in b.specific_cells]
        assert p_y @ sizes == pytest.approx(b.size, rel=1e-12)
        expected = d_spec * np.log(b.specific_cells).sum() + d_sh * np.log(b.shared_cells)
        assert b.log_count == pytest.approx(expected, rel=1e-12)


def test_weighted_count_at_uniform_p_equals_the_cubic_count_for_single_source():
    for eps in (1e-2, 1e-5):
        b = br.weighted_bracketing(eps, np.full(4, 0.25), 3, 1, "single", side=5.0)
        assert b.log_count == pytest.approx(br.log_bracket_count(eps, 4, 3, 1, "single", 5.0),
                                            rel=1e-12)


@pytest.mark.parametrize(("K", "d", "d1"), [(5, 10, 5), (3, 4, 1), (10, 2, 2)])
def test_weighted_count_depends_on_p_y_only_through_specific_coordinates(K, d, d1):
    """To first order, log N(p) - log N(uniform) = d_s sum_k log(K p_k), d_s = d1 (multi) or d
    (single): the shared coordinates' count does not move with p_Y. Could fail if the
    allocation or the sizes were wrong."""
    p_y = _unbalanced(K, 0.01)
    uniform = np.full(K, 1.0 / K)
    for estimator, d_s in (("multi", d1), ("single", d)):
        shift = (br.weighted_bracketing(1e-7, p_y, d, d1, estimator, 6.0).log_count
                 - br.weighted_bracketing(1e-7, uniform, d, d1, estimator, 6.0).log_count)
        predicted = d_s * np.log(K * p_y).sum()
        assert shift == pytest.approx(predicted, abs=1e-3 * max(1.0, abs(predicted)))


@FAST
@given(seed=st.integers(0, 2**32 - 1), data=st.data(), log_eps=st.floats(-3.0, -0.5))
def test_weighted_brackets_cover_random_parameters(seed, data, log_eps):
    """A random multi-source parameter lies in one weighted bracket: cell per source on the
    specific coordinates, one cell on the shared ones, on the grids the construction chose."""
    K, d = 3, data.draw(st.integers(1, 3))
    d1 = data.draw(st.integers(0, d))
    rng = np.random.default_rng(seed)
    p_y = rng.dirichlet(np.ones(K)) * 0.97 + 0.01
    p_y /= p_y.sum()
    low, side = -1.0, 4.0
    b = br.weighted_bracketing(10.0**log_eps, p_y, d, d1, "multi", side)
    specific = rng.uniform(low, low + side, size=(K, d1))
    shared = rng.uniform(low, low + side, size=d - d1)
    x = rng.normal(0.5, 2.0, size=(30, d))
    for k in range(K):
        lo_s, hi_s = br.cell_of(specific[k], low, side, int(b.specific_cells[k])) if d1 else (
            np.empty(0), np.empty(0))
        lo_h, hi_h = br.cell_of(shared, low, side, b.shared_cells) if d > d1 else (
            np.empty(0), np.empty(0))
        lower, upper = br.envelopes(x, np.r_[lo_s, lo_h], np.r_[hi_s, hi_h])
        dens = br.gaussian_density(x, np.r_[specific[k], shared])
        assert np.all(lower <= dens * (1 + 1e-12)) and np.all(dens <= upper * (1 + 1e-12))


def test_weighted_bracketing_rejects_bad_p_y():
    with pytest.raises(InputError, match=r"^p_y must"):
        br.weighted_bracketing(0.1, np.array([0.5, 0.6]), 2, 1, "multi", 1.0)
    with pytest.raises(InputError, match=r"^p_y must"):
        br.weighted_bracketing(0.1, np.array([0.0, 1.0]), 2, 1, "multi", 1.0)
