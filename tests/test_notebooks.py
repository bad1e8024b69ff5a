"""Every chapter: one parameters cell, stored outputs with execution counts, source in sync."""

from __future__ import annotations

import json
import re

import jupytext
import pytest

from multisource.chapters import available_chapters
from multisource.paths import BOOK_DIR
from multisource.status import status_table

CHAPTERS = available_chapters()
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
    notebook = json.loads(chapter.notebook.read_text())
    tagged = [c for c in code_cells(notebook) if "parameters" in c["metadata"].get("tags", [])]
    assert len(tagged) == 1
    text = source(tagged[0])
    assert re.search(r'^profile = "book"', text, re.M)
    assert re.search(r'^device = "auto"', text, re.M)
    assert re.search(r"^seed = \d+", text, re.M)


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
