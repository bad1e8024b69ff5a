"""Maximum likelihood for networks whose hidden units split into shared and per-source units.

Both the neural autoregressive model and the MLP energies have parameters named `W*`, `b*`
(hidden weights and biases) and `A*`/`a*` (output weights); names ending in `s` are shared by
all sources, names ending in `p` carry a source axis. Every tensor has a leading restart axis R.

The estimator is the maximiser of the likelihood over a stated box (`UnitBox`): every hidden
weight and bias in [-hidden, hidden], every output weight in [-output, output]. The box makes the
maximiser exist (without it, sharpening units can raise the likelihood for ever) and keeps it a
compact set, as the theory's bracketing argument needs. The optimiser is L-BFGS-B (scipy) on
the exact likelihood and gradient, one run per random start, deterministic for a given start.

Restart rule (the same for both estimators, per source network). Random starts come in blocks
of R, every start screened with an L-BFGS-B run of `screen` iterations (`screen = steps`: every
start run to convergence, no screening). Blocks are added until a block fails to lower the best
screened NLL by more than `improvement` nats per sample (at least `min_blocks`, at most
`max_blocks`; the fit records whether the rule stopped on that test or at the cap); then the
best screened start (per source when the sources share nothing) is run to convergence, i.e.
until the largest entry of the projected gradient of the mean NLL is at most `tolerance`
(L-BFGS-B's pgtol) or the iteration cap is reached:

- no shared units (the single-source class, K independent networks): the rule above, the best
  start kept separately for every source;
- with shared units (the multi-source class): the rule above for starts of the whole network;
  then, with the selected shared units fixed, the rule again for starts of every source's own
  units (best kept per source); then one joint run from the combination to convergence, kept
  if it is better.

Every fit reports how many random starts it used per source network, how many L-BFGS-B
iterations it took in all, its final projected gradient and whether that is within tolerance,
so the optimisation effort of the two estimators can be compared from the stored rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch
from scipy.optimize import minimize

from multisource.common.validation import check_float, check_int

PerSourceNLL = Callable[[dict[str, torch.Tensor]], torch.Tensor]
"""params (leading restart axis R) -> summed NLL of every restart and source, shape (R, K)."""


@dataclass(frozen=True)
class UnitBox:
    """The bounded parameter set: |hidden weight or bias| <= hidden, |output weight| <= output."""

    hidden: float
    output: float

    def __post_init__(self) -> None:
        check_float("hidden", self.hidden, minimum=1e-3, maximum=1e3)
        check_float("output", self.output, minimum=1e-3, maximum=1e3)

    def bound(self, name: str) -> float:
        """The bound of parameter tensor `name` (output weights start with A or a)."""
        return self.output if name[0] in "Aa" else self.hidden


def is_shared(name: str) -> bool:
    """Shared tensors end in `s` (Ws, bs, As / as); per-source ones in `p`."""
    return name.endswith("s")


def uniform_in_box(shapes: dict[str, tuple[int, ...]], box: UnitBox, fraction: float,
                   generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Parameters drawn uniformly on [-fraction * bound, fraction * bound] (a teacher that lies
    strictly inside the box when fraction < 1)."""
    fraction = check_float("fraction", fraction, minimum=0.0, maximum=1.0)
    return {name: fraction * box.bound(name)
            * (2.0 * torch.rand(*shape, generator=generator, dtype=torch.float64) - 1.0)
            for name, shape in shapes.items()}


