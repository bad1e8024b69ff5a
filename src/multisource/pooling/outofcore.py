"""`advise` on a Parquet file larger than memory: three streaming passes, batch by batch.

For the Gaussian families the decision rule needs, per (fold, source) cell, the count, the sum
of z = (u, u^2) and the scatter sum of z (u the standardised features): a row's held-out
log-likelihood under a diagonal Gaussian fit is c + w'z with (c, w) fixed within a cell
(`cellsums`). The file is read with pyarrow one batch of rows at a time, never whole:

1. per source: count, mean and sum of squared deviations of every column (merged batch by
   batch with Chan's update), giving the centring and the pooled within-source scale that
   `advise.standardise` uses;
2. per (fold, source) cell: count, mean and scatter of z, merged the same way. Folds are
   stratified by source (`streamfolds`: each source split exactly, at random);
3. after the fits, every compared pair's paired held-out differences, row by row: their sum
   of absolute values, the largest, and the share the top 1 % carry (kept as a running top
   set of ceil(n / 100) values), for `advise`'s check that a few samples dominate.

The fits, scores, decision, per-source answers and the checks from moments (a column constant
within a source in a training fold, the variance floor) are `sufficient.conclude`, as for data
in memory. Memory: a few copies of one batch, the running top set (8 bytes a value: 8 MB per
compared pair at 10^8 rows) and pyarrow's buffers of one row group.

The folds differ from `advise`'s (a different random split), so on a file that fits in memory
the two answers are those of two fold draws, equal in law, not equal.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from multisource.common.validation import InputError, check_float, check_int
from multisource.pooling.advise import DEFAULT_WEIGHTS, Advice
from multisource.pooling.cellsums import CellSums, Quadratic
from multisource.pooling.families import get_family
from multisource.pooling.fastread import MISSING, SOURCE_COLUMN, numpy_view
from multisource.pooling.streamfolds import StratifiedFolds
from multisource.pooling.sufficient import Spread, conclude

BATCH_ROWS = 1 << 18
# pyarrow's defaults pre-buffer and decode row groups ahead on threads: 3x the memory
READ_OPTIONS = {"pre_buffer": False, "buffer_size": 1 << 20}


class ParquetRows:
    """A Parquet file of labelled samples, read batch by batch: source codes and features."""

    def __init__(self, path: str | Path, batch_rows: int = BATCH_ROWS) -> None:
        import pyarrow.parquet as pq

        self.path = Path(path)
        self.label = self.path.name or str(path)
        if not self.path.is_file():
            raise InputError(f"cannot read {self.label}: no such file")
        self.batch_rows = check_int("batch_rows", batch_rows, minimum=1)
        try:
            self.file = pq.ParquetFile(self.path, **READ_OPTIONS)
        except Exception as error:   # pyarrow raises several types for unreadable files
            reason = " ".join(str(error).split())[:200]
            raise InputError(f"cannot read {self.label} as Parquet: {reason}") from None
        names = list(self.file.schema_arrow.names)
        if SOURCE_COLUMN not in names:
            raise InputError(f"{self.label} has no '{SOURCE_COLUMN}' column")
        self.features = tuple(c for c in names if c != SOURCE_COLUMN)
        if not self.features:
            raise InputError(f"{self.label} has no feature columns besides 'source'")
        self.sources: tuple[str, ...] = ()

    def _labels(self, column: Any) -> tuple[list[str], np.ndarray]:
        """The batch's distinct labels (trimmed) and each row's index into them."""
        import pyarrow as pa
        import pyarrow.compute as pc

        if not pa.types.is_dictionary(column.type):
            column = pc.dictionary_encode(column.cast(pa.string()))
        if column.null_count or column.dictionary.null_count:
            raise InputError(f"{self.label}: the source column has an empty label")
        labels = [str(v).strip() for v in column.dictionary.to_pylist()]
        if any(v.lower() in MISSING for v in labels):
            raise InputError(f"{self.label}: the source column has an empty label")
        indices = column.indices
        return labels, numpy_view(indices, np.dtype(indices.type.to_pandas_dtype()))

    def _features(self, batch: Any) -> np.ndarray:
        """(p, rows) float64 features of a batch (a column a row), checked."""
        import pyarrow as pa

        out = np.empty((len(self.features), batch.num_rows))
        for j, name in enumerate(self.features):
            column = batch.column(name)
            if not (pa.types.is_floating(column.type) or pa.types.is_integer(column.type)):
                raise InputError(f"{self.label}: column {name!r} is not numeric ({column.type})")
            if column.null_count:
                raise InputError(f"{self.label}: column {name!r} has missing values")
            if column.type != pa.float64():
                column = column.cast(pa.float64())
            out[j] = numpy_view(column, np.float64)
        if not np.isfinite(out).all():
            raise InputError(f"{self.label}: a feature is not finite")
        return out

    def batches(self) -> Iterator[tuple[list[str], np.ndarray, np.ndarray]]:
        """(labels, each row's index into them, features) batch by batch in file order."""
        columns = [SOURCE_COLUMN, *self.features]
        for batch in self.file.iter_batches(batch_size=self.batch_rows, columns=columns,
                                             use_threads=False):
            if batch.num_rows:
                labels, index = self._labels(batch.column(SOURCE_COLUMN))
                yield labels, index, self._features(batch)

    def coded(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(source codes into `sources`, features) batch by batch; after `per_source`."""
        code = {name: k for k, name in enumerate(self.sources)}
        for labels, index, x in self.batches():
            yield np.array([code[v] for v in labels], np.int64)[index], x


@dataclass
class Running:
    """Count, mean and scatter (or, `diagonal`, sums of squared deviations) per group,
    merged batch by batch (Chan, Golub and LeVeque's pairwise update)."""

    n: np.ndarray       # (G,)
    mean: np.ndarray    # (G, d)
    spread: np.ndarray  # (G, d, d), or (G, d) when diagonal

    @classmethod
    def empty(cls, groups: int, dims: int, diagonal: bool) -> Running:
        shape = (groups, dims) if diagonal else (groups, dims, dims)
        return cls(np.zeros(groups), np.zeros((groups, dims)), np.zeros(shape))

    def grow(self, groups: int) -> None:
        """Room for `groups` groups (new ones empty)."""
        extra = groups - self.n.size
        if extra > 0:
            self.n = np.concatenate([self.n, np.zeros(extra)])
            self.mean = np.concatenate([self.mean, np.zeros((extra, *self.mean.shape[1:]))])
            self.spread = np.concatenate([self.spread,
                                          np.zeros((extra, *self.spread.shape[1:]))])

    def add(self, group: np.ndarray, values: np.ndarray) -> None:
        """Merge the rows of `values` (d, rows: a variable a row) belonging to groups
        `group` (rows,)."""
        G = self.n.size
        n = np.bincount(group, minlength=G).astype(float)
        mean = np.stack([np.bincount(group, v, G) for v in values], axis=1)
        mean /= np.maximum(n, 1.0)[:, None]
        diagonal = self.spread.ndim == 2
        if diagonal:
            centred = values - mean.T[:, group]
            spread = np.stack([np.bincount(group, c * c, G) for c in centred], axis=1)
        else:
            order = np.argsort(group.astype(np.min_scalar_type(G)), kind="stable")
            bounds = np.concatenate([[0], np.cumsum(n.astype(np.int64))])
            spread = np.zeros_like(self.spread)
            grouped = values[:, order]
            for g in np.flatnonzero(n):
                block = grouped[:, bounds[g]:bounds[g + 1]] - mean[g][:, None]
                spread[g] = block @ block.T
        total = self.n + n
        delta = mean - self.mean
        weight = np.where(total > 0, self.n * n / np.maximum(total, 1.0), 0.0)
        if diagonal:
            self.spread += spread + weight[:, None] * delta**2
        else:
            self.spread += spread + weight[:, None, None] * delta[:, :, None] * delta[:, None, :]
        self.mean += delta * np.where(total > 0, n / np.maximum(total, 1.0), 0.0)[:, None]
        self.n = total


@dataclass(frozen=True)
class Standardising:
    """u = (x - centre) / scale: the overall mean, the pooled within-source standard deviation
    (the overall one where a column is constant within every source; 1 where constant)."""

    centre: np.ndarray
    scale: np.ndarray

    @classmethod
    def from_sources(cls, per_source: Running) -> Standardising:
        n, mean, squares = per_source.n, per_source.mean, per_source.spread
        N, K = n.sum(), n.size
        centre = (n[:, None] * mean).sum(axis=0) / N
        within = squares.sum(axis=0) / max(N - K, 1.0)
        overall = (squares.sum(axis=0) + (n[:, None] * (mean - centre) ** 2).sum(axis=0)) / N
        tiny = 1e-12 * np.maximum(overall + centre**2, 1e-300)
        scale = np.sqrt(np.where(within > tiny, within, np.where(overall > tiny, overall, 1.0)))
        return cls(centre, scale)

    def z(self, x: np.ndarray) -> np.ndarray:
        """(2p, rows): the standardised features (x is (p, rows)) and their squares."""
        p = x.shape[0]
        z = np.empty((2 * p, x.shape[1]))
        np.subtract(x, self.centre[:, None], out=z[:p])
        z[:p] /= self.scale[:, None]
        np.multiply(z[:p], z[:p], out=z[p:])
        return z


def per_source(rows: ParquetRows) -> Running:
    """Pass 1: per-source count, mean and squared deviations; sets `rows.sources` (sorted)."""
    found: dict[str, int] = {}
    running = Running.empty(0, len(rows.features), diagonal=True)
    for labels, index, x in rows.batches():
        for v in labels:
            found.setdefault(v, len(found))
        running.grow(len(found))
        running.add(np.array([found[v] for v in labels], np.int64)[index], x)
    names = sorted(found)
    if len(names) < 2:
        raise InputError(f"{rows.label} holds fewer than 2 sources")
    order = np.array([found[v] for v in names])
    rows.sources = tuple(names)
    return Running(running.n[order], running.mean[order], running.spread[order])


def fold_cells(rows: ParquetRows, scaling: Standardising, folds: int, seed: int) -> CellSums:
    """Pass 2: count, sum and scatter of z per (fold, source) cell."""
    K, p = len(rows.sources), len(rows.features)
    assign = StratifiedFolds(K, folds, seed)
    running = Running.empty(folds * K, 2 * p, diagonal=False)
    for codes, x in rows.coded():
        running.add(assign.assign(codes) * K + codes, scaling.z(x))
    n = running.n.reshape(folds, K)
    return CellSums(n, (running.n[:, None] * running.mean).reshape(folds, K, 2 * p),
                    running.spread.reshape(folds, K, 2 * p, 2 * p))


def row_spreads(rows: ParquetRows, scaling: Standardising, folds: int, seed: int,
                differences: list[Quadratic], n: int) -> list[Spread]:
    """Pass 3: `sufficient.Spread` of every paired difference c + w'z over the n rows, row by
    row; the top ceil(n / 100) values are kept as they stream (what can be in the top 1 % of
    all rows is in the top set of the rows seen so far)."""
    K = len(rows.sources)
    top = max(1, int(np.ceil(0.01 * n)))
    assign = StratifiedFolds(K, folds, seed)
    c = [d.c.reshape(-1) for d in differences]
    w = [d.w.reshape(-1, d.w.shape[-1]) for d in differences]
    total = np.zeros(len(differences))
    largest = np.full(len(differences), -1.0)
    first = np.full(len(differences), -1)
    source = np.full(len(differences), -1)
    kept = [np.zeros(0) for _ in differences]
    offset = 0
    for codes, x in rows.coded():
        cell = assign.assign(codes) * K + codes
        z = scaling.z(x)
        for k, (ck, wk) in enumerate(zip(c, w, strict=True)):
            size = ck[cell]
            for a, za in enumerate(z):
                size += wk[:, a][cell] * za
            np.abs(size, out=size)
            total[k] += size.sum()
            i = int(np.argmax(size))           # the first row holding the batch's largest
            if size[i] > largest[k]:
                largest[k], first[k], source[k] = size[i], offset + i, codes[i]
            if kept[k].size >= top:
                size = size[size > kept[k].min()]
            both = np.concatenate([kept[k], size])
            kept[k] = np.partition(both, both.size - top)[-top:] if both.size > top else both
        offset += codes.size
    return [Spread(float(total[k]), float(largest[k]), int(first[k]) if top == 1 else -1,
                   int(source[k]) if top == 1 else -1,
                   float(kept[k].sum() / total[k]) if total[k] > 0 else 0.0)
            for k in range(len(differences))]


def advise_parquet(path: str | Path, family: str = "gaussian", *, folds: int = 5,
                   seed: int = 0, weights: tuple[float, ...] = DEFAULT_WEIGHTS,
                   level: float = 0.95, batch_rows: int = BATCH_ROWS) -> Advice:
    """`advise` on a Parquet file of any size (three streaming passes; memory bounded by a few
    batches of `batch_rows` rows and the top 1 % of the paired differences)."""
    fam = get_family(family) if family in ("gaussian", "gaussian-unit") else None
    if fam is None:
        raise InputError(f"family must be gaussian or gaussian-unit out of core; got {family!r}")
    folds = check_int("folds", folds, minimum=2, maximum=20)
    seed = check_int("seed", seed, minimum=0)
    level = check_float("level", level, minimum=0.5, maximum=0.999)
    grid = np.asarray(sorted({float(check_float("weight", w, minimum=0.0, maximum=1.0))
                              for w in (*weights, 0.0, 1.0)}))
    rows = ParquetRows(path, batch_rows)
    sources = per_source(rows)
    for name, count in zip(rows.sources, sources.n, strict=True):
        if count < 2 * folds:
            raise InputError(f"source {name!r} has {int(count)} samples; advise needs at least "
                             f"{2 * folds} per source (2 x folds)")
    scaling = Standardising.from_sources(sources)
    sums = fold_cells(rows, scaling, folds, seed)
    specific = np.zeros(len(rows.features), bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        return conclude(fam, sums.moments(), sums, specific, grid, level, rows.sources,
                        rows.features,
                        lambda differences: row_spreads(rows, scaling, folds, seed,
                                                        differences, int(sources.n.sum())))
