"""The ImageNet protocol's runs: training on a prepared subset (pixels or SD-VAE latents),
sampling every class of a run, and per-class FID of the samples. The subsets themselves and
the protocol as data live in `multisource.images.imagenet`; latents in `images.latents`."""


from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from multisource.common.provenance import atomic_write_bytes, atomic_write_text, sha256_bytes
from multisource.common.validation import InputError, check_choice, check_int
from multisource.images.imagenet import (
    RUN_INFO,
    _check_labels,
    load_subset,
    npz_bytes,
    to_training_tensor,
)

# --- 2. Training: the plan, decided before any work -----------------------------------------


@dataclass(frozen=True)
class TrainingPlan:
    """What `train_subset` will do: configs, the data kind, the schedule it chose and why."""

    model_config: Any
    train_config: Any
    kind: str                       # "latents" or "pixels"
    schedule: Any | None            # the authors' preset when the paper preset uses it
    messages: tuple[str, ...]
    value_range: tuple[float, float] | None
    channels_last: bool
    compile_model: bool


def _subset_of(data: str | Path) -> tuple[str, Any]:
    from multisource.images.latents import is_latent_file, load_latents

    if is_latent_file(data):
        latents = load_latents(data)
        _check_labels(Path(data), latents.labels, latents.mean.shape[0],
                      len(latents.class_indices))
        return "latents", latents
    return "pixels", load_subset(data)


def plan_training(data: str | Path, *, preset: str = "smoke", schedule_variant: str | None = None,
                  device: str = "auto", total_steps: int | None = None,
                  batch_size: int | None = None, batch_per_device: int | None = None,
                  seed: int = 0, precision: str = "auto", compile_model: bool = False,
                  channels_last: bool = False) -> tuple[TrainingPlan, Any]:
    """Choose configs and schedule for a subset file; returns (plan, loaded subset).

    `preset='paper'` is EDM2-XS on 32x32x4 latents with the authors' schedule for the data's
    (K, n per class, level); a combination without a preset is an InputError listing the
    valid ones. `smoke`/`book` are the small models of the diffusion package with their own
    short schedules (the authors' schedule is reported, not used).
    """
    import dataclasses

    from multisource.common.devices import resolve_device
    from multisource.models.diffusion import PRESETS as MODEL_PRESETS
    from multisource.models.diffusion.config import PRECISIONS
    from multisource.models.diffusion.schedules import (
        check_paper_shape,
        paper_model_config,
        select_schedule,
    )

    check_choice("preset", preset, MODEL_PRESETS)
    check_choice("precision", precision, ("auto", *PRECISIONS))
    seed = check_int("seed", seed, minimum=0, maximum=2 ** 62)
    torch_device = resolve_device(device)
    kind, subset = _subset_of(data)
    if kind == "latents":
        channels, height, width = subset.mean.shape[1:]
    else:
        height, width, channels = subset.images.shape[1:]
    if height != width:
        raise InputError(f"data must hold square images or latents, got {height}x{width}")
    k = len(subset.class_indices)
    level, n_per_class = subset.meta.get("level"), subset.meta.get("n_per_class")
    messages = []
    schedule = None
    if preset == "paper":
        schedule = select_schedule(k, n_per_class, level, schedule_variant)
        check_paper_shape((int(channels), int(height), int(width)))
        model_config = paper_model_config(k)
        train_config = schedule.train_config(batch_size)
        messages.append(schedule.describe())
    else:
        if schedule_variant is not None:
            raise InputError("schedule variants apply to the paper preset only")
        model_config, train_config = MODEL_PRESETS[preset]
        model_config = dataclasses.replace(model_config, img_resolution=int(height),
                                           img_channels=int(channels), label_dim=k)
        if batch_size is not None:
            train_config = dataclasses.replace(
                train_config, batch_size=check_int("batch", batch_size, minimum=1))
        try:
            would = select_schedule(k, n_per_class, level).name
            messages.append(f"preset {preset}: its own short schedule (the paper preset would "
                            f"use {would})")
        except InputError:
            messages.append(f"preset {preset}: its own short schedule (no authors' preset for "
                            f"K={k}, n={n_per_class})")
    chosen_precision = precision
    if precision == "auto":
        chosen_precision = "bf16" if torch_device.type == "cuda" else "fp32"
    overrides: dict[str, Any] = {"seed": seed, "precision": chosen_precision}
    if total_steps is not None:
        overrides["total_steps"] = check_int("steps", total_steps, minimum=1)
    if batch_per_device is not None:
        overrides["batch_per_device"] = check_int("batch_per_device", batch_per_device,
                                                  minimum=1)
    train_config = dataclasses.replace(train_config, **overrides)
    messages.append(f"{kind} {int(channels)}x{int(height)}x{int(width)}, K={k}, "
                    f"{train_config.total_steps} steps of batch {train_config.batch_size}, "
                    f"precision {chosen_precision}, device {torch_device.type}"
                    + (", compiled" if compile_model else "")
                    + (", channels-last" if channels_last else ""))
    plan = TrainingPlan(model_config, train_config, kind, schedule, tuple(messages),
                        None if kind == "latents" else (-1.0, 1.0), channels_last,
                        compile_model)
    return plan, subset


