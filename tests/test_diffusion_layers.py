"""EDM2 model parts: magnitude-preserving layers, preconditioning, sampler, power-function EMA."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from multisource.common.validation import InputError
from multisource.models.diffusion import (
    PRESETS,
    DiffusionConfig,
    PowerFunctionEMA,
    TrainConfig,
    build_model,
    gamma_to_sigma_rel,
    heun_sigmas,
    learning_rate,
    sample,
    sigma_rel_to_gamma,
)
from multisource.models.diffusion.layers import (
    MPConv,
    MPFourier,
    mp_cat,
    mp_silu,
    mp_sum,
    pixel_norm,
)
from multisource.models.diffusion.sampler import heun_sample

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def rms(x: torch.Tensor) -> float:
    return float(x.detach().double().square().mean().sqrt())


def unit(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# --- magnitude preservation -------------------------------------------------------------------

def test_mp_silu_preserves_unit_magnitude():
    assert rms(mp_silu(unit(200_000))) == pytest.approx(1.0, abs=0.01)
    # plain SiLU does not, so the test can tell the difference
    assert rms(torch.nn.functional.silu(unit(200_000))) < 0.65


@pytest.mark.parametrize("t", [0.0, 0.3, 0.5, 0.8])
def test_mp_sum_preserves_unit_magnitude(t):
    out = mp_sum(unit(100_000, seed=1), unit(100_000, seed=2), t=t)
    assert rms(out) == pytest.approx(1.0, abs=0.01)


@pytest.mark.parametrize(("na", "nb", "t"), [(32, 32, 0.5), (64, 16, 0.5), (16, 48, 0.3)])
def test_mp_cat_preserves_magnitude_and_balance(na, nb, t):
    a, b = unit(512, na, seed=1), unit(512, nb, seed=2)
    out = mp_cat(a, b, dim=1, t=t)
    assert out.shape == (512, na + nb)
    assert rms(out) == pytest.approx(1.0, abs=0.02)
    # branch b contributes the share t of the total (in norm, per the blend weights)
    norm_a = out[:, :na].square().sum(1).mean().sqrt()
    norm_b = out[:, na:].square().sum(1).mean().sqrt()
    assert float(norm_b / (norm_a + norm_b)) == pytest.approx(t, abs=0.02)


def test_pixel_norm_gives_unit_rms_per_pixel():
    x = unit(4, 16, 8, 8) * 7.0 + 3.0
    per_pixel = pixel_norm(x).square().mean(dim=1).sqrt()
    assert torch.allclose(per_pixel, torch.ones_like(per_pixel), atol=1e-3)


@pytest.mark.parametrize("kernel", [(), (1, 1), (3, 3)])
def test_mpconv_preserves_unit_magnitude(kernel):
    torch.manual_seed(0)
    layer = MPConv(32, 48, kernel)
    layer.weight.data.mul_(5.0)          # any stored scale: forced normalisation removes it
    x = unit(256, 32) if kernel == () else unit(16, 32, 32, 32)
    out = layer(x)
    # 3x3 zero padding lowers the border pixels' magnitude slightly
    assert rms(out) == pytest.approx(1.0, abs=0.06)


def test_mp_fourier_features_have_unit_magnitude():
    feats = MPFourier(256)(torch.linspace(-3, 3, 1000))
    assert rms(feats) == pytest.approx(1.0, abs=0.05)


# --- forced weight normalisation --------------------------------------------------------------

def test_forced_weight_normalisation():
    torch.manual_seed(0)
    layer = MPConv(8, 4, (3, 3))
    layer.weight.data.mul_(torch.tensor([0.1, 1.0, 3.0, 10.0])[:, None, None, None])
    x = unit(2, 8, 6, 6)
    layer.eval()
    before = layer.weight.detach().clone()
    layer(x)
    assert torch.equal(layer.weight, before), "eval mode must not touch the stored weight"
    layer.train()
    out = layer(x, gain=1.0)
    row_rms = layer.weight.detach().flatten(1).square().mean(1).sqrt()
    assert torch.allclose(row_rms, torch.ones(4), atol=1e-3)
    w_eff = layer.effective_weight(gain=2.0).flatten(1).norm(dim=1)
    assert torch.allclose(w_eff, torch.full((4,), 2.0), atol=1e-3)
    # the gradient is orthogonal to each (normalised) weight row, up to the eps of normalize
    out.square().sum().backward()
    g, w = layer.weight.grad.flatten(1), layer.weight.detach().flatten(1)
    cosine = (g * w).sum(1) / (g.norm(dim=1) * w.norm(dim=1))
    assert torch.all(cosine.abs() < 1e-3)


# --- preconditioning --------------------------------------------------------------------------

def test_preconditioning_formulas():
    model = build_model(PRESETS["smoke"][0])
    sigma = torch.tensor([0.002, 0.5, 1.0, 80.0])
    c_skip, c_out, c_in, c_noise = model.preconditioning(sigma)
    sd = 0.5
    assert torch.allclose(c_skip, sd ** 2 / (sigma ** 2 + sd ** 2))
    assert torch.allclose(c_out, sigma * sd / torch.sqrt(sigma ** 2 + sd ** 2))
    assert torch.allclose(c_in, 1 / torch.sqrt(sigma ** 2 + sd ** 2))
    assert torch.allclose(c_noise, torch.log(sigma) / 4)
    assert float(c_skip[1]) == pytest.approx(0.5)
    assert float(c_out[1]) == pytest.approx(0.25 / math.sqrt(0.5))
    assert float(c_in[1]) == pytest.approx(1 / math.sqrt(0.5))


def test_untrained_denoiser_is_c_skip_times_input_and_outputs_logvar():
    model = build_model(PRESETS["smoke"][0]).eval()
    x = unit(5, 1, 8, 8)
    sigma = torch.tensor([0.1, 0.5, 1.0, 2.0, 10.0])
    labels = torch.arange(5)
    denoised, logvar = model(x, sigma, labels, return_logvar=True)
    c_skip = (0.25 / (sigma ** 2 + 0.25)).reshape(-1, 1, 1, 1)
    assert torch.allclose(denoised, c_skip * x, atol=1e-6)   # output gain starts at 0
    assert logvar.shape == (5, 1, 1, 1)
    with torch.no_grad():
        model.unet.out_gain.fill_(1.0)
    onehot = torch.nn.functional.one_hot(labels, 10).float()
    assert torch.allclose(model(x, sigma, onehot), model(x, sigma, labels))
    assert not torch.allclose(model(x, sigma, labels), c_skip * x, atol=1e-3)


def test_build_model_is_deterministic_and_sized_by_config():
    a, b = build_model(PRESETS["smoke"][0]), build_model(PRESETS["smoke"][0])
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)
    bigger = DiffusionConfig(img_resolution=16, model_channels=8, channel_mult=(1, 2, 2),
                             num_blocks=2, attn_resolutions=(8, 4))
    out = build_model(bigger)(unit(2, 1, 16, 16), 1.0, torch.tensor([0, 1]))
    assert out.shape == (2, 1, 16, 16)


# --- sampler ----------------------------------------------------------------------------------

def test_heun_sigmas_schedule():
    s = heun_sigmas(32)
    assert len(s) == 33
    assert float(s[0]) == pytest.approx(80.0)
    assert float(s[31]) == pytest.approx(0.002)
    assert float(s[32]) == 0.0
    assert torch.all(s[1:] < s[:-1])


def test_heun_sampler_transports_noise_to_gaussian_data():
    """For data N(0, s_d^2) the ideal denoiser is c_skip x: the ODE must end at std s_d."""
    model = build_model(PRESETS["smoke"][0]).eval()   # output gain 0: D(x) = c_skip x exactly
    calls = []
    wrapped = lambda x, s, y: calls.append(1) or model(x, s, y)  # noqa: E731
    noise = unit(64, 1, 8, 8)
    out = heun_sample(wrapped, noise, torch.zeros(64, dtype=torch.long), heun_sigmas(32))
    assert len(calls) == 63
    assert out.std().item() == pytest.approx(0.5, abs=0.01)


def test_sampler_is_deterministic_and_batch_independent():
    model = build_model(PRESETS["smoke"][0])
    with torch.no_grad():
        model.unet.out_gain.fill_(1.0)
    labels = torch.tensor([0, 3, 7, 9, 1])
    a = sample(model, labels, num_steps=8, seed=3)
    b = sample(model, labels, num_steps=8, seed=3, batch_size=2)
    c = sample(model, labels, num_steps=8, seed=4)
    assert a.shape == (5, 1, 8, 8)
    assert torch.allclose(a, b, atol=1e-5)
    assert not torch.allclose(a, c, atol=1e-2)
    assert float(a.min()) >= -1 and float(a.max()) <= 1
    with pytest.raises(InputError, match="labels"):
        sample(model, torch.tensor([10]))


# --- power-function EMA -----------------------------------------------------------------------

def test_sigma_rel_gamma_conversion():
    assert sigma_rel_to_gamma(0.05) == pytest.approx(16.97, abs=0.01)
    assert sigma_rel_to_gamma(0.10) == pytest.approx(6.94, abs=0.01)
    for s in (0.01, 0.05, 0.1, 0.2):
        assert gamma_to_sigma_rel(sigma_rel_to_gamma(s)) == pytest.approx(s, rel=1e-9)
    with pytest.raises(InputError, match="sigma_rel"):
        sigma_rel_to_gamma(0.5)


class _Probe(nn.Module):
    def __init__(self, n: int) -> None:
        super().__init__()
        self.theta = nn.Parameter(torch.zeros(n, dtype=torch.float64))


@pytest.mark.parametrize("sigma_rel", [0.05, 0.10])
def test_tracked_ema_matches_power_function_profile(sigma_rel):
    """After T steps with theta_t = e_t, the EMA holds the weight given to each step."""
    steps = 400
    probe = _Probe(steps)
    ema = PowerFunctionEMA(probe, (sigma_rel,))
    for t in range(1, steps + 1):
        with torch.no_grad():
            probe.theta.zero_()
            probe.theta[t - 1] = 1.0
        ema.update(probe, t)
    weights = ema.models[sigma_rel].theta.detach()
    g = sigma_rel_to_gamma(sigma_rel)
    t = torch.arange(1, steps + 1, dtype=torch.float64)
    # the integral of the profile (g+1) tau^g / T^(g+1) over [t-1, t]
    expected = (t ** (g + 1) - (t - 1) ** (g + 1)) / steps ** (g + 1)
    assert torch.allclose(weights, expected, rtol=1e-6, atol=1e-12)
    assert float(weights.sum()) == pytest.approx(1.0, abs=1e-9)
    pos = (t - 0.5) / steps
    mean = float((weights * pos).sum())
    std = float((weights * (pos - mean) ** 2).sum().sqrt())
    assert mean == pytest.approx((g + 1) / (g + 2), abs=2e-3)
    assert std == pytest.approx(sigma_rel, rel=0.02)


# --- schedules and input checks ---------------------------------------------------------------

def test_learning_rate_schedule():
    cfg = TrainConfig(lr_ref=0.01, t_ref_steps=100, warmup_steps=10)
    assert learning_rate(5, cfg) == pytest.approx(0.005)
    assert learning_rate(50, cfg) == pytest.approx(0.01)
    assert learning_rate(400, cfg) == pytest.approx(0.005)
    ms = TrainConfig(lr_ref=0.01, t_ref_steps=100, warmup_steps=10, lr_decay="multisource")
    assert learning_rate(100, ms) == pytest.approx(0.01)
    assert learning_rate(101, ms) == pytest.approx(0.01 / math.sqrt(4 * 1.01))


@pytest.mark.parametrize(("factory", "name"), [
    (lambda: DiffusionConfig(img_resolution=10, channel_mult=(1, 2, 2)), "img_resolution"),
    (lambda: DiffusionConfig(attn_resolutions=(3,)), "attn_resolutions"),
    (lambda: DiffusionConfig(P_std=0.0), "P_std"),
    (lambda: TrainConfig(batch_size=0), "batch_size"),
    (lambda: TrainConfig(ema_stds=(0.5,)), "ema_stds"),
    (lambda: TrainConfig(lr_decay="cosine"), "lr_decay"),
])
def test_bad_configs_raise_one_line_input_errors(factory, name):
    with pytest.raises(InputError, match=name) as info:
        factory()
    assert "\n" not in str(info.value)


def test_paper_preset_holds_the_papers_settings():
    model_config, train_config = PRESETS["paper"]
    assert (model_config.model_channels, model_config.channel_mult, model_config.num_blocks,
            model_config.attn_resolutions) == (128, (1, 2, 3, 4), 3, (16, 8))
    assert (model_config.img_resolution, model_config.img_channels) == (32, 4)
    assert (model_config.P_mean, model_config.P_std, model_config.sigma_data) == (-0.4, 1.0, 0.5)
    assert train_config.ema_stds == (0.05, 0.10) and train_config.lr_decay == "multisource"
    assert train_config.batch_size * train_config.total_steps == 402_653_184   # 10c-1000


def test_mp_sum_and_cat_accept_mixed_dtypes_as_under_autocast() -> None:
    """On CUDA, lerp refuses a float32 skip with a bfloat16 branch; the layers align them."""
    from multisource.models.diffusion.layers import mp_cat, mp_sum

    a = torch.randn(2, 3, 4, 4)
    b = torch.randn(2, 3, 4, 4)
    mixed = mp_sum(a, b.to(torch.bfloat16), t=0.3)
    assert mixed.dtype == torch.float32
    assert torch.allclose(mixed, mp_sum(a, b.to(torch.bfloat16).float(), t=0.3))
    assert torch.equal(mp_sum(a, b, t=0.3), (a.lerp(b, 0.3)) / ((0.7**2 + 0.3**2) ** 0.5))
    assert mp_cat(a, b.to(torch.bfloat16)).dtype == torch.float32
