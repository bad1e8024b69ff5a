"""Training and sampling speed of the EDM2-style model: the paper preset and the miniature.

For each configuration (`paper`: EDM2-XS on 32x32x4 latents; `miniature`: chapter 7's `book`
model, 8x8x1 with K=5; `smoke`, `book`) and each precision (fp32; bf16 autocast with fp32
master weights) and layout variant (plain; channels-last; torch.compile), in one process:

* images/s over the timed steps, and the median step time split into
  data    - drawing the global batch (indices, noise levels, noise) from data resident on the
            device and gathering images and labels,
  network - forward + backward + Adam step (the uncertainty-weighted EDM2 loss),
  ema     - updating the tracked power-function EMAs;
* model FLOPs per training step, counted from the network with
  `torch.utils.flop_counter.FlopCounterMode` on one forward + backward at the timed batch
  (matrix multiplies, convolutions and attention, 2 FLOPs per multiply-add; elementwise work
  and the optimiser are not counted), hence achieved TFLOP/s = FLOPs / network time;
* the fraction of the device's bf16 peak: on a GPU its dense bf16 datasheet peak (table
  below, or `--peak-tflops`); on a CPU, which has no such figure here, the bf16 and fp32
  matmul rates measured in the same process (a measured ceiling, labelled as such);
* sampling: one denoiser evaluation (forward only, no gradients) per batch, its FLOPs and
  images/s per evaluation (the Heun sampler makes 63 evaluations per image at 32 steps);
* the SD-VAE (diffusers AutoencoderKL with Stable Diffusion v1's architecture: channels
  128/256/512/512, 2 layers per block; random weights, so only its cost is meaningful):
  encode FLOPs per 256x256 image and decode FLOPs per 32x32x4 latent, and their time.

EDM2's published per-GPU training throughput for XS could not be obtained from the sources
available to this project (its README and the CVPR paper's abstract give none), so no
external anchor is printed.

    python benchmarks/diffusion_throughput.py                         # CPU, small step counts
    python benchmarks/diffusion_throughput.py --device cuda --paper-batch 256 --steps 20 \\
        --variants plain channels_last compile

Writes _build/benchmarks/diffusion_throughput[_cuda].{json,md} (gitignored; with the paper
config and the SD-VAE costs also _build/benchmarks/imagenet_costs.md); `--update-results`
writes the committed benchmarks/results/ and book/_generated/imagenet_costs.md instead.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from multisource.common.devices import describe_device, resolve_device
from multisource.common.provenance import atomic_write_text, environment_record, git_commit
from multisource.models.diffusion import PRESETS, PowerFunctionEMA, build_model, count_parameters
from multisource.models.diffusion.device_data import resident
from multisource.models.diffusion.training import learning_rate, make_batch, train_step

RESULTS = Path(__file__).resolve().parent / "results"
COSTS = Path(__file__).resolve().parent.parent / "book" / "_generated" / "imagenet_costs.md"
# Dense (no sparsity) bf16 tensor-core peaks in TFLOP/s from NVIDIA's datasheets: the
# "with sparsity" figure halved. Matched against torch.cuda.get_device_name().
BF16_PEAK_TFLOPS = {"H100 SXM": 989.4, "H100 80GB HBM3": 989.4, "H100 PCIe": 756.0,
                    "H200": 989.4, "A100": 312.0}
VARIANTS = ("plain", "channels_last", "compile")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def configurations(paper_batch: int) -> dict[str, tuple[Any, Any, str]]:
    """name -> (model config, train config, note) at the batch each is timed with."""
    from multisource.experiments.edm2_miniature import PROFILES, _model_configs

    book = PROFILES["book"]
    mini_model, mini_train = _model_configs(book, k=max(book.k_values), seed=0)
    paper_model, paper_train = PRESETS["paper"]
    note = (f"micro-batch {paper_batch} of the authors' global batch 2048 (gradient "
            f"accumulation makes a step of 2048 cost 2048/{paper_batch} micro-steps)")
    return {
        "paper": (paper_model, dataclasses.replace(paper_train, batch_size=paper_batch), note),
        "miniature": (mini_model, mini_train,
                      f"chapter 7's book profile, K={max(book.k_values)}, its batch"),
        "smoke": (*PRESETS["smoke"], "the smoke preset"),
        "book": (*PRESETS["book"], "the book preset"),
    }


def _data(model_config: Any, device: torch.device, n: int = 2048
          ) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    shape = (n, model_config.img_channels, model_config.img_resolution,
             model_config.img_resolution)
    images = torch.rand(shape, generator=gen) * 2 - 1
    labels = torch.randint(max(model_config.label_dim, 1), (n,), generator=gen)
    return resident(images, device), resident(labels, device)


def training_flops(model_config: Any, train_config: Any, device: torch.device) -> int:
    """Counted FLOPs of one forward + backward of the loss at the timed batch."""
    images, labels = _data(model_config, device, n=train_config.batch_size)
    model = build_model(model_config).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    batch = make_batch(images, labels, 1, model_config, train_config)
    counter = FlopCounterMode(display=False)
    with counter:
        train_step(model, optimizer, batch, 1e-4, model_config.sigma_data)
    return int(counter.get_total_flops())


class TrainingRun:
    """One (precision, layout variant) of a configuration: its own model, optimiser, EMA."""

    def __init__(self, model_config: Any, train_config: Any, device: torch.device,
                 precision: str, variant: str) -> None:
        self.model_config, self.train_config, self.device = model_config, train_config, device
        self.precision, self.variant = precision, variant
        self.images, self.labels = _data(model_config, device)
        if variant == "channels_last":
            self.images = self.images.contiguous(memory_format=torch.channels_last)
        self.model = build_model(model_config).to(device).train()
        if variant == "channels_last":
            self.model.to(memory_format=torch.channels_last)
        self.net = torch.compile(self.model) if variant == "compile" else self.model
        self.ema = PowerFunctionEMA(self.model, train_config.ema_stds)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=train_config.lr_ref,
                                          betas=(train_config.adam_beta1,
                                                 train_config.adam_beta2))
        self.autocast = torch.bfloat16 if precision == "bf16" else None
        self.step_count = 0
        self.parts: dict[str, list[float]] = {"data": [], "network": [], "ema": []}
        self.first_step_s = 0.0

    def step(self, timed: bool) -> None:
        """One training step, split into data, network and EMA time."""
        self.step_count += 1
        step, device = self.step_count, self.device
        _sync(device)
        t0 = time.perf_counter()
        batch = make_batch(self.images, self.labels, step, self.model_config, self.train_config)
        _sync(device)
        t1 = time.perf_counter()
        train_step(self.net, self.optimizer, batch, learning_rate(step, self.train_config),
                   self.model_config.sigma_data, None, self.autocast)
        _sync(device)
        t2 = time.perf_counter()
        self.ema.update(self.model, step)
        _sync(device)
        t3 = time.perf_counter()
        if step == 1:
            self.first_step_s = t3 - t0
        if timed:
            self.parts["data"].append(t1 - t0)
            self.parts["network"].append(t2 - t1)
            self.parts["ema"].append(t3 - t2)

    def row(self, name: str, warmup: int) -> dict[str, Any]:
        """The measured row: images/s from the median step, and the median of each part."""
        totals = [d + n + e for d, n, e in zip(*self.parts.values(), strict=True)]
        median = {k: statistics.median(v) for k, v in self.parts.items()}
        b = self.train_config.batch_size
        mc = self.model_config
        return {"config": name, "precision": self.precision, "variant": self.variant,
                "parameters": count_parameters(self.model),
                "shape": [mc.img_channels, mc.img_resolution, mc.img_resolution],
                "batch": b, "steps_timed": len(totals), "warmup": warmup,
                "first_step_s": round(self.first_step_s, 3),
                "images_per_s": round(b / statistics.median(totals), 2),
                "images_per_s_mean": round(b * len(totals) / sum(totals), 2),
                "median_ms": {k: round(1000 * v, 3) for k, v in median.items()},
                "median_network_s": median["network"]}


def measure_training(name: str, model_config: Any, train_config: Any, device: torch.device,
                     precisions: list[str], variants: list[str], steps: int, warmup: int
                     ) -> list[dict[str, Any]]:
    """Time every (precision, variant) of one configuration, their steps interleaved round by
    round, so that a change in the machine's load falls on all of them alike."""
    runs = [TrainingRun(model_config, train_config, device, p, v)
            for p in precisions for v in variants]
    for _ in range(warmup):
        for run in runs:
            run.step(timed=False)
    for _ in range(steps):
        for run in runs:
            run.step(timed=True)
    return [run.row(name, warmup) for run in runs]


