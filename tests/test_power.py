"""The minimum detectable effect is checked against simulated t-tests, not against its formula."""

import math

import numpy as np
import pytest
from scipy import stats

from multisource.common.validation import InputError
from multisource.readings.power import (
    detection_power,
    mde_of,
    minimum_detectable_effect,
    seeds_for_mde,
)


@pytest.mark.parametrize("seeds", [5, 12])
def test_simulated_t_tests_reject_at_the_mde_with_the_stated_power(seeds):
    rng = np.random.default_rng(seeds)
    sd = 0.8
    mde = minimum_detectable_effect(sd, seeds)
    draws = rng.normal(mde, sd, size=(20_000, seeds))
    p = stats.ttest_1samp(draws, 0.0, axis=1).pvalue
    rate = float((p < 0.05).mean())
    assert abs(rate - 0.8) < 0.015, rate          # binomial SE at 20k draws is 0.003


def test_power_at_zero_effect_is_the_test_level():
    assert detection_power(0.0, 1.0, 7) == pytest.approx(0.05, abs=1e-9)


def test_mde_shrinks_like_one_over_root_seeds_for_many_seeds():
    ratio = minimum_detectable_effect(1.0, 400) / minimum_detectable_effect(1.0, 100)
    assert ratio == pytest.approx(0.5, abs=0.01)
    # and the normal approximation (z_{0.975} + z_{0.8}) sd / sqrt(S) at large S
    normal = (stats.norm.ppf(0.975) + stats.norm.ppf(0.8)) / math.sqrt(400)
    assert minimum_detectable_effect(1.0, 400) == pytest.approx(normal, rel=0.01)


def test_seeds_for_mde_is_the_fewest_that_reach_the_target():
    seeds = seeds_for_mde(1.0, 0.5)
    assert minimum_detectable_effect(1.0, seeds) <= 0.5 < minimum_detectable_effect(1.0, seeds - 1)


def test_mde_of_uses_the_differences_sd_and_ignores_nan():
    values = np.array([0.1, -0.3, 0.4, np.nan, 0.2])
    assert mde_of(values) == pytest.approx(
        minimum_detectable_effect(float(np.nanstd(values, ddof=1)), 4))
    assert math.isnan(mde_of(np.array([1.0])))


def test_bad_inputs_name_the_parameter():
    with pytest.raises(InputError, match="seeds"):
        minimum_detectable_effect(1.0, 1)
    with pytest.raises(InputError, match="power"):
        minimum_detectable_effect(1.0, 5, power=1.5)
