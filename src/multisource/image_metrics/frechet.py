"""Frechet distance and KID on feature vectors (any extractor).

FD(N(mu1, S1), N(mu2, S2)) = |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2); the trace
of the matrix square root is the sum of square roots of the eigenvalues of the symmetric PSD
matrix S1^1/2 S2 S1^1/2, which avoids a non-symmetric `sqrtm`.

KID (Binkowski et al. 2018) is the unbiased MMD^2 estimator with the cubic polynomial kernel
k(x, y) = (x.y / d + 1)^3, averaged over random subsets of equal size.
"""

from __future__ import annotations

import numpy as np

from multisource.common.validation import InputError, check_int


def _as_features(name: str, features: np.ndarray, min_rows: int = 2) -> np.ndarray:
    array = np.asarray(features, dtype=np.float64)
    if array.ndim != 2 or array.shape[0] < min_rows:
        raise InputError(f"{name} must be a 2-D array with at least {min_rows} rows, "
                         f"got shape {array.shape}")
    if not np.isfinite(array).all():
        raise InputError(f"{name} must be finite")
    return array


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased) covariance of features [N, D]."""
    array = _as_features("features", features)
    return array.mean(axis=0), np.atleast_2d(np.cov(array, rowvar=False))


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray,
                     sigma2: np.ndarray) -> float:
    """Frechet (2-Wasserstein squared) distance between two Gaussians."""
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or \
            sigma1.shape != (mu1.size, mu1.size):
        raise InputError(f"mean/covariance shapes must agree, got {mu1.shape}, {sigma1.shape}, "
                         f"{mu2.shape}, {sigma2.shape}")
    root1 = _psd_sqrt(sigma1)
    middle = root1 @ sigma2 @ root1
    cross = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0.0, None)).sum()
    value = float(((mu1 - mu2) ** 2).sum() + np.trace(sigma1) + np.trace(sigma2) - 2 * cross)
    return max(value, 0.0)


def frechet_distance_features(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """Frechet distance between the Gaussian fits of two feature sets [N, D] and [M, D]."""
    mu_a, sigma_a = gaussian_stats(features_a)
    mu_b, sigma_b = gaussian_stats(features_b)
    return frechet_distance(mu_a, sigma_a, mu_b, sigma_b)


def _mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    d = x.shape[1]
    kxx = (x @ x.T / d + 1.0) ** 3
    kyy = (y @ y.T / d + 1.0) ** 3
    kxy = (x @ y.T / d + 1.0) ** 3
    m, n = len(x), len(y)
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1))
                 + (kyy.sum() - np.trace(kyy)) / (n * (n - 1)) - 2.0 * kxy.mean())


def kernel_inception_distance(features_a: np.ndarray, features_b: np.ndarray, *,
                              num_subsets: int = 50, subset_size: int = 200,
                              seed: int = 0) -> tuple[float, float]:
    """KID (unbiased MMD^2, cubic kernel): mean and standard deviation over random subsets.

    The subset size is capped at the smaller set's size; with `num_subsets=1` and full-size
    subsets it is the plain unbiased estimator on all the data.
    """
    a = _as_features("features_a", features_a)
    b = _as_features("features_b", features_b)
    if a.shape[1] != b.shape[1]:
        raise InputError(f"feature dimensions differ: {a.shape[1]} vs {b.shape[1]}")
    num_subsets = check_int("num_subsets", num_subsets, minimum=1, maximum=10_000)
    size = min(check_int("subset_size", subset_size, minimum=2), len(a), len(b))
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(num_subsets):
        ia = rng.choice(len(a), size, replace=False)
        ib = rng.choice(len(b), size, replace=False)
        values.append(_mmd2_unbiased(a[ia], b[ib]))
    return float(np.mean(values)), float(np.std(values))
