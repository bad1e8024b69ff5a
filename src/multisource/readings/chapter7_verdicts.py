"""Chapter 7's verdicts on the paper's claims, from the stored converged-design tables.

Reads `edm2_converged` (every run to its stopping rule, extended past its cap where the cap
came first), takes every model at its plateau snapshot (or another arm), and per seed reduces
each compared group to the difference multi - single of one metric, for the anchor class and for
the K-class average. The claims of `claims.TESTS` for chapter 7 are then tested with the
paired per-seed tests of `inference`, Holm within the family "ch7 plateau". The group
definitions come from the table itself (its similarity rows), not from the experiment code.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from multisource.readings import inference as inf
from multisource.readings.claims import tests_for
from multisource.readings.stored import current_table

METRICS = ("nll_bits", "fcd", "accuracy")
SCOPES = ("anchor", "K-average")
ARMS = ("paper", "equal", "exposure", "plateau")
SIMILAR, DISSIMILAR = "K3", "cat + digit 1"
EXPERIMENTS = ("edm2_converged",)
CONVERGED_SECTION = "edm2-converged"   # the section of `claims.TESTS` this module reads


def load_frame(profile: str = "book", path: Path | None = None) -> pd.DataFrame:
    """The stored table of the converged design: from `path`, or else the stored table, read
    only when its provenance matches the current code."""
    return pd.read_csv(path) if path is not None else current_table(EXPERIMENTS[0], profile)


def groups(frame: pd.DataFrame) -> dict[str, tuple[int, ...]]:
    """Compared groups (K > 1), by name, from the similarity rows; anchor first."""
    rows = frame[frame["kind"] == "similarity"]
    return {str(g): tuple(int(c) for c in str(cl).split())
            for g, cl in zip(rows["group"], rows["classes"], strict=True)}


def seed_differences(frame: pd.DataFrame, metric: str, scope: str, arm: str = "plateau"
                     ) -> pd.DataFrame:
    """Seeds x groups: multi - single of `metric` at `arm`'s snapshot, for the anchor or
    averaged over the group's K classes (complete seeds only)."""
    rows = frame[frame["kind"].isin(["multi", "single"]) & frame[f"arm_{arm}"].astype(bool)]
    value = rows.assign(model=rows["model"].astype(str), cls=rows["class"].astype(int),
                        sd=rows["seed"].astype(int)).set_index(["sd", "model", "cls"])[metric]
    value = value[~value.index.duplicated()]
    out = {}
    for name, classes in groups(frame).items():
        multi = pd.concat([value.xs((" ".join(map(str, classes)), c), level=("model", "cls"))
                           for c in classes], axis=1)
        single = pd.concat([value.xs((str(c), c), level=("model", "cls")) for c in classes],
                           axis=1)
        diff = multi.to_numpy(float) - single.reindex(multi.index).to_numpy(float)
        out[name] = pd.Series(diff[:, 0] if scope == "anchor" else diff.mean(axis=1),
                              index=multi.index)
    return pd.DataFrame(out).dropna(how="any")


def _k_sweep(frame: pd.DataFrame) -> dict[str, int]:
    """The K-sweep groups (named K<k>) and their K."""
    return {name: len(classes) for name, classes in groups(frame).items()
            if name.startswith("K") and name[1:].isdigit()}


def claim_estimate(frame: pd.DataFrame, claim: str, metric: str, scope: str,
                   arm: str = "plateau", table: pd.DataFrame | None = None) -> inf.Estimate:
    """The declared estimand of a chapter-7 claim (see `claims.TESTS`) with its t reading;
    `table` is `seed_differences(frame, metric, scope, arm)` when the caller has it."""
    if table is None:
        table = seed_differences(frame, metric, scope, arm)
    sweep = _k_sweep(frame)
    if claim == "beats":
        return inf.t_estimate(table[list(sweep)].mean(axis=1))
    if claim == "grows_with_K":
        return inf.trend(table[list(sweep)], {g: math.log(k) for g, k in sweep.items()})
    if claim == "grows_with_similarity":
        return inf.contrast(table, {SIMILAR: 1.0, DISSIMILAR: -1.0})
    raise ValueError(f"chapter 7 does not test claim {claim!r}")


