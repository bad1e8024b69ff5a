"""The fit that stands for the maximum-likelihood estimate (the most likely found) and the
diagnostics' error rates per kind of fit against it."""

from __future__ import annotations

import numpy as np
import pandas as pd

from multisource.readings import fit_choice as fc

RISKS = ("tv", "hellinger", "sqrt_kl", "nll", "gap")


def test_most_likely_takes_the_best_fit_where_one_is_stored_and_keeps_the_selected():
    frame = pd.DataFrame({f"{p}{m}_{e}": v for p, v in (("", [0.1, 0.1]), ("best_", [0.3, None]))
                          for m in RISKS for e in ("multi", "single")})
    out = fc.most_likely(frame)
    assert out.tv_multi.tolist() == [0.3, 0.1] and out.nll_single.tolist() == [0.3, 0.1]
    assert out.selected_tv_multi.tolist() == [0.1, 0.1]
    assert frame.tv_multi.tolist() == [0.1, 0.1]              # the input is left alone
    assert fc.selected_fits(out)[frame.columns].equals(frame)
    old = frame[[c for c in frame if not c.startswith("best_")]]
    assert fc.most_likely(old).equals(old)                   # tables stored before the columns


def _fits(n: int = 100) -> pd.DataFrame:
    """Four seeds; the selected fit's NLL 1.0 is the best of the whole-network fits."""
    frame = pd.DataFrame({"n": [n] * 4})
    for e in ("multi", "single"):
        frame[f"nll_{e}"] = 1.0
        frame[f"fit_gap_to_best_{e}"] = 0.0
        frame[f"search_nll_{e}"] = [1.0, 1.0, 1.0, 1.02]     # the last one is 4 W off
        frame[f"poor_gap_{e}"] = 0.5                           # 100 W off: all bad
        for kind in ("search_", "poor_", ""):
            frame[f"{kind}projected_gradient_{e}"] = 1e-9
            frame[f"{kind}wilks_pass_{e}"] = True
    frame.attrs["tolerance"] = 1e-6
    return frame


def test_calibration_counts_every_fit_once_per_kind():
    table = fc.calibration(_fits(), tolerance=1.0).set_index(["kind", "diagnostic"])
    search = table.loc[("random search (rule)", "converged")]
    assert (search["bad fits"], search["good fits"]) == (2, 6)   # one bad seed x 2 estimators
    assert search["false pass"] == 1.0 and search["false fail"] == 0.0
    poor = table.loc[("under-converged reference", "converged")]
    assert (poor["bad fits"], poor["good fits"]) == (8, 0) and np.isnan(poor["false fail"])
    both = table.loc[("both kinds", "converged")]
    assert both["bad fits"] + both["good fits"] == 16             # 2 kinds x 2 estimators x 4


def test_a_fit_the_most_likely_fit_beats_is_bad_even_if_it_was_the_best_whole_fit():
    frame = _fits()
    base = fc.calibration(frame, 1.0).set_index(["kind", "diagnostic"])
    assert base.loc[("random search (rule)", "wilks"), "bad fits"] == 2
    frame["best_nll_single"] = [0.98, 1.0, 1.0, 1.0]   # per network: 4 W better on seed 0
    frame["best_nll_multi"] = 1.0
    moved = fc.calibration(frame, 1.0).set_index(
        ["kind", "diagnostic"])
    assert moved.loc[("random search (rule)", "wilks"), "bad fits"] == 3


def test_fit_sources_count_searches_per_network():
    frame = pd.DataFrame({"best_found_by_multi": ["rule", "fresh"],
                          "best_found_by_single": ["rule;rule;teacher", "budget;rule;rule"],
                          "best_gain_over_rule_multi": [0.0, 3.0],
                          "best_gain_over_fit_multi": [0.0, 2.0],
                          "best_gain_over_rule_single": [5.0, 0.5],
                          "best_gain_over_fit_single": [0.0, 0.5]})
    table = fc.fit_sources(frame, tolerance=1.0).set_index("estimator")
    assert table.loc["single", "networks"] == 6
    assert table.loc["single", "found by rule"] == 4 / 6
    assert table.loc["multi", "found by fresh"] == 0.5
    assert table.loc["single", "beats the rule"] == 1 and table.loc["single",
                                                                    "beats the selected fit"] == 0
    assert table.loc["multi", "largest W over the selected fit"] == 2.0
