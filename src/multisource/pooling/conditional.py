"""A conditional family: y given features x, a Gaussian linear regression per source.

What practitioners usually choose between: one regression per group, one pooled regression,
or a mixed model. `linear` models log p(y | x, source) (a conditional generative model in the
paper's sense) with

- separate: each source's own least-squares coefficients and residual variance (its MLE);
- pooled: one regression and one residual variance for all sources;
- shrunk: shared slopes, per-source intercepts shrunk by sample size, one residual variance
  (the random-intercept mixed model, REML; `shrinkage`), as statsmodels' MixedLM fits it.

The response is one column of the file (`response`); the other columns are the features, with
an intercept added. Residual variances have a floor of `floor` times the pooled fit's residual
variance, so a source fitted exactly (fewer samples than coefficients) stays finite. Our
construction; `advise` scores it like the other families.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from multisource.common.validation import InputError
from multisource.pooling.shrinkage import GroupSums, fit_random_intercept, group_sums

Params = dict[str, np.ndarray]


def _design(x: np.ndarray, response: int) -> tuple[np.ndarray, np.ndarray]:
    """(X with an intercept column, y) from the data columns."""
    keep = np.arange(x.shape[1]) != response
    return np.column_stack([np.ones(len(x)), x[:, keep]]), x[:, response]


def _solve(xtx: np.ndarray, xty: np.ndarray) -> np.ndarray:
    """Least squares from normal equations (minimum-norm where they are singular)."""
    return np.linalg.pinv(xtx, hermitian=True) @ xty


def _rss(s: GroupSums, k: int | None, beta: np.ndarray) -> float:
    xtx = s.xtx.sum(axis=0) if k is None else s.xtx[k]
    xty = s.xty.sum(axis=0) if k is None else s.xty[k]
    yty = s.yty.sum() if k is None else s.yty[k]
    return float(max(yty - 2 * beta @ xty + beta @ xtx @ beta, 0.0))


@dataclass(frozen=True)
class LinearGaussian:
    """y | x, source ~ N(x' beta_k, sigma_k^2), with an intercept; see the module docstring."""

    name: str = "linear"
    continuous: bool = True
    response: int = -1
    residual_floor: float = 0.01

    def configure(self, x: np.ndarray) -> LinearGaussian:
        """Check that a response column is set and that there is at least one feature."""
        if not 0 <= self.response < x.shape[1]:
            raise InputError("the linear family needs a response column (--response NAME)")
        if x.shape[1] < 2:
            raise InputError("the linear family needs at least one feature besides the "
                             "response")
        return self

    def _sums(self, x: np.ndarray, y: np.ndarray, K: int, specific: np.ndarray) -> GroupSums:
        if np.asarray(specific, bool).any():
            raise InputError("the linear family takes no --specific columns")
        X, target = _design(x, self.response)
        return group_sums(X, target, y, K)

    def fit_pair(self, x: np.ndarray, y: np.ndarray, K: int, specific: np.ndarray
                 ) -> tuple[Params, Params]:
        """(separate, pooled) coefficients (K, q) and residual variances (K,)."""
        s = self._sums(x, y, K, specific)
        if np.any(s.n == 0):
            raise InputError("every source needs at least one sample in every training fold")
        pooled = _solve(s.xtx.sum(axis=0), s.xty.sum(axis=0))
        pooled_var = _rss(s, None, pooled) / s.n.sum()
        floor = self.residual_floor * (pooled_var if pooled_var > 0 else 1.0)
        coef = np.stack([_solve(s.xtx[k], s.xty[k]) for k in range(K)])
        var = np.array([_rss(s, k, coef[k]) / s.n[k] for k in range(K)])
        return ({"coef": coef, "var": np.maximum(var, floor)},
                {"coef": np.tile(pooled, (K, 1)), "var": np.full(K, max(pooled_var, floor))})

    def fit_shrunk_data(self, x: np.ndarray, y: np.ndarray, K: int, specific: np.ndarray
                        ) -> Params:
        """Random-intercept fit: shared slopes, intercepts beta_0 + b_k, one variance."""
        fit = fit_random_intercept(self._sums(x, y, K, specific))
        coef = np.tile(fit.beta, (K, 1))
        coef[:, 0] += fit.effects
        floor = self.residual_floor * (fit.sigma2 if fit.sigma2 > 0 else 1.0)
        return {"coef": coef, "var": np.full(K, max(fit.sigma2, floor))}

    def log_density(self, params: Params, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """log p(response_i | features_i, source y_i)."""
        X, target = _design(x, self.response)
        mean = np.einsum("ij,ij->i", X, params["coef"][y])
        var = params["var"][y]
        return -0.5 * ((target - mean) ** 2 / var + np.log(2 * np.pi * var))
