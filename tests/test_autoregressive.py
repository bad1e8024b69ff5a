"""Tests of the tabular and neural autoregressive models (exact TV, MLE by counting, fits)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from gradient_check import assert_fast_gradient_matches_autograd

from multisource.common.validation import InputError
from multisource.experiments import get
from multisource.models import autoregressive as ar
from multisource.theory.bounds import bound_ratio

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _largest(value: torch.Tensor) -> float:
    return float(value.abs().max()) if value.numel() else 0.0


def _tables(K: int = 3, V: int = 2, L: int = 4, beta: float = 1 / 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    shared = ar.shared_transition_mask(L, beta)
    return ar.random_tabular_tables(K, V, L, shared, 1.0, rng), shared, rng


def test_all_sequences_enumerates_the_space_once():
    seqs = ar.all_sequences(3, 4)
    assert seqs.shape == (81, 4)
    assert len({tuple(s) for s in seqs}) == 81
    np.testing.assert_array_equal(ar.sequence_index(seqs, 3), np.arange(81))


def test_tv_is_zero_on_itself_symmetric_and_bounded():
    tables, _, rng = _tables()
    other = ar.random_tabular_tables(3, 2, 4, np.zeros(3, bool), 1.0, rng)
    p, q = ar.tabular_sequence_probs(tables), ar.tabular_sequence_probs(other)
    np.testing.assert_allclose(p.sum(-1), 1.0)
    assert ar.average_tv(p, p) == 0.0
    assert ar.average_tv(p, q) == pytest.approx(ar.average_tv(q, p))
    assert 0.0 < ar.average_tv(p, q) <= 1.0
    disjoint_a = np.array([[1.0, 0.0]])
    disjoint_b = np.array([[0.0, 1.0]])
    assert ar.average_tv(disjoint_a, disjoint_b) == 1.0


def test_exact_tv_matches_a_brute_force_loop():
    tables, shared, rng = _tables(K=2, V=2, L=3, beta=0.5)
    counts = ar.sample_transition_counts(tables[None], 40, rng)
    fitted = ar.fit_tabular(counts[0], shared)

    def prob(tab, k, seq):
        value = 1.0 / 2
        for t in range(len(seq) - 1):
            value *= tab[k, t, seq[t], seq[t + 1]]
        return value

    brute = np.mean([0.5 * sum(abs(prob(fitted, k, s) - prob(tables, k, s))
                               for s in itertools.product(range(2), repeat=3)) for k in range(2)])
    risks = ar.tabular_risks(tables[None], counts, shared)
    assert risks["multi"][0] == pytest.approx(brute, abs=1e-12)


def test_counts_from_sequences_and_mle_is_normalised_counts():
    tables, shared, rng = _tables(K=2, V=3, L=4, beta=1 / 3)
    x, y = ar.sample_sequences(tables, 60, rng)
    counts = ar.transition_counts(x, y, 2, 3)
    manual = np.zeros_like(counts)
    for seq, k in zip(x, y, strict=True):
        for t in range(3):
            manual[k, t, seq[t], seq[t + 1]] += 1
    np.testing.assert_array_equal(counts, manual)

    single = ar.fit_tabular(counts)
    multi = ar.fit_tabular(counts, shared)
    for k, t, a in itertools.product(range(2), range(3), range(3)):
        row = counts[k, t, a]
        expected = row / row.sum() if row.sum() else np.full(3, 1 / 3)   # unseen row: uniform
        np.testing.assert_allclose(single[k, t, a], expected)
        pooled = counts[:, t, a].sum(0) if shared[t] else row
        expected = pooled / pooled.sum() if pooled.sum() else np.full(3, 1 / 3)
        np.testing.assert_allclose(multi[k, t, a], expected)


def test_unseen_context_rows_are_uniform():
    counts = np.zeros((1, 2, 2, 2))
    counts[0, 0, 0] = [3, 1]
    fitted = ar.fit_tabular(counts)
    np.testing.assert_allclose(fitted[0, 0, 0], [0.75, 0.25])
    np.testing.assert_allclose(fitted[0, 0, 1], [0.5, 0.5])
    np.testing.assert_allclose(fitted[0, 1], 0.5)


def test_mle_maximises_the_likelihood_within_each_class():
    tables, shared, rng = _tables(K=3, V=2, L=5, beta=0.5)
    counts = ar.sample_transition_counts(tables[None], 300, rng)[0]
    for mask in (None, shared):
        best = ar.tabular_log_likelihood(ar.fit_tabular(counts, mask), counts)
        for _ in range(20):   # other members of the same class (shared tables tied if mask)
            other = ar.random_tabular_tables(3, 2, 5, np.zeros(4, bool) if mask is None else
                                             shared, 1.0, rng)
            assert ar.tabular_log_likelihood(other, counts) <= best


def test_chained_multinomial_counts_have_the_exact_expectation():
    tables, _, rng = _tables(K=2, V=2, L=4, beta=0.0)
    draws = ar.sample_transition_counts(np.repeat(tables[None], 4000, 0), 50, rng)
    marginal = np.full((2, 2), 0.5)                      # P(x_t = a | k), starting uniform
    expected = np.empty((2, 3, 2, 2))
    for t in range(3):
        expected[:, t] = 25 * marginal[:, :, None] * tables[:, t]   # n_k = 25 on average
        marginal = np.einsum("ka,kab->kb", marginal, tables[:, t])
    stderr = draws.std(0) / np.sqrt(4000) + 1e-9
    assert np.all(np.abs(draws.mean(0) - expected) < 5 * stderr + 1e-9)
    # the same counts as sequences drawn one by one
    x, y = ar.sample_sequences(tables, 20000, rng)
    freq = ar.transition_counts(x, y, 2, 2) / 20000
    np.testing.assert_allclose(freq, draws.mean(0) / 50, atol=0.01)


def test_multi_beats_single_and_tracks_the_theory_ratio():
    rng = np.random.default_rng(1)
    for K, beta in ((5, 0.5), (10, 1.0)):
        shared = ar.shared_transition_mask(9, beta)
        tables = ar.random_tabular_tables(K, 2, 9, shared, 1.0, rng, n_draws=300)
        risks = ar.tabular_risks(tables, ar.sample_transition_counts(tables, 1000, rng), shared)
        ratio = risks["multi"].mean() / risks["single"].mean()
        assert ratio < 1.0
        assert ratio == pytest.approx(float(bound_ratio(K, beta)), abs=0.05)
    shared = ar.shared_transition_mask(9, 0.0)
    tables = ar.random_tabular_tables(5, 2, 9, shared, 1.0, rng, n_draws=10)
    risks = ar.tabular_risks(tables, ar.sample_transition_counts(tables, 200, rng), shared)
    np.testing.assert_array_equal(risks["multi"], risks["single"])


def test_neural_spec_counts_parameters_and_beta():
    spec = ar.NeuralARSpec(V=2, L=8, K=5, shared_units=1, specific_units=3)
    assert spec.input_size == 14
    assert spec.params_per_unit == 17
    assert spec.beta_sim == 0.25
    assert spec.single().shared_units == 0 and spec.single().specific_units == 4
    params = ar.init_neural_ar(spec, 2, torch.Generator().manual_seed(0))
    per_source_numbers = (params["Ws"][0].numel() + params["bs"][0].numel()
                          + params["As"][0].numel())
    assert per_source_numbers == spec.shared_parameters
    assert params["Wp"][0, 0].numel() + params["bp"][0, 0].numel() + \
        params["Ap"][0, 0].numel() == spec.specific_parameters


def test_neural_model_is_normalised_and_autoregressive():
    spec = ar.NeuralARSpec(V=3, L=4, K=2, shared_units=2, specific_units=1)
    params = ar.init_neural_ar(spec, 2, torch.Generator().manual_seed(0), head_scale=2.0)
    probs = ar.neural_ar_all_probs(params, spec)
    assert probs.shape == (2, 2, 81)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-12)
    # the conditional of x_1 does not depend on later tokens: marginal over x_2.. is a softmax
    first = probs.reshape(2, 2, 3, 27).sum(-1)
    assert np.all(first > 0)


def test_prefix_evaluation_matches_a_position_by_position_softmax():
    spec = ar.NeuralARSpec(V=3, L=4, K=2, shared_units=2, specific_units=1)
    params = ar.init_neural_ar(spec, 2, torch.Generator().manual_seed(0), head_scale=2.0)
    seqs = ar.all_sequences(3, 4)
    feats = ar.ar_features(seqs, 3)                                       # (M, L, D)
    hs = torch.tanh(torch.einsum("mld,rhd->rmlh", feats, params["Ws"])
                    + params["bs"][:, None, None])
    hp = torch.tanh(torch.einsum("mld,rkhd->rkmlh", feats, params["Wp"])
                    + params["bp"][:, :, None, None])
    logits = (torch.einsum("rmlh,rvh->rmlv", hs, params["As"])[:, None]
              + torch.einsum("rkmlh,rkvh->rkmlv", hp, params["Ap"]))
    logp = torch.log_softmax(logits, -1)
    index = torch.as_tensor(seqs)[None, None, :, :, None].expand(2, 2, 81, 4, 1)
    expected = logp.gather(-1, index).squeeze(-1).sum(-1)
    torch.testing.assert_close(ar.neural_ar_log_probs(params, spec), expected)


@pytest.mark.parametrize("shared_units", [0, 2])
def test_hand_written_gradient_matches_autograd(shared_units):
    spec = ar.NeuralARSpec(V=3, L=4, K=3, shared_units=shared_units, specific_units=1)
    params = ar.init_neural_ar(spec, 1, torch.Generator().manual_seed(0), head_scale=2.0)
    counts = np.random.default_rng(0).integers(0, 5, size=(3, 81))
    problem = ar.neural_ar_problem(spec, counts)
    assert_fast_gradient_matches_autograd(problem, params)


def test_neural_fit_reaches_the_teacher_nll():
    """Tolerance: the student's training NLL is at most the teacher's + 0.01 nats per sequence
    (the teacher is in the class, so an exact MLE would be at or below it)."""
    spec = ar.NeuralARSpec(V=2, L=4, K=2, shared_units=1, specific_units=1)
    teacher = ar.teacher_neural_ar(spec, torch.Generator().manual_seed(3))
    for name, value in teacher.items():                        # inside half the box
        assert _largest(value) <= 0.5 * ar.AR_BOX.bound(name)
    x, y = ar.sample_neural_ar(teacher, spec, 300, np.random.default_rng(0))
    counts = ar.sequence_counts(x, y, 2, 2)
    teacher_nll = ar.neural_ar_nll(teacher, spec, counts)
    for model in (spec, spec.single()):
        fit = ar.fit_neural_ar(model, counts, restarts=2, steps=200,
                               generator=torch.Generator().manual_seed(1))
        assert fit.train_nll <= teacher_nll + 0.01
        assert fit.train_nll == pytest.approx(ar.neural_ar_nll(fit.params, model, counts))
        assert fit.train_nll <= fit.restart_nll.min() + 1e-12   # selection never loses
        for name, value in fit.params.items():                 # inside the stated box
            assert _largest(value) <= ar.AR_BOX.bound(name) + 1e-12


def test_bad_inputs_raise_input_error():
    with pytest.raises(InputError, match="V"):
        ar.all_sequences(1, 4)
    with pytest.raises(InputError, match="beta_sim"):
        ar.shared_transition_mask(9, 0.3)
    with pytest.raises(InputError, match="beta_sim"):
        ar.shared_transition_mask(9, 1.5)
    with pytest.raises(InputError, match="shared_units"):
        ar.NeuralARSpec(2, 4, 2, 0, 0)
    spec = ar.NeuralARSpec(2, 4, 2, 1, 1)
    with pytest.raises(InputError, match="counts"):
        ar.fit_neural_ar(spec, np.zeros((3, 16)), generator=torch.Generator())
    with pytest.raises(InputError, match="generator"):
        ar.fit_neural_ar(spec, np.ones((2, 16)))
    with pytest.raises(InputError, match="tables"):
        ar.sample_transition_counts(np.zeros((2, 3, 2, 2)), 10, np.random.default_rng(0))


def test_experiments_are_registered_with_three_profiles():
    for name in ("autoregressive_tabular", "autoregressive_neural"):
        experiment = get(name)
        assert experiment.chapter == "05_autoregressive"
        for profile in ("smoke", "book", "paper"):
            assert len(experiment.tasks(experiment.config(profile))) >= 1
    tabular = get("autoregressive_tabular")
    config = tabular.config("smoke")
    rows = tabular.run_task(config, tabular.tasks(config)[0], torch.device("cpu"))
    assert len(rows) == config.seed_block
    assert all(0.0 <= r["tv_multi"] <= 1.0 and 0.0 <= r["tv_single"] <= 1.0 for r in rows)
