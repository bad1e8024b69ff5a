"""Energy-based experiments (chapter 6): multi- vs single-source MLE with exact average TV.

`energy_ising`: the Ising family on {-1,+1}^10 (ring couplings and fields), convex
box-constrained MLE with exact gradients. `energy_mlp`: an MLP energy on {-1,+1}^10 with
shared/per-source hidden units, exact log Z by enumeration. `energy_box`: an MLP energy on the
square [-1, 1]^2, Z by Gauss-Legendre quadrature. All three sweep K, n and beta_sim one at a
time around a default setting, as Figure 1 of the paper does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from multisource.bounds import bound_ratio
from multisource.experiments import Experiment, register
from multisource.experiments.autoregressive import (
    BETA_GRID,
    FIGURE1_K,
    FIGURE1_N,
    figure1_settings,
    setting_rng,
)
from multisource.models import energy as en

# ---------------------------------------------------------------------------------------------
# Ising family
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IsingConfig:
    """Ising sweep on a ring of d spins: m = 2 d parameters (d fields, d couplings)."""

    d: int = 10
    field_scale: float = 0.5
    coupling_scale: float = 0.5
    bound: float = 3.0
    K_default: int = 5
    n_default: int = 500
    beta_default: float = 0.5
    K_values: tuple[int, ...] = FIGURE1_K
    n_values: tuple[int, ...] = FIGURE1_N
    beta_values: tuple[float, ...] = BETA_GRID
    seeds: int = 20
    base_seed: int = 0


def ising_tasks(config: IsingConfig) -> list[dict[str, Any]]:
    """One task per setting (all seeds of a setting in one task)."""
    return figure1_settings(config.K_default, config.n_default, config.beta_default,
                            config.K_values, config.n_values, config.beta_values)


def run_ising_task(config: IsingConfig, task: dict[str, Any],
                   device: torch.device | None = None) -> list[dict[str, Any]]:
    """Truths, exact state counts and both box-constrained MLEs for every seed of a setting."""
    K, n, beta = task["K"], task["n"], task["beta_sim"]
    states = en.spin_states(config.d)
    edges = en.ring_edges(config.d)
    stats = en.ising_statistics(states, edges)
    shared = en.ising_shared_mask(config.d, len(edges), beta)
    rng = setting_rng(config.base_seed, 0, task)
    theta = en.random_ising_params(K, shared, config.d, rng, field_scale=config.field_scale,
                                   coupling_scale=config.coupling_scale, n_draws=config.seeds)
    truth = np.exp(en.ising_log_probs(theta, stats))
    counts = en.sample_state_counts(truth, n, rng)
    beta_real = float(shared.mean())
    rows = []
    for s in range(config.seeds):
        teacher_nll = en.ising_nll(theta[s], stats, counts[s])
        row: dict[str, Any] = {"K": K, "n": n, "beta_sim": beta_real, "seed": s,
                               "shared_params": int(shared.sum()),
                               "specific_params": int((~shared).sum()),
                               "theory_ratio": float(bound_ratio(K, beta_real)),
                               "teacher_nll": teacher_nll}
        for name, mask in (("multi", shared), ("single", None)):
            fit = en.fit_ising(counts[s], stats, mask, bound=config.bound)
            fitted = np.exp(en.ising_log_probs(fit.theta, stats))
            row[f"tv_{name}"] = float(en.average_tv(fitted, truth[s]))
            row[f"gap_{name}"] = fit.train_nll - teacher_nll
            row[f"converged_{name}"] = fit.converged
            row[f"at_bound_{name}"] = fit.at_bound
        rows.append(row)
    return rows


ISING_PROFILES = {
    "smoke": IsingConfig(K_values=(1, 5), n_values=(500,), beta_values=(0.0, 0.5, 1.0), seeds=3),
    "book": IsingConfig(),
    "paper": IsingConfig(seeds=200),
}

register(Experiment(
    name="energy_ising",
    description="Ising sources on {-1,+1}^10 (shared/specific couplings and fields): exact TV",
    chapter="06_energy_based",
    profiles=ISING_PROFILES,
    tasks=ising_tasks,
    run_task=run_ising_task,
))


# ---------------------------------------------------------------------------------------------
# MLP energies: discrete {-1,+1}^d and the continuous square
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MLPConfig:
    """MLP-energy sweep; `space` is "spins" ({-1,+1}^d, enumeration) or "box" ([-1,1]^2)."""

    space: str = "spins"
    d: int = 10
    units: int = 4
    teacher_weight_scale: float = 0.5
    teacher_head_scale: float = 1.5
    quad_train: int = 32
    quad_eval: int = 128
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
    seeds: int = 3
    base_seed: int = 0


@dataclass(frozen=True)
class BoxConfig(MLPConfig):
    """MLP energy on the square: as MLPConfig, plus the bounds of the weights (see
    `multisource.models.energy.bounded_params`)."""

    space: str = "box"
    input_bound: float = en.BOX_BOUNDS[0]
    output_bound: float = en.BOX_BOUNDS[1]


def mlp_tasks(config: MLPConfig) -> list[dict[str, Any]]:
    """One task per setting and seed."""
    settings = figure1_settings(config.K_default, config.n_default, config.beta_default,
                                config.K_values, config.n_values, config.beta_values)
    return [{**s, "seed": seed} for s in settings for seed in range(config.seeds)]


def mlp_spec(config: MLPConfig, K: int, beta_sim: float) -> en.MLPEnergySpec:
    """The architecture of one setting: round(beta_sim * units) shared hidden units."""
    shared = round(beta_sim * config.units)
    d = config.d if config.space == "spins" else 2
    return en.MLPEnergySpec(d, K, shared, config.units - shared)


def run_mlp_task(config: MLPConfig, task: dict[str, Any],
                 device: torch.device | None = None) -> list[dict[str, Any]]:
    """Teacher, data, both MLE fits (exact NLL) and their exact average TV; fits run on CPU."""
    torch.set_num_threads(1)
    K, n, beta = task["K"], task["n"], task["beta_sim"]
    rng = setting_rng(config.base_seed, task["seed"], task)
    torch_seed = int(rng.integers(2**62))
    spec = mlp_spec(config, K, beta)
    teacher = en.init_mlp_energy(spec, 1, torch.Generator().manual_seed(torch_seed),
                                 weight_scale=config.teacher_weight_scale,
                                 head_scale=config.teacher_head_scale)
    row: dict[str, Any] = {"K": K, "n": n, "beta_sim": spec.beta_sim, "seed": task["seed"],
                           "shared_params": spec.shared_parameters,
                           "specific_params": spec.specific_parameters,
                           "theory_ratio": float(bound_ratio(K, spec.beta_sim))}
    # With K = 1 the two classes coincide (units are only relabelled): one fit serves both.
    multi_model = spec if K > 1 else spec.single()
    fit_kwargs = {"restarts": config.restarts, "warmup": config.warmup, "steps": config.steps,
                  "lr": config.lr, "init_scale": config.init_scale}
    if config.space == "spins":
        states = en.spin_states(config.d)
        states_t = torch.as_tensor(states)
        with torch.no_grad():
            truth = en.discrete_log_probs(teacher, states_t).exp().numpy()       # (1, K, P)
        counts = en.sample_state_counts(truth, n, rng)[0]
        row["teacher_nll"] = en.discrete_nll(teacher, states, counts)
        for name, model in (("multi", multi_model), ("single", spec.single())):
            fit = en.fit_discrete_mlp(model, counts, states, **fit_kwargs,
                                      generator=torch.Generator().manual_seed(torch_seed + 1))
            with torch.no_grad():
                fitted = en.discrete_log_probs(fit.params, states_t).exp().numpy()
            row[f"tv_{name}"] = float(en.average_tv(fitted[0], truth[0]))
            _record_fit(row, name, fit)
    else:
        bounds = (config.input_bound, config.output_bound)   # type: ignore[attr-defined]
        quad = en.gauss_legendre_box(config.quad_train)
        quad_eval = en.gauss_legendre_box(config.quad_eval)
        x, y = en.sample_box_ebm(teacher, n, rng, bounds=bounds)
        row["teacher_nll"] = en.box_nll(teacher, x, y, quad, bounds=bounds)
        for name, model in (("multi", multi_model), ("single", spec.single())):
            fit = en.fit_box_ebm(model, x, y, quad, **fit_kwargs, bounds=bounds,
                                 generator=torch.Generator().manual_seed(torch_seed + 1))
            row[f"tv_{name}"] = en.box_average_tv(fit.params, teacher, quad_eval,
                                                  bounds=bounds)
            # normalised with the training quadrature, integrated with the fine one
            mass = (en.box_densities(fit.params, quad, quad_eval.nodes, bounds=bounds)[0]
                    * quad_eval.weights).sum(-1)
            row[f"quad_error_{name}"] = float(np.abs(mass - 1.0).max())
            _record_fit(row, name, fit)
    return [row]


def _record_fit(row: dict[str, Any], name: str, fit: en.EnergyFit) -> None:
    row[f"nll_{name}"] = fit.train_nll
    row[f"gap_{name}"] = fit.train_nll - row["teacher_nll"]
    row[f"restart_spread_{name}"] = float(np.ptp(fit.restart_nll))


MLP_PROFILES = {
    "smoke": MLPConfig(d=6, K_values=(3,), n_values=(300,), beta_values=(0.5,), K_default=3,
                       n_default=300, restarts=2, warmup=20, steps=30, seeds=1),
    "book": MLPConfig(),
    "paper": MLPConfig(n_values=FIGURE1_N, seeds=20, restarts=5, steps=1000),
}

BOX_PROFILES = {
    "smoke": BoxConfig(units=4, teacher_weight_scale=2.0, teacher_head_scale=1.0,
                       quad_train=16, quad_eval=48, K_values=(3,), n_values=(300,),
                       beta_values=(0.5,), K_default=3, n_default=300, restarts=2, warmup=20,
                       steps=30, seeds=1),
    "book": BoxConfig(units=8, teacher_weight_scale=2.0, teacher_head_scale=1.0,
                      K_default=3, K_values=(1, 3, 5), n_values=(300, 1000, 3000),
                      beta_values=(0.0, 0.5, 1.0), seeds=3),
    "paper": BoxConfig(units=8, teacher_weight_scale=2.0, teacher_head_scale=1.0,
                       K_default=3, n_values=FIGURE1_N, seeds=20, restarts=5, steps=1000),
}

register(Experiment(
    name="energy_mlp",
    description="MLP-energy sources on {-1,+1}^10 (shared/per-source units): exact log Z and TV",
    chapter="06_energy_based",
    profiles=MLP_PROFILES,
    tasks=mlp_tasks,
    run_task=run_mlp_task,
))

register(Experiment(
    name="energy_box",
    description="MLP-energy sources on [-1,1]^2: Z and TV by Gauss-Legendre quadrature",
    chapter="06_energy_based",
    profiles=BOX_PROFILES,
    tasks=mlp_tasks,
    run_task=run_mlp_task,
))
