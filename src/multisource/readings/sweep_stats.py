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
from multisource.readings.ratio_tests import paired_ratio_change, ratio_difference_t


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


def most_likely(frame: pd.DataFrame) -> pd.DataFrame:
    """The same sweep with every fit replaced by the most likely fit any search found for its
    seed (`best_*` columns: the restart rule, the largest fixed budget, the fresh block and
    the start at the teacher; per source network for the single-source estimator). Rows
    stored before those columns existed keep their fits."""
    out = frame.copy()
    for name in ("multi", "single"):
        if f"best_nll_{name}" not in frame:
            continue
        have = frame[f"best_nll_{name}"].notna()
        for metric in (*METRICS, "nll", "gap"):
            out[f"{metric}_{name}"] = np.where(have, frame[f"best_{metric}_{name}"],
                                               frame[f"{metric}_{name}"])
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


def calibration(frame: pd.DataFrame, tolerance: float) -> pd.DataFrame:
    """Error rates of two diagnostics on fits of known quality.

    The fits: every maximum-likelihood fit, every random-search fit, and every deliberately
    under-converged reference fit (one random start stopped after a short run). A fit is
    "good" when its mean NLL is within `tolerance` units of W of the best known for that data
    (random search, teacher start, fresh block and reference fit), "bad" otherwise.
    Diagnostics: `converged` (final projected gradient within the fit's tolerance) and the old
    Wilks lower-quantile test.
    Returns per diagnostic: bad fits, good fits, false-pass rate (bad fits passing) and
    false-fail rate (good fits failing)."""
    pgtol = frame.attrs.get("tolerance")
    parts = []
    for name in ("multi", "single"):
        for kind, gap, pg, wilks in (
                ("maximum likelihood", "fit_gap_to_best", "projected_gradient", "wilks_pass"),
                ("random search", "search_gap_to_best", "search_projected_gradient",
                 "search_wilks_pass"),
                ("under-converged", "poor_gap", "poor_projected_gradient", "poor_wilks_pass")):
            parts.append(pd.DataFrame({
                "estimator": name, "fit": kind,
                "bad": in_w(frame, frame[f"{gap}_{name}"]) > tolerance,
                "converged": frame[f"{pg}_{name}"] <= pgtol,
                "wilks": frame[f"{wilks}_{name}"].astype(bool)}))
    fits = pd.concat(parts, ignore_index=True)
    rows = []
    for diagnostic in ("converged", "wilks"):
        bad, good = fits[fits.bad], fits[~fits.bad]
        rows.append({"diagnostic": diagnostic, "bad fits": len(bad), "good fits": len(good),
                     "false pass": float(bad[diagnostic].mean()) if len(bad) else np.nan,
                     "false fail": float((~good[diagnostic]).mean()) if len(good) else np.nan})
    return pd.DataFrame(rows)


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


def budget_curve(frame: pd.DataFrame, budgets: tuple[int, ...], metric: str = "tv",
                 level: float = 0.95) -> pd.DataFrame:
    """The ratio of mean risks against a fixed restart budget B (first B starts), on the seeds
    that ran the budget study, with the random search under the restart rule and the
    maximum-likelihood fits on the same seeds."""
    have = frame[np.isfinite(frame[f"{metric}_R{budgets[-1]}_multi"])]
    rows = []
    for B in budgets:
        ratio, lo, hi = ratio_interval(have[f"{metric}_R{B}_multi"], have[f"{metric}_R{B}_single"],
                                       level)
        rows.append({"starts": str(B), "seeds": len(have), "ratio": ratio, "ratio_lo": lo,
                     "ratio_hi": hi,
                     "nll_multi": float(have[f"nll_R{B}_multi"].mean()),
                     "nll_single": float(have[f"nll_R{B}_single"].mean())})
    for label, prefix in (("rule", "search_"), ("maximum likelihood", "")):
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


