"""Total-variation distances: closed form, by enumeration, on quadrature grids, and by Monte Carlo;
the Hellinger distance and sqrt(KL) of enumerated distributions.

TV(p, q) = 1/2 * integral |p - q|, always in [0, 1].
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import erf

SQRT2 = math.sqrt(2.0)


def tv_gaussian_identity(mean_a: np.ndarray, mean_b: np.ndarray) -> np.ndarray:
    """Exact TV between N(mean_a, I) and N(mean_b, I), over the last axis.

    Projecting on the direction of mean_a - mean_b leaves two unit 1-D Gaussians a distance
    delta apart, so TV = 2 Phi(delta / 2) - 1 = erf(delta / (2 sqrt 2)).
    """
    delta = np.linalg.norm(np.asarray(mean_a, float) - np.asarray(mean_b, float), axis=-1)
    return tv_from_distance(delta)


def tv_from_distance(delta: np.ndarray | float) -> np.ndarray:
    """TV between two unit-covariance Gaussians whose means are `delta` apart (Mahalanobis)."""
    return erf(np.asarray(delta, float) / (2.0 * SQRT2))


def tv_discrete(p: np.ndarray, q: np.ndarray, axis: int = -1) -> np.ndarray:
    """Exact TV between probability vectors (enumerated distributions) along `axis`."""
    return 0.5 * np.abs(np.asarray(p, float) - np.asarray(q, float)).sum(axis=axis)


def hellinger_discrete(p: np.ndarray, q: np.ndarray, axis: int = -1) -> np.ndarray:
    """Exact Hellinger distance sqrt(1 - sum sqrt(p q)) between probability vectors, in [0, 1]."""
    affinity = np.sqrt(np.clip(np.asarray(p, float) * np.asarray(q, float), 0.0, None)
                       ).sum(axis=axis)
    return np.sqrt(np.clip(1.0 - affinity, 0.0, None))


def sqrt_kl_discrete(p: np.ndarray, q: np.ndarray, axis: int = -1) -> np.ndarray:
    """sqrt(KL(p || q)) between probability vectors (p the truth; inf where q = 0 < p)."""
    p, q = np.asarray(p, float), np.asarray(q, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * (np.log(p) - np.log(q)), 0.0)
    return np.sqrt(np.clip(terms.sum(axis=axis), 0.0, None))


def tv_on_grid(p: np.ndarray, q: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """TV between densities tabulated on a quadrature grid: 1/2 * sum_i w_i |p_i - q_i|.

    `p` and `q` have the grid on their last axes, matching the shape of `weights`.
    """
    diff = np.abs(np.asarray(p, float) - np.asarray(q, float)) * np.asarray(weights, float)
    axes = tuple(range(diff.ndim - np.ndim(weights), diff.ndim))
    return 0.5 * diff.sum(axis=axes)


def tv_density_ratio_mc(ratio: np.ndarray, axis: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """The official Monte-Carlo TV estimate and its standard error.

    With x_i ~ p*, TV = 1/2 E|p_hat(x)/p*(x) - 1|. Returns (estimate, standard error) along `axis`.
    """
    terms = 0.5 * np.abs(np.asarray(ratio, float) - 1.0)
    count = terms.shape[axis]
    estimate = terms.mean(axis=axis)
    stderr = terms.std(axis=axis, ddof=1) / math.sqrt(count) if count > 1 else np.nan * estimate
    return estimate, stderr
