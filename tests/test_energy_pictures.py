"""The stored density pictures of chapter 6: what is stored reads back exactly, the fits are the
box sweep's estimator, and damaged rows are refused."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from multisource.common.validation import InputError
from multisource.experiments import get
from multisource.experiments.energy import BOX_PROFILES
from multisource.experiments.energy_pictures import (
    PROFILES,
    params_from_json,
    params_json,
    pictures_from_rows,
    run_picture_task,
)
from multisource.models import energy as en

SHARED_WITH_THE_SWEEP = ("teacher_weight_scale", "teacher_head_scale", "quad_train",
                         "quad_eval", "restarts", "steps", "init_scale")


def test_the_book_pictures_use_the_box_sweeps_teacher_scales_quadratures_and_budget() -> None:
    pictures, sweep = PROFILES["book"], BOX_PROFILES["book"]
    for name in SHARED_WITH_THE_SWEEP:
        assert getattr(pictures, name) == getattr(sweep, name), name


def test_parameters_survive_json_exactly() -> None:
    params = {"Ws": torch.randn(1, 3, 2, dtype=torch.float64) / 3.0,
              "Wp": torch.empty(1, 3, 0, 2, dtype=torch.float64)}
    back = params_from_json(params_json(params))
    assert set(back) == set(params)
    for name, value in params.items():
        assert back[name].shape == value.shape
        assert torch.equal(back[name], value)


def test_the_smoke_pictures_read_back_through_a_csv(tmp_path) -> None:
    experiment = get("energy_pictures")
    config = experiment.config("smoke")
    rows = run_picture_task(config, experiment.tasks(config)[0])
    path = tmp_path / "smoke.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    pictures = pictures_from_rows(pd.read_csv(path))
    assert pictures["x"].shape == (config.n, 2) and set(pictures["y"]) <= set(range(config.K))
    assert pictures["teacher"]["tv"] == 0.0 and pictures["teacher"]["gap"] == 0.0
    quad = en.gauss_legendre_box(config.quad_eval)
    for role in ("single", "multi"):
        stored = pictures[role]
        assert stored["tv_by_source"].shape == (config.K,)
        assert stored["tv"] == pytest.approx(stored["tv_by_source"].mean(), rel=1e-12)
        # the TV recomputed from the stored parameters is the stored TV
        again = en.box_average_tv(stored["params"], pictures["teacher"]["params"], quad)
        assert again == pytest.approx(stored["tv"], rel=1e-9)
    # the fit is a maximiser of the likelihood, so it beats the teacher on its own samples
    assert min(pictures["single"]["gap"], pictures["multi"]["gap"]) < 0.0


def test_rows_without_a_role_are_refused() -> None:
    frame = pd.DataFrame([{"role": "teacher", "params": "{}", "nll": 0.0, "gap": 0.0,
                           "tv": 0.0, "tv_by_source": "0.0", "samples": "[]"}])
    with pytest.raises(InputError, match="lack the roles"):
        pictures_from_rows(frame)


def test_every_profile_is_one_task_of_a_valid_class() -> None:
    experiment = get("energy_pictures")
    for profile in ("smoke", "book", "paper"):
        config = experiment.config(profile)
        assert len(experiment.tasks(config)) == 1
        spec = config.spec
        assert spec.K == config.K and spec.shared_units + spec.specific_units == config.units
        assert dataclasses.is_dataclass(config)
        assert np.isfinite(config.beta_sim)
