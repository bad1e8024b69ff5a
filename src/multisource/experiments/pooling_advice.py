"""Chapter 8's test of the decision rule `advise` against the estimator with the lower true risk.

K sources with one odd source out at distance delta on every coordinate (d1 = 0: nothing is
source-specific, the command's default options), noise Gaussian or heavy-tailed (Student t,
5 degrees of freedom, unit variance). The exact crossover n* of the Gaussian setting (book's
family, TV risk, `multisource.pooling.misspecified`) sets the scale: at n = factor * n*, every
data set is drawn raw and `advise` is run with the command's default family (`gaussian`,
per-source variances) and with the unit family (`gaussian-unit`), each judged against the true
risks of its own pooled and separate fits on two criteria (`multisource.pooling.evaluate`): TV
at n (exact for the unit family on Gaussian data, Monte Carlo over many data sets otherwise)
and the KL at the training size (folds - 1) / folds * n that the held-out score estimates,
with ties below a stated gap, regret from per-data-set values and the rule's corrected "clear".
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch

from multisource.experiments import Experiment, register
from multisource.pooling import misspecified as ms
from multisource.pooling.evaluate import (
    FAMILIES,
    LAWS,
    advice_trials,
    exact_truth,
    summarise_trials,
)


@dataclass(frozen=True)
class PoolingAdviceConfig:
    """(K, delta) settings, noise laws, sample sizes as multiples of n*, data sets per point."""

    d: int = 10
    d1: int = 0
    settings: tuple[tuple[int, float], ...] = ((2, 0.3), (5, 0.6), (10, 1.0))
    laws: tuple[str, ...] = ("gaussian", "student-t")
    factors: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)
    seeds: int = 500          # data sets on which advise runs (per family)
    truth_seeds: int = 2000   # data sets for the Monte Carlo true risks (the first `seeds` too)
    test_points: int = 256    # per source and data set, for Monte Carlo TV
    folds: int = 5
    seed: int = 2026


def _tasks(config: PoolingAdviceConfig) -> list[dict[str, Any]]:
    return [{"K": K, "delta": delta, "law": law, "factor": factor}
            for K, delta in config.settings for law in config.laws for factor in config.factors]


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
    law = LAWS[str(task["law"])]
    setting = ms.MisspecifiedGaussian(K, config.d, config.d1, delta)
    n_star = _crossover(K, config.d, config.d1, delta)
    n = max(round(factor * n_star), 1)
    seed = (config.seed + 1000 * K + round(1000 * delta) + round(100 * factor)
            + 7 * config.laws.index(law.name))
    trials = advice_trials(setting, law, n, config.truth_seeds, config.seeds, seed,
                           folds=config.folds, test_points=config.test_points)
    rows = []
    for family in FAMILIES:
        part = trials[trials.family == family]
        exact = ({"risk_pooled": ms.expected_risk(setting, n, "pooled"),
                  "risk_separate": ms.expected_risk(setting, n, "separate")}
                 if exact_truth(family, law) else {})
        summary = summarise_trials(part, **exact)
        rows.append({"K": K, "delta": delta, "law": law.name, "family": family,
                     "factor": factor, "n_star": n_star, "n": n,
                     "n_star_mse": ms.crossover_mse(setting),
                     "train_size": round((config.folds - 1) / config.folds * n),
                     "mean_score_difference": float(part.score_difference.mean()),
                     **summary})
    return rows


register(Experiment(
    name="pooling_advice",
    description="Chapter 8: accuracy and regret of the advise rule against the lower true "
                "risk (TV at n, KL at the training size), two families, Gaussian and "
                "heavy-tailed data",
    chapter="08_when_pooling_hurts",
    profiles={
        "smoke": PoolingAdviceConfig(settings=((2, 0.3),), laws=("gaussian", "student-t"),
                                     factors=(0.5, 2.0), seeds=10, truth_seeds=20),
        "book": PoolingAdviceConfig(),
        "paper": PoolingAdviceConfig(seeds=2000, truth_seeds=6000),
    },
    tasks=_tasks,
    run_task=_run_task,
))
