"""The book's chapters: their notebooks, and executing them with papermill.

A chapter's source is `notebooks/<stem>.md` (a MyST-markdown notebook). Executing it converts
the source with jupytext, runs it with papermill (cwd `notebooks/`, staging files in a temporary
folder) and normalises the result so that the same inputs give the same bytes: cell ids come
from the chapter stem and the cell's position, papermill's and Jupyter's timing metadata is
dropped (outputs and execution counts stay: nbval needs them) and papermill's injected-
parameters cell is tagged `remove-cell` so the book does not show it.

Where the result goes:
- profile `book` with the chapter's own parameters: the committed `notebooks/<stem>.ipynb`,
  rewritten only when its cells, outputs or inputs record changed, or when it records a
  `-dirty` commit and this execution's commit is clean (wall time alone never rewrites it);
- any other profile, or any parameter changed with `-p`: `_build/executed/<profile>/<stem>.ipynb`
  (gitignored), never the committed notebook.
Every execution's wall time and commit are appended to `_build/executed/runs.jsonl`.

The notebook's `multisource` metadata records what it was computed from: the profile, the
device, a SHA-256 of the `.md` source, the code hash of the `multisource` modules it imports and
of its experiments (see `provenance.code_modules`), and the SHA-256 of each stored results table
it could load. `notebook_state` compares that record with the repository.
"""

from __future__ import annotations

import ast
import copy
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from multisource.paths import BUILD_DIR, NOTEBOOKS_DIR, REPO_ROOT
from multisource.provenance import (
    INFRASTRUCTURE_MODULES,
    atomic_write_text,
    git_commit,
    modules_hash,
    sha256_bytes,
)
from multisource.validation import InputError, check_choice, check_output_path

# Where executions that are not the committed book profile go, and the log of every execution.
EXECUTED_DIR: Path = BUILD_DIR / "executed"
COMMITTED_PROFILE = "book"
# Parameters set by their own options rather than by `-p name value`.
OPTION_PARAMETERS = ("profile", "device")
# The kernel runs with one math thread (see `_single_threaded_kernel`) and without the
# kernel's start-up warnings on the terminal.
KERNEL_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=ERROR"]
# Fields of the run record that describe one execution, not what it computed from.
RUN_ONLY_FIELDS = ("wall_time_s", "source_commit")


@dataclass(frozen=True)
class Chapter:
    """One chapter of the book (`directory` is `notebooks/` except in tests)."""

    stem: str
    title: str
    shows: str
    directory: Path = NOTEBOOKS_DIR

    @property
    def source(self) -> Path:
        """The MyST-markdown notebook that is edited and reviewed."""
        return self.directory / f"{self.stem}.md"

    @property
    def notebook(self) -> Path:
        """The executed notebook with stored outputs (what nbval and the book use)."""
        return self.directory / f"{self.stem}.ipynb"


CHAPTERS: tuple[Chapter, ...] = (
    Chapter("01_formulation", "Formulation",
            "the setting, both MLEs and a 2-D example with exact TV"),
    Chapter("02_theorem_3_2", "Theorem 3.2", "risk against n, fitted rates, risk over the bound"),
    Chapter("03_bracketing_numbers", "Bracketing numbers",
            "constructive Gaussian brackets and Proposition 3.3's counts"),
    Chapter("04_gaussian", "Gaussian instantiation (Figure 1)",
            "the published numbers replicated, exact risk, ratio against theory"),
    Chapter("05_autoregressive", "Autoregressive models",
            "tabular and neural AR sources with exact TV by enumeration"),
    Chapter("06_energy_based", "Energy-based models",
            "discrete and 2-D EBMs with exact partition functions"),
    Chapter("07_edm2_diffusion", "EDM2 diffusion",
            "the ImageNet protocol and a miniature on offline images"),
    Chapter("08_when_pooling_hurts", "When pooling hurts",
            "misspecified sharing: exact crossovers, a phase diagram, advise, model collapse"),
)


def available_chapters() -> list[Chapter]:
    """Chapters whose source notebook exists in this checkout."""
    return [c for c in CHAPTERS if c.source.exists()]


def find_chapter(name: str) -> Chapter:
    """Look a chapter up by stem or by its number prefix (`4`, `04`, `04_gaussian`)."""
    for chapter in CHAPTERS:
        number = chapter.stem.split("_", 1)[0]
        if name in (chapter.stem, number, number.lstrip("0")):
            return chapter
    raise InputError(f"chapter must be one of {', '.join(c.stem for c in CHAPTERS)}; got {name!r}")


