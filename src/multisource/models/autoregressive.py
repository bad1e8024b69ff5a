"""Autoregressive (AR) sources over [V]^L: a tabular order-1 model and a small neural AR model.

The paper instantiates its bound for AR models with beta_sim = the fraction of shared network
parameters; its model class is not public. Both classes here are our own realizable
constructions, chosen so that every quantity can be computed exactly:

Tabular (closed-form MLE). Every source starts with x_1 uniform on [V] (fixed, not estimated) and
moves by position-dependent V x V transition tables P_t(x_t | x_{t-1}, k), t = 2..L. The tables at
a chosen set S of transitions are shared by all sources (psi); the others are source-specific
(phi_k). Every table has V (V - 1) free numbers, so beta_sim = |S| / (L - 1) exactly. The MLE is
the normalised transition counts (pooled over sources for shared tables). A context row that was
never observed leaves the likelihood flat in that row, so the MLE is not unique there; our
convention is the uniform row 1/V.

Neural (fitted by Adam on the exact NLL). p(x_t | x_<t, k) = softmax(A_s h_s + A_k h_k), with
h_s = tanh(W_s u + b_s) (H_s shared hidden units with a shared head) and h_k = tanh(W_k u + b_k)
(H_p units with their own head per source). The input u is the one-hot of x_<t zero-padded to
L - 1 positions (D = (L - 1) V numbers). Each unit carries D + 1 + V parameters, so
beta_sim = H_s / (H_s + H_p) exactly. The single-source fit is the same
network with every unit source-specific (H_s = 0, H_p = H_s + H_p): K separate networks.

Errors are exact: all V^L sequences are enumerated.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch

from multisource.metrics import tv_discrete
from multisource.models.sharing import SharedUnitSplit
from multisource.validation import InputError, check_float, check_int

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


def init_neural_ar(spec: NeuralARSpec, restarts: int, generator: torch.Generator, *,
                   weight_scale: float = 1.0, head_scale: float = 1.0) -> dict[str, torch.Tensor]:
    """Random parameters with a leading restart axis R: Gaussian hidden weights and biases
    (sd weight_scale) and heads (sd head_scale)."""
    restarts = check_int("restarts", restarts, minimum=1)
    D, V, K = spec.input_size, spec.V, spec.K
    Hs, Hp = spec.shared_units, spec.specific_units

    def draw(*shape: int, scale: float) -> torch.Tensor:
        return scale * torch.randn(*shape, generator=generator, dtype=torch.float64)

    return {
        "Ws": draw(restarts, Hs, D, scale=weight_scale),
        "bs": draw(restarts, Hs, scale=weight_scale),
        "As": draw(restarts, V, Hs, scale=head_scale),
        "Wp": draw(restarts, K, Hp, D, scale=weight_scale),
        "bp": draw(restarts, K, Hp, scale=weight_scale),
        "Ap": draw(restarts, K, V, Hp, scale=head_scale),
    }


class _Enumeration:
    """The enumerated sequences of one spec with their network inputs (computed once)."""

    def __init__(self, spec: NeuralARSpec) -> None:
        seqs = all_sequences(spec.V, spec.L)
        self.tokens = torch.as_tensor(seqs)                           # (M, L)
        self.feats = ar_features(seqs, spec.V)                        # (M, L, D)


def neural_ar_log_probs(params: dict[str, torch.Tensor], spec: NeuralARSpec,
                        enum: _Enumeration | None = None) -> torch.Tensor:
    """log p(x | k) of every enumerated sequence: shape (R, K, V**L), differentiable."""
    enum = _Enumeration(spec) if enum is None else enum
    feats = enum.feats
    R = params["Ws"].shape[0]
    M, L, _ = feats.shape
    hs = torch.tanh(torch.einsum("mld,rhd->rmlh", feats, params["Ws"])
                    + params["bs"][:, None, None, :])
    logits = torch.einsum("rmlh,rvh->rmlv", hs, params["As"])[:, None]        # (R, 1, M, L, V)
    if params["Wp"].shape[2] > 0:
        hp = torch.tanh(torch.einsum("mld,rkhd->rkmlh", feats, params["Wp"])
                        + params["bp"][:, :, None, None, :])
        logits = logits + torch.einsum("rkmlh,rkvh->rkmlv", hp, params["Ap"])
    logits = logits.expand(R, spec.K, M, L, spec.V)
    logp = torch.log_softmax(logits, dim=-1)
    index = enum.tokens[None, None, :, :, None].expand(R, spec.K, M, L, 1)
    return logp.gather(-1, index).squeeze(-1).sum(-1)


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


@dataclass(frozen=True)
class NeuralFit:
    """A fitted neural AR model (best restart per independent block) and its training NLL."""

    params: dict[str, torch.Tensor]    # restart axis of size 1
    train_nll: float                   # mean NLL per training sequence (nats), selected model
    restart_nll: np.ndarray            # mean NLL per sequence of every restart, shape (R,)


def fit_neural_ar(spec: NeuralARSpec, counts: np.ndarray, *, restarts: int = 3,
                  warmup: int = 100, steps: int = 300, lr: float = 0.05, init_scale: float = 0.5,
                  generator: torch.Generator) -> NeuralFit:
    """MLE on the exact NLL: `warmup` Adam steps (rate lr), then at most `steps` L-BFGS iterations
    (strong Wolfe line search); the `restarts` random starts are trained in parallel.

    counts (K, V**L) summarise the training set (`sequence_counts`); the NLL is exact because
    the sequences are enumerated. When
    spec has no shared units (the single-source class) the K networks are independent, so the
    best restart is chosen per source; otherwise the restart with the lowest total NLL is kept.
    """
    restarts = check_int("restarts", restarts, minimum=1)
    warmup = check_int("warmup", warmup, minimum=0)
    steps = check_int("steps", steps, minimum=0)
    lr = check_float("lr", lr, minimum=1e-6, maximum=10.0)
    counts_t = torch.as_tensor(np.asarray(counts), dtype=torch.float64)
    if counts_t.shape != (spec.K, spec.V**spec.L):
        raise InputError(f"counts must have shape (K, V**L)=({spec.K}, {spec.V**spec.L}), "
                         f"got {tuple(counts_t.shape)}")
    n = float(counts_t.sum())
    enum = _Enumeration(spec)
    params = init_neural_ar(spec, restarts, generator, weight_scale=init_scale,
                            head_scale=init_scale)
    for tensor in params.values():
        tensor.requires_grad_(True)
    tensors = list(params.values())

    def objective() -> torch.Tensor:
        return -(counts_t * neural_ar_log_probs(params, spec, enum)).sum() / n

    optimiser = torch.optim.Adam(tensors, lr=lr)
    for _ in range(warmup):
        optimiser.zero_grad()
        loss = objective()
        loss.backward()
        optimiser.step()
    if steps:
        lbfgs = torch.optim.LBFGS(tensors, lr=1.0, max_iter=steps, history_size=20,
                                  tolerance_grad=1e-9, tolerance_change=1e-12,
                                  line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            lbfgs.zero_grad()
            loss = objective()
            loss.backward()
            return loss

        lbfgs.step(closure)
    with torch.no_grad():
        per_source = -(counts_t * neural_ar_log_probs(params, spec, enum)).sum(-1)   # (R, K)
    independent = spec.shared_units == 0
    best = _select(params, per_source, independent=independent)
    total = per_source.min(0).values.sum() if independent else per_source.sum(1).min()
    return NeuralFit(best, float(total) / n, per_source.sum(1).numpy() / n)


def _select(params: dict[str, torch.Tensor], per_source_nll: torch.Tensor, *,
            independent: bool) -> dict[str, torch.Tensor]:
    """Keep the best restart: per source when the sources' parameters are disjoint."""
    K = per_source_nll.shape[1]
    if not independent:
        r = int(per_source_nll.sum(1).argmin())
        return {k: v[r : r + 1].detach().clone() for k, v in params.items()}
    choice = per_source_nll.argmin(0)                                  # (K,)
    best = {k: v[:1].detach().clone() for k, v in params.items()}
    for name in ("Wp", "bp", "Ap"):
        best[name] = params[name][choice, torch.arange(K)][None].detach().clone()
    return best


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