def claim_verdicts(frame: pd.DataFrame, arm: str = "plateau") -> list[inf.Verdict]:
    """Every chapter-7 test of the registry, per metric and scope, Holm within its family."""
    out = []
    tables = {(m, s): seed_differences(frame, m, s, arm) for m in METRICS for s in SCOPES}
    for test in tests_for(7, CONVERGED_SECTION):
        for metric in test.metrics:
            for scope in test.scopes:
                estimate = claim_estimate(frame, test.claim, metric, scope, arm,
                                          tables[(metric, scope)])
                out.append(inf.verdict(test.claim, estimate, test.direction(metric),
                                       family=test.family, label={
                                           "chapter": "7", "section": test.section,
                                           "metric": metric, "scope": scope, "arm": arm}))
    return inf.adjust_family(out)


def arm_trends(frame: pd.DataFrame, arms: tuple[str, ...] = ("exposure", "equal")
               ) -> list[inf.Verdict]:
    """The K trend at the fixed-budget arms (d: equal total compute, b: equal steps), beside
    the plateau's; Holm within the family "ch7 arms"."""
    test = next(t for t in tests_for(7, CONVERGED_SECTION) if t.claim == "grows_with_K")
    out = []
    for arm in arms:
        for metric in test.metrics:
            for scope in test.scopes:
                estimate = claim_estimate(frame, "grows_with_K", metric, scope, arm)
                out.append(inf.verdict("grows_with_K", estimate, test.direction(metric),
                                       family="ch7 arms", label={
                                           "chapter": "7", "section": test.section,
                                           "metric": metric, "scope": scope, "arm": arm}))
    return inf.adjust_family(out)


def verdict_table(frame: pd.DataFrame | None = None) -> pd.DataFrame:
    """Tidy verdicts of chapter 7 (plateau family, then the arms' K trends) for a notebook
    to glue and a scorecard to display."""
    frame = load_frame() if frame is None else frame
    return inf.verdict_frame(claim_verdicts(frame) + arm_trends(frame))


def setting_intervals(frame: pd.DataFrame) -> pd.DataFrame:
    """The chapter's 96 intervals (arm x group x metric x scope) of multi - single, each a
    paired t reading, with Holm and BH adjustment over all 96 and the reading before and
    after Holm."""
    rows = []
    for arm in ARMS:
        for metric in METRICS:
            for scope in SCOPES:
                table = seed_differences(frame, metric, scope, arm)
                for group in table.columns:
                    e = inf.t_estimate(table[group])
                    rows.append({"arm": arm, "group": group, "metric": metric, "scope": scope,
                                 "seeds": e.seeds, "diff": e.estimate, "low": e.low,
                                 "high": e.high, "p": e.p, "mde": e.mde})
    out = pd.DataFrame(rows)
    out["p_holm"] = inf.holm(out["p"])
    out["p_bh"] = inf.benjamini_hochberg(out["p"])
    better = np.where(out["metric"] == "accuracy", 1.0, -1.0) * np.sign(out["diff"])
    word = np.where(better > 0, "multi better", "single better")
    out["reading"] = np.where(out["p"] <= inf.ALPHA, word, "not detected")
    out["reading_holm"] = np.where(out["p_holm"] <= inf.ALPHA, word, "not detected")
    return out


def passes_per_image(frame: pd.DataFrame) -> pd.DataFrame:
    """Per group, at the plateau: the multi-source model's steps divided by the sum of its
    single-source models' steps (its passes per training image relative to theirs), per seed
    with a t interval and median, and as a ratio of mean steps; `trained` is the same ratio
    of the steps trained until the rule fired (the compute spent, past the snapshot)."""
    rows = frame[frame["kind"].isin(["multi", "single"]) & frame["arm_plateau"].astype(bool)]
    by = rows.assign(sd=rows["seed"].astype(int), model=rows["model"].astype(str)
                     ).groupby(["sd", "model"])
    steps = by["plateau_step"].first().unstack()
    trained = by["stop_step"].first().unstack()
    out = []
    for name, classes in groups(frame).items():
        key, keys = " ".join(map(str, classes)), [str(c) for c in classes]
        multi, singles = steps[key], steps[keys].sum(axis=1)
        ratio = (multi / singles).dropna()
        e = inf.t_estimate(ratio)
        out.append({"group": name, "K": len(classes), "multi steps": float(multi.mean()),
                    "single steps (sum)": float(singles.mean()),
                    "passes per image": float(multi.mean() / singles.mean()),
                    "per-seed mean": e.estimate, "low": e.low, "high": e.high,
                    "per-seed median": float(ratio.median()),
                    "trained": float(trained[key].mean() / trained[keys].sum(axis=1).mean()),
                    "seeds": e.seeds})
    return pd.DataFrame(out)


