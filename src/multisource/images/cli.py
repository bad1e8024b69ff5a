"""`multisource imagenet prepare|encode|train|sample|evaluate`: the command line of the paper's
ImageNet protocol (local data and weights only)."""

from __future__ import annotations

import argparse
import json
import os

from multisource.common.validation import InputError, OneLineArgumentParser, check_int


def add_parser(commands: argparse._SubParsersAction) -> None:
    """`multisource imagenet prepare|encode|train|sample|evaluate` (the paper's protocol)."""
    from multisource.common.devices import DEVICE_CHOICES

    imagenet = commands.add_parser(
        "imagenet", help="the paper's ImageNet protocol (local data, local weights)",
        description="The paper's ImageNet protocol: prepare -> encode -> train -> sample -> "
                    "evaluate. See book/imagenet.md.")
    sub = imagenet.add_subparsers(dest="action", required=True,
                                  parser_class=OneLineArgumentParser)

    def common(p: argparse.ArgumentParser, device: bool = True) -> None:
        if device:
            p.add_argument("--device", choices=DEVICE_CHOICES, default="auto")
        p.add_argument("--no-progress", action="store_true", help="no progress bars")

    prepare = sub.add_parser("prepare",
                             help="class subset of a local ILSVRC2012 train folder -> .npz")
    prepare.add_argument("--train-dir", required=True, help="folder with <wnid>/*.JPEG")
    prepare.add_argument("--level", required=True, help="similarity level: sim1, sim2 or sim3")
    prepare.add_argument("--K", type=int, default=None, help="number of classes (the first K)")
    prepare.add_argument("--classes", default=None,
                         help="comma-separated ImageNet indices of the level instead of --K "
                              "(e.g. 279 for a single-source model)")
    prepare.add_argument("--n-per-class", type=int, default=None,
                         help="images per class (default: all, i.e. the FID reference set)")
    prepare.add_argument("--resolution", type=int, default=256)
    prepare.add_argument("--transform", default="resize", help="resize or center-crop")
    prepare.add_argument("--seed", type=int, default=0)
    prepare.add_argument("--out", required=True, help="output .npz")
    common(prepare, device=False)

    encode = sub.add_parser("encode", help="SD-VAE latents of a prepared subset (local VAE)")
    encode.add_argument("--data", required=True, help="a prepared subset .npz")
    encode.add_argument("--vae", required=True,
                        help="local AutoencoderKL folder (config.json + weights); never "
                             "downloaded")
    encode.add_argument("--out", required=True, help="output latent .npz")
    encode.add_argument("--normalisation", default="edm2",
                        help="edm2 (EDM2's constants for sd-vae-ft-mse), data (computed from "
                             "these latents) or none")
    encode.add_argument("--draw", default="sample", help="sample (one seeded posterior draw) "
                                                          "or mean")
    encode.add_argument("--seed", type=int, default=0)
    encode.add_argument("--batch", type=int, default=32)
    common(encode)

    train = sub.add_parser("train", help="train on a prepared subset or its latents")
    train.add_argument("--data", required=True, help="a prepared subset or latent .npz")
    train.add_argument("--out", required=True, help="run folder (resumes from it)")
    train.add_argument("--preset", default="smoke",
                       help="paper (EDM2-XS, the authors' schedule for the data's K, n, level), "
                            "smoke or book")
    train.add_argument("--schedule-variant", default=None,
                       help="nlr: the authors' longer 10c-1000 schedule (paper preset only)")
    train.add_argument("--steps", type=int, default=None, help="override the number of steps")
    train.add_argument("--batch", type=int, default=None,
                       help="global batch (paper preset: 2048 as the authors' presets)")
    train.add_argument("--batch-per-device", type=int, default=None,
                       help="micro-batch per device (gradient accumulation)")
    train.add_argument("--precision", default="auto",
                       help="auto (bf16 on CUDA, else fp32), fp32 or bf16")
    train.add_argument("--compile", action="store_true", help="torch.compile the network")
    train.add_argument("--channels-last", action="store_true", help="channels-last layout")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    train.add_argument("--plan", action="store_true",
                       help="print the chosen preset and schedule, then stop")
    common(train)

    sample = sub.add_parser("sample", help="Heun-sample every class of a run")
    sample.add_argument("--run", required=True, help="run folder of `imagenet train`")
    sample.add_argument("--out", required=True, help="output .npz")
    sample.add_argument("--vae", default=None, help="the local VAE folder (latent runs)")
    sample.add_argument("--samples-per-class", type=int, default=5000)
    sample.add_argument("--steps", type=int, default=32)
    sample.add_argument("--ema-std", type=float, default=0.05)
    sample.add_argument("--batch", type=int, default=256)
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    common(sample)

    evaluate = sub.add_parser("evaluate", help="per-class FID of samples, averaged over classes")
    evaluate.add_argument("--samples", required=True)
    evaluate.add_argument("--reference", required=True,
                          help="prepared subset of all training images of the same classes")
    evaluate.add_argument("--extractor", default="inception", help="inception or pixels")
    evaluate.add_argument("--inception-weights", default=None,
                          help="local Inception-v3 TorchScript (never downloaded)")
    evaluate.add_argument("--batch", type=int, default=64)
    evaluate.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    evaluate.add_argument("--out", default=None, help="report .json")
    common(evaluate)


