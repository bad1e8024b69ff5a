"""Magnitude-preserving building blocks (EDM2, Karras et al. 2024, section 3 and appendix).

Every layer here keeps the expected magnitude (root mean square) of its output at the level of
its input when the input has unit magnitude: learned layers through forced weight
normalisation, fixed functions through a constant rescaling. Written from the paper's equations.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

# E[silu(z)^2] for z ~ N(0, 1) is 0.3557..., whose square root is 0.596 (the paper's constant).
MP_SILU_SCALE = 0.596


def normalize(x: torch.Tensor, dim: tuple[int, ...] | int | None = None,
              eps: float = 1e-4) -> torch.Tensor:
    """Rescale `x` to unit root-mean-square along `dim` (all but dim 0 when None)."""
    if dim is None:
        dim = tuple(range(1, x.ndim))
    norm = torch.linalg.vector_norm(x.float(), dim=dim, keepdim=True)
    count = norm.numel() / x.numel()
    norm = torch.add(eps, norm, alpha=math.sqrt(count))
    return x / norm.to(x.dtype)


def pixel_norm(x: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """Normalise each pixel's channel vector of an [N, C, H, W] tensor to unit RMS."""
    return normalize(x, dim=1, eps=eps)


def mp_silu(x: torch.Tensor) -> torch.Tensor:
    """SiLU divided by 0.596, so that a unit-normal input gives a unit-magnitude output."""
    return F.silu(x) / MP_SILU_SCALE


def mp_sum(a: torch.Tensor, b: torch.Tensor, t: float = 0.5) -> torch.Tensor:
    """Blend (1-t)a + tb and rescale so that independent unit-magnitude inputs stay unit.

    Under autocast the branches can differ in dtype (a float32 skip, a bfloat16 convolution);
    CUDA's lerp refuses mixed dtypes, so b takes a's dtype (a no-op when they agree)."""
    return a.lerp(b.to(a.dtype), t) / math.sqrt((1 - t) ** 2 + t ** 2)


def mp_cat(a: torch.Tensor, b: torch.Tensor, dim: int = 1, t: float = 0.5) -> torch.Tensor:
    """Concatenate along `dim` with weights giving branch b the share t and unit total magnitude.

    With Na, Nb channels, the branches are scaled by C(1-t)/sqrt(Na) and C t/sqrt(Nb), where
    C = sqrt((Na + Nb) / ((1-t)^2 + t^2)); then the mean square over all channels is 1.
    """
    na, nb = a.shape[dim], b.shape[dim]
    c = math.sqrt((na + nb) / ((1 - t) ** 2 + t ** 2))
    wa = c / math.sqrt(na) * (1 - t)
    wb = c / math.sqrt(nb) * t
    return torch.cat([wa * a, (wb * b).to(a.dtype)], dim=dim)


class MPFourier(nn.Module):
    """Fourier features sqrt(2) cos(2 pi (f c + phi)) with fixed random f ~ N(0,1), phi ~ U(0,1)."""

    def __init__(self, num_channels: int, bandwidth: float = 1.0, seed: int = 0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.register_buffer("freqs", 2 * math.pi * torch.randn(num_channels, generator=gen)
                             * bandwidth)
        self.register_buffer("phases", 2 * math.pi * torch.rand(num_channels, generator=gen))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map a batch of scalars [N] to unit-magnitude features [N, num_channels]."""
        y = x.float().ger(self.freqs.float()) + self.phases.float()
        return (y.cos() * math.sqrt(2)).to(x.dtype)


class MPConv(nn.Module):
    """Convolution (kernel k x k) or linear layer (kernel ()) without bias, magnitude preserving.

    Forced weight normalisation: in training mode each output channel's weight vector is reset in
    place to unit RMS before the forward pass; the forward pass normalises it again (so the
    gradient is orthogonal to the weight) and scales it by gain / sqrt(fan_in).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: tuple[int, ...]) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, *kernel))

    @property
    def fan_in(self) -> int:
        """Inputs feeding one output (in_channels x kernel area)."""
        return self.weight[0].numel()

    def effective_weight(self, gain: float | torch.Tensor = 1.0) -> torch.Tensor:
        """The normalised, scaled weight actually applied (each row has norm `gain`)."""
        w = normalize(self.weight.float())
        return w * (gain / math.sqrt(self.fan_in))

    def forward(self, x: torch.Tensor, gain: float | torch.Tensor = 1.0) -> torch.Tensor:
        """Apply the layer to [N, C] (linear) or [N, C, H, W] (conv) input."""
        if self.training:
            with torch.no_grad():
                self.weight.copy_(normalize(self.weight))
        w = self.effective_weight(gain).to(x.dtype)
        if w.ndim == 2:
            return x @ w.t()
        if w.shape[-1] == 1 and w.shape[-2] == 1:   # 1x1: a matmul keeps gradients contiguous
            return torch.einsum("oi,nihw->nohw", w[:, :, 0, 0], x)
        return F.conv2d(x, w, padding=w.shape[-1] // 2)


def resample(x: torch.Tensor, mode: str) -> torch.Tensor:
    """'down': 2x2 box filter with stride 2 (the [1,1] filter); 'up': nearest-neighbour x2."""
    if mode == "keep":
        return x
    if mode == "down":
        # Unit DC gain, as in the paper; the pixel norm that follows in every encoder block
        # restores unit magnitude.
        return F.avg_pool2d(x, 2)
    if mode == "up":
        return F.interpolate(x, scale_factor=2, mode="nearest")
    raise ValueError(f"unknown resample mode {mode!r}")
