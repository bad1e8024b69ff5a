"""Which fit stands for the maximum-likelihood estimate in chapters 5-6, and how well the
optimiser's diagnostics tell good fits from bad ones against the most likely fit found.

The theory speaks of the maximum-likelihood estimate, the global maximiser; a sweep stores
several fits of each estimator per seed: the restart rule's random search, the run started at
the teacher, an independent fresh block of starts and, at the default setting, the largest
fixed restart budget. `most_likely` takes, per seed, the most likely of them (per source
network for the single-source estimator, whose networks share nothing) as the estimate;
`fit_sources` says which search found it and how much it gains over the rule's fit;
`calibration` measures the diagnostics per kind of fit against it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from multisource.readings.sweep_stats import METRICS, in_w

SEARCHES = ("rule", "budget", "fresh", "teacher")
ESTIMATORS = ("multi", "single")


def has_most_likely(frame: pd.DataFrame) -> bool:
    """Whether the sweep stored the most likely fit found (`best_*` columns)."""
    return all(f"best_nll_{name}" in frame for name in ESTIMATORS)


def most_likely(frame: pd.DataFrame) -> pd.DataFrame:
    """The same sweep with every fit replaced by the most likely fit any search found for its
    seed (`best_*` columns); tables stored before those columns existed keep their fits. The
    replaced values stay as `selected_<metric>_<estimator>` (the rule's fit or the teacher
    start, the more likely). Applied twice, it changes nothing more."""
    out = frame.copy()
    for name in ESTIMATORS:
        if f"best_nll_{name}" not in frame or f"selected_nll_{name}" in frame:
            continue   # nothing stored, or already replaced
        have = frame[f"best_nll_{name}"].notna()
        for metric in (*METRICS, "nll", "gap"):
            out[f"selected_{metric}_{name}"] = frame[f"{metric}_{name}"]
            out[f"{metric}_{name}"] = np.where(have, frame[f"best_{metric}_{name}"],
                                               frame[f"{metric}_{name}"])
    return out


def selected_fits(frame: pd.DataFrame) -> pd.DataFrame:
    """The inverse of `most_likely`: every fit back to the selected fit (rule or teacher
    start, the more likely), where `most_likely` kept it."""
    out = frame.copy()
    for name in ESTIMATORS:
        for metric in (*METRICS, "nll", "gap"):
            if f"selected_{metric}_{name}" in frame:
                out[f"{metric}_{name}"] = frame[f"selected_{metric}_{name}"]
    return out


def best_known_nll(frame: pd.DataFrame, name: str) -> pd.Series:
    """The lowest mean NLL of any fit known for each seed's data: the selected fit's gap to the
    best of the whole-network fits (rule, teacher start, fresh block, under-converged
    reference) and, where stored, the most likely fit (per network)."""
    nll = frame.get(f"selected_nll_{name}", frame[f"nll_{name}"])
    known = nll - frame[f"fit_gap_to_best_{name}"]
    if f"best_nll_{name}" in frame:
        known = np.fmin(known, frame[f"best_nll_{name}"])
    return known


def fit_sources(frame: pd.DataFrame, tolerance: float) -> pd.DataFrame:
    """Per estimator: which search found the most likely fit (share of source networks for
    the single-source estimator, of fits for the multi-source one), and how often and by how
    much (units of W) it beats the rule's random search and the selected fit."""
    rows = []
    for name in ESTIMATORS:
        labels = frame[f"best_found_by_{name}"].astype(str).str.split(";").explode()
        gain_rule = frame[f"best_gain_over_rule_{name}"]
        gain_fit = frame[f"best_gain_over_fit_{name}"]
        rows.append({"estimator": name, "fits": len(frame), "networks": len(labels),
                     **{f"found by {s}": float((labels == s).mean()) for s in SEARCHES},
                     "beats the rule": int((gain_rule > tolerance).sum()),
                     "beats the selected fit": int((gain_fit > tolerance).sum()),
                     "largest W over the selected fit": float(gain_fit.max())})
    return pd.DataFrame(rows)


KINDS = {
    "random search (rule)": ("search_nll", "search_projected_gradient", "search_wilks_pass"),
    "under-converged reference": (None, "poor_projected_gradient", "poor_wilks_pass"),
}


def calibration(frame: pd.DataFrame, tolerance: float) -> pd.DataFrame:
    """Error rates of two diagnostics per kind of fit, each fit counted once.

    Kinds: the restart rule's random-search fits (what a practitioner has) and deliberately
    under-converged reference fits (one start stopped after a short run). A fit is "bad"
    when the most likely fit known for its data (`best_known_nll`) beats it by more than
    `tolerance` units of W. Diagnostics: `converged` (final projected gradient within the
    fit's tolerance) and the Wilks lower-quantile test. A row `both kinds` pools them (distinct
    fits). Returns per kind and diagnostic: bad and good fits, false-pass rate (bad fits
    passing) and false-fail rate (good fits failing)."""
    pgtol = frame.attrs.get("tolerance")
    parts = []
    for kind, (nll_column, pg, wilks) in KINDS.items():
        for name in ESTIMATORS:
            best = best_known_nll(frame, name)
            if nll_column is None:   # stored as its gap to the whole-network best
                whole = (frame.get(f"selected_nll_{name}", frame[f"nll_{name}"])
                         - frame[f"fit_gap_to_best_{name}"])
                nll = whole + frame[f"poor_gap_{name}"]
            else:
                nll = frame[f"{nll_column}_{name}"]
            parts.append(pd.DataFrame({
                "kind": kind, "estimator": name,
                "bad": in_w(frame, nll - best) > tolerance,
                "converged": frame[f"{pg}_{name}"] <= pgtol,
                "wilks": frame[f"{wilks}_{name}"].astype(bool)}))
    fits = pd.concat(parts, ignore_index=True)
    rows = []
    for kind, group in [*fits.groupby("kind", sort=False), ("both kinds", fits)]:
        for diagnostic in ("converged", "wilks"):
            bad, good = group[group.bad], group[~group.bad]
            rows.append({"kind": kind, "diagnostic": diagnostic, "bad fits": len(bad),
                         "good fits": len(good),
                         "false pass": float(bad[diagnostic].mean()) if len(bad) else np.nan,
                         "false fail": float((~good[diagnostic]).mean()) if len(good)
                         else np.nan})
    return pd.DataFrame(rows)
