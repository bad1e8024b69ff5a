"""Theorem 3.2 with explicit constants, for the Gaussian instantiation: OUR construction.

The paper's Theorem 3.2 is available to this project only as the poster's O(.) statement
R_TV(p_hat) = O(sqrt(log N_[](1/n; P, L1) / n)). Its constants, its confidence level and its
exact assumptions are not available. Everything below (the statement, every constant, the
proof) is this project's own. It follows the classical finite-bracketing argument for the
maximum-likelihood estimator, the tool the poster cites (van de Geer 2000; Ge et al. 2024): a
Chernoff bound on the likelihood ratio of each bracket's upper end, then a union bound over
the brackets. The constants were worked out here, not taken from any of these sources.

Setting
-------
K sources with uniform p_Y. X | y ~ N(mu_y, I_d). The class P holds the conditionals whose
means lie in the box [-a, K + a]^d, a = `box_margin`. For "multi" the last d - d1
coordinates are shared by all sources; for "single" they are not. The truth (mean k on source
k's first d1 coordinates, 0 on the others) lies in P (realizable). p_hat is any maximiser of
the conditional log-likelihood sum_i log p(x_i | y_i) over P. R(p) = E_Y TV(p(.|Y), p*(.|Y)).

Brackets: pairs (l_j, u_j) of functions of (x, y), j = 1..N, with l_j <= u_j, such that every
p in P lies in one of them and E_Y int (u_j - l_j)(x, Y) dx <= epsilon. (Chapter 3's sup_y
size is larger, so its brackets qualify.) Chapter 3's construction gives
log N <= L(epsilon) = D log m(epsilon, d), with D = (K-1) d1 + d (multi) or K d (single), and
m the per-axis cell count of `bracketing.cells_per_axis` for a box of side K + 2a.

Statement (ours)
----------------
Let g(t) = sqrt((1 + epsilon/2) (epsilon + 2 t)) + epsilon/2.

(a) For every s > 0, P(R(p_hat) > g(s / n)) <= N exp(-s). So with probability at least
    1 - delta, R(p_hat) <= g((log N + log(1/delta)) / n).
(b) E R(p_hat) <= g(L/n) + g'(L/n) / n, where g'(t) = (1 + epsilon/2) / sqrt((1 + epsilon/2)
    (epsilon + 2 t)).

At epsilon = 1/n, (b) is sqrt(2 log N_[](1/n) / n) (1 + O(1/n)) + O(1/n). This is the
poster's form, with the constant sqrt(2).

Proof
-----
1. Let j be the bracket of p_hat. Realizability and maximality give
   sum_i log u_j(Z_i) >= sum_i log p_hat(Z_i) >= sum_i log p*(Z_i).
2. Chernoff with exponent 1/2. For a fixed j, P(sum_i log(u_j / p*)(Z_i) >= 0) <= rho_j^n,
   where rho_j = E sqrt(u_j / p*)(X, Y) = E_Y int sqrt(u_j p*) dx.
3. Union over the brackets with rho_j^n < e^{-s}: P(rho_j(p_hat)^n < e^{-s}) <= N e^{-s}.
4. Deterministically, R(p_hat) <= g(1 - rho_j) <= g(-log rho_j). Write
   A_y = int (sqrt u_y - sqrt p*_y)^2 = int u_y + 1 - 2 int sqrt(u_y p*_y).
   Since E_Y int u_y <= 1 + epsilon (because int l_y <= 1), E_Y A_y <= epsilon + 2 (1 - rho).
   Cauchy-Schwarz in x and then in Y gives
   E_Y ||u_y - p*_y||_1 <= sqrt(E_Y A_y) sqrt(2 E_Y (int u_y + 1)).
   Also ||u_y - p_hat_y||_1 <= int (u_y - l_y). The triangle inequality then gives
   R = E_Y ||p_hat_y - p*_y||_1 / 2 <= g(1 - rho).
5. (a) follows from 3 and 4. For (b), integrate the tail: the right side is at most
   g(L/n) + int_L^inf N e^{-s} g'(s/n) / n ds, and that integral is at most g'(L/n) / n,
   because g' decreases and N e^{-L} <= 1.

From the bound to the book's exact risk
---------------------------------------
The book computes E_book = sum_k p_k E[TV_k(p_tilde) | n_k >= 1] for the closed-form
sample-mean fit p_tilde, which is not box-constrained. Let G be the event that every source has
a point (when the class has source-specific coordinates) and every fitted coordinate lies in the
box. On G the log-likelihood is strictly concave and its maximiser is in the box, so
p_hat = p_tilde. Hence

    E_book <= (E R(p_hat) + P(G^c)) / (1 - q),    q = (1 - 1/K)^n (0 if no specific coords),
    P(G^c) <= K q + sum over fitted coordinates of E[2 Phi(-a sqrt(n_c)); n_k >= 1].

Here n_c is n_k for a source's own coordinate and n for a pooled shared one. The truth lies at
distance >= a from every face of the box. The bound compared with E_book is
min(1, that right-hand side); a value above 1 is vacuous.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

from multisource.common.validation import InputError, check_choice, check_float, check_int
from multisource.theory import bracketing as br

ESTIMATORS = ("multi", "single")


def risk_function(t: float, epsilon: float) -> float:
    """g(t) = sqrt((1 + eps/2)(eps + 2 t)) + eps/2: the risk bound for Bhattacharyya gap t."""
    return math.sqrt((1.0 + epsilon / 2.0) * (epsilon + 2.0 * t)) + epsilon / 2.0


def risk_function_slope(t: float, epsilon: float) -> float:
    """g'(t) = (1 + eps/2) / sqrt((1 + eps/2)(eps + 2 t))."""
    return (1.0 + epsilon / 2.0) / math.sqrt((1.0 + epsilon / 2.0) * (epsilon + 2.0 * t))


