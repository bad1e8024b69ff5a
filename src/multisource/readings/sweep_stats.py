"""Per-setting summaries of a Figure-1 sweep: Student-t intervals over seeds (chapters 5-6).

Every seed redraws the truth and the data, and both estimators are fitted on the same data, so
the seeds of a setting are independent pairs (multi, single). Means get Student-t intervals;
the ratio of mean risks gets a t interval from its linearisation (the delta method for a ratio
of paired means): with R = mean(multi) / mean(single) and residuals r_i = multi_i - R single_i,
se(R) = sd(r) / (sqrt(S) mean(single)).
"""

from __future__ import annotations

import math
from itertools import pairwise
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import t as student_t

from multisource.common.validation import InputError, check_float


def t_half_width(values: np.ndarray, level: float = 0.95) -> float:
    """Half-width of the Student-t interval for the mean of `values` (needs >= 2 values)."""
    values = np.asarray(values, float)
    level = check_float("level", level, minimum=0.5, maximum=0.9999)
    if values.size < 2:
        raise InputError(f"a t interval needs at least 2 values, got {values.size}")
    quantile = student_t.ppf(0.5 + level / 2, values.size - 1)
    return float(quantile * values.std(ddof=1) / math.sqrt(values.size))


def ratio_interval(multi: np.ndarray, single: np.ndarray, level: float = 0.95
                   ) -> tuple[float, float, float]:
    """Ratio of mean risks over paired seeds with its linearised Student-t interval."""
    multi, single = np.asarray(multi, float), np.asarray(single, float)
    if multi.shape != single.shape:
        raise InputError("multi and single must be paired (same shape)")
    ratio = multi.mean() / single.mean()
    half = t_half_width(multi - ratio * single, level) / single.mean()
    return float(ratio), float(ratio - half), float(ratio + half)


def summarise(frame: pd.DataFrame, level: float = 0.95, metric: str = "tv") -> pd.DataFrame:
    """One row per (K, n, beta_sim): seeds; mean risks with t intervals; the paired difference
    single - multi with its t interval; the ratio of means with its t interval; the count-based
    ratio sqrt(1 - (K-1)/K beta_sim); and, when the frame has Fisher predictions, the predicted
    mean risks, their ratio and the measured ratio's deviation from each prediction. A setting
    with a single seed gets NaN interval bounds. `metric` picks the risk columns
    (`tv`, `hellinger` or `sqrt_kl`, with their `fisher_<metric>_*` predictions)."""
    rows: list[dict[str, Any]] = []
    for (K, n, beta), group in frame.groupby(["K", "n", "beta_sim"], sort=True):
        multi = group[f"{metric}_multi"].to_numpy()
        single = group[f"{metric}_single"].to_numpy()
        row: dict[str, Any] = {"K": K, "n": n, "beta_sim": beta, "seeds": len(group)}
        one_seed = len(group) < 2   # a profile with one seed (smoke): no interval, NaN bounds
        for name, values in (("multi", multi), ("single", single),
                             ("advantage", single - multi)):
            half = math.nan if one_seed else t_half_width(values, level)
            row.update({name: values.mean(), f"{name}_lo": values.mean() - half,
                        f"{name}_hi": values.mean() + half})
        if one_seed:
            ratio = multi.mean() / single.mean()
            row["ratio"], row["ratio_lo"], row["ratio_hi"] = ratio, math.nan, math.nan
        else:
            row["ratio"], row["ratio_lo"], row["ratio_hi"] = ratio_interval(multi, single, level)
        row["theory"] = float(group.theory_ratio.iloc[0])
        row["theory_dev"] = row["ratio"] - row["theory"]
        if f"fisher_{metric}_multi" in group:
            row["fisher_multi"] = group[f"fisher_{metric}_multi"].mean()
            row["fisher_single"] = group[f"fisher_{metric}_single"].mean()
            row["fisher"] = row["fisher_multi"] / row["fisher_single"]
            row["fisher_dev"] = row["ratio"] - row["fisher"]
        rows.append(row)
    return pd.DataFrame(rows)


def sweeps(summary: pd.DataFrame, config: Any) -> dict[str, pd.DataFrame]:
    """The three one-at-a-time sweeps (the other two knobs at their defaults)."""
    K0, n0, b0 = config.K_default, config.n_default, config.beta_default
    at = summary
    return {
        "K": at[(at.n == n0) & np.isclose(at.beta_sim, b0)].sort_values("K"),
        "n": at[(at.K == K0) & np.isclose(at.beta_sim, b0)].sort_values("n"),
        "beta_sim": at[(at.K == K0) & (at.n == n0)].sort_values("beta_sim"),
    }


