"""Checks that can fail: the EDM2 loss by hand, the training noise levels, unit activations.

Each check is a plain function that raises AssertionError; a test runs it on the real code and
another test monkeypatches a plausible mutation in (plain MSE loss, one fixed noise level, a
residual sum that does not preserve magnitude) and demonstrates that the same check fails.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from multisource.models.diffusion import (
    DiffusionConfig,
    TrainConfig,
    build_model,
    network,
    training,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SIGMA_DATA = 0.5


class FixedDenoiser(nn.Module):
    """A stand-in network: D(x; sigma) = 0.6 x (no learning) and a free log-variance u."""

    def __init__(self, u: float) -> None:
        super().__init__()
        self.u = nn.Parameter(torch.tensor(float(u)))

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, labels: torch.Tensor | None,
                return_logvar: bool = False):
        denoised = 0.6 * x
        logvar = self.u.expand(x.shape[0]).reshape(-1, 1, 1, 1)
        return (denoised, logvar) if return_logvar else denoised


def _batch(n: int = 8, sigma: float | None = None, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 1, 4, 4, generator=gen) * 2 - 1
    noise = torch.randn(n, 1, 4, 4, generator=gen)
    sig = (torch.full((n,), sigma) if sigma is not None
           else torch.exp(torch.randn(n, generator=gen) - 0.5))
    return images, sig, noise


def weighted_mse(images: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """lambda(sigma) * mean_pixels (D - x)^2 per image, for the FixedDenoiser, by hand."""
    lam = (sigma ** 2 + SIGMA_DATA ** 2) / (sigma * SIGMA_DATA) ** 2
    noisy = images + noise * sigma.reshape(-1, 1, 1, 1)
    err = (0.6 * noisy - images).square().flatten(1).mean(1)
    return lam * err


def check_loss_is_the_edm2_loss() -> None:
    """`training.edm2_loss` equals mean_i [lambda_i/e^u * mse_i + u], and is minimised at
    e^u = lambda * mse (the learned uncertainty becomes the weighted MSE)."""
    images, sigma, noise = _batch()
    for u in (-1.0, 0.0, 0.7):
        got = training.edm2_loss(FixedDenoiser(u), images, None, sigma, noise, SIGMA_DATA)
        hand = (weighted_mse(images, sigma, noise) / math.exp(u) + u).mean()
        got = float(got.detach())
        assert got == pytest.approx(float(hand), rel=1e-5), (u, got, float(hand))
    # one noise level for the whole batch: the optimum is u* = ln(mean weighted MSE)
    images, sigma, noise = _batch(sigma=0.8)
    u_star = math.log(float(weighted_mse(images, sigma, noise).mean()))
    for u, expect_sign in ((u_star, 0), (u_star - 0.5, -1), (u_star + 0.5, 1)):
        model = FixedDenoiser(u)
        loss = training.edm2_loss(model, images, None, sigma, noise, SIGMA_DATA)
        loss.backward()
        grad = float(model.u.grad)
        if expect_sign == 0:
            assert abs(grad) < 1e-5, grad
            assert float(loss.detach()) == pytest.approx(1.0 + u_star, rel=1e-5)   # mse/e^u* = 1
        else:
            assert grad * expect_sign > 0.1, (u - u_star, grad)


def check_training_noise_levels(config: DiffusionConfig, steps: int = 40,
                                batch: int = 4096) -> None:
    """The noise levels the trainer draws (through make_batch) have ln(sigma) ~ N(P_mean,
    P_std^2): mean, standard deviation and E[sigma] = exp(P_mean + P_std^2/2) within 5 s.e."""
    tconfig = TrainConfig(batch_size=batch)
    images = torch.zeros(16, config.img_channels, config.img_resolution, config.img_resolution)
    labels = torch.zeros(16, dtype=torch.long)
    sig = torch.cat([training.make_batch(images, labels, s, config, tconfig)[2]
                     for s in range(1, steps + 1)]).double()
    log_s = sig.log()
    n = len(log_s)
    mu, sd = config.P_mean, config.P_std
    assert abs(float(log_s.mean()) - mu) < 5 * sd / math.sqrt(n), float(log_s.mean())
    assert abs(float(log_s.std()) - sd) < 5 * sd / math.sqrt(2 * n), float(log_s.std())
    lognormal_mean = math.exp(mu + sd ** 2 / 2)
    lognormal_sd = lognormal_mean * math.sqrt(math.exp(sd ** 2) - 1)
    assert abs(float(sig.mean()) - lognormal_mean) < 5 * lognormal_sd / math.sqrt(n)
    # the draws differ between steps (a fixed per-step draw would repeat)
    assert not torch.equal(sig[:batch], sig[batch:2 * batch])


MAGNITUDE_BAND = (0.6, 1.4)


def activation_magnitudes(config: DiffusionConfig, n: int = 256) -> dict[str, float]:
    """RMS of the stem, every U-Net block and the output (gain set to 1) at initialisation,
    for unit-normal inputs, random noise levels and random labels."""
    model = build_model(config).eval()
    found: dict[str, float] = {}
    hooks = [module.register_forward_hook(
        lambda _m, _i, out, name=name: found.__setitem__(name, float(out.double().square()
                                                                      .mean().sqrt())))
        for name, module in model.unet.named_modules()
        if isinstance(module, network.Block) or name == "stem"]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, config.img_channels, config.img_resolution, config.img_resolution,
                    generator=gen)
    sigma = torch.exp(torch.randn(n, generator=gen) * config.P_std + config.P_mean)
    labels = F.one_hot(torch.randint(0, config.label_dim, (n,), generator=gen),
                       config.label_dim).float()
    with torch.no_grad():
        model.unet.out_gain.fill_(1.0)
        found["output"] = float(model.unet(x, sigma.log() / 4, labels).square().mean().sqrt())
    for hook in hooks:
        hook.remove()
    return found


def check_unit_activations(config: DiffusionConfig) -> None:
    """Every block keeps unit magnitude within MAGNITUDE_BAND (zero padding at the borders of
    small images costs up to ~30%; a layer that does not preserve magnitude compounds)."""
    magnitudes = activation_magnitudes(config)
    assert len(magnitudes) > 10
    low, high = MAGNITUDE_BAND
    bad = {k: round(v, 3) for k, v in magnitudes.items() if not low <= v <= high}
    assert not bad, bad


NETWORK = DiffusionConfig(img_resolution=16, label_dim=5, model_channels=16,
                          channel_mult=(1, 2, 2), num_blocks=2, attn_resolutions=(4,))


def test_edm2_loss_matches_a_hand_computation_and_its_optimal_uncertainty():
    check_loss_is_the_edm2_loss()


def test_plain_mse_loss_is_caught(monkeypatch):
    def plain_mse(model, images, labels, sigma, noise, sigma_data):
        denoised = model(images + noise * sigma.reshape(-1, 1, 1, 1), sigma, labels)
        return (denoised - images).square().mean()

    monkeypatch.setattr(training, "edm2_loss", plain_mse)
    with pytest.raises(AssertionError):
        check_loss_is_the_edm2_loss()


def test_unweighted_uncertainty_loss_is_caught(monkeypatch):
    """Dropping lambda(sigma) (keeping the learned u) is caught too."""
    def no_weight(model, images, labels, sigma, noise, sigma_data):
        denoised, logvar = model(images + noise * sigma.reshape(-1, 1, 1, 1), sigma, labels,
                                 return_logvar=True)
        return ((denoised - images).square() / logvar.exp() + logvar).mean()

    monkeypatch.setattr(training, "edm2_loss", no_weight)
    with pytest.raises(AssertionError):
        check_loss_is_the_edm2_loss()


@pytest.mark.parametrize(("p_mean", "p_std"), [(-0.8, 1.6), (-0.4, 1.0)])
def test_training_noise_levels_are_log_normal(p_mean, p_std):
    check_training_noise_levels(DiffusionConfig(P_mean=p_mean, P_std=p_std))


def test_fixed_noise_level_is_caught(monkeypatch):
    def fixed_sigma(n, config, generator=None, device=None):
        torch.randn(n, generator=generator, device=device)   # keep the random stream aligned
        return torch.full((n,), math.exp(config.P_mean), device=device)

    monkeypatch.setattr(training, "sample_sigma", fixed_sigma)
    with pytest.raises(AssertionError):
        check_training_noise_levels(DiffusionConfig())


def test_wrong_spread_of_noise_levels_is_caught(monkeypatch):
    real = training.sample_sigma

    def narrow(n, config, generator=None, device=None):
        return real(n, config, generator, device) ** 0.9   # P_std * 0.9

    monkeypatch.setattr(training, "sample_sigma", narrow)
    with pytest.raises(AssertionError):
        check_training_noise_levels(DiffusionConfig())


def test_unit_activation_magnitude_through_the_whole_network_at_init():
    check_unit_activations(NETWORK)


def test_magnitude_losing_residual_sum_is_caught(monkeypatch):
    monkeypatch.setattr(network, "mp_sum", lambda a, b, t=0.5: a.lerp(b, t))
    with pytest.raises(AssertionError):
        check_unit_activations(NETWORK)
