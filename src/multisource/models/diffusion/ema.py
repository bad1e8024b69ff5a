"""Power-function EMA of EDM2 (Karras et al. 2024, section 3.1).

The averaged weights at time t are (g+1)/t^(g+1) * integral_0^t tau^g theta(tau) dtau, a profile
whose standard deviation relative to t is sigma_rel = sqrt((g+1)/((g+2)^2 (g+3))). It is tracked
step by step with theta_hat <- beta theta_hat + (1-beta) theta, beta = (1 - 1/t)^(g+1), t the
number of optimiser steps so far (equivalent to the paper's images with Delta t = batch size).
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
from torch import nn

from multisource.common.validation import check_float, check_int


def sigma_rel_to_gamma(sigma_rel: float) -> float:
    """Exponent gamma of the power-function EMA whose relative std is `sigma_rel`.

    Solves sigma_rel^2 = (g+1) / ((g+2)^2 (g+3)), i.e. the cubic
    s^2 g^3 + 7 s^2 g^2 + (16 s^2 - 1) g + (12 s^2 - 1) = 0, for its largest real root.
    """
    check_float("sigma_rel", sigma_rel, minimum=1e-4, maximum=0.28)
    s2 = float(sigma_rel) ** 2
    roots = np.roots([s2, 7 * s2, 16 * s2 - 1, 12 * s2 - 1])
    real = roots[np.abs(roots.imag) < 1e-8].real
    return float(real.max())


def gamma_to_sigma_rel(gamma: float) -> float:
    """Relative std of the power-function EMA profile with exponent `gamma` (> -1)."""
    g = check_float("gamma", gamma, minimum=-0.999)
    return math.sqrt((g + 1) / ((g + 2) ** 2 * (g + 3)))


def ema_beta(step: int, gamma: float) -> float:
    """Decay beta_t = (1 - 1/t)^(gamma+1) applied at optimiser step t >= 1 (beta_1 = 0)."""
    check_int("step", step, minimum=1)
    return (1.0 - 1.0 / step) ** (gamma + 1.0)


class PowerFunctionEMA:
    """Tracked power-function EMAs of a model's parameters, one copy per sigma_rel."""

    def __init__(self, model: nn.Module, stds: tuple[float, ...]) -> None:
        self.stds = tuple(float(s) for s in stds)
        self.gammas = {s: sigma_rel_to_gamma(s) for s in self.stds}
        self.models: dict[float, nn.Module] = {}
        for s in self.stds:
            ema = copy.deepcopy(model).eval()
            ema.requires_grad_(False)
            self.models[s] = ema

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """Fold in the model's current parameters after optimiser step `step` (1-based)."""
        src_params = [p.detach() for p in model.parameters()]
        src_buffers = list(model.buffers())
        for s, ema in self.models.items():
            weight = 1.0 - ema_beta(step, self.gammas[s])
            dst = list(ema.parameters())
            torch._foreach_lerp_(dst, src_params, weight)
            for b_dst, b_src in zip(ema.buffers(), src_buffers, strict=True):
                b_dst.copy_(b_src)

    def state_dict(self) -> dict[str, dict[str, torch.Tensor]]:
        """Each EMA's state dict, keyed by f'{sigma_rel:.3f}'."""
        return {f"{s:.3f}": m.state_dict() for s, m in self.models.items()}

    def load_state_dict(self, state: dict[str, dict[str, torch.Tensor]]) -> None:
        """Restore what `state_dict` returned."""
        for s, m in self.models.items():
            m.load_state_dict(state[f"{s:.3f}"])