def high_probability_bound(log_brackets: float, n: int, epsilon: float, delta: float) -> float:
    """(a): with probability >= 1 - delta, R(p_hat) <= g((log N + log(1/delta)) / n)."""
    delta = check_float("delta", delta, minimum=0.0, maximum=1.0)
    if delta <= 0.0:
        raise InputError("delta must be > 0")
    return risk_function((log_brackets + math.log(1.0 / delta)) / n, epsilon)


def expected_risk_bound(log_brackets: float, n: int, epsilon: float) -> float:
    """(b): E R(p_hat) <= g(L/n) + g'(L/n)/n (not capped at 1)."""
    t = max(log_brackets, 0.0) / n
    return risk_function(t, epsilon) + risk_function_slope(t, epsilon) / n


def probability_empty(K: int, n: int) -> float:
    """q = (1 - 1/K)^n: the probability that a given source gets no point (uniform p_Y)."""
    return (1.0 - 1.0 / K) ** n


def probability_outside_box(K: int, d: int, d1: int, n: int, estimator: str,
                            box_margin: float) -> float:
    """Union bound on P(G^c): some source with no point, or some fitted coordinate outside the
    box. Each coordinate is N(truth, 1/n_c), and the truth is >= box_margin from the faces."""
    specific = d if estimator == "single" else d1
    shared = 0 if estimator == "single" else d - d1
    total = shared * 2.0 * stats.norm.sf(box_margin * math.sqrt(n))
    if specific > 0:
        counts = np.arange(1, n + 1)
        pmf = stats.binom.pmf(counts, n, 1.0 / K)
        tails = 2.0 * stats.norm.sf(box_margin * np.sqrt(counts))
        total += K * probability_empty(K, n) + K * specific * float(np.dot(pmf, tails))
    return float(min(1.0, total))


@dataclass(frozen=True)
class ExplicitBound:
    """The bound at one setting: its inputs, its terms and the bound on the book's risk."""

    K: int
    d: int
    d1: int
    n: int
    estimator: str
    epsilon: float
    log_brackets: float        # L = log N_[](epsilon), ours (chapter 3), unless overridden
    mle_bound: float           # (b), the bound on E R(p_hat), uncapped
    p_outside: float           # the union bound on P(G^c)
    q_empty: float             # the conditioning factor q (0 without specific coordinates)
    bound: float               # (mle_bound + p_outside) / (1 - q): on E_book, uncapped

    @property
    def vacuous(self) -> bool:
        """True when the bound is at least 1, which every TV risk satisfies anyway."""
        return self.bound >= 1.0


