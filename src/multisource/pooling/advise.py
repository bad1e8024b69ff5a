"""A decision rule a user can run: pooled, separate or partially pooled, by held-out likelihood.

Our construction. Given samples labelled by source and a model family (`families`), K-fold
cross-validation (folds stratified by source) scores the strategies on data they were not
fitted on, by the mean held-out log-likelihood per sample log p_hat(x | y):

- separate: each source's own MLE (w = 0);
- pooled: the multi-source MLE, non-specific parameters fitted on all sources (w = 1);
- partial: (1 - w) separate + w pooled, with one w chosen from a grid inside each training
  fold by an inner cross-validation over the other outer folds (so its score is not flattered
  by the choice);
- shrunk (families that have it): per-source means shrunk towards the pooled mean by each
  source's sample size and the estimated between-source variance (the random-intercept model,
  `shrinkage`), with a variance shared by the sources.

The Gaussian families are fitted and the inner choice is scored from per-(fold, source)
sufficient statistics computed in one pass; only the outer held-out values are evaluated row
by row (they are needed for the paired intervals). `sufficient.advise_sufficient` gives the
same answer for those families from per-cell sums alone (what `multisource advise` uses on
large files).

The recommendation is the strategy with the best score. Its uncertainty: the paired
per-sample differences of held-out log-likelihood between the best and each other strategy,
with Student-t intervals at a Bonferroni-corrected level (the best of several fits is chosen,
so each of the m comparisons uses 1 - (1 - level) / m; folds share training data, so the
intervals are still a little optimistic). "Clear" means every such interval excludes zero and
none of the checks below fired. Each source also gets its own paired interval of pooled minus
separate (and shrunk minus separate) on its own held-out samples: who gains from pooling and
who loses.

"Undecided" (never "clear"), with the reason in one line, when the answer rests on something
the data cannot support: it changes when the variance floor of the `gaussian` family changes
tenfold either way (a column constant within a source in a training fold); the top 1 % of
samples (at least one) carry more than a quarter of the summed absolute paired differences;
or the paired differences are constant (no interval).

What the score estimates: the expected log-likelihood of a fit trained on (folds - 1) / folds
of the data, i.e. minus the cross-entropy (a KL risk) at that training size, not the book's TV
risk at the full size. Chapter 8 measures where its boundary sits relative to the TV n*.

Features of the continuous families are standardised first (each column centred and divided
by its pooled within-source standard deviation), so the recommendation does not depend on the
units of the columns. Pooled and separate fits that are identical are reported as equivalent,
with the reason (every parameter source-specific, or the sources' data coincide); a strategy
is only compared with strategies whose held-out scores differ from its own; non-finite scores
are an InputError.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from multisource.common.validation import InputError, check_float, check_int
from multisource.pooling.crossover import MeanInterval, t_interval
from multisource.pooling.families import (
    Family,
    Params,
    fold_moments,
    gaussian_sum_loglik,
    get_family,
    mix,
    source_variances,
)

STRATEGIES = ("pooled", "separate", "partial", "shrunk")
EQUIVALENT = "equivalent"
DEFAULT_WEIGHTS = tuple(np.round(np.linspace(0.0, 1.0, 11), 2))
DOMINANCE_SHARE = 0.25    # largest share of sum |d_i| the top 1 % of samples may carry
FLOOR_FACTORS = (0.1, 10.0)


@dataclass(frozen=True)
class Comparison:
    """Held-out log-likelihood per sample: recommended minus `other`, with a t interval."""

    other: str
    difference: MeanInterval


@dataclass(frozen=True)
class SourceAnswer:
    """One source's held-out gain from pooling (pooled minus separate, nats per sample)."""

    source: str
    count: int
    pooled_gain: MeanInterval
    shrunk_gain: MeanInterval | None
    answer: str   # "pool", "separate" or "either" (interval includes 0)