def accuracy_floor(frame: pd.DataFrame) -> pd.DataFrame:
    """The anchor's class-consistency accuracy at the plateau: single-source, each
    multi-source model, the real held-out images' (the classifier's floor on real data), and
    how many seeds the multi-source model scores below the single-source one."""
    anchor = next(iter(groups(frame).values()))[0]
    real = frame[(frame["kind"] == "real") & (frame["class"] == anchor)]["accuracy"]
    rows = frame[frame["kind"].isin(["multi", "single"]) & frame["arm_plateau"].astype(bool)
                 & (frame["class"] == anchor)]
    by = rows.assign(sd=rows["seed"].astype(int), model=rows["model"].astype(str)
                     ).groupby(["sd", "model"])["accuracy"].first().unstack()
    out = []
    for name, classes in groups(frame).items():
        multi, single = by[" ".join(map(str, classes))], by[str(anchor)]
        out.append({"group": name, "anchor": anchor, "single": float(single.mean()),
                    "multi": float(multi.mean()), "real images": float(real.iloc[0]),
                    "seeds lower": int((multi < single).sum()), "seeds": int(multi.size)})
    return pd.DataFrame(out)


def reviewer_figures(frame: pd.DataFrame) -> dict[str, str]:
    """The figures issue 29's reviewer quoted, recomputed here (names to interval text)."""
    table = verdict_table(frame)

    def pick(claim: str, metric: str, scope: str, arm: str = "plateau") -> str:
        at = table[(table.claim == claim) & (table.metric == metric) & (table.scope == scope)
                   & (table.arm == arm)].iloc[0]
        return f"{at.estimate:+.3f} [{at.low:+.3f}, {at.high:+.3f}] (Holm p {at.p_holm:.3g})"

    settings = setting_intervals(frame)
    fcd = settings[(settings.arm == "plateau") & (settings.metric == "fcd")]
    acc = accuracy_floor(frame)
    same = acc[acc.group != DISSIMILAR]
    passes = passes_per_image(frame).set_index("group")
    anchor_acc = settings[(settings.arm == "plateau") & (settings.metric == "accuracy")
                          & (settings.scope == "anchor") & (settings.group != DISSIMILAR)]
    kept = int(((fcd.reading == "multi better") & (fcd.reading_holm != "not detected")).sum())
    lower = ", ".join(f"{r}/{s}" for r, s in zip(same["seeds lower"], same["seeds"],
                                                  strict=True))
    return {
        "K slope, NLL, anchor (plateau)": pick("grows_with_K", "nll_bits", "anchor"),
        "K slope, NLL, anchor (arm d, equal compute)": pick("grows_with_K", "nll_bits",
                                                            "anchor", "exposure"),
        "K slope, NLL, K-average (arm b, equal steps)": pick("grows_with_K", "nll_bits",
                                                             "K-average", "equal"),
        "K slope, FCD, K-average": pick("grows_with_K", "fcd", "K-average"),
        "K slope, FCD, anchor": pick("grows_with_K", "fcd", "anchor"),
        "similarity contrast, NLL, anchor": pick("grows_with_similarity", "nll_bits",
                                                 "anchor"),
        "similarity contrast, FCD, anchor": pick("grows_with_similarity", "fcd", "anchor"),
        "accuracy drop, anchor, same-domain groups": (
            f"{anchor_acc['diff'].min():+.3f} to {anchor_acc['diff'].max():+.3f}; seeds lower "
            f"{lower}"),
        "multi-source anchor accuracy vs real images": (
            f"{same['multi'].min():.3f}-{same['multi'].max():.3f} vs "
            f"{float(acc['real images'].iloc[0]):.2f}"),
        "intervals excluding zero / after Holm / after BH": (
            f"{int((settings.reading != 'not detected').sum())} / "
            f"{int((settings.reading_holm != 'not detected').sum())} / "
            f"{int((settings.p_bh <= inf.ALPHA).sum())} of {len(settings)}"),
        "plateau FCD 'multi better' surviving Holm": (
            f"{kept} of {int((fcd.reading == 'multi better').sum())}; K5 anchor p "
            f"{float(fcd[(fcd.group == 'K5') & (fcd.scope == 'anchor')].p.iloc[0]):.4f}"),
        "passes per image (ratio of mean steps; per-seed median)": ", ".join(
            f"{g} {passes.loc[g, 'passes per image']:.2f} "
            f"({passes.loc[g, 'per-seed median']:.2f})" for g in passes.index),
    }


