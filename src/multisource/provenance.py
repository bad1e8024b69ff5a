"""Provenance of computed results: config hashes, environment records, atomic writes.

A results table `data/results/<experiment>/<profile>.csv` is valid only next to its
`<profile>.json` sidecar, whose `config_hash` matches the code's current config for that
profile and whose `csv_sha256` matches the table's bytes. Anything else is not shown.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import subprocess
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from multisource import __version__
from multisource.paths import REPO_ROOT


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
    """Versions of the interpreter and the numerical stack."""
    import numpy
    import pandas
    import torch

    return {
        "multisource": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "numpy": numpy.__version__,
        "pandas": pandas.__version__,
        "torch": torch.__version__,
        "cuda": str(torch.version.cuda),
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
