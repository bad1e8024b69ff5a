"""The converged design: its stopping rule, its arms, and a resume that changes nothing."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from multisource.common.validation import InputError
from multisource.experiments import edm2_converged as exp

TINY = dataclasses.replace(exp.SMOKE, k_values=(1, 3), groups=(), eval_grid=(8, 12, 16, 24),
                           cap_per_class=8, samples_per_class=8, heldout_per_class=10,
                           validation_per_class=10, nll_sigmas=4, grid_per_class=1)


def test_rule_fires_after_two_flat_windows_not_on_one_noisy_point():
    steps = [256, 384, 512, 768, 1024, 1536, 2048]
    falling_then_flat = [1.0, 0.8, 0.6, 0.55, 0.548, 0.547, 0.546]
    assert exp.plateau_fires(steps, falling_then_flat, 0.01, 1.5, 2) == 2048
    one_blip = [1.0, 0.8, 0.6, 0.62, 0.4, 0.2, 0.0]        # one bad evaluation, then progress
    assert exp.plateau_fires(steps, one_blip, 0.01, 1.5, 2) is None
    overfitting = [1.0, 0.8, 0.7, 0.75, 0.8, 0.9, 1.0]
    assert exp.plateau_fires(steps, overfitting, 0.01, 1.5, 2) == 1024
    assert exp.plateau_fires(steps, overfitting, 0.01, 1.5, 2, min_step=1536) == 1536


@pytest.mark.parametrize("profile", sorted(exp.PROFILES))
def test_every_profile_has_a_valid_design(profile):
    config = exp.PROFILES[profile]
    assert exp.tasks(config)[0] == {"kind": "similarity"}
    for k in config.k_values:
        arms = exp.arm_steps(config, k)
        assert set(arms.values()) <= set(config.eval_grid)
        assert max(arms.values()) <= exp.cap_steps(config, k)
    assert len(exp.design_models(config)) >= 2


def test_arms_are_on_the_grid_and_the_cap_scales_with_k():
    config = exp.BOOK
    assert exp.cap_steps(config, 10) >= 9 * exp.cap_steps(config, 1)
    models = exp.design_models(config)
    multis = [m for m in models if len(m) > 1]
    # every class of every compared multi-source model has its single-source model
    assert {(c,) for m in multis for c in m} <= set(models)
    with pytest.raises(InputError, match="label_dim"):
        exp.design_models(dataclasses.replace(config, label_dim=5))


@pytest.fixture(scope="module")
def tiny_rows():
    return pd.DataFrame(exp.run_task(TINY, {"kind": "seed", "seed": 0}, torch.device("cpu")))


def test_every_model_has_every_arm_once_per_class(tiny_rows):
    scored = tiny_rows[tiny_rows["kind"] != "curve"]
    for model, rows in scored.groupby("model"):
        k = len(model.split())
        for arm in exp.ARMS:
            picked = rows[rows[f"arm_{arm}"].astype(bool)]
            assert sorted(picked["class"]) == sorted(int(c) for c in model.split()), (model, arm)
        assert rows["K"].iloc[0] == k
        assert np.isfinite(rows["nll_bits"]).all()
        assert rows["plateau_step"].iloc[0] in set(rows["step"])


def test_an_interrupted_seed_resumes_to_the_same_rows(tiny_rows, monkeypatch):
    writes = {"count": 0}
    real = exp.atomic_write_bytes

    def interrupt_after_two(path, data):
        real(path, data)
        writes["count"] += 1
        if writes["count"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(exp, "atomic_write_bytes", interrupt_after_two)
    with pytest.raises(KeyboardInterrupt):
        exp.run_task(TINY, {"kind": "seed", "seed": 0}, torch.device("cpu"))
    monkeypatch.setattr(exp, "atomic_write_bytes", real)
    resumed = pd.DataFrame(exp.run_task(TINY, {"kind": "seed", "seed": 0}, torch.device("cpu")))
    columns = ["kind", "model", "step", "class", "val_nll_bits", "nll_bits", "fcd", "accuracy",
               "stop_step", "plateau_step"]
    a = tiny_rows.reindex(columns=columns).reset_index(drop=True)
    b = resumed.reindex(columns=columns).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b, rtol=1e-4, atol=1e-6)


def test_the_defaults_extend_nothing_and_bad_extension_rules_are_refused(tiny_rows):
    assert not tiny_rows.loc[tiny_rows["kind"] != "similarity", "extended"].astype(bool).any()
    for k in (1, 3):
        assert exp.extended_cap_steps(TINY, k) == exp.cap_steps(TINY, k)
    with pytest.raises(InputError, match="extension_factor must be"):
        exp.tasks(dataclasses.replace(TINY, extension_factor=0))
    with pytest.raises(InputError, match="extension_grid must be increasing steps after"):
        exp.tasks(dataclasses.replace(TINY, extension_factor=2, extension_grid=(24, 32)))


# Class 3's single-source model reaches its cap (step 8) before its rule can fire (step 12 at
# the earliest): with a 3x extension it trains on to step 24 inside the stack.
EXTENDED = dataclasses.replace(TINY, extension_factor=3, extension_grid=(32, 48))
ALONE = dataclasses.replace(TINY, centre=(3,), k_values=(1,), cap_per_class=24)


@pytest.fixture(scope="module")
def extended_rows():
    return pd.DataFrame(exp.run_task(EXTENDED, {"kind": "seed", "seed": 0},
                                     torch.device("cpu")))


def test_a_run_capped_before_its_rule_fired_extends_inside_the_stack(extended_rows):
    assert exp.extended_cap_steps(EXTENDED, 1) == 24 and exp.extended_cap_steps(EXTENDED, 3) == 48
    runs = extended_rows[extended_rows["kind"] != "curve"].groupby("model").first()
    assert bool(runs.loc["3", "extended"]) and runs.loc["3", "cap_step"] == 24
    curve = extended_rows[(extended_rows["kind"] == "curve") & (extended_rows["model"] == "3")]
    assert max(curve["step"]) > exp.cap_steps(EXTENDED, 1)
    for model, run in runs.iterrows():
        assert bool(run["extended"]) == (run["cap_step"] != exp.cap_steps(EXTENDED, len(
            model.split()))), model
    scored = extended_rows[(extended_rows["kind"] == "single") & (extended_rows["model"] == "3")]
    for arm in exp.ARMS:
        assert scored[f"arm_{arm}"].astype(bool).sum() == 1, arm


def test_an_extended_run_follows_the_trajectory_of_the_same_model_trained_alone(extended_rows):
    """The premise of the migration (`edm2_migration`): a run extended inside the stack and
    the same model trained alone with the larger cap from the start are one trajectory. Only
    the batched arithmetic differs (float32 sums over another stack size), so the validation
    bounds agree up to rounding grown over a few optimiser steps (measured: 1e-8 relative);
    1e-6 leaves room for other BLAS builds and is still four orders of magnitude below the
    bound's own evaluation noise (`val_change_se`, a few 1e-2 bits/dim here)."""
    alone = pd.DataFrame(exp.run_task(ALONE, {"kind": "seed", "seed": 0}, torch.device("cpu")))
    assert set(alone["model"]) == {"3"} and not alone["extended"].astype(bool).any()
    pick = ["step", "val_nll_bits"]
    stacked = extended_rows[(extended_rows["kind"] == "curve")
                            & (extended_rows["model"] == "3")][pick].set_index("step")
    single = alone[alone["kind"] == "curve"][pick].set_index("step")
    assert list(stacked.index) == list(single.index)
    np.testing.assert_allclose(stacked["val_nll_bits"], single["val_nll_bits"], rtol=1e-6)
    runs = [rows[rows["kind"] == "single"].groupby("model").first().loc["3"]
            for rows in (extended_rows, alone)]
    for column in ("stop_step", "plateau_step", "cap_step", "plateau_reached"):
        assert runs[0][column] == runs[1][column], column
