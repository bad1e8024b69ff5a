"""Autoregressive (AR) sources over [V]^L: a tabular order-1 model and a small neural AR model.

A secondary summary of the paper says it instantiates the bound for AR models with beta_sim =
the fraction of shared network parameters; the paper's model class could not be obtained. Both
classes here are our own realizable constructions, chosen so that every quantity can be computed
exactly:

Tabular (closed-form MLE). Every source starts with x_1 uniform on [V] (fixed, not estimated) and
moves by position-dependent V x V transition tables P_t(x_t | x_{t-1}, k), t = 2..L. The tables at
a chosen set S of transitions are shared by all sources (psi); the others are source-specific
(phi_k). Every table has V (V - 1) free numbers, so beta_sim = |S| / (L - 1) exactly. The MLE is
the normalised transition counts (pooled over sources for shared tables). A context row that was
never observed leaves the likelihood flat in that row, so the MLE is not unique there; our
convention is the uniform row 1/V.

Neural (maximum likelihood over a box). p(x_t | x_<t, k) = softmax(A_s h_s + A_k h_k), with
h_s = tanh(W_s u + b_s) (H_s shared hidden units with a shared head) and h_k = tanh(W_k u + b_k)
(H_p units with their own head per source). The input u is the one-hot of x_<t zero-padded to
L - 1 positions (D = (L - 1) V numbers). Each unit carries D + 1 + V parameters, so
beta_sim = H_s / (H_s + H_p) exactly. The single-source fit is the same network with every unit
source-specific (H_s = 0, H_p = H_s + H_p): K separate networks. The parameter set is the box
`AR_BOX` (|W|, |b| <= 3, |A| <= 4): without a bound, saturating units let the likelihood grow
for ever and the MLE need not exist. Fits are L-BFGS-B runs from several random starts
(`multisource.models.split_fit`), on the exact NLL computed once per distinct prefix.

Errors are exact: all V^L sequences are enumerated.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch

from multisource.common.validation import InputError, check_float, check_int
from multisource.metrics import tv_discrete
from multisource.models.sharing import SharedUnitSplit
from multisource.models.split_fit import (
    Problem,
    UnitBox,
    fit_from,
    fit_split_network,
    gaussian_in_box,
    uniform_in_box,
)

# ---------------------------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------------------------


def all_sequences(V: int, L: int) -> np.ndarray:
    """Every sequence of [V]^L in lexicographic order, shape (V**L, L), dtype int64."""
    V = check_int("V", V, minimum=2, maximum=16)
    L = check_int("L", L, minimum=2, maximum=16)
    if V**L > 2**16:
        raise InputError(f"V**L must be <= 65536 for enumeration, got V={V}, L={L}")
    return np.array(list(itertools.product(range(V), repeat=L)), dtype=np.int64)


def _source_weights(p_y: np.ndarray | None, K: int) -> np.ndarray:
    if p_y is None:
        return np.full(K, 1.0 / K)
    p_y = np.asarray(p_y, float)
    if p_y.shape != (K,) or np.any(p_y < 0) or not np.isclose(p_y.sum(), 1.0):
        raise InputError(f"p_y must be a probability vector of length K={K}")
    return p_y


def average_tv(p_hat: np.ndarray, p_true: np.ndarray, p_y: np.ndarray | None = None
               ) -> np.ndarray:
    """E_Y TV(p_hat(.|Y), p*(.|Y)) for enumerated conditionals of shape (..., K, n_states)."""
    p_hat = np.asarray(p_hat, float)
    p_true = np.asarray(p_true, float)
    if p_hat.shape[-2:] != p_true.shape[-2:]:
        raise InputError(f"p_hat and p_true must share their last two axes, got "
                         f"{p_hat.shape} and {p_true.shape}")
    weights = _source_weights(p_y, p_true.shape[-2])
    return (tv_discrete(p_hat, p_true, axis=-1) * weights).sum(axis=-1)


# ---------------------------------------------------------------------------------------------
# Tabular order-1 AR model
# ---------------------------------------------------------------------------------------------


def shared_transition_mask(L: int, beta_sim: float) -> np.ndarray:
    """Boolean mask over the L - 1 transitions: the last round(beta_sim (L-1)) are shared.

    beta_sim * (L - 1) must be an integer (to 1e-9), so the realised beta_sim is the requested one.
    """
    L = check_int("L", L, minimum=2, maximum=16)
    beta_sim = check_float("beta_sim", beta_sim, minimum=0.0, maximum=1.0)
    count = beta_sim * (L - 1)
    if abs(count - round(count)) > 1e-9:
        raise InputError(f"beta_sim * (L - 1) must be an integer, got beta_sim={beta_sim}, L={L}")
    mask = np.zeros(L - 1, dtype=bool)
    if round(count):
        mask[-round(count):] = True
    return mask


def tabular_beta_sim(shared: np.ndarray) -> float:
    """Fraction of shared parameters of the tabular model (every table has V (V - 1) of them)."""
    shared = np.asarray(shared, bool)
    return float(shared.mean())


def random_tabular_tables(K: int, V: int, L: int, shared: np.ndarray, alpha: float,
                          rng: np.random.Generator, n_draws: int | None = None) -> np.ndarray:
    """True transition tables, shape ([n_draws,] K, L-1, V, V); rows ~ Dirichlet(alpha 1).

    Shared transitions get one draw used by every source.
    """
    K = check_int("K", K, minimum=1)
    V = check_int("V", V, minimum=2, maximum=16)
    L = check_int("L", L, minimum=2, maximum=16)
    alpha = check_float("alpha", alpha, minimum=1e-3, maximum=1e3)
    shared = np.asarray(shared, bool)
    if shared.shape != (L - 1,):
        raise InputError(f"shared must be a boolean mask of length L-1={L - 1}")
    lead = () if n_draws is None else (check_int("n_draws", n_draws, minimum=1),)
    tables = rng.dirichlet(np.full(V, alpha), size=(*lead, K, L - 1, V))
    common = rng.dirichlet(np.full(V, alpha), size=(*lead, 1, L - 1, V))
    tables[..., :, shared, :, :] = np.broadcast_to(common, tables.shape)[..., :, shared, :, :]
    return tables


def sample_sequences(tables: np.ndarray, n: int, rng: np.random.Generator,
                     p_y: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Draw n pairs (x, y): y ~ p_Y, x_1 uniform, x_t ~ P_t(. | x_{t-1}, y).

    tables: (K, L-1, V, V). Returns x (n, L) and y (n,), both int64.
    """
    tables = np.asarray(tables, float)
    if tables.ndim != 4:
        raise InputError(f"tables must have shape (K, L-1, V, V), got {tables.shape}")
    n = check_int("n", n, minimum=1)
    K, T, V, _ = tables.shape
    y = rng.choice(K, size=n, p=_source_weights(p_y, K))
    x = np.empty((n, T + 1), dtype=np.int64)
    x[:, 0] = rng.integers(0, V, size=n)
    for t in range(T):
        rows = tables[y, t, x[:, t]]                      # (n, V)
        u = rng.random(n)[:, None]
        x[:, t + 1] = np.minimum((u > np.cumsum(rows, axis=1)).sum(axis=1), V - 1)
    return x, y


