"""How well the decision rule decides, against the estimator with the lower true risk.

For a misspecified Gaussian setting (`misspecified`: K sources, one odd source out at a
distance delta on the declared-shared block) and a sample size n, every data set is drawn raw,
with the sources' noise from a `NoiseLaw` (Gaussian, or a heavy-tailed Student t with the same
mean and unit variance per coordinate), and `advise` is run on it for a model family with the
command's options. Its pick between the pooled and the separate MLE *of that family* is judged
against the one of the two with the lower true expected risk, the book's average TV
sum_k p_k E TV(p_hat(.|k), p*(.|k)):

- `gaussian-unit` family on Gaussian data: exact (`misspecified.expected_risk`; every fit's
  TV is closed-form too);
- every other (family, law): the TV of every fit is estimated by Monte Carlo over test points
  drawn from the true source, TV = E_{x ~ p*}[(1 - p_hat(x) / p*(x))_+] (unbiased; the same
  test points serve the pooled and the separate fit, so their difference is paired), and the
  expected risk is the mean over many independent data sets, with a t interval. Where that
  interval of the expected difference includes 0 the truth is reported as unresolved.

`advise` needs 2 * folds samples per source, so the data sets are drawn given that; the exact
truth conditions only on every source being non-empty. At the sample sizes of chapter 8 (at
least 40 expected samples per source) the two laws differ by less than 1e-8.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import special, stats

from multisource.common.validation import InputError, check_choice, check_int
from multisource.pooling import misspecified as ms
from multisource.pooling.advise import DEFAULT_WEIGHTS, advise
from multisource.pooling.crossover import t_interval
from multisource.pooling.families import Params, get_family, mix

FAMILIES = ("gaussian", "gaussian-unit")


@dataclass(frozen=True)
class NoiseLaw:
    """Independent noise coordinates with mean 0 and variance 1: Gaussian (df = inf) or a
    Student t with `df` > 2 degrees of freedom, scaled to unit variance."""

    name: str
    df: float = math.inf

    @property
    def scale(self) -> float:
        """Scale of the standard t that gives unit variance."""
        return 1.0 if math.isinf(self.df) else math.sqrt((self.df - 2.0) / self.df)

    def draw(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        """Noise of this law."""
        if math.isinf(self.df):
            return rng.standard_normal(shape)
        return self.scale * rng.standard_t(self.df, shape)

    def logpdf(self, z: np.ndarray) -> np.ndarray:
        """Log density of every coordinate."""
        if math.isinf(self.df):
            return -0.5 * z**2 - 0.5 * math.log(2 * math.pi)
        nu, c = self.df, self.scale
        const = (special.gammaln((nu + 1) / 2) - special.gammaln(nu / 2)
                 - 0.5 * math.log(nu * math.pi) - math.log(c))
        return const - (nu + 1) / 2 * np.log1p((z / c) ** 2 / nu)


LAWS: dict[str, NoiseLaw] = {"gaussian": NoiseLaw("gaussian"),
                             "student-t": NoiseLaw("student-t", 5.0)}


def sample(setting: ms.MisspecifiedGaussian, n: int, law: NoiseLaw, rng: np.random.Generator,
           minimum: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """n raw samples, y ~ p_Y and x = mu_y + noise; redrawn until every source has `minimum`."""
    while True:
        y = rng.choice(setting.K, size=n, p=setting.p)
        if np.bincount(y, minlength=setting.K).min() >= minimum:
            return setting.means[y] + law.draw(rng, (n, setting.d)), y


def fits(family: str, x: np.ndarray, y: np.ndarray, K: int, specific: np.ndarray
         ) -> tuple[Params, Params]:
    """(separate, pooled) parameters of `family` in the data's own units (variances 1 for the
    unit family)."""
    separate, pooled = get_family(family).fit_pair(x, y, K, specific)
    if "var" not in separate:
        ones = np.ones_like(separate["mean"])
        separate, pooled = {**separate, "var": ones}, {**pooled, "var": ones}
    return separate, pooled


class TestPoints:
    """Test points drawn from every true source, shared by every fit scored on them."""

    def __init__(self, setting: ms.MisspecifiedGaussian, law: NoiseLaw, m: int,
                 rng: np.random.Generator) -> None:
        z = law.draw(rng, (setting.K, m, setting.d))
        self.x = setting.means[:, None, :] + z
        self.log_true = law.logpdf(z).sum(axis=2)
        self.p = setting.p

    def average_tv(self, params: Params) -> float:
        """Monte Carlo sum_k p_k TV(p_hat_k, p*_k) = E_{p*}[(1 - p_hat / p*)_+]."""
        mean, var = params["mean"][:, None, :], params["var"][:, None, :]
        log_fit = -0.5 * (((self.x - mean) ** 2) / var + np.log(2 * np.pi * var)).sum(axis=2)
        ratio = np.exp(np.minimum(log_fit - self.log_true, 50.0))
        return float(self.p @ np.maximum(1.0 - ratio, 0.0).mean(axis=1))


def exact_truth(family: str, law: NoiseLaw) -> bool:
    """Whether the true risks of this (family, law) are exact rather than Monte Carlo."""
    return family == "gaussian-unit" and math.isinf(law.df)


def advice_trials(setting: ms.MisspecifiedGaussian, law: NoiseLaw, n: int, n_truth: int,
                  n_advice: int, seed: int, *, families: Sequence[str] = FAMILIES,
                  folds: int = 5, test_points: int = 256,
                  weights: Sequence[float] = DEFAULT_WEIGHTS) -> pd.DataFrame:
    """One row per (data set, family): TV of the pooled and separate fits and, on the first
    `n_advice` data sets, what `advise` (default options: no column specific beyond the
    setting's d1) recommends and the TV of the fit it recommends.

    TVs are exact for the unit family on Gaussian data, Monte Carlo otherwise. Every data set
    has at least 2 * folds samples per source (what `advise` needs).
    """
    n_truth = check_int("n_truth", n_truth, minimum=2)
    n_advice = check_int("n_advice", n_advice, minimum=0, maximum=n_truth)
    for family in families:
        check_choice("family", family, FAMILIES)
    need = 2 * folds
    if n * float(setting.p.min()) < 2 * need:
        smallest = int(np.ceil(2 * need / setting.p.min()))
        raise InputError(f"n={n} is too small: every source needs {need} samples for "
                         f"{folds}-fold advice; take n >= {smallest}")
    rng = np.random.default_rng(seed)
    specific = np.arange(setting.d) < setting.d1
    rows = []
    for i in range(n_truth):
        x, y = sample(setting, n, law, rng, need)
        points = TestPoints(setting, law, test_points, rng)
        for family in families:
            separate, pooled = fits(family, x, y, setting.K, specific)

            def tv(params: Params, family: str = family, points: TestPoints = points) -> float:
                if exact_truth(family, law):
                    return ms.average_tv(setting, params["mean"])
                return points.average_tv(params)

            row = {"data_set": i, "family": family, "tv_pooled": tv(pooled),
                   "tv_separate": tv(separate)}
            if i < n_advice:
                advice = advise(x, y, family, specific=specific, folds=folds, weights=weights,
                                seed=int(rng.integers(2**31)))
                weight = {"pooled": 1.0, "separate": 0.0,
                          "partial": advice.weight}[advice.recommendation]
                row.update(recommendation=advice.recommendation,
                           binary=advice.pooled_or_separate, weight=weight, clear=advice.clear,
                           score_difference=advice.scores["separate"].mean
                           - advice.scores["pooled"].mean,
                           tv_advised=tv(mix(separate, pooled, weight)))
            rows.append(row)
    return pd.DataFrame(rows)


def wilson(successes: int, total: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion."""
    ci = stats.binomtest(successes, total).proportion_ci(confidence_level=level,
                                                         method="wilson")
    return float(ci.low), float(ci.high)


def summarise_trials(trials: pd.DataFrame, risk_pooled: float | None = None,
                     risk_separate: float | None = None, level: float = 0.95
                     ) -> dict[str, float | str | int | bool]:
    """Truth, accuracy of the binary pick (Wilson interval), regret and the advised fit's excess.

    The true risks are `risk_pooled` / `risk_separate` when given (exact), else the means of
    the trials' TVs, with a t interval of their paired difference; `truth_resolved` says
    whether the sign of the difference is (exact, or the interval excludes 0).
    accuracy: share of advised data sets whose pooled-or-separate pick is the truly better
    estimator; regret_binary = (1 - accuracy) * |gap|; share_separate: how often it picks
    separate; excess_advised: mean TV of the advised fit (partial included) minus the better
    true risk, with a t interval.
    """
    difference = t_interval(trials.tv_pooled.to_numpy() - trials.tv_separate.to_numpy(), level)
    exact = risk_pooled is not None and risk_separate is not None
    if not exact:
        risk_pooled = float(trials.tv_pooled.mean())
        risk_separate = float(trials.tv_separate.mean())
    assert risk_pooled is not None and risk_separate is not None
    resolved = exact or not difference.contains(0.0)
    truth = "pooled" if risk_pooled <= risk_separate else "separate"
    gap = abs(risk_pooled - risk_separate)
    advised = trials.dropna(subset=["binary"])
    correct = int((advised.binary == truth).sum())
    total = len(advised)
    low, high = wilson(correct, total, level)
    excess = t_interval(advised.tv_advised.to_numpy(float) - min(risk_pooled, risk_separate),
                        level)
    return {
        "risk_pooled": risk_pooled, "risk_separate": risk_separate, "truth_exact": exact,
        "difference_low": difference.low, "difference_high": difference.high,
        "truth_resolved": resolved, "truly_better": truth, "risk_gap": gap,
        "truth_data_sets": len(trials), "seeds": total, "accuracy": correct / total,
        "accuracy_low": low, "accuracy_high": high,
        "regret_binary": (1 - correct / total) * gap,
        "regret_binary_high": (1 - low) * gap,
        "share_separate": float((advised.binary == "separate").mean()),
        "partial_share": float((advised.recommendation == "partial").mean()),
        "clear_share": float(advised.clear.astype(bool).mean()),
        "excess_advised": excess.mean, "excess_advised_low": excess.low,
        "excess_advised_high": excess.high,
    }
