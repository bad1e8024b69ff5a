"""The scorecard: each of the paper's claims (`readings.claims`) against the evidence of every
chapter that tests it, as one table of verdicts.

Every cell is computed here from a stored, provenance-checked table, so no verdict is typed by
hand anywhere in the book: the scorecard page and the chapters' summaries glue these rows.

- Chapter 2: Theorem 3.2's bound with this project's explicit constants against the exact
  expected risks of chapter 4's settings; the row also says how loose the bound is and how
  large an error in the bracketing entropy the check could detect.
- Chapter 4 (Gaussian): exact expected risks, no sampling error. A claim holds or fails at every
  setting of the three sweeps; an equality claim (the bound-ratio prediction) is read as the
  exact deviation and whether it shrinks with n.
- Chapters 5 and 6 (neural AR, spin MLP): per-seed paired tests (`readings.inference`): the
  multi - single risk at the default setting, and trends of the per-seed log risk ratio over
  log K and over beta_sim on the seeds that every setting of the sweep shares; Holm within the
  chapter. The ratio predictions: the paired t test of measured - predicted ratio per setting
  (`readings.ratio_tests`, the test the chapters use), Holm over settings.
- Chapter 7 (EDM2 miniature): `readings.chapter7_verdicts.verdict_table`, at the plateau
  snapshot, Holm within the chapter's family; and the similarity axis
  (`readings.similarity_axis`): per-seed slopes of multi - single over measured similarity,
  Holm within each of its families (an interim reading while its run is in progress says so).

Metrics are labelled by what they speak to: the theory bounds likelihood-type risks (TV,
Hellinger, sqrt(KL), the held-out NLL bound); FCD and class-consistency accuracy are what
practitioners measure, and the paper's own bound says nothing about them directly.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd

from multisource.readings import chapter7_verdicts, chapter56_verdicts, similarity_axis
from multisource.readings.claims import CLAIMS
from multisource.readings.fit_choice import most_likely
from multisource.readings.inference import (
    adjust_family,
    t_estimate,
    trend,
    verdict,
    verdict_frame,
    wide,
)
from multisource.readings.ratio_tests import ratio_difference_t
from multisource.readings.stored import current_table
from multisource.theory.explicit_bound import entropy_detection_factor, explicit_bound

METRIC_NAMES = {"tv": "TV", "hellinger": "Hellinger", "sqrt_kl": "sqrt(KL)",
                "nll_bits": "held-out NLL bound", "fcd": "FCD", "accuracy": "class accuracy"}
THEORY_METRICS = ("tv", "hellinger", "sqrt_kl", "nll_bits")
CHAPTER_TITLES = {2: "Theorem 3.2", 4: "Gaussian", 5: "neural AR", 6: "spin MLP",
                  7: "EDM2 miniature"}
COLUMNS = ("claim", "chapter", "metric", "speaks_to", "scope", "outcome", "evidence")
NETWORK_METRICS = ("tv", "hellinger", "sqrt_kl")


def _row(claim: str, chapter: int, metric: str, scope: str, outcome: str, evidence: str
         ) -> dict[str, object]:
    return {"claim": claim, "chapter": chapter, "metric": METRIC_NAMES[metric],
            "speaks_to": "theory" if metric in THEORY_METRICS else "practice",
            "scope": scope, "outcome": outcome, "evidence": evidence}


def _exact_decreasing(values: pd.Series) -> bool:
    return bool((np.diff(values.to_numpy(float)) < 0).all())


def gaussian_rows(frame: pd.DataFrame) -> list[dict[str, object]]:
    """Chapter 4's exact verdicts from the stored `gaussian` table (exact expected TV risks)."""
    shared = frame[(frame.K > 1) & (frame.beta_sim > 0)]
    beats = bool((shared.exact_multi < shared.exact_single).all())
    rows = [_row("beats", 4, "tv", "", "supported (exact)" if beats else "contradicted (exact)",
                 f"multi < single at {int((shared.exact_multi < shared.exact_single).sum())} of "
                 f"{len(shared)} settings with K > 1 and beta_sim > 0; risk ratio "
                 f"{shared.exact_ratio.min():.3f} to {shared.exact_ratio.max():.3f}")]
    for claim, sweep, axis in (("grows_with_K", "K", "K"),
                               ("grows_with_similarity", "sim", "beta_sim")):
        part = frame[frame.sweep == sweep].sort_values(axis)
        falls = _exact_decreasing(part.exact_ratio)
        rows.append(_row(claim, 4, "tv", "", "supported (exact)" if falls
                         else "contradicted (exact)",
                         f"risk ratio {'falls' if falls else 'does not fall'} at every step, "
                         f"{part.exact_ratio.iloc[0]:.3f} to {part.exact_ratio.iloc[-1]:.3f} "
                         f"as {axis} goes {part[axis].iloc[0]:g} to {part[axis].iloc[-1]:g}"))
    partial = frame[(frame.K > 1) & (frame.beta_sim > 0) & (frame.beta_sim < 1)]
    deviation = partial.exact_ratio - partial.bound_ratio
    by_n = frame[frame.sweep == "n"].sort_values("n")
    gap_n = (by_n.exact_ratio - by_n.bound_ratio).abs()
    shrinks = _exact_decreasing(gap_n)
    rows.append(_row("ratio_prediction", 4, "tv", "count",
                     "holds to first order (exact)" if shrinks else "contradicted (exact, small)",
                     f"exact ratio - sqrt(1 - (K-1)/K beta_sim) from {deviation.min():+.4f} to "
                     f"{deviation.max():+.4f} at 0 < beta_sim < 1; |gap| "
                     f"{'shrinks' if shrinks else 'grows'} with n, {gap_n.iloc[0]:.4f} at n = "
                     f"{by_n.n.iloc[0]} to {gap_n.iloc[-1]:.4f} at n = {by_n.n.iloc[-1]}"))
    return rows