def transition_counts(x: np.ndarray, y: np.ndarray, K: int, V: int) -> np.ndarray:
    """Counts c[k, t, a, b] = #{i : y_i = k, x_i[t] = a, x_i[t+1] = b}, shape (K, L-1, V, V)."""
    x = np.asarray(x, np.int64)
    y = np.asarray(y, np.int64)
    L = x.shape[1]
    counts = np.zeros((K, L - 1, V, V), dtype=np.int64)
    for t in range(L - 1):
        np.add.at(counts, (y, t, x[:, t], x[:, t + 1]), 1)
    return counts


def sample_transition_counts(tables: np.ndarray, n: int, rng: np.random.Generator,
                             p_y: np.ndarray | None = None) -> np.ndarray:
    """Transition counts of n fresh pairs, drawn exactly without drawing the sequences.

    tables: (S, K, L-1, V, V) (S independent truths, e.g. seeds). Given how many sequences of
    source k sit in state a at position t, their next states are multinomial with the row
    P_t(. | a, k); chaining these multinomials gives counts with exactly the law of
    `transition_counts(sample_sequences(...))`. Returns (S, K, L-1, V, V) int64.
    """
    tables = np.asarray(tables, float)
    if tables.ndim != 5:
        raise InputError(f"tables must have shape (S, K, L-1, V, V), got {tables.shape}")
    n = check_int("n", n, minimum=1)
    S, K, T, V, _ = tables.shape
    n_k = rng.multinomial(n, _source_weights(p_y, K), size=S)               # (S, K)
    state = rng.multinomial(n_k, np.full(V, 1.0 / V))                        # (S, K, V)
    counts = np.empty((S, K, T, V, V), dtype=np.int64)
    for t in range(T):
        counts[:, :, t] = rng.multinomial(state, tables[:, :, t])            # (S, K, V, V)
        state = counts[:, :, t].sum(axis=-2)
    return counts


