"""The multi-source paper's EDM2-XS training schedules, chosen from (K, n per class, level).

The authors' code ([CODE] in the project's paper digest, section 5b) names one preset per
(number of classes K, images per class n): `edm2-img256-xs-{K}c-{n}`, plus one variant
`edm2-img256-xs-10c-1000-nlr`. Each fixes the training length (images), the reference learning
rate and the decay point `ref_batches` (in batches of 2048). The presets do not depend on the
similarity level: every level of a (K, n) uses the same schedule. Which presets produced the
paper's reported runs is unknown; this module only makes the authors' table selectable.

The model is EDM2-XS on 32x32x4 latents (`PRESETS["paper"]`); the schedule becomes a
`TrainConfig` through `paper_train_config` (10M-image linear warm-up, the authors' lr decay).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from multisource.common.validation import InputError, check_int
from multisource.models.diffusion.config import (
    PAPER_SCHEDULES,
    PRESETS,
    DiffusionConfig,
    TrainConfig,
    paper_train_config,
)

LEVELS = ("sim1", "sim2", "sim3")
PRESET_BATCH = 2048      # [CODE] every preset's batch; the scripts override it (1024 x GPUs)
LATENT_SHAPE = (4, 32, 32)   # SD-VAE latents of 256x256 images (downsampling factor 8)

# [CODE] The one preset that is not in `PAPER_SCHEDULES`: the same (K, n) = (10, 1000) as
# `edm2-img256-xs-10c-1000`, trained four times longer at a lower lr ("nlr").
_VARIANTS: dict[str, tuple[int, int, int, float, int]] = {
    "nlr": (10, 1000, 1_610_612_736, 0.0040, 6000),
}


@dataclass(frozen=True)
class PaperSchedule:
    """One of the authors' presets: its name and the numbers it fixes."""

    name: str
    k: int
    n_per_class: int
    level: str
    training_images: int
    lr_ref: float
    ref_batches: int
    batch: int = PRESET_BATCH

    def train_config(self, batch_size: int | None = None, **overrides: object) -> TrainConfig:
        """This schedule as a TrainConfig at a global `batch_size` (default: the preset's 2048).

        Lengths counted in images by the authors (duration, warm-up, decay point) are
        converted to steps of `batch_size`, as `paper_train_config` does.
        """
        batch = self.batch if batch_size is None else check_int("batch", batch_size,
                                                                  minimum=1, maximum=1_000_000)
        config = paper_train_config(10, 1000, batch_size=batch)
        config = dataclasses.replace(
            config, total_steps=max(1, self.training_images // batch), lr_ref=self.lr_ref,
            t_ref_steps=max(1, self.ref_batches * PRESET_BATCH // batch))
        return dataclasses.replace(config, **overrides)  # type: ignore[arg-type]

    def describe(self) -> str:
        """One line saying which preset was chosen and what it fixes."""
        return (f"schedule {self.name} (K={self.k}, n={self.n_per_class} per class, level "
                f"{self.level}; the authors' presets do not depend on the level): "
                f"{self.training_images:,} training images, lr {self.lr_ref:g}, decay after "
                f"{self.ref_batches} batches of {PRESET_BATCH}")


def valid_combinations() -> list[tuple[int, int]]:
    """The (K, n per class) pairs the authors have a preset for, sorted."""
    return sorted(PAPER_SCHEDULES)


def _invalid(k: object, n: object, level: object) -> InputError:
    pairs = " ".join(f"({a},{b})" for a, b in valid_combinations())
    return InputError(f"no authors' preset for K={k}, n per class={n}, level={level}; valid "
                      f"(K, n) pairs: {pairs}; levels: {', '.join(LEVELS)}; variant 'nlr' "
                      f"only with (10,1000)")


def select_schedule(k: int, n_per_class: int | None, level: str,
                    variant: str | None = None) -> PaperSchedule:
    """The authors' preset for K classes, n images per class, at a similarity level.

    `variant='nlr'` picks `edm2-img256-xs-10c-1000-nlr` (only for K=10, n=1000). Any other
    combination is an InputError that lists the valid ones.
    """
    if level not in LEVELS or n_per_class is None or isinstance(k, bool) or \
            not isinstance(k, int) or isinstance(n_per_class, bool) or \
            not isinstance(n_per_class, int):
        raise _invalid(k, n_per_class, level)
    if variant is not None:
        if variant not in _VARIANTS or _VARIANTS[variant][:2] != (k, n_per_class):
            raise _invalid(k, n_per_class, level)
        _, _, images, lr, ref = _VARIANTS[variant]
        return PaperSchedule(f"edm2-img256-xs-{k}c-{n_per_class}-{variant}", k, n_per_class,
                             level, images, lr, ref)
    if (k, n_per_class) not in PAPER_SCHEDULES:
        raise _invalid(k, n_per_class, level)
    images, lr, ref = PAPER_SCHEDULES[(k, n_per_class)]
    return PaperSchedule(f"edm2-img256-xs-{k}c-{n_per_class}", k, n_per_class, level, images,
                         lr, ref)


def paper_model_config(label_dim: int) -> DiffusionConfig:
    """EDM2-XS on 32x32x4 latents with the paper's loss settings, for `label_dim` classes."""
    model_config = PRESETS["paper"][0]
    check_int("label_dim", label_dim, minimum=1, maximum=1000)
    return dataclasses.replace(model_config, label_dim=label_dim)


def check_paper_shape(shape: tuple[int, ...]) -> None:
    """InputError unless `shape` (C, H, W) is the 32x32x4 latent shape the paper preset needs."""
    if tuple(shape) != LATENT_SHAPE:
        got = "x".join(map(str, shape))
        raise InputError(f"data for the paper preset must be 4x32x32 SD-VAE latents of "
                         f"256-pixel images (run `multisource imagenet encode`), got {got}")
