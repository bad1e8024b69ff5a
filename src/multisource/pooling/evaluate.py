"""How well the decision rule decides, on settings whose true risks are known exactly.

For a misspecified Gaussian setting (`misspecified`) and a sample size n, every seed draws a
raw data set, runs `advise` with the book's family (`gaussian-unit`, the first d1 columns
specific) and records what it recommends. The truth to judge it by is the exact expected risk
of the pooled and separate MLEs; the realised risk of every fit is exact too (closed-form TV).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from multisource.pooling import misspecified as ms
from multisource.pooling.advise import DEFAULT_WEIGHTS, advise
from multisource.pooling.crossover import t_interval
from multisource.pooling.families import GaussianUnit
from multisource.validation import InputError, check_int


def advice_trials(setting: ms.MisspecifiedGaussian, n: int, n_seeds: int, seed: int, *,
                  folds: int = 5, weights: Sequence[float] = DEFAULT_WEIGHTS) -> pd.DataFrame:
    """One row per seed: the recommendation and the exact average TV of every candidate fit."""
    n_seeds = check_int("n_seeds", n_seeds, minimum=1)
    need = 2 * folds
    if n * float(setting.p.min()) < 2 * need:
        smallest = int(np.ceil(2 * need / setting.p.min()))
        raise InputError(f"n={n} is too small: every source needs {need} samples for "
                         f"{folds}-fold advice; take n >= {smallest}")
    rng = np.random.default_rng(seed)
    family = GaussianUnit()
    specific = np.arange(setting.d) < setting.d1
    rows = []
    for i in range(n_seeds):
        x, y = ms.sample(setting, n, rng)
        while np.bincount(y, minlength=setting.K).min() < 2 * folds:
            x, y = ms.sample(setting, n, rng)
        advice = advise(x, y, family, specific=specific, folds=folds, weights=weights,
                        seed=int(rng.integers(2**31)))
        weight = {"pooled": 1.0, "separate": 0.0, "partial": advice.weight}[advice.recommendation]
        rows.append({
            "seed_index": i, "recommendation": advice.recommendation,
            "binary": advice.pooled_or_separate, "weight": weight, "clear": advice.clear,
            "tv_advised": ms.average_tv(setting, ms.fit_partial(x, y, setting.K, setting.d1,
                                                                weight)),
            "tv_pooled": ms.average_tv(setting, ms.fit_partial(x, y, setting.K, setting.d1, 1.0)),
            "tv_separate": ms.average_tv(setting, ms.fit_partial(x, y, setting.K, setting.d1,
                                                                 0.0)),
        })
    return pd.DataFrame(rows)


def summarise_trials(trials: pd.DataFrame, risk_pooled: float, risk_separate: float,
                     level: float = 0.95) -> dict[str, float | str | int]:
    """Accuracy of the binary pick (Wilson interval), its regret, and the advised fit's excess.

    accuracy: share of seeds whose pooled-or-separate pick is the estimator with the lower
    exact expected risk. regret_binary: expected excess risk of that pick over the better one,
    (1 - accuracy) * |gap|. excess_advised: mean realised TV of the advised fit (partial
    included) minus the better exact expected risk, with a t interval (negative: the advice
    beats both plain estimators).
    """
    truth = "pooled" if risk_pooled <= risk_separate else "separate"
    gap = abs(risk_pooled - risk_separate)
    correct = int((trials.binary == truth).sum())
    total = len(trials)
    ci = stats.binomtest(correct, total).proportion_ci(confidence_level=level, method="wilson")
    excess = t_interval(trials.tv_advised.to_numpy() - min(risk_pooled, risk_separate), level)
    return {
        "truly_better": truth, "risk_gap": gap, "seeds": total,
        "accuracy": correct / total, "accuracy_low": float(ci.low),
        "accuracy_high": float(ci.high),
        "regret_binary": (1 - correct / total) * gap,
        "regret_binary_high": (1 - float(ci.low)) * gap,
        "partial_share": float((trials.recommendation == "partial").mean()),
        "excess_advised": excess.mean, "excess_advised_low": excess.low,
        "excess_advised_high": excess.high,
    }
