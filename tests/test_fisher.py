"""Tests of the Fisher-information prediction of the risk (delta method and Monte Carlo)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from multisource.experiments.energy import ising_fisher
from multisource.models import autoregressive as ar
from multisource.models import energy as en
from multisource.models.split_fit import as_separate_networks
from multisource.theory import fisher
from multisource.theory.bounds import bound_ratio

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _ising(d: int = 5, K: int = 3, beta: float = 0.5, seed: int = 0):
    stats = en.ising_statistics(en.spin_states(d), en.ring_edges(d))
    shared = en.ising_shared_mask(d, d, beta)
    theta = en.random_ising_params(K, shared, d, np.random.default_rng(seed))
    return stats, shared, theta


def test_pseudo_inverse_drops_null_directions():
    basis = np.linalg.qr(np.random.default_rng(0).standard_normal((4, 4)))[0]
    matrix = basis @ np.diag([3.0, 1.0, 0.0, 0.0]) @ basis.T
    inverse, rank = fisher.pseudo_inverse(matrix)
    assert rank == 2
    np.testing.assert_allclose(matrix @ inverse @ matrix, matrix, atol=1e-12)


def test_delta_method_matches_monte_carlo_for_a_well_conditioned_model():
    """At large n the Gaussian parameter error is small, the TV is linear in it, and the
    delta-method constant equals the Monte-Carlo mean of the exact TV (MC error: 4 sd)."""
    stats, shared, theta = _ising()
    prediction = ising_fisher(theta, stats, shared)
    names = np.argsort(np.concatenate([np.flatnonzero(shared), np.flatnonzero(~shared)]))

    def probs(p):
        full = torch.cat([p["shared"][0].expand(3, -1), p["own"][0]], dim=1)[:, names]
        return np.exp(en.ising_log_probs(full.numpy(), stats))

    params = {"shared": torch.as_tensor(theta[:1, shared]),
              "own": torch.as_tensor(theta[None, :, ~shared])}
    n = 1e7
    draws = fisher.monte_carlo_tv(probs, params, prediction.information, n, 400,
                                  np.random.default_rng(1))
    assert abs(draws.mean() - prediction.expected_tv(n)) < 4 * draws.std() / 20


def test_delta_method_predicts_the_risk_of_the_exact_mle():
    """The Ising MLE is exact (convex), so at n = 20000 its mean risk over 60 data sets must sit
    within sampling error (plus 5% for higher-order terms) of the Fisher prediction."""
    stats, shared, theta = _ising(d=5, K=3)
    truth = np.exp(en.ising_log_probs(theta, stats))
    rng = np.random.default_rng(3)
    n = 20000
    counts = en.sample_state_counts(np.repeat(truth[None], 60, 0), n, rng)
    for mask in (shared, None):
        risks = [en.average_tv(np.exp(en.ising_log_probs(en.fit_ising(c, stats, mask).theta,
                                                         stats)), truth) for c in counts]
        predicted = ising_fisher(theta, stats, mask).expected_tv(n)
        half_width = 2.0 * np.std(risks, ddof=1) / math.sqrt(60)
        assert abs(np.mean(risks) - predicted) < half_width + 0.05 * predicted


def test_gaussian_like_count_ratio_when_every_parameter_is_equally_informative():
    """When shared and specific parameters carry the same information per sample (here: the
    Ising family at beta = 1 with K sources, where multi pools all n), the Fisher ratio of the
    delta-method risks is close to sqrt(1/K), the count-based ratio."""
    stats, shared, theta = _ising(beta=1.0, K=4)
    multi = ising_fisher(theta, stats, shared)
    single = ising_fisher(theta, stats, None)
    assert multi.constant / single.constant == pytest.approx(float(bound_ratio(4, 1.0)),
                                                             rel=0.02)


def test_neural_ar_null_directions_are_not_counted_and_do_not_move_the_prediction():
    spec = ar.NeuralARSpec(V=2, L=5, K=2, shared_units=1, specific_units=1)
    teacher = ar.teacher_neural_ar(spec, torch.Generator().manual_seed(0))
    one = ar.NeuralARSpec(2, 5, 1, 1, 1)

    def source(params):
        return ar.neural_ar_log_probs(params, one)[0, 0]

    def prediction(params):
        return fisher.fisher_risk(fisher.source_jacobians(source, params, ("Ws", "bs", "As"),
                                                          2))

    base = prediction(teacher)
    units = spec.shared_units + spec.K * spec.specific_units
    count = spec.shared_parameters + spec.K * spec.specific_parameters
    assert base.rank <= count - units        # a softmax ignores a common shift of its logits
    shifted = {k: v.clone() for k, v in teacher.items()}
    shifted["As"] += 0.7                     # the same shift for both tokens: same model
    assert prediction(shifted).constant == pytest.approx(base.constant, rel=1e-8)
    separate = fisher.fisher_risk(fisher.source_jacobians(
        lambda p: ar.neural_ar_log_probs(p, ar.NeuralARSpec(2, 5, 1, 0, 2))[0, 0],
        as_separate_networks(teacher), ("Ws", "bs", "As"), 2))
    assert separate.rank > base.rank and separate.constant > base.constant


def test_effective_shared_fraction_inverts_the_count_ratio():
    for K, beta in ((3, 0.25), (10, 0.9)):
        ratio = float(bound_ratio(K, beta))
        assert fisher.effective_shared_fraction(ratio, K) == pytest.approx(beta)


def test_prediction_barely_depends_on_the_rank_cut_off():
    """Exact null directions of the neural AR Fisher information sit near 1e-17 of the largest
    eigenvalue; a few real directions lie between 1e-13 and 1e-10 and are cut by the default
    rtol. Keeping them changes the delta-method constant by well under 1%."""
    from multisource.experiments.autoregressive import NEURAL_FAMILY, NeuralConfig
    from multisource.experiments.sweep import fisher_prediction
    spec = NEURAL_FAMILY.spec(NeuralConfig(), 5, 0.5)
    teacher = NEURAL_FAMILY.teacher(spec, torch.Generator().manual_seed(3))
    default = fisher_prediction(NEURAL_FAMILY, spec, teacher)
    jac = fisher.source_jacobians(NEURAL_FAMILY.source_log_probs(spec), teacher,
                                  NEURAL_FAMILY.shared, spec.K)
    inverse, rank = fisher.pseudo_inverse(default.information, rtol=1e-14)
    assert rank >= default.rank
    constant = 0.0
    for k in range(spec.K):
        local = inverse[np.ix_(jac.positions[k], jac.positions[k])]
        J = jac.jacobians[k]
        variance = np.einsum("mi,ij,mj->m", J, local, J) * np.exp(2 * jac.log_probs[k])
        constant += 0.5 * math.sqrt(2 / math.pi) * np.sqrt(np.maximum(variance, 0)).sum() / 5
    assert constant == pytest.approx(default.constant, rel=0.01)


def test_hellinger_prediction_matches_a_gaussian_simulation_of_the_mle():
    """E H over theta* + delta, delta ~ N(0, I^+/n), against the first-order constant."""
    from multisource.metrics import hellinger_discrete
    logits = torch.tensor([[0.3, -0.2, 0.5, 0.0]], dtype=torch.float64)[None]   # (1, 1, 4)
    params = {"own": logits}

    def log_probs(p):
        return torch.log_softmax(p["own"][0, 0], -1)

    jac = fisher.source_jacobians(log_probs, params, (), 1)
    risk = fisher.fisher_risk(jac)
    n = 20000
    rng = np.random.default_rng(1)
    draws = fisher.monte_carlo_tv(lambda p: torch.softmax(p["own"][0], -1).numpy(), params,
                                  risk.information, n, 1, rng)
    assert draws.shape == (1,)
    cov, _ = fisher.pseudo_inverse(risk.information)
    truth = torch.softmax(logits[0, 0], -1).numpy()
    values, vectors = np.linalg.eigh(cov)
    root = vectors * np.sqrt(np.clip(values, 0, None))
    z = logits[0, 0].numpy() + (rng.standard_normal((4000, 4)) @ root.T) / np.sqrt(n)
    fitted = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    simulated = hellinger_discrete(truth, fitted).mean()
    assert simulated == pytest.approx(risk.expected_hellinger(n), rel=0.03)
    assert risk.expected_sqrt_kl(n) == pytest.approx(2 * risk.expected_hellinger(n))
