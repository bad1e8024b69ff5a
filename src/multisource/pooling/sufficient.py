"""`advise` for the Gaussian families on data in memory, scored from per-(fold, source) sums.

`advise_sufficient` gives `advise.advise`'s answer (same folds, standardisation, fits,
candidates, rule, intervals, per-source answers and checks) without evaluating every fit on
every held-out row:

- the columns are standardised as `advise.standardise` does it, bit for bit; the folds are
  `advise.stratified_folds`; the per-(fold, source) moments are those of
  `families.fold_moments`; so the fits and the partial weights chosen are the numbers `advise`
  computes, and two strategies are the same fit exactly where `advise` finds them so;
- the rows are sorted by (fold, source) cell once, and each cell's scatter sum of
  z = (u, u^2) gives every mean and interval (`cellsums`);
- the checks that need rows use the rows in memory: the compared fits' paired differences are
  evaluated row by row (one matrix product per cell) for the share the top 1 % carry
  (`advise.dominance`); the constant columns and the variance floor come from the moments.

Where `advise`'s answer would rest on rounding error (two compared fits whose held-out values
differ by less than ROUNDING relative to their size, or a paired difference constant to within
ROUNDING), the data are handed to `advise`, which decides from its own rows.

The `Advice` returned keeps no held-out rows (`heldout` is empty); whether partial pooling is
one of the plain fits is recorded instead.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from multisource.common.validation import InputError, check_float, check_int
from multisource.pooling.advise import (
    DEFAULT_WEIGHTS,
    DOMINANCE_SHARE,
    EQUIVALENT,
    FLOOR_FACTORS,
    Advice,
    Comparison,
    SourceAnswer,
    _constant_reason,
    advise,
    stratified_folds,
)
from multisource.pooling.cellsums import PLAIN, CellSums, Quadratic, decide, score_moments
from multisource.pooling.families import (
    Family,
    GaussianDiagonal,
    GaussianUnit,
    Moments,
    get_family,
    source_variances,
)

ROUNDING = 1e-9   # relative differences this small are rounding error in `advise`'s rows


@dataclass(frozen=True)
class SufficientAdvice(Advice):
    """`Advice` from sums: no held-out rows, and whether partial pooling is a plain fit."""

    partial_is_plain: bool = False

    @property
    def partial_distinct(self) -> bool:
        """Whether nested partial pooling differs from both plain fits in some fold."""
        return not self.partial_is_plain


def supports(family: str | Family) -> bool:
    """Whether `advise_sufficient` takes this family (the diagonal Gaussian ones)."""
    fam = get_family(family) if isinstance(family, str) else family
    return type(fam) in (GaussianDiagonal, GaussianUnit)


def standardise_columns(values: Sequence[np.ndarray], y: np.ndarray, K: int
                        ) -> list[np.ndarray]:
    """`advise.standardise` of the C-ordered stack of `values`, column by column and bit for
    bit: the same operations, and the sums its `x.mean(axis=0)` makes over such an array
    (NumPy adds row after row when p > 1, as np.cumsum does, and pairwise when p = 1); one
    scratch column instead of (n, p) temporaries."""
    n, p = len(y), len(values)
    counts = np.bincount(y, minlength=K).astype(float)
    scratch = np.empty(n)

    def column_sum(a: np.ndarray) -> float:
        return float(np.cumsum(a, out=scratch)[-1]) if p > 1 else float(a.sum())

    out = []
    for column in values:
        top = max(float(column.max()), -float(column.min()))   # the largest magnitude
        x = column / (top if top > 0 else 1.0)
        means = np.bincount(y, x, K) / np.maximum(counts, 1.0)
        np.take(means, y, out=scratch, mode="clip")
        np.subtract(x, scratch, out=scratch)
        within = float(np.square(scratch, out=scratch).sum()) / max(n - K, 1)
        centre = column_sum(x) / n
        if within > 1e-24:
            scale = within
        else:   # the overall variance is needed only here (three passes saved otherwise)
            np.subtract(x, centre, out=scratch)
            overall = column_sum(np.square(scratch, out=scratch)) / n
            scale = overall if overall > 1e-24 else 1.0
        x -= centre
        x /= np.sqrt(scale)
        out.append(x)
    return out


@dataclass(frozen=True)
class CellRows:
    """The standardised columns with their rows sorted by (fold, source) cell (stably: a
    cell's rows keep their order), the row numbers in that order, each cell's first row."""

    columns: list[np.ndarray]
    order: np.ndarray
    starts: np.ndarray

    @classmethod
    def sort(cls, u: list[np.ndarray], cell: np.ndarray, cells: int) -> CellRows:
        """Sort the rows by cell (a radix sort on small integer keys). Consumes `u`: each
        column is replaced by its sorted copy in turn (one extra column at a time)."""
        order = np.argsort(cell.astype(np.min_scalar_type(cells)), kind="stable")
        for j, column in enumerate(u):
            u[j] = np.take(column, order)
        counts = np.bincount(cell, minlength=cells)
        return cls(u, order, np.concatenate([[0], np.cumsum(counts)]))

    def moments(self, folds: int, K: int) -> Moments:
        """`families.fold_moments`, bit for bit: np.bincount adds each cell's values in row
        order, which the stable sort kept."""
        cells = folds * K
        counts = np.diff(self.starts)
        key = np.repeat(np.arange(cells), counts)
        s = np.stack([np.bincount(key, c, cells) for c in self.columns], axis=1)
        square = np.empty(self.order.size)
        q = np.stack([np.bincount(key, np.multiply(c, c, out=square), cells)
                      for c in self.columns], axis=1)
        p = len(self.columns)
        return Moments(counts.astype(float).reshape(folds, K), s.reshape(folds, K, p),
                       q.reshape(folds, K, p))

    def cells(self, m: Moments) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """(cell, its row numbers, its z = (u, u^2) minus the cell's mean (2p, rows)), one
        cell at a time in one reused buffer."""
        p = len(self.columns)
        mean = np.concatenate([m.s, m.q], axis=-1).reshape(-1, 2 * p)
        mean /= np.maximum(m.n.ravel(), 1.0)[:, None]
        bounds = self.starts.tolist()
        buffer = np.empty((2 * p, max(b - a for a, b in itertools.pairwise(bounds))))
        for i, (a, b) in enumerate(itertools.pairwise(bounds)):
            z = buffer[:, :b - a]
            for j, column in enumerate(self.columns):
                np.multiply(column[a:b], column[a:b], out=z[p + j])
                z[j] = column[a:b]
            z -= mean[i][:, None]
            yield i, self.order[a:b], z

    def sums(self, m: Moments) -> CellSums:
        """Counts, sums of z and scatter sums per cell."""
        scatter = np.stack([z @ z.T for _, _, z in self.cells(m)])
        F, K, p = m.s.shape
        return CellSums(m.n, np.concatenate([m.s, m.q], axis=-1),
                        scatter.reshape(F, K, 2 * p, 2 * p))


@dataclass(frozen=True)
class Spread:
    """What the checks need from the rows of one paired difference d."""

    total: float     # sum |d_i|
    largest: float   # max |d_i|
    first: int       # the first row holding it (-1 when not needed: over 100 rows)
    source: int      # that row's source (-1 when not needed)
    share: float     # `advise.dominance(d)`; 0 where the bound keeps it below DOMINANCE_SHARE


def spreads(rows: CellRows, differences: Sequence[Quadratic], sums: CellSums, m: Moments
            ) -> list[Spread]:
    """`advise.dominance` and the largest |d_i| of every difference, cell by cell. The share
    of the top 1 % is bounded by top * largest / total first; only a difference the bound
    does not clear below DOMINANCE_SHARE has its top 1 % selected (a second pass)."""
    n = rows.order.size
    top = max(1, int(np.ceil(0.01 * n)))
    w = np.stack([d.w.reshape(-1, d.w.shape[-1]) for d in differences], axis=1)
    means = np.stack([d.cell_means(sums).ravel() for d in differences], axis=1)
    total, largest = np.zeros(len(differences)), np.zeros(len(differences))
    first = np.full(len(differences), -1)
    source = np.full(len(differences), -1)
    K = m.n.shape[1]
    for i, cell_rows, z in rows.cells(m):
        size = np.abs(w[i] @ z + means[i][:, None])
        total += size.sum(axis=1)
        high = size.max(axis=1)
        for k in np.flatnonzero(high >= largest):
            row = int(cell_rows[size[k] == high[k]].min()) if top == 1 else -1
            if high[k] > largest[k] or row < first[k]:
                largest[k], first[k] = high[k], row
                source[k] = i % K if top == 1 else -1
    bound = np.where(total > 0, top * largest / np.where(total > 0, total, 1.0), 0.0)
    select = np.flatnonzero(bound > DOMINANCE_SHARE * (1 - ROUNDING))
    tops: list[list[np.ndarray]] = [[] for _ in differences]
    if select.size:
        for i, _, z in rows.cells(m):
            size = np.abs(w[i, select] @ z + means[i, select][:, None])
            for k, values in zip(select, size, strict=True):
                cut = max(values.size - top, 0)
                tops[k].append(np.partition(values, cut)[cut:])
    share = np.zeros(len(differences))
    for k in select:
        values = np.concatenate(tops[k])
        share[k] = np.partition(values, values.size - top)[-top:].sum() / total[k]
    return [Spread(float(t), float(g), int(f), int(k), float(s))
            for t, g, f, k, s in zip(total, largest, first, source, share, strict=True)]


def _inputs(x: np.ndarray | tuple[np.ndarray, ...], y: np.ndarray
            ) -> tuple[list[np.ndarray], np.ndarray]:
    """Feature columns and labels, checked as `advise` checks them."""
    y = np.asarray(y)
    if isinstance(x, tuple) and all(isinstance(c, np.ndarray) for c in x):
        values = [np.ascontiguousarray(c, dtype=float) for c in x]
    else:
        x = np.asarray(x, float)
        values = [np.ascontiguousarray(x[:, j]) for j in range(x.shape[1])] if x.ndim == 2 else []
    if not values or any(c.ndim != 1 or c.shape[0] != y.shape[0] for c in values):
        raise InputError("x must be (n, p) with p >= 1 and y must hold one label per row")
    if not all(np.all(np.isfinite(c)) for c in values):
        raise InputError("features must be finite numbers (no NaN or infinity)")
    if y.size == 0 or not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
        raise InputError("source labels must be integers 0..K-1")
    return values, y


def _floored(m: Moments, columns: Sequence[str], names: Sequence[str]) -> str | None:
    """`advise._floored_columns` from the moments."""
    folds = m.n.shape[0]
    for f in range(folds):
        const = np.argwhere(source_variances(m[np.arange(folds) != f].total()) == 0)
        if const.size:
            k, j = const[0]
            more = f" and {len(const) - 1} more" if len(const) > 1 else ""
            return f"column {columns[j]!r} is constant within source {names[k]!r}{more}"
    return None


def _dominance(pairs: Sequence[tuple[str, str]], found: Sequence[Spread], n: int,
               names: Sequence[str]) -> str | None:
    """`advise._dominance_reason` from the spreads of the paired differences."""
    top = max(1, int(np.ceil(0.01 * n)))
    for (a, b), spread in zip(pairs, found, strict=True):
        if spread.share > DOMINANCE_SHARE:
            i = spread.first
            who = (f"one sample (row {i + 1}, source {names[spread.source]!r})" if top == 1
                   else f"{top} samples ({100 * top / n:.0f}% of them)")
            verb = "carries" if top == 1 else "carry"
            return (f"{who} {verb} {100 * spread.share:.0f}% of the summed |held-out "
                    f"differences| between {a} and {b}")
    return None


def _rests_on_rounding(quad: dict[str, Quadratic], sums: CellSums, a: str, b: str,
                       spread: Spread) -> bool:
    """Whether fits a and b differ by rounding error only, or by a constant."""
    size = sum(abs(mean) + np.sqrt(var) for mean, var, _ in
               (quad[s].stats(sums) for s in (a, b)))
    deviation = np.sqrt((quad[a] - quad[b]).stats(sums)[1])
    return spread.largest <= ROUNDING * size or deviation <= ROUNDING * spread.largest


def advise_sufficient(x: np.ndarray | tuple[np.ndarray, ...], y: np.ndarray,
                      family: str | Family = "gaussian", *, specific: np.ndarray | None = None,
                      folds: int = 5, weights: Sequence[float] = DEFAULT_WEIGHTS,
                      seed: int = 0, level: float = 0.95,
                      source_names: Sequence[str] | None = None,
                      columns: Sequence[str] | None = None) -> Advice:
    """`advise` for the gaussian and gaussian-unit families, from per-(fold, source) sums.

    x: (n, p) finite features as `advise` takes them, or a tuple of the p feature columns
    (1-D arrays of n values: no (n, p) copy); the other arguments as for `advise`. Returns
    what `advise` returns on the C-ordered (n, p) features (without held-out rows), or
    `advise`'s own result where its answer rests on rounding error.
    """
    values, y = _inputs(x, y)
    K = int(y.max()) + 1
    names = tuple(source_names) if source_names is not None else tuple(str(k) for k in range(K))
    if len(names) != K:
        raise InputError(f"source_names must have {K} entries, got {len(names)}")
    columns = (tuple(columns) if columns is not None
               else tuple(f"x{j + 1}" for j in range(len(values))))
    counts = np.bincount(y, minlength=K)
    if K < 2:
        raise InputError(f"advise needs at least 2 sources; got only {names[0]!r}")
    folds = check_int("folds", folds, minimum=2, maximum=20)
    level = check_float("level", level, minimum=0.5, maximum=0.999)
    for name, count in zip(names, counts, strict=True):
        if count < 2 * folds:
            raise InputError(f"source {name!r} has {count} samples; advise needs at least "
                             f"{2 * folds} per source (2 x folds)")
    grid = np.asarray(sorted({float(check_float("weight", w, minimum=0.0, maximum=1.0))
                              for w in (*weights, 0.0, 1.0)}))
    p = len(values)
    specific = np.zeros(p, bool) if specific is None else np.asarray(specific, bool)
    if specific.shape != (p,):
        raise InputError(f"specific must be a mask over the {p} feature columns")
    fam = get_family(family) if isinstance(family, str) else family
    if not supports(fam):
        raise InputError(f"family must be gaussian or gaussian-unit here; got {fam.name!r}")

    u = standardise_columns(values, y, K)
    outer = stratified_folds(y, K, folds, np.random.default_rng(check_int("seed", seed,
                                                                          minimum=0)))
    rows = CellRows.sort(u, outer * K + y, folds * K)
    moments = rows.moments(folds, K)
    sums = rows.sums(moments)

    def in_memory() -> Advice:
        return advise(np.column_stack(values), y, family, specific=specific, folds=folds,
                      weights=weights, seed=seed, level=level, source_names=names,
                      columns=columns)

    return conclude(fam, moments, sums, specific, grid, level, names, columns,
                    lambda differences: spreads(rows, differences, sums, moments),
                    on_rounding=in_memory)


ROUNDING_REASON = ("two compared fits differ by rounding error only (or by a constant): the "
                   "sums cannot tell them apart")


def conclude(fam: Family, moments: Moments, sums: CellSums, specific: np.ndarray,
             grid: np.ndarray, level: float, names: Sequence[str], columns: Sequence[str],
             spread_of: Callable[[list[Quadratic]], list[Spread]],
             on_rounding: Callable[[], Advice] | None = None) -> SufficientAdvice | Advice:
    """`advise`'s rule from per-(fold, source) moments and sums: fits, scores, the decision,
    per-source answers and the checks. `spread_of` measures the paired differences' rows
    (`Spread`); where an answer rests on rounding error, `on_rounding()` decides instead, or
    (None) the answer is undecided with that reason."""
    folds = moments.n.shape[0]
    counts = sums.n.sum(axis=0)
    scored = score_moments(fam, moments, specific, grid)
    quad = {s: scored.quadratic(s) for s in scored.names}
    scores = {s: quad[s].interval(sums, level) for s in scored.names}
    if not scored.finite() or not all(np.isfinite([v.low, v.high]).all()
                                      for v in scores.values()):
        raise InputError("held-out log-likelihoods are not finite numbers: the features are "
                         "too extreme for this family")
    per_source = []
    for k, name in enumerate(names):
        gain = (quad["pooled"] - quad["separate"]).interval(sums, level, k)
        shrunk = ((quad["shrunk"] - quad["separate"]).interval(sums, level, k)
                  if "shrunk" in quad else None)
        answer = "pool" if gain.low > 0 else "separate" if gain.high < 0 else "either"
        per_source.append(SourceAnswer(name, int(counts[k]), gain, shrunk, answer))
    common = dict(family=fam.name, sources=tuple(names), counts=tuple(int(c) for c in counts),
                  folds=folds, level=level, scores=scores, heldout={},
                  fold_weights=scored.fold_weights, standardised=True,
                  per_source=tuple(per_source),
                  partial_is_plain=any(scored.same("partial", e) for e in PLAIN))
    if scored.same("pooled", "separate"):
        reason = ("every parameter is source-specific" if specific.all() else
                  "the sources' fits coincide in every fold (their data are identical or "
                  "constant)")
        return SufficientAdvice(weight=0.0, recommendation=EQUIVALENT, comparisons=(),
                                reasons=(reason,), comparison_level=level, **common)

    decision = decide(scored, quad, scores, sums, level)
    best = decision.recommendation
    comparisons = tuple(Comparison(o, v) for o, v in decision.comparisons)
    pairs = [(best, c.other) for c in comparisons]
    if best not in PLAIN:
        pairs.append(PLAIN)
    found = spread_of([quad[a] - quad[b] for a, b in pairs])
    rounding = any(_rests_on_rounding(quad, sums, a, b, f)
                   for (a, b), f in zip(pairs, found, strict=True))
    if rounding and on_rounding is not None:
        return on_rounding()
    reasons = [r for r in (_constant_reason(comparisons),
                           _dominance(pairs, found, int(counts.sum()), names),
                           ROUNDING_REASON if rounding else None) if r]
    floor = getattr(fam, "floor", None)
    floored = _floored(moments, columns, names) if floor is not None else None
    if floored:
        verdict = (best, tuple(c.difference.low > 0 for c in comparisons))
        for factor in FLOOR_FACTORS:
            other = score_moments(dataclasses.replace(fam, floor=floor * factor), moments,
                                  specific, grid)
            alt_quad = {s: other.quadratic(s) for s in other.names}
            alt_scores = {s: alt_quad[s].interval(sums, level) for s in other.names}
            alt = decide(other, alt_quad, alt_scores, sums, level)
            if (alt.recommendation, tuple(v.low > 0 for _, v in alt.comparisons)) != verdict:
                reasons.append(f"the answer changes when the variance floor changes "
                               f"{factor:g}-fold: {floored} in a training fold")
                break
    return SufficientAdvice(weight=scored.weight, recommendation=best, comparisons=comparisons,
                            reasons=tuple(reasons), comparison_level=decision.each, **common)