# ----------------------------------------------------------------------------------------------
# Parameters
# ----------------------------------------------------------------------------------------------

def read_source(source: Path) -> Any:
    """The chapter source as an nbformat notebook; InputError when it cannot be read."""
    import jupytext

    try:
        return jupytext.read(source)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"chapter source {source.name} is unreadable "
                         f"({type(exc).__name__})") from None


def _code_cells(source: Path) -> list[str]:
    """The code of every code cell of a MyST notebook source."""
    return [c.source for c in read_source(source).cells if c.cell_type == "code"]


def _parameters_cell(source: Path) -> str:
    notebook = read_source(source)
    tagged = [c.source for c in notebook.cells
              if c.cell_type == "code" and "parameters" in c.metadata.get("tags", [])]
    if len(tagged) != 1:
        raise InputError(f"chapter source {source.name} must have exactly one code cell tagged "
                         f"`parameters`, found {len(tagged)}")
    return tagged[0]


def chapter_parameters(chapter: Chapter) -> dict[str, Any]:
    """The names and default values in the chapter's `parameters` cell (literal assignments)."""
    try:
        tree = ast.parse(_parameters_cell(chapter.source))
    except SyntaxError:
        raise InputError(f"the parameters cell of {chapter.source.name} is not valid "
                         f"Python") from None
    defaults: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 \
                and isinstance(node.targets[0], ast.Name):
            try:
                defaults[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                defaults[node.targets[0].id] = None  # not a literal: any value accepted
    return defaults


def parse_parameter_value(text: str) -> Any:
    """A `-p name value` value: a Python literal where it parses as one, else the string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


def check_parameters(chapter: Chapter, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The overrides that differ from the chapter's defaults, each checked against them.

    A name must be one of the chapter's parameters (profile and device have their own
    options); a value must have the type of the default (an int is accepted for a float).
    """
    defaults = chapter_parameters(chapter)
    changed: dict[str, Any] = {}
    for name, value in overrides.items():
        if name in OPTION_PARAMETERS:
            raise InputError(f"parameter {name} is set with --{name}, not with -p")
        if name not in defaults:
            allowed = ", ".join(n for n in defaults if n not in OPTION_PARAMETERS) or "none"
            raise InputError(f"parameter must be one of the parameters of {chapter.stem} "
                             f"({allowed}); got {name!r}")
        default = defaults[name]
        if default is not None and not _same_kind(value, default):
            raise InputError(f"parameter {name} of {chapter.stem} must be "
                             f"{_kind_name(default)} like its default {default!r}; got {value!r}")
        if value != default or type(value) is not type(default):
            changed[name] = value
    return changed


def _same_kind(value: Any, default: Any) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, int | float)
    return isinstance(value, type(default))


def _kind_name(default: Any) -> str:
    names = {bool: "True or False", int: "an integer", float: "a number", str: "a string",
             list: "a list", tuple: "a tuple", dict: "a dict"}
    return names.get(type(default), f"a {type(default).__name__}")


# ----------------------------------------------------------------------------------------------
# What an executed notebook was computed from
# ----------------------------------------------------------------------------------------------

def _imported_package_modules(code: str) -> set[str]:
    """`multisource` modules named by the import statements of one code cell."""
    lines = [line for line in code.splitlines() if not line.lstrip().startswith(("%", "!"))]
    try:
        tree = ast.parse("\n".join(lines))
    except SyntaxError:
        return set()
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {m for m in found if m.split(".")[0] == "multisource"}


def chapter_experiments(chapter: Chapter) -> list[str]:
    """Registered experiments whose results this chapter shows."""
    from multisource.experiments import get, names

    return [name for name in names() if get(name).chapter == chapter.stem]


def chapter_code_modules(chapter: Chapter) -> list[str]:
    """The computing modules behind a chapter: the closure of what its cells import and of
    its experiments' modules, without the infrastructure modules."""
    from multisource.experiments import get
    from multisource.provenance import code_modules, module_source_file

    roots: set[str] = set()
    for code in _code_cells(chapter.source):
        roots.update(m for m in _imported_package_modules(code) if module_source_file(m))
    roots.update(get(name).code_module for name in chapter_experiments(chapter))
    closure: set[str] = set()
    for module in roots:
        closure.update(code_modules(module))
    return sorted(closure - INFRASTRUCTURE_MODULES)


