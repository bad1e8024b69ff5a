"""The extension of capped runs: the same model, the same trajectory, a larger cap."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from multisource.common.validation import InputError
from multisource.experiments import edm2_converged as base
from multisource.experiments import edm2_extension as ext

TINY = dataclasses.replace(base.SMOKE, k_values=(1, 3), groups=(), eval_grid=(8, 12, 16, 24),
                           cap_per_class=8, samples_per_class=8, heldout_per_class=10,
                           validation_per_class=10, nll_sigmas=4, grid_per_class=1)


def test_the_extension_retraces_the_base_run_and_goes_past_its_cap():
    """Class 3's single-source model is capped at step 8 in the base run (its rule cannot fire
    before step 12). Trained alone with a 3x cap, its validation bound at step 8 is the base
    run's to float tolerance, and it runs on past the old cap."""
    cpu = torch.device("cpu")
    rows = pd.DataFrame(base.run_task(TINY, {"kind": "seed", "seed": 0}, cpu))
    config = ext.Edm2ExtensionConfig(base=TINY, models=((3,),), cap_factor=3)
    assert ext.tasks(config) == [{"model": [3], "seed": 0}]
    longer = pd.DataFrame(ext.run_task(config, {"model": [3], "seed": 0}, cpu))
    assert set(longer["model"]) == {"3"} and (longer["extension_cap_factor"] == 3).all()
    old = rows[(rows["kind"] == "curve") & (rows["model"] == "3")].set_index("step")
    new = longer[longer["kind"] == "curve"].set_index("step")
    assert list(old.index) == [8] and max(new.index) > 8
    np.testing.assert_allclose(new.loc[8, "val_nll_bits"], old.loc[8, "val_nll_bits"],
                               rtol=1e-4)
    scored = longer[longer["kind"] == "single"]
    assert (scored["cap_step"] == 24).all()
    for arm in base.ARMS:
        assert scored[f"arm_{arm}"].astype(bool).sum() == 1, arm


def test_bad_extensions_are_refused_with_the_parameter_named():
    with pytest.raises(InputError, match="models must be models of the base design"):
        ext.tasks(ext.Edm2ExtensionConfig(base=TINY, models=((9,),)))
    with pytest.raises(InputError, match="cap_factor x cap_per_class x K"):
        ext.Edm2ExtensionConfig(base=TINY, models=((3,),), cap_factor=4).model_config((3,))
    with pytest.raises(InputError, match="cap_factor must be"):
        ext.Edm2ExtensionConfig(base=TINY, models=((3,),), cap_factor=0).model_config((3,))


@pytest.mark.parametrize("profile", sorted(ext.PROFILES))
def test_every_profile_extends_models_of_its_base_design(profile):
    config = ext.PROFILES[profile]
    assert ext.tasks(config)
    for classes in config.models:
        single = config.model_config(classes)
        assert base.design_models(single) == [classes]
        assert base.cap_steps(single, len(classes)) > base.cap_steps(config.base, len(classes))
