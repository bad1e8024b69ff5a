"""Chapter 7's similarity axis: does the advantage of multi-source training grow with the
measured similarity of the sources (`experiments.edm2_similarity`)?

Per seed and group, the difference multi - single of one metric at the plateau snapshot
(`chapter7_verdicts.seed_differences`: the anchor class, or the average over the group's K
classes; every group of a seed is compared with the same single-source anchor model). The
covariate is the group's measured similarity to the anchor, read from the table's similarity
rows: by default `-log(fcd_to_anchor)` (the groups were chosen roughly evenly in log distance;
`log=False` uses `-fcd_to_anchor`). With similarity (not distance) as the covariate the claim
"the advantage grows with similarity" predicts the same signs as chapter 7's contrast: a
negative slope of NLL and FCD differences, a positive slope of accuracy differences.

Tests, each reduced to one number per seed and read with a t over seeds (`inference`), the
minimum detectable effect beside every non-detection:

* `slope`: each seed's least-squares slope over all groups (family "ch7 similarity slope");
* `slope, one domain`: the same over the groups whose classes all come from the anchor's
  domain - similarity without a change of domain - and `near - far, one domain`: the nearest
  minus the farthest of those groups (family "ch7 within domain");
* `domain at matched similarity`: each group spanning several domains minus the one-domain
  group nearest to it in measured similarity (their gap is reported). It asks whether domain
  matters beyond measured similarity; the hypothesis tested is zero, so a detection reads
  "contradicted" (family "ch7 domain at matched similarity").

Holm within each family, Benjamini-Hochberg beside it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from multisource.readings import chapter7_verdicts as ch7
from multisource.readings import inference as inf
from multisource.readings.claims import tests_for
from multisource.readings.edm2_converged_reading import plateau_table
from multisource.readings.stored import current_or_interim, current_table

EXPERIMENT = "edm2_similarity"
SECTION = "edm2-similarity"   # the section of `claims.TESTS` this module reads
METRICS = ch7.METRICS
SCOPES = ch7.SCOPES
FAMILIES = ("ch7 similarity slope", "ch7 within domain", "ch7 domain at matched similarity")
MEASURES = ("fcd_to_anchor", "fcd_pairwise", "pixel_fd_to_anchor", "pixel_fd_pairwise")


def load_frame(profile: str = "book") -> pd.DataFrame:
    """The stored table of the similarity axis (only when it matches the current code)."""
    return current_table(EXPERIMENT, profile)


def load(profile: str = "book") -> tuple[pd.DataFrame, bool]:
    """(table, interim): the stored table, or while the run is in progress the verified
    finished seeds of its checkpoint (`stored.current_or_interim`)."""
    return current_or_interim(EXPERIMENT, profile)


def planned_seeds(profile: str = "book") -> int:
    """How many seeds the design at `profile` trains."""
    from multisource.experiments.edm2_similarity import PROFILES

    return len(PROFILES[profile].base.seeds)


def finished_seeds(frame: pd.DataFrame) -> int:
    """Seeds with every group and the anchor scored (those the tests read)."""
    if not (frame["kind"] == "multi").any():
        return 0
    return int(seed_table(frame, METRICS[0], SCOPES[0]).shape[0])


def direction(metric: str) -> inf.Direction:
    """The sign chapter 7's `grows_with_similarity` test predicts for `metric`."""
    test = next(t for t in tests_for(7, SECTION) if t.claim == "grows_with_similarity")
    return test.direction(metric)


def _domain(name: str) -> str:
    """'fashion' of 'fashion:Shirt'; names without a prefix belong to one unnamed domain."""
    return name.split(":", 1)[0] if ":" in name else ""


def group_table(frame: pd.DataFrame, measure: str = "fcd_to_anchor", log: bool = True
                ) -> pd.DataFrame:
    """One row per compared group, from the similarity and real-image rows: classes, K, the
    domains of its classes, whether they are one domain and the anchor's (`one_domain`), the
    four measured distances, and `similarity`: -log(measure) (or -measure)."""
    if measure not in MEASURES:
        raise ValueError(f"measure must be one of {', '.join(MEASURES)}, got {measure!r}")
    sim = frame[frame["kind"] == "similarity"]
    real = frame[frame["kind"] == "real"]
    names = dict(zip(real["class"].astype(int), real["class_name"].astype(str), strict=True))
    rows = []
    for row in sim.itertuples(index=False):
        classes = tuple(int(c) for c in str(row.classes).split())
        domains = sorted({_domain(names.get(c, "")) for c in classes})
        anchor_domain = _domain(names.get(classes[0], ""))
        distance = float(getattr(row, measure))
        if not distance > 0:
            raise ValueError(f"group {row.group}: {measure} must be positive, got {distance}")
        rows.append({"group": str(row.group), "classes": " ".join(map(str, classes)),
                     "K": len(classes), "domains": ", ".join(d or "-" for d in domains),
                     "one_domain": domains == [anchor_domain],
                     **{m: float(getattr(row, m)) for m in MEASURES},
                     "similarity": -math.log(distance) if log else -distance})
    return pd.DataFrame(rows)


