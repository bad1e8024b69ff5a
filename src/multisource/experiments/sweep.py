"""One implementation of the Figure-1 sweeps of chapters 5 and 6.

Every sweep varies K, n and beta_sim one at a time around a default setting, as Figure 1 of
the paper does, redraws the truth and the data for every seed, and fits both estimators on the
same data. `run_network_task` is the whole task of the two neural families (autoregressive and
spin MLP energy): teacher, data, both maximum-likelihood fits under one restart rule
(`multisource.models.split_fit.RestartRule`: converged to a projected-gradient tolerance,
blocks of random starts until the best NLL stops improving), the exact risk under TV, Hellinger
and sqrt(KL), and the Fisher-information predictions of each.

The estimator the theory speaks about is the maximum-likelihood estimate, the global
maximiser. Both classes compute it the same way: the random-start search of the restart rule,
and one more run started at the teacher; the fit is the more likely of the two. The start at
the teacher is a computational device only a simulation has (the columns `search_*` keep the
random search alone, for the sensitivity analysis).

Checks stored with every fit (diagnostics, not certificates):

- teacher start: how often the random search alone misses the maximiser: the search "is
  improved" when 2 n (NLL(search) - NLL(teacher start)) > `teacher_tolerance` (in units of
  Wilks' statistic W).
- fresh search: an independent block of `restarts` random starts (other draws), run as the
  rule runs its starts. It improves the fit when 2 n (NLL(fit) - NLL(fresh)) >
  `teacher_tolerance`: a check of the selected fit that can fail, whose detection rate is
  measured on the search fits the teacher start shows to be off.
- convergence: the final projected gradient is within the tolerance.
- W = 2 n (NLL(teacher) - NLL(fit)), with the rank of the Fisher information (Wilks' degrees of
  freedom for a regular interior MLE), and the old lower-quantile test (`wilks_alpha`) on it,
  kept only to measure how it behaves.
- a deliberately under-converged fit of known quality: the first random start stopped after
  `poor_steps` iterations, with the same statistics, so the diagnostics' false-pass rates can
  be measured.

At the default setting the first `budget_seeds` seeds also run fixed restart budgets
(`budgets`, nested: the first B starts) for the restart-budget curve; they reuse the rule's
runs of the same starts, so the curve costs only the starts the rule did not use.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from scipy.stats import chi2
from threadpoolctl import threadpool_limits

from multisource.metrics import hellinger_discrete, sqrt_kl_discrete
from multisource.models.split_fit import (
    Problem,
    RestartRule,
    UnitBox,
    budget_curve,
    fit_from,
    fit_with_rule,
    gaussian_in_box,
    optimise,
    take,
)
from multisource.theory import fisher
from multisource.theory.bounds import bound_ratio

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
    """A sweep of a network family: hidden units per source network; the restart rule (blocks
    of `restarts` random starts of sd `init_scale`, each run for `screen` L-BFGS-B iterations,
    None: every start run to the projected-gradient `tolerance` or `steps` iterations; the
    best continued to convergence; blocks added until one improves the best mean NLL by at
    most `improvement` / (2 n), i.e. `improvement` units of W, at least `min_blocks`, at most
    `max_blocks`); the teacher-start tolerance (units of W); the under-converged reference fit
    (`poor_steps` iterations); and the restart-budget study (`budgets`, nested fixed budgets
    of the same starts, on the first `budget_seeds` seeds of the default setting). The default
    setting gets max(seeds, seeds_default) seeds, every other setting `seeds`."""

    units: int = 4
    restarts: int = 10
    min_blocks: int = 4
    max_blocks: int = 8
    steps: int = 2500
    screen: int | None = None
    tolerance: float = 1e-4
    improvement: float = 1.0
    init_scale: float = 0.5
    teacher_fraction: float = 0.5
    teacher_tolerance: float = 1.0
    wilks_alpha: float = 0.001
    poor_steps: int = 200
    budgets: tuple[int, ...] = (10, 20, 40, 80)
    budget_seeds: int = 0
    seeds_default: int = 0

    def rule(self, n: int) -> RestartRule:
        """The restart rule at total sample size n."""
        screen = self.steps if self.screen is None else self.screen
        return RestartRule(block=self.restarts, steps=self.steps, screen=screen,
                           tolerance=self.tolerance, improvement=self.improvement / (2.0 * n),
                           min_blocks=min(self.min_blocks, self.max_blocks),
                           max_blocks=self.max_blocks)

    @property
    def minimum_starts(self) -> int:
        """The fewest random starts per source network the rule uses."""
        return self.restarts * min(self.min_blocks, self.max_blocks)


@dataclass(frozen=True)
class NetworkFamily:
    """What `run_network_task` needs from a model family.

    spec(config, K, beta) -> architecture; teacher(spec, generator) -> parameters;
    probs(spec, params) -> enumerated conditionals (K, M); sample(spec, params, n, rng) ->
    counts (K, M); nll(spec, params, counts) -> mean NLL; problem(spec, counts) -> the
    likelihood (`split_fit.Problem`); shapes(spec, R) -> parameter shapes with R restarts;
    box: the parameter box; source_log_probs(spec) -> Fisher's per-source log-probability map;
    shared: the names of the shared tensors.
    """

    spec: Callable[[Any, int, float], Any]
    teacher: Callable[[Any, torch.Generator], dict[str, torch.Tensor]]
    probs: Callable[[Any, dict[str, torch.Tensor]], np.ndarray]
    sample: Callable[[Any, dict[str, torch.Tensor], int, np.random.Generator], np.ndarray]
    nll: Callable[[Any, dict[str, torch.Tensor], np.ndarray], float]
    problem: Callable[[Any, np.ndarray], Problem]
    shapes: Callable[[Any, int], dict[str, tuple[int, ...]]]
    box: UnitBox
    source_log_probs: Callable[[Any], fisher.SourceLogProbs]
    shared: tuple[str, ...]
    as_separate: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]


def fisher_prediction(family: NetworkFamily, model: Any, params: dict[str, torch.Tensor]
                      ) -> fisher.FisherRisk:
    """The delta-method risk of the MLE of class `model` when the truth is `params`."""
    jac = fisher.source_jacobians(family.source_log_probs(model), params, family.shared,
                                  model.K)
    return fisher.fisher_risk(jac)


def distances(fitted: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Average over sources of TV, Hellinger and sqrt(KL(truth || fit)) of conditionals (K, M)."""
    return {"tv": float((0.5 * np.abs(fitted - truth).sum(-1)).mean()),
            "hellinger": float(hellinger_discrete(truth, fitted).mean()),
            "sqrt_kl": float(sqrt_kl_discrete(truth, fitted).mean())}