def theorem_rows(frame: pd.DataFrame) -> list[dict[str, object]]:
    """Theorem 3.2 with this project's explicit constants (`theory.explicit_bound`, chapter 2)
    against the exact expected risks of chapter 4's settings, both estimators."""
    points = []
    settings = frame.drop_duplicates(["K", "D", "d1", "n"])
    for _, row in settings.iterrows():
        for estimator in ("multi", "single"):
            bound = explicit_bound(int(row.K), int(row.D), int(row.d1), int(row.n), estimator)
            exact = float(row[f"exact_{estimator}"])
            points.append((bound, exact))
    ratios = np.array([b.bound / e for b, e in points])
    holds = int((np.minimum([b.bound for b, _ in points], 1.0)
                 >= [e for _, e in points]).sum())
    vacuous = sum(b.vacuous for b, _ in points)
    tightest, exact = points[int(np.argmin(ratios))]
    detection = entropy_detection_factor(tightest, exact)
    outcome = "supported (exact)" if holds == len(points) else "contradicted (exact)"
    return [_row("theorem_3_2", 2, "tv", "explicit constants (ours)", outcome,
                 f"bound >= exact risk at {holds} of {len(points)} points; bound/exact "
                 f"{ratios.min():.1f} to {ratios.max():.1f}; vacuous (>= 1) at {vacuous}; "
                 f"only an entropy understated {detection:.0f}-fold or more would fail it")]


def _default(frame: pd.DataFrame) -> tuple[int, int, float]:
    """The default setting of a one-knob-at-a-time network sweep: the value of each knob that
    the most settings share (the sweeps of the other two knobs all hold it), whatever the
    number of seeds per setting."""
    settings = frame[["K", "n", "beta_sim"]].drop_duplicates()
    K, n, beta = (settings[column].value_counts().idxmax() for column in settings)
    return int(K), int(n), float(beta)