def default_row(summary: pd.DataFrame, config: Any) -> pd.Series:
    """The summary row of the default setting."""
    at = summary[(summary["K"] == config.K_default) & (summary["n"] == config.n_default)
                 & np.isclose(summary["beta_sim"], config.beta_default)]
    if len(at) != 1:
        raise InputError("the summary must hold the default setting exactly once")
    return at.iloc[0]


METRICS = {"tv": "TV", "hellinger": "Hellinger", "sqrt_kl": "sqrt(KL)"}
"""The risk columns of the network sweeps and their names."""


def in_w(frame: pd.DataFrame, nats: pd.Series) -> pd.Series:
    """A difference of mean NLLs (nats per sample) in units of Wilks' statistic: 2 n x."""
    return 2.0 * frame["n"] * nats


def teacher_start(frame: pd.DataFrame, tolerance: float) -> pd.DataFrame:
    """Per estimator: how often the random search alone misses the maximiser, i.e. a start from
    the teacher (run to the same tolerance) beats it by more than `tolerance` units of W, with
    the largest such gap, and how often the fit is the teacher-start run."""
    rows = []
    for name in ("multi", "single"):
        gain = frame[f"teacher_improvement_{name}"]
        rows.append({"estimator": name, "fits": len(frame),
                     "search improved": int((gain > tolerance).sum()),
                     "share improved": float((gain > tolerance).mean()),
                     "largest W": float(gain.max()),
                     "teacher start selected": float(frame[f"teacher_selected_{name}"].mean()),
                     "converged": float(frame[f"converged_{name}"].mean()),
                     "teacher start converged": float(
                         frame[f"teacher_start_converged_{name}"].mean())})
    return pd.DataFrame(rows)


def fresh_check(frame: pd.DataFrame, tolerance: float) -> pd.DataFrame:
    """The check of the selected fits that can fail: per estimator, how many an independent
    block of random starts improves by more than `tolerance` units of W; and the check's
    detection rate, measured on fits known to be off: the random-search fits that the teacher
    start beats by more than `tolerance`, of which the share the fresh block also beats."""
    rows = []
    for name in ("multi", "single"):
        gain = frame[f"fresh_improvement_{name}"]
        off = frame[f"teacher_improvement_{name}"] > tolerance
        detected = frame.loc[off, f"fresh_improvement_search_{name}"] > tolerance
        rows.append({"estimator": name, "fits": len(frame),
                     "improved": int((gain > tolerance).sum()),
                     "share improved": float((gain > tolerance).mean()),
                     "largest W": float(gain.max()),
                     "known off": int(off.sum()), "detected": int(detected.sum()),
                     "detection rate": float(detected.mean()) if off.any() else np.nan})
    return pd.DataFrame(rows)


def sensitivity(frame: pd.DataFrame, tolerance: float, level: float = 0.95,
                metric: str = "tv") -> pd.DataFrame:
    """The ratio of mean risks per setting four ways: the maximum-likelihood fits (random
    search and teacher start, the more likely); the random search alone (`search_only`); with
    the fresh block's fit where it is more likely (`with_fresh_block`); and without the seeds
    where the random search of either estimator misses the maximiser by more than `tolerance`
    (W units), where the first two coincide."""
    flagged = ((frame.teacher_improvement_multi > tolerance)
               | (frame.teacher_improvement_single > tolerance))
    parts = {"random search only": summarise(search_only(frame), level, metric),
             "with the fresh block": summarise(with_fresh_block(frame), level, metric),
             "without flagged": summarise(frame[~flagged], level, metric)
             if (~flagged).any() else None}
    out = summarise(frame, level, metric)[["K", "n", "beta_sim", "seeds", "ratio", "ratio_lo",
                                           "ratio_hi"]].copy()
    out["flagged"] = frame.assign(f=flagged).groupby(["K", "n", "beta_sim"], sort=True
                                                     ).f.sum().to_numpy()
    for label in ("random search only", "with the fresh block", "without flagged"):
        part = parts[label]
        merged = out[["K", "n", "beta_sim"]].merge(
            part[["K", "n", "beta_sim", "ratio"]] if part is not None
            else out[["K", "n", "beta_sim"]].assign(ratio=np.nan),
            on=["K", "n", "beta_sim"], how="left")
        out[f"ratio ({label})"] = merged.ratio.to_numpy()
    return out


