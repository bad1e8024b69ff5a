"""The sweep runner: provenance, atomic writes, checkpoint and resume, refusing stale results."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from multisource.common.validation import InputError
from multisource.experiments import Experiment, register
from multisource.experiments.runner import load_results, run_experiment

CALLS: list[int] = []
FAIL_AT: list[int] = []   # task indices that raise KeyboardInterrupt (an interruption)


@dataclass(frozen=True)
class ToyConfig:
    tasks: int = 4
    scale: float = 1.0


def _run_task(config: ToyConfig, task: dict, device) -> list[dict]:
    if task["i"] in FAIL_AT:
        raise KeyboardInterrupt  # simulates an interruption mid-run
    CALLS.append(task["i"])
    return [{"i": task["i"], "value": task["i"] * config.scale}]


def _register(fail_at: int | None = None, **book) -> None:
    FAIL_AT.clear()
    if fail_at is not None:
        FAIL_AT.append(fail_at)
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


def _checkpoint(tmp_path):
    return tmp_path / "toy" / "book.partial.jsonl"


def _interrupted_after_two(tmp_path) -> list[str]:
    """Run toy until task 2 interrupts it; return the checkpoint's two good lines."""
    _register(fail_at=2)
    with pytest.raises(KeyboardInterrupt):
        run_experiment("toy", "book", "cpu", progress=False, results_dir=tmp_path)
    lines = _checkpoint(tmp_path).read_text().splitlines()
    assert len(lines) == 2
    return lines


def test_resume_skips_completed_tasks(tmp_path) -> None:
    lines = _interrupted_after_two(tmp_path)
    _checkpoint(tmp_path).write_text(lines[0] + "\n{cut-off line\n")
    _register()
    CALLS.clear()
    stored = run_experiment("toy", "book", "cpu", progress=False, results_dir=tmp_path)
    assert CALLS == [1, 2, 3]
    assert list(stored.frame.value) == [0.0, 1.0, 2.0, 3.0]
    assert not _checkpoint(tmp_path).exists()
    assert stored.provenance["segments"] == 2


def _edit_value(line: str) -> str:
    entry = json.loads(line)
    entry["rows"][0]["value"] = 99.0
    return json.dumps(entry)


def _field(line: str, **changes) -> str:
    entry = json.loads(line)
    entry.update(changes)
    return json.dumps(entry)


def _drop(line: str, key: str) -> str:
    entry = json.loads(line)
    entry.pop(key)
    return json.dumps(entry)


CORRUPTIONS = {
    "garbage line": lambda line: "{cut-off line",
    "number": lambda line: "42",
    "list": lambda line: "[1, 2]",
    "no rows": lambda line: _drop(line, "rows"),
    "empty rows": lambda line: _field(line, rows=[]),
    "rows not a list": lambda line: _field(line, rows="oops"),
    "bogus row": lambda line: _field(line, rows=[{"bogus": [1]}]),
    "edited value": _edit_value,
    "unknown task": lambda line: _field(line, task='{"i":77}'),
    "binary bytes": None,
}


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_damaged_checkpoint_lines_rerun_their_task_and_the_table_is_right(
        tmp_path, capsys, case) -> None:
    lines = _interrupted_after_two(tmp_path)
    checkpoint = _checkpoint(tmp_path)
    if case == "binary bytes":
        checkpoint.write_bytes(b"\xff\xfe\x00garbage\x80\n" + lines[1].encode() + b"\n")
    else:
        checkpoint.write_text(CORRUPTIONS[case](lines[0]) + "\n" + lines[1] + "\n")
    capsys.readouterr()
    _register()
    CALLS.clear()
    stored = run_experiment("toy", "book", "cpu", progress=False, results_dir=tmp_path)
    assert list(stored.frame.value) == [0.0, 1.0, 2.0, 3.0]
    assert list(stored.frame.i) == [0, 1, 2, 3]
    assert CALLS == [0, 2, 3]   # the damaged line's task ran again; the sound one did not
    warning = capsys.readouterr().err.strip().splitlines()
    assert len(warning) == 1 and "book.partial.jsonl line 1" in warning[0]
    assert "--no-resume" in warning[0]
    assert load_results("toy", "book", results_dir=tmp_path) is not None


