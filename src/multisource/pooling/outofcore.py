"""`advise` on a Parquet file larger than memory: per-(fold, source) sums computed by DuckDB.

For the Gaussian families everything the decision rule needs is in per-(fold, source) sums of
z = (u, u^2) and of z z' (moments of the standardised features u up to order four): the fits
(`families.Moments`), the inner choice of the partial weight, and the mean and variance of
every held-out log-likelihood and of every paired difference, since a row's log-likelihood
under a diagonal Gaussian fit is a quadratic c + a'u + b'u^2 with coefficients fixed within a
(fold, source) cell (the algebra is `cellsums`, shared with the in-memory `sufficient`).
DuckDB computes the sums in two streaming passes over the file (the
columns' centring and pooled within-source scale, then the sums of the standardised values),
never holding the rows. Folds are assigned by a multiplicative hash of the row number (not
shuffled within each source: a source's rows spread over the folds at random, equal sizes
only in expectation), reproducible in NumPy by `fold_of_rows`.

The rule is `advise`'s: the best mean held-out score among pooled, separate, partial (nested
weight) and shrunk, Student-t intervals of the paired differences at the Bonferroni-corrected
level, per-source pooled-minus-separate intervals. The checks that need the rows themselves
(a few samples dominating the differences, sensitivity to the variance floor) are not made
here; the result says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from multisource.common.validation import InputError, check_float, check_int
from multisource.pooling.advise import DEFAULT_WEIGHTS
from multisource.pooling.cellsums import CellSums, decide, score_moments
from multisource.pooling.crossover import MeanInterval
from multisource.pooling.families import get_family

HASH_MULTIPLIER = 2654435761   # Knuth's multiplicative hash (mod 2^32)
SOURCE_COLUMN = "source"


def fold_of_rows(rows: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Fold of each row number: ((row + seed) * 2654435761 mod 2^32) mod folds."""
    rows = np.asarray(rows, np.int64)
    return ((rows + seed) * HASH_MULTIPLIER % 2**32) % folds


def _connect(memory_limit: str, threads: int | None) -> Any:
    import duckdb

    con = duckdb.connect()
    con.execute(f"SET memory_limit = '{memory_limit}'")
    con.execute("SET preserve_insertion_order = false")
    con.execute("SET enable_progress_bar = false")   # stdout carries the answer
    if threads is not None:
        con.execute(f"SET threads = {int(threads)}")
    return con


def _columns(con: Any, path: str) -> list[str]:
    names = [row[0] for row in con.execute(
        "SELECT name FROM parquet_schema(?) WHERE num_children IS NULL", [path]).fetchall()]
    if SOURCE_COLUMN not in names:
        raise InputError(f"{Path(path).name} has no '{SOURCE_COLUMN}' column")
    features = [c for c in names if c != SOURCE_COLUMN]
    if not features:
        raise InputError(f"{Path(path).name} has no feature columns besides 'source'")
    return features


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def cell_sums(path: str | Path, folds: int = 5, seed: int = 0, memory_limit: str = "512MB",
              threads: int | None = None
              ) -> tuple[CellSums, tuple[str, ...], tuple[str, ...], np.ndarray, np.ndarray]:
    """Two streaming DuckDB passes: (cell sums, source names, feature columns, centre, scale).

    u = (x - centre) / scale with the column's overall mean and pooled within-source standard
    deviation (its overall one where it is constant within every source, 1 where constant)."""
    path = str(path)
    if not Path(path).is_file():
        raise InputError(f"cannot read {Path(path).name or path}: no such file")
    con = _connect(memory_limit, threads)
    features = _columns(con, path)
    cols = [_quote(c) for c in features]
    src = f"read_parquet('{path.replace(chr(39), chr(39) * 2)}', file_row_number = true)"
    label = f"CAST({_quote(SOURCE_COLUMN)} AS VARCHAR)"
    first = ", ".join([f"sum({c}::DOUBLE)" for c in cols] + [f"sum({c}::DOUBLE * {c})"
                                                               for c in cols])
    rows = con.execute(f"SELECT {label}, count(*), count_if({label} IS NULL OR "
                       f"trim({label}) = ''), {first} FROM {src} GROUP BY 1 ORDER BY 1"
                       ).fetchall()
    if any(r[0] is None or r[2] for r in rows):
        raise InputError(f"{Path(path).name}: the source column has an empty label")
    names = tuple(str(r[0]) for r in rows)
    if len(names) < 2:
        raise InputError(f"{Path(path).name} holds fewer than 2 sources")
    p = len(features)
    values = np.array([r[3:] for r in rows], float)
    if not np.all(np.isfinite(values)):
        raise InputError(f"{Path(path).name}: a feature is missing or not finite")
    n = np.array([r[1] for r in rows], float)
    s, q = values[:, :p], values[:, p:]
    N, K = n.sum(), len(names)
    centre = s.sum(axis=0) / N
    within = np.maximum(q - s**2 / n[:, None], 0.0).sum(axis=0) / max(N - K, 1.0)
    overall = np.maximum(q.sum(axis=0) / N - centre**2, 0.0)
    tiny = 1e-12 * np.maximum(q.sum(axis=0) / N, 1e-300)
    scale = np.sqrt(np.where(within > tiny, within, np.where(overall > tiny, overall, 1.0)))
    u = [f"(({c}::DOUBLE - {float(centre[j])!r}) / {float(scale[j])!r})"
         for j, c in enumerate(cols)]
    z = u + [f"({e} * {e})" for e in u]
    sums = [f"sum({e})" for e in z]
    pairs = [(a, b) for a in range(2 * p) for b in range(a, 2 * p)]
    sums += [f"sum({z[a]} * {z[b]})" for a, b in pairs]
    index = {name: k for k, name in enumerate(names)}
    fold = (f"(((file_row_number + {int(seed)}) * {HASH_MULTIPLIER}) % 4294967296) "
            f"% {int(folds)}")
    result = con.execute(f"SELECT {fold} AS f, {label} AS k, count(*), {', '.join(sums)} "
                         f"FROM {src} GROUP BY 1, 2").fetchall()
    cn = np.zeros((folds, K))
    cz = np.zeros((folds, K, 2 * p))
    czz = np.zeros((folds, K, 2 * p, 2 * p))
    for row in result:
        f, k = int(row[0]), index[str(row[1])]
        cn[f, k] = row[2]
        cz[f, k] = row[3:3 + 2 * p]
        for (a, b), v in zip(pairs, row[3 + 2 * p:], strict=True):
            czz[f, k, a, b] = czz[f, k, b, a] = v
    return CellSums.from_raw(cn, cz, czz), names, tuple(features), centre, scale


