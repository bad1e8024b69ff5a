"""EDM2 in miniature: multi-source vs single-source conditional diffusion on real images.

The paper (section 5b of the digest) trains EDM2-XS on ImageNet class subsets and compares the
average per-class FID of one conditional model on K classes (multi-source) with K single-class
models (single-source), at several similarity levels that all contain one anchor class. Here the
same comparison runs on offline data at a CPU-sized scale (our construction):

* data: Fashion-MNIST pooled to 8x8 (`book`), scikit-learn digits 8x8 (`smoke`);
* levels: groups of classes that all contain the anchor (Fashion "Shirt"), ordered by their
  similarity to it, which a `similarity` task MEASURES in the classifier's feature space and in
  pixel space; K in {1, 3, 5} are nested prefixes of each group (K = 1 is the anchor alone);
* fairness: the same network and recipe; a K-class model trains K x `steps_per_class` steps, so
  every class is seen equally often in expectation; the same n images per class for both;
  a control trains the anchor's single-class model as long as the largest multi-class model;
* metric: per-class FCD (Frechet distance in the features of the repo's domain classifier),
  KID in the same features, class-consistency accuracy, all against held-out images;
  error bars come from training seeds and a bootstrap of the generated images.

Each task trains one model (the anchor's single-source model is shared by all levels), samples
`samples_per_class` images per class with the 32-step Heun sampler, and returns one row per
class, holding a few uint8 samples (hex) for the chapter's grids.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from multisource.experiments import Experiment, register
from multisource.image_metrics import class_scores, load_or_train_classifier, similarity_table
from multisource.image_metrics.frechet import frechet_distance_features
from multisource.images import class_subset, load_domain, to_model_range
from multisource.paths import DATA_DIR
from multisource.validation import InputError

NAME = "edm2_miniature"
# Training checkpoints (resumable per task); gitignored scratch space.
WORK_DIR: Path = DATA_DIR / "cache" / NAME


@dataclass(frozen=True)
class Edm2MiniatureConfig:
    """One profile of the miniature experiment (every field enters the config hash)."""

    domain: str
    resolution: int
    anchor: int
    groups: tuple[tuple[str, tuple[int, ...]], ...]   # level -> classes, anchor first
    k_values: tuple[int, ...]
    n_per_class: int
    seeds: tuple[int, ...]
    # network (EDM2-style U-Net, sized for 8x8)
    model_channels: int = 16
    channel_mult: tuple[int, ...] = (1, 2)
    num_blocks: int = 1
    P_mean: float = -0.8
    P_std: float = 1.6
    # training: a K-class model runs K * steps_per_class steps
    steps_per_class: int = 100
    batch_size: int = 256
    lr_ref: float = 0.01
    t_ref_steps: int = 100
    warmup_steps: int = 20
    ema_std: float = 0.05
    # sampling and scoring
    num_steps: int = 32
    samples_per_class: int = 256
    reference_per_class: int = 1000
    grid_per_class: int = 8
    bootstrap: int = 50
    threads: int = 1   # one thread: far faster than two on a shared 2-core CPU


FASHION_GROUPS = (
    # the four classes nearest to Shirt in the classifier's feature space, nearest first
    ("high", (6, 2, 4, 0, 3)),     # Shirt, Pullover, Coat, T-shirt/top, Dress
    # the four farthest from Shirt, farthest first
    ("low", (6, 9, 7, 5, 1)),      # Shirt, Ankle boot, Sneaker, Sandal, Trouser
)

PROFILES = {
    "smoke": Edm2MiniatureConfig(
        domain="digits", resolution=8, anchor=8, groups=(("high", (8, 3, 5)), ("low", (8, 0, 1))),
        k_values=(1, 3), n_per_class=60, seeds=(0,), steps_per_class=10, batch_size=64,
        t_ref_steps=20, warmup_steps=5, num_steps=6, samples_per_class=32,
        reference_per_class=70, grid_per_class=4, bootstrap=5),
    "book": Edm2MiniatureConfig(
        domain="fashion", resolution=8, anchor=6, groups=FASHION_GROUPS, k_values=(1, 3, 5),
        n_per_class=100, seeds=(0, 1)),
    "paper": Edm2MiniatureConfig(
        domain="fashion", resolution=16, anchor=6, groups=FASHION_GROUPS, k_values=(1, 3, 5),
        n_per_class=500, seeds=(0, 1, 2), model_channels=32, steps_per_class=1000,
        samples_per_class=1000, t_ref_steps=1000, warmup_steps=100, bootstrap=100),
}


def group_classes(config: Edm2MiniatureConfig, level: str, k: int) -> tuple[int, ...]:
    """The first k classes of a level's group (the anchor is always first)."""
    groups = dict(config.groups)
    if level not in groups:
        raise InputError(f"level must be one of {', '.join(groups)}; got {level!r}")
    if not 1 <= k <= len(groups[level]):
        raise InputError(f"k must be an integer in [1, {len(groups[level])}], got {k}")
    return groups[level][:k]


