"""`advise`'s decision rule for the Gaussian families from per-(fold, source) sums.

A row's held-out log-likelihood under a diagonal Gaussian fit is c + w'z, z = (u, u^2) (u the
standardised features), with coefficients (c, w) fixed within a (fold, source) cell: the fit
on the other folds, for that source. So the mean and the variance of every strategy's held-out
values and of every paired difference, over all rows or over one source's, follow from each
cell's count, sum of z and scatter sum (z - zbar)(z - zbar)' (`CellSums`; the centred form
keeps the variance of large, nearly constant values accurate).

The fits and the partial weight chosen by the inner cross-validation come from per-cell
`families.Moments` exactly as in `advise._score` (same calls, same order), so from the same
moments they are the same numbers. Two strategies are the same fit where their parameters are
equal in every fold (`advise` compares their held-out rows; equal parameters give equal rows).

Shared by `sufficient` (data in memory) and `outofcore` (sums streamed from a file).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from multisource.pooling.advise import STRATEGIES
from multisource.pooling.crossover import MeanInterval, t_quantile
from multisource.pooling.families import Family, Moments, Params, gaussian_sum_loglik, mix

PLAIN = ("pooled", "separate")
TIE_ORDER = {s: i for i, s in enumerate(("pooled", "separate", "shrunk", "partial"))}


@dataclass(frozen=True)
class CellSums:
    """Per-(fold, source) count n (F, K), sum of z = (u, u^2) (F, K, 2p) and scatter sum of
    (z - zbar)(z - zbar)' (F, K, 2p, 2p), zbar the cell's mean of z."""

    n: np.ndarray
    z: np.ndarray
    scatter: np.ndarray

    @classmethod
    def from_raw(cls, n: np.ndarray, z: np.ndarray, zz: np.ndarray) -> CellSums:
        """From sums of z and of z z'."""
        mean = z / np.maximum(n, 1.0)[..., None]
        return cls(n, z, zz - n[..., None, None] * mean[..., :, None] * mean[..., None, :])

    @property
    def mean(self) -> np.ndarray:
        """Each cell's mean of z (0 in a cell without rows)."""
        return self.z / np.maximum(self.n, 1.0)[..., None]

    def moments(self) -> Moments:
        """The Gaussian families' sufficient statistics (F, K), (F, K, p), (F, K, p)."""
        p = self.z.shape[-1] // 2
        return Moments(self.n, self.z[..., :p], self.z[..., p:])


@dataclass(frozen=True)
class Quadratic:
    """Per-(fold, source) coefficients of a per-row value c + w'z, z = (u, u^2)."""

    c: np.ndarray   # (F, K)
    w: np.ndarray   # (F, K, 2p)

    def __sub__(self, other: Quadratic) -> Quadratic:
        return Quadratic(self.c - other.c, self.w - other.w)

    def cell_means(self, sums: CellSums) -> np.ndarray:
        """Mean value in every cell (F, K)."""
        return self.c + np.einsum("fka,fka->fk", self.w, sums.mean)

    def stats(self, sums: CellSums, source: int | None = None) -> tuple[float, float, int]:
        """(mean, variance with ddof 1, count) of the per-row values, over one source's rows
        if given: the within-cell parts from the scatter sums, plus the spread of the cell
        means."""
        keep = (slice(None), slice(None) if source is None else slice(source, source + 1))
        n, means = sums.n[keep], self.cell_means(sums)[keep]
        count = float(n.sum())
        mean = float((n * means).sum()) / count
        within = float(np.einsum("fka,fkab,fkb->", self.w[keep], sums.scatter[keep],
                                 self.w[keep]))
        between = float((n * (means - mean) ** 2).sum())
        return mean, max(within + between, 0.0) / (count - 1), int(count)

    def interval(self, sums: CellSums, level: float, source: int | None = None
                 ) -> MeanInterval:
        """Student-t interval of the mean per-row value, as `crossover.t_interval` makes it
        from the rows."""
        mean, var, count = self.stats(sums, source)
        half = float(t_quantile(count - 1, 0.5 + level / 2) * np.sqrt(var) / np.sqrt(count))
        return MeanInterval(mean, mean - half, mean + half, count)


