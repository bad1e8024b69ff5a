"""Committed results: produced by the current code at a clean commit, and reproducible.

The cheap experiments are recomputed here and compared with the stored tables, so a stored
number that the current code no longer produces fails the build instead of being shown.
"""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pandas as pd
import pytest

from multisource.common.paths import REPO_ROOT, RESULTS_DIR
from multisource.experiments import get, names
from multisource.experiments.runner import run_experiment, stored_state

CHEAP = ("gaussian", "autoregressive_tabular", "energy_ising")
RTOL, ATOL = 1e-6, 1e-9   # same code, other thread counts or BLAS builds: rounding only


def _committed_sidecars() -> list[str]:
    listed = subprocess.run(["git", "ls-files", "data/results/*/*.json"], cwd=REPO_ROOT,
                            capture_output=True, text=True, check=False).stdout.split()
    return listed or sorted(str(p.relative_to(REPO_ROOT)) for p in RESULTS_DIR.glob("*/*.json"))


SIDECARS = _committed_sidecars()


@pytest.mark.parametrize("sidecar", SIDECARS)
def test_committed_results_come_from_the_current_code_at_a_clean_commit(sidecar) -> None:
    record = json.loads((REPO_ROOT / sidecar).read_text())
    name, profile = record["experiment"], record["profile"]
    assert not record["git_commit"].endswith("-dirty"), f"rerun {name}[{profile}] at a clean commit"
    assert record["git_commit"] != "unknown"
    state = stored_state(name, profile)
    assert state.state == "current", (
        f"{sidecar} is {state.state} {state.reason}: rerun `multisource run {name} "
        f"--profile {profile}` at a clean commit and commit the result")


def _in_progress_tasks(name: str) -> int:
    """Finished tasks of a committed book checkpoint (a run that spans sessions) that match
    the current config and code; 0 when there is none."""
    from multisource.common.provenance import code_hash, config_hash
    from multisource.experiments.runner import _read_checkpoint, task_key

    relative = f"data/results/{name}/book.partial.jsonl"
    tracked = subprocess.run(["git", "ls-files", relative], cwd=REPO_ROOT, capture_output=True,
                             text=True, check=False).stdout.strip()
    if not tracked:
        return 0
    experiment = get(name)
    config = experiment.config("book")
    keys = {task_key(t) for t in experiment.tasks(config)}
    done = _read_checkpoint(REPO_ROOT / relative, config_hash(name, config),
                            code_hash(experiment.code_module), keys)
    return len(done)


def test_every_experiment_has_book_results_or_a_current_run_in_progress() -> None:
    """A long run may span sessions: it then commits its checkpoint, whose finished tasks must
    match the current code (else the run would silently start again)."""
    stored = {json.loads((REPO_ROOT / s).read_text())["experiment"] for s in SIDECARS
              if s.endswith("/book.json")}
    ours = {n for n in names() if get(n).code_module.startswith("multisource.")}
    missing = ours - stored   # (tests register toy experiments of their own)
    assert all(_in_progress_tasks(n) > 0 for n in missing), missing


@pytest.mark.slow
@pytest.mark.parametrize("name", CHEAP)
def test_cheap_results_recompute_to_the_stored_table(name, tmp_path) -> None:
    stored = pd.read_csv(RESULTS_DIR / name / "book.csv")
    fresh = run_experiment(name, "book", "cpu", progress=False, results_dir=tmp_path).frame
    assert list(fresh.columns) == list(stored.columns)
    assert len(fresh) == len(stored)
    for column in stored.columns:
        a, b = stored[column].to_numpy(), fresh[column].to_numpy()
        if np.issubdtype(a.dtype, np.floating) or np.issubdtype(b.dtype, np.floating):
            np.testing.assert_allclose(b.astype(float), a.astype(float), rtol=RTOL, atol=ATOL,
                                       equal_nan=True, err_msg=f"{name}.{column}")
        else:
            assert (a == b).all(), f"{name}.{column} differs"
    assert get(name).chapter
