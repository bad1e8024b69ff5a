"""Tests of the shared Figure-1 sweep: settings, tasks, and the network task with its checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from multisource.experiments import get
from multisource.experiments import sweep as sw
from multisource.experiments.autoregressive import NEURAL_FAMILY

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_settings_are_the_union_of_three_sweeps_without_repeats():
    grid = sw.SweepGrid(K_default=5, n_default=500, beta_default=0.5, K_values=(1, 5),
                        n_values=(100, 500), beta_values=(0.0, 0.5), seeds=2)
    settings = sw.figure1_settings(grid)
    assert settings == [{"K": 1, "n": 500, "beta_sim": 0.5}, {"K": 5, "n": 500, "beta_sim": 0.5},
                        {"K": 5, "n": 100, "beta_sim": 0.5}, {"K": 5, "n": 500, "beta_sim": 0.0}]
    assert len(sw.seed_tasks(grid)) == 8


def test_setting_rng_depends_on_every_key():
    draws = {tuple(sw.setting_rng(0, s, {"K": K, "n": 100, "beta_sim": b}).integers(1e9, size=2))
             for s in (0, 1) for K in (3, 5) for b in (0.25, 0.5)}
    assert len(draws) == 8


def test_wilks_lower_test_flags_a_fit_stuck_at_the_teacher():
    config = sw.NetworkSweep()
    rank, n = 40, 1000
    good = 1.0 - rank / (2 * n)                            # the expected MLE gap
    statistic, ok = sw.wilks_lower_test(config, n, rank, 1.0, good)
    assert statistic == pytest.approx(rank) and ok
    assert sw.wilks_lower_test(config, n, rank, 1.0, 1.0)[1] is False     # no gain: stuck


def test_network_tasks_give_the_default_setting_more_seeds():
    config = sw.NetworkSweep(K_values=(3, 5), n_values=(500,), beta_values=(0.5,), seeds=2,
                             seeds_default=5)
    tasks = sw.network_tasks(config)
    assert sum(t["K"] == 5 for t in tasks) == 5 and sum(t["K"] == 3 for t in tasks) == 2


def test_network_task_row_and_the_k1_shortcut():
    experiment = get("autoregressive_neural")
    config = experiment.config("smoke")
    row = experiment.run_task(config, experiment.tasks(config)[0], torch.device("cpu"))[0]
    for name in ("multi", "single"):
        assert 0.0 < row[f"tv_{name}"] < 1.0 and 0.0 < row[f"fisher_tv_{name}"] < 1.0
        assert row[f"rank_{name}"] <= row[f"params_{name}"]
        assert row[f"wilks_gap_{name}"] == pytest.approx(-row[f"rank_{name}"] / (2 * row["n"]))
        assert row[f"max_hidden_{name}"] <= 3.0 + 1e-12 and row[f"max_output_{name}"] <= 4.0
        assert 0.0 < row[f"hellinger_{name}"] < 1.0 and row[f"sqrt_kl_{name}"] > 0.0
        assert row[f"fisher_sqrt_kl_{name}"] == pytest.approx(2 * row[f"fisher_hellinger_{name}"])
        assert row[f"starts_{name}"] >= 2 * config.restarts        # at least two blocks
        assert row[f"iterations_{name}"] > 0 and row[f"fit_gap_to_best_{name}"] >= 0.0
        assert row[f"poor_gap_{name}"] >= 0.0 and row[f"search_gap_to_best_{name}"] >= 0.0
        # the fit is the more likely of the random search and the teacher start
        either = min(row[f"search_nll_{name}"],
                     row[f"teacher_start_gap_{name}"] + row["teacher_nll"])
        assert row[f"nll_{name}"] == pytest.approx(either, rel=1e-12)
        assert row[f"teacher_improvement_{name}"] == pytest.approx(
            2 * row["n"] * (row[f"search_gap_{name}"] - row[f"teacher_start_gap_{name}"]))
        assert row[f"fresh_improvement_{name}"] <= row[f"fresh_improvement_search_{name}"]
        assert np.isfinite(row[f"tv_R{config.budgets[-1]}_{name}"])   # seed 0: budget curve
    assert row["params_multi"] < row["params_single"]
    one = sw.run_network_task(config, {"K": 1, "n": 200, "beta_sim": 0.5, "seed": 0},
                              NEURAL_FAMILY)[0]
    assert one["tv_multi"] == one["tv_single"] and one["theory_ratio"] == 1.0
    assert np.isfinite(one["wilks_statistic_multi"])
