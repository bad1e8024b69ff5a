"""Code hashes: which modules an experiment's numbers depend on, and that edits change them."""

from __future__ import annotations

import pytest

import multisource.provenance as provenance
from multisource.experiments import get, names
from multisource.provenance import INFRASTRUCTURE_MODULES, code_hash, code_modules


def test_closure_follows_imports_inside_functions() -> None:
    # edm2_miniature imports the diffusion package only inside functions
    modules = code_modules("multisource.experiments.edm2_miniature")
    assert "multisource.models.diffusion.training" in modules
    assert "multisource.models.diffusion.network" in modules


def test_closure_leaves_out_infrastructure_and_unrelated_modules() -> None:
    modules = code_modules("multisource.experiments.gaussian")
    assert "multisource.experiments.gaussian" in modules
    assert "multisource.bounds" in modules
    assert not set(modules) & (INFRASTRUCTURE_MODULES - {"multisource.experiments.gaussian"})
    assert not any("diffusion" in m for m in modules)


def test_every_registered_experiment_has_a_code_hash() -> None:
    for name in names():
        assert len(code_hash(get(name).code_module)) == 16


def test_editing_a_dependency_changes_the_hash(tmp_path, monkeypatch) -> None:
    """Copy the package, edit one module the Gaussian experiment imports, hash again."""
    import shutil

    copy = tmp_path / "multisource"
    shutil.copytree(provenance.PACKAGE_DIR, copy)
    monkeypatch.setattr(provenance, "PACKAGE_DIR", copy)
    before = code_hash("multisource.experiments.gaussian")
    unrelated = copy / "models" / "diffusion" / "sampler.py"
    unrelated.write_text(unrelated.read_text() + "\n# an edit elsewhere\n")
    assert code_hash("multisource.experiments.gaussian") == before
    bounds = copy / "bounds.py"
    text = bounds.read_text()
    bounds.write_text(text.replace('"""', '"""Reworded. ', 1) + "\n# a comment\n")
    assert code_hash("multisource.experiments.gaussian") == before   # docs only
    bounds.write_text(text + "\nEXTRA_CONSTANT = 1\n")
    assert code_hash("multisource.experiments.gaussian") != before


def test_unknown_module_is_refused() -> None:
    with pytest.raises(ValueError, match="module must be"):
        code_modules("multisource.no_such_module")
