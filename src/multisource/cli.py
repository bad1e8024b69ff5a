"""Command line: `multisource ...` or `python -m multisource ...`.

Bad input ends with one line on stderr naming the parameter and what is allowed, exit status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from multisource.validation import InputError, OneLineArgumentParser

EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with all subcommands."""
    from multisource.devices import DEVICE_CHOICES
    from multisource.experiments import PROFILES

    parser = OneLineArgumentParser(prog="multisource", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True,
                                     parser_class=OneLineArgumentParser)

    gaussian = commands.add_parser("gaussian", help="the Gaussian simulation of Figure 1")
    gaussian_commands = gaussian.add_subparsers(dest="action", required=True,
                                                parser_class=OneLineArgumentParser)
    replicate = gaussian_commands.add_parser(
        "replicate", help="run the paper's published procedure for any setting")
    replicate.add_argument("--K", type=int, default=5, help="number of sources (>= 1)")
    replicate.add_argument("--D", type=int, default=10, help="dimension (>= 1)")
    replicate.add_argument("--sim", type=float, default=0.5,
                           help="shared fraction in [0, 1]; int(sim*D) coordinates are shared")
    replicate.add_argument("--n", type=int, default=500, help="training sample size (>= 1)")
    replicate.add_argument("--test-size", type=int, default=500, help="test points (>= 1)")
    replicate.add_argument("--seeds", type=int, nargs="+", default=None,
                           help="seeds (default: the paper's 3 33 520 2025 25731)")
    replicate.add_argument("--json", action="store_true", help="print one JSON object")
    exact = gaussian_commands.add_parser("exact", help="exact expected risk of both MLEs")
    exact.add_argument("--K", type=int, default=5)
    exact.add_argument("--D", type=int, default=10)
    exact.add_argument("--sim", type=float, default=0.5)
    exact.add_argument("--n", type=int, default=500)
    exact.add_argument("--json", action="store_true")

    run = commands.add_parser("run", help="run an experiment and store results with provenance")
    run.add_argument("experiment")
    run.add_argument("--profile", default="book", help=f"one of {', '.join(PROFILES)}")
    run.add_argument("--device", default="auto", help=f"one of {', '.join(DEVICE_CHOICES)}")
    run.add_argument("--no-resume", action="store_true", help="ignore a partial checkpoint")
    run.add_argument("--quiet", action="store_true", help="no progress bar")

    execute = commands.add_parser("execute", help="execute chapters with papermill")
    execute.add_argument("chapters", nargs="*", help="chapter stems or numbers (default: all)")
    execute.add_argument("--profile", default="book", help=f"one of {', '.join(PROFILES)}")
    execute.add_argument("--device", default="auto", help=f"one of {', '.join(DEVICE_CHOICES)}")
    execute.add_argument("--log-output", action="store_true", help="stream cell output")

    diffusion = commands.add_parser(
        "diffusion", help="train the EDM2-style model (also under torchrun)",
        description="EDM2-style diffusion. `multisource diffusion train --help` lists the "
                    "training options.")
    diffusion.add_argument("action", choices=["train"], help="train: train a denoiser")
    diffusion.add_argument("train_args", nargs=argparse.REMAINDER,
                           help="arguments of `multisource diffusion train --help`")

    _add_imagenet_parsers(commands)

    show = commands.add_parser("show", help="print stored results of an experiment")
    show.add_argument("experiment")
    show.add_argument("--profile", default="book", help=f"one of {', '.join(PROFILES)}")

    book = commands.add_parser("book", help="build the book into _build/html")
    book.add_argument("--strict", action="store_true", help="-W -n --keep-going (as CI does)")

    from multisource.pooling.cli import add_parser as add_advise_parser

    add_advise_parser(commands)

    status = commands.add_parser("status", help="chapters, what they show, where numbers came from")
    status.add_argument("--markdown", action="store_true", help="a markdown table (for the book)")
    return parser


def _add_imagenet_parsers(commands: argparse._SubParsersAction) -> None:
    """`multisource imagenet prepare|encode|train|sample|evaluate` (the paper's protocol)."""
    from multisource.devices import DEVICE_CHOICES

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

def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status.

    Every failure a user can cause ends in one line on stderr and exit status 2; `--debug`
    (anywhere on the command line) shows the traceback instead.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except BrokenPipeError:
        # the reader went away (`multisource show ... | head -1`): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        sys.stderr.write("multisource: interrupted\n")
        return 130
    except (InputError, OSError) as error:
        if debug:
            raise
        sys.stderr.write(f"multisource: error: {_one_line(error)}\n")
        return EXIT_USAGE


def _one_line(error: BaseException) -> str:
    if isinstance(error, OSError) and error.filename is not None:
        return f"{error.strerror or type(error).__name__}: {error.filename}"
    return " ".join(str(error).split()) or type(error).__name__


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "gaussian":
        return _gaussian(args)
    if args.command == "run":
        return _run(args)
    if args.command == "execute":
        return _execute(args)
    if args.command == "book":
        return _book(args)
    if args.command == "show":
        return _show(args)
    if args.command == "diffusion":
        from multisource.models.diffusion.train_cli import main as train_main

        return train_main(args.train_args)
    if args.command == "imagenet":
        return _imagenet(args)
    if args.command == "advise":
        from multisource.pooling.cli import run as run_advise

        return run_advise(args)
    return _status(args)


