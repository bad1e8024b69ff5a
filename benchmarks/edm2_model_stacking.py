"""Would training several miniature models at once pay on one CPU thread? An upper bound.

Stacking M small models (vmap, or grouped convolutions) runs each layer once on M models' data
instead of M times. Its best case is one model at an M-times larger batch: the same data per
layer call, without the M-fold weights. This script times, in this process, optimiser steps of
the chapter-7 network at batch B (the baseline, run M times) and at batch M x B, and reports
    bound = M * t(B) / t(M B),
the most that stacking could speed up training. A bound near 1 means stacking cannot pay.

    python benchmarks/edm2_model_stacking.py [--batch 32] [--models 2 4 8] [--steps 30]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from multisource.common.paths import REPO_ROOT
from multisource.common.provenance import atomic_write_text, environment_record
from multisource.experiments.edm2_miniature import PROFILES
from multisource.models.diffusion import DiffusionConfig, TrainConfig, build_model
from multisource.models.diffusion.training import make_batch, train_step


def seconds_per_step(batch: int, steps: int, label_dim: int = 3) -> float:
    """CPU seconds of one optimiser step of the book profile's network at `batch`."""
    book = PROFILES["book"]
    config = DiffusionConfig(img_resolution=book.resolution, img_channels=1,
                             label_dim=label_dim, model_channels=book.model_channels,
                             channel_mult=book.channel_mult, num_blocks=book.num_blocks)
    train_config = TrainConfig(batch_size=batch)
    model = build_model(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01, betas=(0.9, 0.99))
    images = torch.rand(512, 1, book.resolution, book.resolution) * 2 - 1
    labels = torch.randint(0, label_dim, (512,))
    for step in range(1, 4):   # warm-up
        train_step(model, optimizer, make_batch(images, labels, step, config, train_config),
                   0.01, 0.5)
    started = time.process_time()
    for step in range(4, 4 + steps):
        train_step(model, optimizer, make_batch(images, labels, step, config, train_config),
                   0.01, 0.5)
    return (time.process_time() - started) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=PROFILES["book"].batch_size)
    parser.add_argument("--models", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(1)
    base = seconds_per_step(args.batch, args.steps)
    rows = []
    for m in args.models:
        stacked = seconds_per_step(m * args.batch, args.steps)
        rows.append({"models": m, "batch": args.batch, "baseline_s_per_step": round(base, 5),
                     "stacked_proxy_s_per_step": round(stacked, 5),
                     "speedup_bound": round(m * base / stacked, 2)})
        print(f"M={m}: {m} x {base * 1e3:.1f} ms vs {stacked * 1e3:.1f} ms at batch "
              f"{m * args.batch}: stacking could speed training up by at most "
              f"{m * base / stacked:.2f}x")
    out = REPO_ROOT / "benchmarks" / "results" / "edm2_model_stacking.json"
    atomic_write_text(out, json.dumps({"rows": rows, "environment": environment_record()},
                                      indent=2) + "\n")


if __name__ == "__main__":
    main()
