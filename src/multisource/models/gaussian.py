"""Closed-form conditional MLE for the Gaussian location family with known identity covariance.

Single-source: each source's mean is its sample mean (n_k points). Multi-source: the specific
coordinates are per-source sample means, and the shared coordinates (the last d - d1) are the
mean over all n points, because the joint likelihood ties them across sources.
"""

from __future__ import annotations

import numpy as np


def source_means(x: np.ndarray, y: np.ndarray, K: int) -> np.ndarray:
    """Per-source sample means, shape (K, d); a source with no samples gets a NaN row."""
    x = np.asarray(x, float)
    sums = np.zeros((K, x.shape[1]))
    np.add.at(sums, y, x)
    counts = np.bincount(y, minlength=K)[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts


def fit_single(x: np.ndarray, y: np.ndarray, K: int) -> np.ndarray:
    """Single-source MLE: K separate sample means, shape (K, d)."""
    return source_means(x, y, K)


def fit_multi(x: np.ndarray, y: np.ndarray, K: int, d1: int) -> np.ndarray:
    """Multi-source MLE: per-source means on the first d1 coordinates, pooled mean on the rest."""
    means = source_means(x, y, K)
    if d1 < means.shape[1]:
        means[:, d1:] = np.asarray(x, float)[:, d1:].mean(axis=0)
    return means


def log_density(x: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """log N(x; mean, I) over the last axis (broadcasting)."""
    x = np.asarray(x, float)
    diff = x - np.asarray(mean, float)
    return -0.5 * (diff**2).sum(axis=-1) - 0.5 * x.shape[-1] * np.log(2 * np.pi)
