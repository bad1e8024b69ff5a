"""Shared fixtures."""

from __future__ import annotations

import pandas as pd
import pytest

from multisource.paths import reference_path


@pytest.fixture(scope="session")
def published_figure1() -> pd.DataFrame:
    """The 15 published rows of Figure 1 (official repository's CSVs)."""
    return pd.read_csv(reference_path("paper_figure1_gaussian.csv"))