@dataclass(frozen=True)
class Advice:
    """What `advise` found."""

    family: str
    sources: tuple[str, ...]
    counts: tuple[int, ...]
    folds: int
    level: float
    scores: dict[str, MeanInterval]
    weight: float
    recommendation: str
    comparisons: tuple[Comparison, ...]
    heldout: dict[str, np.ndarray] = field(repr=False)
    fold_weights: tuple[float, ...] = ()
    standardised: bool = False
    reasons: tuple[str, ...] = ()
    per_source: tuple[SourceAnswer, ...] = ()
    comparison_level: float = 0.95

    @property
    def strategies(self) -> tuple[str, ...]:
        """The strategies scored (shrunk only for families that have it)."""
        return tuple(s for s in STRATEGIES if s in self.scores)

    @property
    def equivalent(self) -> bool:
        """Whether the pooled and separate fits are the same model (nothing to choose)."""
        return self.recommendation == EQUIVALENT

    @property
    def undecided(self) -> bool:
        """Whether a check found the answer resting on something the data cannot support."""
        return not self.equivalent and bool(self.reasons)

    @property
    def clear(self) -> bool:
        """Whether the recommendation beats every alternative with an interval above zero,
        and no check made it undecided."""
        return (not self.equivalent and not self.reasons
                and all(c.difference.low > 0 for c in self.comparisons))

    @property
    def verdict(self) -> str:
        """clear, within noise, undecided or equivalent."""
        if self.equivalent:
            return EQUIVALENT
        if self.reasons:
            return "undecided"
        return "clear" if self.clear else "within noise"

    @property
    def pooled_or_separate(self) -> str:
        """The better of the two plain MLEs (the binary decision; "equivalent" if identical)."""
        if self.equivalent:
            return EQUIVALENT
        pooled, separate = self.scores["pooled"].mean, self.scores["separate"].mean
        return "pooled" if pooled >= separate else "separate"

    @property
    def partial_distinct(self) -> bool:
        """Whether nested partial pooling differs from both plain fits on some held-out row."""
        return not any(np.array_equal(self.heldout["partial"], self.heldout[e])
                       for e in ("pooled", "separate"))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (finite numbers only: `advise` refuses non-finite scores)."""
        def interval(v: MeanInterval) -> dict[str, float]:
            return {"mean": v.mean, "low": v.low, "high": v.high}

        return {
            "family": self.family, "sources": list(self.sources), "counts": list(self.counts),
            "folds": self.folds, "level": self.level, "recommendation": self.recommendation,
            "weight": self.weight, "fold_weights": list(self.fold_weights),
            "standardised": self.standardised, "clear": self.clear, "verdict": self.verdict,
            "reasons": list(self.reasons), "comparison_level": self.comparison_level,
            "pooled_or_separate": self.pooled_or_separate,
            "scores": {k: interval(v) for k, v in self.scores.items()},
            "comparisons": {c.other: interval(c.difference) for c in self.comparisons},
            "per_source": {a.source: {"count": a.count, "answer": a.answer,
                                      "pooled_minus_separate": interval(a.pooled_gain),
                                      **({"shrunk_minus_separate": interval(a.shrunk_gain)}
                                         if a.shrunk_gain is not None else {})}
                           for a in self.per_source},
        }


def stratified_folds(y: np.ndarray, K: int, folds: int, rng: np.random.Generator) -> np.ndarray:
    """Fold index of every sample: each source's samples shuffled and dealt round-robin."""
    ids = np.empty(len(y), np.int64)
    for k in range(K):
        idx = np.flatnonzero(y == k)
        rng.shuffle(idx)
        ids[idx] = np.arange(idx.size) % folds
    return ids


def standardise(x: np.ndarray, y: np.ndarray, K: int) -> np.ndarray:
    """Columns centred and divided by their pooled within-source standard deviation.

    Computed after dividing each column by its largest magnitude, so values near the largest
    float neither overflow nor underflow; a column constant within every source is divided by
    its overall standard deviation instead, and a constant column is only centred.
    """
    top = np.abs(x).max(axis=0)
    x = x / np.where(top > 0, top, 1.0)
    counts = np.bincount(y, minlength=K).astype(float)
    within = np.empty(x.shape[1])
    for j in range(x.shape[1]):     # column by column: no (n, p) temporaries
        means = np.bincount(y, x[:, j], K) / np.maximum(counts, 1.0)
        within[j] = float(np.square(x[:, j] - means[y]).sum()) / max(len(y) - K, 1)
    centre = x.mean(axis=0)
    overall = np.square(x - centre).mean(axis=0)
    scale = np.sqrt(np.where(within > 1e-24, within, np.where(overall > 1e-24, overall, 1.0)))
    x -= centre
    x /= scale
    return x


