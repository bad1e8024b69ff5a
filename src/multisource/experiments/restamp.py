"""Verified restamps: carry stored results over a change of code that cannot change them.

The code hash guards every stored table: any edit to the modules that compute it makes the
table stale. A behaviour-preserving change (a module moved to another package, a helper
renamed) should not cost hours of recomputation, but it must not be waved through either.
`restamp` records the current code hash in a table's sidecar only after evidence that the
table is still what the current code computes:

- a **static proof**, where the sidecar names a clean commit: the source of every module the
  stored hash covered is read back from that commit (`git show`), its hash under the scheme
  that stamped it must equal the stored hash (so this is the code that ran), and its canonical
  tree must equal the current code's (`provenance.canonical_tree`: only docstrings, comments,
  layout and module paths may differ);
- a **sample rerun**, unless it would take longer than `budget_s` (the stored run's mean task
  time says how long a task takes): the cheapest `sample` tasks (by the experiment's
  `task_cost`, else the first in task order; deterministic) are run again under the current
  code and their CSV lines compared with the stored table's.

Without a static proof the rerun decides: every line byte-identical, or no restamp. With one,
the rerun's outcome is recorded (identical, or the largest relative difference: last-bit noise
of a reduction on this machine, since the code is shown unchanged). A refusal changes nothing.
What was verified is appended to the sidecar's `restamps` list: old and new hash, the commit
compared, the tasks rerun and their outcome, the seconds it took.
"""

from __future__ import annotations

import ast
import hashlib
import json
import math
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from multisource.common.paths import REPO_ROOT
from multisource.common.provenance import (
    atomic_write_text,
    canonical_tree,
    code_hash,
    code_modules,
    git_commit,
    sources_hash,
)
from multisource.common.validation import InputError
from multisource.experiments import get
from multisource.experiments.runner import _csv_path, _frame, stored_state, task_key

DEFAULT_SAMPLE = 2
DEFAULT_BUDGET_S = 900.0


@dataclass(frozen=True)
class RestampOutcome:
    """What `restamp` did: `restamped` False means the table was already current."""

    restamped: bool
    message: str
    record: dict[str, Any]


