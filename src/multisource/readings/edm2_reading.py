"""Reading chapter 7's stored results: verdicts with power, budgets, stopping and selection.

The miniature experiment (`multisource.experiments.edm2_miniature`) stores one row per
evaluated snapshot and class. This module only reads that table: it adds to every paired
verdict the minimum detectable effect of the design (`multisource.readings.power`), puts the budget
arms' steps and per-class exposure side by side, counts which runs met the stopping rule, and
measures how strongly arm (c)'s snapshot selection couples to the held-out score. It lives
outside the experiment's code closure on purpose: changing it cannot make the stored results
stale.

Conventions: a difference is multi-source minus single-source, per seed, paired; a verdict is
significant when the 95 % Student-t interval over seeds excludes zero, and otherwise reads
"not detected at this power", next to the effect the design detects with 80 % power.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from multisource.common.validation import check_choice, check_float, check_int
from multisource.experiments import edm2_miniature as exp
from multisource.readings.power import mde_of, minimum_detectable_effect, seeds_for_mde

BETTER = "multi-source better"
WORSE = "single-source better"
NOT_DETECTED = "not detected at this power"


def verdicts(frame: pd.DataFrame, config: exp.Edm2MiniatureConfig, metric: str = "fcd",
             scope: str = "anchor", lower_is_better: bool = True,
             arms: tuple[str, ...] = exp.ARMS, alpha: float = 0.05,
             power: float = 0.8) -> pd.DataFrame:
    """One row per sweep point (K > 1) and arm: the paired difference multi - single of
    `metric` with its 95 % t-interval (`exp.difference_summary`), the SD of the per-seed
    differences, the minimum detectable effect at the design's seeds (`mde`, in the metric's
    units, and `mde_frac`, as a fraction of the single-source mean) and the verdict.

    `lower_is_better` says which sign is a gain for multi-source (FCD: lower; accuracy:
    higher). Points where a metric is missing for some seeds keep the seeds that have it
    (`seeds` says how many).
    """
    check_choice("scope", scope, ("anchor", "average"))
    for arm in arms:
        check_choice("arm", arm, exp.ARMS)
    paired = exp.paired_differences(frame, config, metric=metric, scope=scope)
    paired = paired[paired["arm"].isin(arms) & (paired["K"] > 1)]
    summary = exp.difference_summary(paired)
    if summary.empty:
        return summary
    groups = paired.groupby(["sweep", "setting", "arm"], sort=False)["diff"]
    sd = groups.std(ddof=1)
    mde = groups.apply(lambda d: mde_of(d.to_numpy(), alpha=alpha, power=power))
    keys = list(zip(summary["sweep"], summary["setting"], summary["arm"], strict=True))
    summary["sd"] = [float(sd[k]) for k in keys]
    summary["mde"] = [float(mde[k]) for k in keys]
    summary["mde_frac"] = summary["mde"] / summary["single"].abs()
    gain = summary["high"] < 0 if lower_is_better else summary["low"] > 0
    loss = summary["low"] > 0 if lower_is_better else summary["high"] < 0
    summary["verdict"] = np.select([gain, loss], [BETTER, WORSE], default=NOT_DETECTED)
    return summary


def sd_interval(sd: float, seeds: int, level: float = 0.95) -> tuple[float, float]:
    """Two-sided chi-square confidence interval of a normal SD estimated from `seeds` values."""
    seeds = check_int("seeds", seeds, minimum=2)
    level = check_float("level", level, minimum=0.5, maximum=0.999)
    df = seeds - 1
    upper_q = stats.chi2.ppf(0.5 + level / 2, df)
    lower_q = stats.chi2.ppf(0.5 - level / 2, df)
    return float(sd * math.sqrt(df / upper_q)), float(sd * math.sqrt(df / lower_q))


def model_costs(frame: pd.DataFrame) -> pd.DataFrame:
    """Recorded CPU seconds of every trained model (one row per model and seed).

    `task_cpu_s` is the CPU time of a task's last segment; a task resumed after an
    interruption records only that segment, while its snapshots record the whole training time
    (`train_s`, cumulative) and a resumed task re-evaluates every snapshot (`eval_s`). The cost
    is the larger of `task_cpu_s` and `train_s + eval_s`.
    """
    models = frame[frame["kind"].isin(["single", "multi"])]
    per = models.groupby(["model", "seed"], as_index=False).agg(
        kind=("kind", "first"), K=("K", "first"), n=("n", "first"),
        task_cpu_s=("task_cpu_s", "max"), train_s=("train_s", "max"), eval_s=("eval_s", "max"))
    per["cpu_s"] = np.maximum(per["task_cpu_s"], per["train_s"] + per["eval_s"])
    per["K"] = per["K"].astype(int)
    per["n"] = per["n"].astype(int)
    return per


def seeds_to_reach(sd: float, single: float, seeds_now: int, target_frac: float = 0.10,
                   cpu_s_per_seed: float = 0.0, alpha: float = 0.05,
                   power: float = 0.8) -> dict[str, float]:
    """How many seeds bring the minimum detectable effect down to `target_frac` x `single`,
    with the range implied by the 95 % interval of the SD (itself estimated from `seeds_now`
    seeds) and the CPU hours that many seeds cost at `cpu_s_per_seed`."""
    target = check_float("target_frac", target_frac, minimum=1e-6) * abs(single)
    if not (math.isfinite(sd) and sd > 0 and target > 0):    # one seed, or no spread at all
        return {"sd": sd, "target": target, "mde_now": math.nan, "seeds": math.nan,
                "seeds_low": math.nan, "seeds_high": math.nan, "cpu_h": math.nan}
    low_sd, high_sd = sd_interval(sd, seeds_now)
    seeds = seeds_for_mde(sd, target, alpha, power)
    return {"sd": sd, "target": target,
            "mde_now": minimum_detectable_effect(sd, seeds_now, alpha, power),
            "seeds": seeds, "seeds_low": seeds_for_mde(low_sd, target, alpha, power),
            "seeds_high": seeds_for_mde(high_sd, target, alpha, power),
            "cpu_h": seeds * cpu_s_per_seed / 3600.0}


def run_curves(frame: pd.DataFrame) -> pd.DataFrame:
    """Per model, seed and evaluated step: the stopping rule's criterion (validation FCD
    averaged over the model's classes), the class-averaged held-out FCD and the training loss."""
    models = frame[frame["kind"].isin(["single", "multi"])]
    curves = models.groupby(["kind", "model", "K", "n", "seed", "step"], as_index=False).agg(
        fcd_val=("fcd_val", "mean"), fcd=("fcd", "mean"), loss=("loss", "first"),
        plateau=("plateau", "first"), stop_step=("stop_step", "first"),
        steps_trained=("steps_trained", "first"))
    curves["K"] = curves["K"].astype(int)
    curves["n"] = curves["n"].astype(int)
    curves["plateau"] = curves["plateau"].astype(bool)
    return curves.sort_values(["model", "seed", "step"], ignore_index=True)


