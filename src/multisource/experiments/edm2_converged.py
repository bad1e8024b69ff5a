"""EDM2 in miniature, second design: converged runs, independent draws, a likelihood bound.

The first design (`edm2_miniature`) left most multi-source runs at a step cap while they were
still improving, selected snapshots on the same samples it then scored, had too few seeds to
detect a 25% effect, and measured nothing the theory speaks to. This design (ours; the paper
trains EDM2-XS on ImageNet class subsets, paper.md 5b) keeps its data and network and changes:

* models: per seed, one multi-source model per K in `k_values` (nested prefixes of `centre`)
  and per extra class group (a similarity contrast), and a single-source model for EVERY class
  they contain, so the paper's K-class average is available at every point. All models of a
  seed train together in one vmapped step (`models.diffusion.stacked`); every model has
  `label_dim` label slots so that they share one architecture;
* stopping: every model trains until its own rule fires, on a held-out likelihood bound of
  validation images (held out of the training split, never test images): the rule fires at
  the first evaluated step t at which training `plateau_factor` times longer improved the best
  validation bound by less than `plateau_tol_bits` bits/dim, `plateau_patience` evaluations in
  a row (overfitting, a rising bound, fires it too). The bound is computed on fixed images
  with fixed noise, so its step-to-step change is a paired, low-noise estimate; its standard
  error is recorded with every check. The cap scales with per-class exposure:
  `cap_per_class` x K steps. `plateau_reached` is recorded per model;
* extension: a model that reaches its cap before its rule has fired keeps training in the
  same stack (the others leave as they finish) up to `extension_factor` times its cap budget,
  evaluated on `eval_grid` followed by `extension_grid`, and stops there or where its rule
  fires. The learning-rate schedule, the EMA and each model's (seed, step) batches do not
  depend on where training ends, so the extension only lengthens the run; `extended` marks
  such a run and `cap_step` is then its extended cap. With the defaults (1, ()) no run extends;
* arms read off the same run: (a) `paper` - the authors' preset budget ratios, (b) `equal` -
  `equal_steps` for every model, (d) `exposure` - `equal_steps` x K (the same images per class),
  (c) `plateau` - the evaluated snapshot with the best validation bound, up to the step at
  which the model's rule fired (or its cap). The choice is made on validation images with
  validation noise, which no held-out score uses, so it adds no selection optimism to them;
* scoring, at each arm's step only: per class, the likelihood bound (bits/dim) of every
  held-out test image with noise fixed per image (paired between multi and single models), and
  FCD / KID / class-consistency accuracy of samples drawn with noise seeds that nothing else
  uses; memorisation at arms (b) and (c).

Each seed is one task (its models are trained together); a task checkpoints after every
evaluation and resumes from there.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import shutil
import time
from dataclasses import asdict, dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import torch

from multisource.common.paths import DATA_DIR
from multisource.common.provenance import atomic_write_bytes
from multisource.common.validation import InputError
from multisource.experiments import Experiment, register
from multisource.experiments import edm2_miniature as first
from multisource.image_metrics import class_scores, memorisation_scores
from multisource.images import class_subset, to_model_range
from multisource.models.diffusion.likelihood import nll_bound_bits

NAME = "edm2_converged"
WORK_DIR: Path = DATA_DIR / "cache" / NAME
ARMS = ("paper", "equal", "exposure", "plateau")
_SAMPLE_SEED = 7_000_003     # sampler noise: (seed, class) streams used by nothing else
_HELDOUT_NOISE_SEED = 101    # likelihood noise of held-out images (same for every model)
_VALIDATION_NOISE_SEED = 202


@dataclass(frozen=True)
class Edm2ConvergedConfig:
    """One profile of the converged miniature (every field enters the config hash)."""

    domain: str
    resolution: int
    centre: tuple[int, ...]                 # K-sweep order, anchor first
    k_values: tuple[int, ...]
    n: int                                   # training images per class
    # extra groups at K = len(classes) (similarity contrast), anchor first
    groups: tuple[tuple[str, str, tuple[int, ...]], ...]
    seeds: tuple[int, ...]
    label_dim: int = 10                      # label slots of every model (>= the largest K)
    model_channels: int = 16
    channel_mult: tuple[int, ...] = (1, 2)
    num_blocks: int = 1
    P_mean: float = -0.8
    P_std: float = 1.6
    batch_size: int = 32
    lr_ref: float = 0.02
    t_ref_steps: int = 128
    warmup_steps: int = 32
    lr_decay: str = "multisource"
    ema_std: float = 0.10
    equal_steps: int = 1024
    paper_n: int = 500                       # the preset n our n stands for (arm a)
    eval_grid: tuple[int, ...] = (256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096, 6144,
                                  8192, 12288, 16384, 24576, 32768, 40960)
    cap_per_class: int = 4096
    extension_factor: int = 1                # a run capped before its rule fired goes on to
    extension_grid: tuple[int, ...] = ()     # this many times its cap, evaluated here too
    plateau_tol_bits: float = 0.01
    plateau_factor: float = 1.5
    plateau_patience: int = 2
    plateau_min_steps: int = 512             # no stop before the learning rate has decayed
    nll_sigmas: int = 24
    validation_per_class: int = 150
    heldout_per_class: int = 150
    samples_per_class: int = 100
    num_steps: int = 18
    grid_per_class: int = 8
    threads: int = 1

    @property
    def anchor(self) -> int:
        """The class every compared group contains."""
        return self.centre[0]


SMOKE = Edm2ConvergedConfig(
    domain="digits", resolution=8, centre=(8, 3, 5), k_values=(1, 3), n=30,
    groups=(("far", "low", (8, 0, 1)),), seeds=(0,), label_dim=3, model_channels=8,
    t_ref_steps=4, warmup_steps=2, equal_steps=8, eval_grid=(8, 12, 16, 24, 32, 48),
    cap_per_class=16, plateau_tol_bits=0.05, plateau_min_steps=12, nll_sigmas=6,
    validation_per_class=20, heldout_per_class=20, samples_per_class=16, num_steps=3,
    grid_per_class=2)
BOOK = Edm2ConvergedConfig(
    domain="pool", resolution=8, centre=first.FASHION_CENTRE, k_values=(1, 3, 5, 10), n=100,
    groups=(("cat + digit 1", "low", (6, 12, 21)),), seeds=tuple(range(8)),
    extension_factor=4, extension_grid=(49152, 65536, 81920))
# For one GPU, sized to finish in minutes: the book design with 4 seeds and the same network.
GPU = Edm2ConvergedConfig(**{**asdict(BOOK), "seeds": (100, 101, 102, 103)})
PROFILES = {"smoke": SMOKE, "book": BOOK, "paper": GPU}


# --- design -------------------------------------------------------------------------------------

def compared_groups(config: Edm2ConvergedConfig) -> list[dict[str, Any]]:
    """The comparisons: sweep, setting label, the multi-source model's classes."""
    points = [{"sweep": "K", "setting": str(k), "level": "", "classes": config.centre[:k]}
              for k in config.k_values]
    points += [{"sweep": "similarity", "setting": name, "level": level,
                "classes": tuple(classes)} for name, level, classes in config.groups]
    return points


