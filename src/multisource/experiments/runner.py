"""Running an experiment profile: progress bar, checkpoint/resume, atomic provenance-stamped output.

Completed tasks are appended to `<profile>.partial.jsonl` as they finish, each line with a
checksum of its own content, so an interrupted run resumes where it stopped and a damaged line
only makes its task run again. The final table and its sidecar are written atomically; the
sidecar records the table's SHA-256 and the hash of the code that computed it, so a table is
shown only next to a matching sidecar produced by the current config and code.

A run holds a lock on `<profile>.lock` beside its checkpoint, so a second run of the same
experiment and profile stops at once instead of computing every task again. SIGINT and
SIGTERM stop every worker process, keep the checkpoint and raise `KeyboardInterrupt`
(`Terminated` for SIGTERM); workers ignore SIGINT and exit when their parent dies.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm import tqdm

from multisource.common.devices import describe_device, resolve_device
from multisource.common.paths import BUILD_DIR, results_path
from multisource.common.provenance import (
    atomic_write_bytes,
    atomic_write_text,
    code_hash,
    code_modules,
    config_hash,
    provenance_record,
    sha256_bytes,
)
from multisource.common.validation import InputError, check_output_path
from multisource.experiments import Experiment, get
from multisource.experiments.workers import (
    _completed_tasks,
    _run_lock,
    _sigterm_raises,
)

# Results a notebook computed itself (`load_or_run`): outside the committed data/results.
COMPUTED_RESULTS_DIR: Path = BUILD_DIR / "results"


@dataclass(frozen=True)
class StoredResults:
    """A results table with its provenance record."""

    frame: pd.DataFrame
    provenance: dict[str, Any]
    csv_path: Path

    @property
    def recomputed(self) -> bool:
        """True when the table was computed for a notebook (`_build/results`), not loaded
        from the committed `data/results`."""
        return self.csv_path.resolve().is_relative_to(COMPUTED_RESULTS_DIR.resolve())

    def origin(self) -> str:
        """Where the numbers come from, in words a chapter prints beside them."""
        record = self.provenance
        what = ("computed outside the committed results (in _build/results: this profile has "
                "no committed results, or they did not match the code)"
                if self.recomputed else "stored results")
        return (f"{what}, config {record.get('config_hash')}, "
                f"commit {str(record.get('git_commit'))[:10]}, {record.get('device')}")


def task_key(task: dict[str, Any]) -> str:
    """A canonical string identifying one task within a config."""
    return json.dumps(task, sort_keys=True, separators=(",", ":"))


def _entry_digest(entry: dict[str, Any]) -> str:
    body = {k: v for k, v in entry.items() if k != "sha256"}
    return sha256_bytes(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())


def _checkpoint_line(entry: dict[str, Any]) -> str:
    """One checkpoint line. The rows keep the key order the experiment returned them in (the
    digest is order-free): a resumed run builds its table with the same columns in the same
    order, hence the same bytes, as an uninterrupted one."""
    return json.dumps({**entry, "sha256": _entry_digest(entry)}) + "\n"


def _valid_rows(rows: Any) -> bool:
    scalar = (str, int, float, bool, type(None))
    return (isinstance(rows, list) and len(rows) > 0 and all(
        isinstance(r, dict) and r and all(isinstance(k, str) and isinstance(v, scalar)
                                          for k, v in r.items()) for r in rows))


# A task that resumes from its own checkpoint in a later process (a long training run) knows
# its whole compute time; the runner only times the last segment. Such a task reports its total
# in this field of its rows, and the runner counts the larger of the two.
TASK_SECONDS_FIELD = "task_wall_s"


@dataclass
class _Done:
    rows: list[dict[str, Any]]
    seconds: float
    segment: int

    @property
    def task_seconds(self) -> float:
        """The task's compute time: the runner's timing of it, or the total the task reports
        across its own resumed segments (`TASK_SECONDS_FIELD`), whichever is larger."""
        reported = [float(r[TASK_SECONDS_FIELD]) for r in self.rows
                    if isinstance(r.get(TASK_SECONDS_FIELD), (int, float))
                    and not isinstance(r.get(TASK_SECONDS_FIELD), bool)]
        return max([self.seconds, *reported])


def _read_checkpoint(path: Path, config_digest: str, code_digest: str,
                     task_keys: set[str]) -> dict[str, _Done]:
    """Completed tasks recorded in `path` for this config and code.

    Every line carries a SHA-256 of its own content. A line that is cut, unreadable, edited or
    of the wrong shape is reported on stderr (file and line number) and its task runs again,
    so a damaged checkpoint can cost time but never put a wrong row into a table.
    """
    done: dict[str, _Done] = {}
    if not path.exists():
        return done
    for number, raw in enumerate(path.read_bytes().splitlines(), start=1):
        problem = None
        try:
            entry = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            entry, problem = None, "not a JSON line (cut by an interruption, or damaged)"
        if entry is not None:
            problem = _checkpoint_problem(entry, task_keys)
        if problem is not None:
            sys.stderr.write(f"multisource: warning: {path.name} line {number}: {problem}; its "
                             f"task runs again (`--no-resume` discards the checkpoint)\n")
            continue
        if entry["config_hash"] != config_digest or entry["code_hash"] != code_digest:
            continue  # written by another config or code version: not ours to reuse
        done[entry["task"]] = _Done(entry["rows"], float(entry["seconds"]),
                                    int(entry["segment"]))
    return done


def _checkpoint_problem(entry: Any, task_keys: set[str]) -> str | None:
    """Why a parsed checkpoint line cannot be used, or None when it is sound."""
    fields = {"config_hash": str, "code_hash": str, "task": str, "rows": list,
              "seconds": (int, float), "segment": int, "sha256": str}
    if not isinstance(entry, dict) or any(not isinstance(entry.get(k), t)
                                          for k, t in fields.items()):
        return "not a checkpoint entry (missing or mistyped fields)"
    if entry["sha256"] != _entry_digest(entry):
        return "checksum mismatch (the line was changed after it was written)"
    if entry["task"] not in task_keys:
        return "names a task this experiment does not have"
    if not _valid_rows(entry["rows"]):
        return "rows must be a non-empty list of flat records"
    return None


def checkpoint_path(name: str, profile: str, *, results_dir: Path | None = None) -> Path:
    """Where a run of `name` at `profile` keeps its finished tasks until the table is written."""
    return _csv_path(get(name), profile, results_dir).with_suffix(".partial.jsonl")


def lock_path(name: str, profile: str, *, results_dir: Path | None = None) -> Path:
    """The lock a run of `name` at `profile` holds while it owns the checkpoint."""
    return _csv_path(get(name), profile, results_dir).with_suffix(".lock")


def run_experiment(name: str, profile: str = "book", device: str = "auto", *,
                   progress: bool = True, resume: bool = True,
                   results_dir: Path | None = None, workers: int = 1) -> StoredResults:
    """Run every task of `name` at `profile`, write the table and provenance, return them.

    `wall_time_s` in the provenance is the compute time of all tasks, summed over every
    segment of an interrupted and resumed run (with `workers` > 1 tasks overlap, so it exceeds
    the elapsed time); a task that resumed from its own checkpoint counts the total it reports
    (`TASK_SECONDS_FIELD`). The table is the same, byte for byte, whatever `workers` is: rows are
    laid out in task order, not in the order tasks finish.

    Another run of the same experiment and profile in progress is an InputError naming its
    PID. SIGINT raises KeyboardInterrupt and SIGTERM `Terminated` after every worker process
    has stopped; the checkpoint keeps the finished tasks (it exists only once a task has
    finished, so an interrupted run never leaves an empty one).
    """
    if not isinstance(workers, int) or isinstance(workers, bool) or not 1 <= workers <= 64:
        raise InputError(f"workers must be an integer in [1, 64], got {workers!r}")
    experiment = get(name)
    config = experiment.config(profile)
    torch_device = resolve_device(device)
    csv_path = _csv_path(experiment, profile, results_dir)
    check_output_path("results folder", csv_path.parent, kind="dir")  # before any work
    checkpoint = csv_path.with_suffix(".partial.jsonl")
    digest = config_hash(experiment.name, config)
    code_digest = code_hash(experiment.code_module)
    tasks = list(experiment.tasks(config))
    keys = [task_key(t) for t in tasks]
    if len(set(keys)) != len(keys):
        raise RuntimeError(f"experiment {name} lists a task twice")
    created = not csv_path.parent.exists()
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with _sigterm_raises(), _run_lock(csv_path.with_suffix(".lock"), name, profile):
            if not resume:
                checkpoint.unlink(missing_ok=True)
            done = _read_checkpoint(checkpoint, digest, code_digest, set(keys))
            segment = 1 + max((d.segment for d in done.values()), default=0)
            pending = [(task, key) for task, key in zip(tasks, keys, strict=True)
                       if key not in done]
            entry = {"config_hash": digest, "code_hash": code_digest, "segment": segment}
            with tqdm(total=len(tasks), initial=len(tasks) - len(pending),
                      desc=f"{name}[{profile}]", disable=not progress, unit="task") as bar:
                _run_pending(name, experiment.code_module, config, pending, torch_device,
                             workers, checkpoint, entry, done, bar)
            rows_by_task = [done[k].rows for k in keys]
            frame = _frame(rows_by_task)
            csv_bytes = frame.to_csv(index=False).encode()
            record = provenance_record(
                experiment=name, profile=profile, config=config,
                device=describe_device(torch_device),
                wall_time_s=sum(done[k].task_seconds for k in keys),
                extra={"csv_sha256": sha256_bytes(csv_bytes), "n_rows": len(frame),
                       "n_tasks": len(tasks), "segments": segment,
                       "code_hash": code_digest,
                       "code_modules": code_modules(experiment.code_module)},
            )
            atomic_write_bytes(csv_path, csv_bytes)
            atomic_write_text(csv_path.with_suffix(".json"),
                              json.dumps(record, indent=2) + "\n")
            checkpoint.unlink(missing_ok=True)
    finally:
        if created:
            with contextlib.suppress(OSError):
                csv_path.parent.rmdir()   # only when nothing was written into it
    return StoredResults(frame, record, csv_path)


def _run_pending(name: str, module: str, config: Any,
                 pending: list[tuple[dict[str, Any], str]], device: Any, workers: int,
                 checkpoint: Path, entry: dict[str, Any], done: dict[str, _Done],
                 bar: Any) -> None:
    """Run the pending tasks, appending each finished one to the checkpoint and to `done`.

    The checkpoint is opened at the first finished task, never before; an empty one (left by
    an older version, or cut to nothing) is removed on the way out.
    """
    log = None
    try:
        with contextlib.closing(_completed_tasks(name, module, config, pending, device,
                                                 workers)) as finished:
            for key, rows, seconds in finished:
                if not _valid_rows(rows):
                    raise RuntimeError(f"experiment {name} returned no rows or non-flat rows "
                                       f"for task {key}")
                done[key] = _Done(rows, seconds, entry["segment"])
                if log is None:
                    log = checkpoint.open("a")
                log.write(_checkpoint_line({**entry, "task": key, "rows": rows,
                                            "seconds": round(seconds, 6)}))
                log.flush()
                bar.update(1)
    finally:
        if log is not None:
            log.close()
        with contextlib.suppress(OSError):
            if checkpoint.stat().st_size == 0:
                checkpoint.unlink()


def _frame(rows_by_task: list[list[dict[str, Any]]]) -> pd.DataFrame:
    """The results table: rows in task order; columns in the order the experiment returned
    them (first appearance over the rows in task order), never sorted."""
    rows = [r for task_rows in rows_by_task for r in task_rows]
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    return pd.DataFrame(rows, columns=list(columns))


STATES = ("missing", "current", "stale-config", "stale-code", "invalid")


@dataclass(frozen=True)
class StoredState:
    """Whether stored results exist and were produced by the current config and code.

    state: one of STATES; reason: one line for `invalid` (else empty); record: the sidecar.
    """

    state: str
    reason: str = ""
    record: dict[str, Any] | None = None


def stored_state(name: str, profile: str, *, results_dir: Path | None = None) -> StoredState:
    """Classify the stored table of `name` at `profile` against the current config and code."""
    experiment = get(name)
    csv_path = _csv_path(experiment, profile, results_dir)
    sidecar = csv_path.with_suffix(".json")
    if not csv_path.exists() and not sidecar.exists():
        return StoredState("missing")
    try:
        record = json.loads(sidecar.read_text())
        csv_bytes = csv_path.read_bytes()
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return StoredState("invalid", f"unreadable ({type(exc).__name__})")
    if not isinstance(record, dict):
        return StoredState("invalid", "the sidecar is not a JSON object")
    if record.get("csv_sha256") != sha256_bytes(csv_bytes):
        return StoredState("invalid", "does not match its provenance record (csv_sha256 "
                                      "differs: edited or damaged?)", record)
    if record.get("config_hash") != config_hash(name, experiment.config(profile)):
        return StoredState("stale-config", "", record)
    if record.get("code_hash") != code_hash(experiment.code_module):
        return StoredState("stale-code", "", record)
    return StoredState("current", "", record)


# Columns that hold names: read back as text even where every value looks like a number (the
# digits' class names are "0" to "9"; read as numbers, they would come back as 8.0).
TEXT_COLUMNS = ("class_name", "model")


def load_results(name: str, profile: str, *, results_dir: Path | None = None
                 ) -> StoredResults | None:
    """The stored table of `name` at `profile` if its provenance matches the current code.

    Returns None when nothing is stored or the stored config or code differs (the caller
    computes); raises InputError when the files exist but cannot be read or do not match
    each other.
    """
    experiment = get(name)
    csv_path = _csv_path(experiment, profile, results_dir)
    state = stored_state(name, profile, results_dir=results_dir)
    if state.state == "invalid":
        raise InputError(f"results file {csv_path.name} for {name}[{profile}] "
                         f"{state.reason}; rerun `multisource run {name} --profile {profile}`")
    if state.state != "current":
        return None
    try:
        frame = pd.read_csv(csv_path, dtype=dict.fromkeys(TEXT_COLUMNS, str))
    except (ValueError, pd.errors.ParserError) as exc:
        raise InputError(f"results file {csv_path.name} for {name}[{profile}] is unreadable "
                         f"({type(exc).__name__}); rerun `multisource run {name} "
                         f"--profile {profile}`") from None
    return StoredResults(frame, state.record or {}, csv_path)


@dataclass(frozen=True)
class InterimResults:
    """The finished tasks of a run still in progress, read from its committed checkpoint.

    Only lines whose checksum, config hash and code hash match are used (the rule a resumed
    run applies), so interim rows are exactly the rows the final table will hold for those
    tasks. `tasks` lists the finished task keys in task order."""

    frame: pd.DataFrame
    tasks: list[str]
    tasks_total: int
    config_hash: str
    code_hash: str
    compute_s: float

    def origin(self) -> str:
        """Where the numbers come from, in words a chapter prints beside them."""
        return (f"interim results: {len(self.tasks)} of {self.tasks_total} tasks finished, "
                f"checkpoint lines verified against config {self.config_hash} and code "
                f"{self.code_hash[:12]}")


def interim_results(name: str, profile: str, *, results_dir: Path | None = None
                    ) -> InterimResults | None:
    """The verified finished tasks of `name` at `profile` from its checkpoint, or None when
    the checkpoint holds none for the current config and code."""
    experiment = get(name)
    config = experiment.config(profile)
    checkpoint = _csv_path(experiment, profile, results_dir).with_suffix(".partial.jsonl")
    if not checkpoint.is_file():
        return None
    keys = [task_key(t) for t in experiment.tasks(config)]
    digest = config_hash(experiment.name, config)
    code_digest = code_hash(experiment.code_module)
    stat = checkpoint.stat()
    cache_key = (str(checkpoint), stat.st_mtime_ns, stat.st_size, digest, code_digest)
    if cache_key not in _INTERIM:
        done = _read_checkpoint(checkpoint, digest, code_digest, set(keys))
        finished = [k for k in keys if k in done]
        _INTERIM[cache_key] = None if not finished else InterimResults(
            _frame([done[k].rows for k in finished]), finished, len(keys), digest, code_digest,
            sum(done[k].task_seconds for k in finished))
    found = _INTERIM[cache_key]
    return None if found is None else replace(found, frame=found.frame.copy(),
                                              tasks=list(found.tasks))


# Verified checkpoints already read in this process, keyed by file state and hashes.
_INTERIM: dict[tuple[str, int, int, str, str], InterimResults | None] = {}


# Set (by `make notebooks`, which CI runs) to make a chapter fail at once, instead of silently
# recomputing for an hour, when the committed results it loads do not match the code.
REQUIRE_STORED_ENV = "MULTISOURCE_REQUIRE_STORED"


def load_or_run(name: str, profile: str = "book", device: str = "auto", *,
                progress: bool = False) -> StoredResults:
    """Stored results when their provenance matches, else run now.

    What a notebook computes itself is kept in `COMPUTED_RESULTS_DIR` (`_build/results`,
    gitignored) and reused from there while its provenance matches: executing a chapter never
    writes `data/results`, which only `multisource run` fills. With the environment variable
    `MULTISOURCE_REQUIRE_STORED` set, results that are not stored and current raise InputError.
    """
    stored = load_results(name, profile)
    if stored is not None:
        return stored
    if os.environ.get(REQUIRE_STORED_ENV):
        state = stored_state(name, profile)
        raise InputError(f"{REQUIRE_STORED_ENV} is set and the stored results of "
                         f"{name}[{profile}] are {state.state}: run `multisource run {name} "
                         f"--profile {profile}` at a clean commit and commit the table")
    stored = load_results(name, profile, results_dir=COMPUTED_RESULTS_DIR)
    if stored is not None:
        return stored
    return run_experiment(name, profile, device, progress=progress,
                          results_dir=COMPUTED_RESULTS_DIR)


def _csv_path(experiment: Experiment, profile: str, results_dir: Path | None) -> Path:
    if results_dir is None:
        return results_path(experiment.name, profile)
    return results_dir / experiment.name / f"{profile}.csv"


def load_or_interim(name: str, profile: str = "book", device: str = "auto"
                    ) -> StoredResults | InterimResults:
    """Stored results when current; else, for a run in progress across sessions, the verified
    finished tasks of its checkpoint (`interim_results`); else `load_or_run`."""
    stored = load_results(name, profile)
    if stored is not None:
        return stored
    if stored_state(name, profile).state == "missing":
        interim = interim_results(name, profile)
        if interim is not None:
            return interim
    return load_or_run(name, profile, device)

