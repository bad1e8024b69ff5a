"""Stable-Diffusion VAE latents of a prepared ImageNet subset, normalised as EDM2 does.

The paper's code encodes 256x256 images once with the Stable Diffusion VAE
(`stabilityai/sd-vae-ft-mse`, through EDM2's `StabilityVAEEncoder`) and trains on 4x32x32
latents ([CODE], project paper digest 5b). This module does the same with `diffusers`'
`AutoencoderKL`, loaded ONLY from a local folder the user names (a `save_pretrained` folder:
`config.json` plus weights); nothing is ever downloaded.

Conventions, taken from EDM2's encoder (NVlabs/edm2 `training/encoders.py`, read at commit
52b98e1; the paper's repository uses the same encoder):

* pixels enter the VAE as uint8 / 255, i.e. in [0, 1];
* the stored "raw" latents are the posterior mean and standard deviation (8 channels);
  a training latent is one draw mean + std * eps;
* per-channel normalisation to the model's scale: final = (raw - raw_mean) / raw_std *
  final_std + final_mean, with EDM2's constants raw_mean = (5.81, 3.25, 0.12, -2.15),
  raw_std = (4.17, 4.62, 3.71, 3.28), final_mean = 0, final_std = 0.5 (its defaults for
  sd-vae-ft-mse; EDM2 calls them "assumed" statistics of the raw latents);
* decoding inverts the normalisation, runs the decoder, clamps to [0, 1], multiplies by 255
  and truncates to uint8.

Normalisation choices: `edm2` (the constants above: right for sd-vae-ft-mse only), `data`
(per-channel mean and std computed from this subset's latent draws: for any other VAE, e.g.
the tiny random one of the tests), `none` (identity, for experiments with raw latents).

Deviation (stated): EDM2 draws a fresh posterior sample every time a latent enters a batch;
the repository's trainer takes a fixed tensor, so we train on ONE draw per image (seeded),
or on the posterior mean (`draw='mean'`). The SD VAE's posterior std is small next to the
spread of the means, so this changes little, but it is not the authors' procedure.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from multisource.common.validation import InputError, check_choice, check_int

EDM2_RAW_MEAN = (5.81, 3.25, 0.12, -2.15)
EDM2_RAW_STD = (4.17, 4.62, 3.71, 3.28)
EDM2_FINAL_MEAN = 0.0
EDM2_FINAL_STD = 0.5
NORMALISATIONS = ("edm2", "data", "none")
DRAWS = ("sample", "mean")
VAE_WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
DIFFUSERS_PIN = "diffusers==0.42.1"


@dataclass(frozen=True)
class LatentNormalisation:
    """final = (raw - raw_mean) / raw_std * final_std + final_mean, per channel."""

    raw_mean: tuple[float, ...]
    raw_std: tuple[float, ...]
    final_mean: float
    final_std: float
    source: str

    def _affine(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        std = torch.tensor(self.raw_std, dtype=torch.float32, device=like.device)
        mean = torch.tensor(self.raw_mean, dtype=torch.float32, device=like.device)
        scale = self.final_std / std
        bias = self.final_mean - mean * scale
        return scale.reshape(1, -1, 1, 1), bias.reshape(1, -1, 1, 1)

    def normalise(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw VAE latents [N, C, h, w] -> the model's latents."""
        scale, bias = self._affine(raw)
        return raw.float() * scale + bias

    def denormalise(self, final: torch.Tensor) -> torch.Tensor:
        """The model's latents -> raw VAE latents (inverse of `normalise`)."""
        scale, bias = self._affine(final)
        return (final.float() - bias) / scale

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (stored in the latent file and the run folder)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LatentNormalisation:
        """Inverse of `to_dict`."""
        return cls(tuple(data["raw_mean"]), tuple(data["raw_std"]), float(data["final_mean"]),
                   float(data["final_std"]), str(data["source"]))


def edm2_normalisation() -> LatentNormalisation:
    """EDM2's constants for sd-vae-ft-mse latents (see the module docstring for the source)."""
    return LatentNormalisation(EDM2_RAW_MEAN, EDM2_RAW_STD, EDM2_FINAL_MEAN, EDM2_FINAL_STD,
                               "edm2")


def data_normalisation(mean: np.ndarray, std: np.ndarray, seed: int = 0) -> LatentNormalisation:
    """Per-channel mean and std of the latent draws of this data, mapped to EDM2's final 0/0.5."""
    draws = draw_latents(mean, std, seed=seed, draw="sample").double()
    channel_mean = draws.mean(dim=(0, 2, 3))
    channel_std = draws.std(dim=(0, 2, 3))
    if not bool((channel_std > 0).all()):
        raise InputError("latents must vary within every channel to compute a data "
                         "normalisation; use --normalisation none or edm2")
    return LatentNormalisation(tuple(float(v) for v in channel_mean),
                               tuple(float(v) for v in channel_std), EDM2_FINAL_MEAN,
                               EDM2_FINAL_STD, "data")


def identity_normalisation(channels: int) -> LatentNormalisation:
    """No normalisation: the model sees the raw latents."""
    return LatentNormalisation((0.0,) * channels, (1.0,) * channels, 0.0, 1.0, "none")


