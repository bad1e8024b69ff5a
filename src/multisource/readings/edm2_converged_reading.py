"""Chapter 7's reading of the converged design (`experiments.edm2_converged`).

Every comparison is paired within a seed: the multi-source model of a group against the
single-source model of each of its classes, trained on the same images, scored on the same
held-out images (with the same likelihood noise) and judged at each arm's own snapshot. Per
seed the difference (multi - single) is taken for the anchor class and averaged over the K
classes of the group (the paper's K-class average); across seeds, a Student-t interval and the
minimum detectable effect at the design's seeds (`multisource.readings.power`). A difference whose
interval contains zero is "not detected at this power", never "no difference".
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from multisource.experiments.edm2_converged import (
    ARMS,
    Edm2ConvergedConfig,
    cap_steps,
    compared_groups,
    model_key,
    plateau_fires,
)
from multisource.readings.power import mde_of
from multisource.readings.sweep_stats import t_half_width

# metric -> (words, +1 when higher is better, -1 when lower is better)
METRICS: dict[str, tuple[str, int]] = {
    "nll_bits": ("held-out NLL bound (bits/dim)", -1),
    "fcd": ("FCD", -1),
    "accuracy": ("class-consistency accuracy", 1),
}
SCOPES = ("anchor", "K-average")


def extension_check(frame: pd.DataFrame, config: Edm2ConvergedConfig, z: float = 2.0
                    ) -> pd.DataFrame:
    """Per extended run (the cap came before its rule): what the base cap would have chosen,
    read off the run's own curve cut at that cap (the best snapshot up to it, whether the rule
    had fired there, and whether a rise beyond `z` standard errors confirmed that minimum, as
    `plateau_table` judges a capped run), against what the extended run found (rule fired,
    snapshot step). `same_snapshot` False on a confirmed minimum is a false pass of the
    confirmation check; `gain_bits` is how much lower the extended run's best bound is."""
    rows = scored(frame, "plateau")
    runs = rows.sort_values("class").groupby(["seed", "model"], sort=True).first().reset_index()
    runs = runs[runs["extended"].map(lambda v: str(v) == "True")]
    out = []
    for run in runs.itertuples():
        model = str(run.model)
        curve = _curve(frame, run.seed, model)
        cut = curve[curve["step"] <= cap_steps(config, int(run.K))]
        steps, values = list(cut["step"].astype(int)), list(cut["val_nll_bits"].astype(float))
        best = steps[int(np.argmin(values))]
        fired = plateau_fires(steps, values, config.plateau_tol_bits, config.plateau_factor,
                              config.plateau_patience, config.plateau_min_steps) is not None
        rise = _rise_z(cut, run.seed, model, float(best))
        out.append({"seed": run.seed, "model": model, "K": run.K,
                    "plateau_reached_base": fired,
                    "minimum_confirmed_base": fired or (math.isfinite(rise) and rise > z),
                    "rise_z_base": rise, "plateau_step_base": best,
                    "plateau_reached_extended": bool(run.plateau_reached),
                    "plateau_step_extended": run.plateau_step,
                    "same_snapshot": best == run.plateau_step,
                    "gain_bits": min(values) - _bound_at(frame, run.seed, model,
                                                         run.plateau_step)})
    return pd.DataFrame(out, columns=["seed", "model", "K", "plateau_reached_base",
                                      "minimum_confirmed_base", "rise_z_base",
                                      "plateau_step_base", "plateau_reached_extended",
                                      "plateau_step_extended", "same_snapshot", "gain_bits"])


def _bound_at(frame: pd.DataFrame, seed: Any, model: str, step: float) -> float:
    """The validation bound of one run at one evaluated step (NaN without curve rows)."""
    if "val_nll_bits" not in frame:
        return math.nan
    at = _curve(frame, seed, model)
    at = at[at["step"] == step]
    return float(at["val_nll_bits"].iloc[0]) if len(at) else math.nan


def _curve(frame: pd.DataFrame, seed: Any, model: str) -> pd.DataFrame:
    """The validation-curve rows of one run, by step."""
    return frame[(frame["kind"] == "curve") & (frame["seed"] == seed)
                 & (frame["model"].astype(str) == model)].sort_values("step")


def scored(frame: pd.DataFrame, arm: str) -> pd.DataFrame:
    """The scored rows (one per model, class and seed) of one arm's snapshot."""
    if arm not in ARMS:
        raise ValueError(f"arm must be one of {', '.join(ARMS)}, got {arm!r}")
    rows = frame[frame["kind"].isin(["multi", "single"])]
    return rows[rows[f"arm_{arm}"].astype(bool)]


