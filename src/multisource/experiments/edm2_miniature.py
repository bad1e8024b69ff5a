"""EDM2 in miniature: multi-source vs single-source conditional diffusion on real images.

The paper (section 5b of the digest) trains EDM2-XS on ImageNet class subsets and compares the
average per-class FID of one conditional model on K classes (multi-source) with K single-class
models (single-source). Here the same comparison runs on offline data at a CPU-sized scale. The
design is ours:

* data: a 30-class pool of 28x28 images (Fashion-MNIST, Animal-MNIST, MNIST-5k) area-pooled to
  `resolution`; every class keeps `validation_per_class` images of its training split out of
  training (for the stopping rule and the similarity measurement) and its held-out split as
  the metric's reference;
* three sweeps through one centre point (K = `k_centre` classes of the `centre` order, n =
  `n_centre` images per class): K over `k_values` (nested prefixes of `centre`), n over
  `n_values`, and class groups of K = `k_centre` whose similarity is MEASURED;
* seeds: each seed redraws the n training images of every class, the initialisation, the
  batches and the sampler noise; single- and multi-source models of one seed see the same
  images of a class (paired);
* budgets: every model trains ONE long run with EMA snapshots; the learning-rate schedule and
  the EMA do not depend on the run's length, so the snapshot at step t is the model a run
  stopped at t would give. Three arms read off the same runs: (a) `paper` - the authors'
  preset budgets per (K, n), scaled so that a one-class model at the centre n gets
  `equal_steps`; (b) `equal` - `equal_steps` for every model; (c) `plateau` - each model until
  a stopping rule that sees only the validation images (held out of the training split) says
  that training `plateau_factor` times longer improved them by less than `plateau_tol`, or
  until `max_steps` (flagged as not at a plateau); the arm takes the run's best validation
  snapshot (see `plateau_stop`);
* metric: per-class FCD (Frechet distance in the features of an in-repo classifier of the
  pool), KID, class-consistency accuracy, against the class's held-out images; memorisation
  as nearest-neighbour distances of samples to the training images vs fresh images.

Each model task returns one row per (evaluated snapshot, class).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from multisource.common.paths import DATA_DIR
from multisource.common.validation import InputError, check_choice
from multisource.experiments import Experiment, register
from multisource.image_metrics import (
    class_scores,
    load_or_train_classifier,
    memorisation_scores,
    similarity_table,
)
from multisource.image_metrics.frechet import frechet_distance_features
from multisource.images import (
    class_indices,
    class_subset,
    load_domain,
    to_model_range,
    validation_indices,
)

NAME = "edm2_miniature"
# Training runs and their snapshots (resumable per task; removed when a task is done).
WORK_DIR: Path = DATA_DIR / "cache" / NAME
ARMS = ("paper", "equal", "plateau")


@dataclass(frozen=True)
class Edm2MiniatureConfig:
    """One profile of the miniature experiment (every field enters the config hash)."""

    domain: str
    resolution: int
    centre: tuple[int, ...]            # K-sweep order, anchor first: K classes = first K
    k_values: tuple[int, ...]
    k_centre: int
    n_values: tuple[int, ...]
    n_centre: int
    # similarity sweep at (k_centre, n_centre): (name, level, classes); anchor first
    groups: tuple[tuple[str, str, tuple[int, ...]], ...]
    seeds: tuple[int, ...]
    # which single-source models to train: "all" (every class of every compared group, so the
    # K-class average can be compared everywhere) or "centre" (the anchor at every n and the
    # centre group's classes at n_centre: the anchor is compared everywhere, the K-class
    # average at the centre point only)
    singles: str = "all"
    # network (EDM2-style U-Net)
    model_channels: int = 16
    channel_mult: tuple[int, ...] = (1, 2)
    num_blocks: int = 1
    P_mean: float = -0.8
    P_std: float = 1.6
    # training: one run per model, snapshots every `snapshot_every` steps
    batch_size: int = 64
    lr_ref: float = 0.01
    t_ref_steps: int = 128
    warmup_steps: int = 32
    lr_decay: str = "multisource"
    ema_std: float = 0.05
    snapshot_every: int = 128
    equal_steps: int = 1024             # arm (b); arm (a) is scaled from it
    paper_n: tuple[tuple[int, int], ...] = ((30, 100), (100, 500), (300, 1000))
    eval_grid: tuple[int, ...] = (128, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096)
    max_steps: int = 4096
    plateau_tol: float = 0.05
    plateau_factor: float = 1.5
    plateau_patience: int = 2
    # evaluation
    num_steps: int = 12                 # Heun steps (2 * num_steps - 1 network evaluations)
    samples_per_class: int = 150
    reference_per_class: int = 150
    validation_per_class: int = 150
    grid_per_class: int = 8
    threads: int = 1                    # one thread: far faster than two on a shared 2-core CPU

    @property
    def anchor(self) -> int:
        """The class every group contains (the paper's ImageNet class 171 plays this role)."""
        return self.centre[0]


SMOKE = Edm2MiniatureConfig(
    domain="digits", resolution=8, centre=(8, 3, 5, 0, 1), k_values=(1, 3), k_centre=3,
    n_values=(20, 40), n_centre=40, groups=(("near", "high", (8, 3, 5)),
                                          ("far", "low", (8, 0, 1))),
    seeds=(0,), singles="all", batch_size=32, t_ref_steps=4, warmup_steps=2, snapshot_every=8,
    equal_steps=16, paper_n=((20, 100), (40, 500)), eval_grid=(8, 16, 24), max_steps=24,
    num_steps=4, samples_per_class=24, reference_per_class=30, validation_per_class=20,
    grid_per_class=4)

# Pool labels: Fashion 0-9 (6 Shirt, 2 Pullover, 4 Coat, 0 T-shirt, 3 Dress, 1 Trouser,
# 5 Sandal, 7 Sneaker, 8 Bag, 9 Ankle boot), animals 10-19 (bear, bird, cat, cow, dog, elephant,
# giraffe, horse, sheep, zebra), digits 20-29.
FASHION_CENTRE = (6, 2, 4, 0, 3, 1, 5, 7, 8, 9)
POOL_GROUPS = (
    ("tops", "high", (6, 2, 4)),              # the centre group: Shirt, Pullover, Coat
    ("trouser + bag", "mid", (6, 1, 8)),      # same domain, other kinds of item
    ("cat + digit 1", "low", (6, 12, 21)),    # one Animal-MNIST and one MNIST class
)
BOOK = Edm2MiniatureConfig(
    domain="pool", resolution=8, centre=FASHION_CENTRE, k_values=(1, 3, 5, 10), k_centre=3,
    n_values=(30, 100, 300), n_centre=100, groups=POOL_GROUPS, seeds=(0, 1, 2, 3, 4),
    singles="centre", batch_size=32, lr_ref=0.02, ema_std=0.10, equal_steps=1024,
    eval_grid=(256, 512, 768, 1024, 1536, 2048), max_steps=2048, plateau_tol=0.05,
    num_steps=18, samples_per_class=100)

PROFILES = {
    "smoke": SMOKE,
    "book": BOOK,
    # For a GPU: native 28x28, a wider network, every single-source model, longer runs, more
    # samples and seeds.
    "paper": dataclasses.replace(
        BOOK, resolution=28, seeds=tuple(range(10)), singles="all", model_channels=64,
        channel_mult=(1, 2, 2), num_blocks=2, batch_size=256, lr_ref=0.01, t_ref_steps=512,
        warmup_steps=128, snapshot_every=512, equal_steps=8192,
        eval_grid=(1024, 2048, 3072, 4096, 6144, 8192, 12288, 16384, 24576, 32768),
        max_steps=32768, plateau_tol=0.05, num_steps=32, samples_per_class=1000),
}


# --- design -------------------------------------------------------------------------------------

def model_key(classes: tuple[int, ...] | list[int], n: int) -> str:
    """Identifies one trained model within a seed: its classes in label order and n."""
    return f"{' '.join(str(int(c)) for c in classes)}|{int(n)}"


def design_models(config: Edm2MiniatureConfig) -> list[tuple[tuple[int, ...], int]]:
    """Every (classes, n) the three sweeps need, singles first, each once."""
    multis: list[tuple[tuple[int, ...], int]] = []
    for k in config.k_values:
        multis.append((config.centre[:k], config.n_centre))
    for n in config.n_values:
        multis.append((config.centre[:config.k_centre], n))
    for _, _, classes in config.groups:
        multis.append((tuple(classes), config.n_centre))
    check_choice("singles", config.singles, ("all", "centre"))
    if config.singles == "all":
        singles = [((c,), n) for classes, n in multis for c in classes]
    else:
        singles = [((config.anchor,), n) for n in config.n_values]
        singles += [((c,), config.n_centre) for c in config.centre[:config.k_centre]]
    out: list[tuple[tuple[int, ...], int]] = []
    for item in singles + [m for m in multis if len(m[0]) > 1]:
        if item not in out:
            out.append(item)
    return out


def sweep_points(config: Edm2MiniatureConfig) -> list[dict[str, Any]]:
    """The comparisons: sweep, setting label, the multi-source model's classes and n."""
    points = [{"sweep": "K", "setting": k, "classes": config.centre[:k], "n": config.n_centre}
              for k in config.k_values]
    points += [{"sweep": "n", "setting": n, "classes": config.centre[:config.k_centre], "n": n}
               for n in config.n_values]
    points += [{"sweep": "similarity", "setting": name, "level": level,
                "classes": tuple(classes), "n": config.n_centre}
               for name, level, classes in config.groups]
    return points


def paper_steps(config: Edm2MiniatureConfig, k: int, n: int) -> int:
    """Arm (a): the authors' preset budget for (K, n), scaled to this profile.

    The presets give a (K, n) model a total number of training images (paper.md 5b). Our n
    maps to a preset n by `paper_n`; the budget is `equal_steps` x images(K, n') /
    images(1, n_centre'), rounded to the snapshot grid. K must be one of the presets' 1, 3, 5,
    10. Only the budgets' ratios are taken; the presets' per-(K, n) learning rates are not.
    """
    from multisource.models.diffusion import PAPER_SCHEDULES

    mapping = dict(config.paper_n)
    if n not in mapping or config.n_centre not in mapping:
        raise InputError(f"n must be one of {sorted(mapping)} (paper_n), got {n}")
    key, ref = (k, mapping[n]), (1, mapping[config.n_centre])
    if key not in PAPER_SCHEDULES:
        raise InputError(f"(K, n') must be one of the presets {sorted(PAPER_SCHEDULES)}, got {key}")
    ratio = PAPER_SCHEDULES[key][0] / PAPER_SCHEDULES[ref][0]
    grid = config.snapshot_every
    return max(grid, grid * round(config.equal_steps * ratio / grid))


def arm_steps(config: Edm2MiniatureConfig, k: int, n: int) -> dict[str, int]:
    """Steps of the fixed-budget arms for a model with k classes and n images per class."""
    return {"paper": paper_steps(config, k, n), "equal": config.equal_steps}


def plateau_stop(steps: list[int], values: list[float], tol: float, factor: float = 2.0,
                 patience: int = 1) -> int | None:
    """First evaluated step t at which more training stopped helping, or None.

    The condition at t (with at least one evaluation at or below t/factor): the best value over
    (t/factor, t] is not below (1 - tol) x the best value up to t/factor, i.e. training `factor`
    times longer improved the value by less than `tol`. The rule fires at the first t where the
    condition has held at `patience` consecutive evaluations (so one noisy evaluation cannot
    stop a run). Uses only values up to t.
    """
    streak = 0
    for i, t in enumerate(steps):
        seen = list(zip(steps[:i + 1], values[:i + 1], strict=True))
        early = [v for s, v in seen if s <= t / factor]
        late = [v for s, v in seen if s > t / factor]
        holds = bool(early and late and min(late) >= (1 - tol) * min(early))
        streak = streak + 1 if holds else 0
        if streak >= max(patience, 1):
            return t
    return None


def tasks(config: Edm2MiniatureConfig) -> list[dict[str, Any]]:
    """Measured similarity and real-image floors, then per seed every model of the design."""
    out: list[dict[str, Any]] = [{"kind": "similarity"}]
    for seed in config.seeds:
        for classes, n in design_models(config):
            out.append({"kind": "single" if len(classes) == 1 else "multi",
                        "classes": list(classes), "n": n, "seed": seed})
    return out


# --- running --------------------------------------------------------------------------------

def _model_configs(config: Edm2MiniatureConfig, k: int, seed: int) -> tuple[Any, Any]:
    from multisource.models.diffusion import DiffusionConfig, TrainConfig

    model = DiffusionConfig(img_resolution=config.resolution, img_channels=1, label_dim=k,
                            model_channels=config.model_channels,
                            channel_mult=config.channel_mult, num_blocks=config.num_blocks,
                            attn_resolutions=(), P_mean=config.P_mean, P_std=config.P_std)
    train = TrainConfig(batch_size=config.batch_size, total_steps=config.max_steps,
                        lr_ref=config.lr_ref, t_ref_steps=config.t_ref_steps,
                        warmup_steps=config.warmup_steps, ema_stds=(config.ema_std,),
                        seed=seed, checkpoint_every=config.snapshot_every,
                        log_every=max(config.snapshot_every // 4, 1),
                        lr_decay=config.lr_decay, snapshot_every=config.snapshot_every)
    return model, train


def _eval_steps(config: Edm2MiniatureConfig, k: int, n: int) -> list[int]:
    fixed = set(arm_steps(config, k, n).values())
    steps = sorted({s for s in config.eval_grid if s <= config.max_steps} | fixed)
    bad = [s for s in steps if s % config.snapshot_every]
    if bad:
        raise InputError(f"eval_grid and arm budgets must be multiples of snapshot_every "
                         f"{config.snapshot_every}, got {bad}")
    return steps


def encode_grid(images: np.ndarray) -> str:
    """[n, H, W] images in [0, 1] -> hex string of uint8 pixels (for the results table)."""
    return np.rint(np.clip(images, 0, 1) * 255).astype(np.uint8).tobytes().hex()


def decode_grid(hex_string: str, resolution: int) -> np.ndarray:
    """Inverse of `encode_grid`: uint8 images [n, resolution, resolution]."""
    data = np.frombuffer(bytes.fromhex(hex_string), dtype=np.uint8)
    return data.reshape(-1, resolution, resolution)


@dataclass
class _Data:
    """What a model task needs of its domain: the split, the classifier, the validation set."""

    domain: Any
    classifier: Any
    validation: np.ndarray          # indices into the training split, held out of training


def _prepare(config: Edm2MiniatureConfig) -> _Data:
    domain = load_domain(config.domain, config.resolution)
    classifier = load_or_train_classifier(config.domain, config.resolution)
    return _Data(domain, classifier,
                 validation_indices(domain.train_labels, config.validation_per_class))


def _reference(data: _Data, config: Edm2MiniatureConfig, c: int) -> np.ndarray:
    d = data.domain
    images = d.test_images[d.test_labels == c]
    if len(images) < config.reference_per_class:
        raise InputError(f"reference_per_class must be at most {len(images)} for class {c}")
    return images[:config.reference_per_class]


def _validation(data: _Data, c: int) -> np.ndarray:
    d = data.domain
    idx = data.validation[d.train_labels[data.validation] == c]
    return d.train_images[idx]


def _similarity_rows(config: Edm2MiniatureConfig) -> list[dict[str, Any]]:
    """Measured similarity of every group (validation images) and real-image metric floors."""
    data = _prepare(config)
    d, clf = data.domain, data.classifier
    groups = {f"K{k}": config.centre[:k] for k in config.k_values if k > 1}
    groups.update({name: tuple(classes) for name, _, classes in config.groups})
    val_x, val_y = d.train_images[data.validation], d.train_labels[data.validation]
    rows = similarity_table(clf, val_x, val_y, groups, config.anchor)
    levels = {name: level for name, level, _ in config.groups}
    for row in rows:
        row.update(kind="similarity", level=levels.get(row["group"], "mixed"),
                   classifier_sha256=clf.weights_sha256,
                   classifier_test_accuracy=clf.test_accuracy)
    # The floor a perfect generator would reach: fresh real training-split images, as many as
    # the samples, scored exactly like samples against the held-out reference.
    classes = sorted({c for classes, _ in design_models(config) for c in classes})
    for c in classes:
        real, _ = class_subset(d.train_images, d.train_labels, [c], config.samples_per_class,
                               seed=10_000, exclude=data.validation)
        rows.append({"kind": "real", "class": c, "class_name": d.class_names[c],
                     **class_scores(clf, real, _reference(data, config, c), c),
                     "grid_hex": encode_grid(real[:config.grid_per_class]),
                     "fcd_val": frechet_distance_features(clf.features(real),
                                                          clf.features(_validation(data, c))),
                     "classifier_sha256": clf.weights_sha256})
    return rows


def _work_dir(config: Edm2MiniatureConfig, task: dict[str, Any]) -> Path:
    """Training folder keyed by the config, the task AND the code hash of this experiment."""
    from multisource.common.provenance import code_hash

    key = hashlib.sha256(json.dumps({"config": asdict(config), "task": task,
                                     "code": code_hash(__name__)}, sort_keys=True,
                                    default=str).encode()).hexdigest()[:16]
    return WORK_DIR / key


def _sample_class(model: Any, label: int, config: Edm2MiniatureConfig, seed: int, c: int,
                  device: torch.device) -> np.ndarray:
    """samples_per_class images in [0, 1] of one class; the noise depends on (seed, class)
    only, so the single- and multi-source models of a seed start from the same noise."""
    from multisource.models.diffusion import sample

    labels = torch.full((config.samples_per_class,), label, dtype=torch.long)
    out = sample(model, labels, num_steps=config.num_steps, seed=100_003 * seed + c,
                 device=device, batch_size=config.samples_per_class)
    return ((out[:, 0].cpu().numpy() + 1.0) / 2.0).clip(0.0, 1.0)


def _run_model(config: Edm2MiniatureConfig, task: dict[str, Any], device: torch.device
               ) -> list[dict[str, Any]]:
    from multisource.models.diffusion import load_result, load_snapshot, train

    torch.set_num_threads(config.threads)
    cpu_started = time.process_time()
    classes = tuple(int(c) for c in task["classes"])
    n, seed, k = int(task["n"]), int(task["seed"]), len(classes)
    data = _prepare(config)
    d, clf = data.domain, data.classifier
    x, y = class_subset(d.train_images, d.train_labels, classes, n, seed=seed,
                        exclude=data.validation)
    model_config, train_config = _model_configs(config, k, seed)
    out_dir = _work_dir(config, task)
    images, labels = to_model_range(x), torch.as_tensor(y)
    validations = {c: clf.features(_validation(data, c)) for c in classes}
    fixed = arm_steps(config, k, n)
    must_reach = max(fixed.values())

    # A task interrupted earlier resumes its run; its snapshots are still in out_dir.
    done = load_result(out_dir).steps_done if (out_dir / "checkpoint.pt").exists() else 0
    rows: list[dict[str, Any]] = []
    evaluated: list[int] = []
    val_curve: list[float] = []
    samples_at: dict[int, dict[int, np.ndarray]] = {}
    stop: int | None = None
    eval_seconds = 0.0
    for step in _eval_steps(config, k, n):
        if step > done:
            log = train(model_config, train_config, images, labels, out_dir, device,
                        progress=False, stop_after=step - done).log
            done = step
        else:
            log = load_result(out_dir).log
        started = time.perf_counter()
        ema, seconds = load_snapshot(out_dir, step)
        model = ema[config.ema_std]
        log = log[log["step"] <= step]
        loss = float(log["loss"].tail(4).mean()) if len(log) else float("nan")
        samples_at[step] = {}
        fcd_vals = []
        for label, c in enumerate(classes):
            generated = _sample_class(model, label, config, seed, c, device)
            samples_at[step][c] = generated
            scores = class_scores(clf, generated, _reference(data, config, c), c, seed=seed)
            fcd_val = frechet_distance_features(clf.features(generated), validations[c])
            fcd_vals.append(fcd_val)
            rows.append({"kind": task["kind"], "model": model_key(classes, n), "K": k, "n": n,
                         "seed": seed, "step": step, "class": c,
                         "class_name": d.class_names[c], **scores, "fcd_val": fcd_val,
                         "loss": loss, "train_s": round(seconds, 2),
                         "n_train": int((y == label).sum())})
        evaluated.append(step)
        val_curve.append(float(np.mean(fcd_vals)))
        eval_seconds += time.perf_counter() - started
        if stop is None:
            stop = plateau_stop(evaluated, val_curve, config.plateau_tol,
                                config.plateau_factor, config.plateau_patience)
        if stop is not None and step >= must_reach:
            break
    # Arm (c): the best validation snapshot of the run (it ends at the stopping step, or later
    # when a fixed arm needs more steps, or at max_steps).
    horizon = stop if stop is not None else evaluated[-1]
    chosen = min((v, s) for s, v in zip(evaluated, val_curve, strict=True))[1]
    chosen_steps = {**fixed, "plateau": chosen}
    memorisation_sets: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for row in rows:
        for arm, s in chosen_steps.items():
            row[f"arm_{arm}"] = row["step"] == s
        row.update(stop_step=horizon, plateau=stop is not None, steps_trained=evaluated[-1],
                   eval_s=round(eval_seconds, 2))
        if row["step"] in (chosen_steps["equal"], chosen_steps["plateau"]):
            c = row["class"]
            if c not in memorisation_sets:
                memorisation_sets[c] = _memorisation_sets(d, data, c, n, seed)
            generated = samples_at[row["step"]][c]
            row.update(memorisation_scores(generated, *memorisation_sets[c]))
            row["grid_hex"] = encode_grid(generated[:config.grid_per_class])
    cpu_s = round(time.process_time() - cpu_started, 2)   # this segment of the task
    for row in rows:
        row["task_cpu_s"] = cpu_s
    shutil.rmtree(out_dir, ignore_errors=True)   # the rows hold everything the chapter needs
    return rows


def _memorisation_sets(d: Any, data: _Data, c: int, n: int, seed: int
                       ) -> tuple[np.ndarray, np.ndarray]:
    """(training images, fresh images) of class c, of equal size m = min(n, what is left).

    The model of `seed` trained on n images of c; the fresh images are other images of c's
    training split that neither the model nor the stopping rule saw. When fewer than n are
    left (MNIST-5k has 150 per class after the validation split), both sets are cut to m, so
    that without memorisation a sample is nearer to either set with probability 1/2.
    """
    own = class_indices(d.train_labels, c, n, seed, exclude=data.validation)
    left = np.setdiff1d(np.flatnonzero(d.train_labels == c), np.concatenate([data.validation,
                                                                             own]))
    m = min(n, len(left))
    fresh = class_indices(d.train_labels, c, m, 20_000 + seed,
                          exclude=np.concatenate([data.validation, own]))
    kept = np.random.default_rng([30_000 + seed, c]).permutation(own)[:m]
    return d.train_images[np.sort(kept)], d.train_images[fresh]


def run_task(config: Edm2MiniatureConfig, task: dict[str, Any], device: torch.device
             ) -> list[dict[str, Any]]:
    """The similarity task, or one model: train, score every snapshot, pick the arms."""
    if task["kind"] == "similarity":
        return _similarity_rows(config)
    return _run_model(config, task, device)


# --- analysis (used by the chapter and the tests) ---------------------------------------------

def arm_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, seed, class, arm): the scores of the snapshot that arm selects."""
    models = frame[frame["kind"].isin(["single", "multi"])]
    parts = []
    for arm in ARMS:
        picked = models[models[f"arm_{arm}"].astype(bool)].copy()
        picked["arm"] = arm
        parts.append(picked)
    return pd.concat(parts, ignore_index=True)


def paired_differences(frame: pd.DataFrame, config: Edm2MiniatureConfig,
                       metric: str = "fcd", scope: str = "anchor") -> pd.DataFrame:
    """Per sweep point, arm and seed: `metric` of the multi-source model and of the
    single-source model(s), each at its own arm budget, their difference (multi - single:
    negative = multi-source better) and log ratio.

    scope "anchor": the anchor class only (every group contains it, as ImageNet class 171 in
    the paper's lists); scope "average": the mean over the group's K classes (the paper's
    average FID), at the points where every class has a single-source model.
    """
    check_choice("scope", scope, ("anchor", "average"))
    arms = arm_frame(frame)
    single = arms[arms["kind"] == "single"].set_index(["arm", "seed", "class", "n"])[metric]
    out = []
    for point in sweep_points(config):
        classes, n = tuple(point["classes"]), point["n"]
        compared = classes if scope == "average" else (config.anchor,)
        key = model_key(classes, n)
        for arm in ARMS:
            for seed in config.seeds:
                singles = [single.get((arm, seed, c, n), np.nan) for c in compared]
                if len(classes) == 1:
                    multi = singles          # K = 1: one and the same model
                else:
                    rows = arms[(arms["model"] == key) & (arms["seed"] == seed)
                                & (arms["arm"] == arm)]
                    multi = [float(rows.loc[rows["class"] == c, metric].iloc[0])
                             if (rows["class"] == c).any() else np.nan for c in compared]
                m, s = float(np.mean(multi)), float(np.mean(singles))
                if not (np.isfinite(m) and np.isfinite(s)):
                    continue
                out.append({"sweep": point["sweep"], "setting": str(point["setting"]),
                            "level": point.get("level", ""), "K": len(classes), "n": n,
                            "arm": arm, "seed": seed, "multi": m, "single": s,
                            "diff": m - s, "log_ratio": math.log(m / s) if m > 0 and s > 0
                            else np.nan})
    return pd.DataFrame(out)


def t_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and two-sided Student-t confidence interval of the mean of `values`."""
    from scipy import stats

    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    mean = float(values.mean()) if len(values) else float("nan")
    if len(values) < 2:
        return mean, float("nan"), float("nan")
    half = float(stats.t.ppf(0.5 + level / 2, len(values) - 1)
                 * values.std(ddof=1) / math.sqrt(len(values)))
    return mean, mean - half, mean + half


def difference_summary(paired: pd.DataFrame) -> pd.DataFrame:
    """Mean multi - single difference per sweep point and arm with its 95% t-interval over
    seeds, whether the interval contains zero, and the mean ratio multi / single."""
    out = []
    for keys, rows in paired.groupby(["sweep", "setting", "arm"], sort=False):
        mean, low, high = t_interval(rows["diff"].to_numpy())
        out.append({"sweep": keys[0], "setting": keys[1], "arm": keys[2],
                    "level": rows["level"].iloc[0], "K": int(rows["K"].iloc[0]),
                    "n": int(rows["n"].iloc[0]), "seeds": len(rows),
                    "multi": rows["multi"].mean(), "single": rows["single"].mean(),
                    "diff": mean, "low": low, "high": high,
                    "ratio": float(np.exp(rows["log_ratio"].mean())),
                    "contains_zero": bool(low <= 0 <= high) if np.isfinite(low) else True,
                    "multi_wins_seeds": int((rows["diff"] < 0).sum())})
    return pd.DataFrame(out)


def slope_summary(paired: pd.DataFrame, x_by_setting: dict[str, float], sweep: str,
                  arm: str, exclude: tuple[str, ...] = ()) -> dict[str, float]:
    """Slope of the log ratio (multi / single) against x, fitted per seed by least squares,
    with its mean and 95% t-interval over seeds (seeds are the independent replicates)."""
    rows = paired[(paired["sweep"] == sweep) & (paired["arm"] == arm)
                  & ~paired["setting"].isin(exclude)]
    slopes = []
    for _, seed_rows in rows.groupby("seed"):
        xs = np.array([x_by_setting[s] for s in seed_rows["setting"]], dtype=float)
        ys = seed_rows["log_ratio"].to_numpy(dtype=float)
        if len(np.unique(xs)) >= 2:
            slopes.append(float(np.polyfit(xs, ys, 1)[0]))
    mean, low, high = t_interval(np.array(slopes))
    return {"slope": mean, "low": low, "high": high, "seeds": len(slopes),
            "points": int(rows["setting"].nunique())}


register(Experiment(
    name=NAME,
    description="EDM2-style diffusion: one model on K classes vs K models; three budget arms, "
                "K / similarity / n sweeps on a 30-class offline pool at 8x8",
    chapter="07_edm2_diffusion",
    profiles=PROFILES,
    tasks=tasks,
    run_task=run_task,
))
