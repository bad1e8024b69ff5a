"""Training of the EDM2-style denoiser, in one process or under `torchrun` (DDP).

Randomness is a function of (seed, step): each step draws the global batch (indices, noise
levels, noise) from a generator seeded with (seed, step), and every rank takes its slice. So a
run on R ranks sees the same global batch as a run in one process, and a resumed run continues
exactly where the interrupted one stopped. Rank 0 writes `config.json` at the start,
`checkpoint.pt` (model, EMAs, optimiser, step, log, RNG states, training seconds; atomically)
every `checkpoint_every` steps and at the end, EMA snapshots `snapshots/ema-<step>.pt` every
`snapshot_every` steps when asked, then `log.csv` and `provenance.json`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from multisource.common.devices import describe_device
from multisource.common.provenance import (
    atomic_write_bytes,
    atomic_write_text,
    config_hash,
    config_to_dict,
    provenance_record,
)
from multisource.common.validation import InputError
from multisource.models.diffusion.config import PRESETS, DiffusionConfig, TrainConfig
from multisource.models.diffusion.ema import PowerFunctionEMA
from multisource.models.diffusion.network import EDMDenoiser, build_model

_log = logging.getLogger("multisource.diffusion")

EXPERIMENT = "diffusion"
CHECKPOINT = "checkpoint.pt"
SNAPSHOT_DIR = "snapshots"
CONFIG_FILE = "config.json"
LOG_FILE = "log.csv"
PROVENANCE_FILE = "provenance.json"
_SEED_STRIDE = 1_000_003


@dataclass
class TrainResult:
    """What `train` returns: the raw model, its tracked EMAs by sigma_rel, the log, provenance."""

    model: nn.Module
    ema_models: dict[float, nn.Module]
    log: pd.DataFrame
    provenance: dict[str, Any]
    out_dir: Path | None = None
    completed: bool = True
    steps_done: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def learning_rate(step: int, config: TrainConfig) -> float:
    """Learning rate of optimiser step `step` (1-based): inverse-sqrt decay with linear warm-up."""
    ratio = step / config.t_ref_steps
    if config.lr_decay == "edm2":
        lr = config.lr_ref / math.sqrt(max(ratio, 1.0))
    else:  # "multisource": the multi-source paper's code divides by sqrt(4 t/t_ref) past t_ref
        lr = config.lr_ref / math.sqrt(4 * ratio) if ratio > 1 else config.lr_ref
    if config.warmup_steps > 0:
        lr *= min(step / config.warmup_steps, 1.0)
    return lr


def sample_sigma(n: int, config: DiffusionConfig, generator: torch.Generator | None = None,
                 device: torch.device | None = None) -> torch.Tensor:
    """Training noise levels: ln(sigma) ~ N(P_mean, P_std^2), shape [n]."""
    z = torch.randn(n, generator=generator, device=device)
    return (z * config.P_std + config.P_mean).exp()


def edm2_loss(model: nn.Module, images: torch.Tensor, labels: torch.Tensor | None,
              sigma: torch.Tensor, noise: torch.Tensor, sigma_data: float) -> torch.Tensor:
    """Uncertainty-weighted EDM2 loss, averaged over the batch.

    Per image: lambda(sigma)/exp(u(sigma)) * mean_pixels (D(x + sigma n; sigma) - x)^2 + u(sigma),
    with lambda = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2 = 1/c_out^2.
    """
    s = sigma.reshape(-1, 1, 1, 1)
    weight = (s ** 2 + sigma_data ** 2) / (s * sigma_data) ** 2
    denoised, logvar = model(images + noise * s, sigma, labels, return_logvar=True)
    per_elem = weight / logvar.exp() * (denoised - images) ** 2 + logvar
    return per_elem.mean()


def _step_generator(seed: int, step: int, device: torch.device) -> torch.Generator:
    gen = torch.Generator(device=device)
    gen.manual_seed((seed * _SEED_STRIDE + step) % (2 ** 63 - 1))
    return gen


def make_batch(images: torch.Tensor, labels: torch.Tensor | None, step: int,
               model_config: DiffusionConfig, train_config: TrainConfig, rank: int = 0,
               world_size: int = 1) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor,
                                             torch.Tensor]:
    """This rank's share of step `step`'s global batch: (images, one-hot labels, sigma, noise).

    `images`/`labels` live on the training device; the draw depends only on (seed, step).
    """
    device = images.device
    gen = _step_generator(train_config.seed, step, device)
    b = train_config.batch_size
    idx = torch.randint(images.shape[0], (b,), generator=gen, device=device)
    sigma = sample_sigma(b, model_config, gen, device)
    noise = torch.randn((b, *images.shape[1:]), generator=gen, device=device)
    share = b // world_size
    sl = slice(rank * share, (rank + 1) * share)
    idx = idx[sl]
    x = images.index_select(0, idx)
    onehot = None
    if labels is not None and model_config.label_dim:
        onehot = torch.nn.functional.one_hot(labels.index_select(0, idx),
                                             model_config.label_dim).float()
    return x, onehot, sigma[sl], noise[sl]


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, batch: tuple, lr: float,
               sigma_data: float, micro_batch: int | None = None,
               autocast_dtype: torch.dtype | None = None) -> torch.Tensor:
    """One optimiser step (forward, backward, Adam); returns the detached mean loss.

    With `micro_batch`, the batch is processed in chunks whose gradients are accumulated
    (weighted by chunk size, so the step equals one on the whole batch); under DDP the
    gradients are all-reduced only with the last chunk. With `autocast_dtype` (bfloat16) the
    forward pass runs under autocast; weights, gradients and Adam stay in fp32.
    """
    for group in optimizer.param_groups:
        group["lr"] = lr
    x, onehot, sigma, noise = batch
    n = x.shape[0]
    size = n if micro_batch is None else max(1, min(micro_batch, n))
    starts = list(range(0, n, size))
    optimizer.zero_grad(set_to_none=True)
    total = torch.zeros((), device=x.device)
    for i, start in enumerate(starts):
        sl = slice(start, start + size)
        last = i == len(starts) - 1
        sync = contextlib.nullcontext() if last or not hasattr(model, "no_sync") \
            else model.no_sync()
        autocast = (torch.autocast(x.device.type, dtype=autocast_dtype)
                    if autocast_dtype is not None else contextlib.nullcontext())
        with sync:
            with autocast:
                part = edm2_loss(model, x[sl], None if onehot is None else onehot[sl],
                                 sigma[sl], noise[sl], sigma_data).float() * (x[sl].shape[0] / n)
            part.backward()
        total += part.detach()
    for p in model.parameters():
        if p.grad is not None:
            torch.nan_to_num_(p.grad, nan=0.0, posinf=1e5, neginf=-1e5)
    optimizer.step()
    return total


def _configs_dict(model_config: DiffusionConfig, train_config: TrainConfig) -> dict[str, Any]:
    return {"model": config_to_dict(model_config), "train": config_to_dict(train_config)}


def preset_name(model_config: DiffusionConfig, train_config: TrainConfig) -> str:
    """The name of the preset these configs equal, or 'custom'."""
    for name, (m, t) in PRESETS.items():
        if m == model_config and t == train_config:
            return name
    return "custom"


def data_fingerprint(images: torch.Tensor, labels: torch.Tensor | None) -> str:
    """Short SHA-256 of the training images and labels (to refuse resuming on other data)."""
    h = hashlib.sha256()
    h.update(str(tuple(images.shape)).encode())
    h.update(images.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    if labels is not None:
        h.update(labels.detach().to("cpu", torch.int64).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _validate(model_config: DiffusionConfig, train_config: TrainConfig, images: torch.Tensor,
              labels: torch.Tensor | None, world_size: int,
              value_range: tuple[float, float] | None) -> None:
    if not isinstance(model_config, DiffusionConfig):
        raise InputError(f"model_config must be a DiffusionConfig, got "
                         f"{type(model_config).__name__}")
    if not isinstance(train_config, TrainConfig):
        raise InputError(f"train_config must be a TrainConfig, got {type(train_config).__name__}")
    c, r = model_config.img_channels, model_config.img_resolution
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or tuple(images.shape[1:]) != \
            (c, r, r) or images.shape[0] < 1:
        shape = list(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise InputError(f"images must be a float tensor [N>=1, {c}, {r}, {r}], got {shape}")
    if not images.is_floating_point():
        raise InputError(f"images must be floating point, got dtype {images.dtype}")
    lo, hi = float(images.min()), float(images.max())
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise InputError("images must be finite, got NaN or infinite values")
    if value_range is not None:
        low, high = value_range
        slack = 1e-4 * (high - low)
        if lo < low - slack or hi > high + slack:
            raise InputError(f"images must lie in [{low:g}, {high:g}], got values in "
                             f"[{lo:.3g}, {hi:.3g}] (latents: pass value_range=None)")
    if model_config.label_dim:
        if not isinstance(labels, torch.Tensor) or labels.ndim != 1 or \
                labels.shape[0] != images.shape[0] or labels.is_floating_point():
            raise InputError(f"labels must be an integer tensor [{images.shape[0]}] with values "
                             f"in [0, {model_config.label_dim - 1}]")
        if int(labels.min()) < 0 or int(labels.max()) >= model_config.label_dim:
            raise InputError(f"labels must be in [0, {model_config.label_dim - 1}], got "
                             f"[{int(labels.min())}, {int(labels.max())}]")
    if train_config.batch_size % world_size != 0:
        raise InputError(f"batch_size must be a multiple of the world size {world_size}, got "
                         f"{train_config.batch_size}")


def _dist_setup(device: torch.device) -> tuple[int, int, torch.device, bool]:
    """(rank, world_size, device, created) — initialises the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    created = False
    if world > 1 and dist.is_available() and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
        created = True
    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
    else:
        rank, world = 0, 1
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    return rank, world, device, created