def covariate(frame: pd.DataFrame, measure: str = "fcd_to_anchor", log: bool = True
              ) -> dict[str, float]:
    """Group name -> similarity covariate (see `group_table`)."""
    table = group_table(frame, measure, log)
    return dict(zip(table["group"], table["similarity"], strict=True))


def matched_pairs(frame: pd.DataFrame, measure: str = "fcd_to_anchor", log: bool = True
                  ) -> pd.DataFrame:
    """Each group spanning several domains beside the one-domain group nearest to it in the
    covariate, with the gap (covariate of the cross-domain group minus the matched one's)."""
    table = group_table(frame, measure, log)
    inside = table[table["one_domain"]]
    out = []
    for row in table[~table["one_domain"]].itertuples(index=False):
        if inside.empty:
            break
        nearest = inside.iloc[int(np.argmin(np.abs(inside["similarity"] - row.similarity)))]
        out.append({"across": row.group, "within": str(nearest["group"]),
                    "gap": float(row.similarity - nearest["similarity"])})
    return pd.DataFrame(out, columns=["across", "within", "gap"])


def seed_table(frame: pd.DataFrame, metric: str, scope: str, arm: str = "plateau"
               ) -> pd.DataFrame:
    """Seeds x groups: multi - single of `metric` (complete seeds only)."""
    return ch7.seed_differences(frame, metric, scope, arm)


def group_estimates(frame: pd.DataFrame, arm: str = "plateau", measure: str = "fcd_to_anchor",
                    log: bool = True) -> pd.DataFrame:
    """Per group, metric and scope: the similarity covariate and the mean multi - single
    difference with its t interval and MDE (the points a slope is fitted through)."""
    groups = group_table(frame, measure, log).set_index("group")
    out = []
    for metric in METRICS:
        for scope in SCOPES:
            table = seed_table(frame, metric, scope, arm)
            for group in table.columns:
                e = inf.t_estimate(table[group])
                out.append({"group": group, "metric": metric, "scope": scope,
                            "similarity": float(groups.loc[group, "similarity"]),
                            measure: float(groups.loc[group, measure]),
                            "one_domain": bool(groups.loc[group, "one_domain"]),
                            "seeds": e.seeds, "diff": e.estimate, "low": e.low, "high": e.high,
                            "mde": e.mde})
    return pd.DataFrame(out)


def _tests(frame: pd.DataFrame, measure: str, log: bool
           ) -> list[tuple[str, str, dict[str, float] | None, dict[str, float] | None]]:
    """(family, test, covariate over its groups or None, contrast weights or None)."""
    groups = group_table(frame, measure, log)
    cov = dict(zip(groups["group"], groups["similarity"], strict=True))
    inside = groups[groups["one_domain"]].sort_values("similarity")
    out: list[tuple[str, str, dict[str, float] | None, dict[str, float] | None]] = [
        (FAMILIES[0], "slope", cov, None)]
    if inside["similarity"].nunique() >= 2:
        out.append((FAMILIES[1], "slope, one domain",
                    {g: cov[g] for g in inside["group"]}, None))
        near, far = str(inside["group"].iloc[-1]), str(inside["group"].iloc[0])
        out.append((FAMILIES[1], "near - far, one domain", None, {near: 1.0, far: -1.0}))
    for pair in matched_pairs(frame, measure, log).itertuples(index=False):
        out.append((FAMILIES[2], f"domain at matched similarity: {pair.across} - {pair.within}",
                    None, {pair.across: 1.0, pair.within: -1.0}))
    return out


