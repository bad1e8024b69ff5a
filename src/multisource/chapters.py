"""The book's chapters: their notebooks, and executing them with papermill.

A chapter's source is `notebooks/<stem>.md` (a MyST-markdown notebook). Executing it converts
the source to `<stem>.ipynb` with jupytext, runs that with papermill (cwd `notebooks/`), strips
papermill's per-cell timing metadata (outputs and execution counts stay: nbval needs them),
and records the profile, device and wall time in the notebook's `multisource` metadata.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from multisource.paths import NOTEBOOKS_DIR
from multisource.provenance import atomic_write_text, git_commit
from multisource.validation import InputError, check_choice


@dataclass(frozen=True)
class Chapter:
    """One chapter of the book."""

    stem: str
    title: str
    shows: str

    @property
    def source(self) -> Path:
        """The MyST-markdown notebook that is edited and reviewed."""
        return NOTEBOOKS_DIR / f"{self.stem}.md"

    @property
    def notebook(self) -> Path:
        """The executed notebook with stored outputs (what nbval and the book use)."""
        return NOTEBOOKS_DIR / f"{self.stem}.ipynb"


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


def notebook_record(chapter: Chapter) -> dict[str, Any] | None:
    """The `multisource` metadata stored by the last execution, or None if never executed."""
    if not chapter.notebook.exists():
        return None
    try:
        metadata = json.loads(chapter.notebook.read_text())["metadata"]
    except (OSError, json.JSONDecodeError, KeyError):
        raise InputError(f"notebook {chapter.notebook.name} is unreadable") from None
    return metadata.get("multisource")


def strip_execution_timing(notebook: dict[str, Any]) -> dict[str, Any]:
    """Drop papermill's and Jupyter's per-run timing fields; keep outputs and counts."""
    notebook.get("metadata", {}).pop("papermill", None)
    for cell in notebook.get("cells", []):
        cell.get("metadata", {}).pop("papermill", None)
        cell.get("metadata", {}).pop("execution", None)
    return notebook


def execute_chapter(chapter: Chapter, *, profile: str = "book", device: str = "auto",
                    parameters: dict[str, Any] | None = None, log_output: bool = False) -> float:
    """Convert, execute with papermill, strip timing, write atomically; return wall seconds."""
    import jupytext
    import nbformat
    import papermill

    from multisource.experiments import PROFILES

    check_choice("profile", profile, PROFILES)
    check_choice("device", device, ("auto", "cpu", "cuda"))
    if not chapter.source.exists():
        raise InputError(f"chapter source {chapter.source.name} does not exist")
    notebook = jupytext.read(chapter.source)
    notebook.metadata.pop("jupytext", None)
    staged = chapter.notebook.with_name(f".{chapter.stem}.staged.ipynb")
    executed = chapter.notebook.with_name(f".{chapter.stem}.executed.ipynb")
    nbformat.write(notebook, staged)
    started = time.perf_counter()
    try:
        papermill.execute_notebook(
            str(staged), str(executed), parameters={"profile": profile, "device": device,
                                                    **(parameters or {})},
            cwd=str(NOTEBOOKS_DIR), kernel_name="python3", log_output=log_output,
            progress_bar=False)
        wall = time.perf_counter() - started
        result = strip_execution_timing(json.loads(executed.read_text()))
    finally:
        staged.unlink(missing_ok=True)
        executed.unlink(missing_ok=True)
    result["metadata"]["multisource"] = {
        "profile": profile, "device": _resolved_device_name(device),
        "wall_time_s": round(wall, 1), "source_commit": git_commit(),
    }
    atomic_write_text(chapter.notebook, json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    return wall


def _resolved_device_name(device: str) -> str:
    from multisource.devices import describe_device, resolve_device

    return describe_device(resolve_device(device))