@dataclass(frozen=True)
class _Scored:
    """Outer held-out values per strategy, the weights partial pooling chose, and the weight
    that is best on all the data."""

    heldout: dict[str, np.ndarray]
    fold_weights: tuple[float, ...]
    weight: float


def _fits(fam: Family, x: np.ndarray, y: np.ndarray, K: int, specific: np.ndarray,
          moments: Any, rows: np.ndarray, train: np.ndarray) -> tuple[Params, Params]:
    """(separate, pooled) on the training folds `train` (a mask over folds)."""
    if moments is not None:
        return fam.fit_moments(moments[train].total(), specific)
    keep = train[rows]
    return fam.fit_pair(x[keep], y[keep], K, specific)


def _score(fam: Family, x: np.ndarray, y: np.ndarray, K: int, specific: np.ndarray,
           outer: np.ndarray, folds: int, grid: np.ndarray) -> _Scored:
    """Cross-validated held-out log-likelihoods of every strategy."""
    moments = fold_moments(x, y, K, outer, folds) if hasattr(fam, "fit_moments") else None
    shrinks = hasattr(fam, "fit_shrunk" if moments is not None else "fit_shrunk_data")
    by_weight = np.zeros((folds, grid.size))    # summed outer held-out per fold and weight
    names = ["pooled", "separate", "partial"] + (["shrunk"] if shrinks else [])
    heldout = {name: np.empty(len(y)) for name in names}
    fold_weights = []
    for f in range(folds):
        test = outer == f
        train = np.arange(folds) != f
        separate, pooled = _fits(fam, x, y, K, specific, moments, outer, train)
        inner = np.zeros(grid.size)
        for g in np.flatnonzero(train):
            inner_train = train & (np.arange(folds) != g)
            sep_g, pool_g = _fits(fam, x, y, K, specific, moments, outer, inner_train)
            for j, w in enumerate(grid):
                params = mix(sep_g, pool_g, float(w))
                inner[j] += (gaussian_sum_loglik(params, moments[g]) if moments is not None
                             else fam.log_density(params, x[outer == g], y[outer == g]).sum())
        best = int(np.argmax(inner))
        fold_weights.append(float(grid[best]))
        for j, w in enumerate(grid):
            params = mix(separate, pooled, float(w))
            by_weight[f, j] = (gaussian_sum_loglik(params, moments[f]) if moments is not None
                               else fam.log_density(params, x[test], y[test]).sum())
        xt, yt = x[test], y[test]
        heldout["pooled"][test] = fam.log_density(pooled, xt, yt)
        heldout["separate"][test] = fam.log_density(separate, xt, yt)
        heldout["partial"][test] = fam.log_density(mix(separate, pooled, grid[best]), xt, yt)
        if shrinks:
            shrunk = (fam.fit_shrunk(moments[train].total(), specific) if moments is not None
                      else fam.fit_shrunk_data(x[~test], y[~test], K, specific))
            heldout["shrunk"][test] = fam.log_density(shrunk, xt, yt)
    weight = float(grid[int(np.argmax(by_weight.sum(axis=0)))])
    return _Scored(heldout, tuple(fold_weights), weight)


def _candidates(heldout: dict[str, np.ndarray]) -> list[str]:
    """Strategies that are not a copy of a plain fit (ties go to the plain fits)."""
    plain = ("pooled", "separate")
    return [s for s in heldout
            if s in plain or not any(np.array_equal(heldout[s], heldout[e]) for e in plain)]