def axis_verdicts(frame: pd.DataFrame, arm: str = "plateau", measure: str = "fcd_to_anchor",
                  log: bool = True, metrics: Sequence[str] = METRICS,
                  scopes: Sequence[str] = SCOPES) -> list[inf.Verdict]:
    """Every test of the module docstring per metric and scope, Holm within its family."""
    tables = {(m, s): seed_table(frame, m, s, arm) for m in metrics for s in scopes}
    by_family: dict[str, list[inf.Verdict]] = {f: [] for f in FAMILIES}
    for family, test, cov, weights in _tests(frame, measure, log):
        for metric in metrics:
            for scope in scopes:
                table = tables[(metric, scope)]
                if cov is not None:
                    estimate = inf.trend(table[list(cov)], cov)
                    claim, sign = "grows_with_similarity", direction(metric)
                else:
                    assert weights is not None
                    estimate = inf.contrast(table[list(weights)], weights)
                    matched = family == FAMILIES[2]
                    claim = "similarity_explains_domain" if matched else "grows_with_similarity"
                    sign = "zero" if matched else direction(metric)
                label = {"chapter": "7", "section": "edm2-similarity", "test": test,
                         "metric": metric, "scope": scope, "arm": arm,
                         "covariate": f"-log({measure})" if log else f"-{measure}",
                         "groups": ", ".join(cov if cov is not None else weights)}
                by_family[family].append(inf.verdict(claim, estimate, sign, family=family,
                                                     label=label))
    return [v for family in FAMILIES for v in inf.adjust_family(by_family[family])]


def verdict_table(frame: pd.DataFrame | None = None, arm: str = "plateau",
                  measure: str = "fcd_to_anchor", log: bool = True) -> pd.DataFrame:
    """Tidy table of `axis_verdicts` (slopes are per unit of the covariate), from the stored
    table when no frame is given."""
    frame = load_frame() if frame is None else frame
    return inf.verdict_frame(axis_verdicts(frame, arm, measure, log))


def stopping(frame: pd.DataFrame) -> pd.DataFrame:
    """Per model: seeds, seeds whose stopping rule fired (the others stopped at their cap),
    and seeds whose chosen snapshot is a confirmed minimum (`plateau_table`)."""
    table = plateau_table(frame).assign(model=lambda t: t.model.astype(str))
    out = table.groupby("model", sort=False).agg(
        K=("K", "first"), seeds=("seed", "nunique"),
        fired=("plateau_reached", lambda s: int(s.astype(bool).sum())),
        confirmed=("minimum_confirmed", lambda s: int(s.astype(bool).sum())),
        plateau_step=("plateau_step", "mean"))
    return out.reset_index()


def single_agreement(frame: pd.DataFrame, other: pd.DataFrame) -> pd.DataFrame:
    """Per (seed, model) present in both tables (e.g. this one and `edm2_converged`'s, whose
    models of a seed are seeded identically): the evaluated steps both have, the largest
    absolute difference of the validation bound over them, and whether the stopping rule
    chose the same snapshot. It measures how far two stacks' rounding moves one model."""
    def curves(rows: pd.DataFrame) -> pd.DataFrame:
        rows = rows[rows["kind"] == "curve"]
        return rows.assign(seed=rows["seed"].astype(int), model=rows["model"].astype(str),
                           step=rows["step"].astype(int))[["seed", "model", "step",
                                                            "val_nll_bits"]]

    both = curves(frame).merge(curves(other), on=["seed", "model", "step"],
                               suffixes=("", "_other"))
    snap = {}
    for name, rows in (("", frame), ("_other", other)):
        table = plateau_table(rows).assign(model=lambda t: t.model.astype(str),
                                           seed=lambda t: t.seed.astype(int))
        snap[name] = table.set_index(["seed", "model"])["plateau_step"]
    out = []
    for (seed, model), rows in both.groupby(["seed", "model"]):
        key = (seed, model)
        out.append({"seed": seed, "model": model, "steps": len(rows),
                    "max_abs_diff_bits": float((rows["val_nll_bits"]
                                                - rows["val_nll_bits_other"]).abs().max()),
                    "same_snapshot": bool(key in snap[""].index and key in snap["_other"].index
                                          and snap[""][key] == snap["_other"][key])})
    return pd.DataFrame(out)


TEST_WORDS = {"slope": "Slope over all groups",
              "slope, one domain": "Slope over the groups inside the anchor's domain",
              "near - far, one domain": "Nearest minus farthest group inside the anchor's "
                                        "domain"}


def test_sentence(table: pd.DataFrame, test: str) -> str:
    """'**<test>**: in the held-out NLL bound, the anchor supported: ... ; the K-average ...;
    in FCD ...' from `verdict_table`'s rows of one test."""
    title = TEST_WORDS.get(test, test[:1].upper() + test[1:])
    return f"**{title}**: " + ch7.by_metric(table[table.test == test])