def draw_latents(mean: np.ndarray | torch.Tensor, std: np.ndarray | torch.Tensor, *, seed: int,
                 draw: str = "sample") -> torch.Tensor:
    """Raw latents: one seeded posterior draw mean + std * eps, or the posterior mean."""
    check_choice("draw", draw, DRAWS)
    mean_t = torch.as_tensor(mean, dtype=torch.float32)
    if draw == "mean":
        return mean_t.clone()
    eps = torch.randn(mean_t.shape, generator=torch.Generator().manual_seed(seed))
    return mean_t + torch.as_tensor(std, dtype=torch.float32) * eps


# --- The VAE, from a local folder only -----------------------------------------------------


def vae_folder(folder: str | os.PathLike | None) -> Path:
    """Check that `folder` is a local `save_pretrained` AutoencoderKL folder, before any work."""
    if folder is None or not str(folder).strip():
        raise InputError("vae must be a local folder holding an AutoencoderKL (config.json and "
                         "weights, e.g. a copy of stabilityai/sd-vae-ft-mse); nothing is "
                         "downloaded")
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise InputError(f"vae must be an existing local folder (nothing is downloaded), got "
                         f"{folder}")
    if not (path / "config.json").is_file():
        raise InputError(f"vae folder {folder} has no config.json (expected a diffusers "
                         f"AutoencoderKL saved with save_pretrained)")
    if not any((path / name).is_file() for name in VAE_WEIGHT_FILES):
        raise InputError(f"vae folder {folder} has no weights ({' or '.join(VAE_WEIGHT_FILES)})")
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError) as error:
        raise InputError(f"vae folder {folder}: config.json is not valid JSON "
                         f"({type(error).__name__})") from None
    if not isinstance(config, dict) or config.get("_class_name", "AutoencoderKL") != \
            "AutoencoderKL":
        raise InputError(f"vae folder {folder} must hold an AutoencoderKL, its config.json "
                         f"names {config.get('_class_name') if isinstance(config, dict) else '?'}")
    return path


