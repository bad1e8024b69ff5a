"""Chapters 1-3 (the theory): glued numbers resolve, citations exist, claims are asserted."""

from __future__ import annotations

import json
import re

import pytest
from myst_nb.core.variables import format_plain_text

from multisource.common.paths import BOOK_DIR, NOTEBOOKS_DIR

THEORY = ("01_formulation", "02_theorem_3_2", "03_bracketing_numbers")
ALLOWED_CITES = {"wang2025multisource", "vandegeer2000", "ge2024pretraining"}
GLUE_REF = re.compile(r"\{glue:text\}`([^`]+)`")
CITE_REF = re.compile(r"\{cite\}`([^`]+)`")


def _glued_values(stem: str) -> dict[str, str]:
    notebook = json.loads((NOTEBOOKS_DIR / f"{stem}.ipynb").read_text())
    values: dict[str, str] = {}
    for cell in notebook["cells"]:
        for output in cell.get("outputs", []):
            record = output.get("metadata", {}).get("scrapbook")
            if record:
                values[record["name"]] = output["data"][record["mime_prefix"] + "text/plain"]
    return values


@pytest.fixture(params=THEORY)
def stem(request) -> str:
    if not (NOTEBOOKS_DIR / f"{request.param}.ipynb").exists():
        pytest.skip(f"run `multisource execute {request.param}`")
    return request.param


def test_every_glued_reference_resolves_and_formats(stem: str) -> None:
    text = (NOTEBOOKS_DIR / f"{stem}.md").read_text()
    values = _glued_values(stem)
    refs = GLUE_REF.findall(text)
    assert refs, "prose numbers must be glued"
    for ref in refs:
        name, _, spec = ref.partition(":")
        assert name in values, f"{name} is referenced in the prose but never glued"
        formatted = format_plain_text(values[name], spec)
        assert "np." not in formatted and formatted.strip(), (name, formatted)


def test_citations_use_known_keys(stem: str) -> None:
    text = (NOTEBOOKS_DIR / f"{stem}.md").read_text()
    keys = {k.strip() for group in CITE_REF.findall(text) for k in group.split(",")}
    assert keys <= ALLOWED_CITES, keys - ALLOWED_CITES
    bib = (BOOK_DIR / "references.bib").read_text()
    for key in keys:
        assert f"{{{key}," in bib, f"{key} missing from book/references.bib"


def test_claims_are_asserted_and_key_numbers_checked(stem: str) -> None:
    notebook = json.loads((NOTEBOOKS_DIR / f"{stem}.ipynb").read_text())
    sources = ["".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "code"]
    assert sum("assert " in s for s in sources) >= 2
    checked = [s for s in sources if s.lstrip().startswith("# NBVAL_CHECK_OUTPUT")]
    assert 2 <= len(checked) <= 3


def test_tables_have_a_fixed_id() -> None:
    import pandas as pd

    from multisource.readings.tables import table_html

    frame = pd.DataFrame({"a": [1.0, 2.0]})
    first = table_html(frame.style.format(precision=2), "demo")
    assert first == table_html(frame.style.format(precision=2), "demo")
    assert 'id="T_demo"' in first
