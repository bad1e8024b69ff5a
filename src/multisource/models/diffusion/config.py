"""Configurations of the EDM2-style denoiser and its training, and the named presets.

Presets are data: `smoke` (8x8 digits, seconds on a CPU), `book` (16x16 single-channel images
such as pooled Fashion-MNIST, minutes on a CPU) and `paper` (EDM2-XS on 32x32x4 latents with
the multi-source paper's settings, for GPUs).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from multisource.common.validation import InputError, check_choice, check_float, check_int

LR_DECAYS = ("edm2", "multisource")
PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class DiffusionConfig:
    """Network and diffusion-process settings of the preconditioned EDM2-style denoiser."""

    img_resolution: int = 8
    img_channels: int = 1
    label_dim: int = 10
    model_channels: int = 16
    channel_mult: tuple[int, ...] = (1, 2)
    num_blocks: int = 1
    attn_resolutions: tuple[int, ...] = ()
    sigma_data: float = 0.5
    P_mean: float = -0.8
    P_std: float = 1.6
    channels_per_head: int = 64
    noise_channels: int | None = None    # Fourier features of c_noise; None: model_channels
    emb_channels: int | None = None      # embedding width; None: model_channels*max(mult)
    logvar_channels: int = 128
    label_balance: float = 0.5
    concat_balance: float = 0.5
    res_balance: float = 0.3
    attn_balance: float = 0.3
    clip_act: float = 256.0
    dropout: float = 0.0

    def __post_init__(self) -> None:
        check_int("img_resolution", self.img_resolution, minimum=2, maximum=1024)
        check_int("img_channels", self.img_channels, minimum=1, maximum=64)
        check_int("label_dim", self.label_dim, minimum=0, maximum=100_000)
        check_int("model_channels", self.model_channels, minimum=1, maximum=4096)
        check_int("num_blocks", self.num_blocks, minimum=1, maximum=16)
        if len(self.channel_mult) < 1:
            raise InputError("channel_mult must hold 1 to 8 positive integers, got ()")
        for m in self.channel_mult:
            check_int("channel_mult entries", m, minimum=1, maximum=64)
        levels = len(self.channel_mult)
        if self.img_resolution % (2 ** (levels - 1)) != 0:
            raise InputError(f"img_resolution must be divisible by 2**(len(channel_mult)-1) = "
                             f"{2 ** (levels - 1)}, got {self.img_resolution}")
        allowed = self.resolutions
        for r in self.attn_resolutions:
            if r not in allowed:
                raise InputError(f"attn_resolutions entries must be among {list(allowed)}, "
                                 f"got {r}")
        check_float("sigma_data", self.sigma_data, minimum=1e-3, maximum=100.0)
        check_float("P_mean", self.P_mean, minimum=-10.0, maximum=10.0)
        check_float("P_std", self.P_std, minimum=1e-3, maximum=10.0)
        check_int("channels_per_head", self.channels_per_head, minimum=1, maximum=4096)
        check_int("logvar_channels", self.logvar_channels, minimum=1, maximum=4096)
        for name in ("label_balance", "concat_balance", "res_balance", "attn_balance"):
            check_float(name, getattr(self, name), minimum=0.0, maximum=1.0)
        check_float("clip_act", self.clip_act, minimum=1.0)
        check_float("dropout", self.dropout, minimum=0.0, maximum=0.99)

    @property
    def resolutions(self) -> tuple[int, ...]:
        """Feature-map resolution of each level, from the input resolution down."""
        return tuple(self.img_resolution >> i for i in range(len(self.channel_mult)))


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings. `batch_size` is global: under DDP each rank takes an equal share,
    processed in micro-batches of `batch_per_device` images with gradient accumulation when set.

    The learning rate at step s (1-based) is lr_ref / sqrt(max(s / t_ref_steps, 1)) times the
    warm-up factor min(s / warmup_steps, 1). `lr_decay="multisource"` is the variant of the
    multi-source paper's code: past t_ref it divides by sqrt(4 s / t_ref_steps) instead.
    `precision="bf16"` runs forward and backward under bfloat16 autocast with fp32 master
    weights, optimiser and EMA. `snapshot_every > 0` saves the EMAs every that many steps, so
    one long run also yields the models of every shorter budget (the schedule does not depend
    on `total_steps`).
    """

    batch_size: int = 64
    total_steps: int = 200
    lr_ref: float = 0.01
    t_ref_steps: int = 100
    warmup_steps: int = 20
    ema_stds: tuple[float, ...] = (0.05, 0.10)
    seed: int = 0
    checkpoint_every: int = 100
    log_every: int = 10
    lr_decay: str = "edm2"
    adam_beta1: float = 0.9
    adam_beta2: float = 0.99
    adam_eps: float = 1e-8
    batch_per_device: int | None = None   # micro-batch for gradient accumulation; None: all
    precision: str = "fp32"
    snapshot_every: int = 0

    def __post_init__(self) -> None:
        check_int("batch_size", self.batch_size, minimum=1, maximum=1_000_000)
        if self.batch_per_device is not None:
            check_int("batch_per_device", self.batch_per_device, minimum=1, maximum=1_000_000)
        check_int("total_steps", self.total_steps, minimum=1, maximum=100_000_000)
        check_float("lr_ref", self.lr_ref, minimum=1e-8, maximum=10.0)
        check_int("t_ref_steps", self.t_ref_steps, minimum=1)
        check_int("warmup_steps", self.warmup_steps, minimum=0)
        if len(self.ema_stds) < 1:
            raise InputError("ema_stds must hold at least one sigma_rel in [0.0001, 0.28]")
        for s in self.ema_stds:
            check_float("ema_stds entries", s, minimum=1e-4, maximum=0.28)
        check_int("seed", self.seed, minimum=0, maximum=2 ** 62)
        check_int("checkpoint_every", self.checkpoint_every, minimum=1)
        check_int("log_every", self.log_every, minimum=1)
        check_choice("lr_decay", self.lr_decay, LR_DECAYS)
        check_float("adam_beta1", self.adam_beta1, minimum=0.0, maximum=0.999999)
        check_float("adam_beta2", self.adam_beta2, minimum=0.0, maximum=0.999999)
        check_float("adam_eps", self.adam_eps, minimum=0.0, maximum=1.0)
        check_choice("precision", self.precision, PRECISIONS)
        check_int("snapshot_every", self.snapshot_every, minimum=0)


