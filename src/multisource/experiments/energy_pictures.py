"""The density pictures of chapter 6 (section 3), stored: one MLP-energy teacher on the square
[-1, 1]^2, its training samples and the single- and multi-source fits.

The fits are the estimator of the `energy_box` sweep (`energy.fit_box_ebm`: random starts, a
fixed budget of L-BFGS-B iterations, Z by Gauss-Legendre quadrature). That likelihood has many
local optima and a capped run stops wherever its budget ends, so the fit reached depends on the
last bits of every gradient: refitted under another BLAS kernel or vector instruction set, the
multi-source fit of this teacher lands in another local optimum, whose TV differs in the second
significant digit, and Newton polishing to a gradient at rounding level keeps it there. The
chapter therefore shows a stored fit, made at one thread, with its provenance, and draws it
from the stored parameters.

Rows, one per role (`teacher`, `single`, `multi`): the parameters (`params`, JSON: name ->
shape and flat values, floats written so that they read back exactly), the training NLL per sample
(`nll`, Z by the training quadrature), its gap to the teacher's (`gap`), the per-source TV on
the evaluation quadrature (`tv_by_source`, ";"-joined) and their mean under uniform p_Y (`tv`).
The teacher's row also holds the samples (`samples`, JSON [[x1, x2, k], ...]).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from multisource.common.validation import InputError
from multisource.experiments import Experiment, register
from multisource.metrics import tv_on_grid
from multisource.models import energy as en

ROLES = ("teacher", "single", "multi")


@dataclass(frozen=True)
class PicturesConfig:
    """One teacher (K sources, `units` hidden units per source network of which a fraction
    `beta_sim` is shared), n samples in all, seeded by `seed`; the teacher's scales, the
    quadratures and the fit's budget are those of the `energy_box` sweep's profile."""

    K: int = 3
    n: int = 600
    beta_sim: float = 0.5
    units: int = 8
    seed: int = 0
    teacher_weight_scale: float = 2.0
    teacher_head_scale: float = 1.0
    quad_train: int = 32
    quad_eval: int = 128
    restarts: int = 3
    steps: int = 300
    init_scale: float = 0.5

    @property
    def spec(self) -> en.MLPEnergySpec:
        """The multi-source class (shared and per-source units)."""
        shared = round(self.beta_sim * self.units)
        return en.MLPEnergySpec(2, self.K, shared, self.units - shared)


def picture_tasks(config: PicturesConfig) -> list[dict[str, Any]]:
    """One task: the teacher and both fits share the samples."""
    return [{"K": config.K, "n": config.n, "beta_sim": config.beta_sim, "seed": config.seed}]


def params_json(params: dict[str, torch.Tensor]) -> str:
    """Parameters as JSON (name -> [shape, flat values]; the shape keeps empty axes); Python
    writes floats that read back exactly."""
    return json.dumps({name: [list(value.shape), value.detach().double().reshape(-1).tolist()]
                       for name, value in params.items()})


def params_from_json(text: str) -> dict[str, torch.Tensor]:
    """The inverse of `params_json`."""
    return {name: torch.tensor(values, dtype=torch.float64).reshape(shape)
            for name, (shape, values) in json.loads(text).items()}


def samples_from_json(text: str) -> tuple[np.ndarray, np.ndarray]:
    """The teacher row's samples as (x (n, 2), y (n,))."""
    table = np.asarray(json.loads(text), float).reshape(-1, 3)
    return table[:, :2], table[:, 2].astype(int)


def run_picture_task(config: PicturesConfig, task: dict[str, Any],
                     device: torch.device | None = None) -> list[dict[str, Any]]:
    """Teacher, samples and both fits at one thread (BLAS included); three rows."""
    torch.set_num_threads(1)
    with threadpool_limits(1):
        return _pictures(config)


def _pictures(config: PicturesConfig) -> list[dict[str, Any]]:
    spec = config.spec
    rng = np.random.default_rng(config.seed)
    teacher = en.init_mlp_energy(spec, 1, torch.Generator().manual_seed(config.seed),
                                 weight_scale=config.teacher_weight_scale,
                                 head_scale=config.teacher_head_scale)
    x, y = en.sample_box_ebm(teacher, config.n, rng)
    quad = en.gauss_legendre_box(config.quad_train)
    quad_eval = en.gauss_legendre_box(config.quad_eval)
    truth = en.box_densities(teacher, quad_eval)[0]
    teacher_nll = en.box_nll(teacher, x, y, quad)
    fitted = {"teacher": teacher}
    for role, model in (("single", spec.single()), ("multi", spec)):
        fitted[role] = en.fit_box_ebm(
            model, x, y, quad, restarts=config.restarts, steps=config.steps,
            init_scale=config.init_scale,
            generator=torch.Generator().manual_seed(config.seed + 1)).params
    samples = json.dumps(np.column_stack([x, y]).tolist())
    rows = []
    for role in ROLES:
        params = {name: value[:1] for name, value in fitted[role].items()}
        tv = tv_on_grid(en.box_densities(params, quad_eval)[0], truth, quad_eval.weights)
        nll = en.box_nll(params, x, y, quad)
        rows.append({"role": role, "nll": nll, "gap": nll - teacher_nll, "tv": float(tv.mean()),
                     "tv_by_source": ";".join(repr(float(v)) for v in tv),
                     "params": params_json(params),
                     "samples": samples if role == "teacher" else ""})
    return rows


def pictures_from_rows(rows: Any) -> dict[str, Any]:
    """The stored pictures (a DataFrame of this experiment's rows) as role -> {params, nll, gap,
    tv, tv_by_source}, plus `x`, `y` (the samples)."""
    by_role = {row["role"]: row for _, row in rows.iterrows()}
    missing = set(ROLES) - set(by_role)
    if missing:
        raise InputError(f"energy_pictures rows lack the roles {sorted(missing)}")
    out: dict[str, Any] = {}
    for role, row in by_role.items():
        out[role] = {"params": params_from_json(row["params"]), "nll": float(row["nll"]),
                     "gap": float(row["gap"]), "tv": float(row["tv"]),
                     "tv_by_source": np.array([float(v) for v in
                                               str(row["tv_by_source"]).split(";")])}
    out["x"], out["y"] = samples_from_json(by_role["teacher"]["samples"])
    return out


PROFILES = {
    "smoke": PicturesConfig(K=2, n=200, units=4, quad_train=16, quad_eval=48, restarts=2,
                            steps=30),
    "book": PicturesConfig(),
    "paper": PicturesConfig(restarts=5, steps=1000),
}

register(Experiment(
    name="energy_pictures",
    description="one box-EBM teacher, its samples and both fits, for chapter 6's densities",
    chapter="06_energy_based",
    profiles=PROFILES,
    tasks=picture_tasks,
    run_task=run_picture_task,
))
