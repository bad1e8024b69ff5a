"""Tests of the box-constrained multi-start maximum likelihood shared by the network families."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from multisource.common.validation import InputError
from multisource.models import autoregressive as ar
from multisource.models import split_fit as sf

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _largest(value: torch.Tensor) -> float:
    return float(value.abs().max()) if value.numel() else 0.0


def _data(K: int = 3, shared: int = 1, specific: int = 1, n: int = 400, seed: int = 0):
    spec = ar.NeuralARSpec(V=2, L=4, K=K, shared_units=shared, specific_units=specific)
    teacher = ar.teacher_neural_ar(spec, torch.Generator().manual_seed(seed))
    x, y = ar.sample_neural_ar(teacher, spec, n, np.random.default_rng(seed))
    return spec, teacher, ar.sequence_counts(x, y, K, 2)


def test_separate_networks_give_the_same_conditionals():
    spec, teacher, _ = _data()
    separate = sf.as_separate_networks(teacher)
    assert separate["Wp"].shape[2] == spec.shared_units + spec.specific_units
    assert separate["Ws"].shape[1] == 0
    np.testing.assert_allclose(ar.neural_ar_all_probs(separate, spec.single()),
                               ar.neural_ar_all_probs(teacher, spec), atol=1e-14)


def test_optimise_respects_the_box_and_reports_the_projected_gradient():
    spec, _, counts = _data(n=60)
    problem = ar.neural_ar_problem(spec, counts, sf.UnitBox(hidden=0.2, output=0.3))
    start = sf.gaussian_in_box(ar.neural_ar_shapes(spec, 1), problem.box, 5.0,
                               torch.Generator().manual_seed(0))
    run = sf.optimise(problem, start, 300)
    for name, value in run.params.items():
        assert _largest(value) <= problem.box.bound(name) + 1e-12
    assert run.at_bound > 0                      # a tight box binds
    assert run.projected_gradient < 1e-6         # converged on the face it stopped at


def test_fixed_tensors_do_not_move():
    spec, teacher, counts = _data()
    problem = ar.neural_ar_problem(spec, counts)
    run = sf.optimise(problem, teacher, 50, free=("Wp", "bp", "Ap"))
    for name in ("Ws", "bs", "As"):
        torch.testing.assert_close(run.params[name], teacher[name])
    assert run.per_source.sum() <= problem.per_source_nll(teacher)[0].sum().item() + 1e-9


def test_second_stage_never_loses_and_single_source_selection_is_per_source():
    spec, _, counts = _data(K=4, n=300)
    gen = torch.Generator().manual_seed(5)
    shapes = ar.neural_ar_shapes(spec, 3)
    first, second = (sf.gaussian_in_box(shapes, ar.AR_BOX, 1.0, gen) for _ in range(2))
    problem = ar.neural_ar_problem(spec, counts)
    fit = sf.fit_split_network(problem, first, second, 150)
    assert fit.train_nll <= fit.restart_nll.min() + 1e-12
    single = spec.single()
    problem = ar.neural_ar_problem(single, counts)
    starts = sf.gaussian_in_box(ar.neural_ar_shapes(single, 3), ar.AR_BOX, 1.0, gen)
    fit = sf.fit_split_network(problem, starts, None, 150)
    runs = [sf.optimise(problem, sf.take(starts, r), 150) for r in range(3)]
    best = np.min([r.per_source for r in runs], axis=0)        # best start of every source
    np.testing.assert_allclose(fit.per_source, best, rtol=1e-12)


def test_unit_box_validates_its_bounds():
    with pytest.raises(InputError, match="hidden"):
        sf.UnitBox(hidden=0.0, output=1.0)
    assert sf.UnitBox(1.0, 2.0).bound("Ap") == 2.0 and sf.UnitBox(1.0, 2.0).bound("bs") == 1.0


def test_screening_continues_the_selected_start_to_the_full_budget():
    spec, _, counts = _data(K=3, n=300)
    problem = ar.neural_ar_problem(spec.single(), counts)
    starts = sf.gaussian_in_box(ar.neural_ar_shapes(spec.single(), 3), ar.AR_BOX, 1.0,
                                torch.Generator().manual_seed(2))
    screened = sf.fit_split_network(problem, starts, None, 200, screen=20)
    quick = sf.fit_split_network(problem, starts, None, 20)
    assert screened.train_nll <= quick.train_nll + 1e-12      # continuing never loses
    np.testing.assert_allclose(screened.restart_nll, quick.restart_nll)


def test_restart_rule_screens_in_blocks_and_converges_the_best():
    spec, _, counts = _data(K=3, n=300)
    single = spec.single()
    problem = ar.neural_ar_problem(single, counts)
    starts = sf.gaussian_in_box(ar.neural_ar_shapes(single, 6), ar.AR_BOX, 0.5,
                                torch.Generator().manual_seed(2))
    rule = sf.RestartRule(block=3, steps=400, screen=40, tolerance=1e-5, improvement=0.0,
                          min_blocks=2, max_blocks=2)
    fit = sf.fit_with_rule(problem, starts, None, rule)
    assert fit.starts == 6 and fit.blocks == 2 and fit.restart_nll.shape == (6,)
    screens = [sf.optimise(problem, sf.take(starts, r), 40, tolerance=1e-5) for r in range(6)]
    combined, _ = sf._combine_per_source(screens)
    final = sf.optimise(problem, combined, 400, tolerance=1e-5)
    np.testing.assert_allclose(fit.per_source, final.per_source, rtol=1e-12)
    assert fit.converged == (fit.projected_gradient <= 1e-5)
    # a block that does not improve stops the search (improvement threshold huge)
    lazy = sf.fit_with_rule(problem, starts, None, sf.RestartRule(
        block=2, steps=50, screen=10, improvement=1e9, min_blocks=1, max_blocks=3))
    assert lazy.blocks == 2 and lazy.starts == 4     # block 2 gains < 1e9: stop there
    assert lazy.rule_stopped
    # at the cap while still improving (the first block always "improves" on nothing)
    capped = sf.fit_with_rule(problem, starts, None, sf.RestartRule(
        block=2, steps=50, screen=10, improvement=0.0, min_blocks=1, max_blocks=1))
    assert capped.blocks == 1 and not capped.rule_stopped


def test_continued_rule_shares_its_runs_with_the_budget_curve():
    """screen = steps runs every start to convergence; a budget curve given the rule's cache
    reuses those runs (fewer iterations) and gives the fits it would give alone."""
    spec, _, counts = _data(K=3, n=300)
    problem = ar.neural_ar_problem(spec, counts)
    gen = torch.Generator().manual_seed(5)
    shapes = ar.neural_ar_shapes(spec, 4)
    first, second = (sf.gaussian_in_box(shapes, ar.AR_BOX, 0.5, gen) for _ in range(2))
    rule = sf.RestartRule(block=2, steps=300, screen=300, tolerance=1e-4, min_blocks=2,
                          max_blocks=2)
    cache: dict = {}
    fit = sf.fit_with_rule(problem, first, second, rule, cache)
    shared = sf.budget_curve(problem, first, second, rule, (2, 4), cache)
    alone = sf.budget_curve(problem, first, second, rule, (2, 4))
    for a, b in zip(shared, alone, strict=True):
        np.testing.assert_allclose(a.per_source, b.per_source, rtol=1e-12)
    np.testing.assert_allclose(shared[-1].per_source, fit.per_source, rtol=1e-12)
    assert shared[-1].total_iterations < alone[-1].total_iterations


def test_budget_curve_reuses_screens_and_matches_separate_fits():
    spec, _, counts = _data(K=3, n=300)
    problem = ar.neural_ar_problem(spec, counts)
    gen = torch.Generator().manual_seed(4)
    shapes = ar.neural_ar_shapes(spec, 4)
    first, second = (sf.gaussian_in_box(shapes, ar.AR_BOX, 0.5, gen) for _ in range(2))
    rule = sf.RestartRule(block=1, steps=200, screen=30)
    curve = sf.budget_curve(problem, first, second, rule, (2, 4))
    for B, fit in zip((2, 4), curve, strict=True):
        alone = sf.fit_with_rule(problem, first, second, sf.RestartRule(
            block=B, steps=200, screen=30, min_blocks=1, max_blocks=1))
        np.testing.assert_allclose(fit.per_source, alone.per_source, rtol=1e-12)