def network_verdicts(frame: pd.DataFrame, chapter: int) -> pd.DataFrame:
    """Chapter 5's or 6's paired tests, Holm within the chapter: multi - single at the default
    setting, and the per-seed log risk ratio's slope over log K and over beta_sim."""
    K0, n0, beta0 = _default(frame)
    verdicts = []
    default = frame[(frame.K == K0) & (frame.n == n0) & (frame.beta_sim == beta0)]
    k_sweep = frame[(frame.n == n0) & (frame.beta_sim == beta0)]
    s_sweep = frame[(frame.K == K0) & (frame.n == n0)]
    for metric in NETWORK_METRICS:
        label = {"metric": metric, "chapter": str(chapter)}
        diff = (default[f"{metric}_multi"] - default[f"{metric}_single"]).to_numpy(float)
        verdicts.append(verdict("beats", t_estimate(diff), "negative",
                                family=f"ch{chapter}", label={**label, "scope": "default"}))
        for claim, sweep, axis, transform in (
                ("grows_with_K", k_sweep, "K", math.log),
                ("grows_with_similarity", s_sweep, "beta_sim", float)):
            log_ratio = sweep[["seed", axis]].assign(
                value=np.log(sweep[f"{metric}_multi"] / sweep[f"{metric}_single"]))
            table = wide(log_ratio, "value", axis)
            estimate = trend(table, {v: transform(v) for v in table.columns})
            verdicts.append(verdict(claim, estimate, "negative", family=f"ch{chapter}",
                                    label={**label, "scope": f"{len(table.columns)} settings"}))
    return verdict_frame(adjust_family(verdicts))


def _verdict_text(row: pd.Series, unit: str = "") -> str:
    """'-0.43 [-0.49, -0.37]; Holm p 9e-06' or '+0.03 [-0.14, +0.19]; MDE 0.23'."""
    half = (row.high - row.low) / 2
    d = 3 if not math.isfinite(half) or half <= 0 else max(2, -math.floor(math.log10(half)))
    interval = f"{row.estimate:+.{d}f} [{row.low:+.{d}f}, {row.high:+.{d}f}]{unit}"
    tail = f"Holm p {row.p_holm:.2g}" if row.outcome != "not detected" \
        else f"MDE {row.mde:.{d}f}, Holm p {row.p_holm:.2g}"
    return f"{interval}; {tail}; {int(row.seeds)} seeds"


def network_rows(frame: pd.DataFrame, chapter: int) -> list[dict[str, object]]:
    """Chapter 5's or 6's scorecard rows: the paired tests and the ratio predictions."""
    rows = []
    for _, v in network_verdicts(frame, chapter).iterrows():
        what = {"beats": "multi - single risk at the default",
                "grows_with_K": "slope of log(multi/single) per log K",
                "grows_with_similarity": "slope of log(multi/single) per unit beta_sim"}[v.claim]
        rows.append(_row(v.claim, chapter, v.metric, v.scope, v.outcome,
                         f"{what}: {_verdict_text(v)}"))
    for metric in NETWORK_METRICS:
        for prediction in ("count", "fisher"):
            part = ratio_difference_t(frame, metric, prediction)
            rejected = int(part.rejects_holm.sum())
            rows.append(_row("ratio_prediction", chapter, metric, prediction,
                             "contradicted" if rejected else "deviation not detected",
                             f"rejected at {rejected} of {len(part)} settings (paired t, delta "
                             f"method, Holm over settings; {int(part.rejects.sum())} before "
                             f"adjustment); MDE {part.mde.min():.2f} to {part.mde.max():.2f} "
                             f"in the ratio"))
    return rows


EDM2_ESTIMANDS = {"beats": "multi - single, mean over K = 3, 5, 10",
                  "grows_with_K": "slope of multi - single per log K",
                  "grows_with_similarity": "tops minus (cat + digit 1), K = 3"}


def edm2_rows(table: pd.DataFrame) -> list[dict[str, object]]:
    """Chapter 7's scorecard rows at the plateau snapshot (its declared family)."""
    rows = []
    plateau = table[table.family == "ch7 plateau"]
    for _, v in plateau.iterrows():
        unit = " bits/dim" if v.metric == "nll_bits" else ""
        rows.append(_row(v.claim, 7, v.metric, v.scope, v.outcome,
                         f"{EDM2_ESTIMANDS[v.claim]}: {_verdict_text(v, unit)}"))
    return rows


SIMILARITY_TESTS = {"slope": "slope over -log(FCD to Shirt), all groups",
                    "slope, one domain": "slope over -log(FCD to Shirt), groups inside "
                                         "Fashion-MNIST"}


