"""Reference-style FID: uint8 images at native size, Inception on the GPU, per-class averages.

The reference is the protocol of the paper's evaluation script (EDM2's `calculate_metrics.py`,
as in StyleGAN2-ADA/StyleGAN3): uint8 RGB images [N, 3, H, W] at their native resolution go
into NVIDIA's TorchScript translation of TensorFlow's `inception-2015-12-05` network, called
with `return_features=True`; the network itself resizes to 299x299 and rescales to [-1, 1].
Its resize is TF1's legacy bilinear resize: output pixel j samples the input at coordinate
j * H_in / 299 (no half-pixel offset), bilinearly, with the last row/column repeated at the
edge. `tf1_bilinear_resize` implements that rule (our code, from this description) for feature
networks that do not resize themselves, such as the tiny stand-ins of the tests.

Feature statistics accumulate as in the reference: float64 sums of features and of their outer
products on the device, giving the mean and the unbiased covariance. The paper reports, per
configuration, the FID of each class's 5,000 samples against that class's reference statistics
(all ~1,300 ImageNet training images of the class), averaged over the K classes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from multisource.common.validation import InputError, check_int
from multisource.image_metrics.frechet import frechet_distance

INCEPTION_SIZE = 299
REFERENCE_PROTOCOL = ("uint8 RGB at native size into NVIDIA's TorchScript Inception-v3 "
                      "(inception-2015-12-05), which resizes to 299 with TF1's legacy bilinear "
                      "rule inside the network; pool features, float64 statistics")

FeatureFn = Callable[[torch.Tensor], torch.Tensor]


def _resize_axis(x: torch.Tensor, size_in: int, size_out: int, dim: int) -> torch.Tensor:
    source = torch.arange(size_out, dtype=torch.float64, device=x.device) * (size_in / size_out)
    low = source.floor().to(torch.long).clamp(0, size_in - 1)
    high = (low + 1).clamp(0, size_in - 1)
    frac = (source - low.to(torch.float64)).clamp(0.0, 1.0).to(x.dtype)
    shape = [1, 1, 1, 1]
    shape[dim] = size_out
    a = x.index_select(dim, low)
    b = x.index_select(dim, high)
    return a + (b - a) * frac.reshape(shape)


def tf1_bilinear_resize(x: torch.Tensor, size: int = INCEPTION_SIZE) -> torch.Tensor:
    """Bilinear resize of float [N, C, H, W] to [N, C, size, size] by TF1's legacy rule.

    Output index j samples input coordinate j * H / size (top-left aligned, no antialiasing);
    neighbours past the last row/column are clamped to it.
    """
    height, width = int(x.shape[2]), int(x.shape[3])
    if height != size:
        x = _resize_axis(x, height, size, 2)
    if width != size:
        x = _resize_axis(x, width, size, 3)
    return x


def to_uint8_nchw(images: np.ndarray) -> torch.Tensor:
    """uint8 [N, H, W, 3|1] or [N, H, W] -> uint8 tensor [N, 3, H, W] (grey replicated)."""
    array = np.asarray(images)
    if array.dtype != np.uint8:
        raise InputError(f"images for FID must be uint8 (0..255), got {array.dtype}")
    if array.ndim == 3:
        array = array[..., None]
    if array.ndim != 4 or array.shape[-1] not in (1, 3):
        raise InputError(f"images for FID must be [N, H, W, 3] or [N, H, W], got {array.shape}")
    tensor = torch.from_numpy(np.ascontiguousarray(array)).permute(0, 3, 1, 2)
    return tensor.expand(-1, 3, -1, -1) if tensor.shape[1] == 1 else tensor


@dataclass(frozen=True)
class FeatureStats:
    """Mean [D] and unbiased covariance [D, D] of n feature vectors (float64)."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int


@torch.no_grad()
def feature_statistics(images: np.ndarray, features: FeatureFn, *,
                       device: torch.device | str = "cpu", batch_size: int = 64,
                       progress: bool = False, desc: str = "features") -> FeatureStats:
    """Streaming float64 feature statistics of uint8 images, computed on `device`."""
    batch_size = check_int("batch", batch_size, minimum=1)
    device = torch.device(device)
    x_all = to_uint8_nchw(images)
    n = x_all.shape[0]
    if n < 2:
        raise InputError(f"FID needs at least 2 images per class, got {n}")
    starts = range(0, n, batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc=desc, unit="batch", leave=False)
    total = None
    outer = None
    for start in starts:
        batch = x_all[start:start + batch_size].to(device, non_blocking=True)
        f = features(batch).reshape(batch.shape[0], -1).to(torch.float64)
        if not bool(torch.isfinite(f).all()):
            raise InputError("the feature network returned NaN or infinite features")
        total = f.sum(0) if total is None else total + f.sum(0)
        outer = f.T @ f if outer is None else outer + f.T @ f
    assert total is not None and outer is not None
    mu = total / n
    sigma = (outer - torch.outer(mu, mu) * n) / (n - 1)
    return FeatureStats(mu.cpu().numpy(), sigma.cpu().numpy(), n)


def fid_from_statistics(a: FeatureStats, b: FeatureStats) -> float:
    """Frechet distance between two feature Gaussians."""
    return frechet_distance(a.mu, a.sigma, b.mu, b.sigma)


def per_class_fid(samples: np.ndarray, sample_labels: np.ndarray, reference: np.ndarray,
                  reference_labels: np.ndarray, class_ids: list[str], features: FeatureFn, *,
                  device: torch.device | str = "cpu", batch_size: int = 64,
                  progress: bool = False) -> dict[str, float]:
    """FID of each class's samples against that class's reference images (labels 0..K-1)."""
    out: dict[str, float] = {}
    for label, class_id in enumerate(class_ids):
        gen = feature_statistics(samples[sample_labels == label], features, device=device,
                                 batch_size=batch_size, progress=progress,
                                 desc=f"class {class_id} samples")
        ref = feature_statistics(reference[reference_labels == label], features, device=device,
                                 batch_size=batch_size, progress=progress,
                                 desc=f"class {class_id} reference")
        out[class_id] = fid_from_statistics(gen, ref)
    return out
