"""One check shared by the neural AR and spin-MLP tests: hand-written gradients vs autograd."""

from __future__ import annotations

import numpy as np
import torch


def assert_fast_gradient_matches_autograd(problem, params: dict[str, torch.Tensor]) -> None:
    """`problem.fast` (NumPy value and gradient of one parameter set) against autograd through
    `problem.per_source_nll` on the same parameters."""
    for value in params.values():
        value.requires_grad_(True)
    total = problem.per_source_nll(params)
    total.sum().backward()
    values, grads = problem.fast({k: v.detach()[0].numpy() for k, v in params.items()})
    np.testing.assert_allclose(values, total.detach().numpy()[0], rtol=1e-12)
    for name, value in params.items():
        np.testing.assert_allclose(grads[name], value.grad[0].numpy(), atol=1e-10)