def design_models(config: Edm2ConvergedConfig) -> list[tuple[int, ...]]:
    """Every model of a seed (classes, in label order): singles first, each once."""
    multis = [tuple(p["classes"]) for p in compared_groups(config) if len(p["classes"]) > 1]
    singles = [(c,) for classes in multis for c in classes] + [(config.anchor,)]
    out: list[tuple[int, ...]] = []
    for item in singles + multis:
        if item not in out:
            out.append(item)
    largest = max(len(m) for m in out)
    if config.label_dim < largest:
        raise InputError(f"label_dim must be at least the largest K ({largest}), got "
                         f"{config.label_dim}")
    return out


def model_key(classes: tuple[int, ...]) -> str:
    """Identifies a model within a seed (its classes in label order)."""
    return " ".join(str(int(c)) for c in classes)


def arm_steps(config: Edm2ConvergedConfig, k: int) -> dict[str, int]:
    """Steps of the fixed-budget arms for a K-class model (each on the evaluation grid)."""
    from multisource.models.diffusion import PAPER_SCHEDULES

    key, ref = (k, config.paper_n), (1, config.paper_n)
    if key not in PAPER_SCHEDULES:
        raise InputError(f"(K, paper_n) must be one of the presets {sorted(PAPER_SCHEDULES)}, "
                         f"got {key}")
    paper = config.equal_steps * PAPER_SCHEDULES[key][0] / PAPER_SCHEDULES[ref][0]
    wanted = {"paper": paper, "equal": config.equal_steps, "exposure": config.equal_steps * k}
    return {arm: _on_grid(config, value) for arm, value in wanted.items()}


