"""Reference-style FID: the TF1 bilinear resize, native-size input, streaming statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from imagenet_fixtures import save_standin_inception

from multisource.common.validation import InputError
from multisource.image_metrics.fid import (
    feature_statistics,
    fid_from_statistics,
    per_class_fid,
    tf1_bilinear_resize,
    to_uint8_nchw,
)
from multisource.image_metrics.frechet import frechet_distance_features
from multisource.image_metrics.inception import inception_features, inception_network


def _grid_sample_reference(x: torch.Tensor, size: int) -> torch.Tensor:
    """The same rule written as an affine sampling grid: output j samples input j * H / size,
    border-clamped (how the reference network expresses it)."""
    n, c, h, w = x.shape
    theta = torch.zeros(n, 2, 3, dtype=torch.float64)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    theta[:, 0, 2] = 1.0 / w - 1.0 / size
    theta[:, 1, 2] = 1.0 / h - 1.0 / size
    grid = F.affine_grid(theta, [n, c, size, size], align_corners=False)
    return F.grid_sample(x.double(), grid, mode="bilinear", padding_mode="border",
                         align_corners=False)


@pytest.mark.parametrize("shape", [(2, 3, 16, 16), (1, 3, 256, 256), (1, 3, 37, 300)])
def test_tf1_resize_matches_the_grid_formulation(shape) -> None:
    x = torch.rand(shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 255
    ours = tf1_bilinear_resize(x, 299)
    assert ours.shape == (shape[0], 3, 299, 299)
    assert torch.allclose(ours, _grid_sample_reference(x, 299), atol=1e-6)
    # a half-pixel-centre resize (PyTorch's align_corners=False) is a different image
    half_pixel = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
    assert float((ours - half_pixel).abs().max()) > 1.0


def test_tf1_resize_by_hand_and_identity() -> None:
    x = torch.tensor([[[[0.0, 10.0]]]]).expand(1, 1, 1, 2)
    # width 2 -> 4: sources 0, 0.5, 1, 1.5 -> 0, 5, 10, 10 (last column repeated)
    assert tf1_bilinear_resize(x.expand(1, 1, 4, 2).clone(), 4)[0, 0, 0].tolist() == \
        [0.0, 5.0, 10.0, 10.0]
    y = torch.rand(1, 3, 299, 299)
    assert torch.equal(tf1_bilinear_resize(y, 299), y)


def test_streaming_statistics_equal_the_textbook_ones() -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (37, 5, 5, 3), dtype=np.uint8)

    def features(x: torch.Tensor) -> torch.Tensor:
        return x.float().mean(dim=(2, 3))         # 3 features per image

    stats = feature_statistics(images, features, batch_size=8)
    direct = images.reshape(37, 25, 3).mean(axis=1).astype(np.float64)
    assert stats.n == 37
    assert np.allclose(stats.mu, direct.mean(0), atol=1e-4)
    assert np.allclose(stats.sigma, np.cov(direct, rowvar=False), atol=1e-3)
    other = feature_statistics(images[::-1].copy(), features, batch_size=5)
    assert fid_from_statistics(stats, other) == pytest.approx(0.0, abs=1e-6)
    shifted = feature_statistics(np.clip(images.astype(int) + 40, 0, 255).astype(np.uint8),
                                 features)
    assert fid_from_statistics(stats, shifted) == pytest.approx(
        frechet_distance_features(direct, np.clip(images.astype(int) + 40, 0, 255)
                                  .reshape(37, 25, 3).mean(axis=1)), rel=1e-4)
    with pytest.raises(InputError, match="at least 2"):
        feature_statistics(images[:1], features)
    with pytest.raises(InputError, match="uint8"):
        feature_statistics(images.astype(np.float32), features)


def test_inception_file_gets_uint8_at_native_size(tmp_path) -> None:
    weights = save_standin_inception(tmp_path / "standin.pt")
    images = np.random.default_rng(0).integers(0, 256, (4, 24, 24, 3), dtype=np.uint8)
    feats = inception_features(images, weights, device="cpu")
    assert feats.shape == (4, 7) and (feats[:, 0] == 24).all()   # no resize before the net
    grey = inception_features(images[..., 0], weights)            # grey -> RGB replicated
    assert (grey[:, 0] == 24).all()
    as_float = inception_features(images / 255.0, weights)        # [0, 1] floats round-trip
    assert np.allclose(as_float, feats)
    network = inception_network(weights, "cpu")
    assert torch.allclose(network(to_uint8_nchw(images)).double(), torch.from_numpy(feats))


def test_per_class_fid_compares_each_class_with_its_own_reference() -> None:
    rng = np.random.default_rng(0)
    dark = rng.integers(0, 60, (20, 4, 4, 3), dtype=np.uint8)
    light = rng.integers(180, 256, (20, 4, 4, 3), dtype=np.uint8)
    reference = np.concatenate([dark, light])
    labels = np.repeat([0, 1], 20)

    def features(x: torch.Tensor) -> torch.Tensor:
        return x.float().mean(dim=(2, 3))

    same = per_class_fid(reference, labels, reference, labels, ["a", "b"], features)
    assert same == pytest.approx({"a": 0.0, "b": 0.0}, abs=1e-6)
    swapped = per_class_fid(reference, 1 - labels, reference, labels, ["a", "b"], features)
    assert min(swapped.values()) > 1000      # class a's samples are class b's images
