"""Offline image domains with deterministic train / held-out splits.

* Fashion-MNIST (10 classes x 7,000, 28x28 grey) from the Debian package
  `dataset-fashion-mnist`: the four idx `.gz` files under a system directory (override it with
  the environment variable `MULTISOURCE_FASHION_MNIST_DIR`). Train split = the official 60k
  train images, held-out split = the official 10k test images (1,000 per class).
* scikit-learn's `load_digits` (8x8, 1,797 images, values 0-16), for smoke tests: a fixed-seed
  per-class split holds out 40% of each class.

Images are uint8 arrays [N, H, W] (grey); `resize_images` area-pools them to a square resolution
and returns float32 in [0, 1]; `to_model_range` maps to the diffusion model's [-1, 1] NCHW.
"""

from __future__ import annotations

import gzip
import os
import struct
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from multisource.validation import InputError, check_choice, check_int

FASHION_PACKAGE = "dataset-fashion-mnist"
FASHION_DIR_ENV = "MULTISOURCE_FASHION_MNIST_DIR"
# System location where the Debian package installs the idx files (overridable by FASHION_DIR_ENV).
FASHION_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot")
DIGITS_CLASSES = tuple(str(d) for d in range(10))
DOMAINS = ("fashion", "digits")
DIGITS_HELDOUT_FRACTION = 0.4
SPLIT_SEED = 20250220  # fixed: the splits never depend on an experiment's seed


class DataUnavailableError(InputError):
    """A data set that must be installed locally is missing (one-line message says how)."""


@dataclass(frozen=True)
class DomainSplit:
    """One domain at one resolution: float32 images in [0, 1], shape [N, H, W]."""

    name: str
    class_names: tuple[str, ...]
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray

    @property
    def resolution(self) -> int:
        """Side length of the (square) images."""
        return int(self.train_images.shape[-1])


def fashion_mnist_dir() -> Path:
    """The directory holding the Fashion-MNIST idx files (env override, else the Debian path)."""
    override = os.environ.get(FASHION_DIR_ENV)
    return Path(override) if override else FASHION_SYSTEM_DIR


def _read_idx(path: Path, expected_magic: int) -> np.ndarray:
    with gzip.open(path, "rb") as handle:
        raw = handle.read()
    magic = struct.unpack(">I", raw[:4])[0]
    if magic != expected_magic:
        raise InputError(f"{path.name} is not an idx file (magic {magic:#x}, expected "
                         f"{expected_magic:#x}); reinstall {FASHION_PACKAGE}")
    ndim = magic & 0xFF
    shape = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise InputError(f"{path.name} is truncated ({data.size} bytes of {np.prod(shape)}); "
                         f"reinstall {FASHION_PACKAGE}")
    return data.reshape(shape)


