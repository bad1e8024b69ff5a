"""Energy-based experiments (chapter 6): multi- vs single-source MLE with exact average TV.

`energy_ising`: the Ising family on {-1,+1}^10 (ring couplings and fields), convex
box-constrained MLE polished by Newton steps, with the Fisher-information prediction of the
risk. `energy_mlp`: an MLP energy on {-1,+1}^10 with shared/per-source hidden units over the
box `energy.SPIN_BOX`, exact log Z by enumeration, converged fits (`sweep.run_network_task`).
`energy_box`: an MLP energy on the square [-1, 1]^2, Z by Gauss-Legendre quadrature. All sweep
K, n and beta_sim one at a time around a default setting, as Figure 1 of the paper does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from multisource.experiments import Experiment, register
from multisource.experiments.sweep import (
    FIGURE1_N,
    NetworkFamily,
    NetworkSweep,
    SweepGrid,
    base_row,
    estimator_classes,
    figure1_settings,
    network_tasks,
    run_network_task,
    seed_tasks,
    setting_rng,
)
from multisource.models import energy as en
from multisource.models.split_fit import as_separate_networks
from multisource.theory import fisher

# ---------------------------------------------------------------------------------------------
# Ising family
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IsingConfig(SweepGrid):
    """Ising sweep on a ring of d spins: m = 2 d parameters (d fields, d couplings)."""

    d: int = 10
    field_scale: float = 0.5
    coupling_scale: float = 0.5
    bound: float = 3.0


def ising_fisher(theta: np.ndarray, stats: np.ndarray, shared: np.ndarray | None
                 ) -> fisher.FisherRisk:
    """Delta-method risk of the Ising MLE (shared=None: single-source) at the truth theta."""
    K, m = theta.shape
    mask = np.zeros(m, bool) if shared is None else np.asarray(shared, bool)
    params = {"shared": torch.as_tensor(theta[:1, mask]),
              "own": torch.as_tensor(theta[None, :, ~mask])}
    stats_t = torch.as_tensor(stats)
    order = np.argsort(np.concatenate([np.flatnonzero(mask), np.flatnonzero(~mask)]))

    def source_log_probs(p: dict[str, torch.Tensor]) -> torch.Tensor:
        theta_k = torch.cat([p["shared"][0], p["own"][0, 0]])[torch.as_tensor(order)]
        logits = stats_t @ theta_k
        return logits - torch.logsumexp(logits, 0)

    jac = fisher.source_jacobians(source_log_probs, params, ("shared",), K)
    return fisher.fisher_risk(jac)


def run_ising_task(config: IsingConfig, task: dict[str, Any],
                   device: torch.device | None = None) -> list[dict[str, Any]]:
    """Truths, exact state counts, both box-constrained MLEs and the Fisher prediction for every
    seed of a setting."""
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
    rows = []
    for s in range(config.seeds):
        teacher_nll = en.ising_nll(theta[s], stats, counts[s])
        row = {**base_row(task, float(shared.mean()), int(shared.sum()), int((~shared).sum())),
               "seed": s, "teacher_nll": teacher_nll}
        for name, mask in (("multi", shared), ("single", None)):
            fit = en.fit_ising(counts[s], stats, mask, bound=config.bound)
            fitted = np.exp(en.ising_log_probs(fit.theta, stats))
            prediction = ising_fisher(theta[s], stats, mask)
            row[f"tv_{name}"] = float(en.average_tv(fitted, truth[s]))
            row[f"gap_{name}"] = fit.train_nll - teacher_nll
            row[f"rank_{name}"] = prediction.rank
            row[f"wilks_gap_{name}"] = -prediction.rank / (2.0 * n)
            row[f"fisher_tv_{name}"] = prediction.expected_tv(n)
            row[f"converged_{name}"] = fit.converged
            row[f"at_bound_{name}"] = fit.at_bound
        rows.append(row)
    return rows


def ising_tasks(config: IsingConfig) -> list[dict[str, Any]]:
    """One task per setting (all seeds of a setting in one task)."""
    return figure1_settings(config)


ISING_PROFILES = {
    "smoke": IsingConfig(K_values=(1, 5), n_values=(500,), beta_values=(0.0, 0.5, 1.0), seeds=3),
    "book": IsingConfig(seeds=20),
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
# MLP energy on {-1,+1}^d
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MLPConfig(NetworkSweep):
    """Spin MLP-energy sweep on {-1,+1}^d: `units` hidden units per source network split by
    beta_sim, a teacher uniform on the inner half of the parameter box `en.SPIN_BOX`."""

    d: int = 10


def mlp_spec(config: MLPConfig, K: int, beta_sim: float) -> en.MLPEnergySpec:
    """The architecture of one setting: round(beta_sim * units) shared hidden units."""
    shared = round(beta_sim * config.units)
    return en.MLPEnergySpec(config.d, K, shared, config.units - shared)


def _spin_probs(spec: en.MLPEnergySpec, params: dict[str, torch.Tensor]) -> np.ndarray:
    with torch.no_grad():
        return en.discrete_log_probs(params, torch.as_tensor(en.spin_states(spec.d))
                                     ).exp()[0].numpy()


def _spin_source_log_probs(spec: en.MLPEnergySpec):
    states = torch.as_tensor(en.spin_states(spec.d))
    return lambda params: en.discrete_log_probs(params, states)[0, 0]


SPIN_FAMILY = NetworkFamily(
    spec=mlp_spec,
    teacher=lambda spec, generator: en.teacher_mlp_energy(spec, generator),
    probs=_spin_probs,
    sample=lambda spec, params, n, rng: en.sample_state_counts(
        _spin_probs(spec, params)[None], n, rng)[0],
    nll=lambda spec, params, counts: en.discrete_nll(params, en.spin_states(spec.d), counts),
    problem=lambda spec, counts: en.discrete_mlp_problem(spec, counts, en.spin_states(spec.d)),
    shapes=en.mlp_shapes,
    box=en.SPIN_BOX,
    source_log_probs=_spin_source_log_probs,
    shared=("Ws", "bs", "as"),
    as_separate=as_separate_networks,
)


def run_mlp_task(config: MLPConfig, task: dict[str, Any],
                 device: torch.device | None = None) -> list[dict[str, Any]]:
    """One setting and seed (`sweep.run_network_task`); the fits run on the CPU."""
    return run_network_task(config, task, SPIN_FAMILY)


MLP_PROFILES = {
    "smoke": MLPConfig(d=6, K_values=(3,), n_values=(300,), beta_values=(0.5,), K_default=3,
                       n_default=300, restarts=2, max_blocks=2, steps=300,
                       budgets=(2, 4), budget_seeds=1, seeds=1),
    # CPU budget (see chapter 6): 20 seeds at the default setting (the main verdict), 4 at
    # every other setting; K = 15 dropped (the costliest fits); the restart-budget curve on
    # every default seed (it reuses the rule's runs of the same starts).
    "book": MLPConfig(K_values=(3, 5, 10), n_default=5000, n_values=(1000, 5000, 20000),
                      beta_values=(0.25, 0.5, 0.75, 1.0), seeds=4, seeds_default=20,
                      budget_seeds=20),
    "paper": MLPConfig(n_default=5000, n_values=(*FIGURE1_N, 20000), seeds=50),
}

register(Experiment(
    name="energy_mlp",
    description="MLP-energy sources on {-1,+1}^10: converged MLE over a box, exact TV, "
                "Hellinger and sqrt(KL), Fisher predictions",
    chapter="06_energy_based",
    profiles=MLP_PROFILES,
    tasks=network_tasks,
    run_task=run_mlp_task,
))


# ---------------------------------------------------------------------------------------------
# MLP energy on the square [-1, 1]^2
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BoxConfig(SweepGrid):
    """MLP energy on the square: units per source network, teacher scales, the bounds of the
    weights (see `multisource.models.energy.bounded_params`), quadrature rules for fitting and
    for the risk, and the fit's budget."""

    units: int = 8
    teacher_weight_scale: float = 2.0
    teacher_head_scale: float = 1.0
    input_bound: float = en.BOX_BOUNDS[0]
    output_bound: float = en.BOX_BOUNDS[1]
    quad_train: int = 32
    quad_eval: int = 128
    restarts: int = 3
    steps: int = 300
    init_scale: float = 0.5


