"""Data-generating processes: K sources sharing a parameter psi, each with its own phi_k.

The Gaussian family is the paper's instantiation: X | k ~ N(mu_k, I_d), where the first d1
coordinates of mu_k are source-specific (phi_k) and the last d - d1 are shared (psi).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from multisource.common.validation import InputError, check_int


def shared_dimension(sim: float, d: int) -> int:
    """The official code's number of shared coordinates: int(sim * d) (Python truncation)."""
    return int(sim * d)


def uniform_source_distribution(K: int) -> np.ndarray:
    """p_Y uniform over K sources (the paper's simulations)."""
    return np.full(K, 1.0 / K)


def check_source_distribution(p_y: np.ndarray, K: int) -> np.ndarray:
    """Validate a source distribution p_Y of length K (non-negative, sums to 1)."""
    p_y = np.asarray(p_y, float)
    if p_y.shape != (K,):
        raise InputError(f"p_y must have length K={K}, got shape {p_y.shape}")
    if np.any(p_y < 0) or not np.isclose(p_y.sum(), 1.0):
        raise InputError("p_y must be non-negative and sum to 1")
    return p_y


def nonempty_count_law(n: int, p: float, tail: float = 1e-15) -> tuple[np.ndarray, np.ndarray]:
    """The counts m >= 1 that carry the mass of n_k ~ Binomial(n, p) given n_k >= 1, and their
    conditional probabilities. Counts beyond probability `tail` in either tail are dropped, so
    the returned weights sum to at least 1 - 2 tail."""
    n = check_int("n", n, minimum=1)
    if not 0.0 < p <= 1.0:
        raise InputError(f"p must be a probability in (0, 1], got {p}")
    law = stats.binom(n, p)
    lo = max(1, int(law.ppf(tail)) - 1)
    hi = min(n, int(law.isf(tail)) + 1)
    m = np.arange(lo, hi + 1)
    return m, law.pmf(m) / law.sf(0)


@dataclass(frozen=True)
class GaussianSources:
    """K Gaussian sources N(mu_k, I_d); source k (1-based) has mean k on its first d1 coordinates
    and 0 on the d - d1 shared ones, as in the paper's simulation code.

    p_y: the source distribution (uniform when omitted).
    """

    K: int
    d: int
    d1: int
    p_y: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        check_int("K", self.K, minimum=1)
        check_int("d", self.d, minimum=1)
        check_int("d1", self.d1, minimum=0, maximum=self.d)
        p_y = uniform_source_distribution(self.K) if self.p_y is None else self.p_y
        object.__setattr__(self, "p_y", check_source_distribution(p_y, self.K))

    @property
    def d_shared(self) -> int:
        """Number of shared coordinates d - d1."""
        return self.d - self.d1

    @property
    def beta_sim(self) -> float:
        """The shared fraction (d - d1) / d."""
        return self.d_shared / self.d

    @property
    def means(self) -> np.ndarray:
        """True means, shape (K, d)."""
        means = np.zeros((self.K, self.d))
        means[:, : self.d1] = np.arange(1, self.K + 1)[:, None]
        return means

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Draw n i.i.d. pairs (x, y): y ~ p_Y (labels 0..K-1), x | y ~ N(mu_y, I)."""
        n = check_int("n", n, minimum=1)
        y = rng.choice(self.K, size=n, p=self.p_y)
        x = self.means[y] + rng.standard_normal((n, self.d))
        return x, y
