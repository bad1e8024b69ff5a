"""EDM2 in miniature, converged design: longer runs for the models its cap stopped too early.

The converged design (`edm2_converged`) caps a K-class model at `cap_per_class` x K steps. At
profile `book` that cap stopped the single-source model of digit 1 (the similarity contrast's
class from another domain) in every early seed while its validation bound was still falling or
within noise of its best, so the rule never fired. This experiment (ours) retrains exactly
the models named in `models`, each on its own, with everything the base run gives it - the
same training images, initialisation, batches (drawn from the model's own (seed, step)
generator), learning-rate schedule, EMA, stopping rule, evaluation grid and scoring seeds -
and a cap `cap_factor` times larger. A stack of one model runs the same code as the base
run's stack of all of them (`models.diffusion.stacked`), so up to floating-point rounding in
the batched arithmetic it continues the same trajectory past the old cap.

Rows have the base run's columns, plus `extension_cap_factor`; chapter 7 reads the plateau
arm of these models from here and says so.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch

from multisource.common.validation import InputError
from multisource.experiments import Experiment, register
from multisource.experiments import edm2_converged as base

NAME = "edm2_extension"


@dataclass(frozen=True)
class Edm2ExtensionConfig:
    """The base profile, the models to extend (classes in label order) and the cap factor."""

    base: base.Edm2ConvergedConfig
    models: tuple[tuple[int, ...], ...]
    cap_factor: int = 4

    def model_config(self, classes: tuple[int, ...]) -> base.Edm2ConvergedConfig:
        """A base config whose design is exactly `classes`, with the larger cap.

        `design_models` of a config whose centre is `classes` and whose only K is len(classes)
        is that one model; data, classifier and validation split depend on the domain alone,
        so they are the base run's."""
        if self.cap_factor < 1:
            raise InputError(f"cap_factor must be an integer >= 1, got {self.cap_factor}")
        cap = self.base.cap_per_class * self.cap_factor
        if cap * len(classes) > max(self.base.eval_grid):
            raise InputError(f"cap_factor x cap_per_class x K = {cap * len(classes)} must be "
                             f"at most the last evaluation step {max(self.base.eval_grid)}")
        return replace(self.base, centre=tuple(classes), k_values=(len(classes),), groups=(),
                       cap_per_class=cap)


def tasks(config: Edm2ExtensionConfig) -> list[dict[str, Any]]:
    """One task per model and base seed."""
    for classes in config.models:
        if classes not in base.design_models(config.base):
            raise InputError(f"models must be models of the base design, got {classes}")
    return [{"model": list(classes), "seed": s} for classes in config.models
            for s in config.base.seeds]


def run_task(config: Edm2ExtensionConfig, task: dict[str, Any], device: torch.device
             ) -> list[dict[str, Any]]:
    """One model of one seed, trained alone to its rule or the larger cap, scored like the
    base run (curve rows included)."""
    single = config.model_config(tuple(int(c) for c in task["model"]))
    rows = base.run_task(single, {"kind": "seed", "seed": int(task["seed"])}, device)
    for row in rows:
        row["extension_cap_factor"] = config.cap_factor
    return rows


# Digit 1 is class 21 of the pooled domain (the contrast group `cat + digit 1`).
PROFILES = {
    "smoke": Edm2ExtensionConfig(base=base.SMOKE, models=((1,),), cap_factor=2),
    "book": Edm2ExtensionConfig(base=base.BOOK, models=((21,),)),
    "paper": Edm2ExtensionConfig(base=base.GPU, models=((21,),)),
}

register(Experiment(
    name=NAME,
    description="EDM2-style diffusion, converged design: the models its cap stopped early, "
                "retrained alone with a 4x cap",
    chapter="07_edm2_diffusion",
    profiles=PROFILES,
    tasks=tasks,
    run_task=run_task,
))