def stopping_table(frame: pd.DataFrame, cap: int) -> pd.DataFrame:
    """Per kind, K and n: runs, how many met the stopping rule, how many trained to the step
    `cap` without meeting it, and how many of those were still improving there (validation
    criterion and training loss both lower at the cap than at the evaluation before it)."""
    cap = check_int("cap", cap, minimum=1)
    curves = run_curves(frame)
    rows = []
    for _, run in curves.groupby(["model", "seed"], sort=False):
        run = run.sort_values("step")
        last, before = run.iloc[-1], run.iloc[-2] if len(run) > 1 else run.iloc[-1]
        at_cap = (not last["plateau"]) and int(last["step"]) >= cap
        rows.append({"kind": last["kind"], "K": int(last["K"]), "n": int(last["n"]),
                     "plateau": bool(last["plateau"]),
                     "at_cap": at_cap,
                     "improving": at_cap and last["fcd_val"] < before["fcd_val"]
                     and last["loss"] < before["loss"]})
    runs = pd.DataFrame(rows)
    table = runs.groupby(["kind", "K", "n"]).agg(
        runs=("plateau", "size"), met_rule=("plateau", "sum"), at_cap=("at_cap", "sum"),
        improving_at_cap=("improving", "sum")).reset_index()
    return table.sort_values(["kind", "K", "n"], ascending=[False, True, True],
                             ignore_index=True)


def late_curve(frame: pd.DataFrame, model: str, steps: tuple[int, ...]) -> pd.DataFrame:
    """Mean over seeds of one model's validation criterion, held-out FCD and loss at `steps`."""
    curves = run_curves(frame)
    rows = curves[(curves["model"] == model) & curves["step"].isin(steps)]
    return rows.groupby("step")[["fcd_val", "fcd", "loss"]].mean()


def selection_coupling(frame: pd.DataFrame, config: exp.Edm2MiniatureConfig,
                       from_step: int) -> pd.DataFrame:
    """How much of the anchor's held-out luck arm (c)'s snapshot selection picks up.

    Arm (c) selects the snapshot with the lowest validation FCD averaged over the model's
    classes, computed on the same samples that are then scored against the held-out images. Per
    kind and K, this is the correlation, pooled over runs and seeds, between the change from one
    evaluated snapshot to the next (steps >= `from_step`, where the curves are flat) of the
    anchor's held-out FCD and of the selection criterion; and the same for the anchor's own
    validation FCD. A single-source model's criterion is its anchor's own validation FCD; a
    multi-source model's averages it with K - 1 other classes.
    """
    models = frame[frame["kind"].isin(["single", "multi"]) & (frame["step"] >= from_step)]
    criterion = models.groupby(["model", "seed", "step"])["fcd_val"].transform("mean")
    anchor = models.assign(criterion=criterion)[models["class"] == config.anchor]
    anchor = anchor.sort_values(["model", "seed", "step"])
    runs = anchor.groupby(["model", "seed"])
    changes = pd.DataFrame({"kind": anchor["kind"], "K": anchor["K"].astype(int),
                            "held_out": runs["fcd"].diff(), "own_val": runs["fcd_val"].diff(),
                            "criterion": runs["criterion"].diff()}).dropna()
    rows = []
    for (kind, k), part in changes.groupby(["kind", "K"]):
        rows.append({"kind": kind, "K": int(k), "changes": len(part),
                     "corr_own_validation": float(np.corrcoef(part["held_out"],
                                                              part["own_val"])[0, 1]),
                     "corr_criterion": float(np.corrcoef(part["held_out"],
                                                         part["criterion"])[0, 1])})
    return pd.DataFrame(rows).sort_values(["kind", "K"], ascending=[False, True],
                                          ignore_index=True)


