"""Newton's method to a local maximiser of the likelihood, for results that must not depend on
the machine.

An iteration-capped L-BFGS-B run (`split_fit.fit_split_network`) stops wherever the budget
ends; on the box energies its projected gradient there is 1e-4 to 1e-3, and the point reached
depends on the last bits of every gradient: another BLAS kernel (scipy's OpenBLAS inside
L-BFGS-B), another vector instruction set (torch's tanh and exp) or another CPU moves the fit's
TV in the third digit. `polish` continues such a fit with a trust-region Newton method (scipy's
`trust-exact`, exact Hessian by autograd, float64) until the gradient of the mean NLL is at
rounding level. Near a local minimum the Newton map contracts, so runs that start from points
a little apart (the same capped fit on two machines) end at the same point to about 1e-13.
Directions in which the likelihood is flat (a saturated unit) have a zero Hessian eigenvalue;
the trust region keeps the steps bounded there and the densities do not move along them.

Not used by any experiment (their stored tables keep the estimator they were computed with).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import minimize

from multisource.common.validation import InputError, check_float, check_int
from multisource.models.split_fit import Problem, RunResult

GTOL = 1e-12
"""Default stopping rule: Euclidean norm of the gradient of the mean NLL."""


def polish(problem: Problem, start: dict[str, torch.Tensor], *, gtol: float = GTOL,
           max_iterations: int = 3000) -> RunResult:
    """Trust-region Newton on the mean NLL of an unbounded `problem` from `start` (restart axis
    1) until |gradient| <= gtol or `max_iterations`; `projected_gradient` of the result is the
    largest gradient entry (check it against the tolerance you need)."""
    if problem.box is not None:
        raise InputError("polish needs an unbounded problem (box None); "
                         "reparametrise the box away first")
    gtol = check_float("gtol", gtol, minimum=0.0)
    max_iterations = check_int("max_iterations", max_iterations, minimum=1)
    names = list(start)
    shapes = {k: tuple(start[k].shape) for k in names}
    sizes = [start[k].numel() for k in names]
    if any(shapes[k][0] != 1 for k in names):
        raise InputError("start must have a restart axis of size 1")

    def unflatten(z: torch.Tensor) -> dict[str, torch.Tensor]:
        return {k: part.reshape(shapes[k])
                for k, part in zip(names, torch.split(z, sizes), strict=True)}

    def mean_nll(z: torch.Tensor) -> torch.Tensor:
        return problem.per_source_nll(unflatten(z)).sum() / problem.n

    def value_and_grad(z: np.ndarray) -> tuple[float, np.ndarray]:
        zt = torch.from_numpy(z.copy()).requires_grad_(True)
        value = mean_nll(zt)
        (grad,) = torch.autograd.grad(value, zt)
        return float(value.detach()), grad.numpy().copy()

    def hessian(z: np.ndarray) -> np.ndarray:
        return torch.autograd.functional.hessian(mean_nll, torch.from_numpy(z.copy()),
                                                 vectorize=True).numpy()

    z0 = torch.cat([start[k].detach().reshape(-1).to(torch.float64) for k in names]).numpy()
    result = minimize(value_and_grad, z0, jac=True, hess=hessian, method="trust-exact",
                      options={"gtol": gtol, "maxiter": max_iterations})
    _, grad = value_and_grad(result.x)
    params = {k: v.detach().clone() for k, v in unflatten(torch.from_numpy(result.x)).items()}
    with torch.no_grad():
        per_source = problem.per_source_nll(params)[0].numpy()
    return RunResult(params, per_source, int(result.nit), float(np.abs(grad).max(initial=0.0)),
                     0, int(result.nfev))
