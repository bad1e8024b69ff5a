"""Reading a CSV of samples labelled by source, with one-line errors naming the problem.

The file has a header row, a column `source` (any non-empty label) and one or more numeric
feature columns. Lines are numbered as in the file (the header is line 1); blank lines are
skipped. Every row must have as many fields as the header, and column names must be unique
(a reader that guessed an index column or renamed a duplicate would read the wrong column).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from multisource.common.validation import InputError

SOURCE_COLUMN = "source"
MISSING = {"", "nan", "na", "n/a", "null", "none"}


@dataclass(frozen=True)
class LabelledSamples:
    """Feature columns (p arrays of n numbers), integer source labels, the source names and
    the feature columns' names; `x` stacks the columns (n, p)."""

    values: tuple[np.ndarray, ...]
    y: np.ndarray
    sources: tuple[str, ...]
    columns: tuple[str, ...]

    @cached_property
    def x(self) -> np.ndarray:
        """The features as one C-ordered (n, p) array (made when first asked for)."""
        return np.column_stack(self.values)


def display_name(path: Path) -> str:
    """How errors name the input: its file name, or the path as given where the name alone
    would not say what was read (".", a directory, a device such as /dev/null)."""
    if path.name in ("", ".", "..") or (path.exists() and not path.is_file()):
        return str(path)
    return path.name


def _read_rows(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header and (line number, fields) of every non-blank row; ragged rows are errors.

    A record's line number is the line it starts on (a quoted field may span lines)."""
    name = display_name(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle, skipinitialspace=True)
            header: list[str] | None = None
            rows: list[tuple[int, list[str]]] = []
            start = 1
            for fields in reader:
                line, start = start, reader.line_num + 1
                if len(fields) <= 1 and not "".join(fields).strip():
                    continue   # a blank line
                if header is None:
                    header = [f.strip() for f in fields]
                    continue
                if len(fields) != len(header):
                    raise InputError(f"{name}: line {line} has {len(fields)} "
                                     f"fields, the header (line 1) has {len(header)}")
                rows.append((line, fields))
    except FileNotFoundError:
        raise InputError(f"cannot read {name}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"cannot read {name}: it is a directory") from None
    except PermissionError:
        raise InputError(f"cannot read {name}: permission denied") from None
    except UnicodeDecodeError:
        raise InputError(f"cannot read {name}: not a UTF-8 text file") from None
    except (csv.Error, OSError) as error:
        reason = " ".join(str(error).split())
        raise InputError(f"cannot read {name} as CSV: {reason}") from None
    if header is None:
        raise InputError(f"cannot read {name}: the file is empty (no header line)")
    return header, rows


def read_labelled_csv(path: str | Path) -> LabelledSamples:
    """Read and check `path` (CSV, or Parquet by its .parquet suffix); every problem is an
    InputError of one line. Well-formed files are parsed by pyarrow; a file it does not take
    as clean numbers is read again line by line to name the problem and its line."""
    from multisource.pooling.fastread import read_fast

    path = Path(path)
    fast = read_fast(path)
    if fast is not None:
        return LabelledSamples(*fast)
    return read_checked(path)


def read_checked(path: Path) -> LabelledSamples:
    """The line-by-line reader that names the first problem (and its line)."""
    name = display_name(path)
    header, rows = _read_rows(path)
    for j, column in enumerate(header):
        if not column:
            raise InputError(f"{name}: column {j + 1} of the header has no name")
        if column in header[:j]:
            raise InputError(f"{name}: column name {column!r} appears more than once "
                             f"(columns {header.index(column) + 1} and {j + 1})")
    if SOURCE_COLUMN not in header:
        shown = ", ".join(header[:8]) + (", ..." if len(header) > 8 else "")
        raise InputError(f"{name} has no '{SOURCE_COLUMN}' column (columns: {shown})")
    features = [c for c in header if c != SOURCE_COLUMN]
    if not features:
        raise InputError(f"{name} has no feature columns besides '{SOURCE_COLUMN}'")
    if not rows:
        raise InputError(f"{name} has a header but no samples")

    import pandas as pd  # here: clean files never need it (`fastread`)

    lines = np.array([line for line, _ in rows])
    frame = pd.DataFrame([fields for _, fields in rows], columns=header, dtype=str)
    labels = frame[SOURCE_COLUMN].str.strip()
    empty = np.flatnonzero(labels.str.lower().isin(MISSING).to_numpy())
    if empty.size:
        raise InputError(f"{name}: line {int(lines[empty[0]])} has an empty source label")
    sources = tuple(sorted(labels.unique()))
    if len(sources) < 2:
        raise InputError(f"{name} holds a single source ({sources[0]!r}); pooling against "
                         "separate models needs at least 2 sources")

    values = []
    for column in features:
        text = frame[column].str.strip()
        numbers = pd.to_numeric(text, errors="coerce").to_numpy(float)
        missing = text.str.lower().isin(MISSING).to_numpy()
        if missing.any():
            line = int(lines[np.flatnonzero(missing)[0]])
            raise InputError(f"{name}: column {column!r} has a missing value (NaN) on line {line}")
        bad = np.flatnonzero(np.isnan(numbers))
        if bad.size:
            raise InputError(f"{name}: column {column!r} is not numeric "
                             f"(line {int(lines[bad[0]])} holds {text.iloc[bad[0]]!r})")
        infinite = np.flatnonzero(~np.isfinite(numbers))
        if infinite.size:
            raise InputError(f"{name}: column {column!r} has a non-finite value on line "
                             f"{int(lines[infinite[0]])}")
        values.append(numbers)
    index = {s: i for i, s in enumerate(sources)}
    y = labels.map(index).to_numpy(np.int64)
    return LabelledSamples(tuple(values), y, sources, tuple(features))
