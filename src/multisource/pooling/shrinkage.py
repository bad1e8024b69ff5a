"""Partial pooling by sample size: the random-intercept model, fitted by REML from group sums.

Model (the paper's structure: per-source means, a shared variance): for source k,
y_ki = x_ki' beta + b_k + e_ki, with b_k ~ N(0, tau^2) and e_ki ~ N(0, sigma^2). The
predicted source effect is b_k = gamma / (1 + n_k gamma) * sum_i (y_ki - x_ki' beta), with
gamma = tau^2 / sigma^2: a source with few samples is shrunk hard towards the pooled fit, one
with many keeps nearly its own mean. With x = 1 (the intercept only) this is the one-way
random-effects model of a mean.

Everything needed is in per-source sums (n_k, X_k'X_k, X_k'y_k, y_k'y_k, X_k'1, 1'y_k), so
the fit takes one pass over the data. tau^2 and sigma^2 are restricted maximum likelihood
(REML) estimates: sigma^2 is profiled out, and the profile is minimised over log gamma (a grid
on [-25, 25], then golden-section search), with
gamma = 0 (no between-source variance: the pooled fit) also considered. The construction is
standard (Henderson's mixed-model equations); the code is ours.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from multisource.common.validation import InputError


@dataclass(frozen=True)
class GroupSums:
    """Per-source sums of a regression of y on X (X includes the intercept column)."""

    n: np.ndarray      # (K,)
    xtx: np.ndarray    # (K, q, q)
    xty: np.ndarray    # (K, q)
    yty: np.ndarray    # (K,)
    xsum: np.ndarray   # (K, q)
    ysum: np.ndarray   # (K,)

    def __add__(self, other: GroupSums) -> GroupSums:
        return GroupSums(*(a + b for a, b in zip(self.astuple(), other.astuple(), strict=True)))

    def __sub__(self, other: GroupSums) -> GroupSums:
        return GroupSums(*(a - b for a, b in zip(self.astuple(), other.astuple(), strict=True)))

    def astuple(self) -> tuple[np.ndarray, ...]:
        """The six arrays in field order."""
        return (self.n, self.xtx, self.xty, self.yty, self.xsum, self.ysum)


def group_sums(X: np.ndarray, y: np.ndarray, groups: np.ndarray, K: int) -> GroupSums:
    """Sums of X (n, q), y (n,) per group label 0..K-1, in one pass."""
    X = np.asarray(X, float)
    y = np.asarray(y, float)
    onehot = (np.asarray(groups)[:, None] == np.arange(K)).astype(float)
    n = onehot.sum(axis=0)
    xtx = np.einsum("ik,ia,ib->kab", onehot, X, X)
    return GroupSums(n, xtx, onehot.T @ (X * y[:, None]), onehot.T @ (y * y), onehot.T @ X,
                     onehot.T @ y)


@dataclass(frozen=True)
class RandomIntercept:
    """REML fit: fixed effects beta, variances, predicted source effects b_k."""

    beta: np.ndarray
    sigma2: float
    tau2: float
    effects: np.ndarray


def shrinkage_weights(fit: RandomIntercept, n: np.ndarray) -> np.ndarray:
    """n_k tau^2 / (n_k tau^2 + sigma^2): 0 = fully pooled, 1 = the source's own fit."""
    n = np.asarray(n, float)
    if fit.tau2 <= 0:
        return np.zeros_like(n)
    return n * fit.tau2 / (n * fit.tau2 + fit.sigma2)


def _gls(s: GroupSums, gamma: float) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
    """A = X'V^-1 X sigma^2, beta, residual form R, and c_k = gamma / (1 + n_k gamma)."""
    c = gamma / (1.0 + s.n * gamma)
    A = s.xtx.sum(axis=0) - np.einsum("k,ka,kb->ab", c, s.xsum, s.xsum)
    b = s.xty.sum(axis=0) - (c * s.ysum) @ s.xsum
    beta = np.linalg.solve(A, b)
    R = float(s.yty.sum() - (c * s.ysum**2).sum() - b @ beta)
    return A, beta, R, c


def _profile(s: GroupSums, gamma: float) -> float:
    """-2 x the REML log-likelihood with sigma^2 profiled out (up to a constant)."""
    A, _, R, _ = _gls(s, gamma)
    N, q = float(s.n.sum()), A.shape[0]
    sign, logdet = np.linalg.slogdet(A)
    if sign <= 0 or R <= 0:
        return np.inf
    return (N - q) * np.log(R) + float(np.log1p(s.n * gamma).sum()) + logdet


def _minimise(f: Callable[[float], float], low: float, high: float, grid: int = 101,
              xatol: float = 1e-9) -> float:
    """Minimiser of f on [low, high]: the best point of a grid, then golden-section search
    between its neighbours (no scipy: `advise` starts without it)."""
    points = np.linspace(low, high, grid)
    values = [f(float(t)) for t in points]
    i = int(np.argmin(values))
    a, b = float(points[max(i - 1, 0)]), float(points[min(i + 1, grid - 1)])
    ratio = (np.sqrt(5.0) - 1.0) / 2.0
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = f(c), f(d)
    while b - a > xatol:
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = f(d)
    best = (a + b) / 2
    return best if f(best) <= values[i] else float(points[i])


