"""Tests of the per-setting summaries (Student-t intervals over seeds) of chapters 5-6."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from multisource.common.validation import InputError
from multisource.readings import network_report as nr
from multisource.readings import sweep_stats as ss


def test_t_half_width_is_the_textbook_interval():
    values = np.array([1.0, 2.0, 4.0, 7.0])
    expected = stats.t.ppf(0.975, 3) * values.std(ddof=1) / 2.0
    assert ss.t_half_width(values) == pytest.approx(expected)
    with pytest.raises(InputError, match="at least 2"):
        ss.t_half_width(np.array([1.0]))


def test_ratio_interval_covers_the_true_ratio_at_its_level():
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(2000):
        single = rng.gamma(20.0, 0.01, size=20)                      # mean 0.2
        multi = 0.8 * single * rng.lognormal(0.0, 0.1, size=20)      # mean ratio 0.8 e^0.005
        _, lo, hi = ss.ratio_interval(multi, single)
        hits += lo <= 0.8 * np.exp(0.005) <= hi
    assert 0.93 <= hits / 2000 <= 0.97


def test_summarise_pairs_seeds_and_reports_predictions():
    frame = pd.DataFrame({"K": 3, "n": 100, "beta_sim": 0.5, "theory_ratio": 0.8,
                          "tv_multi": [0.1, 0.2, 0.15], "tv_single": [0.2, 0.3, 0.2],
                          "fisher_tv_multi": 0.1, "fisher_tv_single": 0.2})
    row = ss.summarise(frame).iloc[0]
    assert row.seeds == 3 and row.advantage == pytest.approx(0.25 / 3)
    assert row.ratio == pytest.approx(0.45 / 0.7)
    assert row.fisher == pytest.approx(0.5) and row.fisher_dev == pytest.approx(row.ratio - 0.5)
    assert row.theory_dev == pytest.approx(row.ratio - 0.8)


def test_summarise_gives_one_seed_means_without_intervals():
    """A one-seed profile (smoke) still summarises: means and ratio, NaN interval bounds."""
    frame = pd.DataFrame({"K": 3, "n": 100, "beta_sim": 0.5, "theory_ratio": 0.8,
                          "tv_multi": [0.1], "tv_single": [0.2]})
    row = ss.summarise(frame).iloc[0]
    assert row.seeds == 1 and row.ratio == pytest.approx(0.5)
    assert row.advantage == pytest.approx(0.1)
    assert np.isnan([row.ratio_lo, row.ratio_hi, row.advantage_lo, row.multi_hi]).all()


def test_search_only_swaps_in_the_random_search_fits():
    frame = pd.DataFrame({f"{p}{m}_{e}": [v] for p, v in (("", 0.1), ("search_", 0.3))
                          for m in ("tv", "hellinger", "sqrt_kl", "nll", "gap")
                          for e in ("multi", "single")})
    out = ss.search_only(frame)
    assert out.tv_multi.tolist() == [0.3] and out.gap_single.tolist() == [0.3]
    assert frame.tv_multi.tolist() == [0.1]                   # the input is left alone


def test_with_fresh_block_takes_the_fresh_fit_only_where_it_is_more_likely():
    frame = pd.DataFrame({f"{p}{m}_{e}": v for p, v in (("", [0.1, 0.1]), ("fresh_", [0.3, 0.4]))
                          for m in ("tv", "hellinger", "sqrt_kl") for e in ("multi", "single")})
    for e in ("multi", "single"):
        frame[f"nll_{e}"] = [1.0, 1.0]
        frame[f"fresh_nll_{e}"] = [0.9, 1.1]
    out = ss.with_fresh_block(frame)
    assert out.tv_multi.tolist() == [0.3, 0.1] and out.nll_single.tolist() == [0.9, 1.0]


def test_fresh_check_counts_improvements_and_its_detection_rate():
    """Two of four search fits are known off (teacher start beats them by > 1 W); the fresh
    block catches one of them; it improves one selected fit by > 1 W."""
    frame = pd.DataFrame({
        "fresh_improvement_multi": [0.0, 2.0, -1.0, 0.5],
        "fresh_improvement_search_multi": [3.0, 0.2, 0.0, 0.0],
        "teacher_improvement_multi": [5.0, 4.0, 0.0, 0.9],
        "fresh_improvement_single": [0.0] * 4, "fresh_improvement_search_single": [0.0] * 4,
        "teacher_improvement_single": [0.0] * 4})
    table = ss.fresh_check(frame, 1.0).set_index("estimator")
    assert table.loc["multi", "improved"] == 1 and table.loc["multi", "largest W"] == 2.0
    assert table.loc["multi", "known off"] == 2 and table.loc["multi", "detected"] == 1
    assert table.loc["multi", "detection rate"] == 0.5
    assert np.isnan(table.loc["single", "detection rate"])


def _budget_frame() -> pd.DataFrame:
    """Three seeds with a budget study at B = 5, 10 and one without (NaN)."""
    frame = pd.DataFrame({"n": [500, 500, 500, 500]})
    for e, scale in (("multi", 0.8), ("single", 1.0)):
        for B, tv in ((5, 0.2), (10, 0.1)):
            for m in ("tv", "hellinger", "sqrt_kl"):
                frame[f"{m}_R{B}_{e}"] = [scale * tv, scale * tv * 1.1, scale * tv * 0.9,
                                          np.nan]
        frame[f"nll_R5_{e}"] = [1.0, 1.0, 1.0, np.nan]
        # W gain of the doubling: 2 n (NLL_5 - NLL_10) = 1000 x the nat gap
        frame[f"nll_R10_{e}"] = [1.0 - 0.002, 1.0 - 0.0005, 1.0, np.nan]
        for p in ("", "search_"):
            for m in ("tv", "hellinger", "sqrt_kl"):
                frame[f"{p}{m}_{e}"] = scale * 0.1
            frame[f"{p}nll_{e}"] = 0.99
    return frame


def test_budget_doubling_counts_fits_the_larger_budget_makes_more_likely():
    table = ss.budget_doubling(_budget_frame(), (5, 10), 1.0).set_index("estimator")
    assert table.loc["multi", "fits"] == 3                 # the seed without a study is left out
    assert table.loc["multi", "improved"] == 1             # gains 2.0, 0.5 and 0 W
    assert table.loc["single", "largest W"] == pytest.approx(2.0)


def test_budget_metrics_give_every_metric_its_ratio_per_budget():
    table = ss.budget_metrics(_budget_frame(), (5, 10))
    assert table.starts.tolist() == ["5", "10", ss.MOST_LIKELY]
    for metric in ("tv", "hellinger", "sqrt_kl"):
        np.testing.assert_allclose(table[metric], 0.8)
        assert table[f"{metric} ±"].iloc[0] > 0


def test_hellinger_and_sqrt_kl_of_discrete_distributions():
    from multisource.metrics import hellinger_discrete, sqrt_kl_discrete
    p, q = np.array([0.5, 0.5]), np.array([0.9, 0.1])
    assert hellinger_discrete(p, p) == pytest.approx(0.0, abs=1e-7)
    assert hellinger_discrete(p, q) ** 2 == pytest.approx(1 - (np.sqrt(0.45) + np.sqrt(0.05)))
    assert sqrt_kl_discrete(p, q) ** 2 == pytest.approx(0.5 * np.log(0.5 / 0.9)
                                                        + 0.5 * np.log(0.5 / 0.1))
    assert sqrt_kl_discrete(p, np.array([1.0, 0.0])) == np.inf


@pytest.mark.slow
def test_equal_effort_claim_trips_when_the_single_source_fit_gets_fewer_starts(monkeypatch):
    """The mutation of chapter 5's effort claim: the single-source estimator keeps only its
    first random start. At the smoke profile the claim holds for the real code and fails for
    the mutated one (the claim cell of chapters 5 and 6 asserts `equal_effort`)."""
    from dataclasses import replace

    import pandas as pd
    import torch

    from multisource.experiments import get
    from multisource.experiments import sweep as sw

    experiment = get("autoregressive_neural")
    # smoke sizes, run to a loose tolerance so that both estimators converge
    config = replace(experiment.config("smoke"), seeds=2, steps=2000, tolerance=1e-3)
    minimum = config.minimum_starts

    def rows() -> pd.DataFrame:
        torch.set_num_threads(1)
        return pd.DataFrame([r for task in sw.network_tasks(config)
                             for r in experiment.run_task(config, task, torch.device("cpu"))])

    assert ss.equal_effort(rows(), minimum)
    original = sw.fit_estimator

    def first_start_only(config, family, model, problem, n, torch_seed, budgets=(), **kw):
        if model.shared_units == 0:                       # the single-source class
            config = replace(config, restarts=1, max_blocks=1)
        return original(config, family, model, problem, n, torch_seed, budgets, **kw)

    monkeypatch.setattr(sw, "fit_estimator", first_start_only)
    mutated = rows()
    assert (mutated.starts_single == 1).all()
    assert not ss.equal_effort(mutated, minimum)


def test_phrases_follow_the_numbers_both_ways():
    numbers = {"improved_pct_multi": 2.0, "improved_pct_single": 0.0, "teacher_target_met": True,
               "improved_multi": 0, "improved_single": 0, "largest_w_multi": -3.0,
               "largest_w_single": 0.4,
               "fresh_improved_pct_multi": 0.0, "fresh_improved_pct_single": 0.0,
               "fresh_largest_w": 0.5, "fresh_known_off": 0, "fresh_detected": 0}
    assert nr.search_phrase(numbers).startswith("met")
    assert nr.miss_phrase(numbers).startswith("no fit")
    assert nr.fresh_phrase(numbers) == "No selected fit fails it."
    assert "cannot be measured" in nr.detection_phrase(numbers)
    assert "no budget study" in nr.doubling_phrase(numbers)
    numbers.update(improved_pct_multi=12.0, teacher_target_met=False, improved_multi=3,
                   largest_w_multi=4.25,
                   fresh_improved_pct_single=10.0, fresh_largest_w=3.2, fresh_known_off=4,
                   fresh_detected=1, doubling_fits=20, doubling_improved_multi=0,
                   doubling_improved_single=3, doubling_largest_w_multi=0.1,
                   doubling_largest_w_single=7.5)
    assert nr.search_phrase(numbers).startswith("not met") and "12.0%" in nr.search_phrase(numbers)
    assert "largest miss is 4.2 units" in nr.miss_phrase(numbers)
    assert "up to 10%" in nr.fresh_phrase(numbers) and "3.2" in nr.fresh_phrase(numbers)
    assert "1 of those 4 (25%)" in nr.detection_phrase(numbers)
    assert "3 of 20 single-source" in nr.doubling_phrase(numbers)
    assert "7.5 units" in nr.doubling_phrase(numbers)
    numbers.update(doubling_improved_single=0)
    assert nr.doubling_phrase(numbers).startswith("makes none")
