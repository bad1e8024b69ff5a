"""The paper's rates for the Gaussian instantiation and the multi/single bound ratio.

Poster (Wang et al. 2025): R(multi) = O~(sqrt(((K-1) d1 + d) / n)) and
R(single) = O~(sqrt(K d / n)).
Their ratio is sqrt(1 - (K-1)/K * beta_sim) with beta_sim = (d - d1) / d: our algebra from the
poster's two rates; a secondary summary of the paper ([SEC] in the reference digest) says the
paper states this form and reads beta_sim as the fraction of shared parameters for deep models.
The constants and log factors hidden in O~ could not be obtained, so every "theory" curve here
is the rate itself with constant 1.
"""

from __future__ import annotations

import numpy as np


def free_parameters_multi(K: int, d: int, d1: int) -> int:
    """Number of free mean coordinates of the multi-source Gaussian class: (K-1) d1 + d."""
    return (K - 1) * d1 + d


def free_parameters_single(K: int, d: int) -> int:
    """Number of free mean coordinates of K separate Gaussians: K d."""
    return K * d


def gaussian_rate_multi(K: int, d: int, d1: int, n: float) -> float:
    """sqrt(((K-1) d1 + d) / n): the multi-source rate with constant 1 (as the official plot)."""
    return float(np.sqrt(free_parameters_multi(K, d, d1) / n))


def gaussian_rate_single(K: int, d: int, n: float) -> float:
    """sqrt(K d / n): the single-source rate with constant 1."""
    return float(np.sqrt(free_parameters_single(K, d) / n))


def bound_ratio(K: int | np.ndarray, beta_sim: float | np.ndarray) -> np.ndarray:
    """Multi/single bound ratio sqrt(1 - (K-1)/K * beta_sim), beta_sim the shared fraction."""
    K = np.asarray(K, float)
    return np.sqrt(1.0 - (K - 1.0) / K * np.asarray(beta_sim, float))


def parameter_count_ratio(shared: int, specific: int, K: int) -> float:
    """sqrt of (shared + K specific) / (K (shared + specific)): the same ratio from raw counts."""
    return float(np.sqrt((shared + K * specific) / (K * (shared + specific))))
