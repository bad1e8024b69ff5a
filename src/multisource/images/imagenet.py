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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from multisource.common.provenance import atomic_write_bytes
from multisource.common.validation import InputError, check_choice, check_int

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