@lru_cache(maxsize=4)
def _load_fashion_cached(directory: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    image_file, label_file = FASHION_FILES[split]
    root = Path(directory)
    missing = [name for name in (image_file, label_file) if not (root / name).is_file()]
    if missing:
        raise DataUnavailableError(
            f"Fashion-MNIST not found ({missing[0]} missing in {root}): install the Debian "
            f"package {FASHION_PACKAGE} (apt-get install {FASHION_PACKAGE}) or set "
            f"{FASHION_DIR_ENV}")
    images = _read_idx(root / image_file, 0x00000803)
    labels = _read_idx(root / label_file, 0x00000801).astype(np.int64)
    if len(images) != len(labels):
        raise InputError(f"Fashion-MNIST {split}: {len(images)} images but {len(labels)} labels")
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def load_fashion_mnist(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST `split` ('train' or 'test'): uint8 images [N, 28, 28] and int64 labels."""
    check_choice("split", split, FASHION_FILES)
    return _load_fashion_cached(str(fashion_mnist_dir()), split)


def load_digits_images() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits as uint8 images [1797, 8, 8] (0-16 rescaled to 0-255)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    return images, bunch.target.astype(np.int64)


def resize_images(images: np.ndarray, resolution: int) -> np.ndarray:
    """Area-pool uint8 (or [0,1] float) images [N, H, W] to [N, r, r] float32 in [0, 1]."""
    resolution = check_int("resolution", resolution, minimum=2, maximum=512)
    array = np.asarray(images)
    if array.ndim != 3:
        raise InputError(f"images must have shape [N, H, W], got {array.shape}")
    scale = 255.0 if array.dtype == np.uint8 else 1.0
    tensor = torch.from_numpy(array.astype(np.float32) / scale)[:, None]
    if tensor.shape[-1] != resolution or tensor.shape[-2] != resolution:
        tensor = F.adaptive_avg_pool2d(tensor, resolution)
    return tensor[:, 0].numpy().clip(0.0, 1.0)


def _digits_split(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(SPLIT_SEED)
    train_idx, test_idx = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_test = round(DIGITS_HELDOUT_FRACTION * len(idx))
        test_idx.append(idx[:n_test])
        train_idx.append(idx[n_test:])
    return np.sort(np.concatenate(train_idx)), np.sort(np.concatenate(test_idx))


@lru_cache(maxsize=8)
def load_domain(name: str, resolution: int) -> DomainSplit:
    """Train / held-out split of one domain ('fashion' or 'digits') at `resolution` (cached)."""
    check_choice("domain", name, DOMAINS)
    resolution = check_int("resolution", resolution, minimum=2, maximum=64)
    if name == "fashion":
        train_x, train_y = load_fashion_mnist("train")
        test_x, test_y = load_fashion_mnist("test")
        class_names = FASHION_CLASSES
    else:
        images, labels = load_digits_images()
        train_idx, test_idx = _digits_split(labels)
        train_x, train_y = images[train_idx], labels[train_idx]
        test_x, test_y = images[test_idx], labels[test_idx]
        class_names = DIGITS_CLASSES
    split = DomainSplit(name, class_names, resize_images(train_x, resolution), train_y.copy(),
                        resize_images(test_x, resolution), test_y.copy())
    for array in (split.train_images, split.train_labels, split.test_images, split.test_labels):
        array.setflags(write=False)
    return split


def class_subset(images: np.ndarray, labels: np.ndarray, classes: tuple[int, ...] | list[int],
                 n_per_class: int | None = None, seed: int = 0
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The images of `classes`, relabelled 0..K-1 in the order given.

    With `n_per_class`, each class keeps the first n of a fixed-seed permutation, so the
    subsets are nested in n and identical for a class whichever group it appears in.
    """
    classes = [int(c) for c in classes]
    if not classes or len(set(classes)) != len(classes):
        raise InputError(f"classes must be a non-empty list of distinct labels, got {classes}")
    chosen_x, chosen_y = [], []
    for new_label, c in enumerate(classes):
        idx = np.flatnonzero(labels == c)
        if idx.size == 0:
            raise InputError(f"classes: label {c} has no images (labels present: "
                             f"{sorted(np.unique(labels).tolist())})")
        if n_per_class is not None:
            n = check_int("n_per_class", n_per_class, minimum=1, maximum=int(idx.size))
            rng = np.random.default_rng([seed, c])
            idx = np.sort(rng.permutation(idx)[:n])
        chosen_x.append(images[idx])
        chosen_y.append(np.full(idx.size, new_label, dtype=np.int64))
    return np.concatenate(chosen_x), np.concatenate(chosen_y)


def to_model_range(images: np.ndarray) -> torch.Tensor:
    """[0, 1] images [N, H, W] (or [N, C, H, W]) -> float32 tensor [N, C, H, W] in [-1, 1]."""
    tensor = torch.as_tensor(np.asarray(images, dtype=np.float32))
    if tensor.ndim == 3:
        tensor = tensor[:, None]
    if tensor.ndim != 4:
        raise InputError(f"images must have shape [N, H, W] or [N, C, H, W], got "
                         f"{tuple(tensor.shape)}")
    return tensor * 2.0 - 1.0
