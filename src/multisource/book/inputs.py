"""What an executed notebook was computed from (its source, the code hash of the modules it
uses, the stored tables it loads), and whether the committed notebook is still current."""

from __future__ import annotations

import ast
import json
from typing import Any

from multisource.book.registry import (
    COMMITTED_PROFILE,
    Chapter,
    _code_cells,
    damaged_message,
)
from multisource.common.provenance import is_infrastructure, modules_hash, sha256_bytes
from multisource.common.validation import InputError


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
    from multisource.common.provenance import code_modules, module_source_file
    from multisource.experiments import get

    roots: set[str] = set()
    for code in _code_cells(chapter.source):
        roots.update(m for m in _imported_package_modules(code) if module_source_file(m))
    roots.update(get(name).code_module for name in chapter_experiments(chapter))
    closure: set[str] = set()
    for module in roots:
        closure.update(code_modules(module))
    return sorted(m for m in closure if not is_infrastructure(m))


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
    """The `multisource` metadata stored by the last execution, or None if never executed;
    InputError (one line, `damaged_message`) when the committed notebook is damaged."""
    if not chapter.notebook.exists() and not chapter.notebook.is_symlink():
        return None
    damaged = damaged_message(chapter)
    if damaged is not None:
        raise InputError(damaged)
    try:
        metadata = json.loads(chapter.notebook.read_text())["metadata"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
        raise InputError(f"notebook notebooks/{chapter.notebook.name} is damaged (no "
                         f"metadata)") from None
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
