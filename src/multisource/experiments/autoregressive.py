"""Autoregressive experiments (chapter 5): multi- vs single-source MLE with exact average TV.

`autoregressive_tabular`: the order-1 tabular AR model, closed-form MLE, many seeds per task
(vectorised). `autoregressive_neural`: the neural AR model with a teacher of the same
architecture inside the parameter box, converged maximum-likelihood fits under one restart
rule with their checks, and the Fisher-information predictions of the risk
(`multisource.experiments.sweep`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from multisource.experiments import Experiment, register
from multisource.experiments.sweep import (
    FIGURE1_N,
    NetworkFamily,
    NetworkSweep,
    SweepGrid,
    base_row,
    figure1_settings,
    network_task_cost,
    network_tasks,
    run_network_task,
    setting_rng,
)
from multisource.models import autoregressive as ar
from multisource.models.split_fit import as_separate_networks

# ---------------------------------------------------------------------------------------------
# Tabular AR
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TabularConfig(SweepGrid):
    """Tabular AR sweep: V tokens, length L (L - 1 transition tables), Dirichlet(alpha) rows;
    seeds are drawn in blocks of `seed_block` per task (vectorised)."""

    V: int = 2
    L: int = 9
    alpha: float = 1.0
    seed_block: int = 200


def tabular_tasks(config: TabularConfig) -> list[dict[str, Any]]:
    """One task per setting and block of `seed_block` seeds."""
    return [{**s, "first_seed": lo, "n_seeds": min(config.seed_block, config.seeds - lo)}
            for s in figure1_settings(config) for lo in range(0, config.seeds, config.seed_block)]


def run_tabular_task(config: TabularConfig, task: dict[str, Any],
                     device: torch.device | None = None) -> list[dict[str, Any]]:
    """Draw truths and exact transition counts for a block of seeds, return one row per seed."""
    K, n, beta = task["K"], task["n"], task["beta_sim"]
    rng = setting_rng(config.base_seed, task["first_seed"], task)
    shared = ar.shared_transition_mask(config.L, beta)
    tables = ar.random_tabular_tables(K, config.V, config.L, shared, config.alpha, rng,
                                      n_draws=task["n_seeds"])
    counts = ar.sample_transition_counts(tables, n, rng)
    risks = ar.tabular_risks(tables, counts, shared)
    unseen = (counts.sum(axis=-1) == 0).mean(axis=(1, 2, 3))
    per_table = config.V * (config.V - 1)
    head = base_row(task, ar.tabular_beta_sim(shared), per_table * int(shared.sum()),
                    per_table * int((~shared).sum()))
    return [{**head, "seed": task["first_seed"] + i, "tv_multi": float(risks["multi"][i]),
             "tv_single": float(risks["single"][i]), "unseen_rows": float(unseen[i])}
            for i in range(task["n_seeds"])]


TABULAR_PROFILES = {
    "smoke": TabularConfig(K_values=(1, 5), n_values=(100, 500), beta_values=(0.0, 0.5, 1.0),
                           seeds=20, seed_block=20),
    "book": TabularConfig(seeds=400, seed_block=200),
    "paper": TabularConfig(seeds=4000, seed_block=500),
}

register(Experiment(
    name="autoregressive_tabular",
    description="Tabular order-1 AR sources: exact average TV, multi vs single MLE (Fig. 1)",
    chapter="05_autoregressive",
    profiles=TABULAR_PROFILES,
    tasks=tabular_tasks,
    run_task=run_tabular_task,
))


# ---------------------------------------------------------------------------------------------
# Neural AR
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NeuralConfig(NetworkSweep):
    """Neural AR sweep: V tokens, length L, `units` hidden units per source network split by
    beta_sim, a teacher uniform on the inner half of the parameter box `ar.AR_BOX`."""

    V: int = 2
    L: int = 8


def neural_spec(config: NeuralConfig, K: int, beta_sim: float) -> ar.NeuralARSpec:
    """The architecture of one setting: round(beta_sim * units) shared hidden units."""
    shared = round(beta_sim * config.units)
    return ar.NeuralARSpec(config.V, config.L, K, shared, config.units - shared)


def _sample(spec: ar.NeuralARSpec, teacher: dict[str, torch.Tensor], n: int,
            rng: np.random.Generator) -> np.ndarray:
    x, y = ar.sample_neural_ar(teacher, spec, n, rng)
    return ar.sequence_counts(x, y, spec.K, spec.V)


def _source_log_probs(spec: ar.NeuralARSpec):
    one = ar.NeuralARSpec(spec.V, spec.L, 1, spec.shared_units, spec.specific_units)
    enum = ar.sequence_enumeration(one)
    return lambda params: ar.neural_ar_log_probs(params, one, enum)[0, 0]


NEURAL_FAMILY = NetworkFamily(
    spec=neural_spec,
    teacher=lambda spec, generator: ar.teacher_neural_ar(spec, generator),
    probs=lambda spec, params: ar.neural_ar_all_probs(params, spec)[0],
    sample=_sample,
    nll=lambda spec, params, counts: ar.neural_ar_nll(params, spec, counts),
    problem=lambda spec, counts: ar.neural_ar_problem(spec, counts),
    shapes=ar.neural_ar_shapes,
    box=ar.AR_BOX,
    source_log_probs=_source_log_probs,
    shared=("Ws", "bs", "As"),
    as_separate=as_separate_networks,
)


def run_neural_task(config: NeuralConfig, task: dict[str, Any],
                    device: torch.device | None = None) -> list[dict[str, Any]]:
    """One setting and seed (`sweep.run_network_task`); the fits run on the CPU."""
    return run_network_task(config, task, NEURAL_FAMILY)


NEURAL_PROFILES = {
    "smoke": NeuralConfig(L=5, K_values=(3,), n_values=(300,), beta_values=(0.5,), K_default=3,
                          n_default=300, restarts=2, max_blocks=2, steps=300,
                          budgets=(2, 4), budget_seeds=1, seeds=1),
    # 20 teacher seeds at every setting (K up to 15); the restart-budget curve on every
    # default seed (it reuses the rule's runs of the same starts).
    "book": NeuralConfig(K_values=(3, 5, 10, 15), n_default=5000, n_values=(1000, 5000, 20000),
                         beta_values=(0.25, 0.5, 0.75, 1.0), seeds=20, budget_seeds=20),
    "paper": NeuralConfig(n_default=5000, n_values=(*FIGURE1_N, 20000), seeds=50),
}

register(Experiment(
    name="autoregressive_neural",
    description="Neural AR sources: converged MLE, exact TV/Hellinger/sqrt(KL), Fisher predictions",
    chapter="05_autoregressive",
    profiles=NEURAL_PROFILES,
    tasks=network_tasks,
    run_task=run_neural_task,
    task_cost=network_task_cost,
))