def chapter_inputs(chapter: Chapter, profile: str = COMMITTED_PROFILE) -> dict[str, Any]:
    """What an execution of the chapter computes from: its source, its code, stored results.

    `stored_results` maps each of the chapter's experiments to the SHA-256 of the stored table
    that `load_or_run` would load at `profile` (None when it would compute instead).
    """
    from multisource.experiments.runner import stored_state

    stored: dict[str, str | None] = {}
    for name in chapter_experiments(chapter):
        state = stored_state(name, profile)
        stored[name] = (state.record or {}).get("csv_sha256") if state.state == "current" \
            else None
    return {"source_sha256": sha256_bytes(chapter.source.read_bytes()),
            "code_hash": modules_hash(chapter_code_modules(chapter)),
            "stored_results": stored}


NOTEBOOK_STATES = ("current", "stale-source", "stale-code", "stale-results", "unrecorded",
                   "not-executed")


def notebook_record(chapter: Chapter) -> dict[str, Any] | None:
    """The `multisource` metadata stored by the last execution, or None if never executed."""
    if not chapter.notebook.exists():
        return None
    try:
        metadata = json.loads(chapter.notebook.read_text())["metadata"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
        raise InputError(f"notebook {chapter.notebook.name} is unreadable") from None
    record = metadata.get("multisource") if isinstance(metadata, dict) else None
    return record if isinstance(record, dict) else None


def notebook_state(chapter: Chapter) -> str:
    """Whether the committed notebook was executed from the current source, code and results.

    One of NOTEBOOK_STATES: `unrecorded` when it predates the inputs record.
    """
    record = notebook_record(chapter)
    if record is None:
        return "not-executed"
    if "source_sha256" not in record or "code_hash" not in record:
        return "unrecorded"
    current = chapter_inputs(chapter, record.get("profile", COMMITTED_PROFILE))
    if record["source_sha256"] != current["source_sha256"]:
        return "stale-source"
    if record["code_hash"] != current["code_hash"]:
        return "stale-code"
    if record.get("stored_results") != current["stored_results"]:
        return "stale-results"
    return "current"


# ----------------------------------------------------------------------------------------------
# Normalising an executed notebook
# ----------------------------------------------------------------------------------------------

def strip_execution_timing(notebook: dict[str, Any]) -> dict[str, Any]:
    """Drop papermill's and Jupyter's per-run timing fields; keep outputs and counts."""
    notebook.get("metadata", {}).pop("papermill", None)
    for cell in notebook.get("cells", []):
        cell.get("metadata", {}).pop("papermill", None)
        cell.get("metadata", {}).pop("execution", None)
    return notebook


# Object reprs such as `<pandas...Styler at 0x7f2acc266290>` carry a memory address.
_MEMORY_ADDRESS = re.compile(r" at 0x[0-9a-f]{6,16}>")
# pandas' Styler names its table `T_<5 random hex digits>` in the HTML and its CSS.
_STYLER_ID = re.compile(r"\bT_([0-9a-f]{5})(?![0-9A-Za-z])")


def _stable_text(text: str) -> str:
    return _MEMORY_ADDRESS.sub(" at 0x0>", text)


def _stable_html(text: str, prefix: str) -> str:
    """Replace each Styler table id by `T_<prefix><k>`, k counting distinct ids in order."""
    names: dict[str, str] = {}

    def rename(match: re.Match[str]) -> str:
        names.setdefault(match.group(1), f"{prefix}{len(names)}")
        return f"T_{names[match.group(1)]}"

    return _STYLER_ID.sub(rename, text)


def _stable_outputs(cell: dict[str, Any], prefix: str) -> None:
    for output in cell.get("outputs", []):
        for mime, value in output.get("data", {}).items():
            if not isinstance(value, str | list) or not mime.startswith("text/"):
                continue
            text = "".join(value) if isinstance(value, list) else value
            text = _stable_html(text, prefix) if mime == "text/html" else _stable_text(text)
            output["data"][mime] = text.splitlines(keepends=True) if isinstance(value, list) \
                else text


def normalise_executed(notebook: dict[str, Any], stem: str) -> dict[str, Any]:
    """Same inputs, same bytes: timing dropped, cell ids `<stem>-<index>`, memory addresses
    and pandas Styler ids in outputs made stable, and the injected-parameters cell tagged
    `remove-cell` (the book does not show it; nbval still runs it)."""
    strip_execution_timing(notebook)
    notebook.get("metadata", {}).pop("jupytext", None)
    for index, cell in enumerate(notebook.get("cells", [])):
        cell["id"] = f"{stem}-{index:03d}"
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")
        _stable_outputs(cell, f"c{index:03d}x")
    return notebook


def _comparable(notebook: dict[str, Any]) -> dict[str, Any]:
    """The notebook without the fields that only describe one execution."""
    result = copy.deepcopy(notebook)
    record = result.get("metadata", {}).get("multisource")
    if isinstance(record, dict):
        for key in RUN_ONLY_FIELDS:
            record.pop(key, None)
    return result


def _cleans_commit(previous: dict[str, Any], record: dict[str, Any]) -> bool:
    """Whether this execution replaces a `-dirty` source commit by a clean one (worth one
    rewrite; a clean commit is never replaced by another, so re-execution does not churn)."""
    old = previous.get("metadata", {}).get("multisource", {})
    old_commit = old.get("source_commit", "") if isinstance(old, dict) else ""
    return (str(old_commit).endswith("-dirty")
            and not str(record["source_commit"]).endswith("-dirty"))


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None


def notebook_text(notebook: dict[str, Any]) -> str:
    """The notebook as it is stored (one-space indent, UTF-8, final newline)."""
    return json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"


# ----------------------------------------------------------------------------------------------
# Executing
# ----------------------------------------------------------------------------------------------

class ChapterFailed(RuntimeError):
    """A cell of a chapter raised. `user_input`: the error was the chapter rejecting a
    parameter value (an InputError), not a fault in the chapter."""

    def __init__(self, message: str, *, user_input: bool) -> None:
        super().__init__(message)
        self.user_input = user_input


@dataclass(frozen=True)
class ExecutionPlan:
    """A checked request to execute one chapter (made before any work)."""

    chapter: Chapter
    profile: str
    device: str
    device_name: str
    parameters: dict[str, Any]
    output: Path

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


def default_output(chapter: Chapter, profile: str, parameters: Mapping[str, Any]) -> Path:
    """The committed notebook for the book profile at the chapter's own parameters, else
    `_build/executed/<profile>/<stem>.ipynb`."""
    if profile == COMMITTED_PROFILE and not parameters:
        return chapter.notebook
    return EXECUTED_DIR / profile / f"{chapter.stem}.ipynb"


def plan_execution(chapter: Chapter, *, profile: str = COMMITTED_PROFILE, device: str = "auto",
                   parameters: Mapping[str, Any] | None = None,
                   output: str | Path | None = None) -> ExecutionPlan:
    """Check everything about one execution before any work; InputError on the first problem."""
    from multisource.devices import describe_device, resolve_device
    from multisource.experiments import PROFILES

    check_choice("profile", profile, PROFILES)
    device_name = describe_device(resolve_device(device))  # `cuda` without a GPU fails here
    if not chapter.source.is_file():
        raise InputError(f"chapter source {chapter.source.name} does not exist")
    changed = check_parameters(chapter, parameters or {})
    if output is None:
        target = default_output(chapter, profile, changed)
    else:
        target = check_output_path("--out", output, kind="file")
        if target.suffix != ".ipynb":
            raise InputError(f"--out must name an .ipynb file, got {output}")
        if target.resolve() == chapter.notebook.resolve() and \
                (profile != COMMITTED_PROFILE or changed):
            raise InputError(f"--out must not be the committed {chapter.notebook.name} for "
                             f"profile {profile} or changed parameters")
    check_output_path("output notebook", target, kind="file")
    return ExecutionPlan(chapter, profile, device, device_name, changed, target)


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
            raise ChapterFailed(
                f"{chapter.stem} failed in cell {error.exec_count}: {error.ename}: "
                f"{error.evalue} (the partly executed notebook is {kept}; nothing else "
                f"was written)", user_input=error.ename == "InputError") from error
        result = json.loads(executed.read_text())
    wall = time.perf_counter() - started

    normalise_executed(result, chapter.stem)
    record: dict[str, Any] = {"profile": plan.profile, "device": plan.device_name}
    if plan.parameters:
        record["parameters"] = plan.parameters
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
    from multisource.devices import describe_device, resolve_device

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
