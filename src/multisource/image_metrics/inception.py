"""Opt-in Inception-v3 FID features from weights the user already has locally.

Nothing is downloaded. The weights are a TorchScript file with the interface of NVIDIA's
`inception-2015-12-05.pt` (the network of the StyleGAN2-ADA/StyleGAN3/EDM2 metrics): it takes
uint8 [N, 3, H, W] at any size, resizes to 299 inside (TF1's bilinear rule) and returns the
2048-d pool features when called with `return_features=True`. It is given by path or by the
environment variable `MULTISOURCE_INCEPTION_WEIGHTS`; without it every call fails with one line.
Images go in at their native size, as in the reference scripts (see `image_metrics.fid`); the
network runs on the GPU when one is chosen. For 28x28 grey images the result is an
out-of-domain measurement, not comparable to ImageNet FIDs.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch

from multisource.common.validation import InputError

INCEPTION_ENV = "MULTISOURCE_INCEPTION_WEIGHTS"
INCEPTION_LABEL = ("FID (Inception-v3 pool features of uint8 images at native size, resized to "
                   "299 inside the network; grey replicated to RGB)")


class InceptionUnavailableError(InputError):
    """No local Inception weights were given (this module never downloads)."""


def inception_weights_path(weights: str | Path | None = None) -> Path:
    """The local Inception TorchScript file: the argument, else $MULTISOURCE_INCEPTION_WEIGHTS."""
    candidate = weights if weights is not None else os.environ.get(INCEPTION_ENV)
    if not candidate or not str(candidate).strip():
        raise InceptionUnavailableError(
            f"inception weights not given: pass a local TorchScript file or set {INCEPTION_ENV} "
            f"(nothing is downloaded)")
    path = Path(candidate).expanduser()
    if not path.is_file():
        raise InceptionUnavailableError(f"inception weights not found at {path}: pass a local "
                                        f"TorchScript file or set {INCEPTION_ENV}")
    return path


def load_inception(weights: str | Path | None = None,
                   device: torch.device | str = "cpu") -> torch.jit.ScriptModule:
    """Load the user's Inception TorchScript module on `device`, in eval mode."""
    path = inception_weights_path(weights)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(str(path), map_location=torch.device(device))
    except (RuntimeError, ValueError, OSError) as exc:
        raise InceptionUnavailableError(f"inception weights at {path} are not a TorchScript "
                                        f"file ({type(exc).__name__})") from None
    return module.eval()


class InceptionFeatures:
    """Callable: uint8 [N, 3, H, W] on the module's device -> float features [N, D]."""

    def __init__(self, module: torch.jit.ScriptModule) -> None:
        self.module = module

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        try:
            feats = self.module(images, return_features=True)
        except (RuntimeError, TypeError) as error:
            raise InputError(f"the Inception module must accept (uint8 [N, 3, H, W], "
                             f"return_features=True): {' '.join(str(error).split())[:160]}"
                             ) from None
        return feats.reshape(images.shape[0], -1)


def inception_network(weights: str | Path | None = None,
                      device: torch.device | str = "cpu") -> InceptionFeatures:
    """The feature function of the user's Inception weights, on `device`."""
    return InceptionFeatures(load_inception(weights, device))


def inception_features(images: np.ndarray, weights: str | Path | None = None, *,
                       batch_size: int = 64, device: torch.device | str = "cpu") -> np.ndarray:
    """Inception features [N, D] (float64) of images at native size.

    `images`: uint8 (0..255) or float in [0, 1], shaped [N, H, W] (grey), [N, H, W, 1|3] or
    [N, 1|3, H, W]. Floats are rounded to uint8 first, as image files would be.
    """
    from multisource.image_metrics.fid import to_uint8_nchw

    network = inception_network(weights, device)
    array = np.asarray(images)
    if array.ndim == 4 and array.shape[1] in (1, 3) and array.shape[-1] not in (1, 3):
        array = array.transpose(0, 2, 3, 1)
    if array.dtype != np.uint8:
        array = np.rint(np.clip(array.astype(np.float64), 0.0, 1.0) * 255).astype(np.uint8)
    x = to_uint8_nchw(array)
    out = []
    with torch.no_grad():
        for start in range(0, x.shape[0], batch_size):
            batch = x[start:start + batch_size].to(device)
            out.append(network(batch).double().cpu().numpy())
    return np.concatenate(out)
