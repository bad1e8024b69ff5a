"""Asymptotic risk of a maximum-likelihood estimator from the Fisher information (our derivation).

For a regular model and an interior truth theta*, the MLE from n pairs (x, y) is approximately
theta* + delta with delta ~ N(0, I^+ / n), where I = sum_k p_Y(k) E_{x|k}[s s^T] is the Fisher
information of one pair and s = grad_theta log p_theta(x | k) the score. I is computed exactly by
enumerating the sample space. Propagated to the risk R = E_Y TV(p_hat(.|Y), p*(.|Y)):

- delta method: p_hat(x|k) - p*(x|k) ~ grad p(x|k) . delta is Gaussian with variance
  v(x, k) = p*(x|k)^2 s^T I^+ s / n, and E|N(0, v)| = sqrt(2 v / pi), so
  E R ~ sum_k p_Y(k) 1/2 sum_x sqrt(2 v(x, k) / pi) = c / sqrt(n);
- Monte Carlo: draw delta, evaluate the exact TV of p_{theta* + delta}, average (no linearisation).

The same Gaussian gives first-order predictions under the Hellinger distance and sqrt(KL) (our
derivation): sum_x (p_hat - p*)^2 / p* = delta^T I_k delta =: Q_k (I_k: the information of
source k alone), H^2 = 1 - sum sqrt(p_hat p*) ~ Q_k / 8 and KL(p* || p_hat) ~ Q_k / 2, so
E H ~ E sqrt(Q_k / 8) and E sqrt(KL) ~ E sqrt(Q_k / 2) = 2 E H. Q_k is a weighted chi-square
(weights: eigenvalues of I_k times the source's block of the covariance) whose mean is
rank / n averaged over sources, so both predict a multi/single ratio of about
sqrt(rank_multi / rank_single); its square-root expectation is taken by Monte Carlo over
the chi-square (fixed seed). The TV constant instead weights every state by sqrt(leverage):
sum_x p*(x) sqrt(s^T I^+ s) (2 pi n)^(-1/2), whose ratio is sqrt(rank ratio) times a factor
for how unevenly the leverage spreads over the states.

I^+ is the pseudo-inverse: directions with zero information (e.g. shifting every logit of a
softmax by the same amount) do not move the distribution, so they add nothing to the risk and
do not count in Wilks' statistic; `rank` is the number of directions that do, counted as the
eigenvalues above 1e-10 of the largest. Exact zeros come out near 1e-17 in float64; a network
can also have a few real directions weaker than 1e-10, which are left out (they change the
delta-method constant by well under 1%: a test checks one case).

Parameters are dicts of tensors with a leading restart axis of size 1. Tensors named in
`shared` belong to every source; the others carry the source axis (axis 1). A source's
log-probabilities depend only on the shared tensors and its own slice, which keeps the
Jacobians small (one per source).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection
from dataclasses import dataclass

import numpy as np
import torch
from torch.func import jacfwd

from multisource.common.validation import InputError, check_int

SourceLogProbs = Callable[[dict[str, torch.Tensor]], torch.Tensor]
"""One source's parameters (source axis of size 1) -> log p(x | that source) over the M states."""


def _source_slice(params: dict[str, torch.Tensor], shared: Collection[str], k: int
                  ) -> dict[str, torch.Tensor]:
    return {name: v if name in shared else v[:, k : k + 1] for name, v in params.items()}


@dataclass(frozen=True)
class SourceJacobians:
    """Per source k: log p(x|k) over the states (M,), its Jacobian (M, p_k) with respect to the
    parameters that source uses, and their positions in the flat parameter vector."""

    log_probs: list[np.ndarray]
    jacobians: list[np.ndarray]
    positions: list[np.ndarray]
    size: int


def source_jacobians(source_log_probs: SourceLogProbs, params: dict[str, torch.Tensor],
                     shared: Collection[str], K: int) -> SourceJacobians:
    """Log-probabilities and score Jacobians of every source, by forward-mode autodiff."""
    K = check_int("K", K, minimum=1)
    names = list(params)
    sizes = [params[k].numel() for k in names]
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    index = {k: torch.arange(int(offsets[i]), int(offsets[i + 1])).reshape(params[k].shape)
             for i, k in enumerate(names)}
    out = SourceJacobians([], [], [], int(offsets[-1]))
    for k in range(K):
        local = _source_slice(params, shared, k)
        where = _source_slice(index, shared, k)
        shapes = {n: local[n].shape for n in names}
        counts = [local[n].numel() for n in names]
        z = torch.cat([local[n].detach().reshape(-1).to(torch.float64) for n in names])

        def fn(flat: torch.Tensor, shapes=shapes, counts=counts) -> torch.Tensor:
            parts = torch.split(flat, counts)
            return source_log_probs({n: p.reshape(shapes[n])
                                     for n, p in zip(names, parts, strict=True)})

        with torch.no_grad():
            out.log_probs.append(fn(z).numpy())
        out.jacobians.append(jacfwd(fn)(z).detach().numpy())
        out.positions.append(torch.cat([where[n].reshape(-1) for n in names]).numpy())
    return out


