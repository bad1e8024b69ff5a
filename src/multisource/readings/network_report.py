"""Chapters 5 and 6's reading of one network sweep: every number, table and phrase the prose
quotes (`network_report`, `report_scalars`), built from the statistics of `sweep_stats` on the
most likely fit found per seed (`fit_choice.most_likely`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from multisource.readings.fit_choice import (
    calibration,
    fit_sources,
    has_most_likely,
    most_likely,
    selected_fits,
)
from multisource.readings.ratio_tests import paired_ratio_change, ratio_difference_t
from multisource.readings.sweep_stats import (
    METRICS,
    MOST_LIKELY,
    budget_curve,
    budget_doubling,
    budget_metrics,
    default_row,
    effort,
    equal_effort,
    fisher_decomposition,
    fresh_check,
    ratio_power,
    sensitivity,
    summarise,
    teacher_start,
    wilks_ratio,
)


def network_report(frame: pd.DataFrame, config: Any, level: float = 0.95) -> dict[str, Any]:
    """Everything chapters 5 and 6 say about one network sweep, as numbers and tables.

    Keys: `summary[metric]` (per-setting summaries), `tests[(metric, prediction)]` (paired
    bootstrap of measured minus predicted), `default[metric]` (the default setting: ratio,
    interval, Fisher and count-based predictions, paired t intervals, minimum detectable
    effect), `teacher`, `sensitivity`, `effort`, `equal_effort`, `calibration`, `wilks`,
    `decomposition`, `budget`, `fit_sources`, and scalars named in the chapters.

    The fits read are the most likely fit found per seed (`fit_choice.most_likely`: the rule,
    the teacher start, the fresh block and, where run, the largest restart budget, per source
    network for the single-source estimator); the sensitivity table adds the ratio of the
    selected fit (the rule's search or the teacher start, the more likely)."""
    frame = most_likely(frame)
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
    if has_most_likely(frame):
        selected = summarise(selected_fits(frame), level)
        out["sensitivity"]["ratio (selected fit)"] = out["sensitivity"][
            ["K", "n", "beta_sim"]].merge(selected, on=["K", "n", "beta_sim"],
                                          how="left").ratio.to_numpy()
        out["fit_sources"] = fit_sources(frame, config.teacher_tolerance)
        # the most likely fit already holds the fresh block's fit where it is more likely
        out["sensitivity"] = out["sensitivity"].drop(columns="ratio (with the fresh block)")
    else:
        out["fit_sources"] = None
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
    if "ratio (with the fresh block)" in sens:
        out["default_ratio_fresh"] = float(row["ratio (with the fresh block)"])
        out["fresh_max_move"] = float(np.nanmax(np.abs(sens["ratio (with the fresh block)"]
                                                       - sens.ratio)))
    out["sens_max_move"] = float(np.nanmax(np.abs(
        np.concatenate([sens["ratio (random search only)"] - sens.ratio,
                        sens["ratio (without flagged)"] - sens.ratio]))))
    calib = report["calibration"].set_index(["kind", "diagnostic"])
    for diagnostic in ("converged", "wilks"):
        for key, kind in (("", "both kinds"), ("search_", "random search (rule)"),
                          ("poor_", "under-converged reference")):
            out[f"{key}{diagnostic}_false_pass"] = 100 * float(
                calib.loc[(kind, diagnostic), "false pass"])
            out[f"{key}{diagnostic}_false_fail"] = 100 * float(
                calib.loc[(kind, diagnostic), "false fail"])
    for key, kind in (("", "both kinds"), ("search_", "random search (rule)"),
                      ("poor_", "under-converged reference")):
        out[f"{key}calib_bad"] = int(calib.loc[(kind, "converged"), "bad fits"])
        out[f"{key}calib_good"] = int(calib.loc[(kind, "converged"), "good fits"])
    if report["fit_sources"] is not None:
        sources = report["fit_sources"].set_index("estimator")
        for name in ("multi", "single"):
            out[f"best_rule_pct_{name}"] = 100 * float(sources.loc[name, "found by rule"])
            out[f"best_beats_fit_{name}"] = int(sources.loc[name, "beats the selected fit"])
            out[f"best_beats_fit_pct_{name}"] = 100 * out[f"best_beats_fit_{name}"] / len(frame)
            out[f"best_largest_w_{name}"] = float(
                sources.loc[name, "largest W over the selected fit"])
        out["default_ratio_selected"] = float(row["ratio (selected fit)"])
        out["selected_max_move"] = float(np.nanmax(np.abs(sens["ratio (selected fit)"]
                                                          - sens.ratio)))
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
        fixed = budget[~budget.starts.isin(["rule", MOST_LIKELY])]
        rule = budget[budget.starts == "rule"].iloc[0]
        out["budget_mle"] = float(budget[budget.starts == MOST_LIKELY].ratio.iloc[0])
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
