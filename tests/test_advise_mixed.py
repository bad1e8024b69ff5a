"""Partial pooling by sample size and the conditional family, against statsmodels."""

from __future__ import annotations

import importlib.resources
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
import statsmodels.formula.api as smf

from multisource.pooling.advise import advise
from multisource.pooling.conditional import LinearGaussian
from multisource.pooling.shrinkage import fit_random_intercept, group_sums, shrinkage_weights


def grunfeld() -> pd.DataFrame:
    return sm.datasets.grunfeld.load_pandas().data


def dietox() -> pd.DataFrame:
    """statsmodels ships dietox with its tests (72 pigs, Weight by Time)."""
    path = importlib.resources.files("statsmodels.regression.tests.results") / "dietox.csv"
    return pd.read_csv(path)


def _ours_and_mixedlm(frame: pd.DataFrame, response: str, features: list[str], group: str
                      ) -> tuple[object, object, np.ndarray]:
    codes, names = pd.factorize(frame[group], sort=True)
    X = np.column_stack([np.ones(len(frame))] + [frame[c].to_numpy(float) for c in features])
    ours = fit_random_intercept(group_sums(X, frame[response].to_numpy(float), codes,
                                           len(names)))
    formula = f"{response} ~ " + (" + ".join(features) if features else "1")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = smf.mixedlm(formula, frame, groups=frame[group]).fit(reml=True)
    effects = np.array([theirs.random_effects[k].iloc[0] for k in names])
    return ours, theirs, effects


def _simulated() -> pd.DataFrame:
    rng = np.random.default_rng(11)
    sizes = rng.integers(2, 60, 25)
    group = np.repeat(np.arange(25), sizes)
    x = rng.standard_normal(group.size)
    y = 1.0 + 0.5 * x + rng.normal(0, 0.8, 25)[group] + rng.standard_normal(group.size)
    return pd.DataFrame({"y": y, "x": x, "g": group})


@pytest.mark.parametrize("case", ["grunfeld_mean", "grunfeld_regression", "dietox_regression",
                                  "simulated_mean", "simulated_regression"])
def test_random_intercept_matches_mixedlm(case: str) -> None:
    """Predicted random effects (and fixed effects, variances) agree to 1e-3 of their scale."""
    data, features = {"grunfeld_mean": (grunfeld(), []),
                      "grunfeld_regression": (grunfeld(), ["value", "capital"]),
                      "dietox_regression": (dietox(), ["Time"]),
                      "simulated_mean": (_simulated(), []),
                      "simulated_regression": (_simulated(), ["x"])}[case]
    response, group = {"grunfeld": ("invest", "firm"), "dietox": ("Weight", "Pig"),
                       "simulated": ("y", "g")}[case.split("_")[0]]
    ours, theirs, effects = _ours_and_mixedlm(data, response, features, group)
    scale = np.abs(effects).max()
    assert np.abs(ours.effects - effects).max() <= 1e-3 * scale
    np.testing.assert_allclose(ours.beta, theirs.fe_params.to_numpy(), rtol=1e-3,
                               atol=1e-3 * scale)
    assert ours.sigma2 == pytest.approx(theirs.scale, rel=1e-3)
    assert ours.tau2 == pytest.approx(float(theirs.cov_re.iloc[0, 0]), rel=1e-3)


def test_shrinkage_grows_with_sample_size() -> None:
    frame = _simulated()
    codes = frame.g.to_numpy()
    fit = fit_random_intercept(group_sums(np.ones((len(frame), 1)), frame.y.to_numpy(), codes,
                                          25))
    n = np.bincount(codes)
    weights = shrinkage_weights(fit, n)
    assert np.all(np.diff(weights[np.argsort(n)]) >= 0) and 0 < weights.min() < weights.max() < 1


def test_linear_family_fits_are_statsmodels_ols() -> None:
    """Separate = OLS per firm, pooled = pooled OLS, shrunk = MixedLM random intercept."""
    frame = grunfeld()
    codes, names = pd.factorize(frame.firm, sort=True)
    x = frame[["invest", "value", "capital"]].to_numpy(float)
    family = LinearGaussian(response=0)
    separate, pooled = family.fit_pair(x, codes, len(names), np.zeros(3, bool))
    for k, name in enumerate(names):
        ols = smf.ols("invest ~ value + capital", frame[frame.firm == name]).fit()
        np.testing.assert_allclose(separate["coef"][k], ols.params.to_numpy(), rtol=1e-7)
    ols = smf.ols("invest ~ value + capital", frame).fit()
    np.testing.assert_allclose(pooled["coef"][0], ols.params.to_numpy(), rtol=1e-7)
    assert pooled["var"][0] == pytest.approx(ols.ssr / len(frame), rel=1e-10)
    shrunk = family.fit_shrunk_data(x, codes, len(names), np.zeros(3, bool))
    _, theirs, effects = _ours_and_mixedlm(frame, "invest", ["value", "capital"], "firm")
    intercepts = theirs.fe_params.iloc[0] + effects
    assert np.abs(shrunk["coef"][:, 0] - intercepts).max() <= 1e-3 * np.abs(effects).max()


def test_advise_linear_on_grunfeld_and_dietox() -> None:
    """Firms differ in level (statsmodels: per-firm OLS and the mixed model beat pooled OLS by
    AIC); advise finds pooling the regression clearly worse, per source too."""
    frame = grunfeld()
    codes, names = pd.factorize(frame.firm, sort=True)
    x = frame[["invest", "value", "capital"]].to_numpy(float)
    advice = advise(x, codes, LinearGaussian(response=0), folds=5, source_names=list(names))
    assert advice.recommendation != "pooled"
    assert next(c for c in advice.comparisons if c.other == "pooled").difference.low > 0
    pigs = dietox()
    codes, names = pd.factorize(pigs.Pig, sort=True)
    advice = advise(pigs[["Weight", "Time"]].to_numpy(float), codes,
                    LinearGaussian(response=0), folds=5)
    assert advice.recommendation in ("separate", "shrunk", "partial")
    assert next(c for c in advice.comparisons if c.other == "pooled").difference.low > 0