def tasks(config: Edm2MiniatureConfig) -> list[dict[str, Any]]:
    """A similarity measurement, then per seed: single-class models, then multi-class models."""
    out: list[dict[str, Any]] = [{"kind": "similarity"}]
    k_max = max(config.k_values)
    singles: list[int] = []
    for _, classes in config.groups:
        for c in classes[:k_max]:
            if c not in singles:
                singles.append(c)
    for seed in config.seeds:
        out.extend({"kind": "single", "classes": [c], "seed": seed} for c in singles)
        for level, _ in config.groups:
            for k in config.k_values:
                if k > 1:
                    out.append({"kind": "multi", "level": level,
                                "classes": list(group_classes(config, level, k)), "seed": seed})
    # Control: the anchor's single-class model trained as long as the largest multi-source
    # model (k_max x the steps). Separates "more data through sharing" from "more steps".
    out.extend({"kind": "single_long", "classes": [config.anchor], "seed": seed,
                "steps_factor": k_max} for seed in config.seeds)
    return out


def _model_configs(config: Edm2MiniatureConfig, k: int, seed: int, steps_factor: int = 1
                   ) -> tuple[Any, Any]:
    from multisource.models.diffusion import DiffusionConfig, TrainConfig

    model = DiffusionConfig(img_resolution=config.resolution, img_channels=1, label_dim=k,
                            model_channels=config.model_channels,
                            channel_mult=config.channel_mult, num_blocks=config.num_blocks,
                            attn_resolutions=(), P_mean=config.P_mean, P_std=config.P_std)
    steps = k * config.steps_per_class * steps_factor
    train = TrainConfig(batch_size=config.batch_size, total_steps=steps, lr_ref=config.lr_ref,
                        t_ref_steps=config.t_ref_steps, warmup_steps=config.warmup_steps,
                        ema_stds=(config.ema_std,), seed=seed,
                        checkpoint_every=max(steps, 1), log_every=max(steps // 20, 1))
    return model, train


def encode_grid(images: np.ndarray) -> str:
    """[n, H, W] images in [0, 1] -> hex string of uint8 pixels (for the results table)."""
    return np.rint(np.clip(images, 0, 1) * 255).astype(np.uint8).tobytes().hex()


def decode_grid(hex_string: str, resolution: int) -> np.ndarray:
    """Inverse of `encode_grid`: uint8 images [n, resolution, resolution]."""
    data = np.frombuffer(bytes.fromhex(hex_string), dtype=np.uint8)
    return data.reshape(-1, resolution, resolution)


def _bootstrap_fcd(classifier: Any, generated: np.ndarray, reference: np.ndarray, reps: int,
                   seed: int) -> float:
    """Standard deviation of FCD over bootstrap resamples of the generated images."""
    if reps < 2:
        return float("nan")
    gen = classifier.features(generated)
    ref = classifier.features(reference)
    rng = np.random.default_rng(seed)
    values = [frechet_distance_features(gen[rng.integers(0, len(gen), len(gen))], ref)
              for _ in range(reps)]
    return float(np.std(values, ddof=1))


def _similarity_rows(config: Edm2MiniatureConfig) -> list[dict[str, Any]]:
    domain = load_domain(config.domain, config.resolution)
    classifier = load_or_train_classifier(config.domain, config.resolution)
    groups = {f"{level}-K{k}": group_classes(config, level, k)
              for level, _ in config.groups for k in config.k_values if k > 1}
    rows = similarity_table(classifier, domain.test_images, domain.test_labels, groups,
                            config.anchor)
    for row in rows:
        level, k = row["group"].split("-K")
        row.update(kind="similarity", level=level, K=int(k),
                   classifier_sha256=classifier.weights_sha256,
                   classifier_test_accuracy=classifier.test_accuracy)
    # The floor a perfect generator would reach: real training-split images of each class, as
    # many as the samples, scored exactly like samples against the held-out reference.
    classes = sorted({c for _, group in config.groups for c in group[:max(config.k_values)]})
    for c in classes:
        real, _ = class_subset(domain.train_images, domain.train_labels, [c],
                               config.samples_per_class, seed=10_000)
        reference = domain.test_images[domain.test_labels == c][:config.reference_per_class]
        rows.append({"kind": "real", "level": "", "K": 1, "class": c,
                     "class_name": domain.class_names[c],
                     **class_scores(classifier, real, reference, c),
                     "classifier_sha256": classifier.weights_sha256})
    return rows


def run_task(config: Edm2MiniatureConfig, task: dict[str, Any], device: torch.device
             ) -> list[dict[str, Any]]:
    """Train one model, sample every class, score against held-out images; one row per class."""
    if task["kind"] == "similarity":
        return _similarity_rows(config)
    from multisource.models.diffusion import sample, train

    torch.set_num_threads(config.threads)
    classes = tuple(int(c) for c in task["classes"])
    seed = int(task["seed"])
    k = len(classes)
    domain = load_domain(config.domain, config.resolution)
    classifier = load_or_train_classifier(config.domain, config.resolution)
    x, y = class_subset(domain.train_images, domain.train_labels, classes, config.n_per_class)
    model_config, train_config = _model_configs(config, k, seed,
                                                int(task.get("steps_factor", 1)))
    key = hashlib.sha256(json.dumps({"config": repr(config), "task": task},
                                    sort_keys=True).encode()).hexdigest()[:16]
    started = time.perf_counter()
    result = train(model_config, train_config, to_model_range(x), torch.as_tensor(y),
                   WORK_DIR / key, device, progress=False)
    train_s = time.perf_counter() - started
    ema = result.ema_models[config.ema_std]
    final_loss = float(result.log["loss"].tail(3).mean()) if len(result.log) else float("nan")
    rows = []
    for label, c in enumerate(classes):
        started = time.perf_counter()
        labels = torch.full((config.samples_per_class,), label, dtype=torch.long)
        generated = sample(ema, labels, num_steps=config.num_steps, seed=1000 * seed + c,
                           device=device, batch_size=config.samples_per_class)
        generated = ((generated[:, 0].cpu().numpy() + 1.0) / 2.0).clip(0.0, 1.0)
        sample_s = time.perf_counter() - started
        reference = domain.test_images[domain.test_labels == c][:config.reference_per_class]
        scores = class_scores(classifier, generated, reference, c, seed=seed)
        rows.append({
            "kind": task["kind"], "level": task.get("level", ""), "K": k, "seed": seed,
            "class": c, "class_name": domain.class_names[c], "model_classes":
            " ".join(map(str, classes)), **scores,
            "fcd_boot_sd": _bootstrap_fcd(classifier, generated, reference, config.bootstrap,
                                          seed),
            "n_train": int((y == label).sum()), "train_steps": train_config.total_steps,
            "final_loss": final_loss, "train_s": round(train_s, 2),
            "sample_s": round(sample_s, 2), "classifier_sha256": classifier.weights_sha256,
            "grid_hex": encode_grid(generated[:config.grid_per_class]),
        })
    return rows


def comparison_table(frame: pd.DataFrame, config: Edm2MiniatureConfig) -> pd.DataFrame:
    """Per (level, K, estimator, seed): the mean over the K classes of FCD, KID and accuracy.

    Single-source values for a group are the anchor's and the other classes' own single-class
    models; K = 1 is the anchor's single-class model for both estimators. Estimator `real` (one
    row, no seed spread) scores real training images the same way: the floor of each metric.
    """
    models = frame[frame["kind"].isin(["single", "multi"])]
    single = models[models["kind"] == "single"]
    real = frame[frame["kind"] == "real"]
    out = []
    for level, _ in config.groups:
        for k in config.k_values:
            classes = group_classes(config, level, k)
            for seed in sorted(models["seed"].unique()):
                s_rows = single[(single["seed"] == seed) & single["class"].isin(classes)]
                if k == 1:
                    m_rows = s_rows
                else:
                    m_rows = models[(models["kind"] == "multi") & (models["level"] == level)
                                    & (models["K"] == k) & (models["seed"] == seed)]
                candidates = [("multi", m_rows), ("single", s_rows)]
                if seed == min(models["seed"]) and len(real):
                    candidates.append(("real", real[real["class"].isin(classes)]))
                for estimator, rows in candidates:
                    if len(rows) != k:
                        continue
                    out.append({"level": level, "K": k, "estimator": estimator,
                                "seed": -1 if estimator == "real" else int(seed),
                                "fcd": rows["fcd"].mean(),
                                "kid_x1000": rows["kid_x1000"].mean(),
                                "accuracy": rows["accuracy"].mean(),
                                "anchor_fcd": float(rows.loc[rows["class"] == config.anchor,
                                                             "fcd"].iloc[0])})
    return pd.DataFrame(out)


def summary_table(frame: pd.DataFrame, config: Edm2MiniatureConfig) -> pd.DataFrame:
    """`comparison_table` averaged over seeds: mean and standard error of each metric."""
    per_seed = comparison_table(frame, config)
    grouped = per_seed.groupby(["level", "K", "estimator"], sort=False)
    summary = grouped[["fcd", "kid_x1000", "accuracy", "anchor_fcd"]].mean()
    sem = grouped[["fcd", "kid_x1000", "accuracy", "anchor_fcd"]].sem(ddof=1)
    summary = summary.join(sem.add_suffix("_se")).join(grouped.size().rename("seeds"))
    return summary.reset_index()


register(Experiment(
    name=NAME,
    description="EDM2-style diffusion: one model on K classes vs K models, Fashion-MNIST 8x8",
    chapter="07_edm2_diffusion",
    profiles=PROFILES,
    tasks=tasks,
    run_task=run_task,
))