def fit_tabular(counts: np.ndarray, shared: np.ndarray | None = None) -> np.ndarray:
    """MLE tables from counts (..., K, L-1, V, V).

    shared=None (or all False) gives the single-source MLE (every table from its own source's
    counts); otherwise transitions with shared[t] use counts pooled over the K sources (the
    multi-source MLE). Rows with no observations are set to the uniform row (our convention).
    """
    counts = np.asarray(counts, float)
    if counts.ndim < 4:
        raise InputError(f"counts must have shape (..., K, L-1, V, V), got {counts.shape}")
    pooled = counts.copy()
    if shared is not None:
        shared = np.asarray(shared, bool)
        if shared.shape != (counts.shape[-3],):
            raise InputError(f"shared must be a boolean mask of length L-1={counts.shape[-3]}")
        total = counts.sum(axis=-4, keepdims=True)
        pooled[..., shared, :, :] = np.broadcast_to(total, counts.shape)[..., shared, :, :]
    rows = pooled.sum(axis=-1, keepdims=True)
    V = counts.shape[-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        tables = np.where(rows > 0, pooled / np.where(rows > 0, rows, 1.0), 1.0 / V)
    return tables


def tabular_sequence_probs(tables: np.ndarray, sequences: np.ndarray | None = None
                           ) -> np.ndarray:
    """p(x | k) for every sequence: (..., K, L-1, V, V) -> (..., K, V**L) (enumeration order)."""
    tables = np.asarray(tables, float)
    T, V = tables.shape[-3], tables.shape[-1]
    seqs = all_sequences(V, T + 1) if sequences is None else np.asarray(sequences)
    probs = np.full((*tables.shape[:-3], seqs.shape[0]), 1.0 / V)
    for t in range(T):
        probs = probs * tables[..., t, seqs[:, t], seqs[:, t + 1]]
    return probs


def tabular_risks(tables_true: np.ndarray, counts: np.ndarray, shared: np.ndarray,
                  p_y: np.ndarray | None = None, chunk: int = 256) -> dict[str, np.ndarray]:
    """Exact average TV of the multi- and single-source MLEs, vectorised over leading axes.

    tables_true and counts: (S, K, L-1, V, V). Returns {"multi": (S,), "single": (S,)}.
    """
    tables_true = np.asarray(tables_true, float)
    counts = np.asarray(counts)
    if tables_true.shape != counts.shape or tables_true.ndim != 5:
        raise InputError("tables_true and counts must both have shape (S, K, L-1, V, V)")
    S = tables_true.shape[0]
    out = {"multi": np.empty(S), "single": np.empty(S)}
    seqs = all_sequences(tables_true.shape[-1], tables_true.shape[-3] + 1)
    for lo in range(0, S, chunk):
        sl = slice(lo, lo + chunk)
        truth = tabular_sequence_probs(tables_true[sl], seqs)
        for name, mask in (("multi", shared), ("single", None)):
            fitted = tabular_sequence_probs(fit_tabular(counts[sl], mask), seqs)
            out[name][sl] = average_tv(fitted, truth, p_y)
    return out


def tabular_log_likelihood(tables: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """sum_{k,t,a,b} c log P: the data log-likelihood up to the constant from x_1 (per leading
    axis)."""
    tables = np.asarray(tables, float)
    counts = np.asarray(counts, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(counts > 0, counts * np.log(tables), 0.0)
    return terms.sum(axis=(-4, -3, -2, -1))


# ---------------------------------------------------------------------------------------------
# Neural AR model
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NeuralARSpec(SharedUnitSplit):
    """Architecture of the neural AR model: V tokens, length L, K sources, hidden-unit split."""

    V: int
    L: int
    K: int
    shared_units: int
    specific_units: int

    def __post_init__(self) -> None:
        check_int("V", self.V, minimum=2, maximum=16)
        check_int("L", self.L, minimum=2, maximum=16)
        check_int("K", self.K, minimum=1)
        check_int("shared_units", self.shared_units, minimum=0)
        check_int("specific_units", self.specific_units, minimum=0)
        if self.shared_units + self.specific_units == 0:
            raise InputError("shared_units + specific_units must be >= 1, got 0")
        if self.V**self.L > 2**16:
            raise InputError(f"V**L must be <= 65536 for enumeration, got V={self.V}, L={self.L}")

    @property
    def input_size(self) -> int:
        """D = (L - 1) V: the one-hot prefix x_<t, zero-padded to L - 1 positions."""
        return (self.L - 1) * self.V

    @property
    def params_per_unit(self) -> int:
        """Weights, bias and head column of one hidden unit: D + 1 + V."""
        return self.input_size + 1 + self.V


    def single(self) -> NeuralARSpec:
        """The single-source class: every unit source-specific (K separate networks)."""
        return NeuralARSpec(self.V, self.L, self.K, 0, self.shared_units + self.specific_units)


def ar_features(x: np.ndarray | torch.Tensor, V: int) -> torch.Tensor:
    """Inputs u_t for every position: (N, L) tokens -> (N, L, (L-1) V) float64.

    u_t is the one-hot of x_1..x_{t-1}, zero-padded; its entries sum to t - 1, so the position
    is a linear function of the input and needs no separate encoding.
    """
    x = torch.as_tensor(np.asarray(x), dtype=torch.int64)
    N, L = x.shape
    onehot = torch.nn.functional.one_hot(x[:, : L - 1], V).to(torch.float64)   # (N, L-1, V)
    feats = torch.zeros(N, L, (L - 1) * V, dtype=torch.float64)
    for t in range(1, L):
        feats[:, t, : t * V] = onehot[:, :t].reshape(N, t * V)
    return feats


def sequence_index(x: np.ndarray, V: int) -> np.ndarray:
    """Position of each sequence of x (N, L) in the enumeration order of `all_sequences`."""
    x = np.asarray(x, np.int64)
    return x @ (V ** np.arange(x.shape[1] - 1, -1, -1))


def sequence_counts(x: np.ndarray, y: np.ndarray, K: int, V: int) -> np.ndarray:
    """Counts c[k, s] of enumerated sequence s among the samples of source k, shape (K, V**L)."""
    x = np.asarray(x, np.int64)
    counts = np.zeros((K, V ** x.shape[1]), dtype=np.int64)
    np.add.at(counts, (np.asarray(y, np.int64), sequence_index(x, V)), 1)
    return counts


AR_BOX = UnitBox(hidden=3.0, output=4.0)
"""The bounded parameter set of the neural AR class: |W|, |b| <= 3 and |A| <= 4 entrywise."""


def neural_ar_shapes(spec: NeuralARSpec, restarts: int) -> dict[str, tuple[int, ...]]:
    """Shapes of the parameter tensors, with a leading restart axis."""
    D, V, K = spec.input_size, spec.V, spec.K
    Hs, Hp = spec.shared_units, spec.specific_units
    return {"Ws": (restarts, Hs, D), "bs": (restarts, Hs), "As": (restarts, V, Hs),
            "Wp": (restarts, K, Hp, D), "bp": (restarts, K, Hp), "Ap": (restarts, K, V, Hp)}


def init_neural_ar(spec: NeuralARSpec, restarts: int, generator: torch.Generator, *,
                   weight_scale: float = 1.0, head_scale: float = 1.0) -> dict[str, torch.Tensor]:
    """Random parameters with a leading restart axis R: Gaussian hidden weights and biases
    (sd weight_scale) and heads (sd head_scale), not clipped."""
    restarts = check_int("restarts", restarts, minimum=1)
    shapes = neural_ar_shapes(spec, restarts)
    return {name: (head_scale if name[0] == "A" else weight_scale)
            * torch.randn(*shape, generator=generator, dtype=torch.float64)
            for name, shape in shapes.items()}


def teacher_neural_ar(spec: NeuralARSpec, generator: torch.Generator, *,
                      box: UnitBox = AR_BOX, fraction: float = 0.5) -> dict[str, torch.Tensor]:
    """A teacher inside the box: every parameter uniform on [-fraction bound, fraction bound]."""
    return uniform_in_box(neural_ar_shapes(spec, 1), box, fraction, generator)


class _Enumeration:
    """The enumerated sequences of one (V, L) and the distinct prefixes they pass through.

    A prefix x_<t (t = 0..L-1) fixes the next-token distribution, and there are only
    (V^L - 1) / (V - 1) of them against V^L L (sequence, position) pairs, so the network is
    evaluated once per prefix. `index[m, t]` is the flat (prefix, next token) cell that
    sequence m visits at position t.
    """

    def __init__(self, spec: NeuralARSpec) -> None:
        V, L = spec.V, spec.L
        seqs = all_sequences(V, L)
        self.tokens = torch.as_tensor(seqs)                                    # (M, L)
        offsets = np.cumsum([0] + [V**t for t in range(L)])                    # prefixes by length
        prefix_id = np.zeros((seqs.shape[0], L), dtype=np.int64)
        for t in range(L):
            code = seqs[:, :t] @ (V ** np.arange(t - 1, -1, -1)) if t else 0
            prefix_id[:, t] = offsets[t] + code
        self.index = torch.as_tensor(prefix_id * V + seqs)                     # (M, L)
        n_prefix = int(offsets[-1])
        feats = np.zeros((n_prefix, (L - 1) * V))
        for t in range(1, L):
            for code in range(V**t):
                prefix = np.array(np.unravel_index(code, (V,) * t))
                feats[offsets[t] + code, np.arange(t) * V + prefix] = 1.0
        self.feats = torch.as_tensor(feats)                                    # (P, D)
        self.cells = n_prefix * V

    def cell_counts(self, counts: np.ndarray) -> torch.Tensor:
        """Sequence counts (K, M) -> counts of every (prefix, next token) cell (K, P V)."""
        counts_t = torch.as_tensor(np.asarray(counts), dtype=torch.float64)
        out = torch.zeros(counts_t.shape[0], self.cells, dtype=torch.float64)
        flat = self.index.reshape(-1)
        out.index_add_(1, flat, counts_t.repeat_interleave(self.index.shape[1], dim=1))
        return out


def sequence_enumeration(spec: NeuralARSpec) -> _Enumeration:
    """The enumeration of `spec`'s sequences and prefixes, to reuse across many evaluations."""
    return _Enumeration(spec)


def _cell_log_probs(params: dict[str, torch.Tensor], spec: NeuralARSpec,
                    enum: _Enumeration) -> torch.Tensor:
    """log p(next token | prefix, k) for every cell: (R, K, P V)."""
    feats = enum.feats
    hs = torch.tanh(feats @ params["Ws"].transpose(1, 2) + params["bs"][:, None, :])  # (R,P,Hs)
    logits = (hs @ params["As"].transpose(1, 2))[:, None]                             # (R,1,P,V)
    if params["Wp"].shape[2] > 0:
        hp = torch.tanh(feats @ params["Wp"].transpose(2, 3) + params["bp"][:, :, None, :])
        logits = logits + hp @ params["Ap"].transpose(2, 3)                          # (R,K,P,V)
    R = logits.shape[0]
    logits = logits.expand(R, spec.K, *logits.shape[2:])
    return torch.log_softmax(logits, dim=-1).reshape(R, spec.K, -1)


def neural_ar_log_probs(params: dict[str, torch.Tensor], spec: NeuralARSpec,
                        enum: _Enumeration | None = None) -> torch.Tensor:
    """log p(x | k) of every enumerated sequence: shape (R, K, V**L), differentiable."""
    enum = _Enumeration(spec) if enum is None else enum
    cells = _cell_log_probs(params, spec, enum)                                     # (R,K,PV)
    return cells[:, :, enum.index].sum(-1)


def neural_ar_all_probs(params: dict[str, torch.Tensor], spec: NeuralARSpec) -> np.ndarray:
    """p(x | k) for every sequence and source: shape (R, K, V**L), by enumeration."""
    with torch.no_grad():
        return neural_ar_log_probs(params, spec).exp().numpy()


def neural_ar_nll(params: dict[str, torch.Tensor], spec: NeuralARSpec,
                  counts: np.ndarray) -> float:
    """Mean NLL per sequence (nats) of the data summarised by counts (K, V**L), first restart."""
    counts_t = torch.as_tensor(np.asarray(counts), dtype=torch.float64)
    with torch.no_grad():
        logp = neural_ar_log_probs(params, spec)[0]
    return float(-(counts_t * logp).sum() / counts_t.sum())


def neural_ar_problem(spec: NeuralARSpec, counts: np.ndarray, box: UnitBox = AR_BOX
                      ) -> Problem:
    """The likelihood of sequence counts (K, V**L) under the class `spec`, over the box."""
    counts = np.asarray(counts)
    if counts.shape != (spec.K, spec.V**spec.L):
        raise InputError(f"counts must have shape (K, V**L)=({spec.K}, {spec.V**spec.L}), "
                         f"got {tuple(counts.shape)}")
    enum = _Enumeration(spec)
    cell_counts = enum.cell_counts(counts)

    def per_source_nll(params: dict[str, torch.Tensor]) -> torch.Tensor:
        return -(cell_counts * _cell_log_probs(params, spec, enum)).sum(-1)

    return Problem(per_source_nll, float(counts.sum()), box,
                   _fast_nll(enum.feats.numpy(), cell_counts.numpy().reshape(spec.K, -1, spec.V)))


def _fast_nll(feats: np.ndarray, cells: np.ndarray):
    """Hand-written NLL and gradient of one parameter set (see `split_fit.FastNLL`).

    feats (P, D) prefix inputs, cells (K, P, V) counts of every (prefix, next token) cell.
    """
    totals = cells.sum(-1, keepdims=True)

    def value_and_grad(p: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        hs = np.tanh(feats @ p["Ws"].T + p["bs"])                               # (P, Hs)
        hp = np.tanh(feats @ p["Wp"].transpose(0, 2, 1) + p["bp"][:, None, :])  # (K, P, Hp)
        logits = (hs @ p["As"].T)[None] + hp @ p["Ap"].transpose(0, 2, 1)      # (K, P, V)
        logits = logits - logits.max(-1, keepdims=True)
        log_norm = np.log(np.exp(logits).sum(-1, keepdims=True))
        logp = logits - log_norm
        values = -(cells * logp).sum((1, 2))
        g = totals * np.exp(logp) - cells                     # d(total NLL) / d logits
        g_shared = g.sum(0)
        dzp = (g @ p["Ap"]) * (1.0 - hp**2)
        dzs = (g_shared @ p["As"]) * (1.0 - hs**2)
        grads = {"Ws": dzs.T @ feats, "bs": dzs.sum(0), "As": g_shared.T @ hs,
                 "Wp": dzp.transpose(0, 2, 1) @ feats, "bp": dzp.sum(1),
                 "Ap": g.transpose(0, 2, 1) @ hp}
        return values, grads

    return value_and_grad


@dataclass(frozen=True)
class NeuralFit:
    """A fitted neural AR model: the selected parameters (restart axis 1), the mean training NLL
    per sequence, the mean NLL of every first-stage random start, and optimiser diagnostics."""

    params: dict[str, torch.Tensor]
    train_nll: float
    restart_nll: np.ndarray
    projected_gradient: float = 0.0
    at_bound: int = 0


def fit_neural_ar(spec: NeuralARSpec, counts: np.ndarray, *, restarts: int = 3,
                  steps: int = 300, screen: int | None = None, init_scale: float = 0.5,
                  generator: torch.Generator | None = None, box: UnitBox = AR_BOX,
                  start: dict[str, torch.Tensor] | None = None) -> NeuralFit:
    """Maximum likelihood over the box on the exact NLL (L-BFGS-B, at most `steps` iterations per
    run), with the restart budget of `multisource.models.split_fit`: R random starts (Gaussian,
    sd init_scale, clipped to the box) screened for `screen` iterations, best per source when
    the sources share nothing; with shared units, R further starts of every source's own units.
    `start` (e.g. the teacher) replaces the random starts by one run from that point: a check on
    the optimiser.
    """
    restarts = check_int("restarts", restarts, minimum=1)
    problem = neural_ar_problem(spec, counts, box)
    if start is not None:
        fit = fit_from(problem, start, steps)
    else:
        if generator is None:
            raise InputError("generator is required for random starts (or give start=)")
        starts = gaussian_in_box(neural_ar_shapes(spec, restarts), box, init_scale, generator)
        extra = gaussian_in_box(neural_ar_shapes(spec, restarts), box, init_scale, generator)
        fit = fit_split_network(problem, starts, extra, steps, screen)
    return NeuralFit(fit.params, fit.train_nll, fit.restart_nll, fit.projected_gradient,
                     fit.at_bound)


def sample_neural_ar(params: dict[str, torch.Tensor], spec: NeuralARSpec, n: int,
                     rng: np.random.Generator, p_y: np.ndarray | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Draw n pairs (x, y) exactly from the enumerated conditionals of the first restart."""
    n = check_int("n", n, minimum=1)
    probs = neural_ar_all_probs(params, spec)[0]                      # (K, M)
    seqs = all_sequences(spec.V, spec.L)
    y = rng.choice(spec.K, size=n, p=_source_weights(p_y, spec.K))
    cdf = np.cumsum(probs, axis=1)
    u = rng.random(n) * cdf[y, -1]
    index = np.minimum((u[:, None] > cdf[y]).sum(axis=1), seqs.shape[0] - 1)
    return seqs[index], y