def seed_differences(frame: pd.DataFrame, config: Edm2ConvergedConfig, arm: str,
                     metric: str) -> pd.DataFrame:
    """Per compared group (K > 1) and seed: the anchor's and the K-class average's multi -
    single difference of `metric`, with the single-source values they are relative to."""
    rows = scored(frame, arm)
    value = rows.assign(model=rows["model"].astype(str),
                        cls=rows["class"].astype(int)).set_index(["seed", "model", "cls"])[metric]
    out = []
    for point in compared_groups(config):
        classes = tuple(int(c) for c in point["classes"])
        if len(classes) < 2:
            continue
        multi_key = model_key(classes)
        for seed in sorted(rows["seed"].unique()):
            try:
                multi = np.array([value.loc[(seed, multi_key, c)] for c in classes], float)
                single = np.array([value.loc[(seed, model_key((c,)), c)] for c in classes],
                                  float)
            except KeyError:
                continue        # a seed without this arm's snapshot of every model
            diff = multi - single
            out.append({"sweep": point["sweep"], "setting": point["setting"], "K": len(classes),
                        "seed": int(seed), "anchor": float(diff[0]),
                        "K-average": float(diff.mean()), "single anchor": float(single[0]),
                        "single K-average": float(single.mean())})
    return pd.DataFrame(out)


def verdicts(frame: pd.DataFrame, config: Edm2ConvergedConfig, arms: tuple[str, ...] = ARMS,
             metrics: tuple[str, ...] = tuple(METRICS), level: float = 0.95) -> pd.DataFrame:
    """One row per arm, setting, metric and scope: seeds, mean single-source value, mean
    difference (multi - single) with its t interval, the minimum detectable effect (80% power,
    two-sided 5%), the MDE relative to the single-source value (FCD only: the likelihood bound
    has no natural zero), and the reading in words."""
    out = []
    for arm in arms:
        for metric in metrics:
            seeds = seed_differences(frame, config, arm, metric)
            if seeds.empty:
                continue
            for (sweep, setting), group in seeds.groupby(["sweep", "setting"], sort=False):
                for scope in SCOPES:
                    diff = group[scope].to_numpy(float)
                    single = float(group[f"single {scope}"].mean())
                    half = t_half_width(diff, level) if diff.size >= 2 else math.nan
                    mde = mde_of(diff)
                    out.append({"arm": arm, "sweep": sweep, "setting": setting,
                                "K": int(group["K"].iloc[0]), "metric": metric, "scope": scope,
                                "seeds": int(diff.size), "single": single,
                                "diff": float(diff.mean()), "low": float(diff.mean() - half),
                                "high": float(diff.mean() + half), "mde": mde,
                                "mde_rel": mde / abs(single) if metric == "fcd" else math.nan,
                                "reading": reading(metric, float(diff.mean() - half),
                                                   float(diff.mean() + half))})
    return pd.DataFrame(out)


def reading(metric: str, low: float, high: float) -> str:
    """'multi better', 'single better' or 'not detected' from an interval of multi - single."""
    if not (math.isfinite(low) and math.isfinite(high)) or low <= 0.0 <= high:
        return "not detected"
    multi_higher = low > 0.0
    higher_is_better = METRICS[metric][1] > 0
    return "multi better" if multi_higher == higher_is_better else "single better"


def plateau_table(frame: pd.DataFrame, z: float = 2.0) -> pd.DataFrame:
    """Per model and seed: the plateau arm's step (the best validation bound), the cap, whether
    the stopping rule fired (`plateau_reached`; False: the model stopped at its cap), and
    whether the best validation bound lies before the run's last evaluation
    (`minimum_inside`: the bound was worse at every later evaluation, so the run passed its
    minimum even where the rule had no evaluation left to confirm it).

    `rise_z`: how far the bound at the run's last evaluation lies above its best, in standard
    errors (NaN where the best is the last evaluation, or no curve rows are given). The
    standard error is a conservative bound: the sum of the paired standard errors of the
    changes between consecutive evaluations from the best to the last (the SD of a sum is at
    most the sum of the SDs). `minimum_confirmed`: the rule fired, or `rise_z` > `z`: a rise
    that evaluation noise does not explain, so the chosen snapshot is a real minimum."""
    rows = scored(frame, "plateau")
    first = rows.sort_values("class").groupby(["seed", "model"], sort=True).first().reset_index()
    last = np.where(first["plateau_reached"].astype(bool), first["stop_step"], first["cap_step"])
    first["minimum_inside"] = first["plateau_step"].to_numpy(float) < last.astype(float)
    first["rise_z"] = [_rise_z(frame, row.seed, str(row.model), float(row.plateau_step))
                       for row in first.itertuples()]
    first["minimum_confirmed"] = (first["plateau_reached"].astype(bool)
                                  | (first["rise_z"].fillna(-math.inf) > z))
    return first[["seed", "model", "K", "plateau_reached", "minimum_inside", "rise_z",
                  "minimum_confirmed", "plateau_step", "cap_step"]]