def restamp(name: str, profile: str = "book", *, sample: int = DEFAULT_SAMPLE,
            budget_s: float = DEFAULT_BUDGET_S, results_dir: Path | None = None,
            require_clean: bool = True) -> RestampOutcome:
    """Verify the stored table of `name` at `profile` under the current code, then restamp it.

    Raises InputError (one line, nothing changed) when there is nothing to restamp or the
    evidence does not hold.
    """
    if not isinstance(sample, int) or isinstance(sample, bool) or not 2 <= sample <= 1000:
        raise InputError(f"sample must be an integer in [2, 1000]; got {sample!r}")
    if not budget_s >= 0:
        raise InputError(f"budget_s must be a number >= 0; got {budget_s!r}")
    experiment = get(name)
    state = stored_state(name, profile, results_dir=results_dir)
    csv_path = _csv_path(experiment, profile, results_dir)
    if state.state == "current":
        return RestampOutcome(False, f"{name}[{profile}] is current (code "
                                     f"{state.record['code_hash']}): nothing to restamp",
                              state.record or {})
    if state.state != "stale-code":
        why = {"missing": "has no stored results",
               "stale-config": "was computed from another config (a restamp only covers a "
                               "change of code)",
               "invalid": f"is invalid ({state.reason})"}[state.state]
        raise InputError(f"cannot restamp {name}[{profile}]: it {why}; rerun `multisource run "
                         f"{name} --profile {profile}`")
    commit = git_commit()
    if require_clean and (commit == "unknown" or commit.endswith("-dirty")):
        raise InputError(f"restamp needs a clean commit (the code it vouches for must be "
                         f"committed); git says {commit}")
    record = dict(state.record or {})
    new_hash = code_hash(experiment.code_module)
    started = time.perf_counter()
    tasks = experiment.tasks(experiment.config(profile))
    mean_task_s = float(record.get("wall_time_s", 0.0)) / max(1, len(tasks))
    try:
        evidence: dict[str, Any] = _static_proof(record, new_hash)
    except InputError as refusal:
        evidence, static_refusal = {}, refusal
    if mean_task_s * min(sample, len(tasks)) <= budget_s:
        evidence.update(_rerun_sample(experiment, profile, csv_path, sample,
                                      decisive=not evidence,
                                      threads=record.get("environment", {}).get(
                                          "torch_threads")))
    elif not evidence:
        raise static_refusal
    else:
        evidence["sample_skipped"] = (f"{min(sample, len(tasks))} tasks of about "
                                      f"{mean_task_s:.0f} s each exceed the budget of "
                                      f"{budget_s:.0f} s")
    entry = {"from_code_hash": record.get("code_hash"), "to_code_hash": new_hash,
             "at_commit": commit, "seconds": round(time.perf_counter() - started, 3),
             "created_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), **evidence}
    record["restamps"] = [*record.get("restamps", []), entry]
    record["code_hash"] = new_hash
    record["code_modules"] = code_modules(experiment.code_module)
    atomic_write_text(csv_path.with_suffix(".json"), json.dumps(record, indent=2) + "\n")
    how = "; ".join(part for part in (
        f"code at {entry['static_commit'][:10]} identical up to docstrings and module paths"
        if "static_commit" in entry else "",
        f"{len(entry['tasks'])} tasks rerun byte-identical" if entry.get("rerun_identical")
        else f"{len(entry['tasks'])} tasks rerun, largest relative difference "
             f"{entry['rerun_max_relative_difference']:.1e}" if "tasks" in entry else "")
        if part)
    return RestampOutcome(True, f"restamped {name}[{profile}]: code {entry['from_code_hash']} "
                                f"-> {new_hash} ({how}; {entry['seconds']:.0f} s)", record)


def sample_tasks(name: str, profile: str, sample: int) -> list[dict[str, Any]]:
    """The tasks a restamp reruns: the `sample` cheapest by the experiment's `task_cost`
    (ties and experiments without one: task order)."""
    experiment = get(name)
    config = experiment.config(profile)
    tasks = list(experiment.tasks(config))
    cost = experiment.task_cost
    order = sorted(range(len(tasks)),
                   key=lambda i: (cost(config, tasks[i]) if cost else 0.0, i))
    return [tasks[i] for i in sorted(order[:sample])]


def _rerun_sample(experiment: Any, profile: str, csv_path: Path, sample: int, *,
                  decisive: bool, threads: str | None = None) -> dict[str, Any]:
    """Rerun the sample and compare each task's CSV lines with the stored table's.

    Decisive (no static proof): InputError unless every task's lines stand, byte for byte, in
    the stored table. Otherwise the outcome is recorded: identical, or the largest relative
    difference from the closest stored row (last-bit noise of a reduction, not a code change,
    since the static proof showed the code unchanged). The tasks run with the thread counts
    the stored run recorded, where it recorded them."""
    import torch
    from threadpoolctl import threadpool_limits

    if threads is not None:
        torch.set_num_threads(int(threads))

    config = experiment.config(profile)
    stored_lines = csv_path.read_text().splitlines()[1:]
    stored = pd.read_csv(csv_path)
    chosen = sample_tasks(experiment.name, profile, sample)
    identical, largest = True, 0.0
    for task in chosen:
        with threadpool_limits(limits=int(threads) if threads is not None else None,
                               user_api="blas"):
            rows = experiment.run_task(config, task, torch.device("cpu"))
        lines = _csv_lines(rows, stored)
        if _contains_block(stored_lines, lines):
            continue
        if decisive:
            raise InputError(f"cannot restamp {experiment.name}[{profile}]: task "
                             f"{task_key(task)} gives rows that differ from the stored table "
                             f"under the current code; rerun `multisource run {experiment.name} "
                             f"--profile {profile}`")
        identical = False
        largest = max(largest, _closest_relative_difference(rows, stored))
    found = {"tasks": [task_key(t) for t in chosen], "rerun_identical": identical}
    if not identical:
        found["rerun_max_relative_difference"] = largest
    return found


def _text(value: Any) -> str:
    """A field as text, with every form of "missing" (None, NaN, empty) alike."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def _closest_relative_difference(rows: list[dict[str, Any]], stored: pd.DataFrame) -> float:
    """Largest over `rows` of the smallest, over stored rows with the same text fields, of the
    largest relative difference in a numeric field (inf when no stored row matches)."""
    numeric = [c for c in stored.columns if stored[c].dtype.kind in "fiu"]
    text = [c for c in stored.columns if c not in numeric]
    worst = 0.0
    for row in rows:
        candidates = stored
        for column in text:
            candidates = candidates[candidates[column].map(_text) == _text(row.get(column))]
        best = float("inf")
        for _, other in candidates.iterrows():
            gaps = [abs(float(row[c]) - float(other[c])) / max(abs(float(other[c])), 1e-300)
                    for c in numeric if c in row and row[c] is not None
                    and not (pd.isna(other[c]) and pd.isna(row[c]))]
            best = min(best, max(gaps, default=0.0))
        worst = max(worst, best)
    return worst


def _csv_lines(rows: list[dict[str, Any]], stored: pd.DataFrame) -> list[str]:
    """The lines `rows` take in a table laid out like `stored` (its columns and dtypes)."""
    frame = _frame([rows])
    if set(frame.columns) - set(stored.columns):
        return []
    frame = frame.reindex(columns=stored.columns)
    for column in stored.columns:
        if stored[column].dtype.kind == "f" and frame[column].dtype.kind in "iub":
            frame[column] = frame[column].astype(float)
    return frame.to_csv(index=False, header=False).splitlines()


def _contains_block(haystack: list[str], block: list[str]) -> bool:
    if not block:
        return False
    first = block[0]
    return any(haystack[i:i + len(block)] == block
               for i, line in enumerate(haystack) if line == first)


def _static_proof(record: dict[str, Any], new_hash: str) -> dict[str, Any]:
    """Compare the code at the commit that computed the table with the current code."""
    commit = str(record.get("git_commit", ""))
    modules = record.get("code_modules")
    if not commit or commit.endswith("-dirty") or commit == "unknown" \
            or not isinstance(modules, list):
        raise InputError("cannot restamp: the sidecar records no clean commit and module list "
                         "to compare with, and a sample rerun exceeds the budget "
                         "(raise --budget to rerun tasks instead)")
    sources = {m: _source_at(commit, m) for m in modules}
    stored_hash = record.get("code_hash")
    if stored_hash not in (legacy_modules_hash(sources), _current_scheme_hash(sources)):
        raise InputError(f"cannot restamp: the code at commit {commit[:10]} does not hash to "
                         f"the stored code hash {stored_hash}, so it is not known what ran")
    if _current_scheme_hash(sources) != new_hash:
        raise InputError(f"cannot restamp: the code changed since commit {commit[:10]} beyond "
                         f"docstrings, comments and module paths; rerun the experiment (or "
                         f"raise --budget so a sample of tasks is rerun and compared)")
    return {"static_commit": commit, "static_modules": len(modules)}


def _source_at(commit: str, module: str) -> str:
    parts = module.split(".")
    candidates = ["src/" + "/".join(parts) + ".py", "src/" + "/".join(parts) + "/__init__.py"]
    for path in candidates:
        result = subprocess.run(["git", "show", f"{commit}:{path}"], cwd=REPO_ROOT,
                                capture_output=True, text=True, timeout=30)
        if result.returncode == 0:
            return result.stdout
    raise InputError(f"cannot restamp: module {module} is not in commit {commit[:10]} "
                     f"(is the history available? a shallow clone lacks it)")


def _current_scheme_hash(sources: dict[str, str]) -> str:
    digests = []
    for module, text in sources.items():
        canonical = canonical_tree(text, filename=module)
        if canonical not in ("Module()", "Module(body=[Pass()])"):
            digests.append(hashlib.sha256(canonical.encode()).hexdigest())
    return sources_hash(digests)


def legacy_modules_hash(sources: dict[str, str]) -> str:
    """The code hash as stamped before module paths were left out of it: module names and
    `ast.dump` of the docstring-free tree, in module-name order. Kept to verify old stamps."""
    digest = hashlib.sha256()
    for name in sorted(sources):
        tree = ast.parse(sources[name])
        for node in ast.walk(tree):
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef
                          | ast.AsyncFunctionDef):
                body = node.body
                if body and isinstance(body[0], ast.Expr) \
                        and isinstance(body[0].value, ast.Constant) \
                        and isinstance(body[0].value.value, str):
                    node.body = body[1:] or [ast.Pass()]
        digest.update(f"{name}\n".encode())
        digest.update(ast.dump(tree, include_attributes=False).encode())
        digest.update(b"\0")
    return digest.hexdigest()[:16]
