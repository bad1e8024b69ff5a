"""The in-repo feature classifier behind FCD, KID and class-consistency accuracy.

A small CNN trained deterministically (fixed seed, fixed data order) on the training split of
one domain at one resolution, with class-balanced cross-entropy (the 30-class `pool` has 6,000
Fashion images per class but only 300-750 per animal or digit class). Its 64-d penultimate
layer (before the nonlinearity) is the feature space; its logits give the class-consistency
accuracy of generated samples. Weights are cached under `data/cache/fcd_classifier/`
(gitignored) next to their sha256, keyed by the training config AND the code hash of this
module's import closure, and retrained in a few minutes on CPU when absent. The sha256 goes
into every results row that uses them.
Features are divided by one fixed scalar (the RMS per-dimension standard deviation of the
features of the first 10,000 training images), so FCD and KID are in units where a typical
feature has unit variance.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from multisource.common.paths import DATA_DIR
from multisource.common.validation import InputError, check_int
from multisource.images.data import POOL_PARTS, load_domain

CACHE_DIR = DATA_DIR / "cache" / "fcd_classifier"
FEATURE_DIM = 64


@dataclass(frozen=True)
class ClassifierConfig:
    """How the feature classifier is trained (part of the cache key)."""

    domain: str
    resolution: int
    epochs: int = 4
    batch_size: int = 128
    lr: float = 2e-3
    seed: int = 0


class FeatureClassifier(nn.Module):
    """conv(32) - conv(64) - pool to 4x4 - linear(64) features - linear(classes) logits."""

    def __init__(self, num_classes: int, feature_dim: int = FEATURE_DIM) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.features = nn.Linear(64 * 16, feature_dim)
        self.head = nn.Linear(feature_dim, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features of images in [0, 1], shape [N, 1, H, W]."""
        h = F.relu(self.conv1(x * 2.0 - 1.0))
        h = F.relu(self.conv2(h))
        h = F.adaptive_avg_pool2d(h, 4).flatten(1)
        return self.features(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits."""
        return self.head(F.relu(self.embed(x)))


@dataclass(frozen=True)
class TrainedClassifier:
    """A trained feature classifier with its weight hash and held-out accuracy."""

    model: FeatureClassifier
    config: ClassifierConfig
    weights_sha256: str
    test_accuracy: float
    feature_scale: float = 1.0

    @torch.no_grad()
    def features(self, images: np.ndarray, batch_size: int = 2048) -> np.ndarray:
        """Float64 features [N, 64] of images in [0, 1], [N, H, W] or [N, 1, H, W]."""
        x = _as_batch(images, self.config.resolution)
        raw = np.concatenate([self.model.embed(x[i:i + batch_size]).double().numpy()
                              for i in range(0, len(x), batch_size)])
        return raw / self.feature_scale

    @torch.no_grad()
    def predict(self, images: np.ndarray, batch_size: int = 2048) -> np.ndarray:
        """Predicted class indices (the domain's original labels)."""
        x = _as_batch(images, self.config.resolution)
        return np.concatenate([self.model(x[i:i + batch_size]).argmax(1).numpy()
                               for i in range(0, len(x), batch_size)])


def _as_batch(images: np.ndarray, resolution: int) -> torch.Tensor:
    x = torch.from_numpy(np.array(images, dtype=np.float32))
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or x.shape[1] != 1 or x.shape[-1] != resolution:
        raise InputError(f"images must be [N, {resolution}, {resolution}] in [0, 1], got "
                         f"{tuple(x.shape)}")
    return x.clamp(0.0, 1.0)


def _weights_bytes(model: nn.Module) -> bytes:
    buffer = io.BytesIO()
    torch.save({k: v.contiguous() for k, v in model.state_dict().items()}, buffer)
    return buffer.getvalue()


def _cache_stem(config: ClassifierConfig) -> Path:
    from multisource.common.provenance import code_hash

    keyed = {**asdict(config), "code_hash": code_hash(__name__)}
    key = hashlib.sha256(json.dumps(keyed, sort_keys=True).encode()).hexdigest()[:12]
    return CACHE_DIR / f"{config.domain}{config.resolution}_{key}"


def _flippable_labels(domain: str, num_classes: int) -> torch.Tensor:
    """Which labels may be mirrored for augmentation (garments and animals; not digits)."""
    if domain in ("fashion", "animals"):
        return torch.ones(num_classes, dtype=torch.bool)
    if domain == "pool":
        parts = [part in ("fashion", "animals") for part in POOL_PARTS]
        return torch.tensor([p for p in parts for _ in range(10)], dtype=torch.bool)
    return torch.zeros(num_classes, dtype=torch.bool)


def train_classifier(config: ClassifierConfig) -> FeatureClassifier:
    """Train the feature classifier from scratch (deterministic for a given thread count)."""
    epochs = check_int("epochs", config.epochs, minimum=1, maximum=100)
    domain = load_domain(config.domain, config.resolution)
    x = torch.from_numpy(np.array(domain.train_images))[:, None]
    y = torch.from_numpy(np.array(domain.train_labels))  # a copy: the cached arrays are read-only
    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    num_classes = len(domain.class_names)
    model = FeatureClassifier(num_classes)
    counts = torch.bincount(y, minlength=num_classes).double()
    class_weight = (counts.sum() / (num_classes * counts.clamp(min=1))).float()
    flippable = _flippable_labels(config.domain, num_classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    steps = epochs * ((len(x) + config.batch_size - 1) // config.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, config.lr, total_steps=steps)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), config.batch_size):
            idx = order[start:start + config.batch_size]
            # light augmentation: random horizontal flips of garments and animals (a mirrored
            # digit is not a digit)
            batch = x[idx]
            flip = (torch.rand(len(idx), generator=generator) < 0.5) & flippable[y[idx]]
            batch = torch.where(flip[:, None, None, None], batch.flip(-1), batch)
            loss = F.cross_entropy(model(batch), y[idx], weight=class_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
    return model.eval()


@lru_cache(maxsize=4)
def load_or_train_classifier(domain: str, resolution: int) -> TrainedClassifier:
    """The cached feature classifier of (domain, resolution); trains and caches it if absent.

    A cached file whose sha256 does not match its sidecar is retrained, never used.
    """
    config = ClassifierConfig(domain=domain, resolution=resolution)
    stem = _cache_stem(config)
    weights_path, meta_path = stem.with_suffix(".pt"), stem.with_suffix(".json")
    model = FeatureClassifier(len(load_domain(domain, resolution).class_names))
    if weights_path.is_file() and meta_path.is_file():
        data = weights_path.read_bytes()
        meta = json.loads(meta_path.read_text())
        if hashlib.sha256(data).hexdigest() == meta.get("weights_sha256"):
            model.load_state_dict(torch.load(io.BytesIO(data), weights_only=True))
            model.eval()
            return _with_scale(TrainedClassifier(model, config, meta["weights_sha256"],
                                                 meta["test_accuracy"]))
    model = train_classifier(config)
    data = _weights_bytes(model)
    digest = hashlib.sha256(data).hexdigest()
    split = load_domain(domain, resolution)
    trained = TrainedClassifier(model, config, digest, 0.0)
    accuracy = float((trained.predict(split.test_images) == split.test_labels).mean())
    from multisource.common.provenance import atomic_write_bytes, atomic_write_text

    atomic_write_bytes(weights_path, data)
    atomic_write_text(meta_path, json.dumps({"config": asdict(config), "weights_sha256": digest,
                                             "test_accuracy": accuracy}, indent=2) + "\n")
    return _with_scale(TrainedClassifier(model, config, digest, accuracy))


def _with_scale(trained: TrainedClassifier) -> TrainedClassifier:
    """Attach the fixed feature scale computed from the first 10,000 training images."""
    split = load_domain(trained.config.domain, trained.config.resolution)
    raw = trained.features(split.train_images[:10_000])
    scale = float(np.sqrt(raw.var(axis=0, ddof=1).mean()))
    return dataclasses.replace(trained, feature_scale=scale)
