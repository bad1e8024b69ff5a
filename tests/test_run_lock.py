"""Runs that are never repeated by accident: `multisource run` on current stored results does
nothing (unless --force), a second run of the same experiment and profile is refused while the
first holds the lock, and no empty checkpoint is ever left behind."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from multisource import cli
from multisource.common.paths import REPO_ROOT
from multisource.experiments import Experiment, register, runner, workers

CALLS: list[int] = []
STOP_AT: list[int] = []


@dataclass(frozen=True)
class LockConfig:
    tasks: int = 3


def _run_task(config: LockConfig, task: dict, device) -> list[dict]:
    if task["i"] in STOP_AT:
        raise KeyboardInterrupt
    CALLS.append(task["i"])
    return [{"i": task["i"], "value": 2.0 * task["i"]}]


@pytest.fixture
def results(tmp_path, monkeypatch) -> Path:
    """The toy experiment `locktoy`, its results redirected into tmp_path."""
    register(Experiment(name="locktoy", description="toy", chapter="none",
                        profiles={p: LockConfig() for p in ("smoke", "book", "paper")},
                        tasks=lambda c: [{"i": i} for i in range(c.tasks)],
                        run_task=_run_task))
    monkeypatch.setattr(runner, "results_path",
                        lambda e, p, suffix=".csv": tmp_path / e / f"{p}{suffix}")
    CALLS.clear()
    STOP_AT.clear()
    return tmp_path / "locktoy"


RUN = ["run", "locktoy", "--profile", "smoke", "--device", "cpu", "--quiet"]


def test_current_results_are_not_computed_again_without_force(results, capsys) -> None:
    assert cli.main(RUN) == 0
    assert CALLS == [0, 1, 2]
    capsys.readouterr()
    CALLS.clear()
    assert cli.main(RUN) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert CALLS == []
    assert len(out) == 1
    assert out[0].startswith("locktoy[smoke]: the stored results are current (the recorded "
                             "run took ")
    assert "nothing to do (`--force` computes them again)" in out[0]
    assert cli.main([*RUN, "--force"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert CALLS == [0, 1, 2]
    assert out[0].startswith("locktoy[smoke]: computing current results again (--force); "
                             "the recorded run took ")
    assert out[1].startswith("wrote ")


def test_stale_results_say_why_they_are_computed_again(results, capsys, monkeypatch) -> None:
    assert cli.main(RUN) == 0
    capsys.readouterr()
    monkeypatch.setattr(runner, "code_hash", lambda module: "0" * 16)
    assert cli.main(RUN) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("locktoy[smoke]: the code that computes the stored results has "
                            "changed; computing them again; the recorded run took ")


def test_a_second_run_is_refused_naming_the_first_runs_pid(results, capsys) -> None:
    """The lock belongs to another process here; flock makes a second open file of the same
    process conflict as well, so the first run can be simulated in this one."""
    results.mkdir(parents=True)
    lock = results / "smoke.lock"
    with workers._run_lock(lock, "locktoy", "smoke"):
        assert lock.read_text() == f"{os.getpid()}\n"
        assert cli.main(RUN) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert CALLS == [] and len(err) == 1
    assert err[0] == (f"multisource: error: locktoy[smoke] is already running in process "
                      f"{os.getpid()} (it holds smoke.lock); wait for it to finish, or stop "
                      f"it (`kill {os.getpid()}`) and run this again to resume")
    assert not lock.exists()                 # released and removed by its holder
    assert cli.main(RUN) == 0 and CALLS == [0, 1, 2]
    assert sorted(p.name for p in results.iterdir()) == ["smoke.csv", "smoke.json"]


def test_a_lock_left_by_a_killed_run_does_not_block(results) -> None:
    """A run killed with SIGKILL leaves its lock file, but not the lock: the next run takes
    it."""
    results.mkdir(parents=True)
    (results / "smoke.lock").write_text("999999999\n")
    runner.run_experiment("locktoy", "smoke", "cpu", progress=False)
    assert CALLS == [0, 1, 2] and not (results / "smoke.lock").exists()


def test_no_empty_checkpoint_is_left(results, capsys) -> None:
    STOP_AT.append(0)                              # interrupted before any task finished
    assert cli.main(RUN) == 130
    assert "no task had finished" in capsys.readouterr().err
    assert not results.exists()                    # not even an empty folder
    results.mkdir(parents=True)
    (results / "smoke.partial.jsonl").write_bytes(b"")   # left by an older version
    assert cli.main(RUN) == 130
    assert list(results.iterdir()) == []
    STOP_AT[:] = [1]                               # one task finished: it is kept
    assert cli.main(RUN) == 130
    assert "kept in" in capsys.readouterr().err
    assert len((results / "smoke.partial.jsonl").read_text().splitlines()) == 1
    assert not (results / "smoke.lock").exists()


def test_lock_files_and_checkpoints_are_ignored_by_git() -> None:
    for name in ("data/results/energy_ising/book.lock", "data/results/gaussian/smoke.lock",
                 "data/results/energy_ising/book.partial.jsonl"):
        ignored = subprocess.run(["git", "check-ignore", "-q", "--no-index", name],
                                 cwd=REPO_ROOT, check=False)
        assert ignored.returncode == 0, name
