"""A per-image negative log-likelihood bound of an EDM denoiser, in bits per dimension.

The theory bounds the error of a maximum-likelihood estimate, so the measurable analogue for a
diffusion model is a held-out likelihood. With x_sigma = x + sigma eps (EDM's variance-exploding
process), the continuous-time variational bound of Kingma et al. (2021, "Variational diffusion
models", eq. for L_infinity written in the signal-to-noise ratio v = 1/sigma^2) gives, for a
model that ends its reverse process at sigma_min with the Gaussian decoder N(z, sigma_min^2 I),

    -log p(x) <= d/2 log(2 pi e sigma_min^2)                       (decoder at sigma_min)
                 + |x|^2 / (2 sigma_max^2)                          (prior N(0, sigma_max^2 I))
                 + int_{sigma_min}^{sigma_max} E|x - D(x + sigma eps; sigma)|^2 / sigma^3 dsigma,

where the last term is (1/2) int |x - x_hat|^2 dv after v = sigma^-2. We evaluate the integral
on a fixed grid of log-spaced sigmas by the trapezoid rule in log sigma (dsigma / sigma^3 =
dlog(sigma) / sigma^2) with ONE noise draw per (image, sigma) from a fixed seed, so two models
scored on the same images see the same noise: their per-image difference is a paired estimate.
The bound is for the data smoothed by N(0, sigma_min^2) in the model's [-1, 1] range; the
result is reported per dimension in bits for the data in [0, 1] (subtract 1 bit: the map
[-1, 1] -> [0, 1] halves every coordinate). Only the integral depends on the model.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from multisource.common.validation import InputError, check_int


def log_sigma_grid(num: int, sigma_min: float = 0.002, sigma_max: float = 80.0
                   ) -> tuple[np.ndarray, np.ndarray]:
    """`num` log-spaced sigmas from sigma_min to sigma_max and their trapezoid weights in
    log sigma (the weights sum to log(sigma_max / sigma_min))."""
    num = check_int("num", num, minimum=2)
    if not 0 < sigma_min < sigma_max:
        raise InputError(f"sigma_min must be in (0, sigma_max={sigma_max}), got {sigma_min}")
    logs = np.linspace(math.log(sigma_min), math.log(sigma_max), num)
    step = logs[1] - logs[0]
    weights = np.full(num, step)
    weights[[0, -1]] = step / 2
    return np.exp(logs), weights


@torch.no_grad()
def nll_bound_bits(model: nn.Module, images: torch.Tensor, labels: torch.Tensor | None, *,
                   num_sigmas: int = 24, sigma_min: float = 0.002, sigma_max: float = 80.0,
                   seed: int = 0, batch_size: int = 512) -> np.ndarray:
    """Per-image upper bound on -log2 p(x) per dimension, for images [N, C, H, W] in [-1, 1].

    `labels` are the model's class indices [N] (or None for an unconditional model). The noise
    of image i at grid point j is drawn from a generator seeded with (seed, i), so the same
    images and seed give every model the same noise.
    """
    if images.ndim != 4 or images.shape[0] < 1:
        raise InputError(f"images must be [N>=1, C, H, W], got {list(images.shape)}")
    images = images.float()
    n, d = images.shape[0], images[0].numel()
    sigmas, weights = log_sigma_grid(num_sigmas, sigma_min, sigma_max)
    noise = torch.empty((n, num_sigmas, *images.shape[1:]))
    for i in range(n):
        gen = torch.Generator().manual_seed(int(seed) * 1_000_003 + i)
        noise[i] = torch.randn((num_sigmas, *images.shape[1:]), generator=gen)
    device = next(model.parameters()).device
    x_all = images.to(device)
    noise = noise.to(device)
    sig = torch.as_tensor(sigmas, dtype=torch.float32, device=device)
    wts = torch.as_tensor(weights, dtype=torch.float64, device=device)
    integral = torch.zeros(n, dtype=torch.float64, device=device)
    flat_index = torch.arange(n, device=device).repeat_interleave(num_sigmas)
    flat_sigma = sig.repeat(n)
    flat_weight = wts.repeat(n)
    flat_noise = noise.reshape(n * num_sigmas, *images.shape[1:])
    for start in range(0, n * num_sigmas, batch_size):
        sl = slice(start, start + batch_size)
        idx, s = flat_index[sl], flat_sigma[sl]
        x = x_all.index_select(0, idx)
        lab = None if labels is None else labels.to(device).index_select(0, idx)
        denoised = model(x + flat_noise[sl] * s.reshape(-1, 1, 1, 1), s, lab)
        err = ((denoised.float() - x) ** 2).flatten(1).sum(1).double()
        integral.index_add_(0, idx, flat_weight[sl] * err / s.double() ** 2)
    decoder = 0.5 * d * math.log(2 * math.pi * math.e * sigma_min ** 2)
    prior = (x_all.double().flatten(1) ** 2).sum(1) / (2 * sigma_max ** 2)
    nats = decoder + prior + integral
    return (nats / (d * math.log(2)) - 1.0).cpu().numpy()
