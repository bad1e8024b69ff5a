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
from typing import Any

from multisource.common.validation import (
    InputError,
    OneLineArgumentParser,
    check_int,
    check_memory,
    human_bytes,
    human_seconds,
)

EXIT_USAGE = 2
EXIT_FAILED = 1

# `gaussian exact` is fast to n = 10^6; beyond, and for huge K, it is refused. Beyond
# D = 10^5 the Imhof quadrature of the multi-source risk stops converging (scipy warns and the
# value can be off by 0.5 or exceed 1): up to 10^5 it agrees with the closed form where one
# exists (K = 1) to 1e-12 for n from 1 to 10^6, and converges for K up to 10^6.
EXACT_MAX_N = 10**6
EXACT_MAX_K = 10**6
EXACT_MAX_D = 10**5
# Rough costs of the published procedure per seed on one CPU core (measured with
# `gaussian replicate` on the 2-core development machine; estimates, not promises).
REPLICATE_BYTES_PER_TRAIN_VALUE = 16
REPLICATE_BYTES_PER_TEST_VALUE = 32
REPLICATE_BYTES_PER_SOURCE = 1000
REPLICATE_SECONDS_PER_TRAIN_VALUE = 1.5e-7
REPLICATE_SECONDS_PER_TEST_VALUE = 4e-7
REPLICATE_SECONDS_PER_SOURCE = 2e-4
REPLICATE_SECONDS_PER_SOURCE_POINT = 1e-9
WARN_AFTER_SECONDS = 10.0


