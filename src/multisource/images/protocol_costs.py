"""What the paper's full ImageNet sweep costs: models, images, FLOPs, and time at a given rate.

The sweep is the 2 x 2 x 2 design of the secondary summary [SEC]: two similarity levels,
K in {3, 10}, n in {500, 1000} images per class; each configuration has one K-class
(multi-source) model and K single-class models, evaluated on 5,000 samples per class. Every
level's class list is the anchor 171 plus 9 classes found in no other list, so two levels give
19 distinct classes and 19 single-class models per n, whichever two levels are used; the
3-class models use the first three classes of their level. Training lengths are the authors'
presets ([CODE]); the `-nlr` variant of the 10-class, 1000-image model is not counted.

Costs per image come from `benchmarks/diffusion_throughput.py`: model FLOPs counted from the
network, and seconds per image measured on the benchmark's device. Times on another device are
FLOPs divided by an ASSUMED sustained rate, reported as such.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from multisource.images.imagenet import CLASS_LISTS, PRESETS, SAMPLING, preset_name

SWEEP_K = (3, 10)              # [SEC]
SWEEP_N = (500, 1000)          # [SEC]
SWEEP_LEVELS = 2               # [SEC]: two of the three lists; which two is unknown
REFERENCE_IMAGES_PER_CLASS = 1300   # [CODE] the per-class FID references (~1,300 images)
HEUN_EVALS = 2 * SAMPLING["num_steps"] - 1


@dataclass(frozen=True)
class SweepCounts:
    """How much work the full sweep is."""

    multi_models: int
    single_models: int
    training_images: int           # summed over all models (the presets' durations)
    sampled_images: int            # 5,000 per class per model
    encoded_images: int            # distinct training images through the VAE encoder
    reference_images: int          # distinct FID reference images through Inception


def sweep_counts(levels: tuple[str, ...] = ("sim1", "sim3")) -> SweepCounts:
    """Count models and images of the 2 x 2 x 2 sweep at two similarity levels."""
    if len(levels) != SWEEP_LEVELS:
        raise ValueError(f"the sweep has {SWEEP_LEVELS} levels, got {levels}")
    classes = sorted({c[0] for level in levels for c in CLASS_LISTS[level][:max(SWEEP_K)]})
    multi = [(k, n) for _ in levels for k in SWEEP_K for n in SWEEP_N]
    single = [(c, n) for c in classes for n in SWEEP_N]
    training = sum(PRESETS[preset_name(k, n)][0] for k, n in multi)
    training += sum(PRESETS[preset_name(1, n)][0] for _, n in single)
    per_class = SAMPLING["samples_per_class"]
    sampled = per_class * (sum(k for k, _ in multi) + len(single))
    return SweepCounts(len(multi), len(single), training, sampled,
                       encoded_images=len(classes) * max(SWEEP_N),
                       reference_images=len(classes) * REFERENCE_IMAGES_PER_CLASS)


def prepared_images(counts: SweepCounts) -> int:
    """Images read and resized by `imagenet prepare`: the largest training subset of each class
    (the smaller one is nested in it) and every reference image."""
    return counts.encoded_images + counts.reference_images


def sweep_work(counts: SweepCounts, benchmark: dict[str, Any]) -> dict[str, dict[str, float]]:
    """FLOPs and measured-device seconds of each stage, from a benchmark report."""
    train = next(r for r in benchmark["training"]
                 if r["config"] == "paper" and r["precision"] == "fp32" and
                 r["variant"] == "plain")
    evals = next(r for r in benchmark["sampling"]
                 if r["config"] == "paper" and r["precision"] == "fp32")
    vae = benchmark["sd_vae"]
    train_flops = train["flops_per_step"] / train["batch"]
    eval_flops = evals["flops_per_eval"] / evals["batch"]
    train_s = 1.0 / train["images_per_s"]
    eval_s = 1.0 / evals["images_per_s_per_eval"]
    return {
        "encode": {"flops": counts.encoded_images * vae["encode_flops_per_image"],
                   "seconds": counts.encoded_images * vae["encode_s_per_image"]},
        "train": {"flops": counts.training_images * train_flops,
                  "seconds": counts.training_images * train_s},
        "sample": {"flops": counts.sampled_images * HEUN_EVALS * eval_flops,
                   "seconds": counts.sampled_images * HEUN_EVALS * eval_s},
        "decode": {"flops": counts.sampled_images * vae["decode_flops_per_image"],
                   "seconds": counts.sampled_images * vae["decode_s_per_image"]},
    }


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:.1f} h"
    if seconds < 2 * 365 * 86400:
        return f"{seconds / 86400:.0f} days"
    return f"{seconds / (365 * 86400):.0f} years"


def cost_table(benchmark: dict[str, Any], assumed_tflops: tuple[float, ...] = (100.0, 300.0)
               ) -> str:
    """Markdown: the sweep's work per stage, its time on the benchmark's device (measured
    rates) and on a GPU at each assumed sustained bf16 rate (an estimate)."""
    counts = sweep_counts()
    work = sweep_work(counts, benchmark)
    device = benchmark["meta"]["device"]
    head = " | ".join(f"at {r:g} TFLOP/s (assumed)" for r in assumed_tflops)
    lines = [f"| stage | images | PFLOP | {device}, measured rate | {head} |",
             "|---|---|---|---|" + "---|" * len(assumed_tflops)]
    if benchmark.get("prepare"):
        n = prepared_images(counts)
        cpu_only = " | ".join("(CPU work)" for _ in assumed_tflops)
        lines.append(f"| prepare | {n:,} | - | "
                     f"{_duration(n * benchmark['prepare']['s_per_image'])} | {cpu_only} |")
    images = {"encode": counts.encoded_images, "train": counts.training_images,
              "sample": counts.sampled_images, "decode": counts.sampled_images}
    total_flops = total_s = 0.0
    for stage, w in work.items():
        total_flops += w["flops"]
        total_s += w["seconds"]
        gpu = " | ".join(_duration(w["flops"] / (r * 1e12)) for r in assumed_tflops)
        lines.append(f"| {stage} | {images[stage]:,} | {w['flops'] / 1e15:,.1f} | "
                     f"{_duration(w['seconds'])} | {gpu} |")
    gpu = " | ".join(_duration(total_flops / (r * 1e12)) for r in assumed_tflops)
    lines.append(f"| **total, encode to decode** | | {total_flops / 1e15:,.1f} | "
                 f"{_duration(total_s)} | {gpu} |")
    hours = ", ".join(f"{total_flops / (r * 1e12) / 3600:,.0f} GPU-hours at {r:g} TFLOP/s"
                      for r in assumed_tflops)
    lines += ["", f"In GPU-hours: {hours} (assumed sustained rates, not measurements). "
                  f"{counts.multi_models} multi-source and {counts.single_models} single-source "
                  f"models; {counts.training_images:,} training images in all (the authors' "
                  f"preset durations); {counts.sampled_images:,} samples of {HEUN_EVALS} "
                  f"denoiser evaluations each; {counts.reference_images:,} reference images "
                  f"for FID (Inception cost not measured)."]
    return "\n".join(lines) + "\n"


def preset_table(benchmark: dict[str, Any], assumed_tflops: tuple[float, ...] = (100.0, 300.0)
                 ) -> str:
    """Markdown: each of the authors' presets as one training run, its FLOPs, and its time on
    the benchmark's device (measured rate) and on a GPU at each assumed sustained rate; plus
    sampling 5,000 images of one class (63 evaluations each) and decoding them."""
    work = sweep_work(SweepCounts(0, 0, 1, 1, 0, 0), benchmark)   # per-image costs
    device = benchmark["meta"]["device"]
    head = " | ".join(f"at {r:g} TFLOP/s (assumed)" for r in assumed_tflops)
    lines = [f"| run | images | PFLOP | {device}, measured rate | {head} |",
             "|---|---|---|---|" + "---|" * len(assumed_tflops)]
    rows = [(name, images, images * work["train"]["flops"], images * work["train"]["seconds"])
            for name, (images, _, _, _) in PRESETS.items()]
    per_class = SAMPLING["samples_per_class"]
    flops = per_class * (work["sample"]["flops"] + work["decode"]["flops"])
    seconds = per_class * (work["sample"]["seconds"] + work["decode"]["seconds"])
    rows.append((f"sample + decode {per_class:,} images of one class", per_class, flops,
                 seconds))
    for name, images, f, sec in rows:
        gpu = " | ".join(_duration(f / (r * 1e12)) for r in assumed_tflops)
        lines.append(f"| {name} | {images:,} | {f / 1e15:,.1f} | {_duration(sec)} | {gpu} |")
    return "\n".join(lines) + "\n"


def measured_gpu_table(reports: list[tuple[dict[str, Any], str]]) -> str:
    """Markdown: the paper preset's training rate measured on a GPU, one row per (report,
    precision, variant), and what that rate makes of the sweep's training images and of the
    longest single-class preset. Rates are measured; the sweep times are images / rate."""
    counts = sweep_counts()
    longest = PRESETS[preset_name(1, max(SWEEP_N))][0]
    lines = ["| device | precision | variant | micro-batch | images/s | TFLOP/s | of bf16 peak "
             f"| {preset_name(1, max(SWEEP_N))} | sweep training | source |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for report, source in reports:
        device = report["meta"]["device"].removeprefix("cuda:")
        for r in report["training"]:
            if r["config"] != "paper":
                continue
            rate = r["images_per_s"]
            lines.append(
                f"| {device} | {r['precision']} | {r['variant']} | {r['batch']} | {rate:,.0f} | "
                f"{r['achieved_tflops']:.1f} | {100 * r['fraction_of_peak']:.1f}% | "
                f"{_duration(longest / rate)} | {counts.training_images / rate / 3600:,.0f} "
                f"GPU-hours | `{source}` |")
    return "\n".join(lines) + "\n"


def costs_markdown(benchmark: dict[str, Any], source: str,
                   gpu_reports: list[tuple[dict[str, Any], str]] | None = None) -> str:
    """The page fragment `book/_generated/imagenet_costs.md`: one run per preset, then the
    whole sweep, both from the benchmark report at `source`; then, when GPU reports are given,
    the paper preset's measured GPU training rates and the times they imply."""
    meta = benchmark["meta"]
    page = (f"<!-- generated from {source} by benchmarks/diffusion_throughput.py; do not edit "
            f"-->\n\nMeasured on **{meta['device']}** ({meta['threads']} torch threads) at "
            f"commit `{meta['git_commit'][:12]}`; GPU columns are FLOPs divided by an assumed "
            f"sustained bf16 rate.\n\n**One run of each kind**\n\n" + preset_table(benchmark)
            + "\n**The full 2 x 2 x 2 sweep**\n\n" + cost_table(benchmark))
    if gpu_reports:
        page += ("\n**Measured on a GPU: the paper preset's training rate**\n\n"
                 "Each row is one configuration of one benchmark run (variants of a run "
                 "interleaved in one process); the last columns divide the training images of "
                 "the longest single-class preset and of the whole sweep by the measured rate "
                 "(training only, one GPU, no data-loading or evaluation).\n\n"
                 + measured_gpu_table(gpu_reports))
    return page
