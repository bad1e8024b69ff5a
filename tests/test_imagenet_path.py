"""The ImageNet path end to end on a tiny generated ImageFolder (no ImageNet needed)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from imagenet_fixtures import make_image_folder

from multisource.common.validation import InputError
from multisource.image_metrics.inception import InceptionUnavailableError
from multisource.images import imagenet, imagenet_runs


def _make_folder(root, level: str = "sim1", k: int = 3, per_class: int = 6) -> None:
    make_image_folder(root, level, k, per_class)


def test_protocol_data_matches_the_paper_digest() -> None:
    for level, classes in imagenet.CLASS_LISTS.items():
        assert len(classes) == 10, level
        assert classes[0][0] == imagenet.ANCHOR_CLASS == 171
        assert len({c[0] for c in classes}) == 10
    assert [c[0] for c in imagenet.subset_classes("sim2", 5)] == [171, 269, 279, 283, 294]
    assert len(imagenet.PRESETS) == 13
    assert imagenet.PRESETS[imagenet.preset_name(5, 500)] == (134_217_728, 2048, 0.0060, 4000)
    assert imagenet.SAMPLING["num_steps"] == 32
    with pytest.raises(InputError, match="n_per_class"):
        imagenet.preset_name(4, 500)
    with pytest.raises(InputError, match="level"):
        imagenet.subset_classes("sim4", 3)


def test_prepare_train_sample_evaluate_on_tiny_folder(tmp_path) -> None:
    _make_folder(tmp_path)
    train_dir = tmp_path / "train"
    data = imagenet.prepare_subset(train_dir, "sim1", 3, 4, 8, tmp_path / "subset.npz")
    ref = imagenet.prepare_subset(train_dir, "sim1", 3, None, 8, tmp_path / "ref.npz",
                                  transform="center-crop")
    subset = imagenet.load_subset(data)
    assert subset.images.shape == (12, 8, 8, 3) and subset.images.dtype == np.uint8
    assert subset.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert subset.class_indices.tolist() == [171, 1, 18]
    assert imagenet.load_subset(ref).images.shape[0] == 18
    # deterministic: the same call writes the same bytes
    again = imagenet.prepare_subset(train_dir, "sim1", 3, 4, 8, tmp_path / "again.npz")
    assert np.array_equal(imagenet.load_subset(again).images, subset.images)

    run = imagenet_runs.train_subset(data, tmp_path / "run", preset="smoke", device="cpu",
                                total_steps=3, batch_size=8, progress=False)
    samples = imagenet_runs.sample_subset(run, tmp_path / "samples.npz", samples_per_class=5,
                                     num_steps=3, device="cpu")
    gen = imagenet.load_subset(samples)
    assert gen.images.shape == (15, 8, 8, 3)
    report = imagenet_runs.evaluate_subset(samples, ref, extractor="pixels",
                                      out=tmp_path / "report.json")
    assert set(report["per_class"]) == {"171", "1", "18"}
    assert np.isfinite(report["mean"]) and report["mean"] >= 0
    assert json.loads((tmp_path / "report.json").read_text())["metric"] == "FD-pixels"
    # a real sample set is closer to its own reference than pure noise images are
    noise = imagenet.load_subset(ref)
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "noise.npz", images=rng.integers(0, 256, noise.images.shape,
                                                         dtype=np.uint8),
             labels=noise.labels, class_indices=noise.class_indices,
             meta=np.asarray(json.dumps({})))
    self_fd = imagenet_runs.evaluate_subset(ref, ref, extractor="pixels")["mean"]
    noise_fd = imagenet_runs.evaluate_subset(tmp_path / "noise.npz", ref,
                                             extractor="pixels")["mean"]
    assert self_fd < 1e-6 < noise_fd


def test_inception_evaluation_fails_loudly_without_weights(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("MULTISOURCE_INCEPTION_WEIGHTS", raising=False)
    _make_folder(tmp_path, k=1, per_class=3)
    ref = imagenet.prepare_subset(tmp_path / "train", "sim1", 1, None, 8, tmp_path / "r.npz")
    with pytest.raises(InceptionUnavailableError) as err:
        imagenet_runs.evaluate_subset(ref, ref, extractor="inception")
    assert "\n" not in str(err.value) and "MULTISOURCE_INCEPTION_WEIGHTS" in str(err.value)


def test_bad_folders_are_one_line_errors(tmp_path) -> None:
    with pytest.raises(InputError, match="train_dir"):
        imagenet.prepare_subset(tmp_path / "absent", "sim1", 3, 4, 8, tmp_path / "x.npz")
    _make_folder(tmp_path, k=1)
    with pytest.raises(InputError, match="n01443537 is missing"):
        imagenet.prepare_subset(tmp_path / "train", "sim1", 2, 4, 8, tmp_path / "x.npz")
    with pytest.raises(InputError, match="n_per_class"):
        imagenet.prepare_subset(tmp_path / "train", "sim1", 1, 99, 8, tmp_path / "x.npz")
