"""Chapter 8's test of the decision rule `advise` on settings with exactly known risks.

For K sources with one odd source out at distance delta (`multisource.pooling.misspecified`),
the exact crossover n* splits the sample sizes into "pool" and "separate" territory. At
n = factor * n*, every seed draws a raw data set, runs `advise` (5-fold cross-validation, the
book's unit-covariance family with the first d1 columns specific) and is scored against the
exact expected risks (`multisource.pooling.evaluate`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch

from multisource.experiments import Experiment, register
from multisource.pooling import misspecified as ms
from multisource.pooling.evaluate import advice_trials, summarise_trials


@dataclass(frozen=True)
class PoolingAdviceConfig:
    """(K, delta) settings, sample sizes as multiples of n*, seeds per point."""

    d: int = 10
    d1: int = 5
    settings: tuple[tuple[int, float], ...] = ((2, 0.15), (2, 0.3), (5, 0.3), (5, 0.6),
                                               (10, 0.6), (10, 1.0))
    factors: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)
    seeds: int = 200
    folds: int = 5
    seed: int = 2025


def _tasks(config: PoolingAdviceConfig) -> list[dict[str, Any]]:
    return [{"K": K, "delta": delta, "factor": factor}
            for K, delta in config.settings for factor in config.factors]


@lru_cache(maxsize=64)
def _crossover(K: int, d: int, d1: int, delta: float) -> int:
    n_star = ms.crossover(ms.MisspecifiedGaussian(K, d, d1, delta))
    if n_star is None:
        raise ValueError(f"no crossover for K={K}, delta={delta}")
    return n_star


def _run_task(config: PoolingAdviceConfig, task: dict[str, Any], device: torch.device
              ) -> list[dict[str, Any]]:
    del device  # NumPy fits
    K, delta, factor = int(task["K"]), float(task["delta"]), float(task["factor"])
    setting = ms.MisspecifiedGaussian(K, config.d, config.d1, delta)
    n_star = _crossover(K, config.d, config.d1, delta)
    n = max(round(factor * n_star), 1)
    seed = config.seed + 1000 * K + round(1000 * delta) + round(100 * factor)
    trials = advice_trials(setting, n, config.seeds, seed, folds=config.folds)
    risk_pooled = ms.expected_risk(setting, n, "pooled")
    risk_separate = ms.expected_risk(setting, n, "separate")
    summary = summarise_trials(trials, risk_pooled, risk_separate)
    return [{"K": K, "delta": delta, "factor": factor, "n_star": n_star, "n": n,
             "risk_pooled": risk_pooled, "risk_separate": risk_separate,
             "mean_tv_pooled": float(trials.tv_pooled.mean()),
             "mean_tv_separate": float(trials.tv_separate.mean()),
             "clear_share": float(trials.clear.mean()), **summary}]


register(Experiment(
    name="pooling_advice",
    description="Chapter 8: accuracy and regret of the advise rule against exact risks",
    chapter="08_when_pooling_hurts",
    profiles={
        "smoke": PoolingAdviceConfig(settings=((2, 0.3),), factors=(0.5, 2.0), seeds=10),
        "book": PoolingAdviceConfig(),
        "paper": PoolingAdviceConfig(seeds=1000),
    },
    tasks=_tasks,
    run_task=_run_task,
))
