"""Chapter 7's reading of the stored results: verdicts with power, costs, stopping, selection
coupling and budgets, on planted tables (and one recomputation on the stored book run)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from multisource.common.paths import DATA_DIR
from multisource.experiments import edm2_miniature as exp
from multisource.readings import edm2_reading as reading
from multisource.readings.power import minimum_detectable_effect, seeds_for_mde

CONFIG = dataclasses.replace(exp.SMOKE, seeds=(0, 1, 2, 3))
# Planted per-seed differences multi - single of the anchor's FCD, per multi-source model.
NEAR = exp.model_key((8, 3, 5), 40)       # K = 3 at n = 40 (the K sweep and the "near" group)
FAR = exp.model_key((8, 0, 1), 40)
SMALL = exp.model_key((8, 3, 5), 20)
PLANTED = {NEAR: [-1.0, -1.1, -0.9, -1.2], FAR: [1.0, 0.8, 1.3, 0.9],
           SMALL: [0.1, -0.1, 0.2, -0.2]}


def planted_frame() -> pd.DataFrame:
    """Every design model of CONFIG and seed at one evaluated step that all arms select."""
    rows = []
    for seed in CONFIG.seeds:
        for classes, n in exp.design_models(CONFIG):
            key = exp.model_key(classes, n)
            for c in classes:
                single = 5.0 + 0.3 * seed + 0.1 * c
                fcd = single + (PLANTED[key][seed] if len(classes) > 1 and c == CONFIG.anchor
                                else 0.0)
                rows.append({"kind": "single" if len(classes) == 1 else "multi", "model": key,
                             "K": len(classes), "n": n, "seed": seed, "step": 16, "class": c,
                             "fcd": fcd, "accuracy": fcd / 10, "arm_paper": True,
                             "arm_equal": True, "arm_plateau": True})
    return pd.DataFrame(rows)


def test_verdicts_carry_the_paired_interval_the_mde_and_the_right_direction() -> None:
    table = reading.verdicts(planted_frame(), CONFIG).set_index(["sweep", "setting", "arm"])
    assert (table["K"] > 1).all()
    for (sweep, setting), key, verdict in ((("K", "3"), NEAR, reading.BETTER),
                                           (("similarity", "far"), FAR, reading.WORSE),
                                           (("n", "20"), SMALL, reading.NOT_DETECTED)):
        diffs = np.array(PLANTED[key])
        for arm in exp.ARMS:
            row = table.loc[(sweep, setting, arm)]
            assert row["diff"] == pytest.approx(diffs.mean())
            assert row["sd"] == pytest.approx(diffs.std(ddof=1))
            assert row["mde"] == pytest.approx(minimum_detectable_effect(diffs.std(ddof=1), 4))
            assert row["mde_frac"] == pytest.approx(row["mde"] / row["single"])
            assert row["verdict"] == verdict
    # accuracy (planted as FCD / 10): higher is better, so the pattern reads the other way
    accuracy = reading.verdicts(planted_frame(), CONFIG, "accuracy", lower_is_better=False)
    accuracy = accuracy.set_index(["sweep", "setting", "arm"])
    assert accuracy.loc[("K", "3", "equal"), "verdict"] == reading.WORSE
    assert accuracy.loc[("similarity", "far", "equal"), "verdict"] == reading.BETTER
    only = reading.verdicts(planted_frame(), CONFIG, arms=("equal",))
    assert set(only["arm"]) == {"equal"}


def test_sd_interval_covers_the_true_sd_at_its_level() -> None:
    rng = np.random.default_rng(7)
    draws = rng.normal(0.0, 2.0, size=(4000, 5))
    sds = draws.std(axis=1, ddof=1)
    low, high = np.array([reading.sd_interval(s, 5) for s in sds]).T
    coverage = float(((low <= 2.0) & (high >= 2.0)).mean())
    assert abs(coverage - 0.95) < 0.015
    assert reading.sd_interval(1.0, 5)[0] < 1.0 < reading.sd_interval(1.0, 5)[1]


def test_seeds_to_reach_inverts_the_mde_and_costs_per_seed() -> None:
    out = reading.seeds_to_reach(sd=0.6, single=4.0, seeds_now=5, target_frac=0.10,
                                 cpu_s_per_seed=900.0)
    assert out["target"] == pytest.approx(0.4)
    assert out["seeds"] == seeds_for_mde(0.6, 0.4)
    assert minimum_detectable_effect(0.6, out["seeds"]) <= 0.4
    assert minimum_detectable_effect(0.6, out["seeds"] - 1) > 0.4
    assert out["seeds_low"] <= out["seeds"] <= out["seeds_high"]
    assert out["cpu_h"] == pytest.approx(out["seeds"] * 0.25)
    assert out["mde_now"] == pytest.approx(minimum_detectable_effect(0.6, 5))


def _run(kind, model, k, n, seed, vals, losses, plateau, step0=256, **extra):
    steps = [step0 * (i + 1) for i in range(len(vals))]
    return [{"kind": kind, "model": model, "K": k, "n": n, "seed": seed, "step": s, "class": 0,
             "fcd_val": v, "fcd": v, "loss": lo, "plateau": plateau, "stop_step": steps[-1],
             "steps_trained": steps[-1], **extra}
            for s, v, lo in zip(steps, vals, losses, strict=True)]


def test_stopping_table_counts_rule_cap_and_still_improving() -> None:
    rows = (_run("single", "0|10", 1, 10, 0, [3, 2, 2.1], [1, 0.5, 0.4], True)
            + _run("multi", "0 1|10", 2, 10, 0, [3, 2, 1.5], [1, 0.5, 0.4], False)   # improving
            + _run("multi", "0 1|10", 2, 10, 1, [3, 2, 2.5], [1, 0.5, 0.4], False)   # val rose
            + _run("multi", "0 1|10", 2, 10, 2, [3, 2, 1.5], [1, 0.5, 0.6], False))  # loss rose
    table = reading.stopping_table(pd.DataFrame(rows), cap=768).set_index(["kind", "K"])
    assert table.loc[("single", 1), ["runs", "met_rule", "at_cap"]].tolist() == [1, 1, 0]
    assert table.loc[("multi", 2), ["runs", "met_rule", "at_cap", "improving_at_cap"]
                     ].tolist() == [3, 0, 3, 1]


def test_model_costs_take_the_whole_run_when_a_task_was_resumed() -> None:
    frame = pd.DataFrame([
        {"kind": "single", "model": "a", "K": 1, "n": 5, "seed": 0, "task_cpu_s": 100.0,
         "train_s": 30.0, "eval_s": 20.0},
        {"kind": "single", "model": "a", "K": 1, "n": 5, "seed": 0, "task_cpu_s": 100.0,
         "train_s": 60.0, "eval_s": 20.0},
        {"kind": "multi", "model": "b", "K": 2, "n": 5, "seed": 0, "task_cpu_s": 10.0,
         "train_s": 90.0, "eval_s": 15.0},       # resumed: its last segment only
        {"kind": "real", "model": None, "K": None, "n": None, "seed": None,
         "task_cpu_s": None, "train_s": None, "eval_s": None}])
    costs = reading.model_costs(frame).set_index("model")["cpu_s"]
    assert costs.to_dict() == {"a": 100.0, "b": 105.0}


def test_selection_coupling_separates_own_class_from_the_class_average() -> None:
    rng = np.random.default_rng(3)
    rows = []
    for seed in range(40):
        steps = [1024, 1536, 2048, 3072]
        for step in steps:
            shared = rng.normal()                   # the anchor's samples' luck at this step
            for c, kind, model, k in ((6, "single", "6|1", 1),):
                rows.append({"kind": kind, "model": model, "K": k, "seed": seed, "step": step,
                             "class": c, "fcd": 3 + shared, "fcd_val": 3 + shared})
            # a two-class model: the anchor shares its luck with its own validation score,
            # the other class's validation score is independent of it
            rows.append({"kind": "multi", "model": "2 6|1", "K": 2, "seed": seed,
                         "step": step, "class": 6, "fcd": 3 + shared, "fcd_val": 3 + shared})
            rows.append({"kind": "multi", "model": "2 6|1", "K": 2, "seed": seed,
                         "step": step, "class": 2, "fcd": 3.0, "fcd_val": 3 + rng.normal()})
    config = dataclasses.replace(exp.SMOKE, centre=(6, 2, 4))
    table = reading.selection_coupling(pd.DataFrame(rows), config, from_step=1024)
    table = table.set_index("kind")
    assert table.loc["single", "corr_criterion"] == pytest.approx(1.0)
    assert table.loc["multi", "corr_own_validation"] == pytest.approx(1.0)
    # the criterion averages two independent lucks: correlation 1 / sqrt(2)
    assert table.loc["multi", "corr_criterion"] == pytest.approx(1 / math.sqrt(2), abs=0.08)


def test_criterion_jitter_is_the_seed_to_seed_sd_of_a_change() -> None:
    rng = np.random.default_rng(5)
    rows = []
    for seed in range(400):
        vals = 3.0 + np.array([0.0, -0.3, -0.4]) + rng.normal(0, 0.1, 3)
        rows += _run("single", "0|10", 1, 10, seed, list(vals), [1, 1, 1], True, step0=1024)
    out = reading.criterion_jitter(pd.DataFrame(rows), from_step=1024)
    # a change is the difference of two independent N(0, 0.1) evaluations
    assert out["sd_change"] == pytest.approx(0.1 * math.sqrt(2), rel=0.06)
    assert out["changes"] == 800


def test_budget_table_exposure_is_steps_times_batch_over_images() -> None:
    frame = planted_frame()
    table = reading.budget_table(frame, CONFIG)
    assert set(table["sweep"]) == {"K", "n"} and (table["K"] > 1).all()
    for _, row in table[table["arm"] != "plateau"].iterrows():
        fixed_m = exp.arm_steps(CONFIG, row["K"], row["n"])[row["arm"]]
        fixed_s = exp.arm_steps(CONFIG, 1, row["n"])[row["arm"]]
        assert row["step_ratio"] == pytest.approx(fixed_m / fixed_s)
        assert row["epochs_multi"] == pytest.approx(fixed_m * CONFIG.batch_size
                                                    / (row["K"] * row["n"]))
        assert row["exposure_ratio"] == pytest.approx(row["step_ratio"] / row["K"])
    plateau = table[table["arm"] == "plateau"]
    assert (plateau["steps_multi"] == 16).all() and (plateau["step_ratio"] == 1).all()


def test_slope_power_is_the_mde_of_the_per_seed_slopes() -> None:
    rows = []
    slopes = [0.1, 0.3, 0.2, 0.25]
    for seed, slope in enumerate(slopes):
        for setting, x in (("1", 1.0), ("2", 2.0), ("4", 4.0)):
            rows.append({"sweep": "K", "arm": "equal", "seed": seed, "setting": setting,
                         "log_ratio": slope * x - 0.5})
    out = reading.slope_power(pd.DataFrame(rows), {"1": 1.0, "2": 2.0, "4": 4.0}, "K", "equal")
    assert out == pytest.approx(minimum_detectable_effect(float(np.std(slopes, ddof=1)), 4))


def test_interval_text() -> None:
    row = {"diff": -0.088, "low": -0.139, "high": -0.037}
    assert reading.interval_text(row) == "-0.09 [-0.14, -0.04]"


STORED = DATA_DIR / "results" / "edm2_miniature" / "book.csv"


@pytest.mark.skipif(not STORED.exists(), reason="stored book results absent")
def test_stored_run_verdicts_recomputed_independently() -> None:
    """The centre point's anchor verdict, recomputed from the raw rows with scipy."""
    frame = pd.read_csv(STORED)
    config = exp.PROFILES["book"]
    table = reading.verdicts(frame, config).set_index(["sweep", "setting", "arm"])
    picked = frame[frame["arm_equal"].astype(bool) & (frame["class"] == config.anchor)]
    multi = picked[picked["model"] == exp.model_key(config.centre[:3], config.n_centre)]
    single = picked[picked["model"] == exp.model_key((config.anchor,), config.n_centre)]
    diffs = (multi.set_index("seed")["fcd"] - single.set_index("seed")["fcd"]).to_numpy()
    result = stats.ttest_1samp(diffs, 0.0)
    low, high = result.confidence_interval(0.95)
    row = table.loc[("K", "3", "equal")]
    assert row["diff"] == pytest.approx(diffs.mean())
    assert (row["low"], row["high"]) == pytest.approx((low, high))
    assert row["mde"] == pytest.approx(minimum_detectable_effect(diffs.std(ddof=1), len(diffs)))


def test_seeds_to_reach_without_a_spread_says_nan() -> None:
    assert math.isnan(reading.seeds_to_reach(math.nan, 4.0, 1)["seeds"])
    assert math.isnan(reading.seeds_to_reach(0.0, 4.0, 5)["cpu_h"])