def with_fresh_block(frame: pd.DataFrame) -> pd.DataFrame:
    """The same sweep with every fit replaced by the fresh block's fit where that one is more
    likely: the estimator with a search one block larger (a sensitivity analysis; the fresh
    block is then no longer a check)."""
    out = frame.copy()
    for name in ("multi", "single"):
        better = frame[f"fresh_nll_{name}"] < frame[f"nll_{name}"]
        for metric in (*METRICS, "nll"):
            out[f"{metric}_{name}"] = np.where(better, frame[f"fresh_{metric}_{name}"],
                                               frame[f"{metric}_{name}"])
    return out


def search_only(frame: pd.DataFrame) -> pd.DataFrame:
    """The same sweep with every fit replaced by the random search's own fit (the estimator
    without its start at the teacher, which only a simulation has)."""
    out = frame.copy()
    for name in ("multi", "single"):
        for metric in (*METRICS, "nll", "gap"):
            out[f"{metric}_{name}"] = frame[f"search_{metric}_{name}"]
    return out


def effort(frame: pd.DataFrame) -> pd.DataFrame:
    """Optimisation effort per estimator, from the stored rows: random starts per source
    network (first stage), blocks, share of fits whose restart rule stopped on its improvement
    test (not at its cap), L-BFGS-B iterations, share of fits converged to the tolerance, and
    median final projected gradient."""
    rows = []
    for name in ("multi", "single"):
        rows.append({"estimator": name,
                     "starts (mean)": float(frame[f"starts_{name}"].mean()),
                     "starts (min)": int(frame[f"starts_{name}"].min()),
                     "blocks (mean)": float(frame[f"blocks_{name}"].mean()),
                     "rule stopped": float(frame[f"rule_stopped_{name}"].mean())
                     if f"rule_stopped_{name}" in frame else np.nan,
                     "iterations (mean)": float(frame[f"iterations_{name}"].mean()),
                     "converged": float(frame[f"converged_{name}"].mean()),
                     "projected gradient (median)": float(
                         frame[f"projected_gradient_{name}"].median())})
    return pd.DataFrame(rows)


def equal_effort(frame: pd.DataFrame, minimum_starts: int, slack: float = 0.05) -> bool:
    """The claim that guards the comparison. The restart rule stops adaptively, so the two
    estimators need not use the same number of starts on one seed; the claim is that the
    single-source estimator got no less effort than the rule gives: every single-source fit
    used at least `minimum_starts` random starts per source network (the rule's minimum, as
    every multi-source fit did), its mean number of starts is at least 90 % of the
    multi-source mean, and its share of fits converged to the tolerance is not lower by more
    than `slack`."""
    enough = bool((frame[["starts_multi", "starts_single"]] >= minimum_starts).all().all())
    similar = frame.starts_single.mean() >= 0.9 * frame.starts_multi.mean()
    converged = frame.converged_single.mean() >= frame.converged_multi.mean() - slack
    return enough and bool(similar) and bool(converged)


def wilks_ratio(frame: pd.DataFrame) -> pd.DataFrame:
    """W / r of every fit (long format: estimator, rank, W / r), for the comparison with
    chi^2_r / r (mean 1, sd sqrt(2 / r))."""
    return pd.concat([pd.DataFrame({"estimator": name, "rank": frame[f"rank_{name}"],
                                    "n": frame["n"],
                                    "w_over_r": frame[f"wilks_statistic_{name}"]
                                    / frame[f"rank_{name}"]})
                      for name in ("multi", "single")], ignore_index=True)


def fisher_decomposition(frame: pd.DataFrame) -> pd.DataFrame:
    """Per setting: the Fisher TV ratio = sqrt(rank ratio) x leverage-spread factor.

    At first order E TV = (2 pi n)^(-1/2) sum_k p_Y(k) sum_x p(x|k) sqrt(h(x,k)), with leverage
    h = s^T I^+ s. Its p-weighted mean over (x, k) is tr(I^+ I) = r, the rank, so the constant
    is sqrt(r / (2 pi)) times phi = E sqrt(h) / sqrt(E h) <= 1, which measures how unevenly the
    leverage spreads over the states (phi = 1 when it is even). Each direction's eigenvalue
    cancels; the ratio of the two estimators is sqrt(r_multi / r_single) x phi_multi /
    phi_single. phi of every fit is fisher_tv sqrt(2 pi n / r)."""
    rows = []
    for (K, n, beta), group in frame.groupby(["K", "n", "beta_sim"], sort=True):
        phi = {name: (group[f"fisher_tv_{name}"]
                      * np.sqrt(2 * math.pi * group.n / group[f"rank_{name}"])).mean()
               for name in ("multi", "single")}
        fisher = group.fisher_tv_multi.mean() / group.fisher_tv_single.mean()
        rank = math.sqrt(group.rank_multi.mean() / group.rank_single.mean())
        rows.append({"K": K, "n": n, "beta_sim": beta, "fisher": fisher,
                     "sqrt rank ratio": rank, "phi multi": phi["multi"],
                     "phi single": phi["single"], "leverage factor": fisher / rank,
                     "count-based": float(group.theory_ratio.iloc[0])})
    return pd.DataFrame(rows)


