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

Two criteria. TV at the full size n (the book's risk, above), and the criterion the held-out
score estimates: the average KL sum_k p_k KL(p*_k || p_hat_k) of a fit trained on the
(folds - 1) / folds of the data a cross-validation fold trains on (here: the training part of
one stratified fold split of each data set). The KL of a Gaussian fit depends on the true
source only through its mean, unit variance and entropy, so it is exact per data set for both
noise laws; its expectation is the mean over data sets. On each criterion the truly better
estimator is the one with the lower expected risk, a "tie" where the true gap is below a
stated threshold (`TIE_TV`, `TIE_KL`), and the regret of the rule is the mean over data sets of
(risk of the fit it picked on that data set - risk of the truly better fit on the same data
set), with a t interval: the pick depends on the data set, so this is not (1 - accuracy) * gap.

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
from multisource.pooling.advise import DEFAULT_WEIGHTS, advise, stratified_folds
from multisource.pooling.crossover import t_interval
from multisource.pooling.families import Params, fold_moments, get_family, mix

FAMILIES = ("gaussian", "gaussian-unit")
CRITERIA = ("tv", "kl")
TIE_TV = 1e-3   # a true TV gap below this is a tie (either choice costs about nothing)
TIE_KL = 1e-3   # the same for the KL criterion, nats per sample
TIES = {"tv": TIE_TV, "kl": TIE_KL}


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

    def entropy(self) -> float:
        """Differential entropy of one coordinate (nats)."""
        if math.isinf(self.df):
            return 0.5 * math.log(2 * math.pi * math.e)
        nu = self.df
        return float((nu + 1) / 2 * (special.digamma((nu + 1) / 2) - special.digamma(nu / 2))
                     + 0.5 * math.log(nu) + special.betaln(nu / 2, 0.5)
                     + math.log(self.scale))


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


def average_kl(setting: ms.MisspecifiedGaussian, law: NoiseLaw, params: Params) -> float:
    """sum_k p_k KL(p*_k || N(mean_k, diag var_k)), exact: the cross-entropy of a Gaussian fit
    needs only the true source's mean and (unit) variance, minus the law's entropy."""
    mean, var = params["mean"], params["var"]
    cross = 0.5 * ((1.0 + (setting.means - mean) ** 2) / var + np.log(2 * np.pi * var))
    return float(setting.p @ cross.sum(axis=1) - setting.d * law.entropy())


def training_part(y: np.ndarray, K: int, folds: int, rng: np.random.Generator) -> np.ndarray:
    """Mask of the rows one cross-validation fold trains on ((folds - 1) / folds of each
    source, as `advise`'s stratified folds)."""
    return stratified_folds(y, K, folds, rng) != 0


def exact_truth(family: str, law: NoiseLaw) -> bool:
    """Whether the true risks of this (family, law) are exact rather than Monte Carlo."""
    return family == "gaussian-unit" and math.isinf(law.df)


def advice_trials(setting: ms.MisspecifiedGaussian, law: NoiseLaw, n: int, n_truth: int,
                  n_advice: int, seed: int, *, families: Sequence[str] = FAMILIES,
                  folds: int = 5, test_points: int = 256,
                  weights: Sequence[float] = DEFAULT_WEIGHTS) -> pd.DataFrame:
    """One row per (data set, family): TV of the pooled and separate fits at n, their KL when
    trained on a fold's training part, and, on the first `n_advice` data sets, what `advise`
    (default options: no column specific beyond the setting's d1) recommends, whether it
    calls it clear (its Bonferroni-corrected rule), and the TV of the fit it recommends.

    TVs are exact for the unit family on Gaussian data, Monte Carlo otherwise; KLs are exact.
    Every data set has at least 2 * folds samples per source (what `advise` needs).
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
        train = training_part(y, setting.K, folds, rng)
        for family in families:
            separate, pooled = fits(family, x, y, setting.K, specific)
            sep_m, pool_m = fits(family, x[train], y[train], setting.K, specific)

            def tv(params: Params, family: str = family, points: TestPoints = points) -> float:
                if exact_truth(family, law):
                    return ms.average_tv(setting, params["mean"])
                return points.average_tv(params)

            row = {"data_set": i, "family": family, "tv_pooled": tv(pooled),
                   "tv_separate": tv(separate),
                   "kl_pooled": average_kl(setting, law, pool_m),
                   "kl_separate": average_kl(setting, law, sep_m)}
            if i < n_advice:
                advice = advise(x, y, family, specific=specific, folds=folds, weights=weights,
                                seed=int(rng.integers(2**31)))
                advised = _advised_fit(family, x, y, setting.K, specific, advice.recommendation,
                                       advice.weight, separate, pooled)
                row.update(recommendation=advice.recommendation,
                           binary=advice.pooled_or_separate, weight=advice.weight,
                           clear=advice.clear, verdict=advice.verdict,
                           score_difference=advice.scores["separate"].mean
                           - advice.scores["pooled"].mean,
                           tv_advised=tv(advised))
            rows.append(row)
    return pd.DataFrame(rows)


def _advised_fit(family: str, x: np.ndarray, y: np.ndarray, K: int, specific: np.ndarray,
                 recommendation: str, weight: float, separate: Params, pooled: Params
                 ) -> Params:
    """The fit `advise` recommends, on all the data (in the data's units)."""
    if recommendation == "shrunk":
        shrunk = get_family(family).fit_shrunk(fold_moments(x, y, K)[0], specific)
        return {**shrunk, "var": shrunk.get("var", np.ones_like(shrunk["mean"]))}
    w = {"pooled": 1.0, "separate": 0.0}.get(recommendation, weight)
    return mix(separate, pooled, w)


def wilson(successes: int, total: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion."""
    ci = stats.binomtest(successes, total).proportion_ci(confidence_level=level,
                                                         method="wilson")
    return float(ci.low), float(ci.high)


def summarise_trials(trials: pd.DataFrame, risk_pooled: float | None = None,
                     risk_separate: float | None = None, level: float = 0.95
                     ) -> dict[str, float | str | int | bool]:
    """Per criterion (tv, kl): the truth, accuracy of the binary pick (Wilson interval), the
    regret from per-data-set values (t interval), and how often a "clear" call was wrong.

    The true TV risks are `risk_pooled` / `risk_separate` when given (exact), else the means of
    the trials' TVs; KL risks are the means of the exact per-data-set KLs. `truly_better_<c>`
    is "tie" where the gap is below TIES[c]; `truth_resolved_<c>` says whether the sign is
    known (exact, or the t interval of the paired difference excludes 0). accuracy_<c>: share
    of advised data sets whose pooled-or-separate pick is the one with the lower expected risk
    (against the lower one in a tie cell too, where it means little); regret_<c>: mean of
    risk(pick) - risk(better) on the same data set; clear_wrong_<c>: share of data sets the
    rule called clear for pooled or separate, picking the truly worse one (ties excluded).
    excess_advised: mean TV of the advised fit (partial, shrunk included) minus the better true
    TV risk, with a t interval.
    """
    advised = trials.dropna(subset=["binary"])
    total = len(advised)
    out: dict[str, float | str | int | bool] = {"truth_data_sets": len(trials), "seeds": total}
    exact_tv = risk_pooled is not None and risk_separate is not None
    for c in CRITERIA:
        pooled_all, separate_all = (trials[f"{c}_pooled"].to_numpy(float),
                                    trials[f"{c}_separate"].to_numpy(float))
        difference = t_interval(pooled_all - separate_all, level)
        exact = c == "tv" and exact_tv
        rp, rs = ((risk_pooled, risk_separate) if exact
                  else (float(pooled_all.mean()), float(separate_all.mean())))
        assert rp is not None and rs is not None
        better = "pooled" if rp <= rs else "separate"
        gap = abs(rp - rs)
        tie = gap < TIES[c]
        picks = advised.binary.to_numpy()
        values = np.where(picks == "pooled", advised[f"{c}_pooled"], advised[f"{c}_separate"])
        regret = t_interval(values - advised[f"{c}_{better}"].to_numpy(float), level)
        correct = int((picks == better).sum())
        low, high = wilson(correct, total, level)
        wrong_clear = (advised.clear.astype(bool) & advised.recommendation.isin(
            ["pooled", "separate"]) & (picks != better)).to_numpy()
        out.update({
            f"risk_pooled_{c}": rp, f"risk_separate_{c}": rs, f"truth_exact_{c}": exact,
            f"difference_low_{c}": difference.low, f"difference_high_{c}": difference.high,
            f"truth_resolved_{c}": exact or not difference.contains(0.0),
            f"truly_better_{c}": "tie" if tie else better, f"lower_risk_{c}": better,
            f"risk_gap_{c}": gap, f"accuracy_{c}": correct / total,
            f"accuracy_low_{c}": low, f"accuracy_high_{c}": high,
            f"regret_{c}": regret.mean, f"regret_low_{c}": regret.low,
            f"regret_high_{c}": regret.high,
            f"clear_wrong_{c}": 0.0 if tie else float(wrong_clear.mean()),
        })
    best_tv = min(float(out["risk_pooled_tv"]), float(out["risk_separate_tv"]))
    excess = t_interval(advised.tv_advised.to_numpy(float) - best_tv, level)
    out.update({
        "share_separate": float((advised.binary == "separate").mean()),
        "partial_share": float((advised.recommendation == "partial").mean()),
        "shrunk_share": float((advised.recommendation == "shrunk").mean()),
        "clear_share": float(advised.clear.astype(bool).mean()),
        "undecided_share": float((advised.verdict == "undecided").mean()),
        "excess_advised": excess.mean, "excess_advised_low": excess.low,
        "excess_advised_high": excess.high,
    })
    return out
