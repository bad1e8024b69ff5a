"""A small EDM2-style U-Net and its EDM preconditioning, written from Karras et al. (2024).

Encoder blocks: (downsample) -> (1x1 channel change) -> pixel norm -> residual branch
[mp_silu -> 3x3 conv -> modulate by 1 + gain*linear(emb) -> mp_silu -> 3x3 conv], joined by
mp_sum (t=0.3) -> optional cosine self-attention, joined by mp_sum (t=0.3) -> clip.
Decoder blocks take the mp_cat of the running features and the matching encoder output, have no
pixel norm, and change channels on the skip path after the residual branch. The network input
gets a constant ones channel (in place of biases); the output conv has a learned gain that
starts at 0, so the untrained denoiser returns c_skip * x.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from multisource.common.validation import InputError, check_int
from multisource.models.diffusion.config import DiffusionConfig
from multisource.models.diffusion.layers import (
    MPConv,
    MPFourier,
    mp_cat,
    mp_silu,
    mp_sum,
    normalize,
    pixel_norm,
    resample,
)


class Block(nn.Module):
    """One U-Net block (encoder or decoder flavour), optionally with attention."""

    def __init__(self, in_channels: int, out_channels: int, emb_channels: int, *, flavor: str,
                 resample_mode: str = "keep", attention: bool = False,
                 config: DiffusionConfig) -> None:
        super().__init__()
        self.flavor = flavor
        self.resample_mode = resample_mode
        self.res_balance = config.res_balance
        self.attn_balance = config.attn_balance
        self.clip_act = config.clip_act
        self.dropout = config.dropout
        self.num_heads = max(1, out_channels // config.channels_per_head) if attention else 0
        self.emb_gain = nn.Parameter(torch.zeros([]))
        res0_in = out_channels if flavor == "enc" else in_channels
        self.conv_res0 = MPConv(res0_in, out_channels, (3, 3))
        self.emb_linear = MPConv(emb_channels, out_channels, ())
        self.conv_res1 = MPConv(out_channels, out_channels, (3, 3))
        self.conv_skip = (MPConv(in_channels, out_channels, (1, 1))
                          if in_channels != out_channels else None)
        if attention:
            self.attn_qkv = MPConv(out_channels, out_channels * 3, (1, 1))
            self.attn_proj = MPConv(out_channels, out_channels, (1, 1))

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """Map features [N, C_in, H, W] and embedding [N, C_emb] to [N, C_out, H', W']."""
        x = resample(x, self.resample_mode)
        if self.flavor == "enc":
            if self.conv_skip is not None:
                x = self.conv_skip(x)
            x = pixel_norm(x)
        y = self.conv_res0(mp_silu(x))
        c = self.emb_linear(emb, gain=self.emb_gain) + 1
        y = mp_silu(y * c[:, :, None, None].to(y.dtype))
        if self.training and self.dropout > 0:
            y = F.dropout(y, p=self.dropout)
        y = self.conv_res1(y)
        if self.flavor == "dec" and self.conv_skip is not None:
            x = self.conv_skip(x)
        x = mp_sum(x, y, t=self.res_balance)
        if self.num_heads:
            n, ch, h, w = x.shape
            qkv = self.attn_qkv(x).reshape(n, self.num_heads, ch // self.num_heads, 3, h * w)
            q, k, v = normalize(qkv, dim=2).unbind(3)            # cosine attention
            y = F.scaled_dot_product_attention(q.transpose(2, 3), k.transpose(2, 3),
                                               v.transpose(2, 3))  # [n, heads, hw, c/heads]
            y = self.attn_proj(y.transpose(2, 3).reshape(n, ch, h, w))
            x = mp_sum(x, y, t=self.attn_balance)
        return x.clip(-self.clip_act, self.clip_act)


class UNet(nn.Module):
    """The raw network F(x_in, c_noise, labels) of EDM2, sized by a DiffusionConfig."""

    def __init__(self, config: DiffusionConfig) -> None:
        super().__init__()
        self.config = config
        cblock = [config.model_channels * m for m in config.channel_mult]
        cnoise = config.noise_channels or config.model_channels
        cemb = config.emb_channels or max(cblock)
        self.label_dim = config.label_dim
        self.emb_fourier = MPFourier(cnoise, seed=1)
        self.emb_noise = MPConv(cnoise, cemb, ())
        self.emb_label = MPConv(config.label_dim, cemb, ()) if config.label_dim else None
        self.stem = MPConv(config.img_channels + 1, cblock[0], (3, 3))
        self.enc = nn.ModuleList()
        skips = [cblock[0]]
        cout = cblock[0]
        for level, ch in enumerate(cblock):
            res = config.img_resolution >> level
            if level > 0:
                self.enc.append(Block(cout, cout, cemb, flavor="enc", resample_mode="down",
                                      config=config))
                skips.append(cout)
            for _ in range(config.num_blocks):
                self.enc.append(Block(cout, ch, cemb, flavor="enc",
                                      attention=res in config.attn_resolutions, config=config))
                cout = ch
                skips.append(cout)
        self.dec = nn.ModuleList()
        self.dec_takes_skip: list[bool] = []
        last = len(cblock) - 1
        for level in reversed(range(len(cblock))):
            ch = cblock[level]
            res = config.img_resolution >> level
            if level == last:
                self.dec.append(Block(cout, cout, cemb, flavor="dec", attention=True,
                                      config=config))
                self.dec.append(Block(cout, cout, cemb, flavor="dec", config=config))
                self.dec_takes_skip += [False, False]
            else:
                self.dec.append(Block(cout, cout, cemb, flavor="dec", resample_mode="up",
                                      config=config))
                self.dec_takes_skip.append(False)
            for _ in range(config.num_blocks + 1):
                cin = cout + skips.pop()
                self.dec.append(Block(cin, ch, cemb, flavor="dec",
                                      attention=res in config.attn_resolutions, config=config))
                self.dec_takes_skip.append(True)
                cout = ch
        self.out_conv = MPConv(cout, config.img_channels, (3, 3))
        self.out_gain = nn.Parameter(torch.zeros([]))

    def forward(self, x: torch.Tensor, noise_labels: torch.Tensor,
                class_labels: torch.Tensor | None) -> torch.Tensor:
        """Network output for inputs [N, C, H, W], c_noise [N] and one-hot labels [N, L]."""
        emb = self.emb_noise(self.emb_fourier(noise_labels))
        if self.emb_label is not None:
            if class_labels is None:
                raise InputError(f"labels must be given for a model with label_dim="
                                 f"{self.label_dim}")
            lab = self.emb_label(class_labels.to(emb.dtype) * math.sqrt(self.label_dim))
            emb = mp_sum(emb, lab, t=self.config.label_balance)
        emb = mp_silu(emb)
        x = torch.cat([x, torch.ones_like(x[:, :1])], dim=1)
        x = self.stem(x)
        skips = [x]
        for block in self.enc:
            x = block(x, emb)
            skips.append(x)
        for block, takes_skip in zip(self.dec, self.dec_takes_skip, strict=True):
            if takes_skip:
                x = mp_cat(x, skips.pop(), t=self.config.concat_balance)
            x = block(x, emb)
        return self.out_conv(x, gain=self.out_gain)


class EDMDenoiser(nn.Module):
    """Preconditioned denoiser D(x; sigma, y) = c_skip x + c_out F(c_in x, c_noise, y).

    c_skip = s_d^2/(sigma^2+s_d^2), c_out = sigma s_d/sqrt(sigma^2+s_d^2),
    c_in = 1/sqrt(sigma^2+s_d^2), c_noise = ln(sigma)/4. Also holds the learned log-variance
    u(sigma) of the uncertainty-weighted loss (an MP linear layer on Fourier features of c_noise).
    """

    def __init__(self, config: DiffusionConfig) -> None:
        super().__init__()
        self.config = config
        self.sigma_data = config.sigma_data
        self.unet = UNet(config)
        self.logvar_fourier = MPFourier(config.logvar_channels, seed=2)
        self.logvar_linear = MPConv(config.logvar_channels, 1, ())

    def preconditioning(self, sigma: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(c_skip, c_out, c_in, c_noise) for noise levels `sigma` (any shape)."""
        sd = self.sigma_data
        c_skip = sd ** 2 / (sigma ** 2 + sd ** 2)
        c_out = sigma * sd / (sigma ** 2 + sd ** 2).sqrt()
        c_in = 1 / (sd ** 2 + sigma ** 2).sqrt()
        c_noise = sigma.log() / 4
        return c_skip, c_out, c_in, c_noise

    def logvar(self, sigma: torch.Tensor) -> torch.Tensor:
        """Learned log-variance u(sigma), shape [N, 1, 1, 1]."""
        c_noise = sigma.float().reshape(-1).log() / 4
        return self.logvar_linear(self.logvar_fourier(c_noise)).reshape(-1, 1, 1, 1)

    def one_hot(self, labels: torch.Tensor | None, n: int, device: torch.device
                ) -> torch.Tensor | None:
        """Labels as float one-hot [N, label_dim]; accepts integer class indices [N] too."""
        if self.config.label_dim == 0:
            return None
        if labels is None:
            raise InputError(f"labels must be given (one-hot [N, {self.config.label_dim}] or "
                             f"indices in [0, {self.config.label_dim - 1}])")
        if labels.ndim == 1 and not labels.is_floating_point():
            if labels.numel() and (labels.min() < 0 or labels.max() >= self.config.label_dim):
                raise InputError(f"labels must be in [0, {self.config.label_dim - 1}]")
            labels = F.one_hot(labels.long(), self.config.label_dim)
        if labels.shape != (n, self.config.label_dim):
            raise InputError(f"labels must have shape [{n}, {self.config.label_dim}], "
                             f"got {list(labels.shape)}")
        return labels.to(device=device, dtype=torch.float32)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float,
                labels: torch.Tensor | None = None, *, return_logvar: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Denoised estimate of x at noise level sigma (scalar or [N]); optionally u(sigma)."""
        x = x.float()
        n = x.shape[0]
        sigma = torch.as_tensor(sigma, dtype=torch.float32, device=x.device)
        sigma = sigma.reshape(-1, 1, 1, 1).expand(n, 1, 1, 1) if sigma.numel() == 1 \
            else sigma.reshape(n, 1, 1, 1)
        c_skip, c_out, c_in, c_noise = self.preconditioning(sigma)
        out = self.unet(c_in * x, c_noise.reshape(-1), self.one_hot(labels, n, x.device))
        denoised = c_skip * x + c_out * out.float()
        if return_logvar:
            return denoised, self.logvar(sigma)
        return denoised


def build_model(config: DiffusionConfig, seed: int = 0) -> EDMDenoiser:
    """The preconditioned denoiser for `config`, initialised deterministically from `seed`.

    Call it as `model(x, sigma, labels_onehot)` -> denoised, or with `return_logvar=True`
    -> (denoised, log-variance) for the loss.
    """
    if not isinstance(config, DiffusionConfig):
        raise InputError(f"config must be a DiffusionConfig, got {type(config).__name__}")
    check_int("seed", seed, minimum=0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return EDMDenoiser(config)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
