"""Misspecified sharing for tabular autoregressive sources (chapter 5's model; our construction).

The teacher draws every transition table as in chapter 5 (rows ~ Dirichlet(alpha), one draw
per declared-shared position and one per source elsewhere), then moves each source's tables at
the declared-shared positions a fraction `epsilon` of the way towards its own private draw:
P_t^k = (1 - epsilon) C_t + epsilon Q_t^k. epsilon = 0 is chapter 5's realizable case. The
same seed gives the same C and Q for every epsilon, so epsilon alone sets the disagreement.

The pooled (multi-source) MLE at a shared position converges, as n grows, to the mixture of the
sources' rows weighted by how often each source visits each context. `pooled_limit_tables`
computes that limit exactly, and `misspecification` measures how far each source is from it
(KL and TV, by enumerating all V^L sequences): the risk floor of pooling and the "measured
divergence" of the chapter.
"""

from __future__ import annotations

import numpy as np

from multisource.common.validation import InputError, check_float, check_int
from multisource.metrics import tv_discrete
from multisource.models import autoregressive as ar


def misspecified_tables(K: int, V: int, L: int, shared: np.ndarray, epsilon: float,
                        alpha: float, seed: int) -> np.ndarray:
    """Teacher tables (K, L-1, V, V) whose declared-shared tables differ by `epsilon`."""
    epsilon = check_float("epsilon", epsilon, minimum=0.0, maximum=1.0)
    rng = np.random.default_rng(check_int("seed", seed, minimum=0))
    tables = ar.random_tabular_tables(K, V, L, shared, alpha, rng)
    private = rng.dirichlet(np.full(V, alpha), size=(K, L - 1, V))
    shared = np.asarray(shared, bool)
    tables[:, shared] = (1.0 - epsilon) * tables[:, shared] + epsilon * private[:, shared]
    return tables


def state_marginals(tables: np.ndarray) -> np.ndarray:
    """P(x_t = a | k) for t = 1..L: (K, L-1, V, V) -> (K, L, V); x_1 is uniform."""
    tables = np.asarray(tables, float)
    K, T, V, _ = tables.shape
    marginals = np.empty((K, T + 1, V))
    marginals[:, 0] = 1.0 / V
    for t in range(T):
        marginals[:, t + 1] = np.einsum("ka,kab->kb", marginals[:, t], tables[:, t])
    return marginals


def pooled_limit_tables(tables: np.ndarray, shared: np.ndarray,
                        p_y: np.ndarray | None = None) -> np.ndarray:
    """Where the pooled MLE converges: at shared positions every source gets
    sum_k p_k pi_kt(a) P_t^k(b|a) / sum_k p_k pi_kt(a); elsewhere its own table."""
    tables = np.asarray(tables, float)
    K = tables.shape[0]
    p = np.full(K, 1.0 / K) if p_y is None else np.asarray(p_y, float)
    shared = np.asarray(shared, bool)
    weights = p[:, None, None] * state_marginals(tables)[:, :-1]          # (K, T, V)
    mixed = np.einsum("kta,ktab->tab", weights, tables) / weights.sum(axis=0)[..., None]
    limit = tables.copy()
    limit[:, shared] = mixed[shared][None]
    return limit


def misspecification(tables: np.ndarray, shared: np.ndarray,
                     p_y: np.ndarray | None = None) -> dict[str, float]:
    """How far pooling's limit is from the truth, exactly (enumeration over all sequences).

    kl: sum_k p_k KL(p*_k || pooled limit_k) in nats; tv_floor: sum_k p_k TV(...), the risk of
    the pooled MLE at n = infinity; kl_per_shared_parameter: kl over the number of free
    parameters declared shared, |S| V (V - 1).
    """
    tables = np.asarray(tables, float)
    K, _, V, _ = tables.shape
    p = np.full(K, 1.0 / K) if p_y is None else np.asarray(p_y, float)
    shared = np.asarray(shared, bool)
    truth = ar.tabular_sequence_probs(tables)
    limit = ar.tabular_sequence_probs(pooled_limit_tables(tables, shared, p))
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_terms = np.where(truth > 0, truth * np.log(truth / limit), 0.0)
    kl = float(p @ kl_terms.sum(axis=1))
    n_shared = int(shared.sum()) * V * (V - 1)
    return {"kl": kl, "tv_floor": float(p @ tv_discrete(limit, truth)),
            "shared_parameters": n_shared,
            "kl_per_shared_parameter": kl / n_shared if n_shared else float("nan")}


def simulate_risks(tables: np.ndarray, shared: np.ndarray, n: int, n_seeds: int,
                   rng: np.random.Generator, p_y: np.ndarray | None = None
                   ) -> dict[str, np.ndarray]:
    """Exact average TV of the pooled and separate MLEs on `n_seeds` data sets of size n.

    Each seed redraws the data (as transition counts, chapter 5's exact sampler) from the same
    teacher; both estimators see the same counts. Unseen context rows are uniform (chapter 5).
    """
    tables = np.asarray(tables, float)
    if tables.ndim != 4:
        raise InputError(f"tables must have shape (K, L-1, V, V), got {tables.shape}")
    n_seeds = check_int("n_seeds", n_seeds, minimum=1)
    teacher = np.broadcast_to(tables, (n_seeds, *tables.shape))
    counts = ar.sample_transition_counts(teacher, n, rng, p_y)
    risks = ar.tabular_risks(teacher, counts, np.asarray(shared, bool), p_y)
    return {"pooled": risks["multi"], "separate": risks["single"]}
