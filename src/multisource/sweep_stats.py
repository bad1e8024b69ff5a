"""Per-setting summaries of a Figure-1 sweep: Student-t intervals over seeds (chapters 5-6).

Every seed redraws the truth and the data, and both estimators are fitted on the same data, so
the seeds of a setting are independent pairs (multi, single). Means get Student-t intervals;
the ratio of mean risks gets a t interval from its linearisation (the delta method for a ratio
of paired means): with R = mean(multi) / mean(single) and residuals r_i = multi_i - R single_i,
se(R) = sd(r) / (sqrt(S) mean(single)).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import t as student_t

from multisource.validation import InputError, check_float


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


def summarise(frame: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """One row per (K, n, beta_sim): seeds; mean risks with t intervals; the paired difference
    single - multi with its t interval; the ratio of means with its t interval; the count-based
    ratio sqrt(1 - (K-1)/K beta_sim); and, when the frame has Fisher predictions, the predicted
    mean risks, their ratio and the measured ratio's deviation from each prediction. A setting
    with a single seed gets NaN interval bounds."""
    rows: list[dict[str, Any]] = []
    for (K, n, beta), group in frame.groupby(["K", "n", "beta_sim"], sort=True):
        multi, single = group.tv_multi.to_numpy(), group.tv_single.to_numpy()
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
        if "fisher_tv_multi" in group:
            row["fisher_multi"] = group.fisher_tv_multi.mean()
            row["fisher_single"] = group.fisher_tv_single.mean()
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


def certificates(frame: pd.DataFrame) -> pd.DataFrame:
    """Per estimator: fits, the share passing Wilks' test and the teacher-start check (after
    refits), how many were refitted, and the mean NLL gap against the mean Wilks gap."""
    rows = []
    for name in ("multi", "single"):
        rows.append({
            "estimator": name, "fits": len(frame),
            "wilks_pass": frame[f"wilks_pass_{name}"].mean(),
            "teacher_pass": frame[f"teacher_pass_{name}"].mean(),
            "both_pass": (frame[f"wilks_pass_{name}"] & frame[f"teacher_pass_{name}"]).mean(),
            "refitted": (frame[f"refits_{name}"] > 0).mean(),
            "gap": frame[f"gap_{name}"].mean(), "wilks_gap": frame[f"wilks_gap_{name}"].mean(),
            "largest_hidden": frame[f"max_hidden_{name}"].max(),
            "largest_output": frame[f"max_output_{name}"].max()})
    return pd.DataFrame(rows)


def gaps_by_setting(frame: pd.DataFrame) -> pd.DataFrame:
    """Per setting and estimator: mean NLL gap to the teacher, Wilks' -rank/(2n), the ratio of
    the two, the teacher-start gap and the share of fits passing the certificate."""
    rows = []
    for (K, n, beta), group in frame.groupby(["K", "n", "beta_sim"], sort=True):
        for name in ("multi", "single"):
            gap, wilks = group[f"gap_{name}"].mean(), group[f"wilks_gap_{name}"].mean()
            rows.append({"K": K, "n": n, "beta_sim": beta, "estimator": name, "gap": gap,
                         "wilks_gap": wilks, "gap_over_wilks": gap / wilks,
                         "teacher_start_gap": group[f"teacher_start_gap_{name}"].mean(),
                         "pass": (group[f"wilks_pass_{name}"]
                                  & group[f"teacher_pass_{name}"]).mean()})
    return pd.DataFrame(rows)


def best_known(frame: pd.DataFrame) -> pd.DataFrame:
    """The same sweep with every fit replaced by the start-from-teacher fit where that one
    reached a higher training likelihood: the best maximiser found, by an oracle (a check on the
    optimiser, not an estimator)."""
    out = frame.copy()
    for name in ("multi", "single"):
        better = frame[f"teacher_start_gap_{name}"] < frame[f"gap_{name}"]
        out[f"tv_{name}"] = np.where(better, frame[f"teacher_start_tv_{name}"],
                                     frame[f"tv_{name}"])
        out[f"gap_{name}"] = np.minimum(frame[f"teacher_start_gap_{name}"], frame[f"gap_{name}"])
    return out