def _gaussian(args: argparse.Namespace) -> int:
    from multisource.experiments import gaussian

    setting = gaussian.ReplicationSetting(K=args.K, D=args.D, sim=args.sim, n=args.n,
                                          test_size=getattr(args, "test_size", 500))
    if args.action == "exact":
        values = {e: gaussian.exact_expected_risk(setting.K, setting.D, setting.d1, setting.n, e)
                  for e in gaussian.ESTIMATORS}
        record = {"K": setting.K, "D": setting.D, "sim": setting.sim, "d1": setting.d1,
                  "n": setting.n, "exact_single": values["single"],
                  "exact_multi": values["multi"]}
        print(json.dumps(record) if args.json else
              f"exact E[R]: single {values['single']:.6f}  multi {values['multi']:.6f}  "
              f"(K={setting.K}, D={setting.D}, d1={setting.d1}, n={setting.n})")
        return 0
    seeds = gaussian.PUBLISHED_SEEDS if args.seeds is None else args.seeds
    result = gaussian.replicate(setting, seeds)
    if any(r.tv_single_mc != r.tv_single_mc for r in result.per_seed):  # NaN check
        sys.stderr.write("multisource: warning: a source received no training point in some "
                         "seed; its MLE is undefined (reported as null/NaN)\n")
    if args.json:
        print(json.dumps(result.to_dict()))
        return 0
    print(f"K={setting.K} D={setting.D} sim={setting.sim} (d1={setting.d1}) n={setting.n} "
          f"test points={setting.test_size}")
    print(f"{'seed':>12} {'TV single (MC)':>16} {'TV multi (MC)':>16}")
    for r in result.per_seed:
        print(f"{r.seed:>12} {r.tv_single_mc:>16.10f} {r.tv_multi_mc:>16.10f}")
    print(f"{'mean':>12} {result.tv_single_mc:>16.10f} {result.tv_multi_mc:>16.10f}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from multisource.experiments.runner import run_experiment
    from multisource.paths import REPO_ROOT

    stored = run_experiment(args.experiment, args.profile, args.device,
                            progress=not args.quiet, resume=not args.no_resume)
    print(f"wrote {stored.csv_path.relative_to(REPO_ROOT)} "
          f"({len(stored.frame)} rows, {stored.provenance['wall_time_s']} s, "
          f"config {stored.provenance['config_hash']})")
    return 0


def _execute(args: argparse.Namespace) -> int:
    from multisource.chapters import available_chapters, execute_chapter, find_chapter

    chapters = [find_chapter(c) for c in args.chapters] or available_chapters()
    for chapter in chapters:
        print(f"executing {chapter.stem} (profile={args.profile}, device={args.device}) ...",
              flush=True)
        wall = execute_chapter(chapter, profile=args.profile, device=args.device,
                               log_output=args.log_output)
        print(f"  done in {wall:.1f} s -> notebooks/{chapter.notebook.name}", flush=True)
    return 0


def _imagenet(args: argparse.Namespace) -> int:
    from multisource.images import imagenet

    _check_imagenet_args(args)
    progress = not args.no_progress
    if args.action == "prepare":
        classes = _parse_classes(args.classes)
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
            plan, _ = imagenet.plan_training(args.data, **options)
            print("\n".join(plan.messages))
            return 0
        out = imagenet.train_subset(args.data, args.out, progress=progress, report=print,
                                    **options)
        if int(os.environ.get("RANK", "0")) != 0:
            return 0
    elif args.action == "sample":
        out = imagenet.sample_subset(args.run, args.out, samples_per_class=args.samples_per_class,
                                     num_steps=args.steps, ema_std=args.ema_std, seed=args.seed,
                                     device=args.device, batch_size=args.batch, vae=args.vae,
                                     progress=progress)
    else:
        scores = imagenet.evaluate_subset(args.samples, args.reference, extractor=args.extractor,
                                          inception_weights=args.inception_weights,
                                          device=args.device, batch_size=args.batch,
                                          out=args.out, progress=progress)
        print(json.dumps(scores, indent=2, default=str))
        return 0
    print(f"wrote {out}")
    return 0


def _parse_classes(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise InputError(f"--classes must be comma-separated ImageNet indices, got {text!r}"
                         ) from None


def _check_imagenet_args(args: argparse.Namespace) -> None:
    """Every imagenet argument that can be checked without reading data, before any work."""
    from multisource.validation import check_float, check_input_file, check_int, check_output_path

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
        _parse_classes(args.classes)
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
        from multisource.images.imagenet import read_run_info

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


def _show(args: argparse.Namespace) -> int:
    from multisource.experiments.runner import load_results, stored_state

    stored = load_results(args.experiment, args.profile)
    if stored is None:
        state = stored_state(args.experiment, args.profile).state
        why = {"missing": "none are stored", "stale-config": "the stored ones have another "
               "config", "stale-code": "the code that computes them has changed"}[state]
        raise InputError(f"no current results for {args.experiment}[{args.profile}] ({why}); "
                         f"run `multisource run {args.experiment} --profile {args.profile}`")
    record = stored.provenance
    print(f"{args.experiment}[{args.profile}]: config {record['config_hash']}, "
          f"device {record['device']}, commit {record['git_commit']}, "
          f"{record['wall_time_s']} s")
    print(stored.frame.to_string(index=False))
    return 0


def _book(args: argparse.Namespace) -> int:
    from multisource.paths import REPO_ROOT

    venv_script = Path(sys.executable).with_name("jupyter-book")
    executable = str(venv_script) if venv_script.exists() else shutil.which("jupyter-book")
    if executable is None:
        raise InputError("jupyter-book is not installed: run `make venv` first")
    command = [executable, "build", str(REPO_ROOT)]
    if args.strict:
        command += ["-W", "-n", "--keep-going"]
    return subprocess.call(command, cwd=REPO_ROOT)


def _status(args: argparse.Namespace) -> int:
    from multisource.status import status_table

    print(status_table(markdown=args.markdown))
    return 0