class _ExperimentListHelp(argparse.Action):
    """`run --help`: the usual help followed by the registered experiments (imported only
    when asked for, so other commands do not pay for importing every experiment)."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS,
                 default: str = argparse.SUPPRESS, help: str | None = None) -> None:
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        from multisource.experiments import get, names

        width = max(len(n) for n in names())
        lines = [f"  {n:<{width}}  {get(n).description} (chapter {get(n).chapter})"
                 for n in names()]
        parser.epilog = "experiments:\n" + "\n".join(lines)
        parser.print_help()
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with all subcommands."""
    from multisource.common.devices import DEVICE_CHOICES
    from multisource.experiments import PROFILES

    parser = OneLineArgumentParser(prog="multisource", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an error (accepted anywhere)")
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
    exact.add_argument("--K", type=int, default=5, help=f"number of sources, 1 to {EXACT_MAX_K}")
    exact.add_argument("--D", type=int, default=10,
                       help=f"dimension, 1 to {EXACT_MAX_D} (where the quadrature is accurate)")
    exact.add_argument("--sim", type=float, default=0.5, help="shared fraction in [0, 1]")
    exact.add_argument("--n", type=int, default=500,
                       help=f"training sample size, 1 to {EXACT_MAX_N}")
    exact.add_argument("--json", action="store_true", help="print one JSON object")

    run = commands.add_parser(
        "run", help="run an experiment and store results with provenance", add_help=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run every task of an experiment at a profile and write\n"
                    "data/results/<experiment>/<profile>.csv with its .json provenance\n"
                    "atomically. An interrupted run resumes from its checkpoint; a run\n"
                    "on current stored results does nothing unless --force is given;\n"
                    "a second run of the same experiment and profile is refused.")
    run.add_argument("-h", "--help", action=_ExperimentListHelp, help="show this help and the "
                     "experiments, then exit")
    run.add_argument("experiment", help="an experiment name (listed below)")
    run.add_argument("--profile", default="book", help=f"one of {', '.join(PROFILES)}")
    run.add_argument("--device", default="auto", help=f"one of {', '.join(DEVICE_CHOICES)}")
    run.add_argument("--no-resume", action="store_true", help="ignore a partial checkpoint")
    run.add_argument("--force", action="store_true",
                     help="compute the results again even when the stored ones are current")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.add_argument("--workers", type=int, default=1,
                     help="tasks run at once in separate processes, 1 to 64 (default 1); "
                          "the table is the same whatever this is")

    restamp = commands.add_parser(
        "restamp", help="carry stored results over a code change that cannot alter them",
        description="Verify that the stored results of an experiment are what the current "
                    "code computes, then record the current code hash in their sidecar. The "
                    "cheapest --sample tasks are rerun and must give byte-identical rows; "
                    "where that would exceed --budget seconds, the code at the commit that "
                    "computed the table must equal the current code up to docstrings, "
                    "comments and module paths. Otherwise nothing changes (exit status 2).")
    restamp.add_argument("experiment", help="an experiment name (see `multisource run -h`)")
    restamp.add_argument("--profile", default="book", help=f"one of {', '.join(PROFILES)}")
    restamp.add_argument("--sample", type=int, default=2,
                         help="tasks to rerun, 2 to 1000 (default 2)")
    restamp.add_argument("--budget", type=float, default=900.0,
                         help="seconds the rerun may take by the stored mean task time "
                              "(default 900)")

    execute = commands.add_parser(
        "execute", help="execute chapters with papermill",
        description="Execute chapters with papermill. Profile book with the chapter's own "
                    "parameters updates the committed notebooks/<stem>.ipynb (only when its "
                    "outputs change); any other profile or -p parameter writes "
                    "_build/executed/<profile>/<stem>[-p<hash of the parameters>].ipynb "
                    "instead. Every parameter is checked against the chapter's declared "
                    "range before any work.")
    execute.add_argument("chapters", nargs="*", help="chapter stems or numbers (default: all)")
    execute.add_argument("--profile", default="book", help=f"one of {', '.join(PROFILES)}")
    execute.add_argument("--device", default="auto", help=f"one of {', '.join(DEVICE_CHOICES)}")
    execute.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                         metavar=("NAME", "VALUE"),
                         help="set a parameter of the chapter's parameters cell (a Python "
                              "literal where it parses as one); repeatable")
    execute.add_argument("--out", default=None,
                         help="write the executed notebook here (one chapter only; not inside "
                              "notebooks/, data/ or book/, nor over a file tracked by git; "
                              "e.g. _build/my_run.ipynb)")
    execute.add_argument("--recompute-stale", action="store_true",
                         help="at profile book, recompute stored results that do not match "
                              "the code into _build/results instead of stopping; the notebook "
                              "then goes to _build/executed/book/<stem>-recomputed.ipynb, "
                              "labelled as recomputed")
    execute.add_argument("--log-output", action="store_true", help="stream cell output")
    execute.add_argument("--quiet", action="store_true", help="no progress bar")

    diffusion = commands.add_parser(
        "diffusion", help="train the EDM2-style model (also under torchrun)",
        description="EDM2-style diffusion. `multisource diffusion train --help` lists the "
                    "training options.")
    diffusion.add_argument("action", choices=["train"], help="train: train a denoiser")
    diffusion.add_argument("train_args", nargs=argparse.REMAINDER,
                           help="arguments of `multisource diffusion train --help`")

    from multisource.images.cli import add_parser as add_imagenet_parser

    add_imagenet_parser(commands)

    show = commands.add_parser("show", help="print stored results of an experiment")
    show.add_argument("experiment")
    show.add_argument("--profile", default="book", help=f"one of {', '.join(PROFILES)}")

    book = commands.add_parser("book", help="build the book into _build/html (no execution)")
    book.add_argument("--strict", action="store_true", help="-W -n --keep-going (as CI does)")

    from multisource.pooling.cli import add_parser as add_advise_parser

    add_advise_parser(commands)

    status = commands.add_parser("status", help="chapters, what they show, where numbers came from")
    status.add_argument("--markdown", action="store_true", help="a markdown table (for the book)")
    return parser


def _advise_parser() -> argparse.ArgumentParser:
    """Only `advise` (it needs neither torch nor the experiments that build_parser imports)."""
    from multisource.pooling.cli import add_parser as add_advise_parser

    parser = OneLineArgumentParser(prog="multisource", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True,
                                     parser_class=OneLineArgumentParser)
    add_advise_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status.

    Every failure a user can cause ends in one line on stderr and exit status 2 (a chapter
    whose code fails for another reason: exit status 1); `--debug` (anywhere on the command
    line) shows the traceback instead.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    args = (_advise_parser() if argv[:1] == ["advise"] else build_parser()).parse_args(argv)
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
    except MemoryError:
        if debug:
            raise
        sys.stderr.write("multisource: error: out of memory; choose smaller sizes\n")
        return EXIT_USAGE
    except _chapter_failed() as error:   # evaluated only when an exception gets here
        if debug:
            raise
        sys.stderr.write(f"multisource: error: {_one_line(error)}\n")
        return EXIT_USAGE if error.user_input else EXIT_FAILED