def coefficients(params: Params) -> tuple[np.ndarray, np.ndarray]:
    """(c (K,), w (K, 2p)) of log N(u; mean, diag var) = c + w'(u, u^2) (var 1 if absent)."""
    mean = params["mean"]
    var = params["var"] if "var" in params else np.ones_like(mean)
    c = -0.5 * (mean**2 / var + np.log(2 * np.pi * var)).sum(axis=1)
    return c, np.concatenate([mean / var, -0.5 / var], axis=1)


@dataclass(frozen=True)
class Scored:
    """Every strategy's fit per outer fold, the weights partial pooling chose, and the weight
    that is best on all the data (`advise._score` without the rows)."""

    params: dict[str, list[Params]]
    fold_weights: tuple[float, ...]
    weight: float

    @property
    def names(self) -> list[str]:
        """The strategies scored, in `advise`'s order."""
        return list(self.params)

    def quadratic(self, name: str) -> Quadratic:
        """Coefficients of the strategy's held-out log-likelihood per (fold, source)."""
        pairs = [coefficients(p) for p in self.params[name]]
        return Quadratic(np.stack([c for c, _ in pairs]), np.stack([w for _, w in pairs]))

    def same(self, a: str, b: str) -> bool:
        """Whether strategies a and b are the same fit in every fold."""
        return all(pa.keys() == pb.keys() and all(np.array_equal(pa[k], pb[k]) for k in pa)
                   for pa, pb in zip(self.params[a], self.params[b], strict=True))

    def finite(self) -> bool:
        """Whether every fitted parameter is a finite number."""
        return all(np.all(np.isfinite(v)) for ps in self.params.values() for p in ps
                   for v in p.values())


def score_moments(fam: Family, moments: Moments, specific: np.ndarray, grid: np.ndarray
                  ) -> Scored:
    """The fits of `advise._score` from per-(fold, source) moments (F, K, ...)."""
    folds = moments.n.shape[0]
    names = list(STRATEGIES) if hasattr(fam, "fit_shrunk") else list(STRATEGIES[:3])
    params: dict[str, list[Params]] = {name: [] for name in names}
    by_weight = np.zeros((folds, grid.size))
    fold_weights = []
    for f in range(folds):
        train = np.arange(folds) != f
        separate, pooled = fam.fit_moments(moments[train].total(), specific)
        inner = np.zeros(grid.size)
        for g in np.flatnonzero(train):
            inner_train = train & (np.arange(folds) != g)
            sep_g, pool_g = fam.fit_moments(moments[inner_train].total(), specific)
            for j, w in enumerate(grid):
                inner[j] += gaussian_sum_loglik(mix(sep_g, pool_g, float(w)), moments[g])
        best = int(np.argmax(inner))
        fold_weights.append(float(grid[best]))
        for j, w in enumerate(grid):
            by_weight[f, j] = gaussian_sum_loglik(mix(separate, pooled, float(w)), moments[f])
        params["pooled"].append(pooled)
        params["separate"].append(separate)
        params["partial"].append(mix(separate, pooled, grid[best]))
        if "shrunk" in params:
            params["shrunk"].append(fam.fit_shrunk(moments[train].total(), specific))
    weight = float(grid[int(np.argmax(by_weight.sum(axis=0)))])
    return Scored(params, tuple(fold_weights), weight)


@dataclass(frozen=True)
class Decision:
    """`advise._decide` from sums: the best candidate, the others it is compared with (their
    differences' intervals at the corrected level `each`)."""

    recommendation: str
    comparisons: tuple[tuple[str, MeanInterval], ...]
    each: float


def decide(scored: Scored, quad: dict[str, Quadratic], scores: dict[str, MeanInterval],
           sums: CellSums, level: float) -> Decision:
    """Best candidate by mean score (ties to the plain fits), Bonferroni-corrected intervals
    of its differences with every candidate that is not the same fit."""
    candidates = [s for s in scored.names
                  if s in PLAIN or not any(scored.same(s, e) for e in PLAIN)]
    best = max(candidates, key=lambda s: (scores[s].mean, -TIE_ORDER[s]))
    others = [o for o in candidates if o != best and not scored.same(o, best)]
    each = 1.0 - (1.0 - level) / max(len(others), 1)
    return Decision(best, tuple((o, (quad[best] - quad[o]).interval(sums, each))
                                for o in others), each)