def accuracy_by_class(frame: pd.DataFrame) -> pd.DataFrame:
    """Class-consistency accuracy of every class of every compared group at the plateau: the
    single- and multi-source models' means, the paired difference multi - single with its t
    interval, how many seeds it is negative in, and the real held-out images' accuracy (how
    often the classifier recognises the class on real data: its confusability)."""
    rows = frame[frame["kind"].isin(["multi", "single"]) & frame["arm_plateau"].astype(bool)]
    value = rows.assign(sd=rows["seed"].astype(int), model=rows["model"].astype(str),
                        cls=rows["class"].astype(int)
                        ).groupby(["sd", "model", "cls"])["accuracy"].first()
    real = frame[frame["kind"] == "real"].assign(cls=lambda t: t["class"].astype(int)
                                                 ).set_index("cls")
    out = []
    for name, classes in groups(frame).items():
        key = " ".join(map(str, classes))
        for position, c in enumerate(classes):
            multi = value.xs((key, c), level=("model", "cls"))
            single = value.xs((str(c), c), level=("model", "cls"))
            diff = inf.paired_differences(multi, single)
            e = inf.t_estimate(diff)
            out.append({"group": name, "K": len(classes), "class": c,
                        "class_name": str(real.loc[c, "class_name"]).split(":")[-1],
                        "anchor": position == 0, "real images": float(real.loc[c, "accuracy"]),
                        "single": float(single.mean()), "multi": float(multi.mean()),
                        "diff": e.estimate, "low": e.low, "high": e.high, "p": e.p,
                        "mde": e.mde, "seeds lower": int((diff < 0).sum()), "seeds": e.seeds})
    return pd.DataFrame(out)