def _decide(heldout: dict[str, np.ndarray], level: float
            ) -> tuple[str, tuple[Comparison, ...], float]:
    """Best candidate, its Bonferroni-corrected comparisons, and the per-comparison level."""
    candidates = _candidates(heldout)
    means = {s: float(heldout[s].mean()) for s in candidates}
    order = {s: i for i, s in enumerate(("pooled", "separate", "shrunk", "partial"))}
    recommendation = max(candidates, key=lambda s: (means[s], -order[s]))
    others = [o for o in candidates if o != recommendation
              and not np.array_equal(heldout[o], heldout[recommendation])]
    each = 1.0 - (1.0 - level) / max(len(others), 1)
    comparisons = tuple(Comparison(o, t_interval(heldout[recommendation] - heldout[o], each))
                        for o in others)
    return recommendation, comparisons, each


def dominance(differences: np.ndarray) -> float:
    """Share of sum |d_i| carried by the largest 1 % of the |d_i| (at least one sample)."""
    a = np.abs(np.asarray(differences, float))
    total = a.sum()
    if total == 0:
        return 0.0
    top = max(1, int(np.ceil(0.01 * a.size)))
    return float(np.partition(a, a.size - top)[-top:].sum() / total)


def _dominance_reason(heldout: dict[str, np.ndarray], recommendation: str,
                      comparisons: tuple[Comparison, ...], names: Sequence[str],
                      y: np.ndarray) -> str | None:
    pairs = [(recommendation, c.other) for c in comparisons]
    if recommendation not in ("pooled", "separate"):
        pairs.append(("pooled", "separate"))
    for a, b in pairs:
        d = heldout[a] - heldout[b]
        share = dominance(d)
        if share > DOMINANCE_SHARE:
            top = max(1, int(np.ceil(0.01 * d.size)))
            i = int(np.argmax(np.abs(d)))
            who = (f"one sample (row {i + 1}, source {names[y[i]]!r})" if top == 1
                   else f"{top} samples ({100 * top / d.size:.0f}% of them)")
            verb = "carries" if top == 1 else "carry"
            return (f"{who} {verb} {100 * share:.0f}% of the summed |held-out differences| "
                    f"between {a} and {b}")
    return None


def _constant_reason(comparisons: tuple[Comparison, ...]) -> str | None:
    for c in comparisons:
        if c.difference.low == c.difference.high:
            return (f"the held-out differences with {c.other} are the same for every sample "
                    "(degenerate features): there is no interval")
    return None


def _floored_columns(fam: Family, x: np.ndarray, y: np.ndarray, K: int, outer: np.ndarray,
                     folds: int, columns: Sequence[str], names: Sequence[str]) -> str | None:
    """A column constant within some source in some training fold (its variance floored)."""
    moments = fold_moments(x, y, K, outer, folds)
    for f in range(folds):
        const = np.argwhere(source_variances(moments[np.arange(folds) != f].total()) == 0)
        if const.size:
            k, j = const[0]
            more = f" and {len(const) - 1} more" if len(const) > 1 else ""
            return f"column {columns[j]!r} is constant within source {names[k]!r}{more}"
    return None


def _per_source(heldout: dict[str, np.ndarray], y: np.ndarray, names: Sequence[str],
                level: float) -> tuple[SourceAnswer, ...]:
    answers = []
    for k, name in enumerate(names):
        rows = y == k
        gain = t_interval(heldout["pooled"][rows] - heldout["separate"][rows], level)
        shrunk = (t_interval(heldout["shrunk"][rows] - heldout["separate"][rows], level)
                  if "shrunk" in heldout else None)
        answer = "pool" if gain.low > 0 else "separate" if gain.high < 0 else "either"
        answers.append(SourceAnswer(name, int(rows.sum()), gain, shrunk, answer))
    return tuple(answers)


