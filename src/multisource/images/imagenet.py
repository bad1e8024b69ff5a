"""The paper's ImageNet protocol as data, and runnable glue for users with ILSVRC2012 and GPUs.

Sources (tags as in the project's paper digest): [CODE] = the authors' repository
ML-GSAI/Multi-Source-GM; [SEC] = a secondary, unverified summary of the paper; [UNKNOWN] = not
found anywhere. The paper's FID numbers are [UNKNOWN]; nothing here claims to reproduce them.

Pipeline (each step a function; the CLI wires `multisource imagenet ...` to them):

1. `prepare_subset(train_dir, level, k, n_per_class, resolution, out)`: class subset from a local
   ILSVRC2012 train folder (`train/<wnid>/*.JPEG`), resized, written as one compressed `.npz`
   (uint8 images [N, H, W, 3], labels 0..K-1, the ImageNet indices, wnids and file names).
   `n_per_class=None` takes every image of each class (the FID reference sets).
2. `multisource.images.latents.encode_subset(data, vae, out)`: SD-VAE latents (4x32x32 for
   256-pixel images) from a local VAE folder, with EDM2's per-channel normalisation.
3. `train_subset(data, out_dir, preset=...)`: trains the repo's EDM2-style model on images or
   latents; `preset='paper'` is EDM2-XS with the authors' schedule for the data's (K, n,
   level) (`models.diffusion.schedules`). Runs under `torchrun` (DDP).
4. `sample_subset(run_dir, out, vae=...)`: per-class samples with the 32-step Heun sampler,
   decoded by the VAE for latent runs.
5. `evaluate_subset(samples, reference, ...)`: per-class FID (reference protocol,
   `image_metrics.fid`) and its mean over classes; raw pixels for tests.

Deviations from the authors' code (stated, deliberate): images are drawn WITHOUT replacement with
a fixed seed (their converter draws `torch.randint(0, n_class-1)` with replacement, no seed);
latent training uses one seeded posterior draw per image instead of a fresh draw per batch
(see `images.latents`); mixed precision is bf16 autocast (theirs: fp16).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from multisource.provenance import atomic_write_bytes, atomic_write_text, sha256_bytes
from multisource.validation import InputError, check_choice, check_int

# --- The protocol as data ---------------------------------------------------------------------

# [CODE] training/dataset.py hierarchy + bash scripts. Order matters: the code relabels classes
# 0..9 in this order, and the 5-class subsets are the first five. The 3-class subsets are
# [UNKNOWN]; we take the first three by analogy. Class 171 (Italian greyhound) is in all three.
# The code's numbering: sim3 = most similar (dog breeds), sim1 = least similar.
CLASS_LISTS: dict[str, tuple[tuple[int, str, str], ...]] = {
    "sim3": (  # "dog": 10 dog breeds
        (171, "n02091032", "Italian greyhound"), (182, "n02093754", "Border terrier"),
        (198, "n02097209", "standard schnauzer"), (208, "n02099712", "Labrador retriever"),
        (215, "n02101388", "Brittany spaniel"), (231, "n02106030", "collie"),
        (236, "n02107142", "Doberman"), (244, "n02108551", "Tibetan mastiff"),
        (245, "n02108915", "French bulldog"), (258, "n02111889", "Samoyed"),
    ),
    "sim2": (  # "mammal": 171 + 9 mammals
        (171, "n02091032", "Italian greyhound"), (269, "n02114367", "timber wolf"),
        (279, "n02120079", "Arctic fox"), (283, "n02123394", "Persian cat"),
        (294, "n02132136", "brown bear"), (330, "n02325366", "wood rabbit"),
        (340, "n02391049", "zebra"), (366, "n02480855", "gorilla"),
        (370, "n02484975", "guenon"), (386, "n02504458", "African elephant"),
    ),
    "sim1": (  # "imagenet": 171 + 9 unrelated classes
        (171, "n02091032", "Italian greyhound"), (1, "n01443537", "goldfish"),
        (18, "n01582220", "magpie"), (31, "n01644373", "tree frog"),
        (46, "n01693334", "green lizard"), (532, "n03201208", "dining table"),
        (579, "n03452741", "grand piano"), (609, "n03594945", "jeep"),
        (849, "n04398044", "teapot"), (980, "n09472597", "volcano"),
    ),
}
ANCHOR_CLASS = 171
# [CODE] presets exist for K in {1, 3, 5, 10}; [SEC] says the paper reports K in {3, 10} and two
# similarity levels (which two of the three is [UNKNOWN]).
K_VALUES = (1, 3, 5, 10)
PAPER_K_VALUES = (3, 10)             # [SEC]
N_PER_CLASS_VALUES = (100, 500, 1000)  # [CODE] presets; [SEC] says the paper uses {500, 1000}
RESOLUTION = 256                     # [CODE] images resized to 256x256 (plain LANCZOS resize)
REFERENCE_PER_CLASS = 1300           # [CODE] FID refs: all ~1,300 train images of the class

# [CODE] training presets: name -> (training images, batch, ref lr, ref_batches). 1 Mi = 2^20.
# Which presets produced the paper's runs is [UNKNOWN]; the scripts override the batch to
# 1024 x #GPUs (the batch actually used is [UNKNOWN]). EDM2-XS (model_channels 128,
# channel_mult (1,2,3,4), 3 blocks, attention at 16 and 8) on 32x32x4 SD-VAE latents;
# P_mean -0.4, P_std 1.0, sigma_data 0.5, Adam (0.9, 0.99); EMA stds (0.05, 0.10), and the
# evaluation loads the 0.050 snapshot. LR: ref_lr, divided by sqrt(4 t / (ref_batches*batch))
# past the threshold (their change to EDM2), times a 10M-image linear ramp-up.
PRESETS: dict[str, tuple[int, int, float, int]] = {
    "edm2-img256-xs-1c-100": (50_331_648, 2048, 0.0040, 4000),
    "edm2-img256-xs-1c-500": (134_217_728, 2048, 0.0040, 2000),
    "edm2-img256-xs-1c-1000": (184_549_376, 2048, 0.0050, 2500),
    "edm2-img256-xs-3c-100": (67_108_864, 2048, 0.0020, 2000),
    "edm2-img256-xs-3c-500": (67_108_864, 2048, 0.0020, 2500),
    "edm2-img256-xs-3c-1000": (67_108_864, 2048, 0.0020, 2500),
    "edm2-img256-xs-5c-100": (67_108_864, 2048, 0.0040, 4000),
    "edm2-img256-xs-5c-500": (134_217_728, 2048, 0.0060, 4000),
    "edm2-img256-xs-5c-1000": (100_663_296, 2048, 0.0060, 4000),
    "edm2-img256-xs-10c-100": (67_108_864, 2048, 0.0030, 3000),
    "edm2-img256-xs-10c-500": (100_663_296, 2048, 0.0030, 3000),
    "edm2-img256-xs-10c-1000": (402_653_184, 2048, 0.0060, 3000),
    "edm2-img256-xs-10c-1000-nlr": (1_610_612_736, 2048, 0.0040, 6000),
}
# [CODE] generate_images.py / calculate_metrics.py: deterministic Heun, 32 steps, no guidance,
# 5,000 samples per class (seeds 0-4999), per-class Inception FID against the class's
# reference statistics, then averaged over the K classes (averaging code not in the repo).
SAMPLING = {"num_steps": 32, "sigma_min": 0.002, "sigma_max": 80.0, "rho": 7.0, "S_churn": 0.0,
            "guidance": 1.0, "samples_per_class": 5000, "ema_std": 0.050}
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
RUN_INFO = "subset.json"   # written into a run folder by `train_subset`


def subset_classes(level: str, k: int) -> tuple[tuple[int, str, str], ...]:
    """The first k (index, wnid, name) entries of a similarity level's class list."""
    check_choice("level", level, CLASS_LISTS)
    k = check_int("k", k, minimum=1, maximum=len(CLASS_LISTS[level]))
    return CLASS_LISTS[level][:k]


