"""The miniature experiment: design, budget arms, stopping rule, statistics, and the smoke run."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from multisource.common.validation import InputError
from multisource.experiments import edm2_miniature as exp

BOOK = exp.PROFILES["book"]


def test_paper_rule_budgets_follow_the_authors_presets() -> None:
    # preset images (Mi): 1c-500 128, 3c-500 64, 5c-500 128, 10c-500 96; 1c-100 48; 5c-100 64;
    # 1c-1000 176; 5c-1000 96 (paper.md 5b). Our n 30/100/300 map to 100/500/1000.
    eq = BOOK.equal_steps
    assert exp.paper_steps(BOOK, 1, 100) == eq
    assert exp.paper_steps(BOOK, 3, 100) == eq // 2
    assert exp.paper_steps(BOOK, 5, 100) == eq
    assert exp.paper_steps(BOOK, 10, 100) == 3 * eq // 4
    assert exp.paper_steps(BOOK, 1, 30) == round(eq * 48 / 128 / 128) * 128
    assert exp.paper_steps(BOOK, 5, 300) == 3 * eq // 4
    with pytest.raises(InputError, match="n must be one of"):
        exp.paper_steps(BOOK, 1, 50)
    with pytest.raises(InputError, match="presets"):
        exp.paper_steps(BOOK, 4, 100)


def test_learning_rate_decay_starts_well_before_the_shortest_arm_ends() -> None:
    for config in exp.PROFILES.values():
        shortest = min(min(exp.arm_steps(config, len(c), n).values())
                       for c, n in exp.design_models(config))
        assert config.warmup_steps < config.t_ref_steps <= shortest / 2


def test_design_shares_models_between_sweeps_and_seeds_redraw() -> None:
    models = exp.design_models(BOOK)
    assert len(models) == len(set(models))
    centre = (BOOK.centre[:BOOK.k_centre], BOOK.n_centre)
    assert models.count(centre) == 1                       # one model serves all three sweeps
    singles = {(c[0], n) for c, n in models if len(c) == 1}
    for point in exp.sweep_points(BOOK):                   # the anchor has a single everywhere
        assert (BOOK.anchor, point["n"]) in singles
        assert point["classes"][0] == BOOK.anchor
    centre_classes = BOOK.centre[:BOOK.k_centre]           # the centre's K-class average too
    assert {(c, BOOK.n_centre) for c in centre_classes} <= singles
    paper = exp.PROFILES["paper"]
    paper_singles = {(c[0], n) for c, n in exp.design_models(paper) if len(c) == 1}
    for point in exp.sweep_points(paper):                  # "all": every compared class
        assert {(c, point["n"]) for c in point["classes"]} <= paper_singles
    assert {len(p["classes"]) for p in exp.sweep_points(BOOK) if p["sweep"] == "K"} == \
        {1, 3, 5, 10}
    levels = {p["level"] for p in exp.sweep_points(BOOK) if p["sweep"] == "similarity"}
    assert levels == {"high", "mid", "low"}
    assert len(BOOK.seeds) >= 5 and len(BOOK.n_values) >= 3
    tasks = exp.tasks(BOOK)
    assert len(tasks) == 1 + len(BOOK.seeds) * len(models)


def test_plateau_rule_fires_when_doubling_stops_helping() -> None:
    steps = [128, 256, 512, 1024, 2048]
    assert exp.plateau_stop(steps, [10, 6, 4, 3, 2.9], 0.05) == 2048
    assert exp.plateau_stop(steps, [10, 6, 4, 3, 2.9], 0.05, factor=1.5) == 2048
    assert exp.plateau_stop([128, 192, 256, 384], [4, 3, 2.95, 2.9], 0.05, factor=1.5) == 384
    assert exp.plateau_stop(steps, [10, 6, 4, 3, 2.5], 0.05) is None
    assert exp.plateau_stop(steps, [10, 6, 6.2, 6.1, 5], 0.05) == 512   # uses no later value
    assert exp.plateau_stop([128], [1.0], 0.05) is None
    # patience: one flat evaluation followed by a real improvement does not stop the run
    noisy = [5.9, 4.6, 4.45, 3.8, 3.7, 3.65]
    grid = [256, 512, 768, 1024, 1536, 2048]
    assert exp.plateau_stop(grid, noisy, 0.05, 1.5) == 768
    assert exp.plateau_stop(grid, noisy, 0.05, 1.5, patience=2) == 2048   # not 768
    assert exp.plateau_stop(grid, [5.9, 4.6, 4.5, 4.45, 4.4, 4.4], 0.05, 1.5, patience=2) == 1024


def test_t_interval_matches_scipy() -> None:
    values = np.array([1.0, 2.5, -0.5, 3.0, 0.7])
    mean, low, high = exp.t_interval(values)
    sem = stats.sem(values)
    ref = stats.t.interval(0.95, len(values) - 1, loc=values.mean(), scale=sem)
    assert mean == pytest.approx(values.mean())
    assert (low, high) == pytest.approx(ref)


def test_slope_recovers_a_planted_trend_and_its_interval_covers_it() -> None:
    rows = []
    rng = np.random.default_rng(0)
    for seed in range(6):
        for k in (3, 5, 10):
            rows.append({"sweep": "K", "setting": str(k), "arm": "equal", "seed": seed,
                         "log_ratio": -0.02 * k + 0.01 * rng.standard_normal()})
    fit = exp.slope_summary(pd.DataFrame(rows), {"3": 3, "5": 5, "10": 10}, "K", "equal")
    assert fit["low"] < -0.02 < fit["high"] and fit["high"] < 0 and fit["seeds"] == 6


@pytest.mark.slow
def test_smoke_experiment_trains_samples_and_scores(tmp_path, monkeypatch) -> None:
    """The `smoke` profile end to end (digits 8x8): train, snapshot, score, arms, store."""
    from multisource.experiments.runner import load_results, run_experiment

    monkeypatch.setattr(exp, "WORK_DIR", tmp_path / "work")
    config = exp.PROFILES["smoke"]
    stored = run_experiment("edm2_miniature", "smoke", "cpu", progress=False,
                            results_dir=tmp_path)
    frame = stored.frame
    sim = frame[frame["kind"] == "similarity"]
    assert set(sim["group"]) >= {"near", "far"} and (sim["fcd_pairwise"] > 0).all()
    models = frame[frame["kind"].isin(["single", "multi"])]
    assert models.groupby(["model", "seed"]).ngroups == len(exp.design_models(config))
    assert np.isfinite(models["fcd"]).all() and (models["fcd"] > 0).all()
    # every model has exactly one snapshot per arm and class, at that arm's budget
    for (key, _seed, _c), rows in models.groupby(["model", "seed", "class"]):
        k, n = int(rows["K"].iloc[0]), int(rows["n"].iloc[0])
        for arm, steps in exp.arm_steps(config, k, n).items():
            assert rows.loc[rows[f"arm_{arm}"].astype(bool), "step"].tolist() == [steps], key
        chosen = rows.loc[rows["arm_plateau"].astype(bool)]
        assert len(chosen) == 1 and int(chosen["step"].iloc[0]) <= int(rows["step"].max())
        # training time comes from the snapshots: it grows with the step
        assert rows.sort_values("step")["train_s"].is_monotonic_increasing
    # real images are the floor: closer to the held-out reference than smoke samples
    real = frame[frame["kind"] == "real"]
    assert real["fcd"].max() < models["fcd"].min()
    memorised = models.dropna(subset=["mem_closer_frac"])
    assert memorised["mem_closer_frac"].between(0, 1).all() and len(memorised)
    assert memorised["mem_set_size"].between(1, memorised["n"].max()).all()
    assert (memorised["mem_set_size"] <= memorised["n"]).all()
    paired = exp.paired_differences(frame, config)
    assert set(paired["arm"]) == set(exp.ARMS)
    assert (paired.loc[paired["K"] == 1, "diff"] == 0).all()     # K = 1: the same model
    summary = exp.difference_summary(paired)
    assert len(summary) == len(exp.sweep_points(config)) * len(exp.ARMS)
    again = load_results("edm2_miniature", "smoke", results_dir=tmp_path)
    assert again is not None and again.provenance["config_hash"] == \
        stored.provenance["config_hash"]
    assert not any((tmp_path / "work").glob("*/checkpoint.pt"))     # work folders cleaned


def test_model_task_resumes_after_an_interruption(tmp_path, monkeypatch) -> None:
    """Killed mid-task, a model task restarts from its checkpoint and gives the same rows."""
    monkeypatch.setattr(exp, "WORK_DIR", tmp_path / "work")
    config = exp.PROFILES["smoke"]
    task = {"kind": "single", "classes": [8], "n": 40, "seed": 0}
    straight = pd.DataFrame(exp.run_task(config, task, "cpu"))
    from multisource.models.diffusion import training

    real_train = training.train
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real_train(*args, **kwargs)

    monkeypatch.setattr("multisource.models.diffusion.train", flaky)
    with pytest.raises(KeyboardInterrupt):
        exp.run_task(config, task, "cpu")
    monkeypatch.setattr("multisource.models.diffusion.train", real_train)
    resumed = pd.DataFrame(exp.run_task(config, task, "cpu"))
    columns = [c for c in straight.columns if c not in ("train_s", "eval_s", "task_cpu_s")]
    pd.testing.assert_frame_equal(straight[columns], resumed[columns])
    assert math.isfinite(resumed["train_s"].max())