def train_subset(data: str | Path, out_dir: str | Path, *, preset: str = "smoke",
                 schedule_variant: str | None = None, device: str = "auto",
                 total_steps: int | None = None, batch_size: int | None = None,
                 batch_per_device: int | None = None, seed: int = 0, precision: str = "auto",
                 compile_model: bool = False, channels_last: bool = False,
                 progress: bool = True, report: Any = None) -> Path:
    """Train on a prepared subset or its latents; returns the run folder.

    See `plan_training` for the preset and schedule choice. Latents train with no range check
    (any finite values) and are kept resident on the training device. Runs under `torchrun`
    (DDP: NCCL on GPUs, gloo on CPUs); only rank 0 writes.
    """
    from multisource.common.devices import resolve_device
    from multisource.models.diffusion import train
    from multisource.models.diffusion.device_data import resident, training_device

    plan, subset = plan_training(data, preset=preset, schedule_variant=schedule_variant,
                                 device=device, total_steps=total_steps,
                                 batch_size=batch_size, batch_per_device=batch_per_device,
                                 seed=seed, precision=precision, compile_model=compile_model,
                                 channels_last=channels_last)
    rank = int(os.environ.get("RANK", "0"))
    if report is not None and rank == 0:
        for line in plan.messages:
            report(line)
    torch_device = training_device(resolve_device(device))
    if plan.kind == "latents":
        tensor = subset.training_latents()
    else:
        tensor = to_training_tensor(subset.images)
    images = resident(tensor, torch_device, torch.float32)
    labels = resident(torch.from_numpy(subset.labels.astype(np.int64)), torch_device)
    out_dir = Path(out_dir)
    train(plan.model_config, plan.train_config, images, labels, out_dir, torch_device,
          progress=progress, value_range=plan.value_range, channels_last=plan.channels_last,
          compile_model=plan.compile_model)
    if rank != 0:   # under torchrun only rank 0 writes
        return out_dir
    info = {"data": Path(data).name, "kind": plan.kind,
            "class_indices": subset.class_indices.tolist(), "meta": subset.meta,
            "preset": preset, "schedule": None if plan.schedule is None else plan.schedule.name}
    atomic_write_text(out_dir / RUN_INFO, json.dumps(info, indent=2) + "\n")
    return out_dir


# --- 3. Sampling ------------------------------------------------------------------------------


def read_run_info(run_dir: str | Path) -> dict[str, Any]:
    """The run folder's `subset.json` (one-line errors for a missing or damaged one)."""
    if not str(run_dir).strip():
        raise InputError("run must be a non-empty path to a folder written by `multisource "
                         "imagenet train`, got ''")
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(f"run must be an existing run folder written by `multisource imagenet "
                         f"train`, got {str(run_dir)!r}")
    path = run_dir / RUN_INFO
    if not path.is_file():
        raise InputError(f"run must be a folder written by `multisource imagenet train`; no "
                         f"{RUN_INFO} in {run_dir}")
    try:
        info = json.loads(path.read_text())
        info["class_indices"] = [int(i) for i in info["class_indices"]]
        info.setdefault("kind", "pixels")
        info.setdefault("meta", {})
    except (ValueError, KeyError, TypeError):
        raise InputError(f"{path} is damaged (not the JSON `imagenet train` writes)") from None
    return info


