"""Normalising an executed notebook so that the same inputs give the same bytes: stable ids
and reprs, no timing metadata, and the reader tags that hide checking cells."""

from __future__ import annotations

import ast
import copy
import json
import re
from pathlib import Path
from typing import Any

from multisource.book.inputs import _call_name
from multisource.book.registry import RUN_ONLY_FIELDS


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


GLUE_DIGITS = 10
"""Significant digits kept of a glued float: a chapter's prose shows far fewer (its own format,
`{glue:text}` with `:.3f`), and last-bit noise of BLAS kernels, thread counts and CPUs (about
1e-16 relative) never rewrites a committed notebook."""

# A float as Python writes it (`repr`): digits with a point or an exponent, or nan / inf.
_FLOAT_REPR = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+(?=[eE]))(?:[eE][-+]?\d+)?")


def rounded_glue_text(text: str, digits: int = GLUE_DIGITS) -> str:
    """The stored text of a glued value: a float repr rounded to `digits` significant digits
    (`0.08456354433118317` -> `0.08456354433`); anything else (ints, strings, bools) as is."""
    if not _FLOAT_REPR.fullmatch(text.strip()):
        return text
    return repr(float(f"{float(text):.{digits}g}"))


def _round_glued_floats(output: dict[str, Any]) -> None:
    """Round the plain-text record of a `myst_nb.glue` output (papermill's scrapbook)."""
    scrapbook = output.get("metadata", {}).get("scrapbook")
    if not isinstance(scrapbook, dict):
        return
    key = f"{scrapbook.get('mime_prefix', '')}text/plain"
    value = output.get("data", {}).get(key)
    if isinstance(value, str):
        output["data"][key] = rounded_glue_text(value)


def _stable_outputs(cell: dict[str, Any], prefix: str) -> None:
    for output in cell.get("outputs", []):
        _round_glued_floats(output)
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
    and pandas Styler ids in outputs made stable, glued floats rounded to `GLUE_DIGITS`
    significant digits; the injected-parameters cell tagged
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
