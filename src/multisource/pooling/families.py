"""Model families the decision rule can fit separately, pooled, or partially pooled.

A family fits two sets of per-source parameters on the same data: `separate` (each source's
own MLE) and `pooled` (the multi-source MLE, whose parameters outside the specific columns are
fitted on all sources together). A partially pooled fit mixes them parameter by parameter,
(1 - w) * separate + w * pooled, so w = 0 and w = 1 are the two MLEs. `log_density` scores
held-out samples under their own source's conditional.

Families (all ours, chosen because their fits are closed-form):
- `gaussian`: independent coordinates, N(mu_kj, sigma_kj^2); pooled shares the mean and the
  variance of every non-specific column. Variances have a floor on the pooled scale (1 % of
  the column's pooled within-source variance in the training data, `variance_floor`), so a
  column that is constant in some source (a pixel that is 0 in every training image of a
  digit) costs a bounded, not an astronomic, log-likelihood; `advise` reports when its answer
  depends on that floor.
- `gaussian-unit`: N(mu_k, I), the book's family (chapters 1-4); pooled shares the means of the
  non-specific columns. `advise` standardises the columns of both Gaussian families (pooled
  within-source standard deviation 1) before fitting, which is what this family assumes.
- `tabular-ar`: integer tokens 0..V-1, one sequence per row (columns in order), an order-1
  autoregressive model with a table per transition (chapter 5); pooled shares the tables that
  lead into non-specific columns. Counts get 1/2 pseudo-count per cell (both fits alike) so a
  transition unseen in training does not give held-out likelihood zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from multisource.common.validation import InputError

VARIANCE_FLOOR = 0.01  # fraction of the pooled within-source variance (see `variance_floor`)
ZERO_VARIANCE = 1e-9    # a variance below this share of the mean square is rounding error
Params = dict[str, np.ndarray]


class Family(Protocol):
    """What the decision rule needs from a model family."""

    name: str

    def configure(self, x: np.ndarray) -> Family:
        """This family set up for the whole data set (raises InputError if they do not fit)."""

    def fit_pair(self, x: np.ndarray, y: np.ndarray, K: int, specific: np.ndarray
                 ) -> tuple[Params, Params]:
        """(separate, pooled) parameters, each holding per-source arrays."""

    def log_density(self, params: Params, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """log p(x_i | y_i) for every row."""


def mix(separate: Params, pooled: Params, weight: float) -> Params:
    """Partially pooled parameters: (1 - w) * separate + w * pooled, array by array."""
    return {key: (1.0 - weight) * separate[key] + weight * pooled[key] for key in separate}


@dataclass(frozen=True)
class Moments:
    """Per-source sufficient statistics of the Gaussian families: counts n (..., K), sums s and
    sums of squares q (..., K, p). A leading axis indexes folds when they are per fold."""

    n: np.ndarray
    s: np.ndarray
    q: np.ndarray

    def __add__(self, other: Moments) -> Moments:
        return Moments(self.n + other.n, self.s + other.s, self.q + other.q)

    def __sub__(self, other: Moments) -> Moments:
        return Moments(self.n - other.n, self.s - other.s, self.q - other.q)

    def total(self) -> Moments:
        """Summed over the leading (fold) axis."""
        return Moments(self.n.sum(axis=0), self.s.sum(axis=0), self.q.sum(axis=0))

    def __getitem__(self, index: int | np.ndarray) -> Moments:
        return Moments(self.n[index], self.s[index], self.q[index])


def fold_moments(x: np.ndarray, y: np.ndarray, K: int, fold_ids: np.ndarray | None = None,
                 folds: int = 1) -> Moments:
    """Moments per (fold, source) in one pass: arrays (folds, K) and (folds, K, p)."""
    cell = np.asarray(y, np.int64) if fold_ids is None else fold_ids * K + y
    cells = folds * K
    n = np.bincount(cell, minlength=cells).astype(float)
    s = np.stack([np.bincount(cell, x[:, j], cells) for j in range(x.shape[1])], axis=1)
    q = np.stack([np.bincount(cell, x[:, j] ** 2, cells) for j in range(x.shape[1])], axis=1)
    p = x.shape[1]
    return Moments(n.reshape(folds, K), s.reshape(folds, K, p), q.reshape(folds, K, p))


def _floor(m: Moments, fraction: float) -> np.ndarray:
    """`fraction` of each column's pooled within-source variance (of its overall variance where
    it is constant within every source; `fraction` itself where it is constant)."""
    N, K = float(m.n.sum()), m.n.size
    counts = np.maximum(m.n, 1.0)[:, None]
    within = np.maximum(m.q - m.s**2 / counts, 0.0).sum(axis=0) / max(N - K, 1.0)
    mean = m.s.sum(axis=0) / N
    overall = np.maximum(m.q.sum(axis=0) / N - mean**2, 0.0)
    # sums of squares minus squared sums cancel to rounding error for a constant column
    tiny = ZERO_VARIANCE * np.maximum(m.q.sum(axis=0) / N, 1e-300)
    return fraction * np.where(within > tiny, within, np.where(overall > tiny, overall, 1.0))


def variance_floor(x: np.ndarray, y: np.ndarray, K: int, fraction: float) -> np.ndarray:
    """Smallest variance a fit may use, per column: `fraction` of the column's pooled
    within-source variance; of its overall variance where it is constant within every source;
    `fraction` itself (units of the data) where it is constant. On `advise`'s standardised
    columns all three are on the pooled scale, about 1."""
    return _floor(fold_moments(x, y, K)[0], fraction)


def source_variances(m: Moments) -> np.ndarray:
    """Each source's MLE variance per column, 0 where it is rounding error (constant)."""
    square = m.q / m.n[:, None]
    var = square - (m.s / m.n[:, None]) ** 2
    return np.where(var > ZERO_VARIANCE * square, var, 0.0)