def run_box_task(config: BoxConfig, task: dict[str, Any],
                 device: torch.device | None = None) -> list[dict[str, Any]]:
    """Teacher, exact samples, both MLE fits (Z by quadrature) and their average TV (one
    thread, BLAS included)."""
    torch.set_num_threads(1)
    with threadpool_limits(1):
        return _box_task(config, task)


def _box_task(config: BoxConfig, task: dict[str, Any]) -> list[dict[str, Any]]:
    K, n, beta = task["K"], task["n"], task["beta_sim"]
    rng = setting_rng(config.base_seed, task["seed"], task)
    torch_seed = int(rng.integers(2**62))
    shared_units = round(beta * config.units)
    spec = en.MLPEnergySpec(2, K, shared_units, config.units - shared_units)
    teacher = en.init_mlp_energy(spec, 1, torch.Generator().manual_seed(torch_seed),
                                 weight_scale=config.teacher_weight_scale,
                                 head_scale=config.teacher_head_scale)
    bounds = (config.input_bound, config.output_bound)
    quad = en.gauss_legendre_box(config.quad_train)
    quad_eval = en.gauss_legendre_box(config.quad_eval)
    x, y = en.sample_box_ebm(teacher, n, rng, bounds=bounds)
    teacher_nll = en.box_nll(teacher, x, y, quad, bounds=bounds)
    row = {**base_row(task, spec.beta_sim, spec.shared_parameters, spec.specific_parameters),
           "seed": int(task["seed"]), "teacher_nll": teacher_nll}
    done: dict[int, dict[str, Any]] = {}
    for name, model in estimator_classes(spec):
        if id(model) not in done:
            fit = en.fit_box_ebm(model, x, y, quad, restarts=config.restarts,
                                 steps=config.steps, init_scale=config.init_scale,
                                 bounds=bounds,
                                 generator=torch.Generator().manual_seed(torch_seed + 1))
            # normalised with the training quadrature, integrated with the fine one
            mass = (en.box_densities(fit.params, quad, quad_eval.nodes, bounds=bounds)[0]
                    * quad_eval.weights).sum(-1)
            done[id(model)] = {
                "tv": en.box_average_tv(fit.params, teacher, quad_eval, bounds=bounds),
                "nll": fit.train_nll, "gap": fit.train_nll - teacher_nll,
                "restart_spread": float(np.ptp(fit.restart_nll)),
                "quad_error": float(np.abs(mass - 1.0).max())}
        row.update({f"{key}_{name}": value for key, value in done[id(model)].items()})
    return [row]


BOX_PROFILES = {
    "smoke": BoxConfig(units=4, quad_train=16, quad_eval=48, K_values=(3,), n_values=(300,),
                       beta_values=(0.5,), K_default=3, n_default=300, restarts=2, steps=30,
                       seeds=1),
    "book": BoxConfig(K_default=3, n_default=1000, K_values=(1, 3, 5),
                      n_values=(300, 1000, 3000), beta_values=(0.0, 0.5, 1.0), seeds=5),
    "paper": BoxConfig(K_default=3, n_default=1000, n_values=FIGURE1_N, seeds=20, restarts=5,
                       steps=1000),
}

register(Experiment(
    name="energy_box",
    description="MLP-energy sources on [-1,1]^2: Z and TV by Gauss-Legendre quadrature",
    chapter="06_energy_based",
    profiles=BOX_PROFILES,
    tasks=seed_tasks,
    run_task=run_box_task,
))
