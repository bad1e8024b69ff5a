"""Tests of the energy-based models: exact log Z, exact/quadrature TV, MLE fits, sampling."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from gradient_check import assert_fast_gradient_matches_autograd

from multisource.common.validation import InputError
from multisource.experiments import get
from multisource.models import energy as en

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _largest(value: torch.Tensor) -> float:
    return float(value.abs().max()) if value.numel() else 0.0


def _ising(d: int = 4, K: int = 3, beta: float = 0.5, seed: int = 0):
    rng = np.random.default_rng(seed)
    states = en.spin_states(d)
    edges = en.ring_edges(d)
    stats = en.ising_statistics(states, edges)
    shared = en.ising_shared_mask(d, len(edges), beta)
    theta = en.random_ising_params(K, shared, d, rng)
    return states, edges, stats, shared, theta, rng


def test_ising_parameters_and_shared_mask():
    states, _edges, stats, shared, theta, _ = _ising(d=4, beta=0.5)
    assert states.shape == (16, 4) and stats.shape == (16, 8)
    assert shared.tolist() == [False] * 4 + [True] * 4          # couplings shared first
    np.testing.assert_array_equal(theta[:, shared], np.broadcast_to(theta[:1, shared], (3, 4)))
    assert not np.allclose(theta[0, ~shared], theta[1, ~shared])
    assert en.ising_shared_mask(4, 4, 0.75).sum() == 6
    assert en.ising_shared_mask(4, 4, 0.75)[:2].sum() == 2      # then fields


def test_log_partition_by_enumeration_matches_a_loop():
    _states, edges, stats, _, theta, _ = _ising(d=4)
    logp = en.ising_log_probs(theta, stats)
    for k in range(3):
        energies = []
        for x in itertools.product((-1, 1), repeat=4):
            value = sum(theta[k, i] * x[i] for i in range(4))
            value += sum(theta[k, 4 + e] * x[i] * x[j] for e, (i, j) in enumerate(edges))
            energies.append(value)
        log_z = math.log(sum(math.exp(v) for v in energies))
        np.testing.assert_allclose(logp[k], np.array(energies) - log_z, atol=1e-12)


def test_tv_properties_and_brute_force():
    _, _, stats, _, theta, rng = _ising(d=4)
    other = en.random_ising_params(3, np.zeros(8, bool), 4, rng)
    p = np.exp(en.ising_log_probs(theta, stats))
    q = np.exp(en.ising_log_probs(other, stats))
    assert en.average_tv(p, p) == 0.0
    assert en.average_tv(p, q) == pytest.approx(en.average_tv(q, p))
    assert 0.0 < en.average_tv(p, q) <= 1.0
    brute = np.mean([0.5 * sum(abs(p[k, s] - q[k, s]) for s in range(16)) for k in range(3)])
    assert en.average_tv(p, q) == pytest.approx(brute, abs=1e-14)


def test_ising_mle_matches_moments_and_beats_the_teacher():
    _states, _, stats, shared, theta, rng = _ising(d=5, K=3, beta=0.5)
    truth = np.exp(en.ising_log_probs(theta, stats))
    counts = en.sample_state_counts(truth[None], 3000, rng)[0]
    teacher_nll = en.ising_nll(theta, stats, counts)
    single = en.fit_ising(counts, stats, None)
    multi = en.fit_ising(counts, stats, shared)
    for fit in (single, multi):
        assert fit.converged and fit.at_bound == 0
        assert fit.train_nll <= teacher_nll + 1e-9            # convex: the global optimum
    n_k = counts.sum(1)[:, None]
    data = counts @ stats / n_k                                  # per-source data moments
    model_single = np.exp(en.ising_log_probs(single.theta, stats)) @ stats
    # Newton polishing takes the moment equations to rounding error
    np.testing.assert_allclose(model_single, data, atol=1e-11)
    model_multi = np.exp(en.ising_log_probs(multi.theta, stats)) @ stats
    np.testing.assert_allclose(model_multi[:, ~shared], data[:, ~shared], atol=1e-11)
    pooled = lambda m: (n_k * m)[:, shared].sum(0) / n_k.sum()   # noqa: E731
    np.testing.assert_allclose(pooled(model_multi), pooled(data), atol=1e-11)
    assert multi.train_nll >= single.train_nll - 1e-9          # nested classes


def test_multi_beats_single_for_ising_on_average():
    d = 6
    stats = en.ising_statistics(en.spin_states(d), en.ring_edges(d))
    shared = en.ising_shared_mask(d, d, 0.5)
    rng = np.random.default_rng(2)
    theta = en.random_ising_params(4, shared, d, rng, n_draws=6)
    truth = np.exp(en.ising_log_probs(theta, stats))
    counts = en.sample_state_counts(truth, 400, rng)
    tv = {"multi": [], "single": []}
    for s in range(6):
        for name, mask in (("multi", shared), ("single", None)):
            fitted = np.exp(en.ising_log_probs(en.fit_ising(counts[s], stats, mask).theta, stats))
            tv[name].append(en.average_tv(fitted, truth[s]))
    assert np.mean(tv["multi"]) < np.mean(tv["single"])


def test_ising_fit_at_the_box_keeps_outward_coordinates_fixed():
    stats = en.ising_statistics(en.spin_states(3), en.ring_edges(3))
    counts = np.zeros((1, 8))
    counts[0, -1] = 20                           # every spin always +1: the MLE runs to the box
    fit = en.fit_ising(counts, stats, None, bound=2.0)
    assert fit.converged and fit.at_bound == 6
    np.testing.assert_allclose(fit.theta, 2.0)


def test_discrete_mlp_is_normalised_and_fit_reaches_teacher_nll():
    """Tolerance: student training NLL <= teacher training NLL + 0.01 nats per sample."""
    states = en.spin_states(5)
    spec = en.MLPEnergySpec(d=5, K=2, shared_units=1, specific_units=1)
    assert spec.params_per_unit == 7 and spec.beta_sim == 0.5
    teacher = en.teacher_mlp_energy(spec, torch.Generator().manual_seed(0))
    for name, value in teacher.items():
        assert _largest(value) <= 0.5 * en.SPIN_BOX.bound(name)
    with torch.no_grad():
        truth = en.discrete_log_probs(teacher, torch.as_tensor(states)).exp().numpy()
    np.testing.assert_allclose(truth.sum(-1), 1.0, atol=1e-12)
    counts = en.sample_state_counts(truth, 400, np.random.default_rng(0))[0]
    teacher_nll = en.discrete_nll(teacher, states, counts)
    for model in (spec, spec.single()):
        fit = en.fit_discrete_mlp(model, counts, states, restarts=2, steps=200,
                                  generator=torch.Generator().manual_seed(1))
        assert fit.train_nll <= teacher_nll + 0.01
        assert fit.train_nll == pytest.approx(en.discrete_nll(fit.params, states, counts))
        for name, value in fit.params.items():                 # inside the stated box
            assert _largest(value) <= en.SPIN_BOX.bound(name) + 1e-12


def _box_teacher(K: int = 2):
    spec = en.MLPEnergySpec(d=2, K=K, shared_units=2, specific_units=2)
    return spec, en.init_mlp_energy(spec, 1, torch.Generator().manual_seed(0), weight_scale=2.0)


def test_quadrature_normalises_and_tv_converges_as_the_grid_refines():
    spec, teacher = _box_teacher()
    other = en.init_mlp_energy(spec, 1, torch.Generator().manual_seed(1), weight_scale=2.0)
    fine = en.gauss_legendre_box(160)
    assert fine.weights.sum() == pytest.approx(4.0)
    dens = en.box_densities(teacher, en.gauss_legendre_box(24), points=fine.nodes)[0]
    np.testing.assert_allclose((dens * fine.weights).sum(-1), 1.0, atol=1e-6)
    values = [en.box_average_tv(other, teacher, en.gauss_legendre_box(q))
              for q in (10, 20, 40, 80, 160)]
    errors = np.abs(np.array(values[:-1]) - values[-1])
    assert errors[-1] < 1e-3
    assert errors[-1] < errors[0]
    assert en.box_average_tv(teacher, teacher, fine) == 0.0
    assert en.box_average_tv(other, teacher, fine) == pytest.approx(
        en.box_average_tv(teacher, other, fine))
    assert 0.0 < values[-1] <= 1.0


def test_gradient_bound_holds_and_rejection_samples_follow_the_density():
    _spec, teacher = _box_teacher()
    rng = np.random.default_rng(0)
    bound = en.energy_gradient_bound(teacher)[0]
    points = torch.as_tensor(rng.uniform(-1, 1, size=(200, 2)), dtype=torch.float64)
    points.requires_grad_(True)
    energy = en.mlp_energy(teacher, points)[0]                 # (K, P)
    for k in range(2):
        (grad,) = torch.autograd.grad(energy[k].sum(), points, retain_graph=True)
        assert float(grad.norm(dim=1).max()) <= bound[k] + 1e-12
    x, y = en.sample_box_ebm(teacher, 4000, rng)
    assert np.all(np.abs(x) <= 1.0)
    quad = en.gauss_legendre_box(64)
    dens = en.box_densities(teacher, quad)[0]
    for k in range(2):
        mean = (dens[k][:, None] * quad.nodes * quad.weights[:, None]).sum(0)
        sample = x[y == k]
        stderr = sample.std(0) / np.sqrt(len(sample))
        assert np.all(np.abs(sample.mean(0) - mean) < 5 * stderr)


def test_box_fit_reaches_teacher_nll():
    """Tolerance: student training NLL <= teacher training NLL + 0.01 nats per sample."""
    spec, teacher = _box_teacher()
    x, y = en.sample_box_ebm(teacher, 300, np.random.default_rng(1))
    quad = en.gauss_legendre_box(24)
    teacher_nll = en.box_nll(teacher, x, y, quad)
    fit = en.fit_box_ebm(spec, x, y, quad, restarts=2, steps=100,
                         generator=torch.Generator().manual_seed(2))
    assert fit.train_nll <= teacher_nll + 0.01
    assert fit.train_nll == pytest.approx(en.box_nll(fit.params, x, y, quad))
    # the bounded class cannot hide mass between the training nodes: the fitted density,
    # normalised with 24 nodes per axis, integrates to 1 on a 128-node rule
    fine = en.gauss_legendre_box(128)
    mass = (en.box_densities(fit.params, quad, fine.nodes)[0] * fine.weights).sum(-1)
    np.testing.assert_allclose(mass, 1.0, atol=1e-3)


def test_bounded_parameters_respect_their_bounds():
    raw = en.init_mlp_energy(en.MLPEnergySpec(2, 2, 2, 2), 1, torch.Generator().manual_seed(0),
                             weight_scale=50.0, head_scale=50.0)
    eff = en.bounded_params(raw, (3.0, 2.0))
    assert float(eff["Ws"].abs().max()) <= 3.0 and float(eff["Wp"].abs().max()) <= 3.0
    assert float(eff["as"].abs().max()) <= 2.0 and float(eff["ap"].abs().max()) <= 2.0
    torch.testing.assert_close(eff["bs"], raw["bs"])


def test_bad_inputs_raise_input_error():
    with pytest.raises(InputError, match="beta_sim"):
        en.ising_shared_mask(10, 10, 0.33)
    with pytest.raises(InputError, match="d"):
        en.spin_states(0)
    with pytest.raises(InputError, match="per_axis"):
        en.gauss_legendre_box(1)
    with pytest.raises(InputError, match="shared_units"):
        en.MLPEnergySpec(2, 2, 0, 0)
    stats = en.ising_statistics(en.spin_states(3), en.ring_edges(3))
    with pytest.raises(InputError, match="shared"):
        en.fit_ising(np.ones((2, 8)), stats, np.zeros(5, bool))
    with pytest.raises(InputError, match="probs"):
        en.sample_state_counts(np.ones((2, 8)), 10, np.random.default_rng(0))


def test_energy_experiments_are_registered():
    for name in ("energy_ising", "energy_mlp", "energy_box"):
        experiment = get(name)
        assert experiment.chapter == "06_energy_based"
        for profile in ("smoke", "book", "paper"):
            assert len(experiment.tasks(experiment.config(profile))) >= 1


@pytest.mark.parametrize("shared_units", [0, 1])
def test_spin_mlp_hand_written_gradient_matches_autograd(shared_units):
    spec = en.MLPEnergySpec(d=4, K=3, shared_units=shared_units, specific_units=2)
    states = en.spin_states(4)
    params = en.init_mlp_energy(spec, 1, torch.Generator().manual_seed(0), head_scale=2.0)
    counts = np.random.default_rng(0).integers(0, 5, size=(3, 16))
    problem = en.discrete_mlp_problem(spec, counts, states)
    assert_fast_gradient_matches_autograd(problem, params)


def test_ising_fisher_is_the_covariance_of_the_statistics():
    _states, _, stats, shared, theta, _ = _ising(d=4, K=2, beta=0.5)
    from multisource.experiments.energy import ising_fisher
    single = ising_fisher(theta, stats, None)
    probs = np.exp(en.ising_log_probs(theta, stats))
    for k in range(2):
        mean = probs[k] @ stats
        cov = (stats.T * probs[k]) @ stats - np.outer(mean, mean)
        block = single.information[8 * k : 8 * (k + 1), 8 * k : 8 * (k + 1)]
        np.testing.assert_allclose(block, cov / 2, atol=1e-12)    # p_Y(k) = 1/2
    multi = ising_fisher(theta, stats, shared)
    assert multi.rank == 4 + 2 * 4 and single.rank == 16
    assert multi.constant < single.constant                 # fewer free parameters
