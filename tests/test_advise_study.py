"""Chapter 8's study of `advise`: the KL criterion, ties and regret from per-data-set values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from multisource.pooling import misspecified as ms
from multisource.pooling.evaluate import (
    LAWS,
    TIE_TV,
    advice_trials,
    average_kl,
    summarise_trials,
)


@pytest.mark.parametrize("law", ["gaussian", "student-t"])
def test_exact_kl_matches_monte_carlo(law: str) -> None:
    """KL(p* || N(m, v)) in closed form against a Monte Carlo mean of log p* - log p_hat."""
    setting = ms.MisspecifiedGaussian(3, 4, 0, 0.7)
    noise = LAWS[law]
    rng = np.random.default_rng(1)
    params = {"mean": setting.means + 0.3 * rng.standard_normal(setting.means.shape),
              "var": rng.uniform(0.5, 2.0, setting.means.shape)}
    m = 400_000
    estimate = 0.0
    for k in range(setting.K):
        z = noise.draw(rng, (m, setting.d))
        x = setting.means[k] + z
        log_fit = -0.5 * (((x - params["mean"][k]) ** 2) / params["var"][k]
                          + np.log(2 * np.pi * params["var"][k])).sum(axis=1)
        values = noise.logpdf(z).sum(axis=1) - log_fit
        estimate += setting.p[k] * values.mean()
        se = values.std() / np.sqrt(m)
    exact = average_kl(setting, noise, params)
    assert abs(exact - estimate) < 5 * se * np.sqrt(setting.K)


def _trials(picks: list[str], pooled: list[float], separate: list[float],
            clear: list[bool]) -> pd.DataFrame:
    return pd.DataFrame({"binary": picks, "recommendation": picks, "clear": clear,
                         "verdict": ["clear" if c else "within noise" for c in clear],
                         "tv_pooled": pooled, "tv_separate": separate,
                         "kl_pooled": pooled, "kl_separate": separate,
                         "tv_advised": [p if k == "pooled" else s
                                        for k, p, s in zip(picks, pooled, separate, strict=True)]})


def test_regret_comes_from_the_data_sets_not_from_accuracy_times_gap() -> None:
    """The rule is wrong half the time but only where the wrong fit is as good: regret 0,
    whereas (1 - accuracy) * gap would be half the gap."""
    pooled = [0.10, 0.20, 0.10, 0.20]
    separate = [0.30, 0.20, 0.30, 0.20]        # pooled better on average by 0.1
    picks = ["pooled", "separate", "pooled", "separate"]
    out = summarise_trials(_trials(picks, pooled, separate, [False] * 4))
    assert out["truly_better_tv"] == "pooled" and out["accuracy_tv"] == 0.5
    assert out["regret_tv"] == pytest.approx(0.0)
    assert (1 - out["accuracy_tv"]) * out["risk_gap_tv"] == pytest.approx(0.05)


def test_a_gap_below_the_threshold_is_a_tie_and_clear_wrong_calls_are_counted() -> None:
    tiny = TIE_TV / 4
    pooled = [0.2, 0.2, 0.2, 0.2]
    out = summarise_trials(_trials(["separate"] * 4, pooled, [0.2 + tiny] * 4, [True] * 4))
    assert out["truly_better_tv"] == "tie" and out["clear_wrong_tv"] == 0.0
    out = summarise_trials(_trials(["separate"] * 4, pooled, [0.25] * 4,
                                   [True, False, True, False]))
    assert out["truly_better_tv"] == "pooled" and out["clear_wrong_tv"] == 0.5


def test_the_study_far_below_the_crossover_picks_pooled_on_both_criteria() -> None:
    """At n*/4 both true criteria favour pooling and the rule picks it nearly always."""
    setting = ms.MisspecifiedGaussian(2, 10, 0, 0.3)
    n = max(ms.crossover(setting) // 4, 40)
    trials = advice_trials(setting, LAWS["gaussian"], n, 40, 20, seed=3)
    for family, part in trials.groupby("family"):
        out = summarise_trials(part)
        assert out["lower_risk_tv"] == "pooled" and out["lower_risk_kl"] == "pooled", family
        assert out["accuracy_kl"] >= 0.8, (family, out)
        assert out["regret_kl"] < 0.01, (family, out)


def test_t_quantile_expansion_matches_scipy_for_large_df() -> None:
    from scipy import special

    from multisource.pooling.crossover import LARGE_DF, t_quantile

    for df in (LARGE_DF, 1000, 10**6):
        for p in (0.9, 0.975, 0.99875, 0.99999):
            assert abs(t_quantile(df, p) - special.stdtrit(df, p)) < 1e-8


def test_vectorised_random_intercepts_match_the_column_by_column_fit() -> None:
    """`fit_random_intercepts` (every column at once) against `fit_random_intercept`."""
    from multisource.pooling.shrinkage import (
        GroupSums,
        fit_random_intercept,
        fit_random_intercepts,
    )

    rng = np.random.default_rng(0)
    for tau in (0.0, 0.05, 0.3, 2.0):
        for _ in range(10):
            K, p = int(rng.integers(2, 12)), 3
            n = rng.integers(3, 60, K).astype(float)
            x = [rng.standard_normal((int(c), p)) + tau * rng.standard_normal(p) for c in n]
            s = np.array([v.sum(axis=0) for v in x])
            q = np.array([(v**2).sum(axis=0) for v in x])
            means, sigma2 = fit_random_intercepts(n, s, q)
            for j in range(p):
                fit = fit_random_intercept(GroupSums(n, n[:, None, None], s[:, j:j + 1],
                                                     q[:, j], n[:, None], s[:, j]))
                assert np.abs(fit.beta[0] + fit.effects - means[:, j]).max() < 1e-6
                assert abs(fit.sigma2 - sigma2[j]) < 1e-6