def _serialize(obj: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _rng_states() -> dict[str, Any]:
    states: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def train(model_config: DiffusionConfig, train_config: TrainConfig, images: torch.Tensor,
          labels: torch.Tensor | None, out_dir: Path, device: torch.device,
          progress: bool = True, *, stop_after: int | None = None,
          value_range: tuple[float, float] | None = (-1.0, 1.0), channels_last: bool = False,
          compile_model: bool = False) -> TrainResult:
    """Train the denoiser on `images` [N, C, H, W] with class `labels` [N].

    Pixel images lie in `value_range` ([-1, 1]); latents (any finite values, e.g. normalised
    VAE latents) pass `value_range=None`. `channels_last` and `compile_model` (torch.compile)
    change speed, not the maths; they are recorded in the provenance.

    Resumes from `out_dir/checkpoint.pt` when it was written for the same configs and data (a
    finished run returns at once); refuses a checkpoint of other configs or data. Under
    `torchrun` each rank takes batch_size / world_size images of every global batch and rank 0
    writes the files. `stop_after` ends this call after that many steps without a final
    checkpoint, as an interruption would (for tests and time-boxed runs).
    """
    device = torch.device(device)
    out_dir = Path(out_dir)
    rank, world, device, created_pg = _dist_setup(device)
    try:
        _validate(model_config, train_config, images, labels, world, value_range)
        return _train(model_config, train_config, images, labels, out_dir, device, progress,
                      stop_after, rank, world, channels_last=channels_last,
                      compile_model=compile_model)
    finally:
        if created_pg:
            dist.destroy_process_group()


def _train(model_config: DiffusionConfig, train_config: TrainConfig, images: torch.Tensor,
           labels: torch.Tensor | None, out_dir: Path, device: torch.device, progress: bool,
           stop_after: int | None, rank: int, world: int, *, channels_last: bool,
           compile_model: bool) -> TrainResult:
    configs = _configs_dict(model_config, train_config)
    chash = config_hash(EXPERIMENT, configs)
    dhash = data_fingerprint(images, labels)
    profile = preset_name(model_config, train_config)
    ckpt_path = out_dir / CHECKPOINT
    model = build_model(model_config, seed=train_config.seed).to(device).train()
    ema = PowerFunctionEMA(model, train_config.ema_stds)
    optimizer = torch.optim.Adam(model.parameters(), lr=train_config.lr_ref,
                                 betas=(train_config.adam_beta1, train_config.adam_beta2),
                                 eps=train_config.adam_eps)
    step, rows, seconds_before = 0, [], 0.0
    if ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location=device, weights_only=True)
        if ckpt["config_hash"] != chash:
            raise InputError(f"out_dir holds a checkpoint of other configs "
                             f"({ckpt['config_hash']} != {chash}); use an empty out_dir")
        if ckpt["data_sha256_16"] != dhash:
            raise InputError("out_dir holds a checkpoint trained on other images or labels; "
                             "use an empty out_dir")
        model.load_state_dict(ckpt["model"])
        ema.load_state_dict(ckpt["ema"])
        optimizer.load_state_dict(ckpt["optimizer"])
        step, rows, seconds_before = ckpt["step"], list(ckpt["log"]), ckpt["seconds"]
    if rank == 0:   # written only once the folder is known to hold no other run
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out_dir / CONFIG_FILE, json.dumps(
            {**configs, "config_hash": chash, "data_sha256_16": dhash, "profile": profile,
             "world_size": world}, indent=2) + "\n")
        if 0 < step < train_config.total_steps:
            _log.info("resuming %s from step %d", out_dir, step)

    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    images = images.to(device, torch.float32).contiguous(memory_format=memory_format)
    labels = labels.to(device) if (labels is not None and model_config.label_dim) else None
    model.to(memory_format=memory_format)
    net: nn.Module = model
    if world > 1:
        net = DistributedDataParallel(model, device_ids=[device.index]
                                      if device.type == "cuda" else None)
    if compile_model:
        net = torch.compile(net)
    autocast_dtype = torch.bfloat16 if train_config.precision == "bf16" else None

    def checkpoint() -> None:
        if rank != 0:
            return
        state = {"config_hash": chash, "data_sha256_16": dhash, "configs": configs,
                 "step": step, "model": model.state_dict(), "ema": ema.state_dict(),
                 "optimizer": optimizer.state_dict(), "log": rows, "seconds": seconds,
                 "rng": _rng_states(), "world_size": world}
        atomic_write_bytes(ckpt_path, _serialize(state))

    start_step = step
    t0 = time.perf_counter()
    seconds = seconds_before
    bar = None
    redirect = contextlib.ExitStack()
    if progress and rank == 0 and step < train_config.total_steps:
        from tqdm.auto import tqdm
        from tqdm.contrib.logging import logging_redirect_tqdm
        bar = tqdm(total=train_config.total_steps, initial=step, desc="diffusion", unit="step")
        redirect.enter_context(logging_redirect_tqdm())
    loss_sum = torch.zeros((), device=device)
    loss_count = 0
    interrupted = False
    while step < train_config.total_steps:
        if stop_after is not None and step - start_step >= stop_after:
            interrupted = True
            break
        step += 1
        torch.manual_seed((train_config.seed * _SEED_STRIDE + step) * 64 + rank)
        lr = learning_rate(step, train_config)
        batch = make_batch(images, labels, step, model_config, train_config, rank, world)
        loss = train_step(net, optimizer, batch, lr, model_config.sigma_data,
                          train_config.batch_per_device, autocast_dtype)
        ema.update(model, step)
        if rank == 0 and train_config.snapshot_every and step % train_config.snapshot_every == 0:
            _write_snapshot(out_dir, step, ema, seconds_before + time.perf_counter() - t0)
        loss_sum += loss
        loss_count += 1
        seconds = seconds_before + time.perf_counter() - t0
        if step % train_config.log_every == 0 or step == train_config.total_steps:
            mean_loss = loss_sum / loss_count
            if world > 1:
                dist.all_reduce(mean_loss)
                mean_loss /= world
            row = {"step": step, "loss": float(mean_loss), "lr": lr, "seconds": round(seconds, 3)}
            rows.append(row)
            loss_sum.zero_()
            loss_count = 0
            if rank == 0:
                _log.info("step %d/%d loss %.4f lr %.3g %.1fs", step, train_config.total_steps,
                          row["loss"], lr, seconds)
                if bar is not None:
                    bar.set_postfix(loss=f"{row['loss']:.3f}", lr=f"{lr:.2g}")
        if bar is not None:
            bar.update(1)
        if step % train_config.checkpoint_every == 0 or step == train_config.total_steps:
            checkpoint()
    if bar is not None:
        bar.close()
    redirect.close()

    log = pd.DataFrame(rows, columns=["step", "loss", "lr", "seconds"])
    record = provenance_record(
        experiment=EXPERIMENT, profile=profile, config=configs, device=describe_device(device),
        wall_time_s=seconds,
        extra={"data_sha256_16": dhash, "world_size": world, "steps_done": step,
               "completed": not interrupted, "resumed_from_step": start_step or None,
               "precision": train_config.precision, "channels_last": channels_last,
               "compiled": compile_model})
    if rank == 0 and not interrupted and step > start_step:
        atomic_write_text(out_dir / LOG_FILE, log.to_csv(index=False))
        atomic_write_text(out_dir / PROVENANCE_FILE, json.dumps(record, indent=2) + "\n")
    elif rank == 0 and not interrupted and (out_dir / PROVENANCE_FILE).exists():
        record = json.loads((out_dir / PROVENANCE_FILE).read_text())
    if world > 1:
        dist.barrier()
    model.eval()
    return TrainResult(model=model, ema_models=dict(ema.models), log=log, provenance=record,
                       out_dir=out_dir, completed=not interrupted, steps_done=step)