@dataclass(frozen=True)
class OutOfCoreAdvice:
    """What `advise_parquet` found (the in-memory `Advice`'s summary, without the rows)."""

    family: str
    sources: tuple[str, ...]
    counts: tuple[int, ...]
    scores: dict[str, MeanInterval]
    recommendation: str
    comparisons: dict[str, MeanInterval]
    comparison_level: float
    per_source: dict[str, MeanInterval]
    fold_weights: tuple[float, ...]

    @property
    def clear(self) -> bool:
        """Every corrected interval above zero (the row-level checks are not made here)."""
        return all(v.low > 0 for v in self.comparisons.values())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        def interval(v: MeanInterval) -> dict[str, float]:
            return {"mean": v.mean, "low": v.low, "high": v.high}

        return {"family": self.family, "sources": list(self.sources),
                "counts": list(self.counts), "recommendation": self.recommendation,
                "clear": self.clear, "comparison_level": self.comparison_level,
                "fold_weights": list(self.fold_weights),
                "scores": {k: interval(v) for k, v in self.scores.items()},
                "comparisons": {k: interval(v) for k, v in self.comparisons.items()},
                "per_source_pooled_minus_separate": {k: interval(v)
                                                     for k, v in self.per_source.items()},
                "not_checked": ["dominating samples", "variance-floor sensitivity"]}


def advise_sums(sums: CellSums, sources: Sequence[str], family: str = "gaussian", *,
                weights: Sequence[float] = DEFAULT_WEIGHTS, level: float = 0.95
                ) -> OutOfCoreAdvice:
    """`advise`'s rule from per-(fold, source) sums (Gaussian families, nothing specific)."""
    if family not in ("gaussian", "gaussian-unit"):
        raise InputError(f"family must be gaussian or gaussian-unit out of core; got {family!r}")
    level = check_float("level", level, minimum=0.5, maximum=0.999)
    fam = get_family(family)
    moments = sums.moments()
    folds = sums.n.shape[0]
    if np.any(sums.n.sum(axis=0) < 2 * folds):
        raise InputError(f"every source needs at least {2 * folds} rows (2 x folds)")
    specific = np.zeros(moments.s.shape[-1], bool)
    grid = np.asarray(sorted({float(w) for w in (*weights, 0.0, 1.0)}))
    scored = score_moments(fam, moments, specific, grid)
    quad = {s: scored.quadratic(s) for s in scored.names}
    scores = {s: quad[s].interval(sums, level) for s in scored.names}
    decision = decide(scored, quad, scores, sums, level)
    per_source = {name: (quad["pooled"] - quad["separate"]).interval(sums, level, k)
                  for k, name in enumerate(sources)}
    counts = tuple(int(c) for c in sums.n.sum(axis=0))
    return OutOfCoreAdvice(family, tuple(sources), counts, scores, decision.recommendation,
                           dict(decision.comparisons), decision.each, per_source,
                           scored.fold_weights)


def advise_parquet(path: str | Path, family: str = "gaussian", *, folds: int = 5,
                   seed: int = 0, memory_limit: str = "512MB", threads: int | None = None
                   ) -> OutOfCoreAdvice:
    """`advise` on a Parquet file of any size (two DuckDB passes, memory bounded by
    `memory_limit` plus DuckDB's own buffers)."""
    folds = check_int("folds", folds, minimum=2, maximum=20)
    seed = check_int("seed", seed, minimum=0)
    sums, sources, _, _, _ = cell_sums(path, folds, seed, memory_limit, threads)
    return advise_sums(sums, sources, family)