def test_wall_time_sums_the_segments(tmp_path, monkeypatch) -> None:
    import multisource.experiments.workers as workers

    clock = iter(range(0, 1000, 5))   # every task takes 5 "seconds"
    monkeypatch.setattr(workers.time, "perf_counter", lambda: float(next(clock)))
    _interrupted_after_two(tmp_path)
    _register()
    stored = run_experiment("toy", "book", "cpu", progress=False, results_dir=tmp_path)
    assert stored.provenance["wall_time_s"] == pytest.approx(20.0)


def test_a_task_that_resumed_itself_counts_its_reported_total(tmp_path, monkeypatch) -> None:
    """A task resumed from its own checkpoint reports the seconds of its earlier segments; the
    runner, which timed only the last one, must count the total (and never less than it timed)."""
    import multisource.experiments.runner as runner
    import multisource.experiments.workers as workers

    clock = iter(range(0, 1000, 5))   # the runner times every task at 5 "seconds"
    monkeypatch.setattr(workers.time, "perf_counter", lambda: float(next(clock)))

    def reporting(config: ToyConfig, task: dict, device) -> list[dict]:
        total = {0: 100.0, 1: 2.0}.get(task["i"])   # task 1 under-reports: 5 counts
        row = {"i": task["i"], "value": float(task["i"])}
        return [row | ({runner.TASK_SECONDS_FIELD: total} if total is not None else {})]

    register(Experiment(
        name="toy", description="toy", chapter="none",
        profiles={"smoke": ToyConfig(), "book": ToyConfig(), "paper": ToyConfig()},
        tasks=lambda c: [{"i": i} for i in range(c.tasks)], run_task=reporting))
    stored = run_experiment("toy", "book", "cpu", progress=False, results_dir=tmp_path)
    assert stored.provenance["wall_time_s"] == pytest.approx(100.0 + 5 + 5 + 5)


def test_sidecar_records_the_code_hash_and_a_code_change_makes_results_stale(
        tmp_path, monkeypatch) -> None:
    import multisource.experiments.runner as runner
    from multisource.common.provenance import code_hash

    _register()
    stored = run_experiment("toy", "book", "cpu", progress=False, results_dir=tmp_path)
    assert stored.provenance["code_hash"] == code_hash(__name__)
    assert runner.stored_state("toy", "book", results_dir=tmp_path).state == "current"
    monkeypatch.setattr(runner, "code_hash", lambda module: "0" * 16)
    assert runner.stored_state("toy", "book", results_dir=tmp_path).state == "stale-code"
    assert load_results("toy", "book", results_dir=tmp_path) is None


def test_checkpoint_of_other_code_is_not_reused(tmp_path, monkeypatch) -> None:
    import multisource.experiments.runner as runner

    _interrupted_after_two(tmp_path)
    monkeypatch.setattr(runner, "code_hash", lambda module: "f" * 16)
    _register()
    CALLS.clear()
    run_experiment("toy", "book", "cpu", progress=False, results_dir=tmp_path)
    assert CALLS == [0, 1, 2, 3]


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


def test_required_stored_results_fail_at_once_instead_of_recomputing(monkeypatch) -> None:
    """`make notebooks` sets MULTISOURCE_REQUIRE_STORED: a chapter whose committed results are
    missing or stale must stop with one line, not rerun the experiment for an hour."""
    from multisource.experiments.runner import REQUIRE_STORED_ENV, load_or_run

    _register()
    CALLS.clear()
    monkeypatch.setenv(REQUIRE_STORED_ENV, "1")
    with pytest.raises(InputError, match=r"toy\[book\] are missing: run `multisource run toy"):
        load_or_run("toy", "book", "cpu")
    assert CALLS == []