def _check_counts(m: Moments) -> None:
    if np.any(m.n == 0):
        raise InputError("every source needs at least one sample in every training fold")


def gaussian_sum_loglik(params: Params, test: Moments) -> float:
    """sum_i log N(x_i; mean, var) over the samples summarised by `test` (K, p) moments."""
    mean = params["mean"]
    var = params["var"] if "var" in params else np.ones_like(mean)
    quad = (test.q - 2 * mean * test.s + test.n[:, None] * mean**2) / var
    return float(-0.5 * (quad + test.n[:, None] * np.log(2 * np.pi * var)).sum())


def shrunk_means(m: Moments, specific: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Random-intercept (REML) means per source and column, and the shared within variance.

    Shared columns: each source's mean shrunk towards the pooled mean by its own sample size
    (`shrinkage`); specific columns keep the source's own mean."""
    from multisource.pooling.shrinkage import fit_random_intercepts

    K = m.s.shape[0]
    means = m.s / m.n[:, None]
    within = (source_variances(m) * m.n[:, None]).sum(axis=0)
    sigma2 = within / max(m.n.sum() - K, 1.0)   # own means: specific columns, and columns
    shrink = ~np.asarray(specific, bool) & (within > 0)   # constant within every source
    if shrink.any():
        shrunk, shared = fit_random_intercepts(m.n, m.s[:, shrink], m.q[:, shrink])
        means[:, shrink] = shrunk
        sigma2[shrink] = shared
    return means, sigma2


@dataclass(frozen=True)
class GaussianDiagonal:
    """Independent Gaussian coordinates; pooled shares mean and variance of shared columns."""

    name: str = "gaussian"
    continuous: bool = True
    floor: float = VARIANCE_FLOOR

    def configure(self, x: np.ndarray) -> Family:
        """Any finite numbers will do."""
        return self

    def fit_pair(self, x: np.ndarray, y: np.ndarray, K: int, specific: np.ndarray
                 ) -> tuple[Params, Params]:
        return self.fit_moments(fold_moments(x, y, K)[0], specific)

    def fit_moments(self, m: Moments, specific: np.ndarray) -> tuple[Params, Params]:
        """(separate, pooled) from per-source moments (K, p)."""
        _check_counts(m)
        means = m.s / m.n[:, None]
        variances = source_variances(m)
        N = m.n.sum()
        overall_mean = m.s.sum(axis=0) / N
        overall_var = np.maximum(m.q.sum(axis=0) / N - overall_mean**2, 0.0)
        floor = _floor(m, self.floor)
        separate = {"mean": means, "var": np.maximum(variances, floor)}
        shared = ~np.asarray(specific, bool)
        pooled_mean, pooled_var = means.copy(), variances.copy()
        pooled_mean[:, shared] = overall_mean[shared]
        pooled_var[:, shared] = overall_var[shared]
        return separate, {"mean": pooled_mean, "var": np.maximum(pooled_var, floor)}

    def fit_shrunk(self, m: Moments, specific: np.ndarray) -> Params:
        """Per-source means shrunk by sample size (random intercept), one variance per column
        shared by the sources (floored like the others)."""
        _check_counts(m)
        means, sigma2 = shrunk_means(m, np.asarray(specific, bool))
        var = np.broadcast_to(np.maximum(sigma2, _floor(m, self.floor)), means.shape).copy()
        return {"mean": means, "var": var}

    def log_density(self, params: Params, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        mean, var = params["mean"][y], params["var"][y]
        return -0.5 * (((x - mean) ** 2) / var + np.log(2 * np.pi * var)).sum(axis=1)


@dataclass(frozen=True)
class GaussianUnit:
    """N(mu_k, I): the book's Gaussian family; pooled shares the means of shared columns."""

    name: str = "gaussian-unit"
    continuous: bool = True

    def configure(self, x: np.ndarray) -> Family:
        """Any finite numbers will do."""
        return self

    def fit_pair(self, x: np.ndarray, y: np.ndarray, K: int, specific: np.ndarray
                 ) -> tuple[Params, Params]:
        return self.fit_moments(fold_moments(x, y, K)[0], specific)

    def fit_moments(self, m: Moments, specific: np.ndarray) -> tuple[Params, Params]:
        """(separate, pooled) from per-source moments (K, p)."""
        _check_counts(m)
        means = m.s / m.n[:, None]
        pooled = means.copy()
        shared = ~np.asarray(specific, bool)
        pooled[:, shared] = (m.s.sum(axis=0) / m.n.sum())[shared]
        return {"mean": means}, {"mean": pooled}

    def fit_shrunk(self, m: Moments, specific: np.ndarray) -> Params:
        """Per-source means shrunk by sample size (random intercept); unit variances."""
        _check_counts(m)
        return {"mean": shrunk_means(m, np.asarray(specific, bool))[0]}

    def log_density(self, params: Params, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        diff = x - params["mean"][y]
        return -0.5 * (diff**2).sum(axis=1) - 0.5 * x.shape[1] * np.log(2 * np.pi)


@dataclass(frozen=True)
class TabularAR:
    """Order-1 AR over tokens 0..V-1 (chapter 5's tabular model) with 1/2 pseudo-counts."""

    name: str = "tabular-ar"
    pseudo_count: float = 0.5
    vocabulary: int = 2

    def configure(self, x: np.ndarray) -> Family:
        """Check the tokens and take the vocabulary size V from the whole data set."""
        if x.shape[1] < 2:
            raise InputError("tabular-ar needs at least 2 token columns (a sequence per row)")
        if np.any(x != np.round(x)) or np.any(x < 0):
            raise InputError("tabular-ar needs non-negative integer tokens in every column")
        if x.max() >= 64:
            raise InputError(f"tabular-ar allows tokens 0..63, got {int(x.max())}")
        return TabularAR(self.name, self.pseudo_count, max(int(x.max()) + 1, 2))

    def fit_pair(self, x: np.ndarray, y: np.ndarray, K: int, specific: np.ndarray
                 ) -> tuple[Params, Params]:
        tokens = x.astype(np.int64)
        V, T = self.vocabulary, tokens.shape[1] - 1
        counts = np.zeros((K, T, V, V))
        for t in range(T):
            np.add.at(counts, (y, t, tokens[:, t], tokens[:, t + 1]), 1.0)
        first = np.zeros((K, V))
        np.add.at(first, (y, tokens[:, 0]), 1.0)
        # transition t leads into column t + 1: it is shared unless that column is specific
        shared = ~np.asarray(specific, bool)[1:]
        pooled_counts = counts.copy()
        pooled_counts[:, shared] = counts[:, shared].sum(axis=0, keepdims=True)
        pooled_first = first.copy()
        if not specific[0]:
            pooled_first[:] = first.sum(axis=0, keepdims=True)

        def normalise(c: np.ndarray) -> np.ndarray:
            c = c + self.pseudo_count
            return c / c.sum(axis=-1, keepdims=True)

        return ({"first": normalise(first), "tables": normalise(counts)},
                {"first": normalise(pooled_first), "tables": normalise(pooled_counts)})

    def log_density(self, params: Params, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        tokens = x.astype(np.int64)
        out = np.log(params["first"][y, tokens[:, 0]])
        for t in range(tokens.shape[1] - 1):
            out += np.log(params["tables"][y, t, tokens[:, t], tokens[:, t + 1]])
        return out


def _families() -> dict[str, Family]:
    from multisource.pooling.conditional import LinearGaussian

    return {f.name: f for f in (GaussianDiagonal(), GaussianUnit(), TabularAR(),
                                LinearGaussian())}


FAMILIES: dict[str, Family] = _families()


def get_family(name: str) -> Family:
    """The family called `name`; unknown names are an InputError listing the known ones."""
    if name not in FAMILIES:
        raise InputError(f"family must be one of {', '.join(FAMILIES)}; got {name!r}")
    return FAMILIES[name]


def specific_mask(columns: Sequence[str], specific: Sequence[str] | None) -> np.ndarray:
    """Boolean mask of the source-specific columns (names must exist)."""
    mask = np.zeros(len(columns), bool)
    for name in specific or ():
        if name not in columns:
            raise InputError(f"specific column {name!r} is not a feature column; columns are "
                             f"{', '.join(columns)}")
        mask[list(columns).index(name)] = True
    return mask