def measure_sampling(name: str, model_config: Any, batch: int, device: torch.device,
                     precisions: list[str], repeats: int) -> list[dict[str, Any]]:
    """One denoiser evaluation (forward, no gradients) per batch: FLOPs, time, images/s;
    the precisions alternate evaluation by evaluation."""
    model = build_model(model_config).to(device).eval()
    gen = torch.Generator().manual_seed(1)
    x = resident(torch.randn(batch, model_config.img_channels, model_config.img_resolution,
                             model_config.img_resolution, generator=gen) * 10, device)
    labels = resident(torch.arange(batch) % max(model_config.label_dim, 1), device)
    labels = labels if model_config.label_dim else None
    sigma = torch.full((batch,), 10.0, device=device)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(x, sigma, labels)
    times: dict[str, list[float]] = {p: [] for p in precisions}
    with torch.no_grad():
        for i in range(repeats + 1):
            for precision in precisions:
                autocast = (torch.autocast(device.type, dtype=torch.bfloat16)
                            if precision == "bf16" else contextlib.nullcontext())
                with autocast:
                    _sync(device)
                    t0 = time.perf_counter()
                    model(x, sigma, labels)
                    _sync(device)
                if i:
                    times[precision].append(time.perf_counter() - t0)
    rows = []
    for precision, values in times.items():
        median = statistics.median(values)
        rows.append({"config": name, "precision": precision, "batch": batch,
                     "flops_per_eval": int(counter.get_total_flops()),
                     "median_ms": round(1000 * median, 3),
                     "images_per_s_per_eval": round(batch / median, 2)})
    return rows


