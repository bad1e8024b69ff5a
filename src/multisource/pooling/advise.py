"""A decision rule a user can run: pooled, separate or partially pooled, by held-out likelihood.

Our construction. Given samples labelled by source and a model family (`families`), K-fold
cross-validation (folds stratified by source) scores three strategies on data they were not
fitted on, by the mean held-out log-likelihood per sample log p_hat(x | y):

- separate: each source's own MLE (w = 0);
- pooled: the multi-source MLE, non-specific parameters fitted on all sources (w = 1);
- partial: (1 - w) separate + w pooled, with w chosen from a grid by an inner cross-validation
  inside each training fold (nested, so its score is not flattered by the choice).

The recommendation is the strategy with the best score. Its uncertainty: the paired
per-sample differences of held-out log-likelihood between the best and each other strategy,
with a Student-t interval (as for leave-one-out comparisons; folds share training data, so the
interval is a little optimistic). "Clear" means every such interval excludes zero.

What the score estimates: the expected log-likelihood of a fit trained on (folds - 1) / folds
of the data, i.e. minus the cross-entropy (a KL risk) at that training size, not the book's TV
risk at the full size. Chapter 8 measures where its boundary sits relative to the TV n*.

Features of the Gaussian families are standardised first (each column centred and divided by
its pooled within-source standard deviation), so the recommendation does not depend on the
units of the columns. Pooled and separate fits that are identical (every parameter
source-specific) are reported as equivalent; a strategy is only compared with strategies whose
held-out scores differ from its own; non-finite scores are an InputError.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from multisource.common.validation import InputError, check_float, check_int
from multisource.pooling.crossover import MeanInterval, t_interval
from multisource.pooling.families import Family, get_family, mix

STRATEGIES = ("pooled", "separate", "partial")
EQUIVALENT = "equivalent"
DEFAULT_WEIGHTS = tuple(np.round(np.linspace(0.0, 1.0, 11), 2))


@dataclass(frozen=True)
class Comparison:
    """Held-out log-likelihood per sample: recommended minus `other`, with a t interval."""

    other: str
    difference: MeanInterval


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

    @property
    def equivalent(self) -> bool:
        """Whether the pooled and separate fits are the same model (nothing to choose)."""
        return self.recommendation == EQUIVALENT

    @property
    def clear(self) -> bool:
        """Whether the recommendation beats every alternative with an interval above zero."""
        return not self.equivalent and all(c.difference.low > 0 for c in self.comparisons)

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
        return {
            "family": self.family, "sources": list(self.sources), "counts": list(self.counts),
            "folds": self.folds, "level": self.level, "recommendation": self.recommendation,
            "weight": self.weight, "fold_weights": list(self.fold_weights),
            "standardised": self.standardised, "clear": self.clear,
            "pooled_or_separate": self.pooled_or_separate,
            "scores": {k: {"mean": v.mean, "low": v.low, "high": v.high}
                       for k, v in self.scores.items()},
            "comparisons": {c.other: {"mean": c.difference.mean, "low": c.difference.low,
                                      "high": c.difference.high} for c in self.comparisons},
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
    onehot = (y[:, None] == np.arange(K)).astype(float)
    counts = onehot.sum(axis=0)
    means = onehot.T @ x / np.maximum(counts, 1.0)[:, None]
    within = ((x - means[y]) ** 2).sum(axis=0) / max(len(y) - K, 1)
    centred = x - x.mean(axis=0)
    overall = centred.var(axis=0)
    scale = np.sqrt(np.where(within > 1e-24, within, np.where(overall > 1e-24, overall, 1.0)))
    return centred / scale


def heldout_by_weight(family: Family, x: np.ndarray, y: np.ndarray, K: int,
                      specific: np.ndarray, fold_ids: np.ndarray, weights: np.ndarray
                      ) -> np.ndarray:
    """Held-out log p(x_i | y_i) of every sample under every pooling weight, (n, len(weights))."""
    out = np.empty((len(y), len(weights)))
    for f in np.unique(fold_ids):
        test = fold_ids == f
        separate, pooled = family.fit_pair(x[~test], y[~test], K, specific)
        for j, w in enumerate(weights):
            out[test, j] = family.log_density(mix(separate, pooled, float(w)), x[test], y[test])
    return out


def advise(x: np.ndarray, y: np.ndarray, family: str | Family = "gaussian", *,
           specific: np.ndarray | None = None, folds: int = 5,
           weights: Sequence[float] = DEFAULT_WEIGHTS, seed: int = 0, level: float = 0.95,
           source_names: Sequence[str] | None = None) -> Advice:
    """Cross-validated choice between pooled, separate and partially pooled fits.

    x: (n, p) finite features; y: source labels 0..K-1 (every label present); specific: mask
    of source-specific columns (default none: the pooled fit shares every parameter).
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
    by_weight = heldout_by_weight(fam, x, y, K, specific, outer, grid)
    if not np.all(np.isfinite(by_weight)):
        raise InputError("held-out log-likelihoods are not finite numbers: the features are "
                         "too extreme for this family")
    partial = np.empty(len(y))
    fold_weights = []
    for f in range(folds):
        train = outer != f
        inner = stratified_folds(y[train], K, folds, rng)
        inner_scores = heldout_by_weight(fam, x[train], y[train], K, specific, inner, grid)
        best = int(np.argmax(inner_scores.sum(axis=0)))
        fold_weights.append(float(grid[best]))
        partial[~train] = by_weight[~train, best]
    heldout = {"pooled": by_weight[:, -1], "separate": by_weight[:, 0], "partial": partial}
    scores = {name: t_interval(values, level) for name, values in heldout.items()}
    weight = float(grid[int(np.argmax(by_weight.sum(axis=0)))])
    if np.array_equal(heldout["pooled"], heldout["separate"]):
        # every parameter is source-specific: pooled, separate and partial are one model
        return Advice(fam.name, names, tuple(int(c) for c in counts), folds, level, scores,
                      0.0, EQUIVALENT, (), heldout, tuple(fold_weights), standardised)
    # A strategy is compared only with strategies whose held-out scores differ from its own:
    # partial pooling that picked an end point in every fold is that plain fit, and is left out
    # of the choice. Ties go to the plain fits.
    candidates = [s for s in STRATEGIES
                  if s != "partial" or not any(np.array_equal(partial, heldout[e])
                                               for e in ("pooled", "separate"))]
    recommendation = max(candidates, key=lambda s: (scores[s].mean, s != "partial"))
    comparisons = tuple(
        Comparison(other, t_interval(heldout[recommendation] - heldout[other], level))
        for other in candidates
        if other != recommendation and not np.array_equal(heldout[other],
                                                          heldout[recommendation]))
    return Advice(fam.name, names, tuple(int(c) for c in counts), folds, level, scores, weight,
                  recommendation, comparisons, heldout, tuple(fold_weights), standardised)
