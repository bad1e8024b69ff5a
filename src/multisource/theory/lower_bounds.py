"""A computed minimax lower bound on the average-TV risk of the Gaussian classes (ours).

Classes: X | y ~ N(mu_y, I_d) with every free mean coordinate in an interval of length `side`;
multi-source: mu_y = (phi_y, psi) with K specific parts (d1 coordinates) and one shared part
(d - d1 coordinates); single-source: K free means. Labels y ~ p_Y are observed and p_Y is known.
The risk is R' = sum_y p_Y(y) E[TV(p_hat(.|y), p*(.|y)) | n_y >= 1], the quantity that
`exact_expected_risk` computes for the MLE. Estimators are arbitrary (any density, in the class
or not, built from the whole data set).

The argument (written out in chapter 3):

1. Bayes risk under a product prior: the infimum of a sum is at least the sum of the infima,
   so R' >= sum_y p_Y(y) B_y, with B_y the Bayes risk for source y alone.
2. Revealing parameters to the estimator cannot raise its Bayes risk, and the TV of the
   marginals on a block of coordinates is at most the full TV. So B_y is at least the Bayes risk
   of estimating N(phi_y, I_d1) from source y's n_y points (psi revealed), and at least that of
   estimating N(psi, I_{d-d1}) from all n points (every phi revealed): B_y >= max(A_y, S).
3. Each block is a Gaussian location problem in r dimensions from N points, bounded by
   Assouad's lemma on the hypercube {c + delta tau : tau in {0,1}^r} (delta <= side): with the
   projection tau_hat of p_hat onto the cube, TV(p_tau_hat, p_tau) <= 2 TV(p_hat, p_tau) and, by
   concavity of erf, TV(p_tau_hat, p_tau) >= erf(delta sqrt(r) / (2 sqrt 2)) H / r with H the
   Hamming distance; Assouad gives E[H] >= r/2 (1 - TV of neighbouring data laws), and the
   neighbouring laws differ by delta in one coordinate of an N-point mean:

       A_r(N) = max_delta 1/4 erf(delta sqrt(r) / (2 sqrt 2))
                        * (1 - E_N erf(delta sqrt(N) / (2 sqrt 2))).

For large N this is about 0.068 sqrt(r / N), so the bound scales as sqrt(((K-1) d1 + d) / n)
(multi, up to a factor sqrt 2 from max(a, b) >= (a + b)/2) and sqrt(K d / n) (single).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats
from scipy.optimize import minimize_scalar
from scipy.special import erf

from multisource.common.validation import InputError, check_choice, check_float, check_int
from multisource.sources import check_source_distribution, nonempty_count_law

SQRT2 = math.sqrt(2.0)
ESTIMATORS = ("multi", "single")


def assouad_block_bound(r: int, counts: np.ndarray, weights: np.ndarray, side: float) -> float:
    """Assouad lower bound on the Bayes risk (TV loss) of estimating N(theta, I_r), theta in a
    cube of side `side`, from N points, N having law `weights` on `counts` (a fixed N: one count
    with weight 1). Maximised over the hypercube scale delta in (0, side]; any delta is valid."""
    r = check_int("r", r, minimum=0)
    side = check_float("side", side, minimum=0.0)
    if r == 0 or side == 0.0:
        return 0.0
    counts = np.sqrt(np.asarray(counts, float))
    weights = np.asarray(weights, float)
    if counts.shape != weights.shape or np.any(weights < 0):
        raise InputError("counts and weights must have the same shape, weights >= 0")

    def bound(delta: float) -> float:
        separation = erf(delta * math.sqrt(r) / (2.0 * SQRT2))
        confusion = 1.0 - float(np.dot(weights, erf(delta * counts / (2.0 * SQRT2))))
        return 0.25 * separation * confusion

    # The maximiser is near delta = 1.5 / sqrt(E N); search on the log scale around it.
    mean_count = float(np.dot(weights, counts**2)) / max(float(weights.sum()), 1e-300)
    guess = min(side, 1.5 / math.sqrt(max(mean_count, 1e-12)))
    grid = np.unique(np.clip(guess * np.geomspace(1e-2, 1e2, 81), 1e-300, side))
    values = [bound(float(x)) for x in grid]
    best = int(np.argmax(values))
    lo, hi = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
    if hi > lo:
        refined = minimize_scalar(lambda t: -bound(math.exp(t)), method="bounded",
                                  bounds=(math.log(lo), math.log(hi)),
                                  options={"xatol": 1e-10})
        return max(values[best], -float(refined.fun))
    return values[best]


def minimax_lower_bound_per_source(K: int, d: int, d1: int, n: int, estimator: str,
                                   p_y: np.ndarray | None = None, *, side: float,
                                   condition_nonempty: bool = True) -> np.ndarray:
    """Lower bounds on the per-source Bayes risks B_y (shape (K,)), for the class `estimator`.

    Multi-source: max(A_d1(n_y), A_{d-d1}(n)); single-source: A_d(n_y). With
    `condition_nonempty`, n_y is conditioned on n_y >= 1 (as in the MLE's exact risk).
    """
    K = check_int("K", K, minimum=1)
    d = check_int("d", d, minimum=1)
    d1 = check_int("d1", d1, minimum=0, maximum=d)
    n = check_int("n", n, minimum=1)
    check_choice("estimator", estimator, ESTIMATORS)
    side = check_float("side", side, minimum=0.0)
    p_y = np.full(K, 1.0 / K) if p_y is None else check_source_distribution(p_y, K)
    specific_dims = d if estimator == "single" else d1
    shared = 0.0
    if estimator == "multi" and d1 < d:
        shared = assouad_block_bound(d - d1, np.array([n]), np.array([1.0]), side)
    out = np.zeros(K)
    cache: dict[float, float] = {}
    for k, p in enumerate(p_y):
        if p == 0:
            out[k] = np.nan
            continue
        if p not in cache:
            if condition_nonempty:
                counts, weights = nonempty_count_law(n, float(p))
            else:
                counts = np.arange(n + 1)
                weights = stats.binom.pmf(counts, n, float(p))
            cache[p] = assouad_block_bound(specific_dims, counts, weights, side)
        out[k] = max(cache[p], shared)
    return out


def minimax_lower_bound(K: int, d: int, d1: int, n: int, estimator: str,
                        p_y: np.ndarray | None = None, *, side: float,
                        condition_nonempty: bool = True) -> float:
    """Lower bound on inf_{p_hat} sup_{class} of the average-TV risk R' (module docstring)."""
    p = np.full(K, 1.0 / K) if p_y is None else check_source_distribution(p_y, K)
    per_source = minimax_lower_bound_per_source(K, d, d1, n, estimator, p, side=side,
                                                condition_nonempty=condition_nonempty)
    return float(np.dot(p[p > 0], per_source[p > 0]))


def assouad_constant() -> float:
    """lim_{N -> inf} A_r(N) / sqrt(r / N) for r / N -> 0: max_t t (1 - erf(t / (2 sqrt 2)))
    / (4 sqrt(2 pi)), about 0.068."""
    result = minimize_scalar(lambda t: -t * (1.0 - erf(t / (2.0 * SQRT2))), bounds=(0.1, 5.0),
                             method="bounded", options={"xatol": 1e-12})
    return float(-result.fun / (4.0 * math.sqrt(2.0 * math.pi)))


__all__ = ["assouad_block_bound", "assouad_constant", "minimax_lower_bound",
           "minimax_lower_bound_per_source"]
