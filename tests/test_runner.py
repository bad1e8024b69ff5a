"""The sweep runner: provenance, atomic writes, checkpoint and resume, refusing stale results."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from multisource.experiments import Experiment, register
from multisource.experiments.runner import load_results, run_experiment
from multisource.validation import InputError

CALLS: list[int] = []


@dataclass(frozen=True)
class ToyConfig:
    tasks: int = 4
    fail_at: int = -1
    scale: float = 1.0


def _run_task(config: ToyConfig, task: dict, device) -> list[dict]:
    if task["i"] == config.fail_at:
        raise KeyboardInterrupt  # simulates an interruption mid-run
    CALLS.append(task["i"])
    return [{"i": task["i"], "value": task["i"] * config.scale}]


def _register(**book) -> None:
    register(Experiment(
        name="toy", description="toy", chapter="none",
        profiles={"smoke": ToyConfig(), "book": ToyConfig(**book), "paper": ToyConfig()},
        tasks=lambda c: [{"i": i} for i in range(c.tasks)], run_task=_run_task))


def test_run_writes_table_and_provenance(tmp_path) -> None:
    _register()
    stored = run_experiment("toy", "book", "cpu", progress=False, results_dir=tmp_path)
    record = json.loads((tmp_path / "toy" / "book.json").read_text())
    assert list(stored.frame.value) == [0.0, 1.0, 2.0, 3.0]
    for key in ("config_hash", "git_commit", "device", "environment", "wall_time_s", "config",
                "csv_sha256"):
        assert key in record
    assert record["device"] == "cpu"
    loaded = load_results("toy", "book", results_dir=tmp_path)
    assert loaded is not None and loaded.frame.equals(stored.frame)


def test_interrupted_run_resumes_without_redoing_tasks(tmp_path) -> None:
    _register(fail_at=2)
    CALLS.clear()
    with pytest.raises(KeyboardInterrupt):
        run_experiment("toy", "book", "cpu", progress=False, results_dir=tmp_path)
    assert CALLS == [0, 1]
    assert not (tmp_path / "toy" / "book.csv").exists()  # nothing half-written
    CALLS.clear()
    # The same config resumes: tasks 0 and 1 come from the checkpoint, not from new calls.
    with pytest.raises(KeyboardInterrupt):
        run_experiment("toy", "book", "cpu", progress=False, results_dir=tmp_path)
    assert CALLS == []


def test_resume_skips_completed_tasks(tmp_path) -> None:
    _register()
    CALLS.clear()
    checkpoint = tmp_path / "toy" / "book.partial.jsonl"
    checkpoint.parent.mkdir(parents=True)
    from multisource.provenance import config_hash

    digest = config_hash("toy", ToyConfig())
    checkpoint.write_text(json.dumps({"config_hash": digest, "task": '{"i":0}',
                                      "rows": [{"i": 0, "value": 0.0}]}) + "\n{cut-off line\n")
    stored = run_experiment("toy", "book", "cpu", progress=False, results_dir=tmp_path)
    assert CALLS == [1, 2, 3]
    assert len(stored.frame) == 4
    assert not checkpoint.exists()


def test_changed_config_is_not_loaded(tmp_path) -> None:
    _register()
    run_experiment("toy", "book", "cpu", progress=False, results_dir=tmp_path)
    _register(scale=2.0)
    assert load_results("toy", "book", results_dir=tmp_path) is None


def test_tampered_table_is_refused(tmp_path) -> None:
    _register()
    run_experiment("toy", "book", "cpu", progress=False, results_dir=tmp_path)
    csv = tmp_path / "toy" / "book.csv"
    csv.write_text(csv.read_text().replace("3.0", "4.0"))
    with pytest.raises(InputError, match="does not match its provenance"):
        load_results("toy", "book", results_dir=tmp_path)