def network_report(frame: pd.DataFrame, config: Any, level: float = 0.95) -> dict[str, Any]:
    """Everything chapters 5 and 6 say about one network sweep, as numbers and tables.

    Keys: `summary[metric]` (per-setting summaries), `tests[(metric, prediction)]` (paired
    bootstrap of measured minus predicted), `default[metric]` (the default setting: ratio,
    interval, Fisher and count-based predictions, paired t intervals, minimum detectable
    effect), `teacher`, `sensitivity`, `effort`, `equal_effort`, `calibration`, `wilks`,
    `decomposition`, `budget`, and scalars named in the chapters."""
    frame = frame.copy()
    frame.attrs["tolerance"] = config.tolerance
    out: dict[str, Any] = {"summary": {}, "tests": {}, "default": {}}
    for metric in METRICS:
        summary = summarise(frame, level, metric)
        out["summary"][metric] = summary
        for prediction in ("fisher", "count"):
            out["tests"][(metric, prediction)] = ratio_difference_t(
                frame, metric, prediction, level)
        row = default_row(summary, config)
        at = ((config.K_default == out["tests"][(metric, "fisher")].K)
              & (out["tests"][(metric, "fisher")].n == config.n_default)
              & np.isclose(out["tests"][(metric, "fisher")].beta_sim, config.beta_default))
        fisher_test = out["tests"][(metric, "fisher")][at].iloc[0]
        count_test = out["tests"][(metric, "count")][at].iloc[0]
        power = ratio_power(frame, metric)
        mde = float(power[at.to_numpy()].mde.iloc[0])
        out["default"][metric] = {
            "ratio": float(row.ratio), "lo": float(row.ratio_lo), "hi": float(row.ratio_hi),
            "fisher": float(row.fisher), "count": float(row.theory), "seeds": int(row.seeds),
            "fisher_lo": float(fisher_test.lo), "fisher_hi": float(fisher_test.hi),
            "fisher_rejects": bool(fisher_test.rejects),
            "count_lo": float(count_test.lo), "count_hi": float(count_test.hi),
            "count_rejects": bool(count_test.rejects), "mde": mde}
    out["teacher"] = teacher_start(frame, config.teacher_tolerance)
    out["fresh"] = fresh_check(frame, config.teacher_tolerance)
    out["sensitivity"] = sensitivity(frame, config.teacher_tolerance, level)
    out["effort"] = effort(frame)
    out["equal_effort"] = equal_effort(frame, config.minimum_starts)
    out["calibration"] = calibration(frame, config.teacher_tolerance)
    out["wilks"] = wilks_ratio(frame)
    out["decomposition"] = fisher_decomposition(frame)
    has_budget = f"tv_R{config.budgets[-1]}_multi" in frame and np.isfinite(
        frame[f"tv_R{config.budgets[-1]}_multi"]).sum() >= 2
    out["budget"] = budget_curve(frame, config.budgets, "tv", level) if has_budget else None
    out["budget_metrics"] = budget_metrics(frame, config.budgets, level) if has_budget else None
    out["doubling"] = (budget_doubling(frame, config.budgets, config.teacher_tolerance)
                       if has_budget else None)
    return out


