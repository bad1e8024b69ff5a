"""The book's chapters: their notebooks, and executing them with papermill.

A chapter's source is `notebooks/<stem>.md` (a MyST-markdown notebook). Executing it converts
the source with jupytext, runs it with papermill (cwd `notebooks/`, staging files in a temporary
folder) and normalises the result so that the same inputs give the same bytes: cell ids come
from the chapter stem and the cell's position, papermill's and Jupyter's timing metadata is
dropped (outputs and execution counts stay: nbval needs them) and papermill's injected-
parameters cell is tagged `remove-cell` so the book does not show it.

Before any work, every parameter is checked against the range declared for it in
`PARAMETER_RANGES`, `--out` against the committed folders, and (at profile `book`) the stored
results the chapter loads against the code: stale ones stop the execution with one line unless
`recompute_stale`, which recomputes them into `_build/results` and labels the notebook.

Where the result goes:
- profile `book` with the chapter's own parameters and current stored results: the committed
  `notebooks/<stem>.ipynb`, rewritten only when its cells (tags included), outputs or inputs
  record changed, or when it records a `-dirty` commit and this execution's commit is clean
  (wall time alone never rewrites it);
- any other profile, or any parameter changed with `-p`:
  `_build/executed/<profile>/<stem>[-p<hash of the parameters>][-recomputed].ipynb`
  (gitignored), never the committed notebook.
Every execution's wall time and commit are appended to `_build/executed/runs.jsonl`. Cells that
only check (nbval's compared cells, asserts, glue) are tagged by rule so that the book does not
show them (`reader_tag`).

The notebook's `multisource` metadata records what it was computed from: the profile, the
device, a SHA-256 of the `.md` source, the code hash of the `multisource` modules it imports and
of its experiments (see `provenance.code_modules`), and the SHA-256 of each stored results table
it could load. `notebook_state` compares that record with the repository.
"""


from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from multisource.book.inputs import _loaded_experiments, chapter_experiments, chapter_inputs
from multisource.book.normalise import (
    _cleans_commit,
    _comparable,
    _read_json,
    normalise_executed,
    notebook_text,
)
from multisource.book.parameters import check_parameters
from multisource.book.registry import (
    COMMITTED_PROFILE,
    KERNEL_ARGUMENTS,
    KERNEL_THREAD_VARIABLES,
    Chapter,
    chapter_parameters,
    read_source,
)
from multisource.common.paths import BUILD_DIR, NOTEBOOKS_DIR, REPO_ROOT
from multisource.common.provenance import (
    atomic_write_text,
    git_commit,
    sha256_bytes,
)
from multisource.common.validation import InputError, check_choice, check_output_path

# Where executions that are not the committed book profile go, and the log of every execution.
EXECUTED_DIR: Path = BUILD_DIR / "executed"


class ChapterFailed(RuntimeError):
    """A cell of a chapter raised. `user_input`: the error was the chapter rejecting a
    parameter value (an InputError), not a fault in the chapter."""

    def __init__(self, message: str, *, user_input: bool) -> None:
        super().__init__(message)
        self.user_input = user_input


@dataclass(frozen=True)
class ExecutionPlan:
    """A checked request to execute one chapter (made before any work).

    `recomputed`: experiments whose stored results do not match the code and that this
    execution recomputes into `_build/results` (`--recompute-stale`); the notebook then says
    so and never replaces the committed one.
    """

    chapter: Chapter
    profile: str
    device: str
    device_name: str
    parameters: dict[str, Any]
    output: Path
    recomputed: tuple[str, ...] = ()

    @property
    def committed(self) -> bool:
        """True when the result replaces the committed notebook."""
        return self.output == self.chapter.notebook


@dataclass(frozen=True)
class Execution:
    """What one execution did."""

    plan: ExecutionPlan
    wall_time_s: float
    written: bool


def parameters_key(parameters: Mapping[str, Any]) -> str:
    """A short, stable name for a set of changed parameters (8 hex digits)."""
    text = json.dumps({k: parameters[k] for k in sorted(parameters)}, default=repr,
                      separators=(",", ":"))
    return sha256_bytes(text.encode())[:8]