def gaussian_in_box(shapes: dict[str, tuple[int, ...]], box: UnitBox, scale: float,
                    generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Random starts: Gaussian with sd `scale`, clipped to the box."""
    out = {}
    for name, shape in shapes.items():
        bound = box.bound(name)
        draw = scale * torch.randn(*shape, generator=generator, dtype=torch.float64)
        out[name] = draw.clamp(-bound, bound)
    return out


def take(params: dict[str, torch.Tensor], index: int) -> dict[str, torch.Tensor]:
    """Restart `index` of every tensor, keeping a restart axis of size 1."""
    return {k: v[index : index + 1].detach().clone() for k, v in params.items()}


def stack(runs: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Concatenate parameter sets along the restart axis."""
    return {k: torch.cat([r[k] for r in runs]) for k in runs[0]}


@dataclass(frozen=True)
class RunResult:
    """One optimiser run: final parameters (restart axis 1), per-source NLL (K,), iterations,
    largest projected-gradient entry of the mean NLL, and how many parameters sit on the box."""

    params: dict[str, torch.Tensor]
    per_source: np.ndarray
    iterations: int
    projected_gradient: float
    at_bound: int
    evaluations: int = 0


FastNLL = Callable[[dict[str, np.ndarray]], tuple[np.ndarray, dict[str, np.ndarray]]]
"""Hand-written value and gradient for ONE parameter set (no restart axis): params -> (summed
NLL per source (K,), gradient of the total NLL per tensor). Optional; several times faster
than autograd for these tiny networks."""


@dataclass(frozen=True)
class Problem:
    """A likelihood to maximise: the autograd per-source NLL, an optional hand-written fast path
    with the same value, the total sample size n and the parameter box (None: unbounded)."""

    per_source_nll: PerSourceNLL
    n: float
    box: UnitBox | None
    fast: FastNLL | None = None


PGTOL = 1e-6
"""Default convergence tolerance: largest projected-gradient entry of the mean NLL (nats per
sample per parameter unit)."""


def optimise(problem: Problem, start: dict[str, torch.Tensor], steps: int, *,
             free: tuple[str, ...] | None = None, tolerance: float = PGTOL,
             ftol: float = 0.0) -> RunResult:
    """L-BFGS-B on the mean NLL from `start` (restart axis 1) for at most `steps` iterations,
    stopping when the largest projected-gradient entry is at most `tolerance` (the function
    tolerance is off, so a run stops only there, at the cap, or when the line search can make
    no progress at rounding level).

    `free` names the tensors to optimise (default: all); the others stay fixed.
    """
    steps = check_int("steps", steps, minimum=0)
    names = tuple(start) if free is None else free
    fixed_np = {k: v.detach()[0].numpy() for k, v in start.items()}
    shapes = {k: tuple(start[k].shape[1:]) for k in names}
    sizes = [start[k].numel() for k in names]
    splits = np.cumsum(sizes)[:-1]
    z0 = np.concatenate([start[k].detach().reshape(-1).numpy() for k in names]
                        ).astype(np.float64)
    box = problem.box
    limits = np.concatenate([np.full(s, np.inf if box is None else box.bound(k))
                             for k, s in zip(names, sizes, strict=True)])

    def to_torch(z: np.ndarray) -> dict[str, torch.Tensor]:
        parts = dict(zip(names, np.split(z, splits), strict=True))
        return {k: torch.as_tensor(parts[k].reshape(shapes[k]))[None] if k in parts
                else start[k].detach() for k in start}

    def value_and_grad(z: np.ndarray) -> tuple[float, np.ndarray]:
        if problem.fast is not None:
            parts = dict(zip(names, np.split(z, splits), strict=True))
            params = {k: parts[k].reshape(shapes[k]) if k in parts else v
                      for k, v in fixed_np.items()}
            values, grads = problem.fast(params)
            return (float(values.sum() / problem.n),
                    np.concatenate([grads[k].reshape(-1) for k in names]) / problem.n)
        zt = torch.from_numpy(z.copy()).requires_grad_(True)
        parts_t = dict(zip(names, torch.split(zt, sizes), strict=True))
        params_t = {k: parts_t[k].reshape(1, *shapes[k]) if k in parts_t else v.detach()
                    for k, v in start.items()}
        loss = problem.per_source_nll(params_t).sum() / problem.n
        loss.backward()
        return float(loss.detach()), zt.grad.numpy().copy()

    z = np.clip(z0, -limits, limits)
    iterations = evaluations = 0
    if steps and z.size:
        result = minimize(value_and_grad, z, jac=True, method="L-BFGS-B",
                          bounds=list(zip(-limits, limits, strict=True)),
                          options={"maxiter": steps, "maxfun": 2 * steps + 20, "maxcor": 20,
                                   "ftol": ftol, "gtol": tolerance})
        z, iterations, evaluations = result.x, int(result.nit), int(result.nfev)
    _, grad = value_and_grad(z) if z.size else (0.0, np.zeros(0))
    at_upper, at_lower = z >= limits - 1e-9, z <= -limits + 1e-9
    projected = np.where((at_upper & (grad < 0)) | (at_lower & (grad > 0)), 0.0, grad)
    params = {k: v.clone() for k, v in to_torch(z).items()}
    with torch.no_grad():
        per_source = problem.per_source_nll(params)[0].numpy()
    return RunResult(params, per_source, iterations,
                     float(np.abs(projected).max(initial=0.0)), int((at_upper | at_lower).sum()),
                     evaluations)


@dataclass(frozen=True)
class SplitFit:
    """The selected fit (restart axis 1), its mean training NLL, the mean NLL of every random
    start of the first stage after screening, the diagnostics of the run that produced the
    selection, and the optimisation effort: random starts per source network (first stage),
    blocks used, and L-BFGS-B iterations over every run of the fit; `rule_stopped`: whether
    the restart rule stopped because a block no longer improved the best (False: it stopped at
    `max_blocks` or ran out of starts while still improving)."""

    params: dict[str, torch.Tensor]
    train_nll: float
    per_source: np.ndarray
    restart_nll: np.ndarray
    projected_gradient: float
    at_bound: int
    iterations: int
    starts: int = 1
    blocks: int = 1
    total_iterations: int = 0
    tolerance: float = PGTOL
    rule_stopped: bool = True

    @property
    def converged(self) -> bool:
        """Whether the final projected gradient is within the tolerance."""
        return self.projected_gradient <= self.tolerance


def _combine_per_source(runs: list[RunResult]) -> tuple[dict[str, torch.Tensor], np.ndarray]:
    """For disjoint source networks: every source's units from the run best for that source."""
    table = np.stack([r.per_source for r in runs])                     # (runs, K)
    choice = table.argmin(0)
    K = table.shape[1]
    params = {k: v.clone() for k, v in runs[0].params.items()}
    for name in params:
        if not is_shared(name):
            params[name] = torch.stack([runs[int(choice[k])].params[name][0, k]
                                        for k in range(K)])[None]
    return params, table[choice, np.arange(K)]


@dataclass(frozen=True)
class RestartRule:
    """Blocks of `block` random starts, each screened for `screen` iterations; the best screened
    start continued to convergence (`tolerance`, at most `steps` iterations); blocks added until
    one lowers the best converged mean NLL by no more than `improvement` nats per sample (at
    least `min_blocks`, at most `max_blocks`). `min_blocks = max_blocks = 1` is a fixed budget of
    `block` starts."""

    block: int
    steps: int
    screen: int
    tolerance: float = PGTOL
    improvement: float = 0.0
    min_blocks: int = 2
    max_blocks: int = 1

    def __post_init__(self) -> None:
        check_int("block", self.block, minimum=1)
        check_int("steps", self.steps, minimum=1)
        check_int("screen", self.screen, minimum=1)
        check_float("tolerance", self.tolerance, minimum=0.0)
        check_float("improvement", self.improvement, minimum=0.0)
        check_int("max_blocks", self.max_blocks, minimum=1)
        check_int("min_blocks", self.min_blocks, minimum=1)


class _Effort:
    """Runs L-BFGS-B and counts iterations; with a cache, a run with the same key is reused
    (the nested budgets of `budget_curve` share their screened starts)."""

    def __init__(self, cache: dict | None = None) -> None:
        self.iterations = 0
        self.cache = cache

    def run(self, problem: Problem, start: dict[str, torch.Tensor], steps: int,
            tolerance: float, free: tuple[str, ...] | None = None, key: object = None
            ) -> RunResult:
        if self.cache is not None and key is not None and key in self.cache:
            return self.cache[key]
        result = optimise(problem, start, steps, free=free, tolerance=tolerance)
        self.iterations += result.iterations
        if self.cache is not None and key is not None:
            self.cache[key] = result
        return result


def _blocks(problem: Problem, rule: RestartRule, effort: _Effort, count: int,
            make_start: Callable[[int], dict[str, torch.Tensor]], per_source: bool,
            free: tuple[str, ...] | None, incumbent: RunResult | None = None,
            tag: object = "first") -> tuple[RunResult, list[RunResult], int, bool]:
    """The block rule of the module docstring. Returns the converged best run, the screened
    runs, the number of blocks used and whether the rule stopped on its improvement test.
    `incumbent` (a converged run) competes in the selection (the second stage)."""
    screened: list[RunResult] = []
    blocks = 0
    stopped = False
    best = math.inf if incumbent is None else incumbent.per_source.sum() / problem.n

    def select() -> tuple[dict[str, torch.Tensor], float]:
        pool = screened if incumbent is None else [incumbent, *screened]
        if per_source:
            params, values = _combine_per_source(pool)
            return params, float(values.sum() / problem.n)
        chosen = min(pool, key=lambda r: r.per_source.sum())
        return chosen.params, float(chosen.per_source.sum() / problem.n)

    while blocks < rule.max_blocks and (blocks + 1) * rule.block <= count:
        lo = blocks * rule.block
        screened += [effort.run(problem, make_start(r), min(rule.screen, rule.steps),
                                rule.tolerance, free, key=(tag, r))
                     for r in range(lo, lo + rule.block)]
        blocks += 1
        _, value = select()
        gain, best = best - value, min(best, value)
        if blocks >= rule.min_blocks and gain <= rule.improvement:
            stopped = True
            break
    params, _ = select()
    return effort.run(problem, params, rule.steps, rule.tolerance), screened, blocks, stopped


def fit_with_rule(problem: Problem, starts: dict[str, torch.Tensor],
                  specific_starts: dict[str, torch.Tensor] | None, rule: RestartRule,
                  cache: dict | None = None) -> SplitFit:
    """Maximum likelihood with the restart rule of the module docstring.

    starts: random starts of every tensor (restart axis >= block * max_blocks are usable).
    specific_starts: further starts of the per-source tensors, for the second stage when the
    class has shared units.
    """
    available = next(iter(starts.values())).shape[0]
    has_shared = any(v.numel() for k, v in starts.items() if is_shared(k))
    has_specific = any(v.numel() for k, v in starts.items() if not is_shared(k))
    effort = _Effort(cache)
    best, screened, blocks, stopped = _blocks(problem, rule, effort, available,
                                              lambda r: take(starts, r), not has_shared, None)
    restart_nll = np.array([r.per_source.sum() / problem.n for r in screened])
    if has_shared and has_specific and specific_starts is not None:
        specific = tuple(k for k in starts if not is_shared(k))
        count = next(iter(specific_starts.values())).shape[0]
        anchor = best

        def make(r: int) -> dict[str, torch.Tensor]:
            return {**anchor.params, **{k: v for k, v in take(specific_starts, r).items()
                                        if k in specific}}

        second, _, _, second_stopped = _blocks(problem, rule, effort, count, make, True,
                                               specific, incumbent=best,
                                               tag=("second", best.per_source.sum()))
        stopped = stopped and second_stopped
        if second.per_source.sum() < best.per_source.sum():
            best = second
    return SplitFit(best.params, float(best.per_source.sum() / problem.n), best.per_source,
                    restart_nll, best.projected_gradient, best.at_bound, best.iterations,
                    starts=len(screened), blocks=blocks, total_iterations=effort.iterations,
                    tolerance=rule.tolerance, rule_stopped=stopped)


def budget_curve(problem: Problem, starts: dict[str, torch.Tensor],
                 specific_starts: dict[str, torch.Tensor] | None, rule: RestartRule,
                 budgets: tuple[int, ...], cache: dict | None = None) -> list[SplitFit]:
    """Fixed budgets of the first B starts (one block of B, nested: every budget sees the
    starts of the smaller ones), screened runs shared between budgets (and with an earlier
    `fit_with_rule` of the same rule, through `cache`)."""
    cache = {} if cache is None else cache
    return [fit_with_rule(problem, starts, specific_starts,
                          replace(rule, block=int(B), min_blocks=1, max_blocks=1), cache)
            for B in budgets]


def fit_split_network(problem: Problem, starts: dict[str, torch.Tensor],
                      specific_starts: dict[str, torch.Tensor] | None, steps: int,
                      screen: int | None = None) -> SplitFit:
    """The fixed-budget fit used by the square-box energy (`energy_box`): R random starts, each
    screened for `screen` L-BFGS-B iterations (default: `steps`), the selected start (per
    source when the sources share nothing) continued to `steps` iterations in all; with shared
    units, R further starts of every source's own units and one joint run from the combination.
    The function tolerance is at rounding level and pgtol 1e-10, so runs stop at the cap."""
    screen = steps if screen is None else min(check_int("screen", screen, minimum=1), steps)
    rest = steps - screen
    R = next(iter(starts.values())).shape[0]
    has_shared = any(v.numel() for k, v in starts.items() if is_shared(k))
    has_specific = any(v.numel() for k, v in starts.items() if not is_shared(k))

    def run(params, count, free=None):
        return _capped(problem, params, count, free)

    runs = [run(take(starts, r), screen) for r in range(R)]
    restart_nll = np.array([r.per_source.sum() / problem.n for r in runs])
    if not has_shared:
        params, _ = _combine_per_source(runs)
        return _as_fit(run(params, rest), restart_nll, problem.n)
    best = runs[int(restart_nll.argmin())]
    best = run(best.params, rest) if rest else best
    if has_specific and specific_starts is not None:
        specific = tuple(k for k in starts if not is_shared(k))
        second = [best] + [
            run({**best.params, **{k: v for k, v in take(specific_starts, r).items()
                                   if k in specific}}, screen, specific)
            for r in range(next(iter(specific_starts.values())).shape[0])]
        combined, _ = _combine_per_source(second)
        polished = run(combined, max(rest, 1))
        if polished.per_source.sum() < best.per_source.sum():
            best = polished
    return _as_fit(best, restart_nll, problem.n)


def _capped(problem: Problem, start: dict[str, torch.Tensor], steps: int,
            free: tuple[str, ...] | None = None) -> RunResult:
    """The iteration-capped run of `fit_split_network` (function tolerance 1e-15, pgtol
    1e-10: in practice every run uses its whole budget)."""
    return optimise(problem, start, steps, free=free, tolerance=1e-10, ftol=1e-15)


def _as_fit(run: RunResult, restart_nll: np.ndarray, n: float) -> SplitFit:
    return SplitFit(run.params, float(run.per_source.sum() / n), run.per_source, restart_nll,
                    run.projected_gradient, run.at_bound, run.iterations,
                    starts=len(restart_nll), total_iterations=run.iterations)


def fit_from(problem: Problem, start: dict[str, torch.Tensor], steps: int,
             tolerance: float | None = None) -> SplitFit:
    """One run from a given start (e.g. the teacher): a check on the optimiser, not an
    estimator. `tolerance` None keeps the capped run of `fit_split_network`."""
    run = (_capped(problem, start, steps) if tolerance is None
           else optimise(problem, start, steps, tolerance=tolerance))
    fit = _as_fit(run, np.array([run.per_source.sum() / problem.n]), problem.n)
    return fit if tolerance is None else replace(fit, tolerance=tolerance)


def as_separate_networks(params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The same conditionals written in the single-source class: every source's network gets a
    copy of the shared units (first) next to its own. Weight matrices `W*` have the unit axis
    second to last; biases and output weights have it last."""
    out: dict[str, torch.Tensor] = {}
    for name in [k for k in params if is_shared(k)]:
        own = name[:-1] + "p"
        axis = -2 if name[0] == "W" else -1
        shared, specific = params[name], params[own]
        copies = shared[:, None].expand(shared.shape[0], specific.shape[1], *shared.shape[1:])
        out[own] = torch.cat([copies, specific], dim=axis)
        out[name] = shared.narrow(axis, 0, 0).clone()
    return out