def _on_grid(config: Edm2ConvergedConfig, steps: float) -> int:
    """The evaluation-grid step nearest to `steps` in log scale."""
    grid = np.asarray(config.eval_grid, float)
    return int(grid[np.argmin(np.abs(np.log(grid) - math.log(max(steps, 1.0))))])


def cap_steps(config: Edm2ConvergedConfig, k: int) -> int:
    """The largest grid step at or below cap_per_class x K (where the rule must have fired
    for the run to stop without extending)."""
    grid = [s for s in config.eval_grid if s <= config.cap_per_class * k]
    if not grid:
        raise InputError(f"cap_per_class x K = {config.cap_per_class * k} is below the first "
                         f"evaluation step {config.eval_grid[0]}")
    return grid[-1]


def full_grid(config: Edm2ConvergedConfig) -> tuple[int, ...]:
    """Every evaluation step a run can reach: `eval_grid`, then `extension_grid`."""
    steps = config.extension_grid
    if steps and (steps[0] <= max(config.eval_grid)
                  or any(b <= a for a, b in pairwise(steps))):
        raise InputError(f"extension_grid must be increasing steps after the last evaluation "
                         f"step {max(config.eval_grid)}, got {steps}")
    return tuple(config.eval_grid) + tuple(steps)


def extended_cap_steps(config: Edm2ConvergedConfig, k: int) -> int:
    """The largest step of `full_grid` at or below extension_factor x cap_per_class x K: the
    most a K-class run trains (its cap when `extension_factor` is 1)."""
    factor = config.extension_factor
    if not isinstance(factor, int) or isinstance(factor, bool) or factor < 1:
        raise InputError(f"extension_factor must be an integer >= 1, got {factor!r}")
    cap, grid = cap_steps(config, k), full_grid(config)
    if factor == 1:
        return cap
    return max([cap] + [s for s in grid if s <= factor * config.cap_per_class * k])


def plateau_fires(steps: list[int], values: list[float], tol: float, factor: float,
                  patience: int, min_step: int = 0) -> int | None:
    """First evaluated step t where training `factor` times longer improved the best value
    (lower is better) by less than `tol`, held at `patience` evaluations in a row; or None.

    At t: improvement = min(values at steps <= t/factor) - min(values in (t/factor, t]).
    A value that rises (overfitting) gives a negative improvement and so also holds. The rule
    cannot fire before `min_step` (early in training the bound can rise before it falls).
    """
    streak = 0
    for i, t in enumerate(steps):
        early = [v for s, v in zip(steps[:i + 1], values[:i + 1], strict=True) if s <= t / factor]
        late = [v for s, v in zip(steps[:i + 1], values[:i + 1], strict=True) if s > t / factor]
        holds = bool(early and late and min(early) - min(late) < tol)
        streak = streak + 1 if holds else 0
        if streak >= max(patience, 1) and t >= min_step:
            return t
    return None


def tasks(config: Edm2ConvergedConfig) -> list[dict[str, Any]]:
    """The similarity measurement, then one task per seed (all its models train together)."""
    for classes in design_models(config):
        extended_cap_steps(config, len(classes))   # a bad extension rule fails before any work
    return [{"kind": "similarity"}] + [{"kind": "seed", "seed": s} for s in config.seeds]


# --- running --------------------------------------------------------------------------------

