"""The inference layer: t readings, trends, contrasts, multiplicity, power, verdict wording,
and its measured coverage at 4, 8 and 20 seeds."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import ttest_1samp

from multisource.readings import inference as inf
from multisource.readings.coverage import coverage_table


def test_t_estimate_matches_scipy() -> None:
    values = np.array([0.3, -0.1, 0.5, 0.2, 0.4])
    e = inf.t_estimate(values)
    ref = ttest_1samp(values, 0.0)
    assert e.p == pytest.approx(ref.pvalue)
    low, high = ref.confidence_interval(0.95)
    assert (e.low, e.high) == (pytest.approx(low), pytest.approx(high))
    assert e.seeds == 5 and e.df == 4
    with pytest.raises(ValueError, match="at least 2"):
        inf.t_estimate([1.0])


def test_paired_differences_align_on_seed() -> None:
    a = pd.Series([1.0, 2.0, 3.0], index=[0, 1, 2])
    b = pd.Series([0.5, 1.0], index=[2, 0])
    diff = inf.paired_differences(a, b)
    assert diff.to_dict() == {0: 0.0, 2: 2.5}


def test_holm_and_benjamini_hochberg_by_hand() -> None:
    p = [0.01, 0.04, 0.03, 0.005]
    assert inf.holm(p) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert inf.benjamini_hochberg(p) == pytest.approx([0.02, 0.04, 0.04, 0.02])
    assert inf.holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])


def test_trend_is_per_seed_slope_and_equals_fixed_effects_estimate() -> None:
    rng = np.random.default_rng(1)
    x = {3: math.log(3), 5: math.log(5), 10: math.log(10)}
    table = pd.DataFrame({k: 1.0 - 0.3 * v + 0.05 * rng.standard_normal(6)
                          for k, v in x.items()})
    slopes = inf.seed_slopes(table, x)
    for seed in table.index:
        assert slopes[seed] == pytest.approx(np.polyfit(list(x.values()), table.loc[seed], 1)[0])
    # balanced design: the mean of per-seed slopes is the seed-fixed-effects OLS slope
    xc = np.array(list(x.values())) - np.mean(list(x.values()))
    yc = table.to_numpy() - table.to_numpy().mean(axis=1, keepdims=True)
    assert inf.trend(table, x).estimate == pytest.approx((yc * xc).sum() / (6 * (xc ** 2).sum()))
    # a covariate measured per seed
    measured = pd.DataFrame({k: [v] * 6 for k, v in x.items()})
    assert inf.trend(table, measured).estimate == pytest.approx(inf.trend(table, x).estimate)


def test_contrast_needs_weights_summing_to_zero() -> None:
    table = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [0.0, 1.5, 2.0]})
    assert inf.contrast(table, {"a": 1, "b": -1}).estimate == pytest.approx(2.5 / 3)
    with pytest.raises(ValueError, match="sum to zero"):
        inf.contrast(table, {"a": 1, "b": 1})


def test_ratio_test_fieller_interval_inverts_the_test() -> None:
    rng = np.random.default_rng(3)
    single = pd.Series(1.0 + 0.1 * rng.standard_normal(8))
    multi = pd.Series(0.8 * single + 0.05 * rng.standard_normal(8))
    e = inf.ratio_test(multi, single, null=0.8)
    assert e.low < e.estimate < e.high
    for end in (e.low, e.high):        # at an end of the interval the test sits at 5%
        assert inf.ratio_test(multi, single, null=end).p == pytest.approx(0.05, abs=1e-6)


def test_sign_test() -> None:
    assert inf.sign_test([-1, -2, -3, -4, -5, -6, -7, -8]) == (0, 8, pytest.approx(2 / 256))
    assert inf.sign_test([1, -1, 0])[1] == 2


def test_minimum_detectable_effect_has_the_stated_power() -> None:
    mde = inf.minimum_detectable_effect(1.0, 8)
    assert inf.detection_power(mde, 1.0, 8) == pytest.approx(0.8, abs=1e-6)
    # many seeds: the normal approximation (z_0.975 + z_0.8) sd / sqrt(n)
    assert inf.minimum_detectable_effect(1.0, 2000) == pytest.approx(2.8016 / math.sqrt(2000),
                                                                     rel=2e-3)


def test_percentile_bootstrap_refused_below_ten_seeds() -> None:
    with pytest.raises(ValueError, match="at least 10 seeds"):
        inf.percentile_bootstrap(np.arange(9.0))
    low, high = inf.percentile_bootstrap(np.arange(10.0))
    assert low < 4.5 < high


def test_verdict_outcomes_and_wording() -> None:
    strong = inf.t_estimate([-0.30, -0.32, -0.29, -0.31, -0.33, -0.28])
    assert inf.verdict("c", strong, "negative").outcome == "supported"
    assert inf.verdict("c", strong, "positive").outcome == "contradicted"
    assert inf.verdict("c", strong, "zero").outcome == "contradicted"
    assert inf.verdict("c", strong, "negative").phrase() == "supported: -0.30 [-0.32, -0.29]"
    weak = inf.t_estimate([0.1, -0.2, 0.15, -0.05])
    text = inf.verdict("c", weak, "negative").phrase()
    assert text.startswith("not detected (MDE ") and "no effect" not in text
    assert "deviation not detected" in inf.verdict("c", weak, "zero").phrase()
    # Holm can turn a nominal rejection away, and says so
    family = inf.adjust_family([inf.verdict("c", inf.t_estimate([0.2, 0.5, 0.1, 0.4]),
                                            "positive")] * 4)
    assert family[0].p <= 0.05 < family[0].p_adjusted
    assert family[0].outcome == "not detected" and "after Holm" in family[0].phrase()
    table = inf.verdict_frame(family)
    assert {"p_holm", "p_bh", "mde", "outcome", "phrase"} <= set(table.columns)


def test_measured_coverage_at_4_8_20_seeds() -> None:
    table = coverage_table(seeds=(4, 8, 20), replications=2000, draws=500, seed=2025)
    grid = table.set_index(["method", "distribution", "seeds"])["coverage"]
    for method in ("t: mean difference", "t: per-seed slope"):
        for distribution in ("normal", "t3"):
            for seeds in (4, 8, 20):
                assert grid[(method, distribution, seeds)] >= 0.93, (method, distribution, seeds)
    # the per-seed slope also under moderate skew
    for seeds in (4, 8, 20):
        assert grid[("t: per-seed slope", "lognormal 0.5", seeds)] >= 0.93
    # why not the others: the bootstrap at 4 seeds and fixed effects with varying slopes
    assert grid.xs(4, level="seeds").loc["percentile bootstrap: mean difference"].max() < 0.85
    assert grid.loc["fixed effects: slope"].max() < 0.93
    # the known limitation, pinned: strong skew defeats a t interval of a mean at few seeds
    assert grid[("t: mean difference", "lognormal 1", 4)] < 0.9
