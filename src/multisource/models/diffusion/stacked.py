"""Several small denoisers of one architecture trained in lockstep, one vmapped step for all.

Chapter 7's networks are tiny, so a training step of one of them is mostly per-call overhead.
Here M models share every step: their parameters, Adam moments and power-function EMAs are
stacked along a leading model axis, and one `torch.func.vmap` of the EDM2 loss computes all M
losses. Everything else is what `training.train` does for each model alone: model m draws its
batch from its own (seed, step) generator with `make_batch`, the forced weight normalisation
is applied before the forward pass, NaN/inf gradients are zeroed, Adam and the EMA are
elementwise, and the learning rate depends on the step only. So each model follows the
trajectory of its separate run to float tolerance (`tests/test_stacked_training.py`).

Models can leave the stack (`keep`) when their own stopping rule fires; the others go on.
Dropout must be 0 (a vmapped dropout would draw other random numbers than a separate run).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from multisource.common.validation import InputError
from multisource.models.diffusion.config import DiffusionConfig, TrainConfig
from multisource.models.diffusion.ema import ema_beta, sigma_rel_to_gamma
from multisource.models.diffusion.layers import MPConv, normalize
from multisource.models.diffusion.network import EDMDenoiser, build_model
from multisource.models.diffusion.training import edm2_loss, learning_rate, make_batch


@dataclass
class StackMember:
    """One model's data and its training config (seed included)."""

    images: torch.Tensor          # [N, C, H, W] in the model's range, on the device
    labels: torch.Tensor          # [N] integer class indices
    train_config: TrainConfig


class _Functional:
    """Calls a template module with given parameters, as `edm2_loss` calls a model."""

    def __init__(self, template: nn.Module, params: dict[str, torch.Tensor],
                 buffers: dict[str, torch.Tensor]) -> None:
        self.template, self.params, self.buffers = template, params, buffers

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return functional_call(self.template, (self.params, self.buffers), args, kwargs)


