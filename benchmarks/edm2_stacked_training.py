"""Stacked training of chapter 7's miniature models against training them one by one.

In one process, for each stack size M, this times optimiser steps of M models of the
`edm2_converged` book network (batch 32 each) two ways, in alternating blocks so that load
from other processes hits both alike:
  * separate: for every step, each model's own `train_step` and EMA update (what `train` does);
  * stacked:  one `StackedTrainer.step()` for all M (one vmapped forward and backward).
It reports milliseconds per model-step (median over blocks) and the speed-up separate/stacked.
Results go to _build/benchmarks/ unless --update-results writes benchmarks/results/.

    python benchmarks/edm2_stacked_training.py [--models 1 4 8 16] [--steps 10] [--blocks 5]
        [--device cpu|cuda] [--threads 1] [--update-results]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from multisource.common.paths import BUILD_DIR, REPO_ROOT
from multisource.common.provenance import atomic_write_text, environment_record
from multisource.experiments.edm2_converged import BOOK
from multisource.models.diffusion import DiffusionConfig, PowerFunctionEMA, TrainConfig, build_model
from multisource.models.diffusion.stacked import StackedTrainer, StackMember
from multisource.models.diffusion.training import learning_rate, make_batch, train_step


def _configs(seed: int) -> tuple[DiffusionConfig, TrainConfig]:
    model = DiffusionConfig(img_resolution=BOOK.resolution, img_channels=1,
                            label_dim=BOOK.label_dim, model_channels=BOOK.model_channels,
                            channel_mult=BOOK.channel_mult, num_blocks=BOOK.num_blocks,
                            attn_resolutions=())
    train = TrainConfig(batch_size=BOOK.batch_size, total_steps=10 ** 6, lr_ref=BOOK.lr_ref,
                        t_ref_steps=BOOK.t_ref_steps, warmup_steps=BOOK.warmup_steps,
                        ema_stds=(BOOK.ema_std,), seed=seed, lr_decay=BOOK.lr_decay)
    return model, train


def _data(m: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(m)
    images = torch.rand(300, 1, BOOK.resolution, BOOK.resolution, generator=gen) * 2 - 1
    return images.to(device), torch.randint(0, 3, (300,), generator=gen).to(device)


class _Separate:
    """M models trained one after the other at every step, as `train` would."""

    def __init__(self, count: int, device: torch.device) -> None:
        self.items = []
        for m in range(count):
            model_config, train_config = _configs(m)
            model = build_model(model_config, seed=m).to(device).train()
            optimizer = torch.optim.Adam(model.parameters(), lr=train_config.lr_ref,
                                         betas=(train_config.adam_beta1,
                                                train_config.adam_beta2))
            ema = PowerFunctionEMA(model, train_config.ema_stds)
            self.items.append((model, optimizer, ema, model_config, train_config,
                               *_data(m, device)))
        self.step_count = 0

    def step(self) -> None:
        self.step_count += 1
        for model, optimizer, ema, model_config, train_config, images, labels in self.items:
            batch = make_batch(images, labels, self.step_count, model_config, train_config)
            train_step(model, optimizer, batch, learning_rate(self.step_count, train_config),
                       model_config.sigma_data)
            ema.update(model, self.step_count)


def _stacked(count: int, device: torch.device) -> StackedTrainer:
    model_config, _ = _configs(0)
    members = [StackMember(*_data(m, device), _configs(m)[1]) for m in range(count)]
    return StackedTrainer(model_config, members, device)


def _time(runner, steps: int, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        runner.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--blocks", type=int, default=5)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--update-results", action="store_true",
                        help="write benchmarks/results/ instead of _build/benchmarks/")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    results = []
    for count in args.models:
        separate, stacked = _Separate(count, device), _stacked(count, device)
        separate.step()
        stacked.step()   # warm-up
        times: dict[str, list[float]] = {"separate": [], "stacked": []}
        for _ in range(args.blocks):
            times["separate"].append(_time(separate, args.steps, device) / count)
            times["stacked"].append(_time(stacked, args.steps, device) / count)
        row = {"models": count,
               "separate_ms_per_model_step": 1e3 * statistics.median(times["separate"]),
               "stacked_ms_per_model_step": 1e3 * statistics.median(times["stacked"])}
        row["speedup"] = row["separate_ms_per_model_step"] / row["stacked_ms_per_model_step"]
        results.append(row)
        print(f"M={count:3d}  separate {row['separate_ms_per_model_step']:7.2f} ms  "
              f"stacked {row['stacked_ms_per_model_step']:7.2f} ms per model-step  "
              f"x{row['speedup']:.2f}", flush=True)
    results_dir = REPO_ROOT / "benchmarks" / "results"
    folder = results_dir if args.update_results else BUILD_DIR / "benchmarks"
    folder.mkdir(parents=True, exist_ok=True)
    name = f"edm2_stacked_training{'_cuda' if device.type == 'cuda' else ''}.json"
    record = {"benchmark": "edm2_stacked_training", "device": args.device,
              "threads": args.threads, "steps_per_block": args.steps, "blocks": args.blocks,
              "batch_per_model": BOOK.batch_size, "results": results,
              "environment": environment_record(), "command": "python benchmarks/"
              "edm2_stacked_training.py " + " ".join(
                  f"--{k} {' '.join(map(str, v)) if isinstance(v, list) else v}"
                  for k, v in vars(args).items() if k != "update_results" and v is not None)}
    atomic_write_text(folder / name, json.dumps(record, indent=2) + "\n")
    print(f"wrote {(folder / name).relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    main()