def _as_first(config: Edm2ConvergedConfig) -> first.Edm2MiniatureConfig:
    """The first design's config with this one's data fields (to reuse its data helpers)."""
    groups = tuple((f"K{k}", "mixed", config.centre[:k]) for k in config.k_values if k > 1)
    return first.Edm2MiniatureConfig(
        domain=config.domain, resolution=config.resolution, centre=config.centre,
        k_values=config.k_values, k_centre=config.k_values[0], n_values=(config.n,),
        n_centre=config.n, groups=groups + config.groups, seeds=config.seeds, singles="all",
        validation_per_class=config.validation_per_class,
        reference_per_class=config.heldout_per_class,
        samples_per_class=config.samples_per_class)


def _work_dir(config: Edm2ConvergedConfig, task: dict[str, Any]) -> Path:
    from multisource.common.provenance import code_hash

    key = hashlib.sha256(json.dumps({"config": asdict(config), "task": task,
                                     "code": code_hash(__name__)}, sort_keys=True,
                                    default=str).encode()).hexdigest()[:16]
    return WORK_DIR / key


def _hex16(values: np.ndarray) -> str:
    return np.asarray(values, dtype=np.float16).tobytes().hex()


def decode_hex16(text: str) -> np.ndarray:
    """Inverse of the per-image float16 encoding used for held-out bounds."""
    return np.frombuffer(bytes.fromhex(text), dtype=np.float16).astype(np.float64)


@dataclass
class _Model:
    """The bookkeeping of one model of a seed."""

    classes: tuple[int, ...]
    arms: dict[str, int]
    cap: int
    limit: int                       # the extended cap (the cap itself without extension)
    curve_steps: list[int]
    curve_values: list[float]
    extended: bool = False
    stop: int | None = None
    done: bool = False
    scored: tuple[int, ...] = ()
    best_step: int = 0
    best_value: float = math.inf


def _model_setup(config: Edm2ConvergedConfig, data: Any, classes: tuple[int, ...],
                 seed: int) -> dict[str, Any]:
    d = data.domain
    x, y = class_subset(d.train_images, d.train_labels, classes, config.n, seed=seed,
                        exclude=data.validation)
    val_x = np.concatenate([first._validation(data, c) for c in classes])
    val_y = np.concatenate([np.full(len(first._validation(data, c)), i)
                            for i, c in enumerate(classes)])
    return {"images": to_model_range(x), "labels": torch.as_tensor(y),
            "val_images": to_model_range(val_x), "val_labels": torch.as_tensor(val_y)}


def _score_arm(config: Edm2ConvergedConfig, data: Any, model: Any, state: _Model, step: int,
               arms: list[str], seed: int, device: torch.device, cfg1: Any
               ) -> list[dict[str, Any]]:
    """Held-out likelihood bound and sample scores of every class of one model at `step`."""
    d, clf = data.domain, data.classifier
    rows = []
    for label, c in enumerate(state.classes):
        heldout = first._reference(data, cfg1, c)
        bits = nll_bound_bits(model, to_model_range(heldout),
                              torch.full((len(heldout),), label, dtype=torch.long),
                              num_sigmas=config.nll_sigmas, seed=_HELDOUT_NOISE_SEED + c)
        samples = _sample(config, model, label, seed, c, device)
        row = {"kind": "single" if len(state.classes) == 1 else "multi",
               "model": model_key(state.classes), "K": len(state.classes), "n": config.n,
               "seed": seed, "step": step, "class": c, "class_name": d.class_names[c],
               **{f"arm_{a}": a in arms for a in ARMS},
               "nll_bits": float(bits.mean()), "nll_bits_hex": _hex16(bits),
               **class_scores(clf, samples, heldout, c, seed=seed),
               **memorisation_scores(samples, *first._memorisation_sets(d, data, c, config.n,
                                                                         seed)),
               "grid_hex": first.encode_grid(samples[:config.grid_per_class])}
        rows.append(row)
    return rows