def _rise_z(frame: pd.DataFrame, seed: Any, model: str, best_step: float) -> float:
    """(bound at the last evaluation - bound at `best_step`) / (sum of the paired standard
    errors of the changes after `best_step`); NaN without a later evaluation."""
    if "val_nll_bits" not in frame:
        return math.nan
    curve = _curve(frame, seed, model)
    at_best = curve[curve["step"] == best_step]
    after = curve[curve["step"] > best_step]
    if at_best.empty or after.empty:
        return math.nan
    se = float(after["val_change_se"].sum())
    rise = float(after["val_nll_bits"].iloc[-1] - at_best["val_nll_bits"].iloc[0])
    return rise / se if se > 0 else math.nan


def capped_models(frame: pd.DataFrame) -> list[str]:
    """The models (by key) that stopped at their cap in at least one seed."""
    table = plateau_table(frame)
    return sorted(set(table.loc[~table.plateau_reached.astype(bool), "model"].astype(str)))


def comparison_reached(frame: pd.DataFrame, config: Edm2ConvergedConfig) -> pd.DataFrame:
    """Per compared group: whether every model it compares (the multi-source model and each
    class's single-source model) fired its stopping rule in every seed (`all reached`, with
    the ones that did not in `capped`), whether every one passed its validation minimum
    (`all minima inside`, with the ones still improving at their cap in `improving`), and
    whether every one's minimum is confirmed (`all confirmed`: the rule fired or the bound
    rose beyond noise after it; the others in `unconfirmed`)."""
    table = plateau_table(frame).assign(model=lambda t: t.model.astype(str))
    reached = table.groupby("model").plateau_reached.all()
    inside = table.groupby("model").minimum_inside.all()
    confirmed = table.groupby("model").minimum_confirmed.all()
    out = []
    for point in compared_groups(config):
        classes = tuple(int(c) for c in point["classes"])
        if len(classes) < 2:
            continue
        models = [model_key(classes)] + [model_key((c,)) for c in classes]
        capped = [m for m in models if not bool(reached.get(m, False))]
        improving = [m for m in models if not bool(inside.get(m, False))]
        unconfirmed = [m for m in models if not bool(confirmed.get(m, False))]
        out.append({"sweep": point["sweep"], "setting": point["setting"],
                    "all reached": not capped, "capped": ", ".join(capped),
                    "all minima inside": not improving, "improving": ", ".join(improving),
                    "all confirmed": not unconfirmed, "unconfirmed": ", ".join(unconfirmed)})
    return pd.DataFrame(out)


def summary_numbers(table: pd.DataFrame) -> dict[str, Any]:
    """Counts the chapter quotes: per metric and scope at the plateau arm, how many settings
    read 'multi better', 'single better' and 'not detected'."""
    out: dict[str, Any] = {}
    for (arm, metric, scope), group in table.groupby(["arm", "metric", "scope"]):
        key = f"{arm}_{metric}_{scope.replace('-', '_').lower()}"
        for word in ("multi better", "single better", "not detected"):
            out[f"{key}_{word.replace(' ', '_')}"] = int((group.reading == word).sum())
        out[f"{key}_settings"] = len(group)
    return out


def seed_task_seconds(frame: pd.DataFrame) -> float:
    """The seeds' compute time as their own clocks report it (`task_wall_s`, which counts every
    segment of a seed resumed from its training checkpoint), summed over seeds; 0 when the table
    carries no such column. The run's record counted only the last segment of a resumed seed
    before the runner learned to read this field."""
    if "task_wall_s" not in frame.columns:
        return 0.0
    per_seed = frame.dropna(subset=["task_wall_s"]).groupby("seed")["task_wall_s"].max()
    return float(per_seed.sum())
