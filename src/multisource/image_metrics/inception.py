"""Opt-in Inception-v3 FID features from weights the user already has locally.

Nothing is downloaded. The weights are a TorchScript file (for example NVIDIA's
`inception-2015-12-05.pt`, which maps uint8 [N, 3, 299, 299] to 2048-d pool features when
called with `return_features=True`) given by path or by the environment variable
`MULTISOURCE_INCEPTION_WEIGHTS`. Without them every call fails with one line saying so.
For 28x28 grey images the result is an out-of-domain measurement, not comparable to ImageNet FIDs.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from multisource.validation import InputError

INCEPTION_ENV = "MULTISOURCE_INCEPTION_WEIGHTS"
INCEPTION_LABEL = ("FID (Inception-v3 pool features, bilinear resize to 299, grey replicated to "
                   "RGB); not comparable to ImageNet FIDs")


class InceptionUnavailableError(InputError):
    """No local Inception weights were given (this module never downloads)."""


def inception_weights_path(weights: str | Path | None = None) -> Path:
    """The local Inception TorchScript file: the argument, else $MULTISOURCE_INCEPTION_WEIGHTS."""
    candidate = weights if weights is not None else os.environ.get(INCEPTION_ENV)
    if not candidate:
        raise InceptionUnavailableError(
            f"inception weights not given: pass a local TorchScript file or set {INCEPTION_ENV} "
            f"(nothing is downloaded)")
    path = Path(candidate).expanduser()
    if not path.is_file():
        raise InceptionUnavailableError(f"inception weights not found at {path}: pass a local "
                                        f"TorchScript file or set {INCEPTION_ENV}")
    return path


def load_inception(weights: str | Path | None = None) -> torch.jit.ScriptModule:
    """Load the user's Inception TorchScript module (CPU, eval mode)."""
    path = inception_weights_path(weights)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(str(path), map_location="cpu")
    except (RuntimeError, ValueError) as exc:
        raise InceptionUnavailableError(f"inception weights at {path} are not a TorchScript "
                                        f"file ({type(exc).__name__})") from None
    return module.eval()


@torch.no_grad()
def inception_features(images: np.ndarray, weights: str | Path | None = None, *,
                       batch_size: int = 64) -> np.ndarray:
    """2048-d Inception features of images in [0, 1], shape [N, H, W] or [N, C, H, W]."""
    module = load_inception(weights)
    array = np.asarray(images, dtype=np.float32)
    if array.ndim == 3:
        array = array[:, None]
    if array.ndim != 4 or array.shape[1] not in (1, 3):
        raise InputError(f"images must be [N, H, W] or [N, 1|3, H, W], got {array.shape}")
    out = []
    for start in range(0, len(array), batch_size):
        batch = torch.from_numpy(array[start:start + batch_size])
        if batch.shape[1] == 1:
            batch = batch.expand(-1, 3, -1, -1)
        batch = F.interpolate(batch, size=(299, 299), mode="bilinear", align_corners=False)
        batch = (batch.clamp(0, 1) * 255).round().to(torch.uint8)
        try:
            feats = module(batch, return_features=True)
        except (RuntimeError, TypeError):
            feats = module(batch)
        out.append(feats.reshape(len(batch), -1).double().numpy())
    return np.concatenate(out)
