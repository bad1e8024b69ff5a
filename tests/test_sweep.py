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
        # the most likely fit found: no search beats it, per source network for single
        best = row[f"best_nll_{name}"]
        for other in ("search_nll", "fresh_nll", "nll", f"nll_R{config.budgets[-1]}"):
            assert best <= row[f"{other}_{name}"] + 1e-12
        loglik = [float(v) for v in row[f"best_source_loglik_{name}"].split(";")]
        assert -sum(loglik) / row["n"] == pytest.approx(best, rel=1e-9)
        found = row[f"best_found_by_{name}"].split(";")
        assert len(found) == (1 if name == "multi" else row["K"])
        assert sum(row[f"best_from_{s}_{name}"] for s in sw.SEARCHES) == len(found)
        assert row[f"best_gain_over_rule_{name}"] >= 0.0
        assert 0.0 < row[f"best_tv_{name}"] < 1.0
        assert row[f"starts_min_{name}"] >= 2 * config.restarts
    assert row["params_multi"] < row["params_single"]
    one = sw.run_network_task(config, {"K": 1, "n": 200, "beta_sim": 0.5, "seed": 0},
                              NEURAL_FAMILY)[0]
    assert one["tv_multi"] == one["tv_single"] and one["theory_ratio"] == 1.0
    assert np.isfinite(one["wilks_statistic_multi"])


def test_network_tasks_run_seed_by_seed_across_settings():
    config = sw.NetworkSweep(K_values=(3, 5), n_values=(500, 1000), beta_values=(0.5,),
                             seeds=2, seeds_default=3)
    tasks = sw.network_tasks(config)
    settings = sw.figure1_settings(config)
    assert tasks[: len(settings)] == [{**s, "seed": 0} for s in settings]
    assert [t["seed"] for t in tasks] == [0, 0, 0, 1, 1, 1, 2]
    assert tasks[-1] == {"K": 5, "n": 500, "beta_sim": 0.5, "seed": 2}     # the default


def test_book_profiles_run_20_seeds_at_every_setting_and_rank_tasks_by_cost():
    for name in ("autoregressive_neural", "energy_mlp"):
        experiment = get(name)
        config = experiment.config("book")
        tasks = experiment.tasks(config)
        assert 15 in config.K_values and config.budgets[-1] == 80
        per_setting: dict[tuple, int] = {}
        for t in tasks:
            key = (t["K"], t["n"], t["beta_sim"])
            per_setting[key] = per_setting.get(key, 0) + 1
        assert set(per_setting.values()) == {20} and len(per_setting) == 9
        cost = experiment.task_cost
        assert cost is not None
        default = {"K": 5, "n": 5000, "beta_sim": 0.5}
        assert cost(config, {**default, "seed": 0}) > cost(config, {**default, "seed": 25})
        assert cost(config, {"K": 15, "n": 5000, "beta_sim": 0.5, "seed": 0}) > cost(
            config, {"K": 3, "n": 5000, "beta_sim": 0.5, "seed": 0})


def test_single_source_rule_runs_on_every_network_on_its_own():
    """The single-source estimator is K networks each fitted under the restart rule on its own
    data (its own stopping test in its own W), from its part of the same starts."""
    from dataclasses import replace

    from multisource.models import autoregressive as ar
    from multisource.models import split_fit as sf

    config = sw.NetworkSweep(restarts=2, min_blocks=1, max_blocks=3, steps=200,
                             improvement=1.0, budgets=(2, 6))
    spec = ar.NeuralARSpec(V=2, L=4, K=3, shared_units=1, specific_units=1).single()
    teacher = ar.teacher_neural_ar(spec, torch.Generator().manual_seed(0))
    x, y = ar.sample_neural_ar(teacher, spec, 600, np.random.default_rng(0))
    counts = ar.sequence_counts(x, y, 3, 2)
    problem = ar.neural_ar_problem(spec, counts)
    fit, starts, curve, used = sw.fit_estimator(config, NEURAL_FAMILY, spec, problem, 600, 7,
                                                (2, 6), counts=counts)
    one = replace(spec, K=1)
    for k in range(3):
        alone = sf.fit_with_rule(ar.neural_ar_problem(one, counts[k : k + 1]),
                                 sw.source_slice(starts, k), None, config.rule(counts[k].sum()))
        assert used[k] == alone.starts
        np.testing.assert_allclose(fit.per_source[k], alone.per_source[0], rtol=1e-12)
    assert fit.train_nll == pytest.approx(fit.per_source.sum() / 600, rel=1e-12)
    assert len(curve) == 2 and curve[-1].train_nll <= curve[0].train_nll + 1e-12


def test_most_likely_chooses_per_network_and_credits_the_first_search_on_ties():
    from multisource.models import split_fit as sf

    def fake(values: list[float], mark: float) -> sf.SplitFit:
        params = {"Wp": torch.full((1, len(values), 1, 1), mark), "Ws": torch.zeros(1, 0, 1)}
        return sf.SplitFit(params, sum(values), np.array(values), np.zeros(1), 0.0, 0, 0)

    candidates = [("rule", fake([1.0, 2.0, 3.0], 0.0)), ("fresh", fake([1.0, 1.0, 4.0], 1.0)),
                  ("teacher", fake([0.5, 3.0, 3.0], 2.0))]
    params, per_source, found = sw.most_likely(candidates, per_network=True)
    assert found == ["teacher", "fresh", "rule"]
    np.testing.assert_array_equal(per_source, [0.5, 1.0, 3.0])
    assert params["Wp"].flatten().tolist() == [2.0, 1.0, 0.0]
    _, total, found = sw.most_likely(candidates, per_network=False)
    assert found == ["rule"] and total.sum() == 6.0           # 6.0, 6.0, 6.5: the first tie