def default_output(chapter: Chapter, profile: str, parameters: Mapping[str, Any], *,
                   recomputed: bool = False) -> Path:
    """The committed notebook for the book profile at the chapter's own parameters with
    current stored results; else `_build/executed/<profile>/<stem>[-p<key>][-recomputed].ipynb`
    (`<key>`: `parameters_key`, so runs with different parameters keep separate files)."""
    if profile == COMMITTED_PROFILE and not parameters and not recomputed:
        return chapter.notebook
    name = chapter.stem
    if parameters:
        name += f"-p{parameters_key(parameters)}"
    if recomputed:
        name += "-recomputed"
    return EXECUTED_DIR / profile / f"{name}.ipynb"


def _protected_folders(chapter: Chapter) -> list[Path]:
    from multisource.common.paths import BOOK_DIR, DATA_DIR

    return [NOTEBOOKS_DIR, DATA_DIR, BOOK_DIR, chapter.directory]


def _tracked_by_git(path: Path) -> bool:
    """True when git tracks `path` in the repository that contains it (False without git)."""
    import subprocess

    folder = path.parent
    while not folder.is_dir() and folder != folder.parent:
        folder = folder.parent
    try:
        done = subprocess.run(["git", "-C", str(folder), "ls-files", "--error-unmatch", "--",
                               str(path)], capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def check_out_path(chapter: Chapter, value: str | Path) -> Path:
    """`--out`: a writable .ipynb path outside the committed folders (notebooks/, data/,
    book/), under `_build/` when it is inside the repository, and not a file tracked by git
    (in any repository); derived notebooks belong under _build/. An existing path must be a
    regular file (a device such as /dev/full, or a pipe, is refused before any work)."""
    target = check_output_path("--out", value, kind="file")
    if target.exists() and not target.is_file():
        raise InputError(f"--out must be a regular file or a new path, but {value} is "
                         f"{_file_kind(target)}; write under _build/, e.g. --out "
                         f"_build/{chapter.stem}.ipynb")
    if target.suffix != ".ipynb":
        raise InputError(f"--out must name an .ipynb file, got {value}")
    resolved = target.resolve()
    for folder in _protected_folders(chapter):
        if resolved.is_relative_to(folder.resolve()):
            where = _relative(folder.resolve(), REPO_ROOT.resolve())
            raise InputError(f"--out must not be inside {where}/ (committed chapters, results "
                             f"and pages); write under _build/, e.g. --out "
                             f"_build/{chapter.stem}.ipynb")
    repository = REPO_ROOT.resolve()
    if resolved.is_relative_to(repository) \
            and not resolved.is_relative_to(BUILD_DIR.resolve()):
        raise InputError(f"--out inside the repository must be under _build/ (derived files "
                         f"are kept out of the working tree), e.g. --out "
                         f"_build/{resolved.name}; got {value}")
    if _tracked_by_git(resolved):
        raise InputError(f"--out must not be a file tracked by git ({value}); write under "
                         f"_build/, e.g. --out _build/{chapter.stem}.ipynb")
    return target


def _file_kind(path: Path) -> str:
    """What a path that is not a regular file is, in words (`a character device`, ...)."""
    import stat

    mode = path.stat().st_mode
    kinds = ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
             (stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"))
    kind = next((words for test, words in kinds if test(mode)), "not a regular file")
    if path.is_symlink():
        return f"a link to {kind} ({path.resolve()})"
    return kind


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


STALE_WORDS = {"stale-code": "the code that computes them changed",
               "stale-config": "their config differs from the code's",
               "missing": "none are stored"}


def stale_results(chapter: Chapter, profile: str) -> list[tuple[str, Any]]:
    """The chapter's experiments whose stored results at `profile` are not current, with
    their `StoredState` (loading them would recompute them). When the chapter names what it
    loads, only those count: an experiment registered to the chapter but not yet loaded by it
    (a run still in progress across sessions) does not stop its execution."""
    from multisource.experiments.runner import interim_results, stored_state

    loaded = _loaded_experiments(chapter)
    found = []
    for name in chapter_experiments(chapter):
        if loaded and name not in loaded:
            continue
        state = stored_state(name, profile)
        if state.state == "missing" and interim_results(name, profile) is not None:
            continue    # a run in progress: the chapter reads its verified interim rows
        if state.state != "current":
            found.append((name, state))
    return found


def _stale_message(chapter: Chapter, profile: str, stale: list[tuple[str, Any]]) -> str:
    """One line: which stored results are stale, how long regenerating them took, the fix."""
    from multisource.common.validation import human_seconds

    parts = []
    for name, state in stale:
        why = state.reason if state.state == "invalid" else STALE_WORDS.get(state.state,
                                                                             state.state)
        seconds = (state.record or {}).get("wall_time_s")
        took = (f"; its recorded run took {human_seconds(float(seconds))}"
                if isinstance(seconds, int | float) else "")
        parts.append(f"{name}[{profile}] ({why}{took})")
    commands = " and ".join(f"`multisource run {name} --profile {profile}`"
                            for name, _ in stale)
    what = ("cannot be used" if any(state.state == "invalid" for _, state in stale)
            else "do not match the code")
    return (f"{chapter.stem} loads stored results that {what}: "
            f"{', '.join(parts)}; regenerate them with {commands} (then commit the table), "
            f"or add --recompute-stale to recompute them into _build/ for this execution only")


def plan_execution(chapter: Chapter, *, profile: str = COMMITTED_PROFILE, device: str = "auto",
                   parameters: Mapping[str, Any] | None = None,
                   output: str | Path | None = None,
                   recompute_stale: bool = False) -> ExecutionPlan:
    """Check everything about one execution before any work; InputError on the first problem.

    At the committed profile, stored results that do not match the code stop the execution
    (naming them, their recorded run time and the command that regenerates them) unless
    `recompute_stale`: then they are recomputed into `_build/results` and the notebook goes
    to `_build/executed/`, labelled as recomputed.
    """
    from multisource.common.devices import describe_device, resolve_device
    from multisource.experiments import PROFILES

    check_choice("profile", profile, PROFILES)
    device_name = describe_device(resolve_device(device))  # `cuda` without a GPU fails here
    if not chapter.source.is_file():
        raise InputError(f"chapter source {chapter.source.name} does not exist")
    changed = check_parameters(chapter, parameters or {}, profile=profile)
    recomputed: tuple[str, ...] = ()
    if profile == COMMITTED_PROFILE:
        stale = stale_results(chapter, profile)
        if stale and not recompute_stale:
            raise InputError(_stale_message(chapter, profile, stale))
        recomputed = tuple(name for name, _ in stale)
    if output is None:
        target = default_output(chapter, profile, changed, recomputed=bool(recomputed))
    else:
        target = check_out_path(chapter, output)
    check_output_path("output notebook", target, kind="file")
    return ExecutionPlan(chapter, profile, device, device_name, changed, target, recomputed)


def recomputed_notice(plan: ExecutionPlan) -> dict[str, Any]:
    """The markdown cell that opens a notebook executed with recomputed results."""
    names = ", ".join(f"`{name}[{plan.profile}]`" for name in plan.recomputed)
    commands = "; ".join(f"`multisource run {name} --profile {plan.profile}`"
                         for name in plan.recomputed)
    text = (f":::{{warning}}\nRecomputed, not the book's stored results. The stored results of "
            f"{names} did not match the code, so this execution (`multisource execute "
            f"--recompute-stale`) recomputed them into `_build/results/`. The committed "
            f"chapter is unchanged; {commands} regenerates the stored results.\n:::")
    return {"cell_type": "markdown", "metadata": {"tags": ["recomputed-notice"]},
            "source": text}


def execute_chapter(chapter: Chapter | ExecutionPlan, *, profile: str = COMMITTED_PROFILE,
                    device: str = "auto", parameters: Mapping[str, Any] | None = None,
                    log_output: bool = False, progress: bool | str = False) -> Execution:
    """Execute one chapter with papermill and store the normalised notebook where it belongs.

    `progress`: False, True, or a label for papermill's per-cell progress bar.
    """
    import nbformat
    import papermill
    from papermill.exceptions import PapermillExecutionError

    plan = chapter if isinstance(chapter, ExecutionPlan) else plan_execution(
        chapter, profile=profile, device=device, parameters=parameters)
    chapter = plan.chapter
    inputs = chapter_inputs(chapter, plan.profile)
    injected = _injected_parameters(plan)
    bar: bool | dict[str, str] = False
    if progress:
        bar = {"desc": progress if isinstance(progress, str) else chapter.stem}

    notebook = read_source(chapter.source)
    notebook.metadata.pop("jupytext", None)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="multisource-execute-") as staging:
        staged = Path(staging) / f"{chapter.stem}.ipynb"
        executed = Path(staging) / f"{chapter.stem}.executed.ipynb"
        nbformat.write(notebook, staged)
        try:
            with _single_threaded_kernel():
                papermill.execute_notebook(
                    str(staged), str(executed), parameters=injected,
                    cwd=str(chapter.directory), kernel_name="python3", log_output=log_output,
                    progress_bar=bar, extra_arguments=KERNEL_ARGUMENTS)
        except PapermillExecutionError as error:
            kept = _keep_failed(executed, plan)
            what = ("a claim of the chapter does not hold at these parameters"
                    if error.ename == "AssertionError" else f"{error.ename}")
            raise ChapterFailed(
                f"{chapter.stem} failed in cell {error.exec_count}: {what}: "
                f"{error.evalue} (the partly executed notebook is {kept}; nothing else "
                f"was written)", user_input=error.ename == "InputError") from error
        result = json.loads(executed.read_text())
    wall = time.perf_counter() - started

    if plan.recomputed:
        cells = result.get("cells", [])
        first_markdown = next((i for i, c in enumerate(cells) if c["cell_type"] == "markdown"),
                              -1)
        cells.insert(first_markdown + 1, recomputed_notice(plan))
    normalise_executed(result, chapter.stem)
    record: dict[str, Any] = {"profile": plan.profile, "device": plan.device_name}
    if plan.parameters:
        record["parameters"] = plan.parameters
    if plan.recomputed:
        record["recomputed"] = list(plan.recomputed)
    record.update(inputs)
    record.update({"wall_time_s": round(wall, 1), "source_commit": git_commit()})
    result["metadata"]["multisource"] = record

    previous = _read_json(plan.output)
    written = (previous is None or _comparable(previous) != _comparable(result)
               or _cleans_commit(previous, record))
    if written:
        atomic_write_text(plan.output, notebook_text(result))
    _log_run(plan, wall, written)
    return Execution(plan, wall, written)


def _injected_parameters(plan: ExecutionPlan) -> dict[str, Any]:
    """What papermill must inject: only values that change what the notebook does.

    A device that resolves to the same hardware as the chapter's default (`cpu` where `auto`
    means the CPU) is not injected, so it does not change the committed notebook either.
    """
    from multisource.common.devices import describe_device, resolve_device

    defaults = chapter_parameters(plan.chapter)
    injected: dict[str, Any] = {}
    if plan.profile != defaults.get("profile"):
        injected["profile"] = plan.profile
    default_device = defaults.get("device")
    if plan.device != default_device and not (
            default_device in ("auto", "cpu")
            and describe_device(resolve_device(default_device)) == plan.device_name):
        injected["device"] = plan.device
    injected.update(plan.parameters)
    return injected


@contextmanager
def _single_threaded_kernel() -> Iterator[None]:
    """Start kernels with one math thread: reductions then sum in the same order on every
    machine, so re-executing gives the same digits whatever the number of cores."""
    saved = {name: os.environ.get(name) for name in KERNEL_THREAD_VARIABLES}
    os.environ.update({name: "1" for name in KERNEL_THREAD_VARIABLES})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _keep_failed(executed: Path, plan: ExecutionPlan) -> str:
    """Copy a failed execution to `_build/executed/failed/<stem>.ipynb` for inspection."""
    target = EXECUTED_DIR / "failed" / f"{plan.chapter.stem}.ipynb"
    try:
        atomic_write_text(target, executed.read_text())
    except OSError:
        return "not kept (the build folder is not writable)"
    try:
        return str(target.relative_to(REPO_ROOT))
    except ValueError:
        return str(target)


def _log_run(plan: ExecutionPlan, wall: float, written: bool) -> None:
    """Append the run record to `_build/executed/runs.jsonl` (gitignored; best effort)."""
    try:
        output = str(plan.output.relative_to(REPO_ROOT))
    except ValueError:
        output = str(plan.output)
    entry = {"chapter": plan.chapter.stem, "profile": plan.profile, "device": plan.device_name,
             "parameters": plan.parameters, "output": output, "written": written,
             "wall_time_s": round(wall, 1), "commit": git_commit(),
             "finished_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
    try:
        EXECUTED_DIR.mkdir(parents=True, exist_ok=True)
        with (EXECUTED_DIR / "runs.jsonl").open("a") as log:
            log.write(json.dumps(entry, sort_keys=True) + "\n")
    except OSError as exc:
        sys.stderr.write(f"multisource: warning: could not log the run in "
                         f"{EXECUTED_DIR / 'runs.jsonl'} ({exc.strerror})\n")
