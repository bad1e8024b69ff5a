#!/usr/bin/env python3
"""How often larger random searches still miss the best known fit (chapters 5-6, issue 18).

At the default setting of a network sweep (profile `book`), for each seed and estimator, this
fits the data the sweep fits (same teacher, same counts) with random starts drawn from the
sweep's seed stream, 80 at a time: the restart rule, and fixed budgets of the first B starts
(screened, the best continued, as in `split_fit.budget_curve`) at B = 15, 40 and 80. The
rule's fit here is therefore a replicate of the stored one on other starts, not the stored
fit; the start at the teacher and the fresh block (`restarts` independent starts) are the
sweep's. The screened rule is the one the sweeps used before every start was continued
(`SCREENED`: blocks of 5 starts screened for 200 iterations, 2 to 3 blocks). For
each search it reports how often the teacher start and the fresh block find a fit more likely
by more than the sweep's tolerance (`teacher_tolerance` units of Wilks' W = 2 n x mean NLL),
with Wilson intervals: the rate a search misses the maximiser, as a function of its size.

With `--continued`, the searches are instead the first C starts each run to convergence
(`screen = steps`: no screening, every start continued) at C = 10, 20, 40 and 80 (nested), the
variant the screened searches suggested (a larger screened search can select a worse basin).
Rows go to their own file and also carry each fit's TV, Hellinger and sqrt(KL) distance to
the teacher, so the multi/single ratio can be read against the budget.

Nothing here enters the book; the figures are quoted in a closing note. Usage:

    python scripts/restart_search_study.py {ar,mlp} [--seeds 20] [--continued] [--out DIR]

Each seed takes about 35 s (ar) or 55 s (mlp) on one core; rows are appended as they finish,
so an interrupted study resumes where it stopped.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from dataclasses import replace
from itertools import pairwise
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from multisource.experiments.sweep import (
    NetworkFamily,
    NetworkSweep,
    distances,
    estimator_classes,
    fresh_search,
    setting_rng,
)
from multisource.models.split_fit import fit_from, fit_with_rule, gaussian_in_box
from multisource.pooling.evaluate import wilson
from multisource.readings.sweep_stats import ratio_interval

BUDGETS = (15, 40, 80)
SEARCHES = ("rule", *(f"B{b}" for b in BUDGETS))
CONTINUED = (10, 20, 40, 80)
SCREENED = {"block": 5, "screen": 200, "min_blocks": 2, "max_blocks": 3}
CONTINUED_SEARCHES = tuple(f"C{c}" for c in CONTINUED)


def family(name: str) -> tuple[NetworkSweep, NetworkFamily]:
    """The book profile and the model family of `name` ('ar' or 'mlp')."""
    if name == "ar":
        from multisource.experiments.autoregressive import NEURAL_FAMILY, NEURAL_PROFILES
        return NEURAL_PROFILES["book"], NEURAL_FAMILY
    from multisource.experiments.energy import MLP_PROFILES, SPIN_FAMILY
    return MLP_PROFILES["book"], SPIN_FAMILY


def seed_rows(config: NetworkSweep, fam: NetworkFamily, seed: int, continued: bool = False
              ) -> list[dict]:
    """Mean training NLL of every search, the teacher start and the fresh block, per estimator,
    for one seed of the default setting (the sweep's own data and starts). `continued`: the
    searches that continue every start (`CONTINUED_SEARCHES`) instead of the screened ones."""
    task = {"K": config.K_default, "n": config.n_default, "beta_sim": config.beta_default,
            "seed": seed}
    n = int(task["n"])
    rng = setting_rng(config.base_seed, seed, task)
    torch_seed = int(rng.integers(2**62))
    spec = fam.spec(config, task["K"], task["beta_sim"])
    teacher = fam.teacher(spec, torch.Generator().manual_seed(torch_seed))
    truth = fam.probs(spec, teacher)
    counts = fam.sample(spec, teacher, n, rng)
    rows = []
    for name, model in estimator_classes(spec):
        start = teacher if model.shared_units else fam.as_separate(teacher)
        problem = fam.problem(model, counts)
        at_teacher = fit_from(problem, start, config.steps, tolerance=config.tolerance)
        generator = torch.Generator().manual_seed(torch_seed + 1)
        size = max(BUDGETS + CONTINUED)
        starts = gaussian_in_box(fam.shapes(model, size), fam.box, config.init_scale, generator)
        extra = gaussian_in_box(fam.shapes(model, size), fam.box, config.init_scale, generator)
        rule = config.rule(n) if continued else replace(config.rule(n), **SCREENED)
        cache: dict = {}
        if continued:
            every = replace(rule, screen=rule.steps, min_blocks=1, max_blocks=1)
            fits = {f"C{c}": fit_with_rule(problem, starts, extra, replace(every, block=c),
                                           cache) for c in CONTINUED}
        else:
            fits = {"rule": fit_with_rule(problem, starts, extra, rule, cache)}
            for b in BUDGETS:
                fits[f"B{b}"] = fit_with_rule(
                    problem, starts, extra, replace(rule, block=b, min_blocks=1, max_blocks=1),
                    cache)
        fresh = fresh_search(config, fam, model, problem, n, torch_seed)
        row = {"seed": seed, "estimator": name, "n": n,
               "teacher": at_teacher.train_nll, "fresh": fresh.train_nll,
               **{k: f.train_nll for k, f in fits.items()}}
        if continued:
            for key, fit in [*fits.items(), ("teacher", at_teacher), ("fresh", fresh)]:
                for metric, value in distances(fam.probs(model, fit.params), truth).items():
                    row[f"{key}_{metric}"] = value
        rows.append(row)
    return rows


def miss_rate(rows: list[dict], search: str, better: str, tolerance: float,
              with_teacher: bool = False) -> str:
    """'hits/total [Wilson 95%]': how often `better` beats `search` (with the teacher start
    added to the search when `with_teacher`) by more than `tolerance` units of W."""
    hits = 0
    for r in rows:
        fit = min(r[search], r["teacher"]) if with_teacher else r[search]
        hits += 2 * r["n"] * (fit - r[better]) > tolerance
    low, high = wilson(hits, len(rows))
    return f"{hits}/{len(rows)} [{low:.2f}, {high:.2f}]"


def summary(rows: list[dict], tolerance: float, searches: tuple[str, ...] = SEARCHES
            ) -> list[str]:
    """Per estimator and search: how often the teacher start, and the fresh block, beat the
    search (and the search with the teacher start added) by more than `tolerance` W."""
    lines = []
    for estimator in ("multi", "single"):
        these = [r for r in rows if r["estimator"] == estimator]
        for search in searches:
            lines.append(
                f"{estimator:6s} {search:5s} teacher beats search "
                f"{miss_rate(these, search, 'teacher', tolerance)}; fresh beats search "
                f"{miss_rate(these, search, 'fresh', tolerance)}; fresh beats search + teacher "
                f"{miss_rate(these, search, 'fresh', tolerance, with_teacher=True)}")
    return lines


def budget_lines(rows: list[dict], tolerance: float) -> list[str]:
    """For the continued searches: how often doubling the budget finds a fit more likely by
    more than `tolerance` W (per estimator), and the multi/single ratio of the mean distance
    to the teacher at each budget (Student-t interval over paired seeds)."""
    lines = []
    for estimator in ("multi", "single"):
        these = [r for r in rows if r["estimator"] == estimator]
        for small, large in pairwise(CONTINUED_SEARCHES):
            lines.append(f"{estimator:6s} {large} beats {small} "
                         f"{miss_rate(these, small, large, tolerance)}")
    by_seed = {(r["seed"], r["estimator"]): r for r in rows}
    seeds = sorted({r["seed"] for r in rows if (r["seed"], "single") in by_seed
                    and (r["seed"], "multi") in by_seed})
    for metric in ("tv", "hellinger", "sqrt_kl") if len(seeds) > 1 else ():
        parts = []
        for search in (*CONTINUED_SEARCHES, "teacher", "fresh"):
            multi = [by_seed[(s, "multi")][f"{search}_{metric}"] for s in seeds]
            single = [by_seed[(s, "single")][f"{search}_{metric}"] for s in seeds]
            ratio, low, high = ratio_interval(np.array(multi), np.array(single))
            parts.append(f"{search} {ratio:.3f} [{low:.3f}, {high:.3f}]")
        lines.append(f"ratio {metric} ({len(seeds)} seeds): " + "; ".join(parts))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("family", choices=("ar", "mlp"))
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--continued", action="store_true",
                        help="continue every start to convergence (C10 to C80)")
    parser.add_argument("--out", type=Path, default=Path("_build/studies"))
    args = parser.parse_args()
    if args.seeds < 1:
        parser.error(f"--seeds must be at least 1, got {args.seeds}")
    config, fam = family(args.family)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"restart_search_{args.family}" + ("_continued" if args.continued else "")
    path = args.out / f"{stem}.jsonl"
    done = [json.loads(line) for line in path.open()] if path.exists() else []
    torch.set_num_threads(1)
    with threadpool_limits(1), path.open("a") as sink:
        for seed in range(args.seeds):
            if any(r["seed"] == seed for r in done):
                continue
            started = time.perf_counter()
            rows = seed_rows(config, fam, seed, args.continued)
            for row in rows:
                sink.write(json.dumps(row) + "\n")
            sink.flush()
            done += rows
            print(f"seed {seed}: {time.perf_counter() - started:.1f} s", flush=True)
    done = [r for r in done if r["seed"] < args.seeds]
    with (args.out / f"{stem}.csv").open("w", newline="") as table:
        writer = csv.DictWriter(table, fieldnames=list(done[0]))
        writer.writeheader()
        writer.writerows(done)
    searches = CONTINUED_SEARCHES if args.continued else SEARCHES
    print("\n".join(summary(done, config.teacher_tolerance, searches)))
    if args.continued:
        print("\n".join(budget_lines(done, config.teacher_tolerance)))


if __name__ == "__main__":
    main()