def similarity_rows(frame: pd.DataFrame, planned: int) -> list[dict[str, object]]:
    """Chapter 7's similarity-axis rows (`similarity_axis`): the per-seed slope of multi -
    single over measured similarity, over all groups and inside the anchor's domain. None
    before two seeds have finished; an interim reading says how many of the planned seeds
    it rests on."""
    seeds = similarity_axis.finished_seeds(frame)
    if seeds < 2:
        return []
    table = similarity_axis.verdict_table(frame)
    status = f"; interim, {planned} planned" if seeds < planned else ""
    rows = []
    for _, v in table[table.test.isin(list(SIMILARITY_TESTS))].iterrows():
        unit = " bits/dim" if v.metric == "nll_bits" else ""
        rows.append(_row(v.claim, 7, v.metric, f"{v.scope}, {v.test}", v.outcome,
                         f"{SIMILARITY_TESTS[v.test]}: {_verdict_text(v, unit)}{status}"))
    return rows


def scorecard(gaussian: pd.DataFrame | None = None, networks: dict[int, pd.DataFrame] | None
              = None, edm2: pd.DataFrame | None = None,
              similarity: tuple[pd.DataFrame, int] | None = None) -> pd.DataFrame:
    """Every verdict, one row per claim x chapter x metric x scope, in the registry's order of
    claims. Arguments default to the stored tables (tests pass mutated copies); `similarity`
    is the similarity axis's table (stored or interim) and its planned number of seeds."""
    gaussian = current_table("gaussian") if gaussian is None else gaussian
    networks = networks if networks is not None else {5: chapter56_verdicts.load(5),
                                                      6: chapter56_verdicts.load(6)}
    edm2 = edm2 if edm2 is not None else chapter7_verdicts.verdict_table()
    if similarity is None:
        similarity = (similarity_axis.load()[0], similarity_axis.planned_seeds())
    rows = gaussian_rows(gaussian) + theorem_rows(gaussian)
    for chapter, frame in sorted(networks.items()):
        rows += network_rows(most_likely(frame), chapter)
    rows += edm2_rows(edm2) + similarity_rows(*similarity)
    card = pd.DataFrame(rows, columns=list(COLUMNS))
    order = {c.id: i for i, c in enumerate(CLAIMS)}
    return card.sort_values(["claim", "chapter"], key=lambda s: s.map(order) if s.name ==
                            "claim" else s, kind="stable").reset_index(drop=True)


SUMMARY_WORDS: dict[str, Callable[[str], bool]] = {
    "supported": lambda o: o.startswith("supported") or o.startswith("holds"),
    "contradicted": lambda o: o.startswith("contradicted"),
    "not detected": lambda o: "not detected" in o,
}


def claim_summary(card: pd.DataFrame, claim: str) -> str:
    """One sentence per claim, from the rows: where it is supported, contradicted and not
    detected, by chapter and metric."""
    part = card[card.claim == claim]
    pieces = []
    for word, matches in SUMMARY_WORDS.items():
        hits = part[part.outcome.map(matches)]
        if hits.empty:
            continue
        where = []
        for chapter, group in hits.groupby("chapter", sort=True):
            metrics = ", ".join(dict.fromkeys(group.metric))
            where.append(f"{CHAPTER_TITLES[int(chapter)]} ({metrics})")
        pieces.append(f"{word} in {'; '.join(where)}")
    return "; ".join(pieces) if pieces else "not tested"


def chapter_verdict(card: pd.DataFrame, claim: str, metric: str = "TV") -> str:
    """One chapter's verdict on a claim under one metric, as its summary quotes it:
    'supported (evidence)'; the rows of `network_rows` (one chapter)."""
    row = card[(card.claim == claim) & (card.metric == metric)].iloc[0]
    return f"{row.outcome} ({row.evidence})"


def outcome_counts(card: pd.DataFrame) -> dict[str, int]:
    """How many rows of the scorecard fall under each summary word."""
    return {word: int(card.outcome.map(matches).sum())
            for word, matches in SUMMARY_WORDS.items()}

