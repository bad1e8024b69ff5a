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

import ast
import copy
import itertools
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


def check_parameters(chapter: Chapter, overrides: Mapping[str, Any], *,
                     profile: str = COMMITTED_PROFILE) -> dict[str, Any]:
    """The overrides that differ from the chapter's defaults, each checked before any work.

    A name must be one of the chapter's parameters (profile and device have their own
    options); a value must have the type of the default (an int is accepted for a float) and
    lie in the range declared for it in PARAMETER_RANGES. Every parameter is checked with the
    overrides applied, so a default that no longer fits a changed parameter (d1 > d) is named.
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
    check_parameter_ranges(chapter, {**defaults, **changed, "profile": profile},
                           changed=set(changed))
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
# Declared ranges of the chapters' parameters
# ----------------------------------------------------------------------------------------------
# A bound is a number or an expression in the chapter's other parameters ("d" for d1 <= d),
# evaluated with the values of this execution. The ranges say where a chapter's code is
# defined and runs in minutes; a chapter's claims (its assert cells) may still fail away from
# its defaults, which is then reported as a claim that does not hold (exit status 1).

Bound = int | float | str | None


def _bound_value(bound: Bound, values: Mapping[str, Any]) -> Any:
    if isinstance(bound, str):
        return eval(bound, {"__builtins__": {}, "min": min, "max": max}, dict(values))
    return bound


def _number_text(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return f"{value:g}" if isinstance(value, float) else repr(value)


def _bound_text(bound: Bound, values: Mapping[str, Any]) -> str:
    value = _number_text(_bound_value(bound, values))
    return f"{bound} = {value}" if isinstance(bound, str) else value


@dataclass(frozen=True)
class Number:
    """An int (`integer=True`) or a float in [low, high]; `open_low`/`open_high` exclude the
    end. Bounds may be expressions in other parameters."""

    low: Bound = None
    high: Bound = None
    integer: bool = True
    open_low: bool = False
    open_high: bool = False

    def problem(self, value: Any, values: Mapping[str, Any]) -> str | None:
        """Why `value` is outside the range (None when it is inside)."""
        kind = "an integer" if self.integer else "a number"
        if isinstance(value, bool) or not isinstance(value, int | float) or (
                self.integer and not isinstance(value, int)) or value != value:
            return f"must be {kind}"
        low, high = _bound_value(self.low, values), _bound_value(self.high, values)
        if (low is not None and (value < low or (self.open_low and value == low))) or (
                high is not None and (value > high or (self.open_high and value == high))):
            return f"must be {kind} in {self.describe(values)}"
        return None

    def describe(self, values: Mapping[str, Any]) -> str:
        """The interval in words, e.g. `[0, d = 10]`."""
        low = "-inf" if self.low is None else _bound_text(self.low, values)
        high = "inf" if self.high is None else _bound_text(self.high, values)
        return (f"{'(' if self.open_low or self.low is None else '['}{low}, "
                f"{high}{')' if self.open_high or self.high is None else ']'}")


def Int(low: Bound = None, high: Bound = None) -> Number:
    """An integer in [low, high]."""
    return Number(low, high, integer=True)


def Float(low: Bound = None, high: Bound = None, *, open_low: bool = False,
          open_high: bool = False) -> Number:
    """A number in [low, high] (ends excluded where open)."""
    return Number(low, high, integer=False, open_low=open_low, open_high=open_high)


@dataclass(frozen=True)
class TupleOf:
    """A tuple of `min_len` to `max_len` items, each in `item`'s range, optionally strictly
    increasing; `item` may be a tuple of ranges for fixed-length records such as (K, delta)."""

    item: Any
    min_len: int = 1
    max_len: int = 100
    increasing: bool = False

    def problem(self, value: Any, values: Mapping[str, Any]) -> str | None:
        """Why `value` is outside the range (None when it is inside)."""
        if not isinstance(value, tuple | list) or not self.min_len <= len(value) <= self.max_len:
            return f"must be a tuple of {self.min_len} to {self.max_len} values"
        for item in value:
            problem = _record_problem(self.item, item, values)
            if problem is not None:
                return f"must be a tuple of {problem} ({item!r} is not)"
        if self.increasing and any(b <= a for a, b in itertools.pairwise(value)):
            return "must be strictly increasing"
        return None

    def describe(self, values: Mapping[str, Any]) -> str:
        """The range in words."""
        return (f"{self.min_len} to {self.max_len} values"
                + (", increasing" if self.increasing else ""))


def _record_problem(spec: Any, item: Any, values: Mapping[str, Any]) -> str | None:
    """What one item of a tuple parameter must be (None when it is fine), as a plural noun
    phrase: `integers in [10, 1000000]`, `2-tuples whose entry 1 is an integer in [2, 100]`."""
    if not isinstance(spec, tuple):
        problem = spec.problem(item, values)
        if problem is None:
            return None
        return (problem.removeprefix("must be ").replace("an integer", "integers", 1)
                .replace("a number", "numbers", 1))
    if not isinstance(item, tuple | list) or len(item) != len(spec):
        return f"{len(spec)}-tuples"
    for position, (part, entry) in enumerate(zip(spec, item, strict=True)):
        problem = part.problem(entry, values)
        if problem is not None:
            return (f"{len(spec)}-tuples whose entry {position + 1} is "
                    f"{problem.removeprefix('must be ')}")
    return None


@dataclass(frozen=True)
class OneOf:
    """One of the values that `choices(values)` returns (e.g. the seeds of a stored run)."""

    choices: Any
    what: str

    def problem(self, value: Any, values: Mapping[str, Any]) -> str | None:
        """Why `value` is not allowed (None when it is)."""
        allowed = tuple(self.choices(values))
        if isinstance(value, bool) or value not in allowed:
            return f"must be {self.what}: one of {', '.join(map(str, allowed))}"
        return None


def _stored_seeds(experiment: str) -> Any:
    def seeds(values: Mapping[str, Any]) -> tuple[int, ...]:
        from multisource.experiments import PROFILES, get

        profile = values.get("profile", COMMITTED_PROFILE)
        return tuple(get(experiment).config(profile).seeds) if profile in PROFILES else ()

    return seeds


MAX_SEED = 2**32 - 1
SEED = Int(0, MAX_SEED)
LEVEL = Float(0.5, 0.999)   # confidence level of an interval
DIMENSION_SPLIT = Int(0, "d")   # d1: source-specific coordinates, at most d

# Chapter stem -> parameter -> range, for every parameter of every chapter's `parameters`
# cell except `profile` and `device` (set with --profile and --device).
# `tests/test_parameter_ranges.py` fails when a chapter has a parameter without a range.
PARAMETER_RANGES: dict[str, dict[str, Any]] = {
    "01_formulation": {
        "seed": SEED,
        "K": Int(1, 10),            # one colour per source in the figures
        "d": Int(2, 2),             # the chapter's pictures and grid check are 2-D
        "d1": DIMENSION_SPLIT,
        "n": Int("10 * K", 100_000),  # every source gets points with near certainty
        "n_redraws": Int(100, 100_000),
    },
    "02_theorem_3_2": {
        "seed": SEED,
        "K": Int(2, 50),            # the unbalanced p_Y spreads 1 - p_small over K - 1
        "d": Int(1, 50),
        "d1": DIMENSION_SPLIT,
        "n_grid": TupleOf(Int(10, 1_000_000), 3, 20, increasing=True),
        "n_seeds": Int(100, 100_000),
        "n_boot": Int(100, 10_000),
        "box_margin": Float(0.1, 10.0),
        "n_fixed": Int(100, 1_000_000),
        "K_grid": TupleOf(Int(1, 100), 2, 20, increasing=True),
        "d_grid": TupleOf(Int(1, 100), 2, 20, increasing=True),
        "p_small": Float(0.0001, "1 / K", open_high=True),
        "unbalanced_n_grid": TupleOf(Int(100, 1_000_000), 2, 20, increasing=True),
        "worst_seeds": Int(100, 100_000),
        "growth_n": Int(10, 1_000_000),
        "growth_K": TupleOf(Int(1, 1000), 2, 30, increasing=True),
    },
    "03_bracketing_numbers": {
        "seed": SEED,
        "K": Int(1, 100),
        "d": Int(1, 50),
        "d1": DIMENSION_SPLIT,
        "mean_low": Float(-100.0, 100.0),
        "mean_high": Float("mean_low", 200.0, open_low=True),
        "eps_min": Float(1e-12, "eps_max", open_low=False, open_high=True),
        "eps_max": Float(1e-10, 0.5),
        "n_eps": Int(3, 200),
        "demo_width": Float(0.01, 10.0),
        "p_small_grid": TupleOf(Float(1e-6, 0.99), 2, 30),
        "weighted_eps": Float(1e-12, 0.5),
        "tight_n_grid": TupleOf(Int(1, 10_000_000), 2, 30, increasing=True),
        "tight_K_grid": TupleOf(Int(1, 1000), 2, 30, increasing=True),
        "tight_n": Int(1, 10_000_000),
    },
    "04_gaussian": {
        "seed": SEED,
        "n_grid_points": Int(2, 100),   # a fitted slope needs two sample sizes
    },
    "05_autoregressive": {
        "seed": SEED,
        "example_K": Int(1, 20),
        "example_n": Int(10, 100_000),
        "example_L": Int(2, 12),    # at least one transition; exact TV enumerates 2^L sequences
        "level": LEVEL,
    },
    "06_energy_based": {
        "seed": SEED,
        "heat_K": Int(1, 8),        # one row of density pictures per source
        "heat_n": Int(10, 100_000),
        "heat_beta": Float(0.0, 1.0),
        "heat_units": Int(1, 64),
        "level": LEVEL,
    },
    "07_edm2_diffusion": {
        "seed": OneOf(_stored_seeds("edm2_miniature"),
                      "a seed of the edm2_miniature run at this profile"),
        "images_shown": Int(1, 32),
    },
    "08_when_pooling_hurts": {
        "seed": SEED,
        "check_settings": TupleOf((Int(2, 100), Float(0.0, 10.0, open_low=True)), 1, 6),
        "check_seeds": Int(100, 1_000_000),
        "ar_seeds": Int(10, 100_000),
        "collapse_seeds": Int(10, 100_000),
        "collapse_generations": Int(1, 200),
        # parameters the issue-19 branch adds to chapter 8 (declared ahead of its merge)
        "small_n_seeds": Int(1000, 10_000_000),
        "boundary_seeds": Int(100, 1_000_000),
    },
}


def parameter_range(chapter: Chapter, name: str) -> Any:
    """The declared range of one parameter; InputError when the chapter declares none."""
    declared = PARAMETER_RANGES.get(chapter.stem, {})
    if name not in declared:
        raise InputError(f"parameter {name} of {chapter.stem} has no declared range "
                         f"(multisource.chapters.PARAMETER_RANGES); it cannot be changed")
    return declared[name]


def check_parameter_ranges(chapter: Chapter, values: Mapping[str, Any], *,
                           changed: set[str] | None = None) -> None:
    """Every parameter in its declared range, with one line naming the first that is not.

    Chapters without declared ranges (test chapters) are checked for type only. A default
    that is out of range because of a changed parameter is named as such.
    """
    declared = PARAMETER_RANGES.get(chapter.stem)
    if declared is None:
        return
    changed = set(values) if changed is None else changed
    for name, spec in declared.items():
        if name not in values:
            continue
        value = values[name]
        try:
            problem = spec.problem(value, values)
        except (TypeError, ValueError, ZeroDivisionError, NameError, KeyError):
            problem = "cannot be checked against the other parameters"
        if problem is None:
            continue
        note = "" if name in changed else " (its default; change it with -p)"
        raise InputError(f"parameter {name} of {chapter.stem} {problem}; got {value!r}{note}")
    unknown = sorted(changed - set(declared))
    if unknown:
        parameter_range(chapter, unknown[0])


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


# Calls through which a chapter loads an experiment's stored results by name.
LOADING_FUNCTIONS = ("load_or_run", "load_results", "load_or_interim")


def _loaded_experiments(chapter: Chapter) -> set[str]:
    """Experiment names passed as a string literal to `load_or_run(...)`/`load_results(...)`
    in the chapter's code (a chapter may load another chapter's experiment)."""
    found: set[str] = set()
    for code in _code_cells(chapter.source):
        lines = [line for line in code.splitlines() if not line.lstrip().startswith(("%", "!"))]
        try:
            tree = ast.parse("\n".join(lines))
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and _call_name(node) in LOADING_FUNCTIONS \
                    and node.args and isinstance(node.args[0], ast.Constant) \
                    and isinstance(node.args[0].value, str):
                found.add(node.args[0].value)
    return found


def _call_name(node: ast.Call) -> str | None:
    if isinstance(node.func, ast.Name):
        return node.func.id
    if isinstance(node.func, ast.Attribute):
        return node.func.attr
    return None


def chapter_experiments(chapter: Chapter) -> list[str]:
    """Registered experiments whose results this chapter shows: its own, and any other whose
    stored results its code loads by name."""
    from multisource.experiments import get, names

    loaded = _loaded_experiments(chapter)
    return [name for name in names() if get(name).chapter == chapter.stem or name in loaded]


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
    from multisource.experiments.runner import interim_results, stored_state

    stored: dict[str, str | None] = {}
    for name in chapter_experiments(chapter):
        state = stored_state(name, profile)
        stored[name] = (state.record or {}).get("csv_sha256") if state.state == "current" \
            else None
        if state.state == "missing":
            interim = interim_results(name, profile)
            if interim is not None:     # a run in progress: its verified finished tasks
                table = interim.frame.to_csv(index=False).encode()
                stored[name] = f"interim {len(interim.tasks)}/{interim.tasks_total} " \
                               f"{sha256_bytes(table)}"
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


# What the book shows of a code cell. Cells that only check (nbval's compared cells, asserts,
# glue) are for the tests and the prose, not for the reader: they get one of these tags by
# rule when a chapter is executed, so no chapter has to tag them by hand. nbval runs them all.
CHECK_OUTPUT_MARKER = "# NBVAL_CHECK_OUTPUT"
CHECK_CALLS = ("glue", "check_claims")
REMOVE_CELL, REMOVE_INPUT, HIDE_INPUT = "remove-cell", "remove-input", "hide-input"
HIDING_TAGS = frozenset({REMOVE_CELL, REMOVE_INPUT, "hide-cell", HIDE_INPUT})


def _statement_kind(statement: ast.stmt) -> str:
    """`check` (assert, glue(...), check_claims(...)), `neutral` (import), `assign`, or
    `other`; an if/for/with block takes the kind of its body."""
    if isinstance(statement, ast.Assert):
        return "check"
    if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Call) \
            and _call_name(statement.value) in CHECK_CALLS:
        return "check"
    if isinstance(statement, ast.Import | ast.ImportFrom | ast.Pass):
        return "neutral"
    if isinstance(statement, ast.Assign | ast.AugAssign | ast.AnnAssign):
        return "assign"
    if isinstance(statement, ast.If | ast.For | ast.With):
        kinds = {_statement_kind(s) for s in [*statement.body, *getattr(statement, "orelse", [])]}
        if "other" in kinds:
            return "other"
        return "check" if "check" in kinds else ("assign" if "assign" in kinds else "neutral")
    return "other"


def check_cell_kind(code: str) -> str | None:
    """How a code cell checks rather than shows: `marked` (starts with the nbval marker),
    `checks` (only asserts, glue(...) and check_claims(...) calls, possibly inside if/for/with,
    and imports), `computes-and-checks` (the same plus assignments), else None."""
    if code.lstrip().startswith(CHECK_OUTPUT_MARKER):
        return "marked"
    lines = [line for line in code.splitlines() if not line.lstrip().startswith(("%", "!"))]
    try:
        tree = ast.parse("\n".join(lines))
    except SyntaxError:
        return None
    kinds = {_statement_kind(s) for s in tree.body}
    if "check" not in kinds or "other" in kinds:
        return None
    return "computes-and-checks" if "assign" in kinds else "checks"


def _shows_reader_output(cell: dict[str, Any]) -> bool:
    """True when the cell prints or displays something (a warning on stderr does not count)."""
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            if output.get("name") == "stdout":
                return True
        elif output.get("output_type") in ("display_data", "execute_result"):
            return True
    return False


def reader_tag(cell: dict[str, Any]) -> str | None:
    """The tag the rule gives an executed code cell (None: shown as written).

    nbval-compared cells and cells that only check: `remove-cell` (`remove-input` when they
    print or display something); cells that compute only to check or glue: `hide-input`
    (code folded). A cell already tagged to hide or remove keeps its own tag.
    """
    if cell.get("cell_type") != "code":
        return None
    code = cell.get("source", "")
    kind = check_cell_kind("".join(code) if isinstance(code, list) else code)
    if kind == "marked":
        return REMOVE_CELL
    if kind == "checks":
        return REMOVE_INPUT if _shows_reader_output(cell) else REMOVE_CELL
    if kind == "computes-and-checks":
        return HIDE_INPUT
    return None


def normalise_executed(notebook: dict[str, Any], stem: str) -> dict[str, Any]:
    """Same inputs, same bytes: timing dropped, cell ids `<stem>-<index>`, memory addresses
    and pandas Styler ids in outputs made stable; the injected-parameters cell tagged
    `remove-cell`, and cells that only check tagged by `reader_tag` (the book does not show
    them; nbval still runs them)."""
    strip_execution_timing(notebook)
    notebook.get("metadata", {}).pop("jupytext", None)
    for index, cell in enumerate(notebook.get("cells", [])):
        cell["id"] = f"{stem}-{index:03d}"
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if "injected-parameters" in tags and REMOVE_CELL not in tags:
            tags.append(REMOVE_CELL)
        tag = reader_tag(cell)
        removed = {REMOVE_CELL, REMOVE_INPUT} & set(tags)
        if (tag in (REMOVE_CELL, REMOVE_INPUT) and not removed) \
                or (tag == HIDE_INPUT and not HIDING_TAGS & set(tags)):
            tags.append(tag)
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
    from multisource.paths import BOOK_DIR, DATA_DIR

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
    (in any repository); derived notebooks belong under _build/."""
    target = check_output_path("--out", value, kind="file")
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
    from multisource.validation import human_seconds

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
    return (f"{chapter.stem} loads stored results that do not match the code: "
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
    from multisource.devices import describe_device, resolve_device
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