def compute_table(frame: pd.DataFrame, settings: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per compared group: the plateau's steps and passes per image (`passes_per_image`), the
    steps of arm (d), equal total compute (the multi-source model trains as many steps as its
    K single-source models together), and the anchor's held-out NLL-bound difference multi -
    single at the plateau and at arm (d), each with its t interval and its reading after Holm
    over the chapter's 96 intervals (`setting_intervals`)."""
    settings = setting_intervals(frame) if settings is None else settings
    passes = passes_per_image(frame).set_index("group")
    rows = frame[frame["kind"].isin(["multi", "single"]) & frame["arm_exposure"].astype(bool)]
    d_steps = rows.assign(model=rows["model"].astype(str)).groupby("model")["step"].median()
    out = []
    for name, classes in groups(frame).items():
        key = " ".join(map(str, classes))
        row = {"group": name, "K": len(classes),
               **passes.loc[name, ["multi steps", "single steps (sum)", "passes per image",
                                   "low", "high", "per-seed median", "trained"]].to_dict(),
               "arm d: multi steps": float(d_steps[key]),
               "arm d: single steps (sum)": float(sum(d_steps[str(c)] for c in classes))}
        for arm, tag in (("plateau", "plateau"), ("exposure", "arm d")):
            at = settings[(settings.arm == arm) & (settings.group == name)
                          & (settings.metric == "nll_bits") & (settings.scope == "anchor")].iloc[0]
            row[f"{tag}: NLL diff"] = float(at["diff"])
            row[f"{tag}: low"] = float(at["low"])
            row[f"{tag}: high"] = float(at["high"])
            row[f"{tag}: reading"] = str(at["reading_holm"])
        out.append(row)
    return pd.DataFrame(out).rename(columns={"low": "passes low", "high": "passes high"})


def bound_floor_bits(sigma_min: float = 0.002) -> float:
    """The held-out NLL bound's model-free part per dimension, in bits for data in [0, 1]: the
    Gaussian decoder N(x, sigma_min^2) of `models.diffusion.likelihood.nll_bound_bits` (its
    prior term is below 1e-4 bits/dim at sigma_max = 80). The bound is never below it: the
    rest is a non-negative integral of denoising errors."""
    return 0.5 * math.log2(2 * math.pi * math.e * sigma_min ** 2) - 1.0


def zero_pixel_table(frame: pd.DataFrame, heldout: dict[int, np.ndarray]) -> pd.DataFrame:
    """Per scored class: the share of exactly-zero pixels of its held-out images (`heldout`:
    class -> images in [0, 1]) beside the single- and multi-source models' mean held-out NLL
    bound at the plateau (the multi-source mean over every group containing the class)."""
    rows = frame[frame["kind"].isin(["multi", "single"]) & frame["arm_plateau"].astype(bool)]
    bound = rows.groupby([rows["kind"], rows["class"].astype(int)])["nll_bits"].mean()
    real = frame[frame["kind"] == "real"]
    names = dict(zip(real["class"].astype(int), real["class_name"], strict=True))
    out = []
    for c in sorted(int(c) for c in rows["class"].unique()):
        images = np.asarray(heldout[c], float)
        out.append({"class": c, "class_name": str(names.get(c, c)).split(":")[-1],
                    "zero pixels": float((images == 0).mean()),
                    "bound single": float(bound.get(("single", c), math.nan)),
                    "bound multi": float(bound.get(("multi", c), math.nan))})
    return pd.DataFrame(out)


CLAIM_WORDS = {"beats": "multi-source training beats single-source training",
               "grows_with_K": "the advantage grows with the number of sources K",
               "grows_with_similarity": "the advantage grows with the similarity of the sources"}
METRIC_WORDS = {"nll_bits": "held-out NLL bound", "fcd": "FCD",
                "accuracy": "class-consistency accuracy"}


def verdict_text(row: pd.Series) -> str:
    """One verdict as the chapter prints it: 'supported: -0.43 [-0.49, -0.37]' or 'not
    detected (MDE 0.23; Holm p 0.89): +0.03 [-0.14, +0.19]' (a non-detection always with its
    minimum detectable effect, and with the raw p where only Holm turns it away)."""
    half = (row.high - row.low) / 2
    d = 3 if not math.isfinite(half) or half <= 0 else max(2, -math.floor(math.log10(half)))
    interval = f"{row.estimate:+.{d}f} [{row.low:+.{d}f}, {row.high:+.{d}f}]"
    if row.outcome != "not detected":
        return f"{row.outcome}: {interval}"
    raw = f"p {row.p:.3f}, " if row.p <= inf.ALPHA else ""
    return f"not detected (MDE {row.mde:.{d}f}; {raw}Holm p {row.p_holm:.2g}): {interval}"


def claim_sentence(table: pd.DataFrame, claim: str, arm: str = "plateau") -> str:
    """'<claim>: in the held-out NLL bound supported for the anchor (...) and ...; in FCD ...'
    from the verdict table's rows of one claim and arm."""
    rows = table[(table.claim == claim) & (table.arm == arm)]
    return f"**{CLAIM_WORDS[claim][0].upper() + CLAIM_WORDS[claim][1:]}**: " + by_metric(rows)


def by_metric(rows: pd.DataFrame) -> str:
    """'in the held-out NLL bound, the anchor <verdict>; the K-average <verdict>; in FCD ...'
    from verdict rows of one test."""
    parts = []
    for metric in METRICS:
        at = rows[rows.metric == metric]
        if at.empty:
            continue
        scopes = "; ".join(f"{'the anchor' if r.scope == 'anchor' else 'the K-average'} "
                           f"{verdict_text(r)}" for r in at.itertuples())
        parts.append(f"in the {METRIC_WORDS[metric]}, {scopes}")
    return "; ".join(parts)