def wilks_lower_test(config: NetworkSweep, n: int, rank: int, teacher_nll: float,
                     fit_nll: float) -> tuple[float, bool]:
    """W = 2 n (NLL(teacher) - NLL(fit)) and whether it clears the `wilks_alpha` quantile of
    chi^2_rank (the old one-sided check, kept to measure its error rates)."""
    statistic = 2.0 * n * (teacher_nll - fit_nll)
    return statistic, bool(statistic >= chi2.ppf(config.wilks_alpha, max(rank, 1)))


def network_tasks(config: NetworkSweep) -> list[dict[str, Any]]:
    """One task per setting and seed; the default setting gets max(seeds, seeds_default)."""
    tasks = []
    for setting in figure1_settings(config):
        default = (setting["K"] == config.K_default and setting["n"] == config.n_default
                   and abs(setting["beta_sim"] - config.beta_default) < 1e-9)
        seeds = max(config.seeds, config.seeds_default) if default else config.seeds
        tasks += [{**setting, "seed": seed} for seed in range(seeds)]
    return tasks


def run_network_task(config: NetworkSweep, task: dict[str, Any], family: NetworkFamily
                     ) -> list[dict[str, Any]]:
    """Teacher, data, both MLE fits with their checks, exact risks and Fisher predictions: one
    row. The networks are tiny, so everything runs on the CPU in one thread (BLAS included:
    L-BFGS-B's own linear algebra is several times slower with threads than without)."""
    torch.set_num_threads(1)
    with threadpool_limits(1):
        return _network_task(config, task, family)