def vae_fingerprint(folder: str | os.PathLike) -> str:
    """Short SHA-256 of the VAE folder's config and weights (recorded with the latents)."""
    path = vae_folder(folder)
    digest = hashlib.sha256((path / "config.json").read_bytes())
    for name in VAE_WEIGHT_FILES:
        if (path / name).is_file():
            with open(path / name, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()[:16]


def load_vae(folder: str | os.PathLike, device: torch.device | str = "cpu") -> torch.nn.Module:
    """diffusers' AutoencoderKL from a local folder (eval mode, no gradients), offline."""
    path = vae_folder(folder)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    try:
        from diffusers import AutoencoderKL
    except ImportError:
        raise InputError(f"the latent pipeline needs diffusers: pip install {DIFFUSERS_PIN} "
                         f"(it is in requirements.txt)") from None
    try:
        vae = AutoencoderKL.from_pretrained(str(path), local_files_only=True,
                                            low_cpu_mem_usage=False)
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as error:
        message = " ".join(str(error).split())[:200]
        raise InputError(f"vae folder {folder} could not be loaded as an AutoencoderKL: "
                         f"{message}") from None
    return vae.eval().requires_grad_(False).to(device)


def _batches(n: int, batch_size: int, progress: bool, desc: str):
    starts = range(0, n, batch_size)
    if not progress:
        return starts
    from tqdm.auto import tqdm

    return tqdm(starts, desc=desc, unit="batch", total=len(starts))


@torch.no_grad()
def encode_images(vae: torch.nn.Module, images: np.ndarray, *, batch_size: int = 32,
                  device: torch.device | str = "cpu", progress: bool = False
                  ) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images [N, H, W, 3] -> posterior (mean, std), each float32 [N, C, H/f, W/f]."""
    array = np.asarray(images)
    if array.dtype != np.uint8 or array.ndim != 4 or array.shape[-1] != 3:
        raise InputError(f"images must be uint8 [N, H, W, 3], got {array.dtype} {array.shape}")
    batch_size = check_int("batch", batch_size, minimum=1)
    device = torch.device(device)
    vae = vae.to(device)
    means, stds = [], []
    for start in _batches(len(array), batch_size, progress, "encode"):
        x = torch.from_numpy(array[start:start + batch_size]).to(device).permute(0, 3, 1, 2)
        posterior = vae.encode(x.float() / 255).latent_dist
        means.append(posterior.mean.float().cpu())
        stds.append(posterior.std.float().cpu())
    return torch.cat(means).numpy(), torch.cat(stds).numpy()


@torch.no_grad()
def decode_latents(vae: torch.nn.Module, latents: torch.Tensor,
                   normalisation: LatentNormalisation, *, batch_size: int = 32,
                   device: torch.device | str = "cpu", progress: bool = False) -> np.ndarray:
    """The model's latents [N, C, h, w] -> uint8 images [N, H, W, 3] (EDM2's decode)."""
    batch_size = check_int("batch", batch_size, minimum=1)
    device = torch.device(device)
    vae = vae.to(device)
    out = []
    for start in _batches(len(latents), batch_size, progress, "decode"):
        raw = normalisation.denormalise(latents[start:start + batch_size].to(device))
        pixels = vae.decode(raw).sample.float()
        out.append((pixels.clamp(0, 1) * 255).to(torch.uint8).permute(0, 2, 3, 1).cpu())
    if not out:
        return np.zeros((0, 0, 0, 3), np.uint8)
    return torch.cat(out).numpy()


# --- Latent files ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LatentData:
    """An encoded subset: raw posterior mean/std [N, C, h, w], labels, classes, meta."""

    mean: np.ndarray
    std: np.ndarray
    labels: np.ndarray
    class_indices: np.ndarray
    meta: dict[str, Any]

    @property
    def normalisation(self) -> LatentNormalisation:
        """The normalisation chosen at encoding time."""
        return LatentNormalisation.from_dict(self.meta["normalisation"])

    def training_latents(self, draw: str | None = None) -> torch.Tensor:
        """Normalised training latents float32 [N, C, h, w] (one seeded draw, or the mean)."""
        raw = draw_latents(self.mean, self.std, seed=int(self.meta["seed"]),
                           draw=draw or self.meta.get("draw", "sample"))
        return self.normalisation.normalise(raw)


def is_latent_file(path: str | os.PathLike) -> bool:
    """True for a file written by `encode_subset` (it holds `latent_mean`)."""
    import zipfile

    try:
        with np.load(path, allow_pickle=False) as data:
            return "latent_mean" in data.files
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return False


def load_latents(path: str | os.PathLike) -> LatentData:
    """Read a file written by `encode_subset` (one-line InputError when it is not one)."""
    from multisource.images.imagenet import read_npz

    arrays = read_npz(path, ("latent_mean", "latent_std", "labels", "class_indices", "meta"),
                      what="a latent file written by `multisource imagenet encode`")
    mean, std = arrays["latent_mean"], arrays["latent_std"]
    if mean.ndim != 4 or mean.shape != std.shape or not np.issubdtype(mean.dtype, np.floating):
        raise InputError(f"latent file {path}: latent_mean/latent_std must be float "
                         f"[N, C, h, w] of one shape, got {mean.shape} and {std.shape}")
    try:
        meta = json.loads(str(arrays["meta"]))
        LatentNormalisation.from_dict(meta["normalisation"])
        int(meta["seed"])
    except (ValueError, KeyError, TypeError):
        raise InputError(f"latent file {path}: meta lacks a valid normalisation and "
                         f"seed") from None
    return LatentData(mean, std, arrays["labels"], arrays["class_indices"], meta)


def encode_subset(data: str | os.PathLike, vae: str | os.PathLike, out: str | os.PathLike, *,
                  normalisation: str = "edm2", draw: str = "sample", seed: int = 0,
                  batch_size: int = 32, device: str = "auto", progress: bool = True) -> Path:
    """Encode a prepared image subset once and write its latents (`.npz`, atomically)."""
    from multisource.common.devices import resolve_device
    from multisource.common.provenance import atomic_write_bytes, sha256_bytes
    from multisource.images.imagenet import load_subset, npz_bytes

    check_choice("normalisation", normalisation, NORMALISATIONS)
    check_choice("draw", draw, DRAWS)
    seed = check_int("seed", seed, minimum=0, maximum=2 ** 62)
    subset = load_subset(data)
    model = load_vae(vae, resolve_device(device))
    mean, std = encode_images(model, subset.images, batch_size=batch_size,
                              device=resolve_device(device), progress=progress)
    if normalisation == "edm2":
        norm = edm2_normalisation()
        if mean.shape[1] != len(norm.raw_mean):
            raise InputError(f"normalisation edm2 needs a 4-channel VAE, this one has "
                             f"{mean.shape[1]}; use --normalisation data")
    elif normalisation == "data":
        norm = data_normalisation(mean, std, seed)
    else:
        norm = identity_normalisation(mean.shape[1])
    meta = {**subset.meta, "kind": "latents", "normalisation": norm.to_dict(), "draw": draw,
            "seed": seed, "pixel_scaling": "uint8/255 (EDM2)",
            "vae": Path(vae).name, "vae_sha256_16": vae_fingerprint(vae),
            "latent_shape": list(mean.shape[1:]), "image_shape": list(subset.images.shape[1:]),
            "source_sha256": sha256_bytes(Path(data).read_bytes())}
    out = Path(out)
    atomic_write_bytes(out, npz_bytes(latent_mean=mean.astype(np.float32),
                                      latent_std=std.astype(np.float32),
                                      labels=subset.labels, class_indices=subset.class_indices,
                                      meta=np.asarray(json.dumps(meta))))
    return out


def channel_statistics(latents: torch.Tensor) -> dict[str, Sequence[float]]:
    """Per-channel mean and std of latents [N, C, h, w] (for reports and checks)."""
    x = latents.double()
    return {"mean": [float(v) for v in x.mean(dim=(0, 2, 3))],
            "std": [float(v) for v in x.std(dim=(0, 2, 3))]}
