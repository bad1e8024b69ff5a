"""Command line for training the EDM2-style denoiser, in one process or under torchrun.

    python -m multisource.models.diffusion.train_cli --preset smoke --data digits --out runs/x
    torchrun --standalone --nproc_per_node=2 -m multisource.models.diffusion.train_cli \\
        --preset smoke --data digits --out runs/x

`--data` is `digits` (scikit-learn's 8x8 digits scaled to [-1, 1]) or a `.npz`/`.pt` file with
`images` [N, C, H, W] float in [-1, 1] (any finite values with `--latents`) and `labels` [N]
integers >= 0. Rerunning with the same arguments resumes from the checkpoint in `--out`; a
finished run returns at once. Every argument, the data and an existing checkpoint are checked
before any training: a problem is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import pickle
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from multisource.common.devices import DEVICE_CHOICES, resolve_device
from multisource.common.validation import (
    InputError,
    OneLineArgumentParser,
    check_int,
    check_output_path,
)
from multisource.models.diffusion.config import PRECISIONS, PRESETS
from multisource.models.diffusion.training import CHECKPOINT, TrainResult, load_result, train

_LOAD_ERRORS = (RuntimeError, EOFError, ValueError, KeyError, TypeError, pickle.UnpicklingError,
                zipfile.BadZipFile, OSError, AttributeError)


def load_digits_tensors() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 1,797 8x8 digits as ([N, 1, 8, 8] in [-1, 1], labels [N])."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32)[:, None] / 8.0 - 1.0
    return images, torch.tensor(digits.target, dtype=torch.long)


def _read_arrays(path: Path) -> dict[str, object]:
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as npz:
                return {k: torch.from_numpy(npz[k]) for k in ("images", "labels")
                        if k in npz.files}
        except _LOAD_ERRORS as error:
            raise InputError(f"data {path} is not a readable .npz ({type(error).__name__})"
                             ) from None
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except _LOAD_ERRORS as error:
        raise InputError(f"data {path} is not a readable .pt file of tensors "
                         f"({type(error).__name__})") from None
    if not isinstance(data, dict):
        raise InputError(f"data {path} must hold a dict with images and labels, got "
                         f"{type(data).__name__}")
    return data


def load_data(spec: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and labels from `digits`, an `.npz` or a `.pt` file (keys images, labels)."""
    if spec == "digits":
        return load_digits_tensors()
    path = Path(spec)
    if not spec.strip() or not path.is_file():
        raise InputError(f"data must be 'digits' or an existing .npz/.pt file, got {spec!r}")
    if path.suffix not in (".npz", ".pt"):
        raise InputError(f"data must be 'digits', a .npz or a .pt file, got {spec!r}")
    data = _read_arrays(path)
    images, labels = data.get("images"), data.get("labels")
    if not isinstance(images, torch.Tensor) or not isinstance(labels, torch.Tensor):
        raise InputError(f"data {spec} must hold tensors 'images' [N, C, H, W] and 'labels' [N]")
    if images.ndim != 4 or images.shape[0] < 1 or not (images.is_floating_point() or
                                                       images.dtype == torch.uint8):
        raise InputError(f"data images must be float [N, C, H, W], got {images.dtype} "
                         f"{list(images.shape)}")
    if images.shape[-1] != images.shape[-2]:
        raise InputError(f"data images must be square, got {list(images.shape)}")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0] or labels.is_floating_point():
        raise InputError(f"data labels must be {images.shape[0]} integers, got {labels.dtype} "
                         f"{list(labels.shape)}")
    if int(labels.min()) < 0:
        raise InputError(f"data labels must be class indices >= 0, got {int(labels.min())}")
    return images.float(), labels.long()


def check_checkpoint(out_dir: Path) -> None:
    """InputError when `out_dir` holds a checkpoint that cannot be read (e.g. truncated)."""
    path = Path(out_dir) / CHECKPOINT
    if not path.exists():
        return
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        missing = [k for k in ("configs", "step", "model", "ema", "optimizer") if k not in state]
        if missing:
            raise KeyError(", ".join(missing))
    except _LOAD_ERRORS as error:
        raise InputError(f"{path} is damaged ({type(error).__name__}); delete it to start "
                         f"afresh or choose another output folder") from None