def _network_task(config: NetworkSweep, task: dict[str, Any], family: NetworkFamily
                  ) -> list[dict[str, Any]]:
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
    at_default = (config.K_default == K and n == config.n_default
                  and abs(float(task["beta_sim"]) - config.beta_default) < 1e-9)
    budgets = config.budgets if at_default and int(task["seed"]) < config.budget_seeds else ()
    done: dict[int, dict[str, Any]] = {}
    for name, model in estimator_classes(spec):
        if id(model) not in done:
            start = teacher if model.shared_units else family.as_separate(teacher)
            done[id(model)] = fit_and_check(config, family, model, counts, n, start, truth,
                                            teacher_nll, torch_seed, budgets)
        row.update({f"{key}_{name}": value for key, value in done[id(model)].items()})
    return [row]


def fit_estimator(config: NetworkSweep, family: NetworkFamily, model: Any, problem: Problem,
                  n: int, torch_seed: int, budgets: tuple[int, ...] = ()):
    """The estimator: random starts (seeded by `torch_seed + 1`, the same draws for both
    classes' shapes) under `config.rule(n)`; with `budgets`, also the fixed-budget fits on the
    first B of the same starts. Returns (fit, starts, budget fits)."""
    # always the same draws, whether or not this task runs the budget study
    count = max(config.restarts * config.max_blocks, *config.budgets)
    generator = torch.Generator().manual_seed(torch_seed + 1)
    starts = gaussian_in_box(family.shapes(model, count), family.box, config.init_scale,
                             generator)
    extra = gaussian_in_box(family.shapes(model, count), family.box, config.init_scale,
                            generator)
    rule = config.rule(n)
    cache: dict = {}  # the budget curve reuses the rule's runs of the same starts
    fit = fit_with_rule(problem, starts, extra, rule, cache)
    curve = budget_curve(problem, starts, extra, rule, budgets, cache) if budgets else []
    return fit, starts, curve


def fresh_search(config: NetworkSweep, family: NetworkFamily, model: Any, problem: Problem,
                 n: int, torch_seed: int):
    """The check of the selected fit: one block of `config.restarts` random starts drawn
    independently of the estimator's (seeded by `torch_seed + 2`), run as the rule runs its
    starts."""
    generator = torch.Generator().manual_seed(torch_seed + 2)
    shapes = family.shapes(model, config.restarts)
    starts = gaussian_in_box(shapes, family.box, config.init_scale, generator)
    extra = gaussian_in_box(shapes, family.box, config.init_scale, generator)
    rule = replace(config.rule(n), min_blocks=1, max_blocks=1)
    return fit_with_rule(problem, starts, extra, rule)


