"""EDM2 in miniature, converged design: a similarity axis of K = 3 groups (chapter 7).

The converged design (`edm2_converged`) compares one similar group (tops: Shirt, Pullover,
Coat) with one dissimilar group (Shirt, cat, digit 1) that differs in domain as well as in
similarity. This experiment (ours) trains six K = 3 groups that all contain the anchor
(Shirt) and span the measured similarity between those two: the two groups themselves and
four more inside Fashion-MNIST, one of them (Shirt, Sandal, Sneaker) as far from the anchor as
the cross-domain group, so that a reading can separate similarity from domain.

Measured similarity: the `similarity` task measures, once, on the validation images and with
the domain classifier, the Frechet distance in its features (FCD) between the anchor's images
and each other class's images, averaged over the group (`fcd_to_anchor`, with the pairwise
mean and the pixel-space distances beside it). At `book` the groups were chosen from those
distances (Shirt to: Pullover 9.6, Coat 14.2, T-shirt 21.6, Dress 27.7, Trouser 44.1, Bag 62.5,
Sandal 128.8, Sneaker 166.8, cat 123.2, digit 1 175.3), measured before any model was trained.

Training and scoring are the converged design's, by calling its `run_task` on a converged
config whose design is these groups (`Edm2SimilarityConfig.converged`): per seed, one
multi-source model per group and ONE single-source model per class they contain, the anchor's
included, all trained in one vmapped stack, each to its own plateau rule on its validation
likelihood bound, scored at the same arms. So every group of a seed is compared with the
same single-source anchor model. Each model is seeded exactly as in `edm2_converged` (the
seed's initialisation, the class subset drawn with the seed, batches from the model's own
(seed, step) generator) with the same `label_dim`, so the single-source models retrain the
converged design's models of the same seed identically seeded (the same trajectories up to
floating-point rounding of the batched arithmetic). They are retrained here, not read from
the converged table, because FCD and accuracy must be measured with one classifier for
multi and single, and the stored table's classifier cannot be rebuilt bit for bit.

The cap is the converged design's, with its extension rule (`extension_factor` = 4 at `book`):
a model that reaches `cap_per_class` x K steps before its rule fires goes on, in the same
stack, up to 4 times that, multi and single alike; a model whose rule fires before the cap
trains and stops as if there were no extension (the schedule does not depend on the cap). One
change from the converged design's `book` profile: no evaluation steps past its grid
(`extension_grid` is empty), so a K = 3 model stops at the grid's last step, 40,960, at most.

Each seed is one task; it checkpoints after every evaluation and resumes from there (the
converged design's mechanism; `task_wall_s` counts every segment).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch

from multisource.common.validation import InputError
from multisource.experiments import Experiment, register
from multisource.experiments import edm2_converged as base

NAME = "edm2_similarity"


@dataclass(frozen=True)
class Edm2SimilarityConfig:
    """The converged profile whose training settings (cap and extension rule included) are
    used, the anchor, and the compared K = 3 groups (name, domain label, classes with the
    anchor first)."""

    base: base.Edm2ConvergedConfig
    anchor: int
    groups: tuple[tuple[str, str, tuple[int, ...]], ...]

    def converged(self) -> base.Edm2ConvergedConfig:
        """The converged config of this design: the anchor alone as its K sweep, these groups
        as its compared groups; every other field (network, training, plateau rule, cap and
        extension rule, grid, scoring, seeds) is the base profile's."""
        if not self.groups:
            raise InputError("groups must name at least one group")
        for name, _, classes in self.groups:
            if len(classes) < 2 or classes[0] != self.anchor or len(set(classes)) != len(classes):
                raise InputError(f"groups: {name} must list distinct classes, anchor "
                                 f"{self.anchor} first, got {classes}")
        return replace(self.base, centre=(self.anchor,), k_values=(1,), groups=self.groups)


def tasks(config: Edm2SimilarityConfig) -> list[dict[str, Any]]:
    """The similarity measurement, then one task per seed (all its models train together)."""
    return base.tasks(config.converged())


def model_caps(config: Edm2SimilarityConfig) -> dict[str, int]:
    """Every model of a seed (by key) and the most steps it can train (its extended cap)."""
    design = config.converged()
    return {base.model_key(m): base.extended_cap_steps(design, len(m))
            for m in base.design_models(design)}


def task_cost(config: Edm2SimilarityConfig, task: dict[str, Any]) -> float:
    """Relative cost: a seed's model-steps at most (the sum of its models' caps; training cost
    is linear in model-steps, stacked or not); the similarity task counts as one step."""
    if task.get("kind") == "similarity":
        return 1.0
    return float(sum(model_caps(config).values()))


def run_task(config: Edm2SimilarityConfig, task: dict[str, Any], device: torch.device
             ) -> list[dict[str, Any]]:
    """The similarity measurement, or every model of one seed (the converged design's task)."""
    return base.run_task(config.converged(), task, device)


# Pool labels: Fashion 0-9 (0 T-shirt, 1 Trouser, 2 Pullover, 3 Dress, 4 Coat, 5 Sandal,
# 6 Shirt, 7 Sneaker, 8 Bag, 9 Ankle boot), animals 10-19 (12 cat), digits 20-29 (21 digit 1).
BOOK_GROUPS: tuple[tuple[str, str, tuple[int, ...]], ...] = (
    ("tops", "fashion", (6, 2, 4)),                   # the converged design's K3 group
    ("T-shirt + dress", "fashion", (6, 0, 3)),
    ("trouser + bag", "fashion", (6, 1, 8)),
    ("sandal + bag", "fashion", (6, 5, 8)),
    ("sandal + sneaker", "fashion", (6, 5, 7)),       # as far from Shirt as cat + digit 1
    ("cat + digit 1", "three domains", (6, 12, 21)),  # the converged design's contrast group
)
SMOKE = Edm2SimilarityConfig(
    base=replace(base.SMOKE, groups=(), extension_factor=2), anchor=8,
    groups=(("near", "digits", (8, 3, 5)), ("mid", "digits", (8, 9, 2)),
            ("far", "digits", (8, 0, 1))))
BOOK = Edm2SimilarityConfig(base=replace(base.BOOK, extension_grid=()), anchor=6,
                            groups=BOOK_GROUPS)
# For one GPU: the book design on the converged design's GPU seeds (the same network).
GPU = Edm2SimilarityConfig(base=replace(base.GPU, extension_grid=()), anchor=6,
                           groups=BOOK_GROUPS)
PROFILES = {"smoke": SMOKE, "book": BOOK, "paper": GPU}

register(Experiment(
    name=NAME,
    description="EDM2-style diffusion, converged design: six K = 3 groups spanning the "
                "measured similarity to the anchor (one domain and across domains), 8 seeds",
    chapter="07_edm2_diffusion",
    profiles=PROFILES,
    tasks=tasks,
    run_task=run_task,
    task_cost=task_cost,
))
