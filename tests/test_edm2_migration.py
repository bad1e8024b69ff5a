"""The migration of chapter 7's three stored tables into one (synthetic tables: fast)."""

from __future__ import annotations

import dataclasses
import json

import pandas as pd
import pytest

from multisource.book.status import migration_text
from multisource.common.provenance import sha256_bytes
from multisource.common.validation import InputError
from multisource.experiments import edm2_converged as exp
from multisource.experiments import edm2_migration as mig
from multisource.experiments.runner import stored_state

# Single-source models 1 and 2 (cap 8 steps, extended cap 24 on the grid 8, 12, 16, 24, 32)
# and the K = 2 model "1 2" (cap 16, extended cap 32: past the base grid).
CONFIG = dataclasses.replace(exp.SMOKE, centre=(1, 2), k_values=(1, 2), groups=(),
                             label_dim=2, eval_grid=(8, 12, 16), cap_per_class=8,
                             extension_factor=3, extension_grid=(24, 32))


def _run(seed: int, model: str, stop: int, steps: list[int], cap: int, source: str
         ) -> list[dict]:
    """Curve rows and one scored row of a run that fired at `stop` (-1: capped)."""
    k = len(model.split())
    common = {"seed": seed, "model": model, "K": k, "stop_step": stop,
              "plateau_reached": stop > 0, "plateau_step": steps[0], "cap_step": cap}
    rows = [{"kind": "curve", "step": s, "val_nll_bits": 2.0 - s / 100, "source": source,
             **common} for s in steps]
    rows.append({"kind": "single" if k == 1 else "multi", "step": steps[0], "class": 1,
                 "nll_bits": 1.5, "arm_plateau": True, "source": source, **common})
    return rows


def _tables() -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    base = pd.DataFrame([{"kind": "similarity", "group": "K2", "classes": "1 2"},
                         *_run(0, "1", 12, [8, 12], 8, "base"),       # fired: kept
                         *_run(0, "2", -1, [8], 8, "base"),           # capped: extension
                         *_run(0, "1 2", -1, [8, 12, 16], 16, "base"),  # capped: grid
                         *_run(1, "1", 8, [8], 8, "base"),
                         *_run(1, "2", 12, [8, 12], 8, "base"),
                         *_run(1, "1 2", 12, [8, 12], 16, "base")])
    extension = pd.DataFrame([*_run(0, "2", 16, [8, 12, 16], 24, "ext"),
                              *_run(1, "2", 12, [8, 12], 24, "ext")])   # a replicate: unused
    grid = pd.DataFrame([*_run(0, "1 2", 24, [8, 12, 16, 24], 32, "grid"),
                         *_run(0, "1", 12, [8, 12], 16, "grid")])       # a replicate: unused
    for frame in (extension, grid):
        frame["extension_cap_factor"] = 3
    return base, {"edm2_extension": extension, "edm2_extension_grid": grid}


def test_each_run_comes_from_the_table_in_which_its_rule_fired():
    base, extensions = _tables()
    out, counts = mig.migrate_rows(base, extensions, CONFIG)
    assert counts == {"edm2_converged": 4, "edm2_extension": 1, "edm2_extension_grid": 1}
    runs = out[out["kind"] != "similarity"].groupby(["seed", "model"]).first()
    assert runs["source"].to_dict() == {(0, "1"): "base", (0, "2"): "ext", (0, "1 2"): "grid",
                                        (1, "1"): "base", (1, "2"): "base",
                                        (1, "1 2"): "base"}
    assert runs["extended"].to_dict() == {k: k in {(0, "2"), (0, "1 2")} for k in runs.index}
    assert runs.loc[(0, "2"), "cap_step"] == 24 and runs.loc[(0, "1 2"), "cap_step"] == 32
    assert runs.loc[(0, "1"), "cap_step"] == 8
    assert runs["plateau_reached"].all()
    assert "extension_cap_factor" not in out.columns
    assert list(out.columns) == [*base.columns, "extended"]
    # every row of a replaced run is the source's: none of the base's capped rows is left
    replaced = out[(out["seed"] == 0) & out["model"].isin(["2", "1 2"])]
    assert set(replaced["source"]) == {"ext", "grid"}
    assert len(replaced) == 4 + 5
    assert out["kind"].iloc[0] == "similarity" and pd.isna(out["extended"].iloc[0])
    assert list(out["seed"].dropna()) == sorted(out["seed"].dropna())


def test_a_run_still_capped_after_the_extensions_is_refused():
    base, extensions = _tables()
    grid = extensions["edm2_extension_grid"]
    grid.loc[grid["model"] == "1 2", ["plateau_reached", "stop_step"]] = False, -1
    with pytest.raises(InputError, match="run seed 0 model 1 2 is still capped after the "
                                         "extensions"):
        mig.migrate_rows(base, extensions, CONFIG)


def test_rows_the_extension_rule_would_not_compute_are_refused():
    base, extensions = _tables()
    both = {"edm2_extension": extensions["edm2_extension"],
            "edm2_extension_grid": pd.concat([extensions["edm2_extension_grid"],
                                              extensions["edm2_extension"]])}
    with pytest.raises(InputError, match="more than one extension table"):
        mig.migrate_rows(base, both, CONFIG)
    narrow = dataclasses.replace(CONFIG, extension_grid=(32,))
    with pytest.raises(InputError, match="not on the extension rule's evaluation grid"):
        mig.migrate_rows(base, extensions, narrow)


def test_the_migrated_table_is_current_and_its_record_names_its_sources(tmp_path, monkeypatch):
    base, extensions = _tables()
    records = {}
    for name, frame in {"edm2_converged": base, **extensions}.items():
        data = frame.to_csv(index=False).encode()
        (tmp_path / name).mkdir()
        (tmp_path / name / "book.csv").write_bytes(data)
        records[name] = {"csv_sha256": sha256_bytes(data), "code_hash": f"code-{name}",
                         "config_hash": f"config-{name}", "git_commit": "abc",
                         "wall_time_s": 10.0, "device": "cpu", "segments": 1}
        (tmp_path / name / "book.json").write_text(json.dumps(records[name]))
    monkeypatch.setitem(exp.PROFILES, "book", CONFIG)
    record = mig.migrate("book", results_dir=tmp_path, require_clean=False)
    assert stored_state("edm2_converged", "book", results_dir=tmp_path).state == "current"
    assert record["wall_time_s"] == 30.0
    migration = record["migration"]
    assert migration["runs"] == {"edm2_converged": 4, "edm2_extension": 1,
                                 "edm2_extension_grid": 1}
    assert [s["csv_sha256"] for s in migration["sources"]] == [
        records[n]["csv_sha256"] for n in ("edm2_converged", *mig.EXTENSIONS)]
    assert not (tmp_path / "edm2_extension").exists()
    text = migration_text(migration)
    assert "edm2_extension_grid" in text and "1 runs" in text and "alone" in text
    with pytest.raises(InputError, match=r"already migrated|missing"):
        mig.migrate("book", results_dir=tmp_path, require_clean=False)
