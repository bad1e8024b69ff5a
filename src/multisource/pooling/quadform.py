"""P(Q < 0) for Q = sum_j w_j chi2_{h_j}(nc_j), averaged over random sample counts.

Gil-Pelaez inversion (Imhof 1961): with phi(u) = prod_j (1 - i w_j u)^(-h_j/2)
exp(nc_j/2 * i w_j u / (1 - i w_j u)) (the characteristic function of Q at u/2),

    P(Q < 0) = 1/2 - (1/pi) int_0^inf Im phi(u) / u du = 1/2 - (1/pi) int_R Im phi(e^t) dt.

In t = log u the integrand is analytic in a strip around the real line and decays exponentially
at both ends, so the trapezoidal rule converges geometrically in the step. The non-central
factors oscillate about sqrt(nc) times per unit of t, so the step shrinks like 1/sqrt(nc).

Because the integral is linear in phi, an expectation over discrete sample counts moves inside
it: E_m[P(Q_m < 0)] = 1/2 - (1/pi) int Im E_m[phi_m(e^t)] dt, and when phi factorises into a
part depending on one count m and a part depending on another count M, the double sum over
(m, M) is a matrix product. That keeps exact expected risks over multinomial counts cheap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

TAIL = 1e-16  # integrand magnitude neglected at both ends of the grid


@dataclass(frozen=True)
class LogGrid:
    """Points u = exp(t) of the trapezoidal rule in t and its step."""

    u: np.ndarray
    step: float

    def integrate_cdf(self, phi: np.ndarray) -> np.ndarray:
        """1/2 - (1/pi) * step * sum_t Im phi(u_t), over the last axis of `phi`."""
        return 0.5 - self.step * np.imag(phi).sum(axis=-1) / math.pi


def log_grid(weights: list[np.ndarray], dofs: list[int],
             noncentralities: list[np.ndarray] | None = None) -> LogGrid:
    """A trapezoidal grid that resolves every form with these weights and non-centralities.

    `weights[j]` may be an array of the j-th weight over many forms; the grid covers the
    smallest and largest |w| of all of them and the largest non-centrality.
    """
    noncentralities = noncentralities or [np.zeros(1) for _ in weights]
    abs_w = [np.abs(np.asarray(w, float)) for w in weights]
    nc = [np.asarray(c, float) for c in noncentralities]
    total_dof = sum(dofs)
    # Small u: |Im phi(u)| <= u * sum_j (h_j + nc_j) |w_j| / 2.
    slope = sum(0.5 * (h + float(c.max())) * float(w.max()) for w, h, c in
                zip(abs_w, dofs, nc, strict=True))
    t_lo = math.log(TAIL / max(slope, 1e-300))
    # Large u: |phi(u)| <= prod_j (w_j u)^(-h_j/2) once u > 1/min|w|.
    w_min = min(float(w[w > 0].min()) for w in abs_w if np.any(w > 0))
    t_hi = -math.log(w_min) + 2.0 * -math.log(TAIL) / max(total_dof, 1)
    max_nc = max(float(c.max()) for c in nc)
    step = min(0.2, 1.2 / math.sqrt(1.0 + max_nc))
    t = np.arange(t_lo, t_hi + step, step)
    return LogGrid(np.exp(t), step)


def chi2_factor(u: np.ndarray, weight: np.ndarray | float, dof: int,
                noncentrality: np.ndarray | float = 0.0) -> np.ndarray:
    """phi of w * chi2_h(nc) at u/2: (1 - i w u)^(-h/2) exp(nc/2 * i w u / (1 - i w u)).

    `weight` and `noncentrality` broadcast against `u` (e.g. shape (R, 1) against (T,)).
    """
    z = 1j * np.asarray(weight, float) * u
    one_minus = 1.0 - z
    shift = 0.5 * np.asarray(noncentrality, float) * z / one_minus
    log_phi = -0.5 * dof * np.log(one_minus) + shift
    return np.exp(log_phi)


def quadratic_form_cdf_at_zero(weights: list[np.ndarray], dofs: list[int],
                               noncentralities: list[np.ndarray] | None = None) -> np.ndarray:
    """P(sum_j w_j chi2_{h_j}(nc_j) < 0), vectorised over arrays of weights/non-centralities."""
    noncentralities = noncentralities or [np.zeros_like(np.asarray(w, float)) for w in weights]
    grid = log_grid(weights, dofs, noncentralities)
    shape = np.broadcast(*[np.asarray(w) for w in weights],
                         *[np.asarray(c) for c in noncentralities]).shape
    phi = np.ones((*shape, grid.u.size), complex)
    for w, h, c in zip(weights, dofs, noncentralities, strict=True):
        w = np.broadcast_to(np.asarray(w, float), shape)[..., None]
        c = np.broadcast_to(np.asarray(c, float), shape)[..., None]
        phi = phi * chi2_factor(grid.u, w, h, c)
    return grid.integrate_cdf(phi)