def _snapshot_path(out_dir: Path, step: int) -> Path:
    return Path(out_dir) / SNAPSHOT_DIR / f"ema-{step:09d}.pt"


def _write_snapshot(out_dir: Path, step: int, ema: PowerFunctionEMA, seconds: float) -> None:
    state = {"step": step, "seconds": seconds, "ema": ema.state_dict()}
    atomic_write_bytes(_snapshot_path(out_dir, step), _serialize(state))


def snapshot_steps(out_dir: Path) -> list[int]:
    """Steps at which `out_dir` holds an EMA snapshot, ascending."""
    folder = Path(out_dir) / SNAPSHOT_DIR
    steps = []
    for path in folder.glob("ema-*.pt"):
        with contextlib.suppress(ValueError):
            steps.append(int(path.stem.split("-", 1)[1]))
    return sorted(steps)


def load_snapshot(out_dir: Path, step: int, device: torch.device | str = "cpu"
                  ) -> tuple[dict[float, nn.Module], float]:
    """The EMA models saved at `step` of the run in `out_dir`, and the training seconds to then.

    Because the learning-rate schedule and the EMA do not depend on `total_steps`, these are
    the EMAs a run stopped at `step` would have produced.
    """
    out_dir = Path(out_dir)
    path = _snapshot_path(out_dir, step)
    if not path.exists():
        raise InputError(f"step must be one of the saved snapshots {snapshot_steps(out_dir)}, "
                         f"got {step}")
    ckpt_path = out_dir / CHECKPOINT
    if not ckpt_path.exists():
        raise InputError(f"out_dir must hold a {CHECKPOINT}; none in {out_dir}")
    device = torch.device(device)
    configs = torch.load(ckpt_path, map_location="cpu", weights_only=True)["configs"]
    model_config = _config_from_dict(DiffusionConfig, configs["model"])
    train_config = _config_from_dict(TrainConfig, configs["train"])
    model = build_model(model_config, seed=train_config.seed).to(device)
    ema = PowerFunctionEMA(model, train_config.ema_stds)
    state = torch.load(path, map_location=device, weights_only=True)
    ema.load_state_dict(state["ema"])
    return dict(ema.models), float(state["seconds"])


