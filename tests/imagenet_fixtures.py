"""Tiny stand-ins for the ImageNet path: an ImageFolder, a random VAE, an Inception-like net."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from multisource.image_metrics.fid import tf1_bilinear_resize
from multisource.images import imagenet


def make_image_folder(root: Path, level: str = "sim1", k: int = 3, per_class: int = 6) -> Path:
    """`root/train/<wnid>/*.JPEG` for the first k classes of `level`; returns `root/train`."""
    rng = np.random.default_rng(0)
    for index, wnid, _ in imagenet.CLASS_LISTS[level][:k]:
        folder = root / "train" / wnid
        folder.mkdir(parents=True)
        for i in range(per_class):
            base = np.zeros((18, 26, 3), np.uint8)
            base[..., index % 3] = 40 * (index % 5) + 30   # a class-dependent colour
            noise = rng.integers(0, 40, base.shape, dtype=np.uint8)
            Image.fromarray(base + noise).save(folder / f"{wnid}_{i}.JPEG")
        (folder / "notes.txt").write_text("not an image")
    return root / "train"


def save_tiny_vae(folder: Path) -> Path:
    """A randomly initialised diffusers AutoencoderKL (downsampling 2, 4 latent channels)."""
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(in_channels=3, out_channels=3,
                        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
                        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
                        block_out_channels=(8, 16), layers_per_block=1, latent_channels=4,
                        norm_num_groups=4, sample_size=16)
    vae.save_pretrained(folder)
    return folder


class StandinInception(torch.nn.Module):
    """Inception's interface (uint8 [N, 3, H, W] at any size, resize to 299 inside,
    `return_features`) around a tiny fixed random conv; feature 0 reports the input height, so
    a test can see that images arrive at native size."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 6, 9, stride=8)

    def forward(self, img: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        height = torch.full((img.shape[0], 1), float(img.shape[2]), device=img.device)
        x = tf1_bilinear_resize(img.to(torch.float32), 299)
        x = (x - 127.5) / 127.5
        x = torch.relu(self.conv(x))
        feats = torch.nn.functional.adaptive_avg_pool2d(x, 1).flatten(1)
        return torch.cat([height, feats], dim=1)


def save_standin_inception(path: Path) -> Path:
    """The stand-in as a TorchScript file, loaded by the same code as real Inception weights."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)   # the file format users have
        torch.jit.script(StandinInception()).save(str(path))
    return path
