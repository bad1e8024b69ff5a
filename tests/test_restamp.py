"""Verified restamps: a change that leaves the rows alone is restamped, one that does not is
refused, and the static proof recognises the code that ran."""

from __future__ import annotations

import importlib
import json
import sys
import textwrap

import pytest

from multisource import experiments
from multisource.common.validation import InputError
from multisource.experiments.restamp import (
    _current_scheme_hash,
    legacy_modules_hash,
    restamp,
    sample_tasks,
)
from multisource.experiments.runner import run_experiment, stored_state

TOY = textwrap.dedent('''
    from dataclasses import dataclass
    from multisource.experiments import Experiment, register

    @dataclass(frozen=True)
    class Config:
        tasks: int = 5

    def run_task(config, task, device):
        {body}

    register(Experiment(name="restamp_toy", description="toy", chapter="none",
                        profiles={{p: Config() for p in ("smoke", "book", "paper")}},
                        tasks=lambda c: [{{"i": i}} for i in range(c.tasks)],
                        run_task=run_task, task_cost=lambda c, t: -t["i"]))
''')
ORIGINAL = 'value = task["i"] * 0.5\n    return [{"i": task["i"], "value": value}]'
RENAMED = 'half = task["i"] * 0.5\n    return [{"i": task["i"], "value": half}]'
CHANGED = 'value = task["i"] * 0.5 + 1e-12\n    return [{"i": task["i"], "value": value}]'


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """A throwaway experiment module, with a function that rewrites and reloads it."""
    module_dir = tmp_path / "module"
    module_dir.mkdir()
    monkeypatch.syspath_prepend(str(module_dir))
    path = module_dir / "restamp_toy_module.py"

    def write(body: str):
        path.write_text(TOY.format(body=body))
        importlib.invalidate_caches()
        if "restamp_toy_module" in sys.modules:
            return importlib.reload(sys.modules["restamp_toy_module"])
        return importlib.import_module("restamp_toy_module")

    yield write
    sys.modules.pop("restamp_toy_module", None)
    experiments._REGISTRY.pop("restamp_toy", None)   # its module is gone with the test


def test_a_rename_that_leaves_the_rows_alone_is_restamped(toy, tmp_path) -> None:
    toy(ORIGINAL)
    results = tmp_path / "results"
    run_experiment("restamp_toy", "book", "cpu", progress=False, results_dir=results)
    before = json.loads((results / "restamp_toy" / "book.json").read_text())
    toy(RENAMED)
    assert stored_state("restamp_toy", "book", results_dir=results).state == "stale-code"
    outcome = restamp("restamp_toy", "book", results_dir=results, require_clean=False)
    assert outcome.restamped
    after = json.loads((results / "restamp_toy" / "book.json").read_text())
    assert after["code_hash"] != before["code_hash"]
    assert after["restamps"][-1]["from_code_hash"] == before["code_hash"]
    # the two cheapest tasks by task_cost (the last two), reported in task order
    assert after["restamps"][-1]["tasks"] == ['{"i":3}', '{"i":4}']
    assert stored_state("restamp_toy", "book", results_dir=results).state == "current"
    again = restamp("restamp_toy", "book", results_dir=results, require_clean=False)
    assert not again.restamped


def test_an_edit_that_changes_a_row_is_refused_and_nothing_changes(toy, tmp_path) -> None:
    toy(ORIGINAL)
    results = tmp_path / "results"
    run_experiment("restamp_toy", "book", "cpu", progress=False, results_dir=results)
    sidecar = results / "restamp_toy" / "book.json"
    before = sidecar.read_bytes()
    toy(CHANGED)
    with pytest.raises(InputError, match="differ from the stored table"):
        restamp("restamp_toy", "book", results_dir=results, require_clean=False)
    assert sidecar.read_bytes() == before
    assert stored_state("restamp_toy", "book", results_dir=results).state == "stale-code"


def test_sample_is_the_cheapest_tasks_and_at_least_two(toy) -> None:
    toy(ORIGINAL)
    assert sample_tasks("restamp_toy", "book", 2) == [{"i": 3}, {"i": 4}]
    with pytest.raises(InputError, match=r"sample must be an integer in \[2, 1000\]"):
        restamp("restamp_toy", "book", sample=1, require_clean=False)


def test_static_proof_hashes_see_code_but_not_module_paths() -> None:
    """The current scheme ignores where a module lives and its docstrings; an edit counts.
    The legacy scheme (module names in the hash) still tells the two layouts apart."""
    old = {"multisource.theory.bounds": '"""Doc."""\nRATE = 0.5\n',
           "multisource.experiments.toy": "from multisource.theory.bounds import RATE\nX = RATE\n"}
    moved = {"multisource.theory.rates": '"""Other doc."""\nRATE = 0.5\n',
             "multisource.theory": '"""A package."""\n',
             "multisource.experiments.toy": "from multisource.theory.rates import RATE\n"
                                            "X = RATE\n"}
    edited = dict(moved, **{"multisource.theory.rates": "RATE = 0.25\n"})
    assert _current_scheme_hash(old) == _current_scheme_hash(moved)
    assert _current_scheme_hash(old) != _current_scheme_hash(edited)
    assert legacy_modules_hash(old) != legacy_modules_hash(moved)


def test_status_states_what_a_restamp_verified() -> None:
    from multisource.book.status import restamp_text

    text = restamp_text({"from_code_hash": "abc", "at_commit": "0123456789ab",
                         "static_commit": "fedcba987654", "tasks": ["a", "b"],
                         "rerun_identical": False, "rerun_max_relative_difference": 4.5e-10})
    assert text == ("restamped from code abc at commit 0123456789 (code identical to commit "
                    "fedcba9876 up to docstrings and module paths; 2 tasks rerun, largest "
                    "relative difference 4.5e-10)")
