"""The similarity axis of chapter 7: its design, its seeding and its reading."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from multisource.common.validation import InputError
from multisource.experiments import edm2_converged as base
from multisource.experiments import edm2_similarity as exp

TINY_BASE = dataclasses.replace(
    base.SMOKE, groups=(), eval_grid=(8, 12, 16, 24), cap_per_class=8, samples_per_class=8,
    heldout_per_class=10, validation_per_class=10, nll_sigmas=4, grid_per_class=1)
TINY = exp.Edm2SimilarityConfig(base=dataclasses.replace(TINY_BASE, extension_factor=2),
                                anchor=8, groups=(("near", "digits", (8, 3, 5)),
                                                  ("far", "digits", (8, 0, 1))))


@pytest.mark.parametrize("profile", sorted(exp.PROFILES))
def test_every_profile_compares_k3_groups_with_one_single_source_model_per_class(profile):
    config = exp.PROFILES[profile]
    design = config.converged()
    models = base.design_models(design)
    multis = [m for m in models if len(m) > 1]
    assert len(multis) == len(config.groups) >= 3
    assert all(len(m) == 3 and m[0] == config.anchor for m in multis)
    singles = [m for m in models if len(m) == 1]
    assert sorted(singles) == sorted({(c,) for m in multis for c in m})   # each class once
    assert exp.tasks(config)[0] == {"kind": "similarity"}
    assert [t["seed"] for t in exp.tasks(config)[1:]] == list(config.base.seeds)


def test_book_keeps_the_converged_training_and_changes_only_the_design_and_grid():
    design = exp.BOOK.converged()
    changed = {f.name for f in dataclasses.fields(design)
               if getattr(design, f.name) != getattr(base.BOOK, f.name)}
    assert changed == {"centre", "k_values", "groups", "extension_grid"}
    assert design.extension_factor == 4 and design.extension_grid == ()
    # a single-source model may train to 4x its cap; a K = 3 model to the grid's last step
    assert base.extended_cap_steps(design, 1) == 4 * base.cap_steps(design, 1)
    assert base.extended_cap_steps(design, 3) == max(design.eval_grid)
    assert len(exp.BOOK.base.seeds) == 8
    # the converged design's two groups are on the axis, and at least three more
    classes = [g[2] for g in exp.BOOK.groups]
    assert base.BOOK.centre[:3] in classes and base.BOOK.groups[0][2] in classes
    assert len(classes) - 2 >= 3


def test_task_cost_orders_the_cheap_similarity_task_first():
    costs = [exp.task_cost(exp.BOOK, t) for t in exp.tasks(exp.BOOK)]
    assert costs[0] < min(costs[1:]) and len(set(costs[1:])) == 1


def test_bad_groups_are_refused_with_the_parameter_named():
    with pytest.raises(InputError, match="groups"):
        dataclasses.replace(TINY, groups=(("x", "d", (3, 8, 5)),)).converged()
    with pytest.raises(InputError, match="groups"):
        dataclasses.replace(TINY, groups=()).converged()
    with pytest.raises(InputError, match="extension_factor"):
        exp.tasks(dataclasses.replace(TINY, base=dataclasses.replace(TINY_BASE,
                                                                     extension_factor=0)))


@pytest.fixture(scope="module")
def tiny_rows() -> pd.DataFrame:
    cpu = torch.device("cpu")
    rows = exp.run_task(TINY, {"kind": "similarity"}, cpu)
    rows += exp.run_task(TINY, {"kind": "seed", "seed": 0}, cpu)
    return pd.DataFrame(rows)


@pytest.mark.slow
def test_the_anchor_single_is_the_converged_designs_model_identically_seeded(tiny_rows):
    """The converged design's run of the same seed (another stack: a K sweep 8, 3, 5) trains
    the single-source model of the anchor along the same trajectory."""
    other = dataclasses.replace(TINY_BASE, k_values=(1, 3))
    theirs = pd.DataFrame(base.run_task(other, {"kind": "seed", "seed": 0}, torch.device("cpu")))
    for key in ("8", "3", "8 3 5"):
        a = tiny_rows[(tiny_rows["kind"] == "curve") & (tiny_rows["model"] == key)]
        b = theirs[(theirs["kind"] == "curve") & (theirs["model"] == key)]
        assert list(a["step"])[:1] == list(b["step"])[:1] == [8]
        np.testing.assert_allclose(a["val_nll_bits"].iloc[0], b["val_nll_bits"].iloc[0],
                                   rtol=1e-4)


@pytest.mark.slow
def test_rows_carry_the_similarity_of_every_group_and_every_arm(tiny_rows):
    sim = tiny_rows[tiny_rows["kind"] == "similarity"]
    assert list(sim["group"]) == ["near", "far"]
    assert (sim["fcd_to_anchor"] > 0).all()
    scored = tiny_rows[tiny_rows["kind"].isin(["multi", "single"])]
    runs = scored.groupby("model").first()
    assert (runs["cap_step"] <= 2 * TINY_BASE.cap_per_class * runs["K"]).all()
    assert set(scored["model"]) == {"8", "3", "5", "0", "1", "8 3 5", "8 0 1"}
    for arm in base.ARMS:
        picked = scored[scored[f"arm_{arm}"].astype(bool)]
        assert len(picked) == 5 + 2 * 3, arm


# --- the reading (synthetic tables: fast) ------------------------------------------------------

from multisource.readings import similarity_axis as axis  # noqa: E402

NAMES = {6: "fashion:Shirt", 2: "fashion:Pullover", 4: "fashion:Coat", 1: "fashion:Trouser",
         8: "fashion:Bag", 5: "fashion:Sandal", 7: "fashion:Sneaker", 12: "animals:cat",
         21: "mnist:digit 1"}
GROUPS = {"tops": ((6, 2, 4), 12.0), "trouser + bag": ((6, 1, 8), 53.0),
          "sandal + sneaker": ((6, 5, 7), 148.0), "cat + digit 1": ((6, 12, 21), 149.0)}


def _axis_frame(slope: float = -0.1, domain_shift: float = 0.0, seeds: int = 8,
                noise: float = 0.02) -> pd.DataFrame:
    """Scored rows in which multi - single of every class of a group is a seed effect plus
    `slope` x (-log FCD to the anchor) (plus `domain_shift` in the cross-domain group) for
    NLL and FCD, minus that for accuracy."""
    rng = np.random.default_rng(1)
    rows: list[dict] = []
    for name, (classes, fcd) in GROUPS.items():
        rows.append({"kind": "similarity", "group": name, "classes": " ".join(map(str, classes)),
                     "K": 3, "fcd_to_anchor": fcd, "fcd_pairwise": fcd,
                     "pixel_fd_to_anchor": fcd / 20, "pixel_fd_pairwise": fcd / 20})
    for c, n in NAMES.items():
        rows.append({"kind": "real", "class": c, "class_name": n})
    arms = {f"arm_{a}": True for a in base.ARMS}
    for seed in range(seeds):
        level = rng.normal(0.0, 0.2)
        single = {c: rng.normal(3.0, 0.3) for c in NAMES}
        for c in NAMES:
            rows.append({"kind": "single", "seed": seed, "model": str(c), "class": c, "K": 1,
                         "nll_bits": single[c], "fcd": single[c], "accuracy": single[c],
                         "plateau_reached": True, "stop_step": 40, "plateau_step": 32,
                         "cap_step": 64, **arms})
        for name, (classes, fcd) in GROUPS.items():
            shift = level + slope * -np.log(fcd) + (domain_shift if name == "cat + digit 1"
                                                    else 0.0)
            for c in classes:
                d = shift + rng.normal(0.0, noise)
                rows.append({"kind": "multi", "seed": seed, "model": " ".join(map(str, classes)),
                             "class": c, "K": 3, "nll_bits": single[c] + d,
                             "fcd": single[c] + d, "accuracy": single[c] - d,
                             "plateau_reached": name != "cat + digit 1" or seed > 0,
                             "stop_step": 80, "plateau_step": 64, "cap_step": 128, **arms})
    return pd.DataFrame(rows)


def _by_test(table: pd.DataFrame, test: str, metric: str = "nll_bits",
             scope: str = "anchor") -> pd.Series:
    return table[(table.test == test) & (table.metric == metric) & (table.scope == scope)
                 ].iloc[0]


def test_groups_know_their_domains_and_the_matched_pair():
    groups = axis.group_table(_axis_frame()).set_index("group")
    assert groups["one_domain"].to_dict() == {"tops": True, "trouser + bag": True,
                                              "sandal + sneaker": True, "cat + digit 1": False}
    assert groups.loc["cat + digit 1", "domains"] == "animals, fashion, mnist"
    np.testing.assert_allclose(groups.loc["tops", "similarity"], -np.log(12.0))
    pairs = axis.matched_pairs(_axis_frame())
    assert pairs.to_dict("records") == [{"across": "cat + digit 1", "within": "sandal + sneaker",
                                         "gap": pytest.approx(-np.log(149 / 148))}]


def test_a_planted_slope_is_recovered_and_supported_in_every_metric():
    table = axis.verdict_table(_axis_frame(slope=-0.1))
    for metric in axis.METRICS:
        for test in ("slope", "slope, one domain"):
            row = _by_test(table, test, metric)
            sign = 1.0 if metric == "accuracy" else -1.0
            assert row.low < sign * 0.1 < row.high, (test, metric)
            assert row.outcome == "supported", (test, metric)
        assert _by_test(table, "near - far, one domain", metric).outcome == "supported"
    matched = _by_test(table, "domain at matched similarity: cat + digit 1 - sandal + sneaker")
    assert matched.outcome == "not detected" and np.isfinite(matched.mde)
    assert set(table.family) == set(axis.FAMILIES)


def test_no_slope_is_not_detected_with_its_mde_and_a_domain_effect_is_caught():
    table = axis.verdict_table(_axis_frame(slope=0.0, domain_shift=0.3))
    within = _by_test(table, "slope, one domain")
    assert within.outcome == "not detected" and 0 < within.mde < 0.1
    matched = _by_test(table, "domain at matched similarity: cat + digit 1 - sandal + sneaker")
    assert matched.outcome == "contradicted" and matched.estimate == pytest.approx(0.3, abs=0.05)
    # the all-groups slope mixes the domain effect in: a worse cross-domain group alone
    # reads as support there, which the one-domain slope does not share
    assert _by_test(table, "slope").outcome == "supported"


def test_slopes_are_paired_within_seed():
    """A large seed effect shared by every group of a seed leaves the slope's interval as
    narrow as without it: the seed effect cancels in each seed's own slope."""
    frame = _axis_frame(slope=-0.1)
    shifted = frame.copy()
    multi = shifted["kind"] == "multi"
    shifted.loc[multi, "nll_bits"] += shifted.loc[multi, "seed"].astype(float) * 5.0
    a = _by_test(axis.verdict_table(frame), "slope")
    b = _by_test(axis.verdict_table(shifted), "slope")
    assert b.high - b.low == pytest.approx(a.high - a.low, rel=1e-6)


def test_group_estimates_and_stopping_summaries():
    frame = _axis_frame()
    points = axis.group_estimates(frame)
    assert len(points) == len(GROUPS) * len(axis.METRICS) * len(axis.SCOPES)
    assert (points["seeds"] == 8).all()
    stop = axis.stopping(frame).set_index("model")
    assert stop.loc["6 12 21", "fired"] == 7 and stop.loc["6 2 4", "fired"] == 8
    with pytest.raises(ValueError, match="measure"):
        axis.group_table(frame, measure="nope")


@pytest.mark.slow
def test_the_reading_reads_the_experiments_own_rows(tiny_rows):
    groups = axis.group_table(tiny_rows)
    assert list(groups["group"]) == ["near", "far"] and groups["one_domain"].all()
    for metric in axis.METRICS:
        table = axis.seed_table(tiny_rows, metric, "K-average")
        assert table.shape == (1, 2) and np.isfinite(table.to_numpy()).all()
    assert set(axis.stopping(tiny_rows)["model"]) == {"8", "3", "5", "0", "1", "8 3 5", "8 0 1"}
    agree = axis.single_agreement(tiny_rows, tiny_rows)
    assert (agree["max_abs_diff_bits"] == 0).all() and agree["same_snapshot"].all()