def criterion_jitter(frame: pd.DataFrame, from_step: int) -> dict[str, float]:
    """How much the stopping criterion's change between consecutive evaluated snapshots
    (steps >= `from_step`) varies from seed to seed for the same model and step: the pooled SD
    of that change about its mean over seeds, next to the criterion's mean level there. A
    relative tolerance smaller than this SD over the level lets noise decide when a run stops."""
    from_step = check_int("from_step", from_step, minimum=0)
    curves = run_curves(frame)
    curves = curves[curves["step"] >= from_step].sort_values(["model", "seed", "step"])
    part = curves.assign(change=curves.groupby(["model", "seed"])["fcd_val"].diff())
    part = part.dropna(subset=["change"])
    groups = part.groupby(["model", "step"])["change"]
    df = groups.count() - 1
    pooled = float(np.sqrt((groups.var(ddof=1) * df).sum() / df.sum()))
    return {"sd_change": pooled, "level": float(curves["fcd_val"].mean()),
            "changes": len(part)}


def budget_table(frame: pd.DataFrame, config: exp.Edm2MiniatureConfig) -> pd.DataFrame:
    """Per sweep point of the K and n sweeps (K > 1) and arm: the steps of the multi-source
    model and of the anchor's single-source model, their ratio, and the per-class exposure
    (steps x batch / (K n): how often each training image of a class is seen, in epochs) of
    both, with its ratio. Arm (c)'s steps are the selected snapshots', averaged over seeds."""
    arms = exp.arm_frame(frame)
    plateau = arms[(arms["arm"] == "plateau")].groupby("model")["step"].mean()
    rows = []
    seen = set()
    for point in exp.sweep_points(config):
        k, n = len(point["classes"]), int(point["n"])
        if k == 1 or point["sweep"] == "similarity" or (k, n) in seen:
            continue
        seen.add((k, n))
        multi_key = exp.model_key(point["classes"], n)
        single_key = exp.model_key((config.anchor,), n)
        fixed_multi, fixed_single = exp.arm_steps(config, k, n), exp.arm_steps(config, 1, n)
        for arm in exp.ARMS:
            if arm == "plateau":
                m, s = float(plateau.get(multi_key, np.nan)), float(plateau.get(single_key,
                                                                                np.nan))
            else:
                m, s = float(fixed_multi[arm]), float(fixed_single[arm])
            exposure_m = m * config.batch_size / (k * n)
            exposure_s = s * config.batch_size / n
            rows.append({"sweep": point["sweep"], "K": k, "n": n, "arm": arm,
                         "steps_multi": m, "steps_single": s, "step_ratio": m / s,
                         "epochs_multi": exposure_m, "epochs_single": exposure_s,
                         "exposure_ratio": exposure_m / exposure_s})
    return pd.DataFrame(rows)


def slope_power(paired: pd.DataFrame, x_by_setting: dict[str, float], sweep: str,
                arm: str, alpha: float = 0.05, power: float = 0.8) -> float:
    """Minimum detectable slope of `exp.slope_summary`'s per-seed slopes (same fits)."""
    rows = paired[(paired["sweep"] == sweep) & (paired["arm"] == arm)
                  & paired["setting"].isin(x_by_setting)]
    slopes = []
    for _, seed_rows in rows.groupby("seed"):
        xs = np.array([x_by_setting[s] for s in seed_rows["setting"]], dtype=float)
        if len(np.unique(xs)) >= 2:
            slopes.append(float(np.polyfit(xs, seed_rows["log_ratio"].to_numpy(float), 1)[0]))
    return mde_of(np.array(slopes), alpha=alpha, power=power)


def kid_noise_floor(frame: pd.DataFrame) -> dict[str, float]:
    """KID x 1000 of real images against the held-out images of their class (the table's
    `real` rows): its expectation is zero, so its spread over classes is the metric's noise at
    this sample size."""
    real = frame.loc[frame["kind"] == "real", "kid_x1000"].to_numpy(float)
    return {"classes": int(real.size), "mean": float(real.mean()),
            "sd": float(real.std(ddof=1)), "min": float(real.min()), "max": float(real.max())}


def interval_text(row: pd.Series | dict, digits: int = 2, unit: str = "") -> str:
    """'diff [low, high]' with signs, e.g. '-0.09 [-0.14, -0.04]'."""
    f = f"{{:+.{digits}f}}"
    return (f"{f.format(row['diff'])} [{f.format(row['low'])}, {f.format(row['high'])}]"
            + (f" {unit}" if unit else ""))