def report_scalars(report: dict[str, Any], config: Any, frame: pd.DataFrame) -> dict[str, Any]:
    """The scalars of `network_report` that the chapters' prose quotes, by name."""
    out: dict[str, Any] = {
        "seeds": int(config.seeds), "seeds_default": int(max(config.seeds,
                                                             config.seeds_default)),
        "budget_seeds": int(config.budget_seeds), "restarts": int(config.restarts),
        "max_blocks": int(config.max_blocks), "max_starts": int(config.restarts
                                                               * config.max_blocks),
        "screen": int(config.rule(1).screen), "steps": int(config.steps),
        "min_starts": int(config.minimum_starts),
        "tolerance": float(config.tolerance), "improvement": float(config.improvement),
        "teacher_tol": float(config.teacher_tolerance), "poor_steps": int(config.poor_steps),
        "wilks_alpha": float(config.wilks_alpha), "fits_each": len(frame),
        "settings": len(report["summary"]["tv"]),
        "equal_effort": bool(report["equal_effort"]),
        "budget_list": ", ".join(str(b) for b in config.budgets),
    }
    teacher = report["teacher"].set_index("estimator")
    effort_table = report["effort"].set_index("estimator")
    fresh = report["fresh"].set_index("estimator")
    for name in ("multi", "single"):
        out[f"improved_{name}"] = int(teacher.loc[name, "search improved"])
        out[f"improved_pct_{name}"] = 100 * float(teacher.loc[name, "share improved"])
        out[f"largest_w_{name}"] = float(teacher.loc[name, "largest W"])
        out[f"teacher_selected_pct_{name}"] = 100 * float(
            teacher.loc[name, "teacher start selected"])
        out[f"fresh_improved_{name}"] = int(fresh.loc[name, "improved"])
        out[f"fresh_improved_pct_{name}"] = 100 * float(fresh.loc[name, "share improved"])
        out[f"fresh_not_improved_pct_{name}"] = 100 - out[f"fresh_improved_pct_{name}"]
        out[f"fresh_largest_w_{name}"] = float(fresh.loc[name, "largest W"])
        out[f"converged_pct_{name}"] = 100 * float(effort_table.loc[name, "converged"])
        out[f"starts_{name}"] = float(effort_table.loc[name, "starts (mean)"])
        out[f"rule_stopped_pct_{name}"] = 100 * float(effort_table.loc[name, "rule stopped"])
        out[f"iterations_{name}"] = float(effort_table.loc[name, "iterations (mean)"])
        w = report["wilks"][report["wilks"].estimator == name].w_over_r
        out[f"w_over_r_{name}"] = float(w.mean())
        out[f"at_bound_pct_{name}"] = 100 * float((frame[f"at_bound_{name}"] > 0).mean())
    out["target_met"] = min(out["fresh_not_improved_pct_multi"],
                            out["fresh_not_improved_pct_single"]) >= 95
    # the target for the random search: a start at the teacher improves at most 5 %
    out["teacher_target_met"] = max(out["improved_pct_multi"], out["improved_pct_single"]) <= 5
    out["fresh_largest_w"] = float(fresh["largest W"].max())
    known_off = int(fresh["known off"].sum())
    out["fresh_known_off"] = known_off
    out["fresh_detected"] = int(fresh["detected"].sum())
    out["fresh_detection_pct"] = (100 * out["fresh_detected"] / known_off if known_off
                                  else float("nan"))
    at = ((config.K_default == frame.K) & (frame.n == config.n_default)
          & np.isclose(frame.beta_sim, config.beta_default))
    sens = report["sensitivity"]
    row = sens[(config.K_default == sens.K) & (sens.n == config.n_default)
               & np.isclose(sens.beta_sim, config.beta_default)].iloc[0]
    out["default_flagged"] = int(row.flagged)
    out["default_ratio_without"] = float(row["ratio (without flagged)"])
    out["default_ratio_search"] = float(row["ratio (random search only)"])
    out["default_ratio_fresh"] = float(row["ratio (with the fresh block)"])
    out["fresh_max_move"] = float(np.nanmax(np.abs(sens["ratio (with the fresh block)"]
                                                   - sens.ratio)))
    out["sens_max_move"] = float(np.nanmax(np.abs(
        np.concatenate([sens["ratio (random search only)"] - sens.ratio,
                        sens["ratio (without flagged)"] - sens.ratio]))))
    calib = report["calibration"].set_index("diagnostic")
    for diagnostic in ("converged", "wilks"):
        out[f"{diagnostic}_false_pass"] = 100 * float(calib.loc[diagnostic, "false pass"])
        out[f"{diagnostic}_false_fail"] = 100 * float(calib.loc[diagnostic, "false fail"])
    out["calib_bad"] = int(calib.loc["converged", "bad fits"])
    out["calib_good"] = int(calib.loc["converged", "good fits"])
    out["poor_wilks_pass_pct"] = 100 * float(pd.concat(
        [frame.poor_wilks_pass_multi, frame.poor_wilks_pass_single]).mean())
    decomposition = report["decomposition"]
    d = decomposition[(config.K_default == decomposition.K)
                      & (decomposition.n == config.n_default)
                      & np.isclose(decomposition.beta_sim, config.beta_default)].iloc[0]
    out["dec_fisher"] = float(d.fisher)
    out["dec_rank"] = float(d["sqrt rank ratio"])
    out["dec_leverage"] = float(d["leverage factor"])
    out["dec_phi_multi"] = float(d["phi multi"])
    out["dec_phi_single"] = float(d["phi single"])
    out["rank_multi"] = float(frame.rank_multi[at].mean())
    out["rank_single"] = float(frame.rank_single[at].mean())
    for metric, values in report["default"].items():
        for key, value in values.items():
            out[f"default_{metric}_{key}"] = value
    for (metric, prediction), tests in report["tests"].items():
        out[f"rejects_{metric}_{prediction}"] = int(tests.rejects_holm.sum())
        out[f"rejects_raw_{metric}_{prediction}"] = int(tests.rejects.sum())
    if report["budget"] is not None:
        budget = report["budget"]
        fixed = budget[~budget.starts.isin(["rule", "maximum likelihood"])]
        rule = budget[budget.starts == "rule"].iloc[0]
        out["budget_mle"] = float(budget[budget.starts == "maximum likelihood"].ratio.iloc[0])
        out["budget_last"] = float(fixed.ratio.iloc[-1])
        out["budget_before_last"] = float(fixed.ratio.iloc[-2])
        out["budget_last_starts"] = int(fixed.starts.iloc[-1])
        out["budget_before_last_starts"] = int(fixed.starts.iloc[-2])
        out["budget_first"] = float(fixed.ratio.iloc[0])
        out["budget_first_starts"] = int(fixed.starts.iloc[0])
        out["budget_rule"] = float(rule.ratio)
        out["budget_last_half"] = float((fixed.ratio_hi.iloc[-1] - fixed.ratio_lo.iloc[-1]) / 2)
        move = paired_ratio_change(frame, f"R{out['budget_before_last_starts']}",
                                   f"R{out['budget_last_starts']}")
        out.update({f"budget_move_{k}" if k != "change" else "budget_move": v
                    for k, v in move.items()})
        doubling = report["doubling"]
        last = doubling[doubling["to"] == doubling["to"].max()].set_index("estimator")
        for name in ("multi", "single"):
            out[f"doubling_improved_{name}"] = int(last.loc[name, "improved"])
            out[f"doubling_largest_w_{name}"] = float(last.loc[name, "largest W"])
        out["doubling_fits"] = int(last["fits"].iloc[0])
    return out


