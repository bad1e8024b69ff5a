"""Command line for training the EDM2-style denoiser, in one process or under torchrun.

    python -m multisource.models.diffusion.train_cli --preset smoke --data digits --out runs/x
    torchrun --standalone --nproc_per_node=2 -m multisource.models.diffusion.train_cli \\
        --preset smoke --data digits --out runs/x

`--data` is `digits` (scikit-learn's 8x8 digits scaled to [-1, 1]) or a `.npz`/`.pt` file with
`images` [N, C, H, W] float in [-1, 1] and `labels` [N] integers. Rerunning with the same
arguments resumes from the checkpoint in `--out`; a finished run returns at once.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from multisource.devices import DEVICE_CHOICES, resolve_device
from multisource.models.diffusion.config import PRESETS
from multisource.models.diffusion.training import train
from multisource.validation import InputError, OneLineArgumentParser


def load_digits_tensors() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 1,797 8x8 digits as ([N, 1, 8, 8] in [-1, 1], labels [N])."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32)[:, None] / 8.0 - 1.0
    return images, torch.tensor(digits.target, dtype=torch.long)


def load_data(spec: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and labels from `digits`, an `.npz` or a `.pt` file (keys images, labels)."""
    if spec == "digits":
        return load_digits_tensors()
    path = Path(spec)
    if not path.exists():
        raise InputError(f"data must be 'digits' or an existing .npz/.pt file, got {spec!r}")
    if path.suffix == ".npz":
        with np.load(path) as npz:
            data = {k: torch.from_numpy(npz[k]) for k in ("images", "labels")}
    elif path.suffix == ".pt":
        data = torch.load(path, map_location="cpu", weights_only=True)
    else:
        raise InputError(f"data must be 'digits', a .npz or a .pt file, got {spec!r}")
    return data["images"].float(), data["labels"].long()


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (also used by `multisource diffusion train`)."""
    p = OneLineArgumentParser(prog="multisource diffusion train",
                                description="Train an EDM2-style class-conditional denoiser.")
    p.add_argument("--preset", choices=sorted(PRESETS), default="smoke")
    p.add_argument("--data", default="digits", help="'digits' or a .npz/.pt file")
    p.add_argument("--out", required=True, type=Path, help="output folder (resumes from it)")
    p.add_argument("--device", choices=DEVICE_CHOICES, default="auto")
    p.add_argument("--steps", type=int, default=None, help="override total_steps")
    p.add_argument("--batch", type=int, default=None, help="override the global batch size")
    p.add_argument("--seed", type=int, default=None, help="override the seed")
    p.add_argument("--label-dim", type=int, default=None, help="override label_dim")
    p.add_argument("--batch-per-device", type=int, default=None,
                   help="micro-batch per device (gradient accumulation)")
    p.add_argument("--checkpoint-every", type=int, default=None,
                   help="override checkpoint_every (steps)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads per process")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, train, and print where the outputs are. Returns an exit code."""
    args = build_parser().parse_args(argv)
    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING,
                        format="%(asctime)s %(name)s %(message)s")
    try:
        model_config, train_config = PRESETS[args.preset]
        overrides = {k: v for k, v in {"total_steps": args.steps, "batch_size": args.batch,
                                       "seed": args.seed,
                                       "batch_per_device": args.batch_per_device,
                                       "checkpoint_every": args.checkpoint_every}.items()
                     if v is not None}
        if args.threads is not None:
            torch.set_num_threads(max(1, args.threads))
        train_config = dataclasses.replace(train_config, **overrides)
        images, labels = load_data(args.data)
        label_dim = args.label_dim if args.label_dim is not None else int(labels.max()) + 1
        model_config = dataclasses.replace(
            model_config, img_channels=images.shape[1], img_resolution=images.shape[-1],
            label_dim=label_dim)
        result = train(model_config, train_config, images, labels, args.out,
                       resolve_device(args.device), progress=not args.no_progress)
    except InputError as err:
        print(f"multisource: error: {err}", file=sys.stderr)
        return 2
    if rank == 0:
        last = result.log.iloc[-1] if len(result.log) else None
        loss = f", final loss {last['loss']:.4f}" if last is not None else ""
        print(f"trained {result.steps_done} steps{loss}; outputs in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
