"""Code hashes: which modules an experiment's numbers depend on, and that edits change them."""

from __future__ import annotations

import pytest

import multisource.common.provenance as provenance
from multisource.common.provenance import code_hash, code_modules, is_infrastructure
from multisource.experiments import get, names


def test_closure_follows_imports_inside_functions() -> None:
    # edm2_miniature imports the diffusion package only inside functions
    modules = code_modules("multisource.experiments.edm2_miniature")
    assert "multisource.models.diffusion.training" in modules
    assert "multisource.models.diffusion.network" in modules


def test_closure_leaves_out_infrastructure_and_unrelated_modules() -> None:
    modules = code_modules("multisource.experiments.gaussian")
    assert "multisource.experiments.gaussian" in modules
    assert "multisource.theory.bounds" in modules
    assert not [m for m in modules if is_infrastructure(m)]
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
    bounds = copy / "theory" / "bounds.py"
    text = bounds.read_text()
    bounds.write_text(text.replace('"""', '"""Reworded. ', 1) + "\n# a comment\n")
    assert code_hash("multisource.experiments.gaussian") == before   # docs only
    bounds.write_text(text + "\nEXTRA_CONSTANT = 1\n")
    assert code_hash("multisource.experiments.gaussian") != before


def test_moving_a_module_to_another_package_keeps_the_hash(tmp_path, monkeypatch) -> None:
    """A move with its imports rewritten cannot change a number, so it leaves stored results
    current; the same move with an edit does not."""
    import shutil

    copy = tmp_path / "multisource"
    shutil.copytree(provenance.PACKAGE_DIR, copy)
    monkeypatch.setattr(provenance, "PACKAGE_DIR", copy)
    before = code_hash("multisource.experiments.gaussian")
    (copy / "rates").mkdir()
    (copy / "rates" / "__init__.py").write_text('"""A new package."""\n')
    shutil.move(copy / "theory" / "bounds.py", copy / "rates" / "paper_bounds.py")
    for path in copy.rglob("*.py"):
        text = path.read_text()
        if "multisource.theory.bounds" in text:
            path.write_text(text.replace("multisource.theory.bounds",
                                         "multisource.rates.paper_bounds"))
    assert code_hash("multisource.experiments.gaussian") == before
    moved = copy / "rates" / "paper_bounds.py"
    moved.write_text(moved.read_text() + "\nEXTRA_CONSTANT = 1\n")
    assert code_hash("multisource.experiments.gaussian") != before


def test_unknown_module_is_refused() -> None:
    with pytest.raises(ValueError, match="module must be"):
        code_modules("multisource.no_such_module")