def _chapter_failed() -> type[Exception]:
    """`book.execution.ChapterFailed`, imported when needed (`advise` starts without it)."""
    from multisource.book.execution import ChapterFailed

    return ChapterFailed


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
    if args.command == "restamp":
        from multisource.experiments.restamp import restamp

        outcome = restamp(args.experiment, args.profile, sample=args.sample,
                          budget_s=args.budget)
        print(outcome.message)
        return 0
    if args.command == "book":
        return _book(args)
    if args.command == "show":
        return _show(args)
    if args.command == "diffusion":
        from multisource.models.diffusion.train_cli import main as train_main

        return train_main(args.train_args)
    if args.command == "imagenet":
        from multisource.images.cli import run as run_imagenet

        return run_imagenet(args)
    if args.command == "advise":
        from multisource.pooling.cli import run as run_advise

        return run_advise(args)
    return _status(args)


def _gaussian(args: argparse.Namespace) -> int:
    from multisource.experiments import gaussian

    if args.action == "exact":
        check_int("K", args.K, minimum=1, maximum=EXACT_MAX_K)
        check_int("n", args.n, minimum=1, maximum=EXACT_MAX_N)
        if isinstance(args.D, int) and args.D > EXACT_MAX_D:
            raise InputError(f"D must be an integer in [1, {EXACT_MAX_D}] (the range where "
                             f"the exact risk's quadrature is accurate), got {args.D}")
        check_int("D", args.D, minimum=1, maximum=EXACT_MAX_D)
    elif args.seeds is not None and len(set(args.seeds)) != len(args.seeds):
        repeated = sorted({s for s in args.seeds if args.seeds.count(s) > 1})
        raise InputError(f"seeds must be distinct (a repeated seed repeats the same run and "
                         f"would count twice in the mean); got {' '.join(map(str, repeated))} "
                         f"more than once")
    setting = gaussian.ReplicationSetting(K=args.K, D=args.D, sim=args.sim, n=args.n,
                                          test_size=getattr(args, "test_size", 500))
    if args.action == "exact":
        values = _exact_risks(gaussian, setting)
        record = {"K": setting.K, "D": setting.D, "sim": setting.sim, "d1": setting.d1,
                  "n": setting.n, "exact_single": values["single"],
                  "exact_multi": values["multi"]}
        print(json.dumps(record) if args.json else
              f"exact E[R]: single {values['single']:.6f}  multi {values['multi']:.6f}  "
              f"(K={setting.K}, D={setting.D}, d1={setting.d1}, n={setting.n})")
        return 0
    seeds = gaussian.check_seeds(gaussian.PUBLISHED_SEEDS if args.seeds is None else args.seeds)
    slow = _check_replicate_budget(setting, len(seeds))
    from tqdm import tqdm

    per_seed = [gaussian.replicate_seed(setting, seed)
                for seed in tqdm(seeds, desc="seeds", unit="seed", disable=not slow)]
    result = gaussian.ReplicationResult(setting, tuple(per_seed))
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


def _exact_risks(gaussian: Any, setting: Any) -> dict[str, float]:
    """Both exact risks, or one line naming the setting when the quadrature did not converge
    (a scipy IntegrationWarning, or a value outside [0, 1]): never a number of unknown
    accuracy, never the raw warning."""
    import warnings

    from scipy.integrate import IntegrationWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", IntegrationWarning)
        values = {e: gaussian.exact_expected_risk(setting.K, setting.D, setting.d1, setting.n, e)
                  for e in gaussian.ESTIMATORS}
    converged = not any(issubclass(w.category, IntegrationWarning) for w in caught)
    if not converged or not all(-1e-9 <= v <= 1 + 1e-9 for v in values.values()):
        raise InputError(f"the exact risk did not converge at K={setting.K}, D={setting.D}, "
                         f"d1={setting.d1}, n={setting.n}; it is accurate for D up to "
                         f"{EXACT_MAX_D} and n up to {EXACT_MAX_N}: reduce --D")
    return {e: min(max(v, 0.0), 1.0) for e, v in values.items()}