def preset_name(k: int, n_per_class: int) -> str:
    """The authors' preset name for K classes with n images each (an InputError if none)."""
    name = f"edm2-img256-xs-{k}c-{n_per_class}"
    if name not in PRESETS:
        raise InputError(f"(k, n_per_class) must be one of K in {{1,3,5,10}} x n in "
                         f"{{100,500,1000}}, got ({k}, {n_per_class})")
    return name


# --- Reading and writing subset files -------------------------------------------------------


def npz_bytes(**arrays: np.ndarray) -> bytes:
    """A compressed `.npz` of `arrays`, as bytes (written atomically by the callers)."""
    import io

    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def read_npz(path: str | Path, keys: tuple[str, ...], *, what: str) -> dict[str, np.ndarray]:
    """The arrays `keys` of an `.npz` file; a one-line InputError when it is not a valid one."""
    import zipfile

    if not str(path).strip() or not Path(path).is_file():
        raise InputError(f"{str(path)!r} must be an existing file: {what}")
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in keys if k not in data.files]
            if missing:
                raise InputError(f"{path} is not {what}: it lacks {', '.join(missing)}")
            return {k: data[k] for k in keys}
    except InputError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as error:
        raise InputError(f"{path} is not a readable .npz ({what}): "
                         f"{type(error).__name__}") from None


