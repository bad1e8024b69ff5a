"""Reading a CSV of samples labelled by source, with one-line errors naming the problem.

The file has a header row, a column `source` (any non-empty label) and one or more numeric
feature columns. Lines are numbered as in the file (the header is line 1).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from multisource.validation import InputError

SOURCE_COLUMN = "source"
MISSING = {"", "nan", "na", "n/a", "null", "none"}


@dataclass(frozen=True)
class LabelledSamples:
    """Features (n, p), integer source labels, the source names and the feature columns."""

    x: np.ndarray
    y: np.ndarray
    sources: tuple[str, ...]
    columns: tuple[str, ...]


def read_labelled_csv(path: str | Path) -> LabelledSamples:
    """Read and check `path`; every problem is an InputError of one line."""
    path = Path(path)
    name = path.name
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False,
                            skipinitialspace=True)
    except FileNotFoundError:
        raise InputError(f"cannot read {name}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"cannot read {name}: it is a directory") from None
    except PermissionError:
        raise InputError(f"cannot read {name}: permission denied") from None
    except pd.errors.EmptyDataError:
        raise InputError(f"cannot read {name}: the file is empty") from None
    except UnicodeDecodeError:
        raise InputError(f"cannot read {name}: not a UTF-8 text file") from None
    except (pd.errors.ParserError, csv.Error, OSError, ValueError) as error:
        reason = " ".join(str(error).split())
        raise InputError(f"cannot read {name} as CSV: {reason}") from None

    frame.columns = [str(c).strip() for c in frame.columns]
    if SOURCE_COLUMN not in frame.columns:
        shown = ", ".join(frame.columns[:8]) + (", ..." if len(frame.columns) > 8 else "")
        raise InputError(f"{name} has no '{SOURCE_COLUMN}' column (columns: {shown})")
    if list(frame.columns).count(SOURCE_COLUMN) > 1:
        raise InputError(f"{name} has more than one '{SOURCE_COLUMN}' column")
    features = [c for c in frame.columns if c != SOURCE_COLUMN]
    if not features:
        raise InputError(f"{name} has no feature columns besides '{SOURCE_COLUMN}'")
    if len(frame) == 0:
        raise InputError(f"{name} has a header but no samples")

    labels = frame[SOURCE_COLUMN].str.strip()
    empty = np.flatnonzero(labels.str.lower().isin(MISSING).to_numpy())
    if empty.size:
        raise InputError(f"{name}: line {int(empty[0]) + 2} has an empty source label")
    sources = tuple(sorted(labels.unique()))
    if len(sources) < 2:
        raise InputError(f"{name} holds a single source ({sources[0]!r}); pooling against "
                         "separate models needs at least 2 sources")

    x = np.empty((len(frame), len(features)))
    for j, column in enumerate(features):
        text = frame[column].str.strip()
        values = pd.to_numeric(text, errors="coerce").to_numpy(float)
        missing = text.str.lower().isin(MISSING).to_numpy()
        if missing.any():
            line = int(np.flatnonzero(missing)[0]) + 2
            raise InputError(f"{name}: column {column!r} has a missing value (NaN) on line {line}")
        bad = np.flatnonzero(np.isnan(values))
        if bad.size:
            raise InputError(f"{name}: column {column!r} is not numeric "
                             f"(line {int(bad[0]) + 2} holds {text.iloc[bad[0]]!r})")
        infinite = np.flatnonzero(~np.isfinite(values))
        if infinite.size:
            raise InputError(f"{name}: column {column!r} has a non-finite value on line "
                             f"{int(infinite[0]) + 2}")
        x[:, j] = values
    index = {s: i for i, s in enumerate(sources)}
    y = labels.map(index).to_numpy(np.int64)
    return LabelledSamples(x, y, sources, tuple(features))