def replicate_budget(K: int, D: int, n: int, test_size: int, n_seeds: int
                     ) -> tuple[float, float]:
    """Estimated peak memory (bytes) and time (seconds, one core) of `gaussian replicate`.

    Data: n x D training and test_size x D test values per seed (freed between seeds); the
    per-source loop of the published procedure scans all points once per source.
    """
    memory = (REPLICATE_BYTES_PER_TRAIN_VALUE * D * n
              + REPLICATE_BYTES_PER_TEST_VALUE * D * test_size
              + REPLICATE_BYTES_PER_SOURCE * K * (1 + D / 100))
    per_seed = (REPLICATE_SECONDS_PER_TRAIN_VALUE * D * n
                + REPLICATE_SECONDS_PER_TEST_VALUE * D * test_size
                + REPLICATE_SECONDS_PER_SOURCE * K
                + REPLICATE_SECONDS_PER_SOURCE_POINT * K * (n + test_size))
    return float(memory), float(per_seed * n_seeds)


def _check_replicate_budget(setting: Any, n_seeds: int) -> bool:
    """Refuse a setting that cannot fit in memory; note the cost of a slow one (True)."""
    memory, seconds = replicate_budget(setting.K, setting.D, setting.n, setting.test_size,
                                       n_seeds)
    check_memory(f"this setting (K={setting.K}, D={setting.D}, n={setting.n}, "
                 f"test points={setting.test_size})", memory,
                 "reduce --D, --n, --test-size or --K")
    if seconds > WARN_AFTER_SECONDS:
        sys.stderr.write(f"multisource: note: this setting takes roughly {human_seconds(seconds)}"
                         f" on one CPU core and about {human_bytes(memory)} of memory "
                         f"(estimates); Ctrl-C stops it\n")
        return True
    return False


EXIT_SIGINT = 130
EXIT_SIGTERM = 143


def _run(args: argparse.Namespace) -> int:
    """`multisource run`: nothing to do on current results (unless --force); one line and
    exit status 130 (SIGINT) or 143 (SIGTERM) when stopped, with the checkpoint kept."""
    from multisource.common.devices import resolve_device
    from multisource.common.paths import REPO_ROOT
    from multisource.experiments import get
    from multisource.experiments.runner import (
        checkpoint_path,
        run_experiment,
        stored_state,
    )
    from multisource.experiments.workers import Terminated, WorkerDied

    get(args.experiment).config(args.profile)   # unknown experiment or profile: one line
    check_int("workers", args.workers, minimum=1, maximum=64)
    resolve_device(args.device)
    label = f"{args.experiment}[{args.profile}]"
    state = stored_state(args.experiment, args.profile)
    if state.state == "current" and not args.force:
        print(f"{label}: the stored results are current ({_recorded_run(state.record)}); "
              f"nothing to do (`--force` computes them again)")
        return 0
    if state.state != "missing":
        why = {"current": "computing current results again (--force)",
               "stale-config": "the stored results have another config; computing them again",
               "stale-code": "the code that computes the stored results has changed; "
                             "computing them again",
               "invalid": f"the stored results are unusable ({state.reason}); computing them "
                          f"again"}[state.state]
        recorded = f"; {_recorded_run(state.record)}" if state.record else ""
        print(f"{label}: {why}{recorded}", flush=True)
    try:
        stored = run_experiment(args.experiment, args.profile, args.device,
                                progress=not args.quiet, resume=not args.no_resume,
                                workers=args.workers)
    except (KeyboardInterrupt, WorkerDied) as stop:
        checkpoint = checkpoint_path(args.experiment, args.profile)
        kept = (f"finished tasks are kept in {_relative(checkpoint, REPO_ROOT)}; the same "
                f"command resumes" if checkpoint.is_file() else "no task had finished")
        if isinstance(stop, WorkerDied):
            sys.stderr.write(f"multisource: error: {stop}; {kept}\n")
            return EXIT_FAILED
        what = "terminated (SIGTERM)" if isinstance(stop, Terminated) else "interrupted"
        sys.stderr.write(f"multisource: {what}; every worker stopped; {kept}\n")
        return EXIT_SIGTERM if isinstance(stop, Terminated) else EXIT_SIGINT
    print(f"wrote {_relative(stored.csv_path, REPO_ROOT)} "
          f"({len(stored.frame)} rows, {stored.provenance['wall_time_s']} s, "
          f"config {stored.provenance['config_hash']})")
    return 0


def _recorded_run(record: dict[str, Any] | None) -> str:
    """The stored run in words: its compute time, tasks, device and commit."""
    record = record or {}
    seconds = record.get("wall_time_s")
    took = (f"the recorded run took {human_seconds(float(seconds))} of compute"
            if isinstance(seconds, int | float) and not isinstance(seconds, bool)
            else "the recorded run time is unknown")
    return (f"{took} for {record.get('n_tasks', '?')} tasks on {record.get('device')}, "
            f"commit {str(record.get('git_commit'))[:10]}")


