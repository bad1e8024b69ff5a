"""The large-n limit of the exact crossover n* relative to the squared-error count n*_MSE (ours).

Take n -> infinity with n * delta^2 = c^2 fixed (the boundary delta*(n) ~ n^{-1/2}). The counts
concentrate, n_k / n -> p_k, M / n -> p_G (the shifted group's probability), and every error
shrinks like n^{-1/2}: sqrt(n) times source k's error is

- separate: N(0, I_d / p_k);
- pooled:   N(0, I_{d1} / p_k) on the specific block and N(beta_k, I_{d_s}) on the shared one,
  |beta_k| = c |p_G - 1[k in G]|.

TV(N(e, I), N(0, I)) = 2 Phi(|e| / 2) - 1 = |e| / sqrt(2 pi) + O(|e|^3), so both expected risks
are n^{-1/2} / sqrt(2 pi) times sum_k p_k E|sqrt(n) e_k| + o(n^{-1/2}), and the crossover is
the c* at which the two weighted mean norms are equal. Since n*_MSE delta^2 =
(K - 1) d_s / sum_k p_k (p_G - 1[k in G])^2 is also fixed, the ratio n* / n*_MSE tends to

    r = c*^2 * sum_k p_k (p_G - 1[k in G])^2 / ((K - 1) d_s).

A squared-error count charges the bias by |beta|^2 and the noise by its variance; the TV (to
first order a norm) charges both by E|e|, which grows more slowly than |e|^2 in the bias. The
odd source, with the large bias (1 - p_G) delta, is charged less than the count charges it,
while the other sources keep their gain, so pooling wins longer: r grows with K. With two
balanced sources the biases are equal and r is about 1.

E|Z| for Z with independent blocks uses E sqrt(Q) = (1 / (2 sqrt(pi))) int_0^inf (1 - E e^{-tQ})
t^{-3/2} dt, with E e^{-tQ} a product of (non-central) chi-square Laplace transforms.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import integrate, optimize

from multisource.pooling import misspecified as ms


def mean_norm(blocks: list[tuple[int, float, float]]) -> float:
    """E|Z| for Z with independent blocks (dof h, variance s2 per coordinate, squared mean
    norm lam): E sqrt(Q), Q = sum_blocks s2 * chi2'_h(lam / s2)."""
    blocks = [(h, s2, lam) for h, s2, lam in blocks if h > 0]

    def log_laplace(t: float) -> float:
        return sum(-0.5 * h * math.log1p(2 * t * s2) - lam * t / (1 + 2 * t * s2)
                   for h, s2, lam in blocks)

    def integrand(u: float) -> float:    # t = e^u: dt t^{-3/2} = e^{-u/2} du
        return -math.expm1(log_laplace(math.exp(u))) * math.exp(-0.5 * u)

    # the integrand grows like e^{u/2} for u << 0 and decays like e^{-u/2} for u >> 0
    value = sum(integrate.quad(integrand, a, b, limit=200, epsabs=1e-14, epsrel=1e-12)[0]
                for a, b in ((-80.0, -10.0), (-10.0, 0.0), (0.0, 10.0), (10.0, 80.0)))
    return value / (2 * math.sqrt(math.pi))


def scaled_risks(setting: ms.MisspecifiedGaussian, c: float) -> tuple[float, float]:
    """(pooled, separate) sum_k p_k E|sqrt(n) e_k| in the limit, at n delta^2 = c^2."""
    p, d1, ds = setting.p, setting.d1, setting.d_shared
    pooled = separate = 0.0
    for k in range(setting.K):
        pull = setting.p_group - float(setting.in_group[k])
        pooled += p[k] * mean_norm([(d1, 1 / p[k], 0.0), (ds, 1.0, (c * pull) ** 2)])
        separate += p[k] * mean_norm([(setting.d, 1 / p[k], 0.0)])
    return pooled, separate


def limit_boundary(setting: ms.MisspecifiedGaussian) -> float:
    """c* = lim sqrt(n) delta*(n): the scaled distance at which the two risks are equal."""
    def difference(c: float) -> float:
        pooled, separate = scaled_risks(setting, c)
        return pooled - separate

    hi = 1.0
    while difference(hi) <= 0:
        hi *= 2
    return float(optimize.brentq(difference, 0.0, hi, xtol=1e-12, rtol=1e-12))


def limit_ratio(setting: ms.MisspecifiedGaussian) -> float:
    """lim n* / n*_MSE as n -> infinity with n delta^2 fixed (`setting.delta` is not used)."""
    pulls = setting.p_group - setting.in_group.astype(float)
    bias_weight = float(setting.p @ pulls**2)
    c_star = limit_boundary(setting)
    return c_star**2 * bias_weight / ((setting.K - 1) * setting.d_shared)


def limit_ratios(Ks: tuple[int, ...], d: int, d1: int) -> dict[int, float]:
    """The limit ratio for one odd source among K balanced ones, for each K."""
    return {K: limit_ratio(ms.MisspecifiedGaussian(K, d, d1, 1.0)) for K in Ks}


def n_star_rule(setting: ms.MisspecifiedGaussian) -> float:
    """The rule the limit gives: n* ~ r * n*_MSE (accurate at large n*, see chapter 8)."""
    return limit_ratio(setting) * ms.crossover_mse(setting)


__all__ = ["limit_boundary", "limit_ratio", "limit_ratios", "mean_norm", "n_star_rule",
           "scaled_risks"]


def _check() -> None:  # pragma: no cover - a quick look from the command line
    for d1 in (5, 0):
        print(d1, {K: round(v, 4) for K, v in limit_ratios((2, 5, 10), 10, d1).items()})
    print(np.round(mean_norm([(3, 1.0, 0.0)]), 6), np.sqrt(2) * math.gamma(2) / math.gamma(1.5))


if __name__ == "__main__":  # pragma: no cover
    _check()
