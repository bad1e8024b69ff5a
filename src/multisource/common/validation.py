"""Input checks that fail with one line naming the parameter and the allowed range."""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import NoReturn


class InputError(ValueError):
    """Bad user input. The message is one line: the parameter and what is allowed."""


def check_int(name: str, value: object, *, minimum: int | None = None,
              maximum: int | None = None) -> int:
    """Return `value` as an int, or raise InputError if it is not an integer in range."""
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            as_float = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise InputError(f"{name} must be an integer, got {value!r}") from None
        if not as_float.is_integer():
            raise InputError(f"{name} must be an integer, got {value!r}")
        value = int(as_float)
    _check_bounds(name, value, minimum, maximum, kind="an integer")
    return int(value)


def check_float(name: str, value: object, *, minimum: float | None = None,
                maximum: float | None = None) -> float:
    """Return `value` as a finite float, or raise InputError if it is outside [minimum, maximum]."""
    try:
        as_float = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(as_float):
        raise InputError(f"{name} must be a finite number, got {value!r}")
    _check_bounds(name, as_float, minimum, maximum, kind="a number")
    return as_float


def check_choice(name: str, value: str, choices: Iterable[str]) -> str:
    """Return `value` if it is one of `choices`, else raise InputError listing them."""
    allowed = list(choices)
    if value not in allowed:
        raise InputError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
    return value


def _check_bounds(name: str, value: float, minimum: float | None, maximum: float | None,
                  kind: str) -> None:
    if minimum is not None and maximum is not None:
        if not minimum <= value <= maximum:
            raise InputError(f"{name} must be {kind} in [{minimum}, {maximum}], got {value}")
    elif minimum is not None and value < minimum:
        raise InputError(f"{name} must be {kind} >= {minimum}, got {value}")
    elif maximum is not None and value > maximum:
        raise InputError(f"{name} must be {kind} <= {maximum}, got {value}")


def _writable_directory(directory: Path) -> bool:
    """True when a file can really be created in `directory` (a probe, not permission bits:
    root ignores the bits, and /proc or a read-only mount refuse whatever they say)."""
    try:
        fd, probe = tempfile.mkstemp(dir=directory, prefix=".multisource-probe-")
    except OSError:
        return False
    os.close(fd)
    os.unlink(probe)
    return True


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_output_path(name: str, value: object, *, kind: str = "file") -> Path:
    """A path this process can write as a `kind` ("file" or "dir"), checked before any work.

    A file may replace an existing file but not a directory; a directory may exist (as a
    directory) or be created under the nearest existing ancestor, which must be writable.
    """
    if kind not in ("file", "dir"):
        raise ValueError(f"kind must be 'file' or 'dir', got {kind!r}")
    if not isinstance(value, str | os.PathLike) or not str(value).strip():
        raise InputError(f"{name} must be a non-empty path, got {value!r}")
    path = Path(value).expanduser().absolute()
    if kind == "file" and path.is_dir():
        raise InputError(f"{name} must be a file path, but {value} is a directory")
    if kind == "dir" and path.exists() and not path.is_dir():
        raise InputError(f"{name} must be a directory, but {value} is an existing file")
    anchor = _nearest_existing(path if kind == "dir" else path.parent)
    if not anchor.is_dir():
        raise InputError(f"{name} cannot be created: {anchor} is not a directory")
    if not _writable_directory(anchor):
        raise InputError(f"{name} is not writable: cannot create files in {anchor}")
    return path


def check_input_file(name: str, value: object, *, suffixes: Iterable[str] = ()) -> Path:
    """An existing, readable regular file (optionally with one of `suffixes`)."""
    if not isinstance(value, str | os.PathLike) or not str(value).strip():
        raise InputError(f"{name} must be a non-empty path, got {value!r}")
    path = Path(value).expanduser()
    allowed = tuple(suffixes)
    if not path.is_file():
        raise InputError(f"{name} must be an existing file, got {value}")
    if not os.access(path, os.R_OK):
        raise InputError(f"{name} is not readable: {value}")
    if allowed and path.suffix not in allowed:
        raise InputError(f"{name} must be a {' or '.join(allowed)} file, got {value}")
    return path


def available_memory_bytes() -> int | None:
    """Memory the kernel says can be allocated without swapping (MemAvailable), or None."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def human_bytes(value: float) -> str:
    """`1.5 GB`-style size (powers of 1000)."""
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if abs(value) < 1000 or unit == "PB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def human_seconds(value: float) -> str:
    """`45 s`, `12 min`, `3.5 h` or `2.0 days`."""
    if value < 120:
        return f"{value:.0f} s"
    if value < 7200:
        return f"{value / 60:.0f} min"
    if value < 172800:
        return f"{value / 3600:.1f} h"
    return f"{value / 86400:.1f} days"


# Estimates are rough: work expected to need more than this share of the free memory is refused.
MEMORY_SHARE = 0.75


def check_memory(what: str, estimated_bytes: float, advice: str) -> None:
    """Refuse work whose estimated peak memory exceeds MEMORY_SHARE of the available memory."""
    available = available_memory_bytes()
    if available is not None and estimated_bytes > MEMORY_SHARE * available:
        raise InputError(f"{what} needs about {human_bytes(estimated_bytes)} of memory, more "
                         f"than {MEMORY_SHARE:.0%} of the {human_bytes(available)} available "
                         f"on this machine; {advice}")


class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (no usage dump) and exit status 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"multisource: error: {message}\n")
        raise SystemExit(2)
