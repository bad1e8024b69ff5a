"""One implementation of the Figure-1 sweeps of chapters 5 and 6.

Every sweep varies K, n and beta_sim one at a time around a default setting, as Figure 1 of
the paper does, redraws the truth and the data for every seed, and fits both estimators on the
same data. `run_network_task` is the whole task of the two neural families (autoregressive and
spin MLP energy): teacher, data, both maximum-likelihood fits with their convergence
certificate, the exact risk, and the Fisher-information prediction of the risk.

Convergence certificate of a fit (per estimator): with W = 2 n (NLL(teacher) - NLL(fit)) on the
training data, Wilks' theorem gives W ~ chi^2 with as many degrees of freedom as the Fisher
information has non-zero directions (its rank), so the expected gap is -rank / (2 n). A fit
passes when W is above the `wilks_alpha` quantile of that law (a fit stuck far above the
optimum has too small a W) and when the same optimiser started at the teacher finds no better
likelihood (by more than `teacher_tolerance` nats per sample). A fit that fails is refitted from
fresh random starts (twice as many) up to `refits` times; the better fit is kept.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from scipy.stats import chi2

from multisource import fisher
from multisource.bounds import bound_ratio

FIGURE1_K = (1, 3, 5, 10, 15)
FIGURE1_N = (100, 300, 500, 1000, 5000)
BETA_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)


@dataclass(frozen=True)
class SweepGrid:
    """The one-at-a-time grid around a default (K, n, beta_sim), and the seeds."""

    K_default: int = 5
    n_default: int = 500
    beta_default: float = 0.5
    K_values: tuple[int, ...] = FIGURE1_K
    n_values: tuple[int, ...] = FIGURE1_N
    beta_values: tuple[float, ...] = BETA_GRID
    seeds: int = 20
    base_seed: int = 0


def figure1_settings(grid: SweepGrid) -> list[dict[str, Any]]:
    """The union of the three one-at-a-time sweeps (K, n, beta_sim), in order, no repeats."""
    settings: list[dict[str, Any]] = []
    candidates = (
        [(K, grid.n_default, grid.beta_default) for K in grid.K_values]
        + [(grid.K_default, n, grid.beta_default) for n in grid.n_values]
        + [(grid.K_default, grid.n_default, b) for b in grid.beta_values])
    for K, n, beta in candidates:
        setting = {"K": int(K), "n": int(n), "beta_sim": float(beta)}
        if setting not in settings:
            settings.append(setting)
    return settings


def seed_tasks(grid: SweepGrid) -> list[dict[str, Any]]:
    """One task per setting and seed."""
    return [{**s, "seed": seed} for s in figure1_settings(grid) for seed in range(grid.seeds)]


def setting_rng(base_seed: int, seed: int, setting: dict[str, Any]) -> np.random.Generator:
    """A numpy Generator keyed by (base seed, seed, K, n, beta_sim in thousandths)."""
    key = [int(base_seed), int(seed), int(setting["K"]), int(setting["n"]),
           round(1000 * float(setting["beta_sim"]))]
    return np.random.default_rng(key)


def base_row(task: dict[str, Any], beta_sim: float, shared_params: int, specific_params: int
             ) -> dict[str, Any]:
    """The columns every row carries: the setting, the realised beta_sim, the parameter split
    of one source, and the count-based ratio sqrt(1 - (K-1)/K beta_sim)."""
    K = int(task["K"])
    return {"K": K, "n": int(task["n"]), "beta_sim": float(beta_sim),
            "shared_params": int(shared_params), "specific_params": int(specific_params),
            "theory_ratio": float(bound_ratio(K, beta_sim))}


def estimator_classes(spec: Any) -> list[tuple[str, Any]]:
    """(name, class) of both estimators; when K = 1 or nothing is shared the two classes
    coincide (units are only relabelled) and one fit serves both."""
    single = spec.single()
    same = spec.K == 1 or spec.shared_units == 0
    return [("multi", single if same else spec), ("single", single)]


# ---------------------------------------------------------------------------------------------
# The neural families
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NetworkSweep(SweepGrid):
    """A sweep of a network family: hidden units per source network, the fit's budget (random
    starts per source network, each screened for `screen` L-BFGS-B iterations, the selected one
    continued to `steps`; sd of the starts) and the certificate's settings."""

    units: int = 4
    restarts: int = 5
    steps: int = 1000
    screen: int = 200
    init_scale: float = 0.5
    teacher_fraction: float = 0.5
    wilks_alpha: float = 0.001
    teacher_tolerance: float = 1e-5
    refits: int = 1


@dataclass(frozen=True)
class NetworkFamily:
    """What `run_network_task` needs from a model family.

    spec(config, K, beta) -> architecture; teacher(spec, generator) -> parameters;
    probs(spec, params) -> enumerated conditionals (K, M); sample(spec, params, n, rng) ->
    counts (K, M); nll(spec, params, counts) -> mean NLL; fit(spec, counts, config, generator,
    start) -> fitted object with params/train_nll/restart_nll/projected_gradient/at_bound;
    source_log_probs(spec) -> Fisher's per-source log-probability map; shared: the names of
    the shared tensors; box: the parameter box.
    """

    spec: Callable[[Any, int, float], Any]
    teacher: Callable[[Any, torch.Generator], dict[str, torch.Tensor]]
    probs: Callable[[Any, dict[str, torch.Tensor]], np.ndarray]
    sample: Callable[[Any, dict[str, torch.Tensor], int, np.random.Generator], np.ndarray]
    nll: Callable[[Any, dict[str, torch.Tensor], np.ndarray], float]
    fit: Callable[..., Any]
    source_log_probs: Callable[[Any], fisher.SourceLogProbs]
    shared: tuple[str, ...]
    as_separate: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]


