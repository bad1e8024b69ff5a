"""The book's chapters: where each one's source and notebook live, and the parameters its
`parameters` cell declares."""

from __future__ import annotations

import ast
import copy
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from multisource.common.paths import NOTEBOOKS_DIR
from multisource.common.validation import InputError

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
    Chapter("00_scorecard", "What the book found",
            "each claim of the paper against every chapter's evidence, one verdict a row"),
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


def notebook_damage(path: Path) -> str | None:
    """Why the executed notebook at `path` cannot be shown, in a few words, or None when it is
    a sound notebook. The one judgement `status`, `book` and `execute` share: unreadable, not
    JSON, not a notebook, empty (no cells: its page would be blank and the chapters after it
    renumbered), a cell without an id, or invalid against the notebook schema (a code cell
    without outputs, ...)."""
    import nbformat

    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return "unreadable: not UTF-8 text"
    except OSError as error:
        return f"unreadable: {error.strerror or type(error).__name__}"
    try:
        notebook = json.loads(text)
    except json.JSONDecodeError:
        return "not JSON: cut short or edited"
    if not isinstance(notebook, dict) or not isinstance(notebook.get("cells"), list):
        return "not a notebook: no list of cells"
    if not notebook["cells"]:
        return "empty: no cells"
    for number, cell in enumerate(notebook["cells"], start=1):
        if not isinstance(cell, dict) or not isinstance(cell.get("id"), str):
            return f"schema-invalid: cell {number} has no id"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nbformat.validate(copy.deepcopy(notebook))   # validate may repair what it reads
    except nbformat.ValidationError as error:
        where = list(getattr(error, "relative_path", None) or [])
        cell = (f"cell {where[1] + 1}: " if len(where) >= 2 and where[0] == "cells"
                and isinstance(where[1], int) else "")
        message = " ".join(str(getattr(error, "message", "") or error).split())
        return f"schema-invalid: {cell}{message[:120]}"
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        return f"schema-invalid: {type(error).__name__}"
    return None


def damaged_message(chapter: Chapter) -> str | None:
    """One line for a damaged committed notebook (what is wrong and the commands that fix it),
    or None when it is missing or sound."""
    if not chapter.notebook.exists() and not chapter.notebook.is_symlink():
        return None
    reason = notebook_damage(chapter.notebook)
    if reason is None:
        return None
    return (f"notebook notebooks/{chapter.notebook.name} is damaged ({reason}); restore it "
            f"with `git checkout -- notebooks/{chapter.notebook.name}` or re-execute it with "
            f"`multisource execute {chapter.stem}`")


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
