"""Training throughput of the EDM2-style miniature, and where a step's time goes.

Each training step is split into three timed parts, measured in the same process:
  data    - drawing the global batch (indices, noise levels, noise) and gathering images/labels,
  network - forward + backward + Adam step (the uncertainty-weighted EDM2 loss),
  ema     - updating the tracked power-function EMAs.
Reported: images/s, and the shares of the step time, plus the data/network ratio. Shares and
ratios are comparable across machines; absolute images/s depend on the machine and its load.

    python benchmarks/diffusion_throughput.py                    # book + smoke presets, CPU
    python benchmarks/diffusion_throughput.py --device cuda --presets book paper

Writes benchmarks/results/diffusion_throughput.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

from multisource.devices import describe_device, resolve_device
from multisource.models.diffusion import PRESETS, PowerFunctionEMA, build_model, count_parameters
from multisource.models.diffusion.training import learning_rate, make_batch, train_step
from multisource.provenance import atomic_write_text, environment_record, git_commit

RESULTS = Path(__file__).resolve().parent / "results"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(preset: str, device: torch.device, steps: int, warmup: int,
            batch_size: int | None = None, num_images: int = 4096) -> dict:
    """Time `steps` training steps (after `warmup`) of `preset` on `device`."""
    model_config, train_config = PRESETS[preset]
    if batch_size is not None:
        import dataclasses
        train_config = dataclasses.replace(train_config, batch_size=batch_size)
    gen = torch.Generator().manual_seed(0)
    shape = (num_images, model_config.img_channels, model_config.img_resolution,
             model_config.img_resolution)
    images = (torch.rand(shape, generator=gen) * 2 - 1).to(device)
    labels = torch.randint(max(model_config.label_dim, 1), (num_images,), generator=gen).to(device)
    model = build_model(model_config).to(device).train()
    ema = PowerFunctionEMA(model, train_config.ema_stds)
    optimizer = torch.optim.Adam(model.parameters(), lr=train_config.lr_ref,
                                 betas=(train_config.adam_beta1, train_config.adam_beta2))
    parts: dict[str, list[float]] = {"data": [], "network": [], "ema": []}
    for step in range(1, warmup + steps + 1):
        _sync(device)
        t0 = time.perf_counter()
        batch = make_batch(images, labels, step, model_config, train_config)
        _sync(device)
        t1 = time.perf_counter()
        train_step(model, optimizer, batch, learning_rate(step, train_config),
                   model_config.sigma_data)
        _sync(device)
        t2 = time.perf_counter()
        ema.update(model, step)
        _sync(device)
        t3 = time.perf_counter()
        if step > warmup:
            parts["data"].append(t1 - t0)
            parts["network"].append(t2 - t1)
            parts["ema"].append(t3 - t2)
    totals = {k: sum(v) for k, v in parts.items()}
    total = sum(totals.values())
    b = train_config.batch_size
    return {
        "preset": preset,
        "device": describe_device(device),
        "threads": torch.get_num_threads(),
        "parameters": count_parameters(model),
        "image_shape": list(shape[1:]),
        "batch_size": b,
        "steps_timed": steps,
        "images_per_s": round(b * steps / total, 2),
        "median_step_ms": round(1000 * statistics.median(
            d + n + e for d, n, e in zip(parts["data"], parts["network"], parts["ema"],
                                         strict=True)), 3),
        "share_network": round(totals["network"] / total, 4),
        "share_data": round(totals["data"] / total, 4),
        "share_ema": round(totals["ema"] / total, 4),
        "ratio_data_to_network": round(totals["data"] / totals["network"], 5),
    }


def to_markdown(rows: list[dict], meta: dict) -> str:
    """A small markdown report of the measurements."""
    lines = [
        "# Diffusion training throughput (EDM2-style miniature)",
        "",
        f"Measured {meta['created_utc']} at commit `{meta['git_commit']}`; "
        f"load average before the run {meta['load_average']}; torch {meta['torch']}.",
        "Shares are of the summed step time measured in the same process "
        "(network = forward + backward + Adam).",
        "",
        "| preset | device | threads | params | image | batch | images/s | median step ms "
        "| network | data | EMA | data/network |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['preset']} | {r['device']} | {r['threads']} | {r['parameters']:,} | "
            f"{'x'.join(map(str, r['image_shape']))} | {r['batch_size']} | {r['images_per_s']} | "
            f"{r['median_step_ms']} | {r['share_network']:.1%} | {r['share_data']:.1%} | "
            f"{r['share_ema']:.1%} | {r['ratio_data_to_network']:.4f} |")
    lines += ["", f"Command: `{meta['command']}`", ""]
    return "\n".join(lines)


def main() -> None:
    """Parse arguments, measure, write the JSON and markdown reports."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["smoke", "book"],
                        choices=sorted(PRESETS))
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=None,
                        help="CPU thread counts to try (default: torch's default)")
    parser.add_argument("--batch", type=int, default=None, help="override the preset's batch")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    device = resolve_device(args.device)
    load = [round(x, 2) for x in os.getloadavg()]
    rows = []
    threads = args.threads if (args.threads and device.type == "cpu") else [None]
    for preset in args.presets:
        for n in threads:
            if n is not None:
                torch.set_num_threads(n)
            row = measure(preset, device, args.steps, args.warmup, args.batch)
            print(json.dumps(row))
            rows.append(row)
    meta = {"created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "git_commit": git_commit(), "load_average": load,
            "torch": torch.__version__, "environment": environment_record(),
            "command": "python benchmarks/diffusion_throughput.py " + " ".join(
                f"--{k} {' '.join(map(str, v)) if isinstance(v, list) else v}"
                for k, v in vars(args).items() if v is not None and k != "out")}
    stem = "diffusion_throughput" if device.type == "cpu" else f"diffusion_throughput_{device.type}"
    atomic_write_text(args.out / f"{stem}.json",
                      json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    atomic_write_text(args.out / f"{stem}.md", to_markdown(rows, meta))
    print(f"wrote {args.out / stem}.json and .md")


if __name__ == "__main__":
    main()
