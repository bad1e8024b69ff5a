"""Chapter 8's phase diagram: where pooled and separate Gaussian MLEs trade places (exact).

Three kinds of task, all exact expected risks from `multisource.pooling.misspecified` (one odd
source out: source 0's declared-shared block sits a distance delta from the others'):

- boundary: for K sources and a sample size n, the distance delta*(n) at which the two
  estimators have equal risk (pooled wins below it, separate above);
- grid: the risk difference at a grid of (n, delta), to check that there is one boundary;
- declared: the exact crossover n* for several declared shared fractions beta_sim = d_s / d at
  a fixed divergence per declared-shared coordinate, rho = KL(sources || pooled limit) / d_s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy import optimize

from multisource.experiments import Experiment, register
from multisource.pooling import misspecified as ms


@dataclass(frozen=True)
class PoolingPhaseConfig:
    """Grids of the phase diagram and of the declared-vs-measured comparison."""

    d: int = 10
    d1: int = 5
    Ks: tuple[int, ...] = (2, 5, 10)
    boundary_ns: tuple[int, ...] = (20, 35, 60, 100, 180, 300, 550, 1000, 1800, 3000, 5500,
                                    10000)
    grid_ns: tuple[int, ...] = (30, 100, 300, 1000, 3000, 10000)
    grid_deltas: tuple[float, ...] = (0.1, 0.2, 0.4, 0.8, 1.6, 3.2)
    declared_K: int = 5
    declared_d1s: tuple[int, ...] = (8, 5, 2)
    declared_rhos: tuple[float, ...] = (0.0005, 0.002, 0.008, 0.032)
    relative_tolerance: float = 1e-4


def _tasks(config: PoolingPhaseConfig) -> list[dict[str, Any]]:
    tasks: list[dict[str, Any]] = []
    for K in config.Ks:
        tasks += [{"part": "boundary", "K": K, "n": n} for n in config.boundary_ns if n >= 2 * K]
        tasks += [{"part": "grid", "K": K, "n": n, "delta": delta}
                  for n in config.grid_ns if n >= 2 * K for delta in config.grid_deltas]
    tasks += [{"part": "declared", "K": config.declared_K, "d1": d1, "rho": rho}
              for d1 in config.declared_d1s for rho in config.declared_rhos]
    return tasks


def boundary_delta(K: int, d: int, d1: int, n: int, rtol: float = 1e-4) -> float:
    """delta*(n): the odd source's distance at which E[R_pooled] = E[R_separate] (exact)."""
    separate = ms.expected_risk(ms.MisspecifiedGaussian(K, d, d1, 0.0), n, "separate")

    def difference(delta: float) -> float:
        return ms.expected_risk(ms.MisspecifiedGaussian(K, d, d1, delta), n, "pooled") - separate

    guess = ms.MisspecifiedGaussian(K, d, d1, 1.0)
    hi = math.sqrt(1.0 / (n * guess.misspecification_kl() * 2 / ((K - 1) * (d - d1))))
    lo = 0.0
    while difference(hi) <= 0:
        lo, hi = hi, 2 * hi
    return float(optimize.brentq(difference, lo, hi, rtol=rtol, xtol=1e-12))


def delta_for_divergence(K: int, d: int, d1: int, rho: float) -> float:
    """The odd source's distance that gives misspecification KL rho * d_s (one odd source)."""
    unit = ms.MisspecifiedGaussian(K, d, d1, 1.0).misspecification_kl()   # KL grows as delta^2
    return math.sqrt(rho * (d - d1) / unit)


def _run_task(config: PoolingPhaseConfig, task: dict[str, Any], device: torch.device
              ) -> list[dict[str, Any]]:
    del device  # closed forms and NumPy
    d, part, K = config.d, task["part"], int(task["K"])
    if part == "boundary":
        n = int(task["n"])
        delta = boundary_delta(K, d, config.d1, n, config.relative_tolerance)
        setting = ms.MisspecifiedGaussian(K, d, config.d1, delta)
        return [{"part": part, "K": K, "d1": config.d1, "n": n, "delta": delta,
                 "risk_pooled": ms.expected_risk(setting, n, "pooled"),
                 "risk_separate": ms.expected_risk(setting, n, "separate"),
                 "n_star_mse": ms.crossover_mse(setting)}]
    if part == "grid":
        n, delta = int(task["n"]), float(task["delta"])
        setting = ms.MisspecifiedGaussian(K, d, config.d1, delta)
        pooled, separate = (ms.expected_risk(setting, n, e) for e in ms.ESTIMATORS)
        return [{"part": part, "K": K, "d1": config.d1, "n": n, "delta": delta,
                 "risk_pooled": pooled, "risk_separate": separate}]
    d1, rho = int(task["d1"]), float(task["rho"])
    delta = delta_for_divergence(K, d, d1, rho)
    setting = ms.MisspecifiedGaussian(K, d, d1, delta)
    n_star = ms.crossover(setting)
    return [{"part": part, "K": K, "d1": d1, "beta_sim": (d - d1) / d, "rho": rho,
             "delta": delta, "kl": setting.misspecification_kl(),
             "n_star": np.nan if n_star is None else n_star,
             "n_star_mse": ms.crossover_mse(setting)}]


register(Experiment(
    name="pooling_phase",
    description="Chapter 8: exact phase diagram of pooled vs separate Gaussian MLEs",
    chapter="08_when_pooling_hurts",
    profiles={
        "smoke": PoolingPhaseConfig(Ks=(2, 5), boundary_ns=(30, 300), grid_ns=(30, 300),
                                    grid_deltas=(0.2, 1.6), declared_d1s=(5,),
                                    declared_rhos=(0.008,)),
        "book": PoolingPhaseConfig(),
        "paper": PoolingPhaseConfig(
            boundary_ns=tuple(int(v) for v in np.unique(np.geomspace(20, 20000, 30).round())),
            grid_ns=(30, 60, 100, 180, 300, 550, 1000, 1800, 3000, 5500, 10000),
            grid_deltas=(0.1, 0.15, 0.2, 0.3, 0.4, 0.6, 0.8, 1.2, 1.6, 2.4, 3.2)),
    },
    tasks=_tasks,
    run_task=_run_task,
))