@dataclass(frozen=True)
class FisherRisk:
    """The Fisher information of one pair (p, p), its rank, and the delta-method constant c of
    E R ~ c / sqrt(n) (per source in `per_source`, p_Y-weighted sum in `constant`)."""

    information: np.ndarray
    rank: int
    per_source: np.ndarray
    constant: float
    hellinger_constant: float = math.nan

    def expected_tv(self, n: float) -> float:
        """The delta-method expected average TV at total sample size n."""
        return self.constant / math.sqrt(n)

    def expected_hellinger(self, n: float) -> float:
        """First-order expected average Hellinger distance, E sqrt(Q_k / 8) (module docstring)."""
        return self.hellinger_constant / math.sqrt(n)

    def expected_sqrt_kl(self, n: float) -> float:
        """First-order expected average sqrt(KL(p* || p_hat)), E sqrt(Q_k / 2) = 2 E H."""
        return 2.0 * self.hellinger_constant / math.sqrt(n)


def pseudo_inverse(information: np.ndarray, rtol: float = 1e-10) -> tuple[np.ndarray, int]:
    """Moore-Penrose inverse of a symmetric PSD matrix and its numerical rank."""
    values, vectors = np.linalg.eigh(information)
    keep = values > rtol * max(values.max(initial=0.0), 1e-300)
    inverse = (vectors[:, keep] / values[keep]) @ vectors[:, keep].T
    return inverse, int(keep.sum())


def fisher_risk(jac: SourceJacobians, p_y: np.ndarray | None = None) -> FisherRisk:
    """Fisher information and delta-method risk constant from per-source Jacobians."""
    K = len(jac.jacobians)
    weights = np.full(K, 1.0 / K) if p_y is None else np.asarray(p_y, float)
    if weights.shape != (K,) or np.any(weights < 0) or not np.isclose(weights.sum(), 1.0):
        raise InputError(f"p_y must be a probability vector of length K={K}")
    information = np.zeros((jac.size, jac.size))
    for k in range(K):
        probs = np.exp(jac.log_probs[k])
        block = (jac.jacobians[k].T * probs) @ jac.jacobians[k]
        information[np.ix_(jac.positions[k], jac.positions[k])] += weights[k] * block
    covariance, rank = pseudo_inverse(information)
    per_source = np.empty(K)
    hellinger = np.empty(K)
    for k in range(K):
        local = covariance[np.ix_(jac.positions[k], jac.positions[k])]
        J = jac.jacobians[k]
        probs = np.exp(jac.log_probs[k])
        variance = np.einsum("mi,ij,mj->m", J, local, J) * probs**2
        per_source[k] = 0.5 * math.sqrt(2.0 / math.pi) * np.sqrt(np.maximum(variance, 0)).sum()
        own = (J.T * probs) @ J                                    # information of source k
        chi2_weights = np.clip(np.linalg.eigvals(own @ local).real, 0.0, None)
        draws = np.random.default_rng(k).standard_normal((CHI2_DRAWS, chi2_weights.size))
        hellinger[k] = math.sqrt(1 / 8) * np.sqrt(draws**2 @ chi2_weights).mean()
    return FisherRisk(information, rank, per_source, float(weights @ per_source),
                      float(weights @ hellinger))


CHI2_DRAWS = 4000
"""Monte Carlo draws of the weighted chi-square behind the Hellinger and sqrt(KL) constants."""


def monte_carlo_tv(probs_fn: Callable[[dict[str, torch.Tensor]], np.ndarray],
                   params: dict[str, torch.Tensor], information: np.ndarray, n: float,
                   draws: int, rng: np.random.Generator, p_y: np.ndarray | None = None
                   ) -> np.ndarray:
    """Exact average TV of `draws` parameters theta* + delta, delta ~ N(0, I^+ / n).

    probs_fn maps parameters to the enumerated conditionals (K, M). Returns (draws,) risks:
    their mean is the Gaussian-propagated risk without the delta method's linearisation.
    """
    draws = check_int("draws", draws, minimum=1)
    names = list(params)
    sizes = [params[k].numel() for k in names]
    theta = torch.cat([params[k].detach().reshape(-1) for k in names]).numpy()
    covariance, _ = pseudo_inverse(information)
    values, vectors = np.linalg.eigh(covariance)
    root = vectors * np.sqrt(np.clip(values, 0, None))
    truth = probs_fn(params)
    K = truth.shape[0]
    weights = np.full(K, 1.0 / K) if p_y is None else np.asarray(p_y, float)
    risks = np.empty(draws)
    for i in range(draws):
        z = theta + root @ rng.standard_normal(theta.size) / math.sqrt(n)
        parts = np.split(z, np.cumsum(sizes)[:-1])
        drawn = {k: torch.as_tensor(p.reshape(params[k].shape))
                 for k, p in zip(names, parts, strict=True)}
        risks[i] = float(weights @ (0.5 * np.abs(probs_fn(drawn) - truth).sum(-1)))
    return risks


def effective_shared_fraction(ratio: float | np.ndarray, K: int | np.ndarray) -> np.ndarray:
    """The beta that makes sqrt(1 - (K-1)/K beta) equal a given multi/single risk ratio."""
    K = np.asarray(K, float)
    return (1.0 - np.asarray(ratio, float) ** 2) * K / (K - 1.0)
