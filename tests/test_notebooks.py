"""Every chapter: one parameters cell, stored outputs with execution counts, source in sync,
and figures that read like a book's: numbered, captioned, referred to, their code folded."""

from __future__ import annotations

import json
import re

import jupytext
import pytest

from multisource.book.normalise import HIDING_TAGS, REMOVE_CELL, REMOVE_INPUT, reader_tag
from multisource.book.registry import available_chapters
from multisource.book.status import status_table
from multisource.common.paths import BOOK_DIR

CHAPTERS = available_chapters()
# `{numref}`fig-name`` or `{numref}`Figure %s <fig-name>``
NUMREF = re.compile(r"\{numref\}`(?:[^`<]*<)?([^`<>]+)>?`")
# Tags that fold or remove a cell's code in the rendered book.
FOLDED = {"hide-input", "remove-input", "hide-cell", "remove-cell"}
# Absolute locations of a machine (work tree, home folders, temp files, installed packages).
MACHINE_PATH = re.compile(r"(/w[o]rk/|/r[o]ot/|/home/[a-z]|/t[m]p/|site-packages)")


def code_cells(notebook: dict) -> list[dict]:
    return [c for c in notebook["cells"] if c["cell_type"] == "code"]


def source(cell: dict) -> str:
    text = cell["source"]
    return "".join(text) if isinstance(text, list) else text


@pytest.fixture(params=CHAPTERS, ids=[c.stem for c in CHAPTERS])
def chapter(request):
    return request.param


def test_some_chapters_exist() -> None:
    assert len(CHAPTERS) >= 1


def test_executed_notebook_exists(chapter) -> None:
    assert chapter.notebook.exists(), f"run `multisource execute {chapter.stem}`"


def test_exactly_one_parameters_cell_with_the_standard_knobs(chapter) -> None:
    """One parameters cell: profile, device, and a seed exactly where the chapter uses one."""
    notebook = json.loads(chapter.notebook.read_text())
    tagged = [c for c in code_cells(notebook) if "parameters" in c["metadata"].get("tags", [])]
    assert len(tagged) == 1
    text = source(tagged[0])
    assert re.search(r'^profile = "book"', text, re.M)
    assert re.search(r'^device = "auto"', text, re.M)
    # a chapter that draws random numbers itself takes its seed as a parameter; one that only
    # reads stored results (the scorecard, chapter 6) has no seed to set
    injected = "injected-parameters"
    draws = any(re.search(r"\bseed\b", source(c)) for c in code_cells(notebook)
                if c is not tagged[0] and injected not in c["metadata"].get("tags", []))
    assert bool(re.search(r"^seed = \d+", text, re.M)) == draws


def test_outputs_and_execution_counts_are_stored(chapter) -> None:
    notebook = json.loads(chapter.notebook.read_text())
    cells = code_cells(notebook)
    assert all(c["execution_count"] is not None for c in cells if source(c).strip())
    assert not [o for c in cells for o in c["outputs"] if o["output_type"] == "error"]
    assert any(c["outputs"] for c in cells)
    checked = [c for c in cells if source(c).lstrip().startswith("# NBVAL_CHECK_OUTPUT")]
    assert checked and all(c["outputs"] for c in checked)
    assert "multisource" in notebook["metadata"], "executed by `multisource execute`"
    assert "papermill" not in notebook["metadata"]  # timing stripped


def test_no_injected_parameters_cell_is_shown(chapter) -> None:
    notebook = json.loads(chapter.notebook.read_text())
    shown = [c for c in code_cells(notebook) if "injected-parameters" in c["metadata"].get(
        "tags", []) and "remove-cell" not in c["metadata"]["tags"]]
    assert not shown, f"re-run `multisource execute {chapter.stem}`"


def test_cells_that_only_check_are_hidden_from_readers(chapter) -> None:
    """nbval's compared cells and assert/glue cells carry the tag `multisource execute` gives
    them by rule (`book.normalise.reader_tag`); a notebook executed before the rule fails here until
    it is executed again (`multisource execute <stem>` at a clean commit)."""
    notebook = json.loads(chapter.notebook.read_text())
    untagged = []
    for index, cell in enumerate(notebook["cells"]):
        expected = reader_tag(cell)
        tags = set(cell["metadata"].get("tags", []))
        if expected is None:
            continue
        needed = {REMOVE_CELL, REMOVE_INPUT} if expected != "hide-input" else HIDING_TAGS
        if not needed & tags:
            untagged.append(f"cell {index} ({source(cell).strip().splitlines()[0][:40]!r}) "
                            f"needs {expected}")
    assert not untagged, (f"re-execute with `multisource execute {chapter.stem}`: "
                          + "; ".join(untagged))


def test_source_and_executed_notebook_are_in_sync(chapter) -> None:
    executed = json.loads(chapter.notebook.read_text())
    executed_code = [source(c) for c in code_cells(executed)
                     if "injected-parameters" not in c["metadata"].get("tags", [])]
    markdown = jupytext.read(chapter.source)
    source_code = [c.source for c in markdown.cells if c.cell_type == "code"]
    assert executed_code == source_code, f"re-run `multisource execute {chapter.stem}`"


def test_no_machine_paths_in_outputs(chapter) -> None:
    notebook = json.loads(chapter.notebook.read_text())
    for cell in code_cells(notebook):
        for output in cell["outputs"]:
            text = json.dumps({k: v for k, v in output.items() if k != "data"}) + json.dumps(
                {k: v for k, v in output.get("data", {}).items() if not k.startswith("image/")})
            assert not MACHINE_PATH.search(text), text[:300]


