"""Repository-anchored paths, so nothing depends on the working directory."""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR: Path = Path(__file__).resolve().parents[1]
REPO_ROOT: Path = PACKAGE_DIR.parents[1]
DATA_DIR: Path = REPO_ROOT / "data"
REFERENCE_DIR: Path = DATA_DIR / "reference"
RESULTS_DIR: Path = DATA_DIR / "results"
NOTEBOOKS_DIR: Path = REPO_ROOT / "notebooks"
BOOK_DIR: Path = REPO_ROOT / "book"
BUILD_DIR: Path = REPO_ROOT / "_build"


def results_path(experiment: str, profile: str, suffix: str = ".csv") -> Path:
    """Where the results table (or its `.json` provenance) of one experiment run lives."""
    return RESULTS_DIR / experiment / f"{profile}{suffix}"


def reference_path(name: str) -> Path:
    """A published-number file shipped under data/reference/."""
    return REFERENCE_DIR / name
