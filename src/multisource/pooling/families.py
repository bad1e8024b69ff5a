"""Model families the decision rule can fit separately, pooled, or partially pooled.

A family fits two sets of per-source parameters on the same data: `separate` (each source's
own MLE) and `pooled` (the multi-source MLE, whose parameters outside the specific columns are
fitted on all sources together). A partially pooled fit mixes them parameter by parameter,
(1 - w) * separate + w * pooled, so w = 0 and w = 1 are the two MLEs. `log_density` scores
held-out samples under their own source's conditional.

Families (all ours, chosen because their fits are closed-form):
- `gaussian`: independent coordinates, N(mu_kj, sigma_kj^2); pooled shares the mean and the
  variance of every non-specific column. Variances have a floor of 1e-6 times the column's
  overall variance so a constant column does not give an infinite density.
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


def _source_moments(x: np.ndarray, y: np.ndarray, K: int) -> tuple[np.ndarray, np.ndarray]:
    onehot = (y[:, None] == np.arange(K)).astype(float)
    counts = onehot.sum(axis=0)
    if np.any(counts == 0):
        raise InputError("every source needs at least one sample in every training fold")
    means = onehot.T @ x / counts[:, None]
    second = onehot.T @ (x * x) / counts[:, None]
    return means, np.maximum(second - means**2, 0.0)


@dataclass(frozen=True)
class GaussianDiagonal:
    """Independent Gaussian coordinates; pooled shares mean and variance of shared columns."""

    name: str = "gaussian"
    continuous: bool = True

    def configure(self, x: np.ndarray) -> Family:
        """Any finite numbers will do."""
        return self

    def fit_pair(self, x: np.ndarray, y: np.ndarray, K: int, specific: np.ndarray
                 ) -> tuple[Params, Params]:
        means, variances = _source_moments(x, y, K)
        overall_mean = x.mean(axis=0)
        overall_var = x.var(axis=0)
        floor = 1e-6 * np.maximum(overall_var, 1e-12)
        separate = {"mean": means, "var": np.maximum(variances, floor)}
        shared = ~np.asarray(specific, bool)
        pooled_mean, pooled_var = means.copy(), variances.copy()
        pooled_mean[:, shared] = overall_mean[shared]
        pooled_var[:, shared] = overall_var[shared]
        return separate, {"mean": pooled_mean, "var": np.maximum(pooled_var, floor)}

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
        means, _ = _source_moments(x, y, K)
        pooled = means.copy()
        shared = ~np.asarray(specific, bool)
        pooled[:, shared] = x[:, shared].mean(axis=0)
        return {"mean": means}, {"mean": pooled}

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


FAMILIES: dict[str, Family] = {f.name: f for f in (GaussianDiagonal(), GaussianUnit(),
                                                    TabularAR())}


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