def supports(defaults: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Per metric, which prediction the default-setting bootstrap tests reject, in words."""
    words = {(False, True): "fails to reject the Fisher prediction and rejects the count-based "
                            "ratio",
             (False, False): "rejects neither the Fisher prediction nor the count-based ratio",
             (True, False): "rejects the Fisher prediction and fails to reject the count-based "
                            "ratio",
             (True, True): "rejects both the Fisher prediction and the count-based ratio"}
    return {metric: words[(bool(d["fisher_rejects"]), bool(d["count_rejects"]))]
            for metric, d in defaults.items()}


def budget_settled(numbers: dict[str, Any]) -> bool:
    """Whether the restart-budget curve has stopped moving: the paired per-seed change of the
    ratio over the last doubling has a t interval that contains zero. (Comparing the move with
    the half-width of one budget's interval would mostly measure teacher-to-teacher spread,
    which pairing removes.)"""
    return bool(numbers["budget_move_lo"] <= 0.0 <= numbers["budget_move_hi"])


def budget_phrase(numbers: dict[str, Any]) -> str:
    """`budget_settled`, in words, with the paired interval (and its MDE when no move is
    detected)."""
    if "budget_last" not in numbers:
        return "cannot be compared (no budget study at this profile)"
    interval = (f"{numbers['budget_move']:+.4f} [{numbers['budget_move_lo']:+.4f}, "
                f"{numbers['budget_move_hi']:+.4f}], paired over {numbers['budget_move_seeds']} "
                f"seeds")
    if budget_settled(numbers):
        return (f"moves by {interval}: no drift detected, though the design detects a move of "
                f"{numbers['budget_move_mde']:.4f} only with 80% power")
    return (f"still moves by {interval}: the ratio is still drifting, so more starts would "
            f"change it")


def search_phrase(numbers: dict[str, Any]) -> str:
    """Whether the random search meets the target: a start at the teacher improves at most 5 %
    of each estimator's fits by more than the tolerance."""
    shares = (f"{numbers['improved_pct_multi']:.1f}% of the multi-source and "
              f"{numbers['improved_pct_single']:.1f}% of the single-source fits")
    if numbers["teacher_target_met"]:
        return f"met: the start at the teacher improves {shares}"
    return f"not met: the start at the teacher improves {shares}"


def miss_phrase(numbers: dict[str, Any]) -> str:
    """The largest miss of the random search (teacher start better by that many W), in words;
    no miss when every difference is within the tolerance."""
    if numbers["improved_multi"] + numbers["improved_single"] == 0:
        return "no fit of either estimator is missed by more than the tolerance"
    return (f"the largest miss is {numbers['largest_w_multi']:.1f} units of W for a "
            f"multi-source fit and {numbers['largest_w_single']:.1f} for a single-source fit")


def fresh_phrase(numbers: dict[str, Any]) -> str:
    """How often the independent block improves the selected fits, in words."""
    worst = max(numbers["fresh_improved_pct_multi"], numbers["fresh_improved_pct_single"])
    if worst == 0:
        return "No selected fit fails it."
    return (f"Selected fits fail it in up to {worst:.0f}% of an estimator's fits, by up to "
            f"{numbers['fresh_largest_w']:.1f} units of W: a search of this size does not find "
            f"the highest optimum every time.")


def detection_phrase(numbers: dict[str, Any]) -> str:
    """The fresh block's measured detection rate on fits known to be off, in words."""
    off, caught = numbers["fresh_known_off"], numbers["fresh_detected"]
    if off == 0:
        return ("no random-search fit is known to be off, so the detection rate cannot be "
                "measured on this sweep")
    caveat = " (with so few fits known to be off, this rate is imprecise)" if off < 20 else ""
    return f"the fresh block catches {caught} of those {off} ({100 * caught / off:.0f}%){caveat}"


def doubling_phrase(numbers: dict[str, Any]) -> str:
    """What the last doubling of the restart budget does to the likelihood of the fits."""
    if "doubling_fits" not in numbers:
        return "cannot be measured at this profile (no budget study)"
    fits = numbers["doubling_fits"]
    multi, single = numbers["doubling_improved_multi"], numbers["doubling_improved_single"]
    if multi == 0 and single == 0:
        return (f"makes none of the {fits} fits of either estimator more likely by more than "
                f"the tolerance")
    return (f"still makes {multi} of {fits} multi-source and {single} of {fits} single-source "
            f"fits more likely by more than the tolerance (by up to "
            f"{max(numbers['doubling_largest_w_multi'], numbers['doubling_largest_w_single']):.1f}"
            f" units of W): the fits are not proven maximisers")


def metric_phrase(numbers: dict[str, Any]) -> str:
    """Which part of the gap between the TV ratio and the count-based ratio is the metric."""
    count = numbers["default_tv_count"]
    tv_gap = numbers["default_tv_ratio"] - count
    hel_gap = numbers["default_hellinger_ratio"] - count
    if abs(hel_gap) < abs(tv_gap):
        return (f"The gap to the count-based ratio shrinks from {tv_gap:+.3f} under TV to "
                f"{hel_gap:+.3f} under Hellinger: {100 * (1 - abs(hel_gap) / abs(tv_gap)):.0f}% "
                f"of it is the metric.")
    return (f"The gap to the count-based ratio is {tv_gap:+.3f} under TV and {hel_gap:+.3f} "
            f"under Hellinger: here the metric does not explain it.")
