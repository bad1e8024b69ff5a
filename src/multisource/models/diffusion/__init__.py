"""EDM2-style class-conditional diffusion (Karras et al. 2024), written from the paper.

May import `multisource.common` and the rest of `multisource.models`.

Magnitude-preserving layers, a small U-Net with EDM preconditioning, the uncertainty-weighted
loss, inverse-sqrt learning rate, power-function EMA, the Heun sampler, and a trainer that runs in
one process or under `torchrun` (DDP). Presets: `smoke`, `book`, `paper` (EDM2-XS).
"""

from multisource.models.diffusion.config import (
    PAPER_SCHEDULES,
    PRESETS,
    DiffusionConfig,
    TrainConfig,
    paper_train_config,
)
from multisource.models.diffusion.ema import (
    PowerFunctionEMA,
    gamma_to_sigma_rel,
    sigma_rel_to_gamma,
)
from multisource.models.diffusion.network import EDMDenoiser, build_model, count_parameters
from multisource.models.diffusion.sampler import heun_sigmas, sample
from multisource.models.diffusion.training import (
    TrainResult,
    edm2_loss,
    learning_rate,
    load_result,
    load_snapshot,
    snapshot_steps,
    train,
)

__all__ = [
    "PAPER_SCHEDULES",
    "PRESETS",
    "DiffusionConfig",
    "EDMDenoiser",
    "PowerFunctionEMA",
    "TrainConfig",
    "TrainResult",
    "build_model",
    "count_parameters",
    "edm2_loss",
    "gamma_to_sigma_rel",
    "heun_sigmas",
    "learning_rate",
    "load_result",
    "load_snapshot",
    "paper_train_config",
    "sample",
    "sigma_rel_to_gamma",
    "snapshot_steps",
    "train",
]
