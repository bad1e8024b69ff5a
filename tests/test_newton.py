"""models.newton.polish: a gradient at rounding level, and the same point from nearby starts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from multisource.common.validation import InputError
from multisource.models import energy as en
from multisource.models.newton import polish


def test_nearby_starts_end_at_the_same_fit(one_torch_thread) -> None:
    spec = en.MLPEnergySpec(2, 2, 1, 1)
    teacher = en.init_mlp_energy(spec, 1, torch.Generator().manual_seed(0), weight_scale=2.0)
    x, y = en.sample_box_ebm(teacher, 200, np.random.default_rng(0))
    problem = en.box_problem(spec, x, y, en.gauss_legendre_box(12))
    start = en.fit_box_ebm(spec, x, y, en.gauss_legendre_box(12), restarts=2, steps=40,
                           generator=torch.Generator().manual_seed(1)).params
    nudged = {k: v * (1 + 1e-9) for k, v in start.items()}
    one, two = polish(problem, start), polish(problem, nudged)
    assert one.projected_gradient < 1e-12 and two.projected_gradient < 1e-12
    # the capped start is not a stationary point; the two polished fits agree to ~1e-13
    assert polish(problem, start, max_iterations=1).projected_gradient > 1e-8
    assert abs(one.per_source.sum() - two.per_source.sum()) < 1e-10
    quad = en.gauss_legendre_box(24)
    dens = [en.box_densities(r.params, quad)[0] for r in (one, two)]
    assert np.abs(dens[0] - dens[1]).max() < 1e-9 * np.abs(dens[0]).max()


def test_a_boxed_problem_is_refused() -> None:
    spec = en.MLPEnergySpec(3, 1, 0, 1)
    counts = np.ones((1, 8))
    problem = en.discrete_mlp_problem(spec, counts, en.spin_states(3))
    with pytest.raises(InputError, match="unbounded"):
        polish(problem, en.init_mlp_energy(spec, 1, torch.Generator().manual_seed(0)))
