"""Fast reading of labelled samples with pyarrow (CSV and Parquet).

`read_fast` returns the samples (feature columns, y, source names, feature names) when the
file is clean
(unique non-empty header names, a `source` column of non-empty labels, numeric finite
features, at least 2 sources) and None otherwise, so that `csvdata.read_checked` reads it
again line by line and names the problem.
Parquet files have no line-by-line fallback: their problems are reported here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from multisource.common.validation import InputError

SOURCE_COLUMN = "source"
MISSING = {"", "nan", "na", "n/a", "null", "none"}


def numpy_view(array: object, dtype: type) -> np.ndarray:
    """A null-free pyarrow array of a fixed-width type as a NumPy view of its data buffer
    (pyarrow's own to_numpy imports pandas, half a second)."""
    data = array.buffers()[1]   # type: ignore[attr-defined]
    return np.frombuffer(data, dtype, count=len(array), offset=array.offset  # type: ignore
                         * np.dtype(dtype).itemsize)


Columns = tuple[tuple[np.ndarray, ...], np.ndarray, tuple[str, ...], tuple[str, ...]]


def _labels(column: object) -> tuple[np.ndarray, list[str]] | None:
    """Codes into the sorted, whitespace-trimmed label names of a dictionary (or string)
    column, chunk by chunk; None if a label is missing or empty."""
    import pyarrow as pa

    if not pa.types.is_dictionary(column.type):   # type: ignore[attr-defined]
        import pyarrow.compute as pc  # Parquet strings only: CSV labels come as a dictionary

        column = pc.dictionary_encode(column.cast(pa.string()))   # type: ignore[attr-defined]
    chunks = []
    for chunk in column.chunks:   # type: ignore[attr-defined]
        if chunk.null_count or chunk.indices.null_count or chunk.dictionary.null_count:
            return None
        chunks.append(([str(v).strip() for v in chunk.dictionary.to_pylist()],
                       numpy_view(chunk.indices, np.dtype(chunk.indices.type.to_pandas_dtype()))))
    names = sorted({v for local, _ in chunks for v in local})
    if any(v.lower() in MISSING for v in names):
        return None
    index = {v: i for i, v in enumerate(names)}
    codes = np.concatenate([np.array([index[v] for v in local], np.int64)[ids]
                            for local, ids in chunks]) if chunks else np.zeros(0, np.int64)
    return codes, names


def _samples(table: object, name: str, strict: bool) -> Columns | None:
    """(feature columns, y, sources, feature names) of a pyarrow table, or None (strict: an
    InputError instead)."""
    import pyarrow as pa

    def fail(message: str) -> None:
        if strict:
            raise InputError(f"{name}: {message}")

    header = list(table.column_names)   # type: ignore[attr-defined]
    if (len(set(header)) != len(header) or any(not c or c != c.strip() for c in header)
            or SOURCE_COLUMN not in header or len(header) < 2
            or table.num_rows == 0):   # type: ignore[attr-defined]
        return fail("needs unique column names, a 'source' column, a feature column and "
                    "at least one row")
    features = [c for c in header if c != SOURCE_COLUMN]
    labels = _labels(table[SOURCE_COLUMN])   # type: ignore[index]
    if labels is None:
        return fail("the source column has an empty label")
    y, names = labels
    if len(names) < 2:
        return fail("holds a single source")
    values = []
    for column in features:
        data = table[column]   # type: ignore[index]
        if not (pa.types.is_floating(data.type) or pa.types.is_integer(data.type)):
            return fail(f"column {column!r} is not numeric ({data.type})")
        if data.null_count:
            return fail(f"column {column!r} has missing values")
        # (Array.cast imports pyarrow.compute: floats as they are)
        values.append(np.concatenate([
            numpy_view(chunk if chunk.type == pa.float64() else chunk.cast(pa.float64()),
                   np.float64) for chunk in data.chunks]))
    if not all(np.isfinite(v).all() for v in values):
        return fail("a feature is not finite")
    return tuple(values), y, tuple(names), tuple(features)


def read_fast(path: Path) -> Columns | None:
    """(feature columns, y, sources, feature names) of a clean CSV or Parquet file, else None
    (CSV) or an InputError (Parquet)."""
    if path.suffix.lower() in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        name = path.name or str(path)
        try:
            table = pq.read_table(path)
        except Exception as error:   # pyarrow raises several types for unreadable files
            reason = " ".join(str(error).split())[:200]
            raise InputError(f"cannot read {name} as Parquet: {reason}") from None
        return _samples(table, name, strict=True)
    if not path.is_file():
        return None
    import pyarrow as pa
    from pyarrow import csv

    try:
        table = csv.read_csv(path, convert_options=csv.ConvertOptions(
            column_types={SOURCE_COLUMN: pa.dictionary(pa.int32(), pa.string())},
            strings_can_be_null=False))
        return _samples(table, path.name, strict=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeDecodeError, OSError):
        return None
