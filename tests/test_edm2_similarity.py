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
TINY = exp.Edm2SimilarityConfig(base=TINY_BASE, anchor=8,
                                groups=(("near", "digits", (8, 3, 5)),
                                        ("far", "digits", (8, 0, 1))), cap_factor=2)


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


def test_book_keeps_the_converged_training_and_changes_only_the_design_and_cap():
    design = exp.BOOK.converged()
    changed = {f.name for f in dataclasses.fields(design)
               if getattr(design, f.name) != getattr(base.BOOK, f.name)}
    assert changed == {"centre", "k_values", "groups", "cap_per_class"}
    assert design.cap_per_class == 4 * base.BOOK.cap_per_class
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
    with pytest.raises(InputError, match="cap_factor"):
        dataclasses.replace(TINY, cap_factor=0).converged()


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
    assert (scored["cap_factor"] == 2).all()
    assert set(scored["model"]) == {"8", "3", "5", "0", "1", "8 3 5", "8 0 1"}
    for arm in base.ARMS:
        picked = scored[scored[f"arm_{arm}"].astype(bool)]
        assert len(picked) == 5 + 2 * 3, arm
