"""Running an experiment profile: progress bar, checkpoint/resume, atomic provenance-stamped output.

Completed tasks are appended to `<profile>.partial.jsonl` as they finish, so an interrupted
run resumes where it stopped. The final table and its sidecar are written atomically; the
sidecar records the table's SHA-256, so a table without its matching sidecar is never shown.
"""

from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm import tqdm

from multisource.devices import describe_device, resolve_device
from multisource.experiments import Experiment, get
from multisource.paths import results_path
from multisource.provenance import (
    atomic_write_bytes,
    atomic_write_text,
    config_hash,
    provenance_record,
    sha256_bytes,
)
from multisource.validation import InputError


@dataclass(frozen=True)
class StoredResults:
    """A results table with its provenance record."""

    frame: pd.DataFrame
    provenance: dict[str, Any]
    csv_path: Path


def task_key(task: dict[str, Any]) -> str:
    """A canonical string identifying one task within a config."""
    return json.dumps(task, sort_keys=True, separators=(",", ":"))


def _read_checkpoint(path: Path, expected_hash: str) -> dict[str, list[dict[str, Any]]]:
    done: dict[str, list[dict[str, Any]]] = {}
    if not path.exists():
        return done
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by an interruption: that task simply runs again
        if entry.get("config_hash") == expected_hash:
            done[entry["task"]] = entry["rows"]
    return done


def run_experiment(name: str, profile: str = "book", device: str = "auto", *,
                   progress: bool = True, resume: bool = True,
                   results_dir: Path | None = None) -> StoredResults:
    """Run every task of `name` at `profile`, write the table and provenance, return them."""
    experiment = get(name)
    config = experiment.config(profile)
    torch_device = resolve_device(device)
    csv_path = _csv_path(experiment, profile, results_dir)
    checkpoint = csv_path.with_suffix(".partial.jsonl")
    digest = config_hash(experiment.name, config)
    done = _read_checkpoint(checkpoint, digest) if resume else {}
    if not resume:
        checkpoint.unlink(missing_ok=True)

    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    tasks = list(experiment.tasks(config))
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    with checkpoint.open("a") as log:
        for task in tqdm(tasks, desc=f"{name}[{profile}]", disable=not progress, unit="task"):
            key = task_key(task)
            if key not in done:
                done[key] = experiment.run_task(config, task, torch_device)
                entry = {"config_hash": digest, "task": key, "rows": done[key]}
                log.write(json.dumps(entry) + "\n")
                log.flush()
            rows.extend(done[key])
    frame = pd.DataFrame(rows)
    csv_bytes = frame.to_csv(index=False).encode()
    record = provenance_record(
        experiment=name, profile=profile, config=config, device=describe_device(torch_device),
        wall_time_s=time.perf_counter() - started,
        extra={"csv_sha256": sha256_bytes(csv_bytes), "n_rows": len(frame),
               "n_tasks": len(tasks)},
    )
    atomic_write_bytes(csv_path, csv_bytes)
    atomic_write_text(csv_path.with_suffix(".json"), json.dumps(record, indent=2) + "\n")
    checkpoint.unlink(missing_ok=True)
    return StoredResults(frame, record, csv_path)


def load_results(name: str, profile: str, *, results_dir: Path | None = None
                 ) -> StoredResults | None:
    """The stored table of `name` at `profile` if its provenance matches the current config.

    Returns None when nothing is stored or the stored config differs (the caller computes);
    raises InputError when the files exist but cannot be read or do not match each other.
    """
    experiment = get(name)
    csv_path = _csv_path(experiment, profile, results_dir)
    sidecar = csv_path.with_suffix(".json")
    if not csv_path.exists() and not sidecar.exists():
        return None
    try:
        record = json.loads(sidecar.read_text())
        csv_bytes = csv_path.read_bytes()
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"results file {csv_path.name} for {name}[{profile}] is unreadable "
                         f"({type(exc).__name__}); rerun `multisource run {name} "
                         f"--profile {profile}`") from None
    if record.get("config_hash") != config_hash(name, experiment.config(profile)):
        return None
    if record.get("csv_sha256") != sha256_bytes(csv_bytes):
        raise InputError(f"results file {csv_path.name} for {name}[{profile}] does not match "
                         f"its provenance (csv_sha256); rerun `multisource run {name} "
                         f"--profile {profile}`")
    try:
        frame = pd.read_csv(io.BytesIO(csv_bytes))
    except (ValueError, pd.errors.ParserError) as exc:
        raise InputError(f"results file {csv_path.name} for {name}[{profile}] is unreadable "
                         f"({type(exc).__name__})") from None
    return StoredResults(frame, record, csv_path)


def load_or_run(name: str, profile: str = "book", device: str = "auto", *,
                progress: bool = False) -> StoredResults:
    """Stored results when their provenance matches, else run now (and store)."""
    stored = load_results(name, profile)
    if stored is not None:
        return stored
    return run_experiment(name, profile, device, progress=progress)


def _csv_path(experiment: Experiment, profile: str, results_dir: Path | None) -> Path:
    if results_dir is None:
        return results_path(experiment.name, profile)
    return results_dir / experiment.name / f"{profile}.csv"
