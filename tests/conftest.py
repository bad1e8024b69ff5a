"""Shared fixtures."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from threadpoolctl import threadpool_limits

from multisource.common.paths import reference_path

# Small matrices everywhere: one BLAS thread, also when pytest is run without `make unit`
# (OpenBLAS threads spinning on a busy 2-core machine made a test 17x slower).
threadpool_limits(1)


@pytest.fixture(scope="session")
def published_figure1() -> pd.DataFrame:
    """The 15 published rows of Figure 1 (official repository's CSVs)."""
    return pd.read_csv(reference_path("paper_figure1_gaussian.csv"))


@pytest.fixture
def one_torch_thread():
    """Tiny tensors: one intra-op thread is much faster than several on a shared CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
