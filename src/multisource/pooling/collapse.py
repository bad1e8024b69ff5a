"""Recursive training on generated data (model collapse), pooled against separate (ours).

The question comes from the model-collapse literature (e.g. Cui, Pehlevan and Lu, "A solvable
model of learning generative diffusion"); the construction and the formulas here are ours.
K Gaussian sources X | k ~ N(mu_k, Sigma) share their covariance. Generation 0 is the truth.
Generation g draws n labelled samples from generation g-1's fitted model (labels from p_Y,
which stays known) and refits:

- pooled (multi-source MLE): per-source means, one covariance = within-source scatter / n,
  a Wishart with n - K degrees of freedom whatever the counts;
- separate: per-source mean and covariance = source scatter / n_k, Wishart with n_k - 1.

Everything is affine-equivariant, so take Sigma = I. Writing the generation-g covariance as
A W_g A^T / n (W_g a fresh standard Wishart), E[(W/n)^-1] = n / (nu - d - 1) I and the
sample mean is independent of the scatter, which gives the exact expectations (our
derivation; `tests/test_pooling.py` checks them against simulated chains):

    E tr Sigma_g / d          = prod_s E[nu_s / N_s]                   (retained variance)
    E log det Sigma_g         = sum_s E[sum_i psi((nu_s - i + 1)/2) + d log(2 / N_s)]
    E tr Sigma_g^-1 / d       = prod_s E[N_s / (nu_s - d - 1)]
    E KL(p*_k || p_hat_k,g)   = 1/2 (E tr Sigma_g^-1 + E (mu_g - mu)^T Sigma_g^-1 (mu_g - mu)
                                     - d + E log det Sigma_g),

with N_s = n, nu_s = n - K (pooled) or N_s = nu_s + 1 = n_k (separate) and the mean term
sum_s d E[1/n_k,s * N_s/(nu_s - d - 1)] prod_{r > s} E[N_r/(nu_r - d - 1)]. The KL splits into
a covariance part 1/2 (E tr Sigma_g^-1 - d + E log det Sigma_g) and a mean part
1/2 E (mu_g - mu)^T Sigma_g^-1 (mu_g - mu) (`kl_covariance`, `kl_mean`); the means are per
source in both fits, so only the covariance part is what pooling shares. Counts are binomial
given n_k >= d + 3 (where the inverse moments exist); simulations redraw data sets that break
this, which differs from the per-source conditioning by at most that probability (below
1e-18 in chapter 8's setting).

`simulate_chains(..., accumulate=True)` is the variant in which nothing is thrown away: the
real samples (those of generation 1, drawn from the truth) and every generation's samples are
kept, and generation g is fitted on all g * n of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import special, stats

from multisource.common.validation import InputError, check_int

ESTIMATORS = ("pooled", "separate")


@dataclass(frozen=True)
class CollapseSetting:
    """K sources in d dimensions with a shared covariance; n samples per generation."""

    K: int
    d: int
    n: int
    p_y: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        check_int("K", self.K, minimum=1)
        check_int("d", self.d, minimum=1)
        check_int("n", self.n, minimum=1)
        if self.n - self.K <= self.d + 1:
            raise InputError(f"n must exceed K + d + 1 = {self.K + self.d + 1}, got {self.n}")

    @property
    def p(self) -> np.ndarray:
        """Source probabilities."""
        return np.full(self.K, 1.0 / self.K) if self.p_y is None else np.asarray(self.p_y, float)

    @property
    def min_count(self) -> int:
        """Smallest per-source count for which every inverse moment is finite: d + 3."""
        return self.d + 3


def _count_law(setting: CollapseSetting, p_k: float) -> tuple[np.ndarray, np.ndarray]:
    law = stats.binom(setting.n, p_k)
    m = np.arange(setting.min_count, setting.n + 1)
    return m, law.pmf(m) / law.sf(setting.min_count - 1)


def _log_det_wishart_mean(nu: np.ndarray, d: int, scale: np.ndarray) -> np.ndarray:
    """E log det(W / scale) for W ~ Wishart_d(nu, I)."""
    i = np.arange(1, d + 1)
    return (special.digamma((np.asarray(nu, float)[..., None] - i + 1) / 2).sum(axis=-1)
            + d * np.log(2.0 / np.asarray(scale, float)))


def exact_curves(setting: CollapseSetting, generations: int, estimator: str) -> pd.DataFrame:
    """Exact E[retained variance], E[log det Sigma_g] and E[average KL] for g = 0..generations."""
    generations = check_int("generations", generations, minimum=1)
    if estimator not in ESTIMATORS:
        raise InputError(f"estimator must be one of {', '.join(ESTIMATORS)}; got {estimator!r}")
    d, n = setting.d, setting.n
    g = np.arange(generations + 1)
    kl = np.zeros(generations + 1)
    kl_mean = np.zeros(generations + 1)
    variance = np.zeros(generations + 1)
    log_det = np.zeros(generations + 1)
    for p_k in setting.p:
        m, w = _count_law(setting, float(p_k))
        if estimator == "pooled":
            nu = n - setting.K
            keep = nu / n                                   # E[nu / N]
            inv = n / (nu - d - 1)                          # E[N / (nu - d - 1)]
            mean_step = float(w @ (1.0 / m)) * inv          # E[1/m * N/(nu - d - 1)]
            ld = float(_log_det_wishart_mean(np.array(nu), d, np.array(n)))
        else:
            keep = float(w @ ((m - 1) / m))
            inv = float(w @ (m / (m - d - 2)))
            mean_step = float(w @ (1.0 / (m - d - 2)))
            ld = float(w @ _log_det_wishart_mean(m - 1, d, m))
        trace_inv = d * inv**g
        # mean term: sum_{s=1}^{g} d * mean_step * inv^(g - s)
        mean_term = d * mean_step * np.array([np.sum(inv ** np.arange(k)) for k in g])
        log_det_g = ld * g
        kl_k = 0.5 * (trace_inv + mean_term - d + log_det_g)
        kl += p_k * kl_k
        kl_mean += p_k * 0.5 * mean_term
        variance += p_k * keep**g
        log_det += p_k * log_det_g
    return pd.DataFrame({"generation": g, "estimator": estimator, "kl": kl,
                         "kl_mean": kl_mean, "kl_covariance": kl - kl_mean,
                         "retained_variance": variance, "log_det": log_det})


def _fit(x: np.ndarray, onehot: np.ndarray, counts: np.ndarray, estimator: str
         ) -> tuple[np.ndarray, np.ndarray]:
    """MLE means (S, K, d) and covariances (S, K, d, d) of labelled samples (S, n, d)."""
    means = np.einsum("snk,snd->skd", onehot, x) / counts[:, :, None]
    centred = x - np.einsum("snk,skd->snd", onehot, means)
    scatter = np.einsum("snk,sni,snj->skij", onehot, centred, centred)
    if estimator == "pooled":
        cov = scatter.sum(axis=1, keepdims=True) / x.shape[1]
        cov = np.broadcast_to(cov, scatter.shape)
    else:
        cov = scatter / counts[:, :, None, None]
    return means, cov


def _average_kl(means: np.ndarray, cov: np.ndarray, p: np.ndarray) -> np.ndarray:
    """sum_k p_k KL(N(0, I) || N(mean_k, cov_k)) per seed (truth: zero means, identity)."""
    d = means.shape[-1]
    inv = np.linalg.inv(cov)
    trace = np.trace(inv, axis1=-2, axis2=-1)
    quad = np.einsum("ski,skij,skj->sk", means, inv, means)
    _, log_det = np.linalg.slogdet(cov)
    return 0.5 * (trace + quad - d + log_det) @ p


def simulate_chains(setting: CollapseSetting, generations: int, n_seeds: int, seed: int,
                    estimator: str, accumulate: bool = False) -> pd.DataFrame:
    """Run `n_seeds` independent chains of recursive training from raw samples.

    Truth: zero means and identity covariance for every source. Returns one row per seed and
    generation: average KL to the truth, retained variance (mean tr Sigma / d over sources) and
    log det (averaged over sources with p_Y). With `accumulate`, generation g is fitted on the
    samples of every generation so far (the real ones included) instead of the last n only.
    """
    if estimator not in ESTIMATORS:
        raise InputError(f"estimator must be one of {', '.join(ESTIMATORS)}; got {estimator!r}")
    generations = check_int("generations", generations, minimum=1)
    S = check_int("n_seeds", n_seeds, minimum=2)
    K, d, n, p = setting.K, setting.d, setting.n, setting.p
    rng = np.random.default_rng(seed)
    means = np.zeros((S, K, d))
    chol = np.broadcast_to(np.eye(d), (S, K, d, d)).copy()
    total_counts = np.zeros((S, K))
    total_sums = np.zeros((S, K, d))
    total_outer = np.zeros((S, K, d, d))
    rows = []
    for g in range(1, generations + 1):
        labels = rng.choice(K, size=(S, n), p=p)
        counts = np.stack([(labels == k).sum(axis=1) for k in range(K)], axis=1)
        while np.any(bad := (counts < setting.min_count).any(axis=1)):
            labels[bad] = rng.choice(K, size=(int(bad.sum()), n), p=p)
            counts = np.stack([(labels == k).sum(axis=1) for k in range(K)], axis=1)
        onehot = (labels[:, :, None] == np.arange(K)).astype(float)
        z = rng.standard_normal((S, n, d))
        x = (np.take_along_axis(means, labels[:, :, None], axis=1)
             + np.einsum("snij,snj->sni",
                         np.take_along_axis(chol, labels[:, :, None, None], axis=1), z))
        if accumulate:
            total_counts += counts
            total_sums += np.einsum("snk,snd->skd", onehot, x)
            total_outer += np.einsum("snk,sni,snj->skij", onehot, x, x)
            means = total_sums / total_counts[:, :, None]
            scatter = total_outer - total_counts[:, :, None, None] * np.einsum(
                "ski,skj->skij", means, means)
            if estimator == "pooled":
                cov = np.broadcast_to(scatter.sum(axis=1, keepdims=True)
                                      / total_counts.sum(axis=1)[:, None, None, None],
                                      scatter.shape)
            else:
                cov = scatter / total_counts[:, :, None, None]
        else:
            means, cov = _fit(x, onehot, counts, estimator)
        chol = np.linalg.cholesky(cov)
        retained = np.trace(cov, axis1=-2, axis2=-1) / d @ p
        log_det = np.linalg.slogdet(cov)[1] @ p
        rows.append(pd.DataFrame({"seed_index": np.arange(S), "generation": g,
                                  "estimator": estimator,
                                  "kl": _average_kl(means, cov, p),
                                  "retained_variance": retained, "log_det": log_det}))
    return pd.concat(rows, ignore_index=True)