def fit_and_check(config: NetworkSweep, family: NetworkFamily, model: Any, counts: np.ndarray,
                  n: int, teacher: dict[str, torch.Tensor], truth: np.ndarray,
                  teacher_nll: float, torch_seed: int, budgets: tuple[int, ...] = ()
                  ) -> dict[str, Any]:
    """One estimator's fit, its checks and risks (the columns of the module docstring)."""
    prediction = fisher_prediction(family, model, teacher)
    problem = family.problem(model, counts)
    check = fit_from(problem, teacher, config.steps, tolerance=config.tolerance)
    search, starts, curve = fit_estimator(config, family, model, problem, n, torch_seed,
                                          budgets)
    fit = check if check.train_nll < search.train_nll else search
    fresh = fresh_search(config, family, model, problem, n, torch_seed)
    poor = optimise(problem, take(starts, 0), config.poor_steps, tolerance=config.tolerance)
    poor_nll = float(poor.per_source.sum() / problem.n)
    best_known = min(search.train_nll, check.train_nll, poor_nll, fresh.train_nll)
    statistic, wilks_ok = wilks_lower_test(config, n, prediction.rank, teacher_nll,
                                           fit.train_nll)
    search_statistic, search_wilks_ok = wilks_lower_test(config, n, prediction.rank,
                                                         teacher_nll, search.train_nll)
    poor_statistic, poor_wilks_ok = wilks_lower_test(config, n, prediction.rank, teacher_nll,
                                                     poor_nll)
    largest = {group: max((float(v.abs().max()) for k, v in fit.params.items()
                           if v.numel() and (k[0] in "Aa") == (group == "output")), default=0.0)
               for group in ("hidden", "output")}
    out = {
        **distances(family.probs(model, fit.params), truth),
        "nll": fit.train_nll,
        "gap": fit.train_nll - teacher_nll,
        "params": int(sum(v.numel() for v in fit.params.values())),
        "rank": prediction.rank,
        "wilks_gap": -prediction.rank / (2.0 * n),
        "wilks_statistic": statistic,
        "wilks_pass": wilks_ok,
        **{f"teacher_start_{k}": v
           for k, v in distances(family.probs(model, check.params), truth).items()},
        "teacher_start_gap": check.train_nll - teacher_nll,
        "teacher_start_converged": check.converged,
        "teacher_selected": bool(fit is check),
        "teacher_improvement": 2.0 * n * (search.train_nll - check.train_nll),
        "teacher_improves": bool(2.0 * n * (search.train_nll - check.train_nll)
                                 > config.teacher_tolerance),
        **{f"search_{k}": v
           for k, v in distances(family.probs(model, search.params), truth).items()},
        "search_nll": search.train_nll,
        "search_gap": search.train_nll - teacher_nll,
        "search_projected_gradient": search.projected_gradient,
        "search_wilks_pass": search_wilks_ok,
        "search_wilks_statistic": search_statistic,
        "search_gap_to_best": search.train_nll - best_known,
        **{f"fresh_{k}": v
           for k, v in distances(family.probs(model, fresh.params), truth).items()},
        "fresh_nll": fresh.train_nll,
        "fresh_improvement": 2.0 * n * (fit.train_nll - fresh.train_nll),
        "fresh_improvement_search": 2.0 * n * (search.train_nll - fresh.train_nll),
        "fresh_converged": fresh.converged,
        "restart_spread": float(np.ptp(search.restart_nll)),
        "projected_gradient": fit.projected_gradient,
        "converged": fit.converged,
        "starts": search.starts,
        "blocks": search.blocks,
        "rule_stopped": search.rule_stopped,
        "iterations": search.total_iterations + check.iterations,
        "at_bound": fit.at_bound,
        "max_hidden": largest["hidden"],
        "max_output": largest["output"],
        "fisher_tv": prediction.expected_tv(n),
        "fisher_hellinger": prediction.expected_hellinger(n),
        "fisher_sqrt_kl": prediction.expected_sqrt_kl(n),
        "poor_gap": poor_nll - best_known,
        "poor_projected_gradient": poor.projected_gradient,
        "poor_wilks_statistic": poor_statistic,
        "poor_wilks_pass": poor_wilks_ok,
        "fit_gap_to_best": fit.train_nll - best_known,
    }
    for B in config.budgets:
        fits = [f for b, f in zip(budgets, curve, strict=True) if b == B]
        if fits:
            values = distances(family.probs(model, fits[0].params), truth)
            values["nll"] = fits[0].train_nll
        else:
            values = {"tv": math.nan, "hellinger": math.nan, "sqrt_kl": math.nan,
                      "nll": math.nan}
        out.update({f"{k}_R{B}": v for k, v in values.items()})
    return out