def sd_vae_costs(device: torch.device, batch: int = 1, repeats: int = 1) -> dict[str, Any]:
    """FLOPs and time of the SD-VAE architecture: encode 256x256x3, decode 32x32x4 latents."""
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4,
                        block_out_channels=(128, 256, 512, 512), layers_per_block=2,
                        latent_channels=4, norm_num_groups=32, sample_size=256)
    vae = vae.eval().requires_grad_(False).to(device)
    pixels = torch.rand(batch, 3, 256, 256, device=device)
    latents = torch.randn(batch, 4, 32, 32, device=device)
    out: dict[str, Any] = {"batch": batch}
    for name, fn, arg in (("encode", lambda x: vae.encode(x).latent_dist.mean, pixels),
                          ("decode", lambda z: vae.decode(z).sample, latents)):
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            fn(arg)
        times = []
        with torch.no_grad():
            for _ in range(repeats):
                _sync(device)
                t0 = time.perf_counter()
                fn(arg)
                _sync(device)
                times.append(time.perf_counter() - t0)
        out[f"{name}_flops_per_image"] = int(counter.get_total_flops()) // batch
        out[f"{name}_s_per_image"] = round(statistics.median(times) / batch, 4)
    return out


def prepare_cost(n: int = 16, size: tuple[int, int] = (500, 375)) -> dict[str, Any]:
    """Seconds per image of `imagenet prepare`'s read + LANCZOS resize to 256, on JPEGs of
    random noise at `size` (noise decodes no faster than photographs of the same size)."""
    import tempfile

    import numpy as np
    from PIL import Image

    from multisource.images.imagenet import _load_image

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for i in range(n):
            path = Path(folder) / f"{i}.JPEG"
            pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(pixels).save(path, quality=90)
            paths.append(path)
        t0 = time.perf_counter()
        for path in paths:
            _load_image(path, 256, "resize")
        seconds = (time.perf_counter() - t0) / n
    return {"jpeg_size": list(size), "images": n, "s_per_image": round(seconds, 5)}


