"""Deterministic EDM Heun sampler (Karras et al. 2022, Algorithm 1 with S_churn = 0).

Noise levels sigma_i = (s_max^(1/rho) + i/(N-1) (s_min^(1/rho) - s_max^(1/rho)))^rho for
i < N, and sigma_N = 0. Each step is a second-order Heun step except the last (to sigma = 0),
which is Euler: N steps cost 2N - 1 denoiser evaluations (63 for N = 32).
"""

from __future__ import annotations

import torch
from torch import nn

from multisource.common.validation import InputError, check_float, check_int


def heun_sigmas(num_steps: int = 32, sigma_min: float = 0.002, sigma_max: float = 80.0,
                rho: float = 7.0) -> torch.Tensor:
    """The N+1 noise levels of the sampler (float64), decreasing to a final 0."""
    check_int("num_steps", num_steps, minimum=1, maximum=10_000)
    check_float("sigma_min", sigma_min, minimum=1e-6)
    check_float("sigma_max", sigma_max, minimum=sigma_min)
    check_float("rho", rho, minimum=0.1, maximum=100.0)
    i = torch.arange(num_steps, dtype=torch.float64)
    denom = max(num_steps - 1, 1)
    t = (sigma_max ** (1 / rho) + i / denom * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))
         ) ** rho
    return torch.cat([t, torch.zeros(1, dtype=torch.float64)])


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") else model


@torch.no_grad()
def heun_sample(model: nn.Module, noise: torch.Tensor, labels: torch.Tensor | None,
                sigmas: torch.Tensor) -> torch.Tensor:
    """Integrate the probability-flow ODE from x = noise * sigmas[0] down to sigma = 0."""
    x = noise.to(torch.float64) * sigmas[0]
    n = len(sigmas) - 1
    for i in range(n):
        t_cur, t_next = float(sigmas[i]), float(sigmas[i + 1])
        d_cur = (x - model(x.float(), t_cur, labels).to(torch.float64)) / t_cur
        x_next = x + (t_next - t_cur) * d_cur
        if i < n - 1:
            d_next = (x_next - model(x_next.float(), t_next, labels).to(torch.float64)) / t_next
            x_next = x + (t_next - t_cur) * (0.5 * d_cur + 0.5 * d_next)
        x = x_next
    return x.float()


def sample(model: nn.Module, labels: torch.Tensor | None, *, num_steps: int = 32, seed: int = 0,
           device: torch.device | str | None = None, batch_size: int = 256,
           sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0,
           num_samples: int | None = None,
           clip: tuple[float, float] | None = (-1.0, 1.0)) -> torch.Tensor:
    """One sample per label by the deterministic Heun sampler: [N, C, H, W].

    Pixel-space samples are clipped to `clip` (the data range, [-1, 1] by default); pass
    `clip=None` for latents, whose range is not bounded.

    The initial noise of all N images is drawn at once on the CPU from `seed`, so the result
    does not depend on `batch_size` or the device (beyond floating-point rounding). `labels`
    are class indices [N] (or one-hot [N, L]); for an unconditional model (label_dim 0) pass
    None and `num_samples`.
    """
    inner = _unwrap(model)
    config = inner.config
    check_int("seed", seed, minimum=0)
    check_int("batch_size", batch_size, minimum=1)
    if clip is not None and not (len(clip) == 2 and clip[0] < clip[1]):
        raise InputError(f"clip must be None or a pair (low, high) with low < high, got {clip}")
    if labels is None:
        if config.label_dim:
            raise InputError(f"labels must be given for a model with label_dim={config.label_dim}")
        if num_samples is None:
            raise InputError("num_samples must be given (>= 1) when labels is None")
        n = check_int("num_samples", num_samples, minimum=1)
    else:
        labels = torch.as_tensor(labels)
        if labels.ndim == 1 and not labels.is_floating_point() and config.label_dim and \
                labels.numel() and (labels.min() < 0 or labels.max() >= config.label_dim):
            raise InputError(f"labels must be in [0, {config.label_dim - 1}]")
        n = labels.shape[0]
    if device is None:
        device = next(inner.parameters()).device
    device = torch.device(device)
    home = next(inner.parameters()).device
    sigmas = heun_sigmas(num_steps, sigma_min, sigma_max, rho)
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(n, config.img_channels, config.img_resolution, config.img_resolution,
                        generator=gen)
    was_training = inner.training
    inner.eval()
    inner.to(device)
    out = []
    try:
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            lab = None if labels is None else labels[start:stop].to(device)
            out.append(heun_sample(inner, noise[start:stop].to(device), lab, sigmas).cpu())
    finally:
        inner.train(was_training)
        inner.to(home)
    if not out:
        return noise[:0]
    samples = torch.cat(out)
    return samples if clip is None else samples.clamp(*clip)
