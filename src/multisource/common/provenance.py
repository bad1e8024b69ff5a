"""Provenance of computed results: config and code hashes, environment records, atomic writes.

A results table `data/results/<experiment>/<profile>.csv` is valid only next to its
`<profile>.json` sidecar, whose `config_hash` matches the code's current config for that
profile, whose `code_hash` matches the current source of the modules that compute it, and
whose `csv_sha256` matches the table's bytes. Anything else is not shown.

The code hash of an experiment covers the canonical syntax tree of its module and of every
`multisource` module it imports, directly or through others (found statically, so imports inside
functions count), except the infrastructure modules in `INFRASTRUCTURE_MODULES`: they check,
store and display numbers but never compute them, and hashing them would make every change to
the command line invalidate hours of training.

The canonical tree leaves out what cannot change a number: docstrings, comments, layout, how
imports are grouped and ordered, where a module lives and what it is called. A `multisource`
import keeps the names it binds but not the module path it binds them from, and the hash is
taken over the multiset of module trees, not their names; so moving a module to another
package, or renaming it, leaves stored results current, while editing any statement makes them
stale. The tree is written out field by field, leaving out fields that are empty (None or []),
so the hash is the same under Python 3.11 to 3.13, whose `ast.dump` differs by such fields.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from multisource import __version__
from multisource.common.paths import PACKAGE_DIR, REPO_ROOT

# Modules that validate, store, schedule or display results but never compute them: the command
# line, the book machinery and the foundations (`multisource.common`), the experiments' registry,
# runner and restamp.
INFRASTRUCTURE_PACKAGES: tuple[str, ...] = ("multisource.cli", "multisource.book",
                                            "multisource.common")
INFRASTRUCTURE_MODULES: frozenset[str] = frozenset({
    "multisource", "multisource.__main__", "multisource.experiments",
    "multisource.experiments.runner", "multisource.experiments.restamp",
    "multisource.experiments.workers",
})


def is_infrastructure(module: str) -> bool:
    """Whether `module` only checks, stores, schedules or displays numbers."""
    return module in INFRASTRUCTURE_MODULES or any(
        module == package or module.startswith(package + ".")
        for package in INFRASTRUCTURE_PACKAGES)


def config_to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a (frozen dataclass) config; tuples become lists."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return json.loads(json.dumps(dataclasses.asdict(config)))
    if isinstance(config, dict):
        return json.loads(json.dumps(config))
    raise TypeError(f"config must be a dataclass instance or dict, got {type(config).__name__}")


def config_hash(experiment: str, config: Any) -> str:
    """A short stable hash of the experiment name and its config (sorted-key JSON)."""
    payload = json.dumps({"experiment": experiment, "config": config_to_dict(config)},
                         sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _module_file(module: str) -> Path | None:
    """The source file of a module (package -> its __init__.py), or None.

    `multisource` modules are found in the source tree; any other module only when it is
    already imported (an experiment registered from outside the package, as in tests).
    """
    parts = module.split(".")
    if parts[0] != "multisource":
        loaded = sys.modules.get(module)
        source = getattr(loaded, "__file__", None)
        return Path(source) if source and source.endswith(".py") else None
    base = PACKAGE_DIR.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


# Import sets and normalised sources, keyed by the file's content: `status` hashes the same
# modules dozens of times, and parsing them again each time made it take 20 s.
_IMPORTS: dict[tuple[str, str], frozenset[str]] = {}
_NORMALISED: dict[str, str] = {}


def _content_key(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _imported_modules(module: str, path: Path) -> set[str]:
    """`multisource` modules named by the import statements anywhere in one source file
    (cached while the file is unchanged)."""
    key = (module, _content_key(path))
    if key not in _IMPORTS:
        _IMPORTS[key] = frozenset(_parse_imports(module, path))
    return set(_IMPORTS[key])


def _parse_imports(module: str, path: Path) -> set[str]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {m for m in found if m.split(".")[0] == "multisource" and _module_file(m)}


def code_modules(module: str) -> list[str]:
    """`module` and the `multisource` modules it imports, transitively, minus infrastructure.

    A package's `__init__` counts when something imports from the package, and so do the
    parent packages of every module (Python runs them on import).
    """
    if _module_file(module) is None:
        raise ValueError(f"module must be an importable module with a source file, got "
                         f"{module!r}")
    seen: set[str] = set()
    todo = [module]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        parents = [".".join(current.split(".")[:i]) for i in range(1, current.count(".") + 1)]
        todo.extend(parents)
        todo.extend(_imported_modules(current, _module_file(current)))  # type: ignore[arg-type]
    return sorted(m for m in seen if not is_infrastructure(m) or m == module)


def normalised_source(path: Path) -> str:
    """The canonical syntax tree of a module, as text (cached while the file is unchanged):
    docstrings dropped, `multisource` import paths dropped, empty fields left out."""
    key = _content_key(path)
    if key not in _NORMALISED:
        _NORMALISED[key] = canonical_tree(path.read_text(), filename=str(path))
    return _NORMALISED[key]


INTERNAL_MODULE = "<multisource>"


def canonical_tree(source: str, filename: str = "<source>") -> str:
    """The canonical form of a module's source that the code hash is taken over."""
    tree = ast.parse(source, filename=filename)
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
        elif isinstance(node, ast.ImportFrom) and _is_internal(node.module, node.level):
            node.module, node.level = INTERNAL_MODULE, 0
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if _is_internal(alias.name, 0) and alias.asname:
                    alias.name = INTERNAL_MODULE
    for node in ast.walk(tree):
        for field, value in ast.iter_fields(node):
            if isinstance(value, list) and value and isinstance(value[0], ast.stmt):
                setattr(node, field, _sorted_import_runs(value))
    return _stable_dump(tree)


