"""EDM2 in miniature, converged design: models whose cap is the end of the evaluation grid.

The converged design (`edm2_converged`) caps a K-class model at `cap_per_class` x K steps, and
for K = 10 at profile `book` that cap (40,960 steps) is also the last step of its evaluation
grid. `edm2_extension` can raise a cap only within that grid, so it cannot extend this model.
At profile `book` the K = 10 model stopped at the cap in most seeds. Its validation bound had
risen beyond noise from its best, but its stopping rule had not fired.

This experiment (ours) runs `edm2_extension` on a base config whose evaluation grid continues
past the last step (`extra_grid`). The learning-rate schedule and the EMA do not depend on where
training ends (`TrainConfig.total_steps`), and each model draws its batches from its own
(seed, step) generator, so the run retraces the base run's trajectory through the old last
step and then goes on. It trains only the base seeds listed in `seeds`: at `book`, those whose
K = 10 run the base run stopped at its cap. In the other seeds the rule fired inside the grid,
and a retrained run would stop at the same step.

The design of a K-class model includes its K single-source models, so they train beside it
(stacked, each to its own rule, with a cap `cap_factor` times larger): a replicate of those
runs with a longer cap, which chapter 7 reads too. Rows are `edm2_extension`'s, plus
`extension_extra_grid` (the added steps, as text).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import pairwise
from typing import Any

import torch

from multisource.common.validation import InputError
from multisource.experiments import Experiment, register
from multisource.experiments import edm2_converged as base
from multisource.experiments import edm2_extension as extension

NAME = "edm2_extension_grid"


@dataclass(frozen=True)
class Edm2GridExtensionConfig:
    """The extension (base profile, models, cap factor), the evaluation steps added after the
    base grid's last step, and the base seeds to run."""

    extension: extension.Edm2ExtensionConfig
    extra_grid: tuple[int, ...]
    seeds: tuple[int, ...]

    def grown(self) -> extension.Edm2ExtensionConfig:
        """The extension config on the base config with the longer grid and these seeds."""
        old = self.extension.base
        last = max(old.eval_grid)
        steps = list(self.extra_grid)
        if not steps or steps[0] <= last or any(b <= a for a, b in pairwise(steps)):
            raise InputError(f"extra_grid must be increasing steps after the base grid's last "
                             f"step {last}, got {self.extra_grid}")
        missing = [s for s in self.seeds if s not in old.seeds]
        if not self.seeds or missing:
            raise InputError(f"seeds must be a non-empty subset of the base seeds {old.seeds}, "
                             f"got {self.seeds}")
        return replace(self.extension, base=replace(old, eval_grid=old.eval_grid + tuple(steps),
                                                    seeds=tuple(self.seeds)))


def tasks(config: Edm2GridExtensionConfig) -> list[dict[str, Any]]:
    """One task per model and listed seed."""
    return extension.tasks(config.grown())


def run_task(config: Edm2GridExtensionConfig, task: dict[str, Any], device: torch.device
             ) -> list[dict[str, Any]]:
    """One model of one seed, trained alone past the base grid to its rule or the larger cap."""
    rows = extension.run_task(config.grown(), task, device)
    added = " ".join(str(s) for s in config.extra_grid)
    for row in rows:
        row["extension_extra_grid"] = added
    return rows


_BOOK_K10 = base.BOOK.centre[:10]
PROFILES = {
    "smoke": Edm2GridExtensionConfig(
        extension=extension.Edm2ExtensionConfig(base=base.SMOKE, models=(base.SMOKE.centre,),
                                                cap_factor=2),
        extra_grid=(64, 96), seeds=base.SMOKE.seeds),
    "book": Edm2GridExtensionConfig(
        extension=extension.Edm2ExtensionConfig(base=base.BOOK, models=(_BOOK_K10,),
                                                cap_factor=2),
        extra_grid=(49152, 65536, 81920), seeds=(2, 3, 4, 5, 6, 7)),
    "paper": Edm2GridExtensionConfig(
        extension=extension.Edm2ExtensionConfig(base=base.GPU, models=(_BOOK_K10,),
                                                cap_factor=2),
        extra_grid=(49152, 65536, 81920), seeds=base.GPU.seeds),
}

register(Experiment(
    name=NAME,
    description="EDM2-style diffusion, converged design: the K = 10 model trained past the "
                "base evaluation grid with a 2x cap",
    chapter="07_edm2_diffusion",
    profiles=PROFILES,
    tasks=tasks,
    run_task=run_task,
))