def test_a_resumed_run_writes_the_same_bytes_as_an_uninterrupted_one(tmp_path, monkeypatch
                                                                     ) -> None:
    """Columns keep the order the experiment returns them in (here not alphabetical), whether
    a row comes from this run or from the checkpoint of an interrupted one."""
    import multisource.experiments as experiments

    stop_at: list[int] = []

    def run_task(config: ToyConfig, task: dict, device) -> list[dict]:
        if task["i"] in stop_at:
            raise KeyboardInterrupt
        return [{"value": task["i"] * config.scale / 3, "i": task["i"], "label": f"t{task['i']}",
                 "count": 7 - task["i"]}]

    monkeypatch.setitem(experiments._REGISTRY, "toy_columns", Experiment(
        name="toy_columns", description="toy", chapter="none",
        profiles={"smoke": ToyConfig(), "book": ToyConfig(tasks=5), "paper": ToyConfig()},
        tasks=lambda c: [{"i": i} for i in range(c.tasks)], run_task=run_task))
    whole = run_experiment("toy_columns", "book", "cpu", progress=False,
                           results_dir=tmp_path / "whole")
    assert list(whole.frame.columns) == ["value", "i", "label", "count"]

    resumed_dir = tmp_path / "resumed"
    for stop in (2, 4):   # two interruptions: rows of two earlier segments come from disk
        stop_at[:] = [stop]
        with pytest.raises(KeyboardInterrupt):
            run_experiment("toy_columns", "book", "cpu", progress=False,
                           results_dir=resumed_dir)
    stop_at.clear()
    resumed = run_experiment("toy_columns", "book", "cpu", progress=False,
                             results_dir=resumed_dir)
    assert resumed.provenance["segments"] == 3
    assert resumed.csv_path.read_bytes() == whole.csv_path.read_bytes()
    assert resumed.provenance["csv_sha256"] == whole.provenance["csv_sha256"]


def test_workers_out_of_range_are_refused_before_any_work(tmp_path) -> None:
    _register()
    CALLS.clear()
    for bad in (0, -1, 65, 1.5, True):
        with pytest.raises(InputError, match=r"workers must be an integer in \[1, 64\]"):
            run_experiment("toy", "book", "cpu", progress=False, results_dir=tmp_path,
                           workers=bad)
    assert CALLS == [] and not (tmp_path / "toy").exists()


def test_parallel_workers_write_the_same_bytes_as_one(tmp_path) -> None:
    """Tasks finishing out of order in worker processes must not change the table."""
    tables = {}
    for workers in (1, 2):
        folder = tmp_path / f"w{workers}"
        stored = run_experiment("energy_ising", "smoke", "cpu", progress=False,
                                results_dir=folder, workers=workers)
        tables[workers] = stored.csv_path.read_bytes()
        assert not stored.csv_path.with_suffix(".partial.jsonl").exists()
    assert tables[1] == tables[2]


def test_interim_results_hold_the_finished_tasks_of_an_interrupted_run(tmp_path) -> None:
    from multisource.experiments.runner import interim_results

    _register(fail_at=2)
    with pytest.raises(KeyboardInterrupt):
        run_experiment("toy", "book", "cpu", progress=False, results_dir=tmp_path)
    interim = interim_results("toy", "book", results_dir=tmp_path)
    assert interim is not None and interim.tasks_total == 4 and len(interim.tasks) == 2
    assert list(interim.frame.value) == [0.0, 1.0] and "2 of 4 tasks" in interim.origin()
    _register(fail_at=2, scale=2.0)                     # another config: nothing of ours
    assert interim_results("toy", "book", results_dir=tmp_path) is None


def test_name_columns_come_back_as_the_text_that_was_stored(tmp_path) -> None:
    """A class named "8" is stored as 8 in the CSV; loaded, it is the text "8" again (not 8.0),
    and so is a model key; other columns keep their numeric types."""
    register(Experiment(
        name="toy_names", description="toy", chapter="none",
        profiles={p: ToyConfig() for p in ("smoke", "book", "paper")},
        tasks=lambda c: [{"i": i} for i in range(2)],
        run_task=lambda c, t, d: [{"i": t["i"], "class_name": str(8 + t["i"]),
                                   "model": str(t["i"])}]))
    run_experiment("toy_names", "book", "cpu", progress=False, results_dir=tmp_path)
    loaded = load_results("toy_names", "book", results_dir=tmp_path)
    assert loaded is not None
    assert list(loaded.frame["class_name"]) == ["8", "9"]
    assert list(loaded.frame["model"]) == ["0", "1"]
    assert list(loaded.frame["i"]) == [0, 1]