# --- 1. Class subsets from a local ILSVRC2012 train folder ---------------------------------


def _load_image(path: Path, resolution: int, transform: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            if transform == "center-crop":
                side = min(image.size)
                left, top = (image.width - side) // 2, (image.height - side) // 2
                image = image.crop((left, top, left + side, top + side))
            image = image.resize((resolution, resolution), Image.Resampling.LANCZOS)
            return np.asarray(image, dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as error:
        raise InputError(f"train_dir image {path} cannot be read ({type(error).__name__})"
                         ) from None


def _class_files(train_dir: Path, wnid: str) -> list[Path]:
    folder = train_dir / wnid
    if not folder.is_dir():
        raise InputError(f"train_dir must hold one folder per class (ImageFolder layout); "
                         f"{wnid} is missing in {train_dir}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(f"train_dir class folder {folder} holds no .JPEG/.jpg/.png images")
    return files


def choose_classes(level: str, k: int, classes: list[int] | None = None
                   ) -> tuple[tuple[int, str, str], ...]:
    """The first k classes of `level`, or the named ImageNet indices among that level's list.

    `classes` picks e.g. one class for a single-source model (`[279]` at sim2).
    """
    if classes is None:
        return subset_classes(level, k)
    check_choice("level", level, CLASS_LISTS)
    table = {c[0]: c for c in CLASS_LISTS[level]}
    if not classes or len(set(classes)) != len(classes):
        raise InputError(f"classes must be distinct ImageNet indices of level {level}: "
                         f"{sorted(table)}")
    for index in classes:
        if index not in table:
            raise InputError(f"classes must be among level {level}'s ImageNet indices "
                             f"{list(table)}, got {index}")
    return tuple(table[i] for i in classes)


def prepare_subset(train_dir: str | Path, level: str, k: int | None, n_per_class: int | None,
                   resolution: int, out: str | Path, *, seed: int = 0,
                   transform: str = "resize", classes: list[int] | None = None,
                   progress: bool = False) -> Path:
    """Write k classes of `level` as one `.npz` (n images per class, or all with None).

    `transform='resize'` is the authors' default (plain LANCZOS resize to a square);
    `'center-crop'` crops the central square first. Images are chosen without replacement by
    a fixed-seed permutation of the sorted file list (deterministic; nested in n). `classes`
    (ImageNet indices of the level) replaces "the first k".
    """
    train_dir = Path(train_dir)
    if not str(train_dir).strip() or not train_dir.is_dir():
        raise InputError(f"train_dir must be an existing folder, got {train_dir}")
    resolution = check_int("resolution", resolution, minimum=8, maximum=1024)
    check_choice("transform", transform, ("resize", "center-crop"))
    seed = check_int("seed", seed, minimum=0, maximum=2 ** 62)
    if classes is None:
        k = check_int("K", k, minimum=1, maximum=len(CLASS_LISTS.get(level, ())) or 10)
    chosen_classes = choose_classes(level, k or 0, classes)
    if n_per_class is not None:
        n_per_class = check_int("n_per_class", n_per_class, minimum=1)
    plan = []
    for label, (index, wnid, _) in enumerate(chosen_classes):
        available = _class_files(train_dir, wnid)
        if n_per_class is None:
            chosen = available
        else:
            n = check_int("n_per_class", n_per_class, minimum=1, maximum=len(available))
            order = np.random.default_rng([seed, index]).permutation(len(available))[:n]
            chosen = [available[i] for i in sorted(order)]
        plan.extend((label, wnid, path) for path in chosen)
    steps = plan
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(plan, desc="prepare", unit="image")
    images = np.empty((len(plan), resolution, resolution, 3), np.uint8)
    labels, files = [], []
    for i, (label, wnid, path) in enumerate(steps):
        images[i] = _load_image(path, resolution, transform)
        labels.append(label)
        files.append(f"{wnid}/{path.name}")
    meta = {"level": level, "k": len(chosen_classes), "n_per_class": n_per_class,
            "resolution": resolution, "seed": seed, "transform": transform,
            "anchor": ANCHOR_CLASS, "kind": "pixels"}
    out = Path(out)
    atomic_write_bytes(out, npz_bytes(
        images=images, labels=np.asarray(labels, np.int64),
        class_indices=np.asarray([c[0] for c in chosen_classes], np.int64),
        wnids=np.asarray([c[1] for c in chosen_classes]), files=np.asarray(files),
        meta=np.asarray(json.dumps(meta))))
    return out


@dataclass(frozen=True)
class SubsetData:
    """A prepared subset: uint8 images [N, H, W, 3], labels 0..K-1, ImageNet indices, meta."""

    images: np.ndarray
    labels: np.ndarray
    class_indices: np.ndarray
    meta: dict[str, Any]


def _check_labels(path: Path, labels: np.ndarray, n: int, k: int) -> None:
    if labels.ndim != 1 or labels.shape[0] != n or not np.issubdtype(labels.dtype, np.integer):
        raise InputError(f"{path}: labels must be {n} integers, got {labels.dtype} "
                         f"{labels.shape}")
    if n and (labels.min() < 0 or labels.max() >= k):
        raise InputError(f"{path}: labels must be in [0, {k - 1}] (one per class), got "
                         f"[{labels.min()}, {labels.max()}]")


def load_subset(path: str | Path) -> SubsetData:
    """Read a file written by `prepare_subset` or `sample_subset` (one-line errors if not)."""
    path = Path(path)
    arrays = read_npz(path, ("images", "labels", "class_indices", "meta"),
                      what="an image subset written by `multisource imagenet prepare|sample`")
    images, labels, indices = arrays["images"], arrays["labels"], arrays["class_indices"]
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise InputError(f"{path}: images must be uint8 [N, H, W, 3], got {images.dtype} "
                         f"{images.shape}")
    if indices.ndim != 1 or len(indices) < 1:
        raise InputError(f"{path}: class_indices must list at least one class")
    _check_labels(path, labels, images.shape[0], len(indices))
    try:
        meta = json.loads(str(arrays["meta"]))
    except ValueError:
        raise InputError(f"{path}: meta is not valid JSON") from None
    if not isinstance(meta, dict):
        raise InputError(f"{path}: meta must be a JSON object")
    return SubsetData(images, labels, indices, meta)


def to_training_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 [N, H, W, C] -> float32 [N, C, H, W] in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1


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

    from multisource.devices import resolve_device
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
    from multisource.devices import resolve_device
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
    from multisource.devices import resolve_device
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
    from multisource.devices import resolve_device
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
