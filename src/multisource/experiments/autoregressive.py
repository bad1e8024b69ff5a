"""Autoregressive experiments (chapter 5): multi- vs single-source MLE with exact average TV.

`autoregressive_tabular`: the order-1 tabular AR model, closed-form MLE, many seeds per task
(vectorised). `autoregressive_neural`: the neural AR model with a teacher of the same
architecture, Adam + L-BFGS with restarts, optimisation gap recorded. Both sweep K, n and
beta_sim one at a time around a default setting, as Figure 1 of the paper does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from multisource.bounds import bound_ratio
from multisource.experiments import Experiment, register
from multisource.models import autoregressive as ar

FIGURE1_K = (1, 3, 5, 10, 15)
FIGURE1_N = (100, 300, 500, 1000, 5000)
BETA_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)


def figure1_settings(K_default: int, n_default: int, beta_default: float,
                     K_values: tuple[int, ...], n_values: tuple[int, ...],
                     beta_values: tuple[float, ...]) -> list[dict[str, Any]]:
    """The union of three one-at-a-time sweeps (K, n, beta_sim) around a default, no repeats."""
    settings: list[dict[str, Any]] = []
    for K in K_values:
        settings.append({"K": int(K), "n": int(n_default), "beta_sim": float(beta_default)})
    for n in n_values:
        settings.append({"K": int(K_default), "n": int(n), "beta_sim": float(beta_default)})
    for beta in beta_values:
        settings.append({"K": int(K_default), "n": int(n_default), "beta_sim": float(beta)})
    unique: list[dict[str, Any]] = []
    for s in settings:
        if s not in unique:
            unique.append(s)
    return unique


def setting_rng(base_seed: int, seed: int, setting: dict[str, Any]) -> np.random.Generator:
    """A numpy Generator keyed by (base seed, seed, K, n, beta_sim in thousandths)."""
    key = [int(base_seed), int(seed), int(setting["K"]), int(setting["n"]),
           round(1000 * float(setting["beta_sim"]))]
    return np.random.default_rng(key)


# ---------------------------------------------------------------------------------------------
# Tabular AR
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TabularConfig:
    """Tabular AR sweep: V tokens, length L (L - 1 transition tables), Dirichlet(alpha) rows."""

    V: int = 2
    L: int = 9
    alpha: float = 1.0
    K_default: int = 5
    n_default: int = 500
    beta_default: float = 0.5
    K_values: tuple[int, ...] = FIGURE1_K
    n_values: tuple[int, ...] = FIGURE1_N
    beta_values: tuple[float, ...] = BETA_GRID
    seeds: int = 200
    seed_block: int = 200
    base_seed: int = 0


def tabular_tasks(config: TabularConfig) -> list[dict[str, Any]]:
    """One task per setting and block of `seed_block` seeds."""
    settings = figure1_settings(config.K_default, config.n_default, config.beta_default,
                                config.K_values, config.n_values, config.beta_values)
    return [{**s, "first_seed": lo, "n_seeds": min(config.seed_block, config.seeds - lo)}
            for s in settings for lo in range(0, config.seeds, config.seed_block)]


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
    theory = float(bound_ratio(K, ar.tabular_beta_sim(shared)))
    return [{"K": K, "n": n, "beta_sim": ar.tabular_beta_sim(shared),
             "seed": task["first_seed"] + i, "tv_multi": float(risks["multi"][i]),
             "tv_single": float(risks["single"][i]), "unseen_rows": float(unseen[i]),
             "theory_ratio": theory} for i in range(task["n_seeds"])]


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
class NeuralConfig:
    """Neural AR sweep: V tokens, length L, `units` hidden units split by beta_sim."""

    V: int = 2
    L: int = 8
    units: int = 4
    teacher_weight_scale: float = 1.0
    teacher_head_scale: float = 1.5
    restarts: int = 3
    warmup: int = 100
    steps: int = 300
    lr: float = 0.05
    init_scale: float = 0.5
    K_default: int = 5
    n_default: int = 1000
    beta_default: float = 0.5
    K_values: tuple[int, ...] = FIGURE1_K
    n_values: tuple[int, ...] = (200, 1000, 5000)
    beta_values: tuple[float, ...] = BETA_GRID
    seeds: int = 4
    base_seed: int = 0


def neural_tasks(config: NeuralConfig) -> list[dict[str, Any]]:
    """One task per setting and seed."""
    settings = figure1_settings(config.K_default, config.n_default, config.beta_default,
                                config.K_values, config.n_values, config.beta_values)
    return [{**s, "seed": seed} for s in settings for seed in range(config.seeds)]


def neural_spec(config: NeuralConfig, K: int, beta_sim: float) -> ar.NeuralARSpec:
    """The architecture of one setting: round(beta_sim * units) shared hidden units."""
    shared = round(beta_sim * config.units)
    return ar.NeuralARSpec(config.V, config.L, K, shared, config.units - shared)


def run_neural_task(config: NeuralConfig, task: dict[str, Any],
                    device: torch.device | None = None) -> list[dict[str, Any]]:
    """Teacher, data, both MLE fits and their exact average TV for one setting and seed.

    The networks are tiny (a few hundred parameters), so the fits run on the CPU whatever the
    device; `device` is accepted for the runner's interface.
    """
    torch.set_num_threads(1)
    K, n, beta = task["K"], task["n"], task["beta_sim"]
    rng = setting_rng(config.base_seed, task["seed"], task)
    torch_seed = int(rng.integers(2**62))
    spec = neural_spec(config, K, beta)
    teacher = ar.init_neural_ar(spec, 1, torch.Generator().manual_seed(torch_seed),
                                weight_scale=config.teacher_weight_scale,
                                head_scale=config.teacher_head_scale)
    truth = ar.neural_ar_all_probs(teacher, spec)[0]
    x, y = ar.sample_neural_ar(teacher, spec, n, rng)
    counts = ar.sequence_counts(x, y, K, config.V)
    teacher_nll = ar.neural_ar_nll(teacher, spec, counts)
    row: dict[str, Any] = {"K": K, "n": n, "beta_sim": spec.beta_sim, "seed": task["seed"],
                           "shared_params": spec.shared_parameters,
                           "specific_params": spec.specific_parameters,
                           "teacher_nll": teacher_nll,
                           "theory_ratio": float(bound_ratio(K, spec.beta_sim))}
    # With K = 1 the two classes coincide (units are only relabelled): one fit serves both.
    for name, model in (("multi", spec if K > 1 else spec.single()), ("single", spec.single())):
        fit = ar.fit_neural_ar(model, counts, restarts=config.restarts, warmup=config.warmup,
                               steps=config.steps, lr=config.lr, init_scale=config.init_scale,
                               generator=torch.Generator().manual_seed(torch_seed + 1))
        fitted = ar.neural_ar_all_probs(fit.params, model)[0]
        row[f"tv_{name}"] = float(ar.average_tv(fitted, truth))
        row[f"nll_{name}"] = fit.train_nll
        row[f"gap_{name}"] = fit.train_nll - teacher_nll
        row[f"restart_spread_{name}"] = float(np.ptp(fit.restart_nll))
    return [row]


NEURAL_PROFILES = {
    "smoke": NeuralConfig(K_values=(3,), n_values=(300,), beta_values=(0.5,), K_default=3,
                          n_default=300, restarts=2, warmup=20, steps=30, seeds=1),
    "book": NeuralConfig(),
    "paper": NeuralConfig(n_values=FIGURE1_N, seeds=20, restarts=5, steps=1000),
}

register(Experiment(
    name="autoregressive_neural",
    description="Neural AR sources (shared/per-source hidden units): exact TV, optimisation gap",
    chapter="05_autoregressive",
    profiles=NEURAL_PROFILES,
    tasks=neural_tasks,
    run_task=run_neural_task,
))
