"""Energy-based sources: p(x | k) = exp(-E(x, k)) / Z_k, with Z_k computed exactly.

A secondary summary of the paper says it instantiates the bound for "flexible" energy-based
models (EBMs), with beta_sim = the fraction of shared MLP parameters; the paper's model class
could not be obtained. The classes here are our own
realizable constructions, small enough that Z needs neither MCMC nor approximation beyond
quadrature:

Ising family on {-1,+1}^d (an exponential family; the MLE is a convex problem). The parameter of
source k is theta_k = (h_k, J_k): a field per spin and a coupling per edge of a graph (a ring by
default), log p(x | k) = theta_k . T(x) - log Z_k with T(x) = (x_i, x_i x_j). A boolean mask says
which of the m = d + |edges| parameters are shared (psi); beta_sim = (#shared) / m. Couplings
become shared first, then fields, so beta_sim = |edges| / m is the classical "shared couplings,
source-specific fields" model. The MLE is taken over the box |theta| <= bound (the truth lies
inside): with few samples per source the unconstrained MLE may not exist. L-BFGS-B is
followed by projected Newton steps, so the fit is exact to rounding error.

MLP energy (discrete {-1,+1}^d or continuous on the box [-1, 1]^2). E(x, k) = -a_s . tanh(W_s x +
b_s) - a_k . tanh(W_k x + b_k): H_s shared hidden units and H_p units of source k. Each unit has
d + 2 parameters, so beta_sim = H_s / (H_s + H_p). The single-source class has every unit
source-specific. Every parameter set is bounded. On the spins it is the box `SPIN_BOX`
(|W|, |b| <= 2, |a| <= 4): without a bound, units sharpen into threshold functions, the
likelihood keeps growing and the MLE does not exist. On the square the weights are mapped into a
bounded set (see `bounded_params`), because a quadrature partition function can otherwise be
gamed. Fits are L-BFGS-B runs from several random starts (`multisource.models.split_fit`) on the
exact NLL (enumeration or quadrature).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import minimize

from multisource.common.validation import InputError, check_float, check_int
from multisource.metrics import tv_on_grid
from multisource.models.autoregressive import average_tv as average_tv  # re-exported
from multisource.models.sharing import SharedUnitSplit
from multisource.models.split_fit import (
    Problem,
    SplitFit,
    UnitBox,
    fit_from,
    fit_split_network,
    gaussian_in_box,
    uniform_in_box,
)

# ---------------------------------------------------------------------------------------------
# Enumerated spin states and the Ising family
# ---------------------------------------------------------------------------------------------


def spin_states(d: int) -> np.ndarray:
    """All 2^d states of {-1,+1}^d, shape (2^d, d), float64."""
    d = check_int("d", d, minimum=1, maximum=16)
    return np.array(list(itertools.product((-1.0, 1.0), repeat=d)))


def ring_edges(d: int) -> list[tuple[int, int]]:
    """Edges (i, i+1 mod d) of a ring of d spins (d >= 3), or the single edge for d = 2."""
    d = check_int("d", d, minimum=2, maximum=16)
    return [(0, 1)] if d == 2 else [(i, (i + 1) % d) for i in range(d)]


def ising_statistics(states: np.ndarray, edges: list[tuple[int, int]]) -> np.ndarray:
    """Sufficient statistics T(x) = (x_1..x_d, x_i x_j for each edge), shape (n_states, m)."""
    states = np.asarray(states, float)
    pairs = np.array([states[:, i] * states[:, j] for i, j in edges]).T.reshape(len(states), -1)
    return np.concatenate([states, pairs], axis=1)


def ising_shared_mask(d: int, n_edges: int, beta_sim: float) -> np.ndarray:
    """Which of the m = d + n_edges parameters are shared: beta_sim m of them, couplings first.

    beta_sim * m must be an integer (to 1e-9). Order of the parameters: d fields, then couplings.
    """
    d = check_int("d", d, minimum=1, maximum=16)
    n_edges = check_int("n_edges", n_edges, minimum=0)
    beta_sim = check_float("beta_sim", beta_sim, minimum=0.0, maximum=1.0)
    m = d + n_edges
    count = beta_sim * m
    if abs(count - round(count)) > 1e-9:
        raise InputError(f"beta_sim * m must be an integer (m = {m} parameters), got "
                         f"beta_sim={beta_sim}")
    order = list(range(d, m)) + list(range(d))          # couplings first, then fields
    mask = np.zeros(m, dtype=bool)
    mask[order[: round(count)]] = True
    return mask


def random_ising_params(K: int, shared: np.ndarray, d: int, rng: np.random.Generator, *,
                        field_scale: float = 0.5, coupling_scale: float = 0.5,
                        n_draws: int | None = None) -> np.ndarray:
    """True parameters ([n_draws,] K, m): fields ~ U(-field_scale, field_scale), couplings
    ~ U(-coupling_scale, coupling_scale); shared entries take one draw for all sources."""
    K = check_int("K", K, minimum=1)
    shared = np.asarray(shared, bool)
    m = shared.shape[0]
    lead = () if n_draws is None else (check_int("n_draws", n_draws, minimum=1),)
    scale = np.where(np.arange(m) < d, field_scale, coupling_scale)
    theta = rng.uniform(-1.0, 1.0, size=(*lead, K, m)) * scale
    common = rng.uniform(-1.0, 1.0, size=(*lead, 1, m)) * scale
    theta[..., shared] = np.broadcast_to(common, theta.shape)[..., shared]
    return theta


def ising_log_probs(theta: np.ndarray, stats: np.ndarray) -> np.ndarray:
    """log p(x | k) for every state: theta (..., K, m), stats (n_states, m) -> (..., K, states)."""
    logits = np.asarray(theta, float) @ np.asarray(stats, float).T
    logits = logits - logits.max(axis=-1, keepdims=True)
    return logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))


def sample_state_counts(probs: np.ndarray, n: int, rng: np.random.Generator,
                        p_y: np.ndarray | None = None) -> np.ndarray:
    """Counts of each enumerated state among n pairs (y ~ p_Y, x | y ~ probs[y]).

    probs: (S, K, n_states) for S independent truths (seeds); returns (S, K, n_states) int64.
    """
    probs = np.asarray(probs, float)
    if probs.ndim != 3:
        raise InputError(f"probs must have shape (S, K, n_states), got {probs.shape}")
    n = check_int("n", n, minimum=1)
    S, K, _ = probs.shape
    weights = np.full(K, 1.0 / K) if p_y is None else np.asarray(p_y, float)
    n_k = rng.multinomial(n, weights, size=S)
    probs = probs / probs.sum(axis=-1, keepdims=True)
    return rng.multinomial(n_k, probs)


@dataclass(frozen=True)
class IsingFit:
    """Box-constrained MLE of the Ising family: parameters (K, m), mean NLL, solver status."""

    theta: np.ndarray
    train_nll: float
    converged: bool
    at_bound: int          # number of free parameters that ended on the box boundary


def ising_nll(theta: np.ndarray, stats: np.ndarray, counts: np.ndarray) -> float:
    """Mean NLL per sample of data summarised by counts (K, n_states) under theta (K, m)."""
    counts = np.asarray(counts, float)
    return float(-(counts * ising_log_probs(theta, stats)).sum() / counts.sum())


def fit_ising(counts: np.ndarray, stats: np.ndarray, shared: np.ndarray | None, *,
              bound: float = 3.0) -> IsingFit:
    """MLE over |theta| <= bound by L-BFGS-B with the exact gradient (data minus model moments).

    shared=None (or all False): the single-source MLE (K independent problems solved jointly);
    otherwise the multi-source MLE with one value per shared parameter. Convex, so the solver's
    optimum is global up to its tolerance.
    """
    counts = np.asarray(counts, float)
    stats = np.asarray(stats, float)
    K, n_states = counts.shape
    m = stats.shape[1]
    if stats.shape[0] != n_states:
        raise InputError(f"stats must have {n_states} rows (one per state), got {stats.shape[0]}")
    bound = check_float("bound", bound, minimum=1e-3, maximum=100.0)
    shared = np.zeros(m, bool) if shared is None else np.asarray(shared, bool)
    if shared.shape != (m,):
        raise InputError(f"shared must be a boolean mask of length m={m}")
    n = counts.sum()
    n_k = counts.sum(axis=1)
    data_moments = counts @ stats                            # (K, m)
    s, p = int(shared.sum()), int((~shared).sum())

    def unpack(z: np.ndarray) -> np.ndarray:
        theta = np.empty((K, m))
        theta[:, shared] = z[:s]
        theta[:, ~shared] = z[s:].reshape(K, p)
        return theta

    def objective(z: np.ndarray) -> tuple[float, np.ndarray]:
        theta = unpack(z)
        logp = ising_log_probs(theta, stats)
        value = -(counts * logp).sum() / n
        grad = -(data_moments - n_k[:, None] * (np.exp(logp) @ stats)) / n   # (K, m)
        return value, np.concatenate([grad[:, shared].sum(axis=0), grad[:, ~shared].ravel()])

    def hessian(z: np.ndarray) -> np.ndarray:
        probs = np.exp(ising_log_probs(unpack(z), stats))                       # (K, states)
        mean = probs @ stats
        blocks = [(n_k[k] / n) * ((stats.T * probs[k]) @ stats - np.outer(mean[k], mean[k]))
                  for k in range(K)]                                            # (m, m) each
        size = s + K * p
        h = np.zeros((size, size))
        for k, block in enumerate(blocks):
            own = slice(s + k * p, s + (k + 1) * p)
            h[:s, :s] += block[np.ix_(shared, shared)]
            h[:s, own] = block[np.ix_(shared, ~shared)]
            h[own, :s] = block[np.ix_(~shared, shared)]
            h[own, own] = block[np.ix_(~shared, ~shared)]
        return h

    z0 = np.zeros(s + K * p)
    result = minimize(objective, z0, jac=True, method="L-BFGS-B",
                      bounds=[(-bound, bound)] * z0.size,
                      options={"maxiter": 2000, "ftol": 1e-10, "gtol": 1e-7})
    z, value, gradient = _projected_newton(objective, hessian, result.x, bound)
    converged = bool(np.abs(gradient).max(initial=0.0) < 1e-9)
    at_bound = int((np.abs(z) > bound - 1e-6).sum())
    return IsingFit(unpack(z), value, converged, at_bound)


def _projected_newton(objective, hessian, z: np.ndarray, bound: float, *,
                      iterations: int = 30) -> tuple[np.ndarray, float, np.ndarray]:
    """Polish a box-constrained convex minimum with Newton steps on the free coordinates.

    L-BFGS-B stops at a tolerance; a few exact Newton steps take the solution to rounding
    error, so that recomputing a stored table on another machine or thread count reproduces it
    to ~1e-12. Coordinates on the box whose gradient pushes outwards stay fixed. Returns the
    point, its value and its projected gradient.
    """
    def projected(z: np.ndarray, grad: np.ndarray) -> np.ndarray:
        blocked = ((z >= bound) & (grad < 0)) | ((z <= -bound) & (grad > 0))
        return np.where(blocked, 0.0, grad)

    z = np.clip(z, -bound, bound)
    value, grad = objective(z)
    for _ in range(iterations):
        free = projected(z, grad) != 0.0
        if np.abs(projected(z, grad)).max(initial=0.0) < 1e-13 or not free.any():
            break
        h = hessian(z)[np.ix_(free, free)]
        step = np.zeros_like(z)
        step[free] = -np.linalg.solve(h + 1e-12 * np.eye(h.shape[0]), grad[free])
        for scale in 0.5 ** np.arange(30):
            trial = np.clip(z + scale * step, -bound, bound)
            trial_value, trial_grad = objective(trial)
            if trial_value <= value:
                break
        else:
            break
        if trial_value == value and np.array_equal(trial, z):
            break
        z, value, grad = trial, trial_value, trial_grad
    return z, float(value), projected(z, grad)


# ---------------------------------------------------------------------------------------------
# MLP energies (discrete and continuous)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MLPEnergySpec(SharedUnitSplit):
    """E(x, k) = -a_s . tanh(W_s x + b_s) - a_k . tanh(W_k x + b_k) on R^d, K sources."""

    d: int
    K: int
    shared_units: int
    specific_units: int

    def __post_init__(self) -> None:
        check_int("d", self.d, minimum=1, maximum=16)
        check_int("K", self.K, minimum=1)
        check_int("shared_units", self.shared_units, minimum=0)
        check_int("specific_units", self.specific_units, minimum=0)
        if self.shared_units + self.specific_units == 0:
            raise InputError("shared_units + specific_units must be >= 1, got 0")

    @property
    def params_per_unit(self) -> int:
        """Input weights, bias and output weight of one hidden unit: d + 2."""
        return self.d + 2


    def single(self) -> MLPEnergySpec:
        """The single-source class: every unit source-specific (K separate networks)."""
        return MLPEnergySpec(self.d, self.K, 0, self.shared_units + self.specific_units)


SPIN_BOX = UnitBox(hidden=2.0, output=4.0)
"""The bounded parameter set of the spin MLP energy: |W|, |b| <= 2 and |a| <= 4 entrywise."""


def mlp_shapes(spec: MLPEnergySpec, restarts: int) -> dict[str, tuple[int, ...]]:
    """Shapes of the parameter tensors, with a leading restart axis."""
    d, K, Hs, Hp = spec.d, spec.K, spec.shared_units, spec.specific_units
    return {"Ws": (restarts, Hs, d), "bs": (restarts, Hs), "as": (restarts, Hs),
            "Wp": (restarts, K, Hp, d), "bp": (restarts, K, Hp), "ap": (restarts, K, Hp)}


def init_mlp_energy(spec: MLPEnergySpec, restarts: int, generator: torch.Generator, *,
                    weight_scale: float = 1.0, head_scale: float = 1.0
                    ) -> dict[str, torch.Tensor]:
    """Random parameters with a leading restart axis R (Gaussian, sd weight/head_scale)."""
    restarts = check_int("restarts", restarts, minimum=1)
    return {name: (head_scale if name[0] == "a" else weight_scale)
            * torch.randn(*shape, generator=generator, dtype=torch.float64)
            for name, shape in mlp_shapes(spec, restarts).items()}


def teacher_mlp_energy(spec: MLPEnergySpec, generator: torch.Generator, *,
                       box: UnitBox = SPIN_BOX, fraction: float = 0.5
                       ) -> dict[str, torch.Tensor]:
    """A teacher inside the box: every parameter uniform on [-fraction bound, fraction bound]."""
    return uniform_in_box(mlp_shapes(spec, 1), box, fraction, generator)


def mlp_energy(params: dict[str, torch.Tensor], points: torch.Tensor) -> torch.Tensor:
    """Energies of every source at every point: points (P, d) -> (R, K, P)."""
    hs = torch.tanh(torch.einsum("pd,rhd->rph", points, params["Ws"]) + params["bs"][:, None])
    shared = -torch.einsum("rph,rh->rp", hs, params["as"])[:, None]             # (R, 1, P)
    hp = torch.tanh(torch.einsum("pd,rkhd->rkph", points, params["Wp"])
                    + params["bp"][:, :, None])
    return shared - torch.einsum("rkph,rkh->rkp", hp, params["ap"])


def energy_gradient_bound(params: dict[str, torch.Tensor]) -> np.ndarray:
    """Upper bound on |grad_x E(x, k)| (Euclidean), per restart and source: (R, K).

    |d tanh| <= 1, so |grad E| <= sum over units of |a_j| |w_j|.
    """
    shared = (params["as"].abs() * params["Ws"].norm(dim=-1)).sum(-1)             # (R,)
    specific = (params["ap"].abs() * params["Wp"].norm(dim=-1)).sum(-1)           # (R, K)
    return (shared[:, None] + specific).detach().numpy()


@dataclass(frozen=True)
class EnergyFit:
    """A fitted MLP energy (restart axis of size 1), its mean training NLL, the mean NLL of every
    first-stage random start, and optimiser diagnostics."""

    params: dict[str, torch.Tensor]
    train_nll: float
    restart_nll: np.ndarray
    projected_gradient: float = 0.0
    at_bound: int = 0


def _energy_fit(fit: SplitFit) -> EnergyFit:
    return EnergyFit(fit.params, fit.train_nll, fit.restart_nll, fit.projected_gradient,
                     fit.at_bound)


def _fit(problem: Problem, shapes: dict[str, tuple[int, ...]], *, restarts: int, steps: int,
         screen: int | None, init_scale: float, generator: torch.Generator | None,
         start: dict[str, torch.Tensor] | None) -> EnergyFit:
    """Random-restart MLE (`split_fit.fit_split_network`), or one run from `start`."""
    steps = check_int("steps", steps, minimum=0)
    if start is not None:
        return _energy_fit(fit_from(problem, start, steps))
    if generator is None:
        raise InputError("generator is required for random starts (or give start=)")
    check_int("restarts", restarts, minimum=1)
    box = problem.box or UnitBox(1e3, 1e3)
    first = gaussian_in_box(shapes, box, init_scale, generator)
    second = gaussian_in_box(shapes, box, init_scale, generator)
    return _energy_fit(fit_split_network(problem, first, second, steps, screen))


def discrete_log_probs(params: dict[str, torch.Tensor], states: torch.Tensor) -> torch.Tensor:
    """log p(x | k) on enumerated states (P, d): (R, K, P), log Z by logsumexp over all states."""
    neg = -mlp_energy(params, states)
    return neg - torch.logsumexp(neg, dim=-1, keepdim=True)


def discrete_mlp_problem(spec: MLPEnergySpec, counts: np.ndarray, states: np.ndarray,
                         box: UnitBox = SPIN_BOX) -> Problem:
    """The likelihood of state counts (K, n_states) under the class `spec`, over the box."""
    counts_t = torch.as_tensor(np.asarray(counts), dtype=torch.float64)
    states_t = torch.as_tensor(np.asarray(states), dtype=torch.float64)
    if counts_t.shape != (spec.K, states_t.shape[0]):
        raise InputError(f"counts must have shape (K, n_states)=({spec.K}, {states_t.shape[0]})")

    def per_source_nll(params: dict[str, torch.Tensor]) -> torch.Tensor:
        return -(counts_t * discrete_log_probs(params, states_t)).sum(-1)

    return Problem(per_source_nll, float(counts_t.sum()), box,
                   _fast_discrete_nll(states_t.numpy(), counts_t.numpy()))


def _fast_discrete_nll(states: np.ndarray, counts: np.ndarray):
    """Hand-written NLL and gradient of one parameter set (see `split_fit.FastNLL`)."""
    n_k = counts.sum(-1, keepdims=True)

    def value_and_grad(p: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        hs = np.tanh(states @ p["Ws"].T + p["bs"])                               # (S, Hs)
        hp = np.tanh(states @ p["Wp"].transpose(0, 2, 1) + p["bp"][:, None, :])  # (K, S, Hp)
        neg = (hs @ p["as"])[None] + (hp @ p["ap"][:, :, None])[..., 0]          # (K, S)
        neg = neg - neg.max(-1, keepdims=True)
        logp = neg - np.log(np.exp(neg).sum(-1, keepdims=True))
        values = -(counts * logp).sum(-1)
        g = n_k * np.exp(logp) - counts                      # d(total NLL) / d(-E)
        g_shared = g.sum(0)
        dzs = g_shared[:, None] * p["as"][None] * (1.0 - hs**2)
        dzp = g[:, :, None] * p["ap"][:, None, :] * (1.0 - hp**2)
        grads = {"Ws": dzs.T @ states, "bs": dzs.sum(0), "as": hs.T @ g_shared,
                 "Wp": dzp.transpose(0, 2, 1) @ states, "bp": dzp.sum(1),
                 "ap": (g[:, :, None] * hp).sum(1)}
        return values, grads

    return value_and_grad


def fit_discrete_mlp(spec: MLPEnergySpec, counts: np.ndarray, states: np.ndarray, *,
                     restarts: int = 3, steps: int = 300, screen: int | None = None,
                     init_scale: float = 0.5,
                     generator: torch.Generator | None = None, box: UnitBox = SPIN_BOX,
                     start: dict[str, torch.Tensor] | None = None) -> EnergyFit:
    """MLE of the MLP energy over the box from counts (K, n_states); exact log Z. Restarts as in
    `multisource.models.split_fit`; `start` gives one run from that point instead."""
    return _fit(discrete_mlp_problem(spec, counts, states, box), mlp_shapes(spec, restarts),
                restarts=restarts, steps=steps, screen=screen, init_scale=init_scale,
                generator=generator, start=start)


def discrete_nll(params: dict[str, torch.Tensor], states: np.ndarray, counts: np.ndarray
                 ) -> float:
    """Mean NLL per sample (first restart) of data summarised by counts (K, n_states)."""
    counts_t = torch.as_tensor(np.asarray(counts), dtype=torch.float64)
    with torch.no_grad():
        logp = discrete_log_probs(params, torch.as_tensor(np.asarray(states), dtype=torch.float64))
    return float(-(counts_t * logp[0]).sum() / counts_t.sum())


# ---------------------------------------------------------------------------------------------
# Continuous EBM on the box [-1, 1]^2
# ---------------------------------------------------------------------------------------------

BOX_BOUNDS: tuple[float, float] = (3.0, 2.0)
"""Default (input-weight bound, output-weight bound) of the box family."""


def bounded_params(params: dict[str, torch.Tensor], bounds: tuple[float, float]
                   ) -> dict[str, torch.Tensor]:
    """Effective parameters of the box family: W = c_w tanh(W_raw / c_w), a = c_a tanh(a_raw / c_a).

    Without a bound, maximum likelihood with a quadrature partition function can be gamed: very
    steep units put mass between the quadrature nodes, where Z does not see it, and the training
    NLL diverges. Bounded weights bound |grad E| <= H c_a c_w sqrt(d) and keep every density in
    the class smooth at the scale of the nodes. The teacher uses the same map, so the class stays
    realizable.
    """
    c_w, c_a = (check_float("input bound", bounds[0], minimum=1e-3),
                check_float("output bound", bounds[1], minimum=1e-3))
    out = dict(params)
    for name in ("Ws", "Wp"):
        out[name] = c_w * torch.tanh(params[name] / c_w)
    for name in ("as", "ap"):
        out[name] = c_a * torch.tanh(params[name] / c_a)
    return out


@dataclass(frozen=True)
class Quadrature:
    """Tensor Gauss-Legendre rule on [-1, 1]^d: nodes (P, d), weights (P,)."""

    nodes: np.ndarray
    weights: np.ndarray
    per_axis: int


def gauss_legendre_box(per_axis: int, d: int = 2) -> Quadrature:
    """Tensor-product Gauss-Legendre quadrature with `per_axis` nodes per axis on [-1, 1]^d."""
    per_axis = check_int("per_axis", per_axis, minimum=2, maximum=512)
    d = check_int("d", d, minimum=1, maximum=3)
    x, w = np.polynomial.legendre.leggauss(per_axis)
    nodes = np.array(list(itertools.product(x, repeat=d)))
    weights = np.prod(np.array(list(itertools.product(w, repeat=d))), axis=1)
    return Quadrature(nodes, weights, per_axis)


def box_log_density(params: dict[str, torch.Tensor], points: torch.Tensor,
                    quad_nodes: torch.Tensor, quad_weights: torch.Tensor, *,
                    bounds: tuple[float, float] = BOX_BOUNDS) -> torch.Tensor:
    """log p(x | k) at points (P, d) for every source: (R, K, P); Z_k by the given quadrature.

    params are raw; the effective weights are `bounded_params(params, bounds)`.
    """
    params = bounded_params(params, bounds)
    log_z = torch.logsumexp(-mlp_energy(params, quad_nodes) + quad_weights.log(), dim=-1)
    return -mlp_energy(params, points) - log_z[..., None]


def box_densities(params: dict[str, torch.Tensor], quad: Quadrature,
                  points: np.ndarray | None = None, *,
                  bounds: tuple[float, float] = BOX_BOUNDS) -> np.ndarray:
    """Normalised densities (R, K, P) at `points` (default: the quadrature nodes)."""
    nodes = torch.as_tensor(quad.nodes)
    weights = torch.as_tensor(quad.weights)
    at = nodes if points is None else torch.as_tensor(np.asarray(points, float))
    with torch.no_grad():
        return box_log_density(params, at, nodes, weights, bounds=bounds).exp().numpy()


def box_average_tv(params_hat: dict[str, torch.Tensor], params_true: dict[str, torch.Tensor],
                   quad: Quadrature, p_y: np.ndarray | None = None, *,
                   bounds: tuple[float, float] = BOX_BOUNDS) -> float:
    """E_Y TV between two box EBMs (first restarts), 1/2 sum_i w_i |p_hat - p*| per source."""
    p_hat = box_densities(params_hat, quad, bounds=bounds)[0]
    p_true = box_densities(params_true, quad, bounds=bounds)[0]
    K = p_true.shape[0]
    weights = np.full(K, 1.0 / K) if p_y is None else np.asarray(p_y, float)
    return float((tv_on_grid(p_hat, p_true, quad.weights) * weights).sum())


def sample_box_ebm(params: dict[str, torch.Tensor], n: int, rng: np.random.Generator, *,
                   p_y: np.ndarray | None = None, grid: int = 128,
                   bounds: tuple[float, float] = BOX_BOUNDS) -> tuple[np.ndarray, np.ndarray]:
    """Exact samples (x, y) from a box EBM (first restart) by rejection from the uniform law.

    The envelope is rigorous: on a midpoint grid of spacing h every point of the box lies within
    h / sqrt(2) of a grid point, so exp(-E) <= max_grid exp(-E) * exp(G h / sqrt(2)) with G the
    gradient bound of `energy_gradient_bound`.
    """
    n = check_int("n", n, minimum=1)
    params = bounded_params({k: v[:1] for k, v in params.items()}, bounds)
    K = params["Wp"].shape[1]
    weights = np.full(K, 1.0 / K) if p_y is None else np.asarray(p_y, float)
    y = rng.choice(K, size=n, p=weights)
    h = 2.0 / grid
    axis = -1.0 + h * (np.arange(grid) + 0.5)
    mesh = torch.as_tensor(np.array(list(itertools.product(axis, axis))))
    with torch.no_grad():
        neg = -mlp_energy(params, mesh)[0]                                       # (K, P)
    log_env = neg.max(dim=-1).values.numpy() + energy_gradient_bound(params)[0] * h / np.sqrt(2)
    x = np.empty((n, 2))
    for k in range(K):
        idx = np.flatnonzero(y == k)
        filled = 0
        while filled < idx.size:
            batch = max(64, 4 * (idx.size - filled))
            cand = rng.uniform(-1.0, 1.0, size=(batch, 2))
            with torch.no_grad():
                e = -mlp_energy({kk: v[:1, :] if kk in ("Ws", "bs", "as") else v[:1, k : k + 1]
                                 for kk, v in params.items()}, torch.as_tensor(cand))[0, 0]
            accept = cand[np.log(rng.random(batch)) < e.numpy() - log_env[k]]
            take = accept[: idx.size - filled]
            x[idx[filled : filled + take.shape[0]]] = take
            filled += take.shape[0]
    return x, y


def box_problem(spec: MLPEnergySpec, x: np.ndarray, y: np.ndarray, quad: Quadrature, *,
                bounds: tuple[float, float] = BOX_BOUNDS) -> Problem:
    """The likelihood of samples (x (n, 2), y (n,)) with Z_k by `quad`; the raw parameters are
    unbounded and mapped into the bounded class by `bounded_params`."""
    xt = torch.as_tensor(np.asarray(x, float))
    yt = torch.as_tensor(np.asarray(y), dtype=torch.int64)
    if xt.ndim != 2 or xt.shape[1] != spec.d or yt.shape != (xt.shape[0],):
        raise InputError(f"x must have shape (n, {spec.d}) and y shape (n,)")
    nodes = torch.as_tensor(quad.nodes)
    qweights = torch.as_tensor(quad.weights)
    onehot = torch.nn.functional.one_hot(yt, spec.K).to(torch.float64).T          # (K, n)

    def per_source_nll(params: dict[str, torch.Tensor]) -> torch.Tensor:
        logp = box_log_density(params, xt, nodes, qweights, bounds=bounds)            # (R, K, n)
        return -(logp * onehot).sum(-1)

    return Problem(per_source_nll, float(xt.shape[0]), None)


def fit_box_ebm(spec: MLPEnergySpec, x: np.ndarray, y: np.ndarray, quad: Quadrature, *,
                restarts: int = 3, steps: int = 300, screen: int | None = None,
                init_scale: float = 0.5,
                generator: torch.Generator | None = None,
                bounds: tuple[float, float] = BOX_BOUNDS,
                start: dict[str, torch.Tensor] | None = None) -> EnergyFit:
    """MLE of a box EBM from samples, Z_k by the quadrature `quad`, over the bounded class of
    `bounded_params` (raw parameters are optimised). Restarts as in `split_fit`."""
    return _fit(box_problem(spec, x, y, quad, bounds=bounds), mlp_shapes(spec, restarts),
                restarts=restarts, steps=steps, screen=screen, init_scale=init_scale,
                generator=generator, start=start)


def box_nll(params: dict[str, torch.Tensor], x: np.ndarray, y: np.ndarray, quad: Quadrature, *,
            bounds: tuple[float, float] = BOX_BOUNDS) -> float:
    """Mean NLL per sample of (x, y) under the first restart, Z by `quad`."""
    xt = torch.as_tensor(np.asarray(x, float))
    yt = torch.as_tensor(np.asarray(y), dtype=torch.int64)
    with torch.no_grad():
        logp = box_log_density(params, xt, torch.as_tensor(quad.nodes),
                               torch.as_tensor(quad.weights), bounds=bounds)[0]
    return float(-logp[yt, torch.arange(xt.shape[0])].mean())