def advise(x: np.ndarray, y: np.ndarray, family: str | Family = "gaussian", *,
           specific: np.ndarray | None = None, folds: int = 5,
           weights: Sequence[float] = DEFAULT_WEIGHTS, seed: int = 0, level: float = 0.95,
           source_names: Sequence[str] | None = None,
           columns: Sequence[str] | None = None) -> Advice:
    """Cross-validated choice between pooled, separate, partially pooled and shrunk fits.

    x: (n, p) finite features; y: source labels 0..K-1 (every label present); specific: mask
    of source-specific columns (default none: the pooled fit shares every parameter);
    columns: names of the feature columns (for the reasons; default x1, x2, ...).
    """
    x = np.asarray(x, float)
    y = np.asarray(y)
    if x.ndim != 2 or x.shape[0] != y.shape[0] or x.shape[1] == 0:
        raise InputError("x must be (n, p) with p >= 1 and y must hold one label per row")
    if not np.all(np.isfinite(x)):
        raise InputError("features must be finite numbers (no NaN or infinity)")
    if y.size == 0 or not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
        raise InputError("source labels must be integers 0..K-1")
    K = int(y.max()) + 1
    names = tuple(source_names) if source_names is not None else tuple(str(k) for k in range(K))
    if len(names) != K:
        raise InputError(f"source_names must have {K} entries, got {len(names)}")
    columns = (tuple(columns) if columns is not None
               else tuple(f"x{j + 1}" for j in range(x.shape[1])))
    counts = np.bincount(y, minlength=K)
    if K < 2:
        raise InputError(f"advise needs at least 2 sources; got only {names[0]!r}")
    folds = check_int("folds", folds, minimum=2, maximum=20)
    level = check_float("level", level, minimum=0.5, maximum=0.999)
    need = 2 * folds
    for name, count in zip(names, counts, strict=True):
        if count < need:
            raise InputError(f"source {name!r} has {count} samples; advise needs at least "
                             f"{need} per source (2 x folds)")
    grid = np.asarray(sorted({float(check_float("weight", w, minimum=0.0, maximum=1.0))
                              for w in (*weights, 0.0, 1.0)}))
    specific = np.zeros(x.shape[1], bool) if specific is None else np.asarray(specific, bool)
    if specific.shape != (x.shape[1],):
        raise InputError(f"specific must be a mask over the {x.shape[1]} feature columns")
    fam = (get_family(family) if isinstance(family, str) else family).configure(x)
    standardised = bool(getattr(fam, "continuous", False))
    if standardised:
        x = standardise(x, y, K)

    rng = np.random.default_rng(check_int("seed", seed, minimum=0))
    outer = stratified_folds(y, K, folds, rng)
    scored = _score(fam, x, y, K, specific, outer, folds, grid)
    heldout = scored.heldout
    if not all(np.all(np.isfinite(v)) for v in heldout.values()):
        raise InputError("held-out log-likelihoods are not finite numbers: the features are "
                         "too extreme for this family")
    scores = {name: t_interval(values, level) for name, values in heldout.items()}
    counts_t = tuple(int(c) for c in counts)
    per_source = _per_source(heldout, y, names, level)
    if np.array_equal(heldout["pooled"], heldout["separate"]):
        reason = ("every parameter is source-specific" if specific.all() else
                  "the sources' fits coincide in every fold (their data are identical or "
                  "constant)")
        return Advice(fam.name, names, counts_t, folds, level, scores, 0.0, EQUIVALENT, (),
                      heldout, scored.fold_weights, standardised, (reason,), per_source, level)
    recommendation, comparisons, each = _decide(heldout, level)
    reasons = [r for r in (_constant_reason(comparisons),
                           _dominance_reason(heldout, recommendation, comparisons, names, y))
               if r]
    floor = getattr(fam, "floor", None)
    if floor is not None and hasattr(fam, "fit_moments"):
        floored = _floored_columns(fam, x, y, K, outer, folds, columns, names)
        if floored:
            verdict = (recommendation, tuple(c.difference.low > 0 for c in comparisons))
            for factor in FLOOR_FACTORS:
                other = dataclasses.replace(fam, floor=floor * factor)
                alt = _score(other, x, y, K, specific, outer, folds, grid).heldout
                rec, comp, _ = _decide(alt, level)
                if (rec, tuple(c.difference.low > 0 for c in comp)) != verdict:
                    reasons.append(f"the answer changes when the variance floor changes "
                                   f"{factor:g}-fold: {floored} in a training fold")
                    break
    return Advice(fam.name, names, counts_t, folds, level, scores, scored.weight,
                  recommendation, comparisons, heldout, scored.fold_weights, standardised,
                  tuple(reasons), per_source, each)