def explicit_bound(K: int, d: int, d1: int, n: int, estimator: str, *, box_margin: float = 1.0,
                   epsilon: float | None = None, log_brackets: float | None = None
                   ) -> ExplicitBound:
    """Our explicit Theorem 3.2 bound on the book's exact expected risk.

    epsilon defaults to 1/n, the theorem's scale. log_brackets defaults to chapter 3's count
    D log m(epsilon, d) for the box of side K + 2 box_margin. Pass another value only to test
    that a wrong bracketing number is caught.
    """
    K = check_int("K", K, minimum=1)
    d = check_int("d", d, minimum=1)
    d1 = check_int("d1", d1, minimum=0, maximum=d)
    n = check_int("n", n, minimum=1)
    check_choice("estimator", estimator, ESTIMATORS)
    box_margin = check_float("box_margin", box_margin, minimum=0.0)
    if box_margin <= 0.0:
        raise InputError("box_margin must be > 0")
    eps = 1.0 / n if epsilon is None else check_float("epsilon", epsilon, minimum=0.0)
    if eps <= 0.0:
        raise InputError("epsilon must be > 0")
    if log_brackets is None:
        log_brackets = br.log_bracket_count(eps, K, d, d1, estimator, K + 2.0 * box_margin)
    mle = expected_risk_bound(float(log_brackets), n, eps)
    p_out = probability_outside_box(K, d, d1, n, estimator, box_margin)
    has_specific = estimator == "single" or d1 > 0
    q = probability_empty(K, n) if has_specific and K > 1 else 0.0
    return ExplicitBound(K, d, d1, n, estimator, eps, float(log_brackets), mle, p_out, q,
                         (mle + p_out) / (1.0 - q))


def check_bound_holds(bounds: np.ndarray, exact: np.ndarray) -> float:
    """The check: bound >= exact expected risk at every point. Returns the smallest ratio
    bound / exact; raises AssertionError naming the first point where the bound fails."""
    bounds = np.asarray(bounds, float)
    exact = np.asarray(exact, float)
    if bounds.shape != exact.shape or bounds.ndim != 1 or bounds.size == 0:
        raise InputError("bounds and exact must be 1-D arrays of equal, non-zero length")
    if np.any(exact <= 0):
        raise InputError("exact risks must be positive")
    capped = np.minimum(bounds, 1.0)
    failed = np.flatnonzero(capped < exact)
    assert failed.size == 0, (
        f"the explicit bound fails at point {int(failed[0])}: bound {capped[failed[0]]:.4g} < "
        f"exact risk {exact[failed[0]]:.4g}")
    return float(np.min(bounds / exact))


def entropy_detection_factor(setting: ExplicitBound, exact: float, box_margin: float = 1.0
                             ) -> float:
    """The smallest factor F such that dividing the bracketing entropy by F makes the bound
    fall below `exact` at this setting. Any entropy error smaller than F goes undetected. The
    result is inf when even zero entropy leaves the bound above `exact`."""
    def gap(log_f: float) -> float:
        wrong = explicit_bound(setting.K, setting.d, setting.d1, setting.n, setting.estimator,
                               box_margin=box_margin, epsilon=setting.epsilon,
                               log_brackets=setting.log_brackets / math.exp(log_f))
        return wrong.bound - exact

    if gap(0.0) < 0.0:
        return 1.0
    if gap(60.0) >= 0.0:
        return math.inf
    return math.exp(optimize.brentq(gap, 0.0, 60.0, xtol=1e-10))


__all__ = [
    "ESTIMATORS",
    "ExplicitBound",
    "check_bound_holds",
    "entropy_detection_factor",
    "expected_risk_bound",
    "explicit_bound",
    "high_probability_bound",
    "probability_empty",
    "probability_outside_box",
    "risk_function",
    "risk_function_slope",
]
