"""Chapter 7's reading of the converged design: pairing, intervals, words and plateau checks."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from multisource.experiments.edm2_converged import ARMS, SMOKE, model_key
from multisource.readings import edm2_converged_reading as r


def _frame(seeds: int = 6, nll_shift: float = -0.5, accuracy_shift: float = -0.2,
           capped: tuple[str, ...] = (), improving: tuple[str, ...] = ()) -> pd.DataFrame:
    """Scored rows of the smoke design at every arm: the multi-source models' NLL is lower by
    `nll_shift` (plus noise), their accuracy lower by `accuracy_shift`, FCD unchanged."""
    rng = np.random.default_rng(0)
    rows = []
    multis = [(8, 3, 5), (8, 0, 1)]
    singles = sorted({c for m in multis for c in m})
    for seed in range(seeds):
        base = {c: (rng.normal(-2.0, 0.3), rng.normal(3.0, 0.5), rng.uniform(0.5, 0.9))
                for c in singles}
        for classes in [(c,) for c in singles] + multis:
            kind = "multi" if len(classes) > 1 else "single"
            key = model_key(classes)
            for c in classes:
                nll, fcd, acc = base[c]
                if kind == "multi":
                    nll += nll_shift + rng.normal(0, 0.05)
                    acc += accuracy_shift + rng.normal(0, 0.02)
                    fcd += rng.normal(0, 0.5)
                rows.append({"kind": kind, "seed": seed, "model": key, "class": c,
                             "K": len(classes), "nll_bits": nll, "fcd": fcd, "accuracy": acc,
                             "plateau_reached": key not in capped,
                             "plateau_step": 48 if key in improving else 32,
                             "stop_step": -1 if key in capped else 40, "cap_step": 48,
                             **{f"arm_{a}": True for a in ARMS}})
    rows.append({"kind": "curve", "seed": 0, "model": "8", "step": 8})   # ignored
    return pd.DataFrame(rows)


def test_paired_differences_recover_the_shift_and_read_the_direction():
    table = r.verdicts(_frame(), SMOKE, arms=("plateau",))
    nll = table[(table.metric == "nll_bits") & (table.scope == "K-average")]
    assert set(nll.setting) == {"3", "far"}                     # K = 1 is no comparison
    assert (nll["diff"].between(-0.55, -0.45)).all() and (nll.reading == "multi better").all()
    assert (nll["low"] < nll["diff"]).all() and (nll["diff"] < nll["high"]).all()
    accuracy = table[(table.metric == "accuracy") & (table.scope == "anchor")]
    assert (accuracy.reading == "single better").all()          # higher is better here
    fcd = table[table.metric == "fcd"]
    assert fcd.mde.gt(0).all() and fcd.mde_rel.gt(0).all()
    assert table[table.metric != "fcd"].mde_rel.isna().all()   # no natural zero


def test_a_null_effect_reads_not_detected_with_a_finite_mde():
    table = r.verdicts(_frame(nll_shift=0.0, accuracy_shift=0.0), SMOKE, arms=("equal",),
                       metrics=("nll_bits",))
    assert table["seeds"].eq(6).all() and np.isfinite(table.mde).all()
    assert (table.reading == "not detected").mean() >= 0.5


def test_reading_words_follow_the_metric_direction():
    assert r.reading("fcd", -2.0, -1.0) == "multi better"
    assert r.reading("accuracy", -2.0, -1.0) == "single better"
    assert r.reading("nll_bits", -1.0, 1.0) == "not detected"
    assert r.reading("fcd", float("nan"), 1.0) == "not detected"


def test_plateau_checks_name_the_capped_models_and_their_comparisons():
    """Model 1 hits its cap while still improving (best bound at the cap); model 8 3 5 hits
    its cap after passing its minimum (best bound before the cap)."""
    frame = _frame(capped=("1", "8 3 5"), improving=("1",))
    assert r.capped_models(frame) == ["1", "8 3 5"]
    table = r.plateau_table(frame).set_index("model")
    assert not table.loc["1", "minimum_inside"].any()
    assert table.loc["8 3 5", "minimum_inside"].all() and table.loc["8", "minimum_inside"].all()
    reached = r.comparison_reached(frame, SMOKE).set_index("setting")
    assert not bool(reached.loc["3", "all reached"]) and reached.loc["3", "capped"] == "8 3 5"
    assert bool(reached.loc["3", "all minima inside"])
    assert not bool(reached.loc["far", "all minima inside"])
    assert reached.loc["far", "improving"] == "1"


def test_an_unknown_arm_is_refused():
    with pytest.raises(ValueError, match="arm must be one of"):
        r.scored(_frame(seeds=2), "nosuch")


def _with_curve(frame: pd.DataFrame, model: str, values: list[float], ses: list[float]
                ) -> pd.DataFrame:
    """Seed 0's validation curve of `model` at steps 8, 16, ... (one value per step)."""
    curve = [{"kind": "curve", "seed": 0, "model": model, "step": 8 * (i + 1),
              "val_nll_bits": v, "val_change_se": se}
             for i, (v, se) in enumerate(zip(values, ses, strict=True))]
    return pd.concat([frame, pd.DataFrame(curve)], ignore_index=True)