class StackedTrainer:
    """M models of `model_config` trained together; `step()` advances every member by one."""

    def __init__(self, model_config: DiffusionConfig, members: list[StackMember],
                 device: torch.device) -> None:
        if not members:
            raise InputError("members must hold at least one model")
        if model_config.dropout != 0.0:
            raise InputError(f"dropout must be 0 for stacked training, got {model_config.dropout}")
        first = members[0].train_config
        for m in members:
            same = {f: getattr(m.train_config, f) == getattr(first, f) for f in
                    ("batch_size", "lr_ref", "t_ref_steps", "warmup_steps", "lr_decay",
                     "ema_stds", "adam_beta1", "adam_beta2", "adam_eps", "precision")}
            if not all(same.values()):
                bad = [f for f, ok in same.items() if not ok]
                raise InputError(f"train configs of stacked models may differ only in seed; "
                                 f"they differ in {bad}")
        self.model_config = model_config
        self.members = list(members)
        self.device = torch.device(device)
        self.train_config = first
        models = [build_model(model_config, seed=m.train_config.seed).to(self.device)
                  for m in members]
        self.template = copy.deepcopy(models[0]).eval()
        self._weight_names = [f"{name}.weight" for name, module in
                              self.template.named_modules() if isinstance(module, MPConv)]
        params, buffers = stack_module_state(models)
        self.params = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
        self.buffers = {k: v.detach().clone() for k, v in buffers.items()}
        self.gammas = {s: sigma_rel_to_gamma(s) for s in first.ema_stds}
        self.emas = {s: {k: v.detach().clone() for k, v in self.params.items()}
                     for s in first.ema_stds}
        self.optimizer = self._new_optimizer()
        self.step_count = 0
        self._loss = vmap(self._one_loss)

    def _new_optimizer(self) -> torch.optim.Adam:
        tc = self.train_config
        return torch.optim.Adam(list(self.params.values()), lr=tc.lr_ref,
                                betas=(tc.adam_beta1, tc.adam_beta2), eps=tc.adam_eps)

    def _one_loss(self, params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor],
                  x: torch.Tensor, onehot: torch.Tensor, sigma: torch.Tensor,
                  noise: torch.Tensor) -> torch.Tensor:
        model = _Functional(self.template, params, buffers)
        return edm2_loss(model, x, onehot, sigma, noise, self.model_config.sigma_data)

    def step(self) -> torch.Tensor:
        """One optimiser step of every member; returns their losses [M] (detached)."""
        self.step_count += 1
        step = self.step_count
        batches = [make_batch(m.images, m.labels, step, self.model_config, m.train_config)
                   for m in self.members]
        x, onehot, sigma, noise = (torch.stack(parts) for parts in zip(*batches, strict=True))
        with torch.no_grad():   # forced weight normalisation, per model (dims after the stack)
            for name in self._weight_names:
                w = self.params[name]
                w.copy_(normalize(w, dim=tuple(range(2, w.ndim))))
        lr = learning_rate(step, self.train_config)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        losses = self._loss(self.params, self.buffers, x, onehot, sigma, noise)
        losses.sum().backward()
        for p in self.params.values():
            if p.grad is not None:
                torch.nan_to_num_(p.grad, nan=0.0, posinf=1e5, neginf=-1e5)
        self.optimizer.step()
        with torch.no_grad():
            sources = [p.detach() for p in self.params.values()]
            for s, ema in self.emas.items():
                torch._foreach_lerp_(list(ema.values()), sources,
                                     1.0 - ema_beta(step, self.gammas[s]))
        return losses.detach()

    def keep(self, indices: list[int]) -> None:
        """Go on with the members at `indices` only (their states, moments and EMAs kept)."""
        if not indices or any(not 0 <= i < len(self.members) for i in indices):
            raise InputError(f"indices must be a non-empty subset of 0..{len(self.members) - 1}")
        index = torch.as_tensor(indices, device=self.device)
        old_state = {id(p): self.optimizer.state.get(p, {}) for p in self.params.values()}
        new_params = {}
        new_state: dict[str, dict[str, Any]] = {}
        for name, p in self.params.items():
            new_params[name] = p.detach().index_select(0, index).clone().requires_grad_(True)
            state = old_state[id(p)]
            new_state[name] = {k: (v.index_select(0, index).clone()
                                   if torch.is_tensor(v) and v.ndim > 0 else v)
                               for k, v in state.items()}
        self.params = new_params
        self.buffers = {k: v.index_select(0, index).clone() for k, v in self.buffers.items()}
        self.emas = {s: {k: v.index_select(0, index).clone() for k, v in ema.items()}
                     for s, ema in self.emas.items()}
        self.members = [self.members[i] for i in indices]
        self.optimizer = self._new_optimizer()
        for name, p in self.params.items():
            if new_state[name]:
                self.optimizer.state[p] = new_state[name]

    def _module(self, tensors: dict[str, torch.Tensor], i: int) -> EDMDenoiser:
        model = build_model(self.model_config, seed=0).to(self.device)
        state = {k: v[i].detach().clone() for k, v in tensors.items()}
        state.update({k: v[i].detach().clone() for k, v in self.buffers.items()})
        model.load_state_dict(state)
        return model.eval().requires_grad_(False)

    def ema_model(self, i: int, std: float | None = None) -> EDMDenoiser:
        """Member i's EMA (of relative std `std`, default the first) as a plain module."""
        std = self.train_config.ema_stds[0] if std is None else std
        return self._module(self.emas[std], i)

    def raw_model(self, i: int) -> EDMDenoiser:
        """Member i's current (raw, not averaged) weights as a plain module."""
        return self._module(self.params, i)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: step, parameters, Adam state, EMAs."""
        # Copies throughout: Optimizer.load_state_dict keeps the tensors it is given, so a
        # shared moment would be updated by two trainers.
        return {"step": self.step_count,
                "params": {k: v.detach().clone() for k, v in self.params.items()},
                "buffers": {k: v.clone() for k, v in self.buffers.items()},
                "emas": {s: {k: v.clone() for k, v in e.items()} for s, e in self.emas.items()},
                "optimizer": copy.deepcopy(self.optimizer.state_dict())}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore `state_dict()` of a trainer built with the same members."""
        self.step_count = int(state["step"])
        with torch.no_grad():
            for k, v in state["params"].items():
                self.params[k].copy_(v)
        self.buffers = {k: v.clone() for k, v in state["buffers"].items()}
        self.emas = {float(s): {k: v.clone() for k, v in e.items()}
                     for s, e in state["emas"].items()}
        self.optimizer = self._new_optimizer()
        self.optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))
