"""The claim registry, and chapter 7's verdicts from the stored tables: they agree with the
chapter's own reading, follow Holm within the declared family, and change when a stored
difference is mutated."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from multisource.readings import chapter7_verdicts as c7
from multisource.readings import claims as registry
from multisource.readings.claims import CLAIMS, TESTS, claim
from multisource.readings.inference import OUTCOMES, verdict_frame
from multisource.readings.stored import current_table


def test_registry_is_consistent() -> None:
    ids = [c.id for c in CLAIMS]
    assert len(ids) == len(set(ids))
    assert {"beats", "grows_with_K", "grows_with_similarity", "ratio_prediction",
            "theorem_3_2"} == set(ids)
    for test in TESTS:
        assert claim(test.claim).id == test.claim
        assert {m for m, _ in test.directions} == set(test.metrics)
        assert test.family and test.construction and test.chapter in (2, 4, 5, 6, 7, 8)
    assert {t.claim for t in registry.tests_for(7)} == {"beats", "grows_with_K",
                                                         "grows_with_similarity"}
    with pytest.raises(KeyError):
        claim("nonexistent")


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return c7.load_frame()


def test_setting_intervals_agree_with_the_chapter_reading(frame: pd.DataFrame) -> None:
    from multisource.experiments.edm2_converged import BOOK
    from multisource.readings import edm2_converged_reading as reading

    theirs = reading.verdicts(current_table("edm2_converged"), BOOK)
    theirs["group"] = theirs["setting"].map(lambda s: f"K{s}" if s.isdigit() else s)
    ours = c7.setting_intervals(frame)
    both = ours.merge(theirs, on=["arm", "group", "metric", "scope"], suffixes=("", "_ch"))
    assert len(both) == len(ours) == len(theirs) == 96
    for a, b in (("diff", "diff_ch"), ("low", "low_ch"), ("high", "high_ch"),
                 ("mde", "mde_ch"), ("reading", "reading_ch")):
        if a == "reading":
            assert (both[a] == both[b]).all()
        else:
            assert np.allclose(both[a], both[b], rtol=1e-6, atol=1e-9)
    # Holm never keeps more than the unadjusted reading
    assert (ours.reading_holm != "not detected").sum() <= (ours.reading != "not detected").sum()


def test_claim_verdicts_are_holm_within_the_declared_family(frame: pd.DataFrame) -> None:
    table = c7.verdict_table(frame)
    plateau = table[table.family == "ch7 plateau"]
    assert len(plateau) == 3 * 3 * 2
    assert set(table.outcome) <= set(OUTCOMES)
    from multisource.readings.inference import holm
    assert np.allclose(plateau.p_holm, holm(plateau.p))
    quiet = table[table.outcome == "not detected"]
    assert quiet.phrase.str.contains("MDE").all()


def _mutate(frame: pd.DataFrame, model: str, metric: str, shift: float) -> pd.DataFrame:
    """Shift `metric` of one multi-source model's anchor rows at every arm and seed."""
    out = frame.copy()
    rows = (out["model"].astype(str) == model) & (out["kind"] == "multi") & (out["class"] == 6)
    out.loc[rows, metric] = out.loc[rows, metric] + shift
    return out


def test_a_mutated_stored_difference_changes_the_verdict(frame: pd.DataFrame) -> None:
    def outcome(f: pd.DataFrame, claim_id: str, metric: str) -> str:
        t = verdict_frame(c7.claim_verdicts(f))
        at = t[(t.claim == claim_id) & (t.metric == metric) & (t.scope == "anchor")]
        return str(at.outcome.iloc[0])

    assert outcome(frame, "grows_with_K", "nll_bits") == "supported"
    # the K = 10 model's anchor made 1 bit/dim worse: the gain now shrinks with K
    worse = _mutate(frame, " ".join(map(str, c7.groups(frame)["K10"])), "nll_bits", 1.0)
    assert outcome(worse, "grows_with_K", "nll_bits") == "contradicted"
    assert outcome(frame, "beats", "accuracy") == "contradicted"
    better = frame
    for name in ("K3", "K5", "K10"):
        better = _mutate(better, " ".join(map(str, c7.groups(frame)[name])), "accuracy", 0.2)
    assert outcome(better, "beats", "accuracy") == "supported"