def test_book_status_table_is_current() -> None:
    stored = (BOOK_DIR / "_generated" / "status_table.md").read_text().strip()
    assert stored == status_table(markdown=True).strip(), "run `make status`"


def _is_image(output: dict) -> bool:
    return any(mime.startswith("image/") for mime in output.get("data", {}))


def _is_reader_text(output: dict) -> bool:
    """Output a reader reads as a result (printed numbers, tables): not a figure, not a
    warning on stderr, not matplotlib's `<Figure size ...>` placeholder."""
    if output["output_type"] == "stream":
        return output.get("name") == "stdout"
    if output["output_type"] not in ("display_data", "execute_result") or _is_image(output):
        return False
    data = output.get("data", {})
    plain = "".join(data.get("text/plain", ""))
    return set(data) != {"text/plain"} or not plain.startswith("<Figure size")


def figure_problems(notebook: dict) -> list[str]:
    """Where a notebook breaks the figure convention (empty when it keeps it).

    Every image comes from a code cell with a `mystnb.figure` caption and name, one image per
    such cell; every figure name is referenced with {numref} from a markdown cell; a cell
    whose only output is its figure (plot-only) is folded (`hide-input`).
    """
    problems = []
    markdown = "\n".join(source(c) for c in notebook["cells"] if c["cell_type"] == "markdown")
    referenced = set(NUMREF.findall(markdown))
    for index, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] != "code":
            continue
        images = [o for o in cell.get("outputs", []) if _is_image(o)]
        if not images:
            continue
        where = f"cell {index} ({source(cell).strip().splitlines()[0][:40]!r})"
        figure = cell["metadata"].get("mystnb", {}).get("figure", {})
        name, caption = figure.get("name"), figure.get("caption")
        if not name or not caption:
            problems.append(f"{where}: an image without a mystnb.figure caption and name")
        elif name not in referenced:
            problems.append(f"{where}: figure {name} is never referenced with {{numref}}")
        if len(images) > 1:
            problems.append(f"{where}: {len(images)} images in one cell (one figure per cell)")
        plot_only = not any(_is_reader_text(o) for o in cell["outputs"])
        if plot_only and not FOLDED & set(cell["metadata"].get("tags", [])):
            problems.append(f"{where}: a plot-only cell without the hide-input tag")
    return problems


def figure_names(notebook: dict) -> list[str]:
    return [c["metadata"]["mystnb"]["figure"]["name"] for c in notebook["cells"]
            if c["metadata"].get("mystnb", {}).get("figure", {}).get("name")]


def test_figures_are_numbered_captioned_referenced_and_folded(chapter) -> None:
    problems = figure_problems(json.loads(chapter.notebook.read_text()))
    assert not problems, "\n".join(problems)


def test_figure_names_are_unique_across_the_book() -> None:
    names = [n for c in CHAPTERS for n in figure_names(json.loads(c.notebook.read_text()))]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)


def _synthetic(cells: list[dict]) -> dict:
    return {"cells": cells, "metadata": {}}


def _md(text: str) -> dict:
    return {"cell_type": "markdown", "metadata": {}, "source": text}


def _code(outputs: list[dict], tags=(), figure: dict | None = None, text="plot()") -> dict:
    metadata: dict = {"tags": list(tags)}
    if figure is not None:
        metadata["mystnb"] = {"figure": figure}
    return {"cell_type": "code", "metadata": metadata, "source": text, "outputs": outputs,
            "execution_count": 1}


PNG = {"output_type": "display_data", "data": {"image/png": "iVBOR", "text/plain": "<Figure>"}}
PRINTED = {"output_type": "stream", "name": "stdout", "text": "risk 0.12\n"}
WARNING = {"output_type": "stream", "name": "stderr", "text": "UserWarning: ...\n"}
FIG = {"caption": "Risk against n.", "name": "fig-x-risk"}


@pytest.mark.parametrize("cells, expected", [
    ([_md("See {numref}`fig-x-risk`."), _code([PNG], ["hide-input"], FIG)], []),
    ([_md("{numref}`Figure %s <fig-x-risk>`"), _code([PNG, WARNING], ["hide-input"], FIG)], []),
    ([_md("See {numref}`fig-x-risk`."), _code([PRINTED, PNG], [], FIG)], []),  # computes
    ([_md("no reference"), _code([PRINTED])], []),  # no image, nothing to check
    ([_md("See the plot."), _code([PNG], ["hide-input"])], ["without a mystnb.figure"]),
    ([_md("x"), _code([PNG], ["hide-input"], {"name": "fig-x-risk"})],
     ["without a mystnb.figure"]),
    ([_md("See Figure 1."), _code([PNG], ["hide-input"], FIG)], ["never referenced"]),
    ([_md("{numref}`fig-x-other`"), _code([PNG], ["hide-input"], FIG)], ["never referenced"]),
    ([_md("{numref}`fig-x-risk`"), _code([PNG], [], FIG)], ["without the hide-input"]),
    ([_md("{numref}`fig-x-risk`"), _code([PNG, WARNING], [], FIG)], ["without the hide-input"]),
    ([_md("{numref}`fig-x-risk`"), _code([PNG, PNG], ["hide-input"], FIG)], ["2 images"]),
], ids=["good", "titled-ref-and-warning", "computing-cell", "no-image", "no-caption",
        "no-caption-text", "no-reference", "other-reference", "not-folded",
        "warning-is-not-text", "two-images"])
def test_figure_convention_checker(cells, expected) -> None:
    problems = figure_problems(_synthetic(cells))
    assert len(problems) == len(expected), problems
    for problem, fragment in zip(problems, expected, strict=True):
        assert fragment in problem