def run(args: argparse.Namespace) -> int:
    from multisource.images import imagenet, imagenet_runs

    check_arguments(args)
    progress = not args.no_progress
    if args.action == "prepare":
        classes = parse_classes(args.classes)
        out = imagenet.prepare_subset(args.train_dir, args.level, args.K, args.n_per_class,
                                      args.resolution, args.out, seed=args.seed,
                                      transform=args.transform, classes=classes,
                                      progress=progress)
    elif args.action == "encode":
        from multisource.images.latents import encode_subset

        out = encode_subset(args.data, args.vae, args.out, normalisation=args.normalisation,
                            draw=args.draw, seed=args.seed, batch_size=args.batch,
                            device=args.device, progress=progress)
    elif args.action == "train":
        options = {"preset": args.preset, "schedule_variant": args.schedule_variant,
                   "device": args.device, "total_steps": args.steps, "batch_size": args.batch,
                   "batch_per_device": args.batch_per_device, "seed": args.seed,
                   "precision": args.precision, "compile_model": args.compile,
                   "channels_last": args.channels_last}
        if args.plan:
            plan, _ = imagenet_runs.plan_training(args.data, **options)
            print("\n".join(plan.messages))
            return 0
        out = imagenet_runs.train_subset(args.data, args.out, progress=progress, report=print,
                                    **options)
        if int(os.environ.get("RANK", "0")) != 0:
            return 0
    elif args.action == "sample":
        out = imagenet_runs.sample_subset(args.run, args.out,
                                          samples_per_class=args.samples_per_class,
                                          num_steps=args.steps, ema_std=args.ema_std,
                                          seed=args.seed, device=args.device,
                                          batch_size=args.batch, vae=args.vae,
                                          progress=progress)
    else:
        scores = imagenet_runs.evaluate_subset(args.samples, args.reference,
                                               extractor=args.extractor,
                                               inception_weights=args.inception_weights,
                                               device=args.device, batch_size=args.batch,
                                               out=args.out, progress=progress)
        print(json.dumps(scores, indent=2, default=str))
        return 0
    print(f"wrote {out}")
    return 0


def parse_classes(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise InputError(f"--classes must be comma-separated ImageNet indices, got {text!r}"
                         ) from None


def check_arguments(args: argparse.Namespace) -> None:
    """Every imagenet argument that can be checked without reading data, before any work."""
    from multisource.common.validation import (
        check_float,
        check_input_file,
        check_output_path,
    )

    if getattr(args, "seed", None) is not None:
        check_int("--seed", args.seed, minimum=0, maximum=2 ** 52)
    if getattr(args, "threads", None) is not None:
        torch_threads = check_int("--threads", args.threads, minimum=1, maximum=1024)
        import torch

        torch.set_num_threads(torch_threads)
    for name in ("batch", "steps", "samples_per_class", "n_per_class", "K", "batch_per_device"):
        value = getattr(args, name, None)
        if value is not None:
            check_int(f"--{name.replace('_', '-')}", value, minimum=1, maximum=10 ** 9)
    if args.action == "prepare":
        if (args.K is None) == (args.classes is None):
            raise InputError("prepare needs exactly one of --K (the first K classes) or "
                             "--classes (ImageNet indices)")
        parse_classes(args.classes)
        check_output_path("--out", args.out)
    elif args.action == "encode":
        from multisource.images.latents import vae_folder

        check_input_file("--data", args.data, suffixes=(".npz",))
        vae_folder(args.vae)
        check_output_path("--out", args.out)
    elif args.action == "train":
        check_input_file("--data", args.data, suffixes=(".npz",))
        if not args.plan:
            from multisource.models.diffusion.train_cli import check_checkpoint

            out = check_output_path("--out", args.out, kind="dir")
            check_checkpoint(out)
    elif args.action == "sample":
        from multisource.images.imagenet_runs import read_run_info

        check_float("--ema-std", args.ema_std, minimum=1e-4, maximum=0.28)
        read_run_info(args.run)
        if args.vae is not None:
            from multisource.images.latents import vae_folder

            vae_folder(args.vae)
        check_output_path("--out", args.out)
    else:
        check_input_file("--samples", args.samples, suffixes=(".npz",))
        check_input_file("--reference", args.reference, suffixes=(".npz",))
        if args.extractor == "inception":
            from multisource.image_metrics.inception import inception_weights_path

            inception_weights_path(args.inception_weights)
        if args.out is not None:
            check_output_path("--out", args.out)
