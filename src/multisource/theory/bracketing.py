"""A constructive L1 bracketing of the unit-variance Gaussian location family, and its counts.

The family is {N(mu, I_d) : mu in [low, high]^d}. Cut the box into m^d equal cubic cells of
side w = (high - low) / m. For one cell C = prod_j [a_j, b_j] the bracket is

    lower(x) = min_{mu in C} phi_d(x - mu),    upper(x) = max_{mu in C} phi_d(x - mu),

the pointwise envelopes of the densities in the cell. Both factorise over coordinates, because
phi_d is a product of 1-D densities and C is a product of intervals. In 1-D:

    upper(x) = phi(distance from x to [a, b])             (the closest mean),
    lower(x) = phi(max(|x - a|, |x - b|))                 (the farthest endpoint),

so int upper = 1 + w / sqrt(2 pi) and int lower = 2 Phi(-w / 2). The L1 size of the d-dimensional
bracket is therefore exactly

    prod_j (1 + w_j / sqrt(2 pi)) - prod_j 2 Phi(-w_j / 2),

which for d = 1 is w / sqrt(2 pi) + erf(w / (2 sqrt 2)) ~ w sqrt(2 / pi).

Conditional classes. A bracket of a class of conditionals {p(x | y)} is a pair of functions
l(x, y) <= p(x | y) <= u(x, y). We measure its size as sup_y ||u(., y) - l(., y)||_1 (the paper's
choice is not public; E_Y of the same norm is the other natural one). Every bracket in our
construction has the same size at every y, so its count is the same under either choice; and
because E_Y <= sup_y, a count valid for the sup is valid for E_Y.

- single-source class: K free means in the box, so a bracket is a K-tuple of d-dimensional cells:
  m^(K d) brackets;
- multi-source class: K specific parts (d1 coordinates each) and one shared part (d - d1
  coordinates), so m^(K d1) * m^(d - d1) = m^((K-1) d1 + d) brackets.

Both use the same per-axis cell count m(epsilon, d): the smallest m whose cells have bracket size
<= epsilon. These counts are genuine upper bounds on the bracketing numbers N_[] of the two
classes (the construction is ours, not the paper's).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq
from scipy.special import erf, log_ndtr

from multisource.common.validation import InputError, check_float, check_int

SQRT_2PI = math.sqrt(2.0 * math.pi)
SQRT2 = math.sqrt(2.0)


# --------------------------------------------------------------------------- densities & envelopes

def gaussian_density(x: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Density of N(mean, I_d) at x, over the last axis (broadcasting)."""
    diff = np.asarray(x, float) - np.asarray(mean, float)
    d = diff.shape[-1]
    return np.exp(-0.5 * np.sum(diff**2, axis=-1)) / SQRT_2PI**d


def _phi(t: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * np.asarray(t, float) ** 2) / SQRT_2PI


def _check_cell(low: np.ndarray, high: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    low = np.atleast_1d(np.asarray(low, float))
    high = np.atleast_1d(np.asarray(high, float))
    if low.shape != high.shape or low.ndim != 1:
        raise InputError(f"cell low and high must be 1-D arrays of equal length, "
                         f"got shapes {low.shape} and {high.shape}")
    if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))) or np.any(high < low):
        raise InputError("cell high must be finite and >= low in every coordinate")
    return low, high