def test_a_minimum_is_confirmed_only_by_a_rise_beyond_the_summed_standard_errors():
    """Model 8 3 5 stops at its cap (48) after its best bound at step 32: a rise of 0.05 over
    two changes of SE 0.01 each is 2.5 conservative SEs (confirmed); the same rise with SEs
    of 0.02 is 1.25 (not confirmed, though the minimum is inside)."""
    base = _frame(capped=("8 3 5",))
    values = [-1.0, -1.2, -1.28, -1.3, -1.27, -1.25]
    confirmed = r.plateau_table(_with_curve(base, "8 3 5", values, [0.01] * 6), z=2.0)
    row = confirmed.set_index(["seed", "model"]).loc[(0, "8 3 5")]
    assert row["rise_z"] == pytest.approx(0.05 / 0.02)
    assert bool(row["minimum_inside"]) and bool(row["minimum_confirmed"])
    noisy = r.plateau_table(_with_curve(base, "8 3 5", values, [0.02] * 6), z=2.0)
    row = noisy.set_index(["seed", "model"]).loc[(0, "8 3 5")]
    assert row["rise_z"] == pytest.approx(0.05 / 0.04)
    assert bool(row["minimum_inside"]) and not bool(row["minimum_confirmed"])
    # a model whose rule fired counts as confirmed; a capped one without a curve does not
    assert confirmed.set_index(["seed", "model"]).loc[(0, "8"), "minimum_confirmed"]
    assert not confirmed.set_index(["seed", "model"]).loc[(1, "8 3 5"), "minimum_confirmed"]
    reached = r.comparison_reached(_with_curve(base, "8 3 5", values, [0.01] * 6), SMOKE)
    assert reached.set_index("setting").loc["3", "unconfirmed"] == "8 3 5"   # seeds 1-5


def test_the_extension_check_counts_a_confirmed_minimum_the_longer_run_beat_as_a_false_pass():
    """Seed 0's model 8 3 5 reached its cap (48) with its best at 32 and a rise of 2.5 SE
    (confirmed), its rule not fired at this tolerance, and was extended. In case (a) the rule
    fires at 64 with the same best snapshot; in case (b) the bound falls to -1.35 at 64 (a
    later, better snapshot): a false pass. Runs that were not extended are not listed."""
    config = dataclasses.replace(SMOKE, plateau_tol_bits=0.01)
    values = [-1.0, -1.2, -1.28, -1.3, -1.27, -1.25]
    for later, same, gain in [(-1.26, True, 0.0), (-1.35, False, 0.05)]:
        frame = _with_curve(_frame(seeds=1), "8 3 5", [*values, -1.2, later], [0.01] * 8)
        frame["extended"] = frame["model"] == "8 3 5"
        key = (frame["model"] == "8 3 5") & (frame["kind"] == "multi")
        frame.loc[key, ["cap_step", "stop_step"]] = 96, 64
        frame.loc[key, "plateau_step"] = 32 if same else 64
        check = r.extension_check(frame, config)
        assert list(check["model"]) == ["8 3 5"]
        row = check.iloc[0]
        assert not bool(row["plateau_reached_base"]) and row["plateau_step_base"] == 32
        assert bool(row["minimum_confirmed_base"]) and bool(row["plateau_reached_extended"])
        assert row["rise_z_base"] == pytest.approx(0.05 / 0.02)
        assert bool(row["same_snapshot"]) is same
        assert row["gain_bits"] == pytest.approx(gain)


def test_seed_task_seconds_counts_each_seed_once_at_its_own_total():
    frame = pd.DataFrame({"seed": [0, 0, 1, 1, 2], "task_wall_s": [10.0, 10.0, 7.5, 7.5, None],
                          "kind": ["curve"] * 5})
    assert r.seed_task_seconds(frame) == pytest.approx(17.5)
    assert r.seed_task_seconds(frame.drop(columns="task_wall_s")) == 0.0
