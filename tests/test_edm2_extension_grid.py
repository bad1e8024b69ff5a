"""The grid extension: the same model on the same trajectory, evaluated past the base grid."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from multisource.common.validation import InputError
from multisource.experiments import edm2_converged as base
from multisource.experiments import edm2_extension as ext
from multisource.experiments import edm2_extension_grid as grid

TINY = dataclasses.replace(base.SMOKE, k_values=(1, 3), groups=(), eval_grid=(8, 12, 16, 24),
                           cap_per_class=8, samples_per_class=8, heldout_per_class=10,
                           validation_per_class=10, nll_sigmas=4, grid_per_class=1,
                           plateau_tol_bits=-10.0)


def _config(extra=(32, 48), seeds=(0,)):
    return grid.Edm2GridExtensionConfig(
        extension=ext.Edm2ExtensionConfig(base=TINY, models=(TINY.centre,), cap_factor=2),
        extra_grid=extra, seeds=seeds)


def test_the_grid_extension_retraces_the_base_run_and_goes_past_its_last_step():
    """With tolerance -10 bits the rule cannot fire, so the K = 3 model stops at its cap, step 24,
    the base grid's last. Trained alone on the longer grid, its validation bound agrees with
    the base run's at every base step, and it is evaluated at 32 and 48."""
    cpu = torch.device("cpu")
    rows = pd.DataFrame(base.run_task(TINY, {"kind": "seed", "seed": 0}, cpu))
    config = _config()
    assert grid.tasks(config) == [{"model": [8, 3, 5], "seed": 0}]
    every = pd.DataFrame(grid.run_task(config, {"model": [8, 3, 5], "seed": 0}, cpu))
    # the design of a K-class model includes its single-source models (they train beside it)
    assert set(every["model"]) == {"8 3 5", "8", "3", "5"}
    assert (every["extension_extra_grid"] == "32 48").all()
    longer = every[every["model"] == "8 3 5"]
    old = rows[(rows["kind"] == "curve") & (rows["model"] == "8 3 5")].set_index("step")
    new = longer[longer["kind"] == "curve"].set_index("step")
    assert list(old.index) == [8, 12, 16, 24] and list(new.index) == [8, 12, 16, 24, 32, 48]
    np.testing.assert_allclose(new.loc[old.index, "val_nll_bits"], old["val_nll_bits"],
                               rtol=1e-4)
    scored = longer[longer["kind"] == "multi"]
    assert (scored["cap_step"] == 48).all()
    for arm in base.ARMS:
        assert scored[f"arm_{arm}"].astype(bool).sum() == 3, arm


def test_bad_grid_extensions_are_refused_with_the_parameter_named():
    for extra in [(), (24, 32), (48, 32)]:
        with pytest.raises(InputError, match="extra_grid must be increasing steps after"):
            grid.tasks(_config(extra=extra))
    for seeds in [(), (0, 7)]:
        with pytest.raises(InputError, match="seeds must be a non-empty subset"):
            grid.tasks(_config(seeds=seeds))


@pytest.mark.parametrize("profile", sorted(grid.PROFILES))
def test_every_profile_extends_a_model_whose_cap_is_the_base_grids_last_step(profile):
    config = grid.PROFILES[profile]
    assert grid.tasks(config)
    old = config.extension.base
    for classes in config.extension.models:
        assert base.cap_steps(old, len(classes)) == max(old.eval_grid)
        single = config.grown().model_config(classes)
        assert base.cap_steps(single, len(classes)) == max(config.extra_grid)