def sample_subset(run_dir: str | Path, out: str | Path, *, samples_per_class: int = 5000,
                  num_steps: int = 32, ema_std: float = 0.05, seed: int = 0,
                  device: str = "auto", batch_size: int = 256, vae: str | Path | None = None,
                  progress: bool = False) -> Path:
    """Sample every class of a trained run (Heun, `num_steps`); write them as a subset `.npz`.

    Class j's noise comes from one generator seeded `seed + 1_000_003 * j`, so the classes'
    samples do not depend on each other or on `batch_size`. A latent run needs the VAE that
    encoded its data (`vae`): its samples are not clamped, are decoded to uint8 images, and
    are stored too (`latents`).
    """
    from multisource.common.devices import resolve_device
    from multisource.images.latents import (
        LatentNormalisation,
        decode_latents,
        load_vae,
        vae_fingerprint,
    )
    from multisource.models.diffusion import sample
    from multisource.models.diffusion.train_cli import load_checkpointed_run

    info = read_run_info(run_dir)
    n = check_int("samples_per_class", samples_per_class, minimum=1, maximum=1_000_000)
    num_steps = check_int("steps", num_steps, minimum=1, maximum=10_000)
    seed = check_int("seed", seed, minimum=0, maximum=2 ** 52)
    batch_size = check_int("batch", batch_size, minimum=1)
    latent = info["kind"] == "latents"
    if latent:
        if vae is None:
            raise InputError("vae must be given for a latent run: the local folder of the VAE "
                             "that encoded its training data")
        expected = info["meta"].get("vae_sha256_16")
        if expected and vae_fingerprint(vae) != expected:
            raise InputError(f"vae {vae} is not the VAE that encoded this run's latents "
                             f"(fingerprint {vae_fingerprint(vae)} != {expected})")
    torch_device = resolve_device(device)
    result = load_checkpointed_run(Path(run_dir), torch_device)
    if ema_std not in result.ema_models:
        raise InputError(f"ema_std must be one of {sorted(result.ema_models)}, got {ema_std}")
    model = result.ema_models[ema_std]
    classes = range(len(info["class_indices"]))
    if progress:
        from tqdm.auto import tqdm

        classes = tqdm(classes, desc="sample", unit="class")
    outputs, labels = [], []
    for label in classes:
        x = sample(model, torch.full((n,), label, dtype=torch.long), num_steps=num_steps,
                   seed=seed + 1_000_003 * label, device=torch_device, batch_size=batch_size,
                   clip=None if latent else (-1.0, 1.0))
        outputs.append(x)
        labels.append(np.full(n, label, np.int64))
    x_all = torch.cat(outputs)
    arrays: dict[str, np.ndarray] = {}
    if latent:
        norm = LatentNormalisation.from_dict(info["meta"]["normalisation"])
        images = decode_latents(load_vae(vae, torch_device), x_all, norm, device=torch_device,
                                batch_size=min(batch_size, 32), progress=progress)
        arrays["latents"] = x_all.numpy().astype(np.float32)
    else:
        images = ((x_all.permute(0, 2, 3, 1).numpy() + 1) * 127.5).round().clip(0, 255) \
            .astype(np.uint8)
    meta = {**info["meta"], "samples_per_class": n, "num_steps": num_steps, "ema_std": ema_std,
            "seed": seed, "run_dir": Path(run_dir).name, "kind": "samples",
            "decoded_from_latents": latent}
    out = Path(out)
    atomic_write_bytes(out, npz_bytes(images=images, labels=np.concatenate(labels),
                                      class_indices=np.asarray(info["class_indices"], np.int64),
                                      meta=np.asarray(json.dumps(meta)), **arrays))
    return out


# --- 4. Evaluation ----------------------------------------------------------------------------


def _pixel_features(images: torch.Tensor) -> torch.Tensor:
    """8x8 area-pooled grey pixels of uint8 [N, 3, H, W]: a label-free stand-in, not FID."""
    x = images.float().mean(1, keepdim=True) / 255.0
    return torch.nn.functional.adaptive_avg_pool2d(x, 8).flatten(1)


def evaluate_subset(samples: str | Path, reference: str | Path, *, extractor: str = "inception",
                    inception_weights: str | Path | None = None, device: str = "auto",
                    batch_size: int = 64, out: str | Path | None = None,
                    progress: bool = False) -> dict[str, Any]:
    """Per-class FID of samples vs that class's reference images, and its mean over classes.

    `extractor='inception'` is FID by the reference protocol (`image_metrics.fid`): uint8
    images at native size into the user's local Inception TorchScript on `device` (argument
    or $MULTISOURCE_INCEPTION_WEIGHTS; one-line error otherwise). `'pixels'` is a pooled-pixel
    Frechet distance for pipeline tests, not comparable to anything published.
    """
    from multisource.common.devices import resolve_device
    from multisource.image_metrics.fid import REFERENCE_PROTOCOL, per_class_fid

    check_choice("extractor", extractor, ("inception", "pixels"))
    batch_size = check_int("batch", batch_size, minimum=1)
    torch_device = resolve_device(device)
    if extractor == "inception":
        from multisource.image_metrics.inception import inception_network, inception_weights_path

        weights_path = inception_weights_path(inception_weights)  # fail before any work
    gen, ref = load_subset(samples), load_subset(reference)
    if gen.class_indices.tolist() != ref.class_indices.tolist():
        raise InputError(f"samples and reference must hold the same classes, got "
                         f"{gen.class_indices.tolist()} and {ref.class_indices.tolist()}")
    features = (inception_network(weights_path, torch_device) if extractor == "inception"
                else _pixel_features)
    class_ids = [str(i) for i in gen.class_indices.tolist()]
    per_class = per_class_fid(gen.images, gen.labels, ref.images, ref.labels, class_ids,
                              features, device=torch_device, batch_size=batch_size,
                              progress=progress)
    report = {"metric": "FID" if extractor == "inception" else "FD-pixels",
              "protocol": REFERENCE_PROTOCOL if extractor == "inception" else
              "8x8 pooled grey pixels (pipeline test only)",
              "per_class": per_class, "mean": float(np.mean(list(per_class.values()))),
              "samples_per_class": {c: int((gen.labels == j).sum())
                                    for j, c in enumerate(class_ids)},
              "reference_per_class": {c: int((ref.labels == j).sum())
                                      for j, c in enumerate(class_ids)},
              "samples": Path(samples).name, "reference": Path(reference).name,
              "samples_sha256": sha256_bytes(Path(samples).read_bytes())}
    if extractor == "inception":
        report["inception_sha256"] = sha256_bytes(weights_path.read_bytes())
    if out is not None:
        atomic_write_text(Path(out), json.dumps(report, indent=2) + "\n")
    return report