# The multi-source paper's EDM2-XS schedules on ImageNet latents, keyed by
# (number of classes K, images per class n): (training images, reference lr, t_ref in batches
# of 2048). Taken from the digest of the authors' presets (shared/reference/paper.md, 5b).
PAPER_SCHEDULES: dict[tuple[int, int], tuple[int, float, int]] = {
    (1, 100): (50_331_648, 0.0040, 4000),
    (1, 500): (134_217_728, 0.0040, 2000),
    (1, 1000): (184_549_376, 0.0050, 2500),
    (3, 100): (67_108_864, 0.0020, 2000),
    (3, 500): (67_108_864, 0.0020, 2500),
    (3, 1000): (67_108_864, 0.0020, 2500),
    (5, 100): (67_108_864, 0.0040, 4000),
    (5, 500): (134_217_728, 0.0060, 4000),
    (5, 1000): (100_663_296, 0.0060, 4000),
    (10, 100): (67_108_864, 0.0030, 3000),
    (10, 500): (100_663_296, 0.0030, 3000),
    (10, 1000): (402_653_184, 0.0060, 3000),
}


def paper_train_config(num_classes: int, per_class: int, batch_size: int = 2048,
                       **overrides: object) -> TrainConfig:
    """The paper's schedule for (K, n) as a TrainConfig (10M-image warm-up, 'multisource' decay)."""
    key = (num_classes, per_class)
    if key not in PAPER_SCHEDULES:
        raise InputError(f"(num_classes, per_class) must be one of {sorted(PAPER_SCHEDULES)}, "
                         f"got {key}")
    images, lr, t_ref = PAPER_SCHEDULES[key]
    check_int("batch_size", batch_size, minimum=1)
    config = TrainConfig(batch_size=batch_size, total_steps=max(1, images // batch_size),
                         lr_ref=lr, t_ref_steps=max(1, t_ref * 2048 // batch_size),
                         warmup_steps=max(1, 10_000_000 // batch_size), ema_stds=(0.05, 0.10),
                         seed=0, checkpoint_every=max(1, 67_108_864 // batch_size),
                         log_every=max(1, 65_536 // batch_size), lr_decay="multisource")
    return dataclasses.replace(config, **overrides)  # type: ignore[arg-type]


PRESETS: dict[str, tuple[DiffusionConfig, TrainConfig]] = {
    # 8x8x1 (scikit-learn digits): trains in seconds; for tests and the smoke profile.
    "smoke": (
        DiffusionConfig(img_resolution=8, img_channels=1, label_dim=10, model_channels=16,
                        channel_mult=(1, 2), num_blocks=1, attn_resolutions=(),
                        P_mean=-0.8, P_std=1.6),
        TrainConfig(batch_size=64, total_steps=200, lr_ref=0.01, t_ref_steps=100,
                    warmup_steps=20, checkpoint_every=100, log_every=10),
    ),
    # 16x16x1 (e.g. Fashion-MNIST pooled): a few minutes per model on 2 CPU cores.
    "book": (
        DiffusionConfig(img_resolution=16, img_channels=1, label_dim=10, model_channels=32,
                        channel_mult=(1, 2), num_blocks=1, attn_resolutions=(),
                        P_mean=-0.8, P_std=1.6),
        TrainConfig(batch_size=64, total_steps=600, lr_ref=0.01, t_ref_steps=300,
                    warmup_steps=50, checkpoint_every=100, log_every=25),
    ),
    # EDM2-XS on 32x32x4 SD-VAE latents with the multi-source paper's loss settings and its
    # (K=10, n=1000) schedule at batch 2048. For GPUs.
    "paper": (
        DiffusionConfig(img_resolution=32, img_channels=4, label_dim=10, model_channels=128,
                        channel_mult=(1, 2, 3, 4), num_blocks=3, attn_resolutions=(16, 8),
                        P_mean=-0.4, P_std=1.0),
        paper_train_config(10, 1000),
    ),
}