def matmul_tflops(device: torch.device, dtype: torch.dtype, size: int, repeats: int = 3
                  ) -> float:
    """Measured dense matmul rate (TFLOP/s) at `size` x `size`, in this process."""
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    a @ b
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        _sync(device)
        times.append(time.perf_counter() - t0)
    return 2 * size ** 3 / statistics.median(times) / 1e12


def device_peak(device: torch.device, override: float | None) -> tuple[float | None, str]:
    """(bf16 peak TFLOP/s, where it comes from)."""
    if override is not None:
        return override, "given with --peak-tflops"
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, value in BF16_PEAK_TFLOPS.items():
            if key in name:
                return value, f"NVIDIA datasheet, dense bf16 ({key})"
        return None, f"unknown for {name}: pass --peak-tflops"
    size = 1024
    measured = matmul_tflops(device, torch.bfloat16, size)
    return measured, f"measured bf16 {size}x{size} matmul rate on this CPU (not a datasheet)"


def to_markdown(report: dict[str, Any]) -> str:
    """The markdown table of a report."""
    meta = report["meta"]
    peak, source = meta["bf16_peak_tflops"], meta["bf16_peak_source"]
    lines = [
        "# Diffusion training and sampling speed",
        "",
        f"Device: **{meta['device']}** ({meta['threads']} torch threads); measured "
        f"{meta['created_utc']} at commit `{meta['git_commit']}`; torch {meta['torch']}; "
        f"load average before the run {meta['load_average']}.",
        f"bf16 reference peak: {peak if peak is None else round(peak, 4)} TFLOP/s ({source}); "
        f"fp32 matmul measured at {meta['fp32_matmul_tflops']:.4f} TFLOP/s.",
        "FLOPs are counted with torch's FlopCounterMode (matmul, convolution, attention; "
        "2 per multiply-add; forward + backward for training).",
        "The variants of a configuration run in one process, their steps interleaved round by "
        "round; images/s is the batch over the median step time (the mean-based figure is in "
        "the JSON). The first compiled step includes torch.compile's whole compilation (a "
        "fresh inductor cache) unless the command says --warm-compile-cache.",
        "",
        "## Training",
        "",
        "| config | precision | variant | params | shape | batch | images/s | step ms: network "
        "| data | EMA | GFLOP/step | TFLOP/s | of bf16 peak | first step s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["training"]:
        frac = "n/a" if r["fraction_of_peak"] is None else f"{r['fraction_of_peak']:.1%}"
        m = r["median_ms"]
        lines.append(
            f"| {r['config']} | {r['precision']} | {r['variant']} | {r['parameters']:,} | "
            f"{'x'.join(map(str, r['shape']))} | {r['batch']} | {r['images_per_s']} | "
            f"{m['network']} | {m['data']} | {m['ema']} | {r['flops_per_step'] / 1e9:.2f} | "
            f"{r['achieved_tflops']:.4f} | {frac} | {r['first_step_s']} |")
    lines += ["", "Notes: " + "; ".join(f"{k}: {v}" for k, v in report["notes"].items()), "",
              "## Ratios in the same run", ""]
    for line in report["ratios"]:
        lines.append(f"* {line}")
    lines += ["", "## Sampling (one denoiser evaluation; Heun-32 makes 63 per image)", "",
              "| config | precision | batch | GFLOP/eval/image | ms/eval | images/s per eval |",
              "|---|---|---|---|---|---|"]
    for r in report["sampling"]:
        lines.append(f"| {r['config']} | {r['precision']} | {r['batch']} | "
                     f"{r['flops_per_eval'] / r['batch'] / 1e9:.3f} | {r['median_ms']} | "
                     f"{r['images_per_s_per_eval']} |")
    if report.get("sd_vae"):
        v = report["sd_vae"]
        lines += ["", "## SD-VAE architecture (random weights; cost only)", "",
                  f"encode 256x256: {v['encode_flops_per_image'] / 1e9:.1f} GFLOP/image, "
                  f"{v['encode_s_per_image']} s/image; decode 32x32x4: "
                  f"{v['decode_flops_per_image'] / 1e9:.1f} GFLOP/image, "
                  f"{v['decode_s_per_image']} s/image (batch {v['batch']})."]
    if report.get("prepare"):
        pr = report["prepare"]
        lines += ["", f"Prepare (read a {pr['jpeg_size'][0]}x{pr['jpeg_size'][1]} JPEG, LANCZOS "
                      f"resize to 256): {pr['s_per_image']} s/image on the CPU."]
    lines += ["", f"EDM2 anchor: {report['anchor']}", "", f"Command: `{meta['command']}`", ""]
    return "\n".join(lines)


def _ratios(rows: list[dict[str, Any]]) -> list[str]:
    out = []
    base = {(r["config"], r["variant"]): r for r in rows if r["precision"] == "fp32"}
    for r in rows:
        key = (r["config"], r["variant"])
        if r["precision"] == "bf16" and key in base:
            out.append(f"{r['config']} {r['variant']}: bf16/fp32 images/s = "
                       f"{r['images_per_s'] / base[key]['images_per_s']:.3f}")
    plain = {(r["config"], r["precision"]): r for r in rows if r["variant"] == "plain"}
    for r in rows:
        key = (r["config"], r["precision"])
        if r["variant"] != "plain" and key in plain:
            out.append(f"{r['config']} {r['precision']}: {r['variant']}/plain images/s = "
                       f"{r['images_per_s'] / plain[key]['images_per_s']:.3f}")
    return out


def _command_line(args: argparse.Namespace) -> str:
    parts = ["python benchmarks/diffusion_throughput.py"]
    for key, value in vars(args).items():
        if value in (None, False) or key in ("out", "costs_out"):
            continue
        flag = f"--{key.replace('_', '-')}"
        if value is True:
            parts.append(flag)
        else:
            shown = " ".join(map(str, value)) if isinstance(value, list) else value
            parts.append(f"{flag} {shown}")
    return " ".join(parts)


def main() -> None:
    """Parse arguments, measure, write the JSON and markdown reports."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["miniature", "paper"],
                        choices=["paper", "miniature", "smoke", "book"])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"],
                        choices=["fp32", "bf16"])
    parser.add_argument("--variants", nargs="+", default=["plain"], choices=VARIANTS)
    parser.add_argument("--paper-variants", nargs="+", default=None, choices=VARIANTS,
                        help="variants for the paper config (default: --variants)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--paper-steps", type=int, default=None,
                        help="timed steps for the paper config (default: --steps)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--paper-batch", type=int, default=8,
                        help="micro-batch of the paper config (the authors' global batch is "
                             "2048)")
    parser.add_argument("--sampling-repeats", type=int, default=3,
                        help="timed denoiser evaluations per precision")
    parser.add_argument("--sampling-batch", type=int, default=None,
                        help="batch for the sampling rows (default: each config's batch)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="the device's dense bf16 peak, if not in the table")
    parser.add_argument("--no-vae", action="store_true", help="skip the SD-VAE costs")
    parser.add_argument("--warm-compile-cache", action="store_true",
                        help="reuse inductor's on-disk cache (default: a fresh one, so the "
                             "first compiled step shows the whole compilation)")
    parser.add_argument("--out", type=Path, default=None,
                        help="report folder (default: _build/benchmarks)")
    parser.add_argument("--costs-out", type=Path, default=None,
                        help="where the full-sweep cost table goes (needs the paper config "
                             "and the SD-VAE costs; default: _build/benchmarks)")
    parser.add_argument("--update-results", action="store_true",
                        help="write the committed benchmarks/results/ and "
                             "book/_generated/imagenet_costs.md")
    parser.add_argument("--costs-from", type=Path, default=None,
                        help="only rewrite the cost tables from this stored report")
    args = parser.parse_args()
    scratch = Path(__file__).resolve().parents[1] / "_build" / "benchmarks"
    if args.out is None:
        args.out = RESULTS if args.update_results else scratch
    if args.costs_out is None:
        args.costs_out = COSTS if args.update_results else scratch / COSTS.name
    if args.costs_from is not None:
        write_costs(args.costs_from, args.costs_out)
        return
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if not args.warm_compile_cache:   # first compiled step = the full compilation cost
        import tempfile

        cache = tempfile.TemporaryDirectory(prefix="inductor-")
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache.name
    device = resolve_device(args.device)
    commit = git_commit()   # the code that runs: taken before anything can change the tree
    load = [round(x, 2) for x in os.getloadavg()]
    peak, peak_source = device_peak(device, args.peak_tflops)
    configs = configurations(args.paper_batch)
    rows, sampling, notes = [], [], {}
    for name in args.configs:
        model_config, train_config, notes[name] = configs[name]
        flops = training_flops(model_config, train_config, device)
        variants = (args.paper_variants or args.variants) if name == "paper" else args.variants
        steps = args.paper_steps if (name == "paper" and args.paper_steps) else args.steps
        for row in measure_training(name, model_config, train_config, device, args.precisions,
                                    variants, steps, args.warmup):
            row["flops_per_step"] = flops
            row["achieved_tflops"] = flops / row.pop("median_network_s") / 1e12
            row["fraction_of_peak"] = None if peak is None else row["achieved_tflops"] / peak
            print(json.dumps(row), flush=True)
            rows.append(row)
        for row in measure_sampling(name, model_config, args.sampling_batch or
                                    train_config.batch_size, device, args.precisions,
                                    repeats=args.sampling_repeats):
            print(json.dumps(row), flush=True)
            sampling.append(row)
    vae = None if args.no_vae else sd_vae_costs(device)
    if vae:
        print(json.dumps(vae), flush=True)
    prepare = prepare_cost()
    print(json.dumps(prepare), flush=True)
    meta = {"created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "git_commit": commit, "load_average": load, "torch": torch.__version__,
            "device": describe_device(device), "threads": torch.get_num_threads(),
            "bf16_peak_tflops": peak, "bf16_peak_source": peak_source,
            "fp32_matmul_tflops": matmul_tflops(device, torch.float32, 1024),
            "environment": environment_record(),
            "command": _command_line(args)}
    report = {"meta": meta, "training": rows, "sampling": sampling, "sd_vae": vae,
              "prepare": prepare,
              "notes": notes, "ratios": _ratios(rows),
              "anchor": "EDM2's published XS training throughput per GPU could not be "
                        "obtained (not in its README; the paper's tables were not available "
                        "to this project); no anchor is compared."}
    stem = "diffusion_throughput" if device.type == "cpu" else f"diffusion_throughput_{device.type}"
    atomic_write_text(args.out / f"{stem}.json", json.dumps(report, indent=2) + "\n")
    atomic_write_text(args.out / f"{stem}.md", to_markdown(report))
    print(f"wrote {args.out / stem}.json and .md")
    if vae and any(r["config"] == "paper" and r["precision"] == "fp32" and
                   r["variant"] == "plain" for r in rows):
        write_costs(args.out / f"{stem}.json", args.costs_out)


def gpu_reports(folder: Path = RESULTS) -> list[tuple[dict[str, Any], str]]:
    """The stored GPU benchmark reports (`diffusion_throughput_cuda*.json`), with their paths."""
    return [(json.loads(p.read_text()), f"benchmarks/results/{p.name}")
            for p in sorted(folder.glob("diffusion_throughput_cuda*.json"))]


def write_costs(report_path: Path, out: Path) -> None:
    """Write the book's cost tables from a stored report and the stored GPU reports (no new
    measurement)."""
    from multisource.images.protocol_costs import costs_markdown

    report = json.loads(report_path.read_text())
    source = f"benchmarks/results/{report_path.name}"
    atomic_write_text(out, costs_markdown(report, source, gpu_reports()))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