def _config_from_dict(cls: type, data: dict[str, Any]) -> Any:
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            value = data[f.name]
            kwargs[f.name] = tuple(value) if isinstance(value, list) else value
    return cls(**kwargs)


def load_result(out_dir: Path, device: torch.device | str = "cpu") -> TrainResult:
    """Load a finished (or interrupted) run's model, EMAs and log from `out_dir/checkpoint.pt`."""
    out_dir = Path(out_dir)
    path = out_dir / CHECKPOINT
    if not path.exists():
        raise InputError(f"out_dir must hold a {CHECKPOINT}; none in {out_dir}")
    device = torch.device(device)
    ckpt = torch.load(path, map_location=device, weights_only=True)
    model_config = _config_from_dict(DiffusionConfig, ckpt["configs"]["model"])
    train_config = _config_from_dict(TrainConfig, ckpt["configs"]["train"])
    model: EDMDenoiser = build_model(model_config, seed=train_config.seed).to(device)
    model.load_state_dict(ckpt["model"])
    ema = PowerFunctionEMA(model, train_config.ema_stds)
    ema.load_state_dict(ckpt["ema"])
    prov_path = out_dir / PROVENANCE_FILE
    provenance = json.loads(prov_path.read_text()) if prov_path.exists() else {}
    return TrainResult(model=model.eval(), ema_models=dict(ema.models),
                       log=pd.DataFrame(ckpt["log"], columns=["step", "loss", "lr", "seconds"]),
                       provenance=provenance, out_dir=out_dir,
                       completed=ckpt["step"] >= train_config.total_steps,
                       steps_done=ckpt["step"])
