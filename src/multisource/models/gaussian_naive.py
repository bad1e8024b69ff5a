"""A deliberately straightforward transcription of the published Gaussian procedure.

It seeds Python, NumPy and torch globally, and evaluates every test point's densities with its
own `torch.distributions.MultivariateNormal` in float32, as the official script does. It is the
baseline of `benchmarks/gaussian_replication.py` and an independent check of
`multisource.experiments.gaussian.replicate_seed` in the tests; do not use it for real work.
"""

from __future__ import annotations

import random

import numpy as np
import torch
from torch.distributions import MultivariateNormal


def naive_replicate_seed(K: int, D: int, sim: float, n: int, seed: int,
                         test_size: int = 500) -> tuple[float, float]:
    """(TV single, TV multi) Monte-Carlo estimates of one seed, the slow way."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    d_sim = int(sim * D)
    d1 = D - d_sim
    mus = torch.zeros(K, D)
    for k in range(K):
        mus[k, :d1] = k + 1
    p_y = torch.ones(K) / K

    def draw(count: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.multinomial(p_y, count, replacement=True)
        xs, ys = [], []
        for k in range(K):
            n_k = int((labels == k).sum())
            xs.append(torch.randn(n_k, D) + mus[k])
            ys.append(torch.full((n_k,), k))
        return torch.cat(xs), torch.cat(ys)

    x, y = draw(n)
    single = torch.stack([x[y == k].mean(0) for k in range(K)])
    multi = single.clone()
    if d_sim > 0:
        multi[:, d1:] = x[:, d1:].mean(0)
    x_test, y_test = draw(test_size)
    eye = torch.eye(D)
    totals = {"single": 0.0, "multi": 0.0}
    for i in range(test_size):
        k = int(y_test[i])
        true_density = MultivariateNormal(mus[k], eye).log_prob(x_test[i]).exp()
        for name, estimate in (("single", single), ("multi", multi)):
            density = MultivariateNormal(estimate[k], eye).log_prob(x_test[i]).exp()
            totals[name] += float(0.5 * torch.abs(density / true_density - 1))
    return totals["single"] / test_size, totals["multi"] / test_size