def ratio_power(frame: pd.DataFrame, metric: str = "tv", alpha: float = 0.05,
                power: float = 0.8) -> pd.DataFrame:
    """Per setting, the minimum detectable effect on the ratio of mean risks: the paired t test
    of the linearised residuals multi - R single (R the measured ratio), in ratio units
    (divided by the mean single-source risk); `multisource.readings.power`."""
    from multisource.readings.power import mde_of
    rows = []
    for (K, n, beta), group in frame.groupby(["K", "n", "beta_sim"], sort=True):
        multi = group[f"{metric}_multi"].to_numpy()
        single = group[f"{metric}_single"].to_numpy()
        ratio = multi.mean() / single.mean()
        rows.append({"K": K, "n": n, "beta_sim": beta, "seeds": len(group),
                     "mde": mde_of(multi - ratio * single, alpha, power) / single.mean()})
    return pd.DataFrame(rows)


MOST_LIKELY = "most likely found"
"""The budget curve's label of the fits a chapter reads (`fit_choice.most_likely`)."""


def budget_curve(frame: pd.DataFrame, budgets: tuple[int, ...], metric: str = "tv",
                 level: float = 0.95) -> pd.DataFrame:
    """The ratio of mean risks against a fixed restart budget B (first B starts), on the seeds
    that ran the budget study, with the random search under the restart rule and the fits the
    frame holds (labelled `MOST_LIKELY`) on the same seeds."""
    have = frame[np.isfinite(frame[f"{metric}_R{budgets[-1]}_multi"])]
    rows = []
    for B in budgets:
        ratio, lo, hi = ratio_interval(have[f"{metric}_R{B}_multi"], have[f"{metric}_R{B}_single"],
                                       level)
        rows.append({"starts": str(B), "seeds": len(have), "ratio": ratio, "ratio_lo": lo,
                     "ratio_hi": hi,
                     "nll_multi": float(have[f"nll_R{B}_multi"].mean()),
                     "nll_single": float(have[f"nll_R{B}_single"].mean())})
    for label, prefix in (("rule", "search_"), (MOST_LIKELY, "")):
        ratio, lo, hi = ratio_interval(have[f"{prefix}{metric}_multi"],
                                       have[f"{prefix}{metric}_single"], level)
        rows.append({"starts": label, "seeds": len(have), "ratio": ratio, "ratio_lo": lo,
                     "ratio_hi": hi, "nll_multi": float(have[f"{prefix}nll_multi"].mean()),
                     "nll_single": float(have[f"{prefix}nll_single"].mean())})
    return pd.DataFrame(rows)


def budget_doubling(frame: pd.DataFrame, budgets: tuple[int, ...], tolerance: float
                    ) -> pd.DataFrame:
    """Per estimator and doubling of the restart budget (consecutive `budgets`), on the seeds
    of the budget study: how many fits the larger budget makes more likely by more than
    `tolerance` units of W, i.e. how often the smaller search had not found the best of the
    larger one."""
    have = frame[np.isfinite(frame[f"nll_R{budgets[-1]}_multi"])]
    rows = []
    for name in ("multi", "single"):
        for small, large in pairwise(budgets):
            gain = in_w(have, have[f"nll_R{small}_{name}"] - have[f"nll_R{large}_{name}"])
            rows.append({"estimator": name, "from": int(small), "to": int(large),
                         "fits": len(have), "improved": int((gain > tolerance).sum()),
                         "largest W": float(gain.max())})
    return pd.DataFrame(rows)


def budget_metrics(frame: pd.DataFrame, budgets: tuple[int, ...], level: float = 0.95
                   ) -> pd.DataFrame:
    """The restart-budget curve under every metric: per budget (and the maximum-likelihood
    fits), the ratio of mean risks with its interval half-width, TV, Hellinger and sqrt(KL)."""
    curves = {metric: budget_curve(frame, budgets, metric, level) for metric in METRICS}
    out = curves["tv"][["starts", "seeds"]].copy()
    for metric, curve in curves.items():
        out[metric] = curve.ratio.to_numpy()
        out[f"{metric} ±"] = ((curve.ratio_hi - curve.ratio_lo) / 2).to_numpy()
    return out[out.starts != "rule"].reset_index(drop=True)