def envelopes(x: np.ndarray, low: np.ndarray, high: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper envelopes of {N(mu, I_d) : low <= mu <= high} at points x (shape (..., d)).

    lower(x) = min over the cell of the density at x (attained at the farthest corner),
    upper(x) = max over the cell (attained at the projection of x onto the cell).
    """
    low, high = _check_cell(low, high)
    x = np.asarray(x, float)
    if x.ndim == 0 or x.shape[-1] != low.shape[0]:
        raise InputError(f"x must have last axis of length d={low.shape[0]}, got shape {x.shape}")
    nearest = np.clip(x, low, high)
    farthest = np.maximum(np.abs(x - low), np.abs(x - high))
    upper = np.prod(_phi(x - nearest), axis=-1)
    lower = np.prod(_phi(farthest), axis=-1)
    return lower, upper


# --------------------------------------------------------------------------- exact bracket sizes

def _check_widths(widths: np.ndarray | float) -> np.ndarray:
    widths = np.atleast_1d(np.asarray(widths, float))
    if widths.ndim != 1 or widths.size == 0:
        raise InputError(f"widths must be a non-empty 1-D array, got shape {widths.shape}")
    if not np.all(np.isfinite(widths)) or np.any(widths < 0):
        raise InputError("widths must be finite and >= 0")
    return widths


def _log_lower_mass(widths: np.ndarray) -> np.ndarray:
    """log of int lower = log(2 Phi(-w/2)) = log(1 - erf(w / (2 sqrt 2))), accurate for all w."""
    z = widths / (2.0 * SQRT2)
    small = z < 0.5
    out = np.empty_like(widths)
    out[small] = np.log1p(-erf(z[small]))
    out[~small] = np.log(2.0) + log_ndtr(-widths[~small] / 2.0)
    return out


def envelope_masses(widths: np.ndarray | float) -> tuple[float, float]:
    """(int lower, int upper) over R^d for a cell with side lengths `widths`: closed form."""
    widths = _check_widths(widths)
    upper = float(np.exp(np.sum(np.log1p(widths / SQRT_2PI))))
    lower = float(np.exp(np.sum(_log_lower_mass(widths))))
    return lower, upper


def bracket_size_1d(width: float) -> float:
    """Exact L1 size of the 1-D bracket of a mean interval of length `width`.

    ||upper - lower||_1 = width / sqrt(2 pi) + erf(width / (2 sqrt 2))
                        = width / sqrt(2 pi) + 2 Phi(width / 2) - 1.
    """
    width = check_float("width", width, minimum=0.0)
    return width / SQRT_2PI + float(erf(width / (2.0 * SQRT2)))


def bracket_size(widths: np.ndarray | float) -> float:
    """Exact L1 size of the product bracket of a box cell with side lengths `widths`.

    prod_j (1 + w_j / sqrt(2 pi)) - prod_j 2 Phi(-w_j / 2), evaluated without cancellation.
    """
    widths = _check_widths(widths)
    log_upper = float(np.sum(np.log1p(widths / SQRT_2PI)))
    log_lower = float(np.sum(_log_lower_mass(widths)))
    return math.exp(log_upper) * -math.expm1(log_lower - log_upper)


def bracket_size_cube(width: float, d: int) -> float:
    """Exact L1 size of the bracket of a cubic cell of side `width` in dimension d."""
    d = check_int("d", d, minimum=1)
    width = check_float("width", width, minimum=0.0)
    return bracket_size(np.full(d, width))


# --------------------------------------------------------------------------- cell counts

def max_cell_width(epsilon: float, d: int) -> float:
    """The largest cube side w with bracket_size_cube(w, d) <= epsilon (root of a monotone map)."""
    epsilon = check_float("epsilon", epsilon, minimum=0.0)
    d = check_int("d", d, minimum=1)
    if epsilon <= 0.0:
        raise InputError(f"epsilon must be a number > 0, got {epsilon}")
    high = 1.0
    while bracket_size_cube(high, d) < epsilon:
        high *= 2.0
    return float(brentq(lambda w: bracket_size_cube(w, d) - epsilon, 0.0, high,
                        xtol=1e-300, rtol=4 * np.finfo(float).eps, maxiter=500))


def cells_per_axis(epsilon: float, d: int, side: float) -> int:
    """m(epsilon, d): the fewest equal cells per axis of a box of side `side` whose d-dimensional
    cubic cells all have bracket size <= epsilon. Checked against the exact size, so the result
    is safe against rounding."""
    side = check_float("side", side, minimum=0.0)
    if side <= 0.0:
        raise InputError(f"side must be a number > 0, got {side}")
    width = max_cell_width(epsilon, d)
    m = max(1, math.ceil(side / width))
    while m > 1 and bracket_size_cube(side / (m - 1), d) <= epsilon:
        m -= 1
    while bracket_size_cube(side / m, d) > epsilon:
        m += 1
    return m


def free_dimensions(K: int, d: int, d1: int, estimator: str) -> int:
    """Number of free mean coordinates: (K-1) d1 + d for "multi", K d for "single"."""
    K = check_int("K", K, minimum=1)
    d = check_int("d", d, minimum=1)
    d1 = check_int("d1", d1, minimum=0, maximum=d)
    if estimator == "multi":
        return (K - 1) * d1 + d
    if estimator == "single":
        return K * d
    raise InputError(f"estimator must be one of multi, single; got {estimator!r}")


def log_bracket_count(epsilon: float, K: int, d: int, d1: int, estimator: str,
                      side: float) -> float:
    """log of our bracket count for the multi- or single-source conditional Gaussian class.

    Means in [0, side]^d up to translation; size measured as sup over y of the L1 norm. The count
    is m(epsilon, d)^D with D = free_dimensions(K, d, d1, estimator): an upper bound on N_[].
    """
    dims = free_dimensions(K, d, d1, estimator)
    return dims * math.log(cells_per_axis(epsilon, d, side))


def log_bracket_count_family(epsilon: float, d: int, side: float) -> float:
    """log of our bracket count for one Gaussian location family {N(mu, I_d): mu in a cube}."""
    d = check_int("d", d, minimum=1)
    return d * math.log(cells_per_axis(epsilon, d, side))


def bracket_count_table(epsilons: np.ndarray, K: int, d: int, d1: int,
                        side: float) -> dict[str, np.ndarray]:
    """Counts over a grid of epsilon: arrays epsilon, cells_per_axis, log_n_multi, log_n_single."""
    eps = np.atleast_1d(np.asarray(epsilons, float))
    m = np.array([cells_per_axis(float(e), d, side) for e in eps])
    log_m = np.log(m)
    return {
        "epsilon": eps,
        "cells_per_axis": m,
        "log_n_multi": free_dimensions(K, d, d1, "multi") * log_m,
        "log_n_single": free_dimensions(K, d, d1, "single") * log_m,
    }


def fitted_slope(epsilons: np.ndarray, log_counts: np.ndarray) -> float:
    """Least-squares slope of log N against log(1/epsilon)."""
    eps = np.asarray(epsilons, float)
    log_counts = np.asarray(log_counts, float)
    if eps.shape != log_counts.shape or eps.size < 2:
        raise InputError("epsilons and log_counts must have equal length >= 2")
    slope, _ = np.polyfit(np.log(1.0 / eps), log_counts, 1)
    return float(slope)


def cell_of(mean: np.ndarray, low: float, side: float, m: int) -> tuple[np.ndarray, np.ndarray]:
    """The grid cell (low corner, high corner) of the m-per-axis grid on [low, low+side]^d that
    contains `mean` (points on a shared face go to the upper cell, the top face to the last)."""
    mean = np.atleast_1d(np.asarray(mean, float))
    m = check_int("m", m, minimum=1)
    side = check_float("side", side, minimum=0.0)
    if np.any(mean < low) or np.any(mean > low + side):
        raise InputError(f"mean must lie in the box [{low}, {low + side}] in every coordinate")
    width = side / m
    index = np.minimum(np.floor((mean - low) / width), m - 1)
    cell_low = low + index * width
    return cell_low, cell_low + width




# --------------------------------------------------------------------------- p_Y-weighted norm

@dataclass(frozen=True)
class WeightedBracketing:
    """Our bracketing of a conditional Gaussian class in the p_Y-weighted L1 norm
    sum_y p_Y(y) ||u(., y) - l(., y)||_1.

    `specific_cells[k]`: cells per axis on source k's own coordinates (d1 of them for "multi",
    all d for "single"); `shared_cells`: cells per axis on the d - d1 shared coordinates ("multi"
    only; 1 otherwise); `size`: the exact weighted size of every bracket; `log_count`: the log of
    the number of brackets.
    """

    epsilon: float
    specific_cells: np.ndarray
    shared_cells: int
    size: float
    log_count: float


def _weighted_size(specific: np.ndarray, shared: int, p_y: np.ndarray, d_specific: int,
                   d_shared: int, side: float) -> float:
    sizes = []
    for m_k in specific:
        widths = np.r_[np.full(d_specific, side / m_k), np.full(d_shared, side / shared)]
        sizes.append(bracket_size(widths))
    return float(np.dot(p_y, sizes))


def weighted_bracketing(epsilon: float, p_y: np.ndarray, d: int, d1: int, estimator: str,
                        side: float) -> WeightedBracketing:
    """Brackets of size <= epsilon in the p_Y-weighted L1 norm (the construction is ours).

    A source's bracket size enters weighted by p_Y(k), so rare sources may get coarser cells.
    For small cells the weighted size is about sqrt(2/pi) (sum_k p_k d_s w_k + d_sh v), and
    minimising the count sum_k d_s log(1/w_k) + d_sh log(1/v) under that budget gives
    w_k = 1 / (lam p_k) for source k's d_s own coordinates and v = 1 / lam for the shared ones
    (Lagrange). We take m_k = ceil(lam p_k side) and m_shared = ceil(lam side) cells per axis
    and choose the smallest lam (bisection) whose exact weighted size is <= epsilon.
    To first order the count is then sum_k d_s log(K p_k) below its value at uniform p_Y: the
    shared coordinates' count does not depend on p_Y.
    """
    epsilon = check_float("epsilon", epsilon, minimum=0.0)
    if epsilon <= 0.0:
        raise InputError(f"epsilon must be a number > 0, got {epsilon}")
    d = check_int("d", d, minimum=1)
    d1 = check_int("d1", d1, minimum=0, maximum=d)
    side = check_float("side", side, minimum=0.0)
    if side <= 0.0:
        raise InputError(f"side must be a number > 0, got {side}")
    if estimator not in ("multi", "single"):
        raise InputError(f"estimator must be one of multi, single; got {estimator!r}")
    p_y = np.asarray(p_y, float)
    if p_y.ndim != 1 or np.any(p_y <= 0) or not np.isclose(p_y.sum(), 1.0):
        raise InputError("p_y must be a 1-D array of positive probabilities summing to 1")
    d_specific = d if estimator == "single" else d1
    d_shared = 0 if estimator == "single" else d - d1

    def cells(lam: float) -> tuple[np.ndarray, int]:
        specific = np.maximum(1, np.ceil(lam * p_y * side)).astype(np.int64)
        shared = max(1, math.ceil(lam * side)) if d_shared else 1
        return specific, shared

    def size(lam: float) -> float:
        return _weighted_size(*cells(lam), p_y, d_specific, d_shared, side)

    lo, hi = 1e-12, 1.0
    while size(hi) > epsilon:
        lo, hi = hi, hi * 2.0
    if size(lo) <= epsilon:
        hi = lo
    else:
        for _ in range(200):
            mid = math.sqrt(lo * hi)
            if size(mid) <= epsilon:
                hi = mid
            else:
                lo = mid
            if hi / lo < 1 + 1e-12:
                break
    specific, shared = cells(hi)
    log_count = d_specific * float(np.sum(np.log(specific))) + d_shared * math.log(shared)
    return WeightedBracketing(float(epsilon), specific, int(shared), size(hi), log_count)


__all__ = [
    "SQRT_2PI",
    "WeightedBracketing",
    "bracket_count_table",
    "bracket_size",
    "bracket_size_1d",
    "bracket_size_cube",
    "cell_of",
    "cells_per_axis",
    "envelope_masses",
    "envelopes",
    "fitted_slope",
    "free_dimensions",
    "gaussian_density",
    "log_bracket_count",
    "log_bracket_count_family",
    "max_cell_width",
    "weighted_bracketing",
]
