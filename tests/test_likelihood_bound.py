"""The diffusion NLL bound is checked on Gaussian data, where the exact answer is known."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from multisource.common.validation import InputError
from multisource.models.diffusion.likelihood import log_sigma_grid, nll_bound_bits


class GaussianDenoiser(nn.Module):
    """The posterior mean E[x | x + sigma eps] for x ~ N(0, s^2 I), optionally mis-scaled."""

    def __init__(self, s: float, scale: float = 1.0) -> None:
        super().__init__()
        self.s, self.scale = s, scale
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x, sigma, labels=None):
        shrink = self.s ** 2 / (self.s ** 2 + sigma.reshape(-1, 1, 1, 1) ** 2)
        return self.scale * shrink * x


def _gaussian_images(s: float, n: int = 4000) -> torch.Tensor:
    return s * torch.randn(n, 1, 2, 2, generator=torch.Generator().manual_seed(0))


def test_the_bound_of_the_exact_denoiser_is_the_gaussian_entropy():
    s = 0.3
    images = _gaussian_images(s)
    bits = nll_bound_bits(GaussianDenoiser(s), images, None, num_sigmas=200, seed=1)
    # E[-log p(x)] per dimension for N(0, s^2), in bits, for data mapped to [0, 1] (- 1 bit)
    exact = 0.5 * math.log2(2 * math.pi * math.e * s ** 2) - 1.0
    standard_error = bits.std(ddof=1) / math.sqrt(len(bits))
    assert abs(bits.mean() - exact) < 4 * standard_error + 2e-3, (bits.mean(), exact)


def test_a_worse_denoiser_gets_a_larger_bound_on_the_same_noise():
    s = 0.3
    images = _gaussian_images(s, 500)
    good = nll_bound_bits(GaussianDenoiser(s), images, None, num_sigmas=64, seed=3)
    bad = nll_bound_bits(GaussianDenoiser(s, scale=0.9), images, None, num_sigmas=64, seed=3)
    assert (bad - good).mean() > 0.05


def test_same_seed_same_noise_and_batching_does_not_matter():
    images = _gaussian_images(0.5, 37)
    a = nll_bound_bits(GaussianDenoiser(0.5), images, None, num_sigmas=8, seed=5, batch_size=7)
    b = nll_bound_bits(GaussianDenoiser(0.5), images, None, num_sigmas=8, seed=5, batch_size=1000)
    c = nll_bound_bits(GaussianDenoiser(0.5), images[:5], None, num_sigmas=8, seed=5)
    np.testing.assert_allclose(a, b, rtol=1e-10)
    np.testing.assert_allclose(a[:5], c, rtol=1e-10)   # image i's noise depends on (seed, i)


def test_grid_weights_integrate_log_sigma():
    sigmas, weights = log_sigma_grid(10, 0.01, 100.0)
    assert sigmas[0] == pytest.approx(0.01) and sigmas[-1] == pytest.approx(100.0)
    assert weights.sum() == pytest.approx(math.log(1e4))
    with pytest.raises(InputError, match="sigma_min"):
        log_sigma_grid(10, 5.0, 1.0)