def _sorted_import_runs(statements: list[ast.stmt]) -> list[ast.stmt]:
    """Each run of consecutive import statements as a sorted list of one-name imports: how
    imports are grouped and ordered (an import sorter's business) changes no number."""
    result: list[ast.stmt] = []
    run: list[ast.stmt] = []
    for statement in [*statements, None]:
        if isinstance(statement, ast.Import | ast.ImportFrom):
            for alias in statement.names:
                single = ast.Import(names=[alias]) if isinstance(statement, ast.Import) \
                    else ast.ImportFrom(module=statement.module, names=[alias],
                                        level=statement.level)
                run.append(single)
            continue
        result.extend(sorted(run, key=_stable_dump))
        run = []
        if statement is not None:
            result.append(statement)
    return result


def _is_internal(module: str | None, level: int) -> bool:
    return level > 0 or (module or "").split(".")[0] == "multisource"


def _stable_dump(node: Any) -> str:
    """Like `ast.dump(node)`, but without fields that are None or empty lists (`type_params`
    and friends, which newer Pythons add), so the text does not depend on the version."""
    if isinstance(node, ast.AST):
        fields = []
        for name in node._fields:
            value = getattr(node, name, None)
            if value is None or value == []:
                continue
            fields.append(f"{name}={_stable_dump(value)}")
        return f"{type(node).__name__}({', '.join(fields)})"
    if isinstance(node, list):
        return "[" + ", ".join(_stable_dump(item) for item in node) + "]"
    return repr(node)


def _is_empty_module(canonical: str) -> bool:
    return canonical in ("Module()", "Module(body=[Pass()])")


def module_source_file(module: str) -> Path | None:
    """The source file of a module (see `code_modules`), or None when it has none."""
    return _module_file(module)


def modules_hash(modules: list[str]) -> str:
    """A short SHA-256 of the canonical sources of `modules`, as a multiset: the order and the
    names of the modules do not count, and modules with nothing in them (a package's
    docstring-only `__init__`) are left out."""
    digests = []
    for name in modules:
        path = _module_file(name)
        if path is None:
            raise ValueError(f"module {name!r} has no source file")
        canonical = normalised_source(path)
        if not _is_empty_module(canonical):
            digests.append(hashlib.sha256(canonical.encode()).hexdigest())
    return sources_hash(digests)


def sources_hash(module_digests: list[str]) -> str:
    """The code hash of a closure given the SHA-256 of each module's canonical tree."""
    digest = hashlib.sha256()
    for item in sorted(module_digests):
        digest.update(item.encode() + b"\n")
    return digest.hexdigest()[:16]


def code_hash(module: str) -> str:
    """A short SHA-256 of the normalised source of every module in `code_modules(module)`."""
    return modules_hash(code_modules(module))


# Generated outputs: rewriting them does not make the code that produced them "dirty".
OUTPUT_PATHS = ("notebooks/*.ipynb", "book/_generated", "data/results", "benchmarks/results")


def git_commit() -> str:
    """HEAD, suffixed `-dirty` when tracked inputs (not OUTPUT_PATHS) differ; or `unknown`."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, check=True,
                                capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                ".", *(f":!{p}" for p in OUTPUT_PATHS)],
                               cwd=REPO_ROOT, check=True, capture_output=True, text=True,
                               timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit


def environment_record() -> dict[str, str]:
    """Versions of the interpreter and the numerical stack, and the thread counts the run used
    (a reduction split over another number of threads can differ in the last bits, which an
    iterative fit can amplify: a rerun that is to match the table byte for byte needs them)."""
    import numpy
    import pandas
    import torch
    from threadpoolctl import threadpool_info

    blas = sorted({f"{pool['internal_api']}:{pool['num_threads']}" for pool in threadpool_info()
                   if pool["user_api"] == "blas"})
    return {
        "multisource": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "numpy": numpy.__version__,
        "pandas": pandas.__version__,
        "torch": torch.__version__,
        "cuda": str(torch.version.cuda),
        "torch_threads": str(torch.get_num_threads()),
        "blas_threads": ",".join(blas) or "none loaded",
    }


def provenance_record(*, experiment: str, profile: str, config: Any, device: str,
                      wall_time_s: float, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything needed to say where a result came from."""
    record = {
        "experiment": experiment,
        "profile": profile,
        "config": config_to_dict(config),
        "config_hash": config_hash(experiment, config),
        "git_commit": git_commit(),
        "device": device,
        "wall_time_s": round(wall_time_s, 3),
        "created_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "environment": environment_record(),
    }
    if extra:
        record.update(extra)
    return record


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see either the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates owner-only files; results are ordinary files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Text version of `atomic_write_bytes` (UTF-8)."""
    atomic_write_bytes(path, text.encode())


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of a byte string."""
    return hashlib.sha256(data).hexdigest()
