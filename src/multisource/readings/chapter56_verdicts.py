"""Chapters 5-6: the network sweeps' ratios read with calibrated tests.

Per setting (K, n, beta_sim) the ratio of mean risks multi / single is tested against the
Fisher prediction (ratio of the mean predicted risks) and the count prediction
sqrt(1 - (K-1)/K beta_sim) with `inference.ratio_test` (t test of multi - r0 single over
seeds, Fieller interval), Holm over the settings of a chapter, metric and prediction. The
sign of (ratio - Fisher) across settings gets an exact sign test; the budget curve's last
doubling is a paired per-seed change of the ratio (linearised: each seed's residual
(multi - R single) / mean(single) at the larger budget minus the same at the smaller one).
"""

from __future__ import annotations

import pandas as pd

from multisource.readings import inference as inf
from multisource.readings.fit_choice import most_likely
from multisource.readings.ratio_tests import seed_ratio_changes
from multisource.readings.stored import current_table

EXPERIMENTS = {5: "autoregressive_neural", 6: "energy_mlp"}
SETTING = ["K", "n", "beta_sim"]


def load(chapter: int, profile: str = "book") -> pd.DataFrame:
    """The stored sweep of chapter 5 (neural AR) or 6 (spin MLP), provenance-checked, with
    the most likely fit found per seed (`fit_choice.most_likely`)."""
    return most_likely(current_table(EXPERIMENTS[chapter], profile))


def prediction_tests(frame: pd.DataFrame, metric: str = "tv") -> pd.DataFrame:
    """Per setting and prediction: seeds, ratio, Fieller interval, p, Holm-adjusted p (over
    the settings of one prediction) and whether it rejects after Holm."""
    rows = []
    for setting, group in frame.groupby(SETTING, sort=True):
        multi, single = group[f"{metric}_multi"], group[f"{metric}_single"]
        predictions = {"count": float(group["theory_ratio"].iloc[0])}
        if f"fisher_{metric}_multi" in group:
            predictions["fisher"] = float(group[f"fisher_{metric}_multi"].mean()
                                          / group[f"fisher_{metric}_single"].mean())
        for name, value in predictions.items():
            e = inf.ratio_test(multi, single, value)
            rows.append({**dict(zip(SETTING, setting, strict=True)), "prediction": name,
                         "predicted": value, "seeds": e.seeds, "ratio": e.estimate,
                         "low": e.low, "high": e.high, "p": e.p, "mde": e.mde})
    out = pd.DataFrame(rows)
    out["p_holm"] = out.groupby("prediction")["p"].transform(lambda p: pd.Series(
        inf.holm(p.to_numpy()), index=p.index))
    out["rejects"] = out["p"] <= inf.ALPHA
    out["rejects_holm"] = out["p_holm"] <= inf.ALPHA
    return out


def below_fisher(frame: pd.DataFrame, metric: str = "tv") -> dict[str, float]:
    """Exact sign test across settings of 'the ratio lies below the Fisher prediction'."""
    tests = prediction_tests(frame, metric)
    fisher = tests[tests["prediction"] == "fisher"]
    above, nonzero, p = inf.sign_test(fisher["ratio"] - fisher["predicted"])
    return {"below": nonzero - above, "settings": nonzero, "p": p}


def last_doubling(frame: pd.DataFrame, low: int = 40, high: int = 80, metric: str = "tv"
                  ) -> inf.Estimate:
    """The paired per-seed change of the ratio of mean risks from `low` to `high` random
    starts, over the seeds that carry both budgets."""
    return inf.t_estimate(seed_ratio_changes(frame, f"R{low}", f"R{high}", metric))
