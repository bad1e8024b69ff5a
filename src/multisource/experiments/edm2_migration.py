"""One-off migration of chapter 7's stored rows into the converged design's extension rule.

The converged design's `book` rows were computed in three runs before its extension rule
existed: the base run (`edm2_converged`, every model to its rule or its cap) and two runs that
retrained, alone, the models the cap had stopped before their rule fired (`edm2_extension`:
a 4x cap; `edm2_extension_grid`: the K = 10 model and its single-source models on the grid
extended past its last step). The extension rule (`edm2_converged.extended_cap_steps`) gives
each such run exactly that longer trajectory, so the rows it would compute are already stored:

* a (seed, model) run whose rule fired within the base cap: the base run's rows (a retrained
  replicate of it in an extension table is not used: the rule would not have extended it);
* a run the base cap stopped: the rows of the extension table in which its rule fired (curve
  and scored rows), with `cap_step` set to its extended cap and `extended` True;
* a run whose rule fired in no table: an InputError (the rule's rows are not stored).

The extension tables trained those runs alone rather than inside the seed's stack, which is
the same trajectory up to floating-point rounding of the batched arithmetic (see
tests/test_edm2_converged.py). The new table's sidecar is the runner's, stamped with the
current config and code, plus a `migration` record naming the source tables by their
csv_sha256 and the commit that stores them (`git show COMMIT:PATH` gives them back). The
source tables are removed from the working tree; run once, at a clean commit:
`python -m multisource.experiments.edm2_migration`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path
from typing import Any

import pandas as pd

from multisource.common.paths import RESULTS_DIR
from multisource.common.provenance import (
    atomic_write_bytes,
    atomic_write_text,
    code_hash,
    code_modules,
    git_commit,
    provenance_record,
    sha256_bytes,
)
from multisource.common.validation import InputError
from multisource.experiments import edm2_converged as converged
from multisource.experiments import get

NAME = converged.NAME
EXTENSIONS = ("edm2_extension", "edm2_extension_grid")
RUN_KINDS = ("curve", "multi", "single")
TEXT = ("model", "class_name", "grid_hex", "nll_bits_hex", "classes", "group", "level",
        "classifier_sha256", "extension_extra_grid")
RULE = ("a (seed, model) run whose stopping rule fired within its base cap keeps the base "
        "run's rows; a run the base cap stopped takes the rows of the extension run in which "
        "its rule fired, with cap_step its extended cap and extended True")
ALONE = ("extended runs were trained alone (a stack of one model), not inside their seed's "
         "stack: the same trajectory up to floating-point rounding of the batched arithmetic")


def read_table(path: Path) -> pd.DataFrame:
    """A stored table with its text columns as text (floats read back exactly: pandas >= 3)."""
    return pd.read_csv(path, dtype=dict.fromkeys(TEXT, str))


def _run_key(rows: pd.DataFrame) -> pd.Series:
    """'seed|model' of each row ('' for rows of no run: the similarity task's)."""
    runs = rows["kind"].isin(RUN_KINDS)
    seeds = pd.to_numeric(rows["seed"], errors="coerce").fillna(-1).astype(int).astype(str)
    return (seeds + "|" + rows["model"].astype(str)).where(runs, "")


def _fired(rows: pd.DataFrame) -> set[str]:
    """The runs in `rows` whose stopping rule fired."""
    runs = rows[rows["kind"].isin(RUN_KINDS)]
    reached = runs["plateau_reached"].map(lambda v: str(v) == "True")
    return set(_run_key(runs)[reached.to_numpy()])


def migrate_rows(base: pd.DataFrame, extensions: dict[str, pd.DataFrame],
                 config: converged.Edm2ConvergedConfig) -> tuple[pd.DataFrame, dict[str, int]]:
    """The rows of the converged design with its extension rule, from the base table and the
    extension tables (by name), and how many runs came from each source (see the module)."""
    base_keys = _run_key(base)
    runs = [k for k in dict.fromkeys(base_keys) if k]
    fired_base = _fired(base)
    fired = {name: _fired(frame) for name, frame in extensions.items()}
    source: dict[str, str] = {}
    for key in runs:
        if key in fired_base:
            source[key] = NAME
            continue
        found = [name for name in extensions if key in fired[name]]
        seed, model = key.split("|")
        if not found:
            raise InputError(f"run seed {seed} model {model} is still capped after the "
                             f"extensions (its rule fired in no table): the extension rule's "
                             f"rows are not stored; run `multisource run {NAME}`")
        if len(found) > 1:
            raise InputError(f"run seed {seed} model {model} fired in more than one extension "
                             f"table ({', '.join(found)}): which one to keep is not defined")
        source[key] = found[0]
    kept = base[(base_keys == "") | base_keys.map(lambda k: source.get(k) == NAME)].copy()
    kept["extended"] = kept["kind"].isin(RUN_KINDS).map({True: False, False: None})
    pieces = [kept]
    for name, frame in extensions.items():
        keys = _run_key(frame)
        taken = frame[keys.map(lambda k, n=name: bool(k) and source.get(k) == n)].copy()
        _check_extended(taken, config, name)
        taken["cap_step"] = [converged.extended_cap_steps(config, int(k)) for k in taken["K"]]
        taken["extended"] = True
        pieces.append(taken)
    out = pd.concat(pieces, ignore_index=True)
    out = out.reindex(columns=[*base.columns, "extended"])
    order = pd.to_numeric(out["seed"], errors="coerce").fillna(-1)
    out = out.iloc[order.argsort(kind="stable")].reset_index(drop=True)
    counts = {name: sum(1 for s in source.values() if s == name)
              for name in (NAME, *extensions)}
    return out, counts


def _check_extended(rows: pd.DataFrame, config: converged.Edm2ConvergedConfig,
                    name: str) -> None:
    """Refuse rows the extension rule would not compute: steps off its grid, or a stop past
    the run's extended cap."""
    grid = set(converged.full_grid(config))
    off = sorted(set(rows["step"].astype(int)) - grid)
    if off:
        raise InputError(f"{name}: steps {off} are not on the extension rule's evaluation grid")
    late = rows[rows["stop_step"].astype(int) > [converged.extended_cap_steps(config, int(k))
                                                 for k in rows["K"]]]
    if len(late):
        raise InputError(f"{name}: run seed {late['seed'].iloc[0]} model {late['model'].iloc[0]} "
                         f"stopped past its extended cap")


def _source(name: str, profile: str, results_dir: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """A source table and its sidecar, refused unless the bytes match the sidecar."""
    csv_path = results_dir / name / f"{profile}.csv"
    try:
        data = csv_path.read_bytes()
        record = json.loads(csv_path.with_suffix(".json").read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise InputError(f"source table {csv_path} is missing or unreadable "
                         f"({type(error).__name__})") from error
    if record.get("migration"):
        raise InputError(f"{csv_path} is already migrated")
    if record.get("csv_sha256") != sha256_bytes(data):
        raise InputError(f"source table {csv_path} does not match its sidecar's csv_sha256")
    return read_table(csv_path), record


def migrate(profile: str = "book", *, results_dir: Path | None = None,
            require_clean: bool = True) -> dict[str, Any]:
    """Write the migrated table of `edm2_converged` at `profile` with its sidecar, remove the
    extension tables, and return the sidecar."""
    results_dir = RESULTS_DIR if results_dir is None else results_dir
    commit = git_commit()
    if require_clean and (commit == "unknown" or commit.endswith("-dirty")):
        raise InputError(f"the migration needs a clean commit (it names the commit that stores "
                         f"its sources); git says {commit}")
    experiment = get(NAME)
    config = experiment.config(profile)
    tables = {name: _source(name, profile, results_dir) for name in (NAME, *EXTENSIONS)}
    frame, counts = migrate_rows(tables[NAME][0], {n: tables[n][0] for n in EXTENSIONS},
                                 config)
    csv_bytes = frame.to_csv(index=False).encode()
    sources = [{"experiment": name, "path": f"data/results/{name}/{profile}.csv",
                "runs_used": counts[name],
                **{k: record.get(k) for k in ("csv_sha256", "code_hash", "config_hash",
                                              "git_commit", "wall_time_s", "device")}}
               for name, (_, record) in tables.items()]
    base_record = tables[NAME][1]
    record = provenance_record(
        experiment=NAME, profile=profile, config=config,
        device=", ".join(dict.fromkeys(str(r["device"]) for _, r in tables.values())),
        wall_time_s=sum(float(r.get("wall_time_s", 0.0)) for _, r in tables.values()),
        extra={"csv_sha256": sha256_bytes(csv_bytes), "n_rows": len(frame),
               "n_tasks": len(experiment.tasks(config)), "segments": base_record.get("segments"),
               "code_hash": code_hash(experiment.code_module),
               "code_modules": code_modules(experiment.code_module),
               "environment": base_record.get("environment"),
               "migration": {"sources": sources, "sources_commit": commit, "rule": RULE,
                             "runs": counts, "alone": ALONE}})
    target = results_dir / NAME / f"{profile}.csv"
    atomic_write_bytes(target, csv_bytes)
    atomic_write_text(target.with_suffix(".json"), json.dumps(record, indent=2) + "\n")
    for name in EXTENSIONS:
        for suffix in (".csv", ".json"):
            (results_dir / name / f"{profile}{suffix}").unlink()
        with contextlib.suppress(OSError):
            (results_dir / name).rmdir()     # only when nothing else is stored there
    return record


def main(argv: list[str] | None = None) -> int:
    """Run the migration once (`python -m multisource.experiments.edm2_migration`)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="book")
    args = parser.parse_args(argv)
    record = migrate(args.profile)
    print(f"migrated {NAME}[{args.profile}]: runs {record['migration']['runs']}, "
          f"csv_sha256 {record['csv_sha256']}, code {record['code_hash']}, "
          f"config {record['config_hash']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