def _execute(args: argparse.Namespace) -> int:
    from multisource.book.execution import execute_chapter, plan_execution
    from multisource.book.registry import (
        available_chapters,
        find_chapter,
        notebook_damage,
        parse_parameter_value,
    )
    from multisource.common.paths import REPO_ROOT

    named = [find_chapter(c) for c in args.chapters] or available_chapters()
    chapters = list(dict.fromkeys(named))  # `4 04 04_gaussian` is one chapter, run once
    if args.out is not None and len(chapters) != 1:
        raise InputError(f"--out needs exactly one chapter, got {len(chapters)}")
    parameters = {name: parse_parameter_value(value) for name, value in args.parameter}
    # every chapter is checked (device, parameters and their ranges, stored results, output
    # path) before any is executed
    plans = [plan_execution(c, profile=args.profile, device=args.device, parameters=parameters,
                            output=args.out, recompute_stale=args.recompute_stale)
             for c in chapters]
    for number, plan in enumerate(plans, start=1):
        label = f"[{number}/{len(plans)}] {plan.chapter.stem}"
        where = _relative(plan.output, REPO_ROOT)
        # the judgement `status` and `book` make: executing replaces a damaged notebook
        damage = notebook_damage(plan.output) if plan.output.is_file() else None
        print(f"{label}: profile={plan.profile}, device={plan.device_name}"
              + "".join(f", {k}={v!r}" for k, v in plan.parameters.items())
              + (f", recomputing {', '.join(plan.recomputed)}" if plan.recomputed else "")
              + f" -> {where}"
              + (f" (replacing it: damaged ({damage}))" if damage else ""), flush=True)
        done = execute_chapter(plan, log_output=args.log_output,
                               progress=False if args.quiet or args.log_output else label)
        outcome = "wrote" if done.written else "unchanged (same cells and outputs):"
        print(f"{label}: done in {done.wall_time_s:.1f} s; {outcome} {where}", flush=True)
    return 0


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _show(args: argparse.Namespace) -> int:
    from multisource.experiments import get
    from multisource.experiments.runner import load_results, stored_state

    get(args.experiment).config(args.profile)  # unknown experiment or profile: one line
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
    from multisource.book.registry import available_chapters
    from multisource.common.paths import BOOK_DIR, BUILD_DIR, REPO_ROOT
    from multisource.common.validation import check_output_path

    venv_script = Path(sys.executable).with_name("jupyter-book")
    executable = str(venv_script) if venv_script.exists() else shutil.which("jupyter-book")
    if executable is None:
        raise InputError("jupyter-book is not installed: run `make venv` first")
    if not (BOOK_DIR / "_mathjax" / "mathjax" / "tex-mml-chtml.js").is_file():
        raise InputError("MathJax is not vendored (book/_mathjax): run `make mathjax` first")
    missing = [c.stem for c in available_chapters() if not c.notebook.is_file()]
    if missing:
        raise InputError(f"chapters not executed yet: {', '.join(missing)}; run "
                         f"`multisource execute {' '.join(missing)}`")
    check_output_path("the build folder", BUILD_DIR, kind="dir")
    check_notebooks_readable(available_chapters())
    command = [executable, "build", str(REPO_ROOT)]
    if args.strict:
        command += ["-W", "-n", "--keep-going"]
    return subprocess.call(command, cwd=REPO_ROOT)


def _status(args: argparse.Namespace) -> int:
    """Every chapter's status; exit status 1 (after the full report) when a committed
    notebook is damaged, so `make status` keeps the previous table."""
    from multisource.book.status import damaged_chapters, status_rows, status_table

    rows = status_rows()
    print(status_table(markdown=args.markdown, rows=rows))
    damaged = damaged_chapters(rows)
    if damaged:
        sys.stderr.write(f"multisource: error: damaged chapter notebook: {', '.join(damaged)} "
                         f"(see its row above)\n")
        return EXIT_FAILED
    return 0


def check_notebooks_readable(chapters: Sequence[Any]) -> None:
    """One line naming the first committed notebook that is damaged (the judgement `status`
    and `execute` make too: `multisource.book.registry.notebook_damage`); an empty chapter is
    damaged, so it never builds."""
    from multisource.book.registry import damaged_message

    for chapter in chapters:
        damaged = damaged_message(chapter)
        if damaged is not None:
            raise InputError(damaged)
