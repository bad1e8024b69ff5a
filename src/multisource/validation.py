"""Input checks that fail with one line naming the parameter and the allowed range."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Iterable
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


class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (no usage dump) and exit status 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"multisource: error: {message}\n")
        raise SystemExit(2)
