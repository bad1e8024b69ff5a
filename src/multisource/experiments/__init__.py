"""Experiment registry and sweep runner.

May import every computing package (`models`, `theory`, `images`, `image_metrics`, `pooling`,
`sources`, `metrics`) and `multisource.common`; never readings or the book.

An experiment is a frozen config dataclass per named profile (`smoke`, `book`, `paper`),
a list of independent tasks derived from the config (a task is a JSON-able dict, e.g. one
setting x one seed) and a function that turns one task into result rows. The runner
(`multisource.experiments.runner`) adds progress, checkpoint/resume and atomic, provenance-
stamped output. Experiment modules in this package register themselves on import.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from multisource.common.validation import InputError, check_choice

PROFILES = ("smoke", "book", "paper")

TaskRunner = Callable[[Any, dict[str, Any], torch.device], list[dict[str, Any]]]


@dataclass(frozen=True)
class Experiment:
    """One registered experiment.

    name:        the CLI name (`multisource run <name>`).
    description: one line for `multisource status`.
    chapter:     the notebook stem that shows it.
    profiles:    profile name -> frozen config dataclass (must cover PROFILES).
    tasks:       config -> list of JSON-able task dicts (independent units of work).
    run_task:    (config, task, device) -> rows (list of dicts), one task's results.
    task_cost:   optional (config, task) -> relative cost, so that a restamp reruns the
                 cheapest tasks (`multisource.experiments.restamp`); None: all alike.
    """

    name: str
    description: str
    chapter: str
    profiles: Mapping[str, Any]
    tasks: Callable[[Any], Sequence[dict[str, Any]]]
    run_task: TaskRunner
    task_cost: Callable[[Any, dict[str, Any]], float] | None = None

    @property
    def code_module(self) -> str:
        """The module that computes this experiment's rows (its code hash starts there)."""
        return self.run_task.__module__

    def config(self, profile: str) -> Any:
        """The config of one profile; unknown profiles are an InputError."""
        check_choice("profile", profile, PROFILES)
        return self.profiles[profile]


_REGISTRY: dict[str, Experiment] = {}
# Modules of this package that run, check or restamp experiments but register none.
INFRASTRUCTURE = ("runner", "restamp", "workers")


def register(experiment: Experiment) -> Experiment:
    """Add an experiment to the registry (called by experiment modules on import)."""
    missing = set(PROFILES) - set(experiment.profiles)
    if missing:
        raise ValueError(f"experiment {experiment.name} lacks profiles {sorted(missing)}")
    _REGISTRY[experiment.name] = experiment
    return experiment


def _load_all() -> None:
    for module in pkgutil.iter_modules(__path__):
        if not module.name.startswith("_") and module.name not in INFRASTRUCTURE:
            importlib.import_module(f"{__name__}.{module.name}")


def names() -> list[str]:
    """Names of all registered experiments, sorted."""
    _load_all()
    return sorted(_REGISTRY)


def get(name: str) -> Experiment:
    """The experiment called `name`; unknown names are an InputError listing the known ones."""
    known = names()
    if name not in _REGISTRY:
        raise InputError(f"experiment must be one of {', '.join(known)}; got {name!r}")
    return _REGISTRY[name]
