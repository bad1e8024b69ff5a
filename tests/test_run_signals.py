"""`multisource run --workers 2` stopped by SIGTERM or SIGINT (to the parent or to its whole
process group, as Ctrl-C on a terminal does), or losing its parent: every worker process ends,
the checkpoint keeps the finished task, one line is printed and the exit status is 143 / 130.

The run is a real subprocess in a session of its own, so that its process group holds exactly
the run's processes; /proc shows whether any of them is left.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from multisource.common.paths import REPO_ROOT

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(),
                                reason="needs /proc to list the run's processes")

# Task 0 finishes at once (so the checkpoint has a line); the others would take minutes.
EXPERIMENT = '''
import time
from dataclasses import dataclass

from multisource.experiments import PROFILES, Experiment, register


@dataclass(frozen=True)
class SlowConfig:
    tasks: int = 4


def run_task(config, task, device):
    if task["i"] > 0:
        time.sleep(300)
    return [{"i": task["i"], "value": float(task["i"])}]


register(Experiment(name="slow_toy", description="slow toy", chapter="none",
                    profiles={p: SlowConfig() for p in PROFILES},
                    tasks=lambda c: [{"i": i} for i in range(c.tasks)], run_task=run_task))
'''

# `multisource ...` with the results folder redirected away from data/results.
DRIVER = '''
import sys
from pathlib import Path

import slow_toy_experiment  # registers slow_toy
from multisource import cli
from multisource.experiments import runner

results = Path(sys.argv[1])
runner.results_path = lambda e, p, suffix=".csv": results / e / f"{p}{suffix}"
sys.exit(cli.main(sys.argv[2:]))
'''


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of process group `pgid`."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def start_run(tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    """Start the slow run with two workers (in a new session: its own process group)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "slow_toy_experiment.py").write_text(EXPERIMENT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path),
                                                         str(REPO_ROOT / "src")]),
           "OMP_NUM_THREADS": "1"}
    results = tmp_path / "results"
    process = subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(results), "run", "slow_toy", "--profile", "smoke",
         "--workers", "2", "--device", "cpu", "--quiet"],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True)
    return process, results / "slow_toy" / "smoke.partial.jsonl"


def busy(process: subprocess.Popen, checkpoint: Path) -> bool:
    """The first task is in the checkpoint and both workers are running (the group holds the
    parent, the resource tracker and two workers)."""
    return (checkpoint.is_file() and checkpoint.read_text().endswith("\n")
            and len(group_members(process.pid)) >= 4)


# How each run is stopped: (signal, sent to the whole group, exit status, first words).
STOPS = {
    "sigterm-parent": (signal.SIGTERM, False, 143, "multisource: terminated (SIGTERM);"),
    "sigint-group": (signal.SIGINT, True, 130, "multisource: interrupted;"),
    "sigkill-parent": (signal.SIGKILL, False, -9, ""),   # the workers must notice alone
}


def test_a_stopped_run_leaves_no_process_and_keeps_its_checkpoint(tmp_path) -> None:
    """The runs start together: each pays for importing torch in three processes. (SIGTERM
    to the whole group takes the same path as SIGTERM to the parent; it is left out to keep
    the test short.)"""
    runs = {name: start_run(tmp_path / name) for name in STOPS}
    try:
        wait_for(lambda: all(busy(*run) for run in runs.values()), 90,
                 "every run's first task and workers")
        for name, (process, _) in runs.items():
            sig, to_group, _, _ = STOPS[name]
            (os.killpg if to_group else os.kill)(process.pid, sig)
        errors = {name: process.communicate(timeout=30)[1]
                  for name, (process, _) in runs.items()}
        wait_for(lambda: not any(group_members(p.pid) for p, _ in runs.values()), 5,
                 "every process of every run to end")
    finally:
        for process, _ in runs.values():
            if group_members(process.pid):
                os.killpg(process.pid, signal.SIGKILL)
    for name, (process, checkpoint) in runs.items():
        sig, _, status, words = STOPS[name]
        err = errors[name]
        assert process.returncode == status, (name, err)
        entries = [json.loads(line) for line in checkpoint.read_text().splitlines()]
        assert [e["task"] for e in entries] == ['{"i":0}'], name
        if sig == signal.SIGKILL:
            continue
        lines = err.strip().splitlines()
        assert len(lines) == 1, (name, err)
        assert lines[0].startswith(words) and "every worker stopped" in lines[0], name
        assert "smoke.partial.jsonl; the same command resumes" in lines[0], name
        assert not checkpoint.with_name("smoke.lock").exists(), name