def _module(model_config: Any, weights: dict[str, torch.Tensor], device: torch.device) -> Any:
    from multisource.models.diffusion import build_model

    model = build_model(model_config, seed=0).to(device)
    model.load_state_dict(weights)
    return model.eval().requires_grad_(False)


def _mark_plateau_arm(rows: list[dict[str, Any]], state: _Model, step: int) -> None:
    """Arm (c) of a capped model: its scored rows at the cap step."""
    for row in rows:
        if (row.get("model") == model_key(state.classes) and row["kind"] != "curve"
                and row["step"] == step):
            row["arm_plateau"] = True


def _sample(config: Edm2ConvergedConfig, model: Any, label: int, seed: int, c: int,
            device: torch.device) -> np.ndarray:
    from multisource.models.diffusion import sample

    labels = torch.full((config.samples_per_class,), label, dtype=torch.long)
    out = sample(model, labels, num_steps=config.num_steps,
                 seed=_SAMPLE_SEED + 1_009 * seed + c, device=device,
                 batch_size=config.samples_per_class)
    return ((out[:, 0].cpu().numpy() + 1.0) / 2.0).clip(0.0, 1.0)


def _run_seed(config: Edm2ConvergedConfig, task: dict[str, Any], device: torch.device
              ) -> list[dict[str, Any]]:
    from multisource.models.diffusion import DiffusionConfig, TrainConfig
    from multisource.models.diffusion.stacked import StackedTrainer, StackMember

    torch.set_num_threads(config.threads)
    cpu_started = time.process_time()
    seed = int(task["seed"])
    cfg1 = _as_first(config)
    data = first._prepare(cfg1)
    designs = design_models(config)
    setups = [_model_setup(config, data, classes, seed) for classes in designs]
    model_config = DiffusionConfig(
        img_resolution=config.resolution, img_channels=1, label_dim=config.label_dim,
        model_channels=config.model_channels, channel_mult=config.channel_mult,
        num_blocks=config.num_blocks, attn_resolutions=(), P_mean=config.P_mean,
        P_std=config.P_std)
    grid = full_grid(config)
    train_config = TrainConfig(
        batch_size=config.batch_size, total_steps=max(grid), lr_ref=config.lr_ref,
        t_ref_steps=config.t_ref_steps, warmup_steps=config.warmup_steps,
        ema_stds=(config.ema_std,), seed=seed, checkpoint_every=max(grid),
        log_every=max(grid), lr_decay=config.lr_decay)
    members = [StackMember(s["images"], s["labels"], train_config) for s in setups]
    trainer = StackedTrainer(model_config, members, device)
    states = [_Model(classes, arm_steps(config, len(classes)), cap_steps(config, len(classes)),
                     extended_cap_steps(config, len(classes)), [], []) for classes in designs]
    rows: list[dict[str, Any]] = []
    active = list(range(len(designs)))
    loss_sums = np.zeros(len(designs))
    loss_counts = np.zeros(len(designs))
    previous_bits: dict[int, np.ndarray] = {}
    best_weights: dict[int, dict[str, torch.Tensor]] = {}
    seconds_before = 0.0
    folder = _work_dir(config, task)
    checkpoint = folder / "state.pt"
    if checkpoint.exists():
        saved = torch.load(checkpoint, map_location=device, weights_only=False)
        active, states, rows = saved["active"], saved["states"], saved["rows"]
        previous_bits, seconds_before = saved["previous_bits"], saved["seconds"]
        best_weights = saved["best_weights"]
        trainer.keep(active)
        trainer.load_state_dict(saved["trainer"])
    segment_start = time.perf_counter()
    for grid_step in grid:
        if not active:
            break
        if grid_step <= trainer.step_count:
            continue
        while trainer.step_count < grid_step:
            losses = trainer.step().cpu().numpy()
            loss_sums[active] += losses
            loss_counts[active] += 1
        seconds = seconds_before + time.perf_counter() - segment_start
        leaving = []
        for slot, index in enumerate(active):
            state = states[index]
            model = trainer.ema_model(slot)
            bits = nll_bound_bits(model, setups[index]["val_images"],
                                  setups[index]["val_labels"], num_sigmas=config.nll_sigmas,
                                  seed=_VALIDATION_NOISE_SEED)
            state.curve_steps.append(grid_step)
            state.curve_values.append(float(bits.mean()))
            if state.stop is None and float(bits.mean()) < state.best_value:
                state.best_step, state.best_value = grid_step, float(bits.mean())
                best_weights[index] = {k: v.clone() for k, v in model.state_dict().items()}
            before = previous_bits.get(index)
            change_se = (float(np.std(bits - before, ddof=1) / math.sqrt(len(bits)))
                         if before is not None else float("nan"))
            previous_bits[index] = bits
            if state.stop is None:
                state.stop = plateau_fires(state.curve_steps, state.curve_values,
                                           config.plateau_tol_bits, config.plateau_factor,
                                           config.plateau_patience, config.plateau_min_steps)
            rows.append({"kind": "curve", "model": model_key(state.classes),
                         "K": len(state.classes), "n": config.n, "seed": seed,
                         "step": grid_step, "val_nll_bits": float(bits.mean()),
                         "val_change_se": change_se,
                         "loss": float(loss_sums[index] / max(loss_counts[index], 1)),
                         "stack_size": len(active), "stack_train_s": round(seconds, 2)})
            loss_sums[index] = loss_counts[index] = 0
            arms = [a for a, s in state.arms.items() if s == grid_step]
            if arms:
                rows += _score_arm(config, data, model, state, grid_step, arms, seed, device,
                                   cfg1)
                state.scored = (*state.scored, grid_step)
            if state.stop is None and state.cap <= grid_step < state.limit:
                state.cap, state.extended = state.limit, True   # the extension rule
            if state.stop == grid_step or (state.stop is None and grid_step >= state.cap):
                # arm (c): the best validation snapshot up to the stop (or the cap, flagged)
                if state.best_step in state.scored:
                    _mark_plateau_arm(rows, state, state.best_step)
                else:
                    best = _module(model_config, best_weights[index], device)
                    rows += _score_arm(config, data, best, state, state.best_step, ["plateau"],
                                       seed, device, cfg1)
                    state.scored = (*state.scored, state.best_step)
                best_weights.pop(index, None)
                if state.stop is None:
                    state.stop = -1
            if grid_step >= max(state.arms.values()) and state.stop is not None:
                state.done = True
                leaving.append(index)
        if leaving:
            keep = [i for i in active if i not in leaving]
            if keep:
                trainer.keep([active.index(i) for i in keep])
            active = keep
        seconds = seconds_before + time.perf_counter() - segment_start
        folder.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        torch.save({"active": active, "states": states, "rows": rows,
                    "previous_bits": previous_bits, "best_weights": best_weights,
                    "seconds": seconds,
                    "trainer": trainer.state_dict()}, buffer)
        atomic_write_bytes(checkpoint, buffer.getvalue())
    for state in states:
        for row in rows:
            if row.get("model") == model_key(state.classes):
                row.update(stop_step=state.stop, plateau_reached=state.stop > 0,
                           plateau_step=state.best_step, cap_step=state.cap,
                           extended=state.extended)
    wall = seconds_before + time.perf_counter() - segment_start
    cpu = round(time.process_time() - cpu_started, 2)
    for row in rows:
        row.update(task_wall_s=round(wall, 2), task_cpu_s_segment=cpu)
    shutil.rmtree(folder, ignore_errors=True)
    return rows


def run_task(config: Edm2ConvergedConfig, task: dict[str, Any], device: torch.device
             ) -> list[dict[str, Any]]:
    """The similarity measurement, or every model of one seed."""
    if task["kind"] == "similarity":
        return first._similarity_rows(_as_first(config))
    return _run_seed(config, task, device)


register(Experiment(
    name=NAME,
    description="EDM2-style diffusion, converged design: every model to its own plateau on a "
                "likelihood bound, stacked training, K sweep and a similarity contrast, 8 seeds",
    chapter="07_edm2_diffusion",
    profiles=PROFILES,
    tasks=tasks,
    run_task=run_task,
))