def load_checkpointed_run(run_dir: Path, device: torch.device) -> TrainResult:
    """`load_result`, with a one-line InputError for a missing or damaged checkpoint."""
    path = Path(run_dir) / CHECKPOINT
    if not path.is_file():
        raise InputError(f"run folder {run_dir} holds no {CHECKPOINT}")
    try:
        return load_result(Path(run_dir), device)
    except _LOAD_ERRORS as error:
        raise InputError(f"{path} is damaged ({type(error).__name__}); retrain or restore "
                         f"it") from None


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (also used by `multisource diffusion train`)."""
    p = OneLineArgumentParser(prog="multisource diffusion train",
                              description="Train an EDM2-style class-conditional denoiser.")
    p.add_argument("--preset", choices=sorted(PRESETS), default="smoke")
    p.add_argument("--data", default="digits", help="'digits' or a .npz/.pt file")
    p.add_argument("--out", required=True, help="output folder (resumes from it)")
    p.add_argument("--device", choices=DEVICE_CHOICES, default="auto")
    p.add_argument("--steps", type=int, default=None, help="override total_steps")
    p.add_argument("--batch", type=int, default=None, help="override the global batch size")
    p.add_argument("--seed", type=int, default=None, help="override the seed (>= 0)")
    p.add_argument("--label-dim", type=int, default=None, help="override label_dim")
    p.add_argument("--batch-per-device", type=int, default=None,
                   help="micro-batch per device (gradient accumulation)")
    p.add_argument("--checkpoint-every", type=int, default=None,
                   help="override checkpoint_every (steps)")
    p.add_argument("--precision", choices=PRECISIONS, default=None,
                   help="fp32, or bf16 autocast with fp32 master weights")
    p.add_argument("--compile", action="store_true", help="torch.compile the network")
    p.add_argument("--channels-last", action="store_true", help="channels-last memory format")
    p.add_argument("--latents", action="store_true",
                   help="data are latents: any finite values, no [-1, 1] check")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads per process")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _checked_overrides(args: argparse.Namespace) -> dict[str, object]:
    checks = {"total_steps": ("--steps", args.steps, 1, 100_000_000),
              "batch_size": ("--batch", args.batch, 1, 1_000_000),
              "seed": ("--seed", args.seed, 0, 2 ** 62),
              "batch_per_device": ("--batch-per-device", args.batch_per_device, 1, 1_000_000),
              "checkpoint_every": ("--checkpoint-every", args.checkpoint_every, 1, 100_000_000)}
    overrides: dict[str, object] = {}
    for field, (name, value, minimum, maximum) in checks.items():
        if value is not None:
            overrides[field] = check_int(name, value, minimum=minimum, maximum=maximum)
    if args.precision is not None:
        overrides["precision"] = args.precision
    return overrides


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, train, and print where the outputs are. Returns an exit code."""
    args = build_parser().parse_args(argv)
    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING,
                        format="%(asctime)s %(name)s %(message)s")
    try:
        result = _train_from_args(args)
    except InputError as err:
        print(f"multisource: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    except OSError as err:
        where = f": {err.filename}" if err.filename else ""
        print(f"multisource: error: {err.strerror or type(err).__name__}{where}",
              file=sys.stderr)
        return 2
    if rank == 0:
        last = result.log.iloc[-1] if len(result.log) else None
        loss = f", final loss {last['loss']:.4f}" if last is not None else ""
        print(f"trained {result.steps_done} steps{loss}; outputs in {args.out}")
    return 0


def _train_from_args(args: argparse.Namespace) -> TrainResult:
    from multisource.models.diffusion.device_data import resident, training_device

    out = check_output_path("--out", args.out, kind="dir")
    overrides = _checked_overrides(args)
    if args.threads is not None:
        torch.set_num_threads(check_int("--threads", args.threads, minimum=1, maximum=1024))
    if args.label_dim is not None:
        check_int("--label-dim", args.label_dim, minimum=0, maximum=100_000)
    device = resolve_device(args.device)
    model_config, train_config = PRESETS[args.preset]
    train_config = dataclasses.replace(train_config, **overrides)
    images, labels = load_data(args.data)
    label_dim = args.label_dim if args.label_dim is not None else int(labels.max()) + 1
    model_config = dataclasses.replace(
        model_config, img_channels=images.shape[1], img_resolution=images.shape[-1],
        label_dim=label_dim)
    check_checkpoint(out)
    device = training_device(device)
    return train(model_config, train_config, resident(images, device), resident(labels, device),
                 out, device, progress=not args.no_progress,
                 value_range=None if args.latents else (-1.0, 1.0),
                 channels_last=args.channels_last, compile_model=args.compile)


if __name__ == "__main__":
    raise SystemExit(main())