def fisher_prediction(family: NetworkFamily, model: Any, params: dict[str, torch.Tensor]
                      ) -> fisher.FisherRisk:
    """The delta-method risk of the MLE of class `model` when the truth is `params`."""
    jac = fisher.source_jacobians(family.source_log_probs(model), params, family.shared,
                                  model.K)
    return fisher.fisher_risk(jac)


def _certify(config: NetworkSweep, n: int, rank: int, teacher_nll: float, fit_nll: float,
             check_nll: float) -> tuple[float, bool, bool]:
    statistic = 2.0 * n * (teacher_nll - fit_nll)
    wilks_ok = statistic >= chi2.ppf(config.wilks_alpha, max(rank, 1))
    teacher_ok = fit_nll <= check_nll + config.teacher_tolerance
    return statistic, bool(wilks_ok), bool(teacher_ok)


def run_network_task(config: NetworkSweep, task: dict[str, Any], family: NetworkFamily
                     ) -> list[dict[str, Any]]:
    """Teacher, data, both certified MLE fits, exact risks and Fisher predictions: one row.

    The networks are tiny, so everything runs on the CPU in one thread.
    """
    torch.set_num_threads(1)
    K, n = int(task["K"]), int(task["n"])
    rng = setting_rng(config.base_seed, task["seed"], task)
    torch_seed = int(rng.integers(2**62))
    spec = family.spec(config, K, float(task["beta_sim"]))
    teacher = family.teacher(spec, torch.Generator().manual_seed(torch_seed))
    truth = family.probs(spec, teacher)
    counts = family.sample(spec, teacher, n, rng)
    teacher_nll = family.nll(spec, teacher, counts)
    row = {**base_row(task, spec.beta_sim, spec.shared_parameters, spec.specific_parameters),
           "seed": int(task["seed"]), "teacher_nll": teacher_nll}
    done: dict[int, dict[str, Any]] = {}
    for name, model in estimator_classes(spec):
        if id(model) not in done:
            start = teacher if model.shared_units else family.as_separate(teacher)
            done[id(model)] = _fit_and_certify(config, family, model, counts, n, start,
                                               truth, teacher_nll, torch_seed)
        row.update({f"{key}_{name}": value for key, value in done[id(model)].items()})
    return [row]


def _fit_and_certify(config: NetworkSweep, family: NetworkFamily, model: Any,
                     counts: np.ndarray, n: int, teacher: dict[str, torch.Tensor],
                     truth: np.ndarray, teacher_nll: float, torch_seed: int) -> dict[str, Any]:
    prediction = fisher_prediction(family, model, teacher)
    check = family.fit(model, counts, config, None, teacher)
    fit = family.fit(model, counts, config, torch.Generator().manual_seed(torch_seed + 1), None)
    rounds = 0
    statistic, wilks_ok, teacher_ok = _certify(config, n, prediction.rank, teacher_nll,
                                               fit.train_nll, check.train_nll)
    while not (wilks_ok and teacher_ok) and rounds < config.refits:
        rounds += 1
        again = family.fit(model, counts, _more_restarts(config, rounds),
                           torch.Generator().manual_seed(torch_seed + 1 + rounds), None)
        if again.train_nll < fit.train_nll:
            fit = again
        statistic, wilks_ok, teacher_ok = _certify(config, n, prediction.rank, teacher_nll,
                                                   fit.train_nll, check.train_nll)
    fitted = family.probs(model, fit.params)
    from_teacher = family.probs(model, check.params)
    largest = {group: max((float(v.abs().max()) for k, v in fit.params.items()
                           if v.numel() and (k[0] in "Aa") == (group == "output")), default=0.0)
               for group in ("hidden", "output")}
    return {
        "tv": float((0.5 * np.abs(fitted - truth).sum(-1)).mean()),
        "nll": fit.train_nll,
        "gap": fit.train_nll - teacher_nll,
        "params": int(sum(v.numel() for v in fit.params.values())),
        "rank": prediction.rank,
        "wilks_gap": -prediction.rank / (2.0 * n),
        "wilks_statistic": statistic,
        "wilks_pass": wilks_ok,
        "teacher_start_gap": check.train_nll - teacher_nll,
        "teacher_start_tv": float((0.5 * np.abs(from_teacher - truth).sum(-1)).mean()),
        "teacher_pass": teacher_ok,
        "refits": rounds,
        "restart_spread": float(np.ptp(fit.restart_nll)),
        "projected_gradient": fit.projected_gradient,
        "at_bound": fit.at_bound,
        "max_hidden": largest["hidden"],
        "max_output": largest["output"],
        "fisher_tv": prediction.expected_tv(n),
    }


def _more_restarts(config: NetworkSweep, rounds: int) -> NetworkSweep:
    return replace(config, restarts=config.restarts * 2**rounds)