def fit_random_intercept(s: GroupSums) -> RandomIntercept:
    """REML random-intercept fit from per-source sums (at least 2 sources, N > q)."""
    K, q = s.xsum.shape
    N = float(s.n.sum())
    if K < 2 or q >= N:
        raise InputError(f"a random-intercept fit needs at least 2 sources and more than {q} "
                         "samples")
    gamma = float(np.exp(_minimise(lambda t: _profile(s, float(np.exp(t))), -25.0, 25.0)))
    if _profile(s, 0.0) <= _profile(s, gamma):
        gamma = 0.0
    _, beta, R, c = _gls(s, gamma)
    sigma2 = R / (N - q)
    effects = c * (s.ysum - s.xsum @ beta)
    return RandomIntercept(beta, sigma2, gamma * sigma2, effects)


def _intercept_profile(n: np.ndarray, ysum: np.ndarray, yty: np.ndarray, log_gamma: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """`_profile` for the intercept-only model, every column at once: n (K,), ysum and yty
    (K, p), log_gamma (..., p) -> profile, beta, R (..., p) and c (..., K, p)."""
    gamma = np.exp(log_gamma)[..., None, :]
    nn = n[:, None]
    c = gamma / (1.0 + nn * gamma)
    A = nn.sum() - (c * nn**2).sum(axis=-2)
    b = ysum.sum(axis=0) - (c * ysum * nn).sum(axis=-2)
    beta = b / A
    R = yty.sum(axis=0) - (c * ysum**2).sum(axis=-2) - b * beta
    N = float(n.sum())
    with np.errstate(divide="ignore", invalid="ignore"):
        profile = ((N - 1) * np.log(R) + np.log1p(nn * gamma).sum(axis=-2) + np.log(A))
    return np.where((R > 0) & (A > 0), profile, np.inf), beta, R, c


def fit_random_intercepts(n: np.ndarray, ysum: np.ndarray, yty: np.ndarray
                          ) -> tuple[np.ndarray, np.ndarray]:
    """REML random-intercept fits of every column at once (x = 1): per-source predicted means
    (K, p) and within variances sigma^2 (p,). The same fit as `fit_random_intercept` column
    by column (a grid on log gamma in [-25, 25], golden-section search, gamma = 0 allowed),
    vectorised over the columns."""
    n = np.asarray(n, float)
    N = float(n.sum())
    if n.size < 2 or N <= 1:
        raise InputError("a random-intercept fit needs at least 2 sources and more than 1 "
                         "sample")
    p = ysum.shape[1]
    grid = np.linspace(-25.0, 25.0, 101)
    values = _intercept_profile(n, ysum, yty, np.repeat(grid[:, None], p, axis=1))[0]
    i = np.argmin(values, axis=0)
    a, b = grid[np.maximum(i - 1, 0)], grid[np.minimum(i + 1, grid.size - 1)]
    ratio = (np.sqrt(5.0) - 1.0) / 2.0
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc = _intercept_profile(n, ysum, yty, c)[0]
    fd = _intercept_profile(n, ysum, yty, d)[0]
    for _ in range(64):     # the bracket (width 1) shrinks to 1e-13
        left = fc <= fd
        a, b = np.where(left, a, c), np.where(left, d, b)
        c_new = np.where(left, b - ratio * (b - a), d)
        d_new = np.where(left, c, a + ratio * (b - a))
        f_known = np.where(left, fc, fd)
        evaluate = np.where(left, c_new, d_new)
        f_new = _intercept_profile(n, ysum, yty, evaluate)[0]
        fc, fd = np.where(left, f_new, f_known), np.where(left, f_known, f_new)
        c, d = c_new, d_new
    best = (a + b) / 2
    f_best = _intercept_profile(n, ysum, yty, best)[0]
    best = np.where(f_best <= values[i, np.arange(p)], best, grid[i])
    f_best = np.minimum(f_best, values[i, np.arange(p)])
    gamma = np.exp(best)
    # gamma = 0: the pooled fit (no between-source variance)
    R0 = yty.sum(axis=0) - ysum.sum(axis=0) ** 2 / N
    with np.errstate(divide="ignore"):
        f_zero = np.where(R0 > 0, (N - 1) * np.log(np.maximum(R0, 1e-300)) + np.log(N), np.inf)
    gamma = np.where(f_zero <= f_best, 0.0, gamma)
    nn = n[:, None]
    cc = gamma / (1.0 + nn * gamma)
    A = N - (cc * nn**2).sum(axis=0)
    bb = ysum.sum(axis=0) - (cc * ysum * nn).sum(axis=0)
    beta = bb / A
    R = yty.sum(axis=0) - (cc * ysum**2).sum(axis=0) - bb * beta
    effects = cc * (ysum - nn * beta)
    return beta + effects, R / (N - 1)