def test_chapter56_prediction_tests_follow_the_stored_fits() -> None:
    from multisource.readings import chapter56_verdicts as c56

    frame = c56.load(6)
    tests = c56.prediction_tests(frame)
    assert len(tests) == 2 * frame.groupby(c56.SETTING).ngroups
    assert (tests.p_holm >= tests.p).all()
    default = tests[(tests.K == 5) & (tests.n == 5000) & (tests.beta_sim == 0.5)
                    & (tests.prediction == "fisher")].iloc[0]
    assert default.low < default.ratio < default.high
    sign = c56.below_fisher(frame)
    assert sign["settings"] == frame.groupby(c56.SETTING).ngroups
    # mutation: multi-source risks raised 30% at every setting; the ratio now exceeds the
    # Fisher prediction, and the sign test no longer says "below"
    worse = frame.assign(tv_multi=frame.tv_multi * 1.3)
    assert c56.below_fisher(worse)["below"] < sign["below"]
    assert c56.prediction_tests(worse).rejects_holm.sum() >= tests.rejects_holm.sum()
    doubling = c56.last_doubling(c56.load(5))
    assert doubling.seeds >= 2 and doubling.low < doubling.estimate < doubling.high


def test_compute_table_and_passes_per_image(frame: pd.DataFrame) -> None:
    """The compute table's passes per image are the ratio of mean steps; arm (d) gives the
    multi-source model about its singles' total steps; the readings are the Holm readings."""
    table = c7.compute_table(frame).set_index("group")
    passes = c7.passes_per_image(frame).set_index("group")
    assert np.allclose(table["passes per image"], passes["passes per image"])
    ratio = table["arm d: multi steps"] / table["arm d: single steps (sum)"]
    assert ratio.between(0.9, 1.5).all()
    assert set(table["plateau: reading"]) <= {"multi better", "single better", "not detected"}
    k = table[table["K"].index.str.match(r"K\d+$")]
    assert k["passes per image"].is_monotonic_increasing


def test_accuracy_by_class_pairs_each_class_with_its_own_single_model(frame: pd.DataFrame
                                                                      ) -> None:
    table = c7.accuracy_by_class(frame)
    floor = c7.accuracy_floor(frame).set_index("group")
    anchors = table[table["anchor"]].set_index("group")
    assert np.allclose(anchors["multi"], floor.loc[anchors.index, "multi"])
    assert (anchors["seeds lower"] == floor.loc[anchors.index, "seeds lower"]).all()
    assert ((table["low"] <= table["diff"]) & (table["diff"] <= table["high"])).all()
    assert sum(len(g) for g in c7.groups(frame).values()) == len(table)


def test_bound_floor_and_verdict_text() -> None:
    # d/2 log(2 pi e sigma^2) per dimension in bits, minus the 1 bit of the [-1, 1] -> [0, 1]
    # map: about -7.92 bits/dim at sigma_min = 0.002
    assert c7.bound_floor_bits(0.002) == pytest.approx(-7.9187, abs=1e-4)
    assert c7.bound_floor_bits(0.004) == pytest.approx(c7.bound_floor_bits(0.002) + 1.0)
    row = pd.Series({"estimate": 0.03, "low": -0.14, "high": 0.19, "p": 0.72, "p_holm": 0.89,
                     "mde": 0.23, "outcome": "not detected"})
    assert c7.verdict_text(row) == "not detected (MDE 0.23; Holm p 0.89): +0.03 [-0.14, +0.19]"
    row = row.copy()
    row[["estimate", "low", "high", "outcome"]] = [-0.43, -0.49, -0.37, "supported"]
    assert c7.verdict_text(row) == "supported: -0.43 [-0.49, -0.37]"


def test_zero_pixel_table_counts_exact_zeros(frame: pd.DataFrame) -> None:
    classes = sorted(int(c) for c in frame.loc[frame["kind"] == "single", "class"].unique())
    images = {c: np.where(np.arange(64).reshape(1, 8, 8) < 16, 0.0, 0.5) for c in classes}
    table = c7.zero_pixel_table(frame, images)
    assert np.allclose(table["zero pixels"], 0.25)
    assert table["bound single"].notna().all() and (table["bound single"] < 0).all()
