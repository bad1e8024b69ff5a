"""Checking a chapter's parameters before any work: the type of the default and the range
declared for each parameter in `PARAMETER_RANGES` (bounds may name other parameters)."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from multisource.book.registry import (
    COMMITTED_PROFILE,
    OPTION_PARAMETERS,
    Chapter,
    chapter_parameters,
)
from multisource.common.validation import InputError


def check_parameters(chapter: Chapter, overrides: Mapping[str, Any], *,
                     profile: str = COMMITTED_PROFILE) -> dict[str, Any]:
    """The overrides that differ from the chapter's defaults, each checked before any work.

    A name must be one of the chapter's parameters (profile and device have their own
    options); a value must have the type of the default (an int is accepted for a float) and
    lie in the range declared for it in PARAMETER_RANGES. Every parameter is checked with the
    overrides applied, so a default that no longer fits a changed parameter (d1 > d) is named.
    """
    defaults = chapter_parameters(chapter)
    changed: dict[str, Any] = {}
    for name, value in overrides.items():
        if name in OPTION_PARAMETERS:
            raise InputError(f"parameter {name} is set with --{name}, not with -p")
        if name not in defaults:
            allowed = ", ".join(n for n in defaults if n not in OPTION_PARAMETERS) or "none"
            raise InputError(f"parameter must be one of the parameters of {chapter.stem} "
                             f"({allowed}); got {name!r}")
        default = defaults[name]
        if default is not None and not _same_kind(value, default):
            raise InputError(f"parameter {name} of {chapter.stem} must be "
                             f"{_kind_name(default)} like its default {default!r}; got {value!r}")
        if value != default or type(value) is not type(default):
            changed[name] = value
    check_parameter_ranges(chapter, {**defaults, **changed, "profile": profile},
                           changed=set(changed))
    return changed


def _same_kind(value: Any, default: Any) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, int | float)
    return isinstance(value, type(default))


def _kind_name(default: Any) -> str:
    names = {bool: "True or False", int: "an integer", float: "a number", str: "a string",
             list: "a list", tuple: "a tuple", dict: "a dict"}
    return names.get(type(default), f"a {type(default).__name__}")


# A bound is a number or an expression in the chapter's other parameters ("d" for d1 <= d),
# evaluated with the values of this execution. The ranges say where a chapter's code is
# defined and runs in minutes; a chapter's claims (its assert cells) may still fail away from
# its defaults, which is then reported as a claim that does not hold (exit status 1).

Bound = int | float | str | None


def _bound_value(bound: Bound, values: Mapping[str, Any]) -> Any:
    if isinstance(bound, str):
        return eval(bound, {"__builtins__": {}, "min": min, "max": max}, dict(values))
    return bound


def _number_text(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return f"{value:g}" if isinstance(value, float) else repr(value)


def _bound_text(bound: Bound, values: Mapping[str, Any]) -> str:
    value = _number_text(_bound_value(bound, values))
    return f"{bound} = {value}" if isinstance(bound, str) else value


@dataclass(frozen=True)
class Number:
    """An int (`integer=True`) or a float in [low, high]; `open_low`/`open_high` exclude the
    end. Bounds may be expressions in other parameters."""

    low: Bound = None
    high: Bound = None
    integer: bool = True
    open_low: bool = False
    open_high: bool = False

    def problem(self, value: Any, values: Mapping[str, Any]) -> str | None:
        """Why `value` is outside the range (None when it is inside)."""
        kind = "an integer" if self.integer else "a number"
        if isinstance(value, bool) or not isinstance(value, int | float) or (
                self.integer and not isinstance(value, int)) or value != value:
            return f"must be {kind}"
        low, high = _bound_value(self.low, values), _bound_value(self.high, values)
        if (low is not None and (value < low or (self.open_low and value == low))) or (
                high is not None and (value > high or (self.open_high and value == high))):
            return f"must be {kind} in {self.describe(values)}"
        return None

    def describe(self, values: Mapping[str, Any]) -> str:
        """The interval in words, e.g. `[0, d = 10]`."""
        low = "-inf" if self.low is None else _bound_text(self.low, values)
        high = "inf" if self.high is None else _bound_text(self.high, values)
        return (f"{'(' if self.open_low or self.low is None else '['}{low}, "
                f"{high}{')' if self.open_high or self.high is None else ']'}")


def Int(low: Bound = None, high: Bound = None) -> Number:
    """An integer in [low, high]."""
    return Number(low, high, integer=True)


def Float(low: Bound = None, high: Bound = None, *, open_low: bool = False,
          open_high: bool = False) -> Number:
    """A number in [low, high] (ends excluded where open)."""
    return Number(low, high, integer=False, open_low=open_low, open_high=open_high)


@dataclass(frozen=True)
class TupleOf:
    """A tuple of `min_len` to `max_len` items, each in `item`'s range, optionally strictly
    increasing; `item` may be a tuple of ranges for fixed-length records such as (K, delta)."""

    item: Any
    min_len: int = 1
    max_len: int = 100
    increasing: bool = False

    def problem(self, value: Any, values: Mapping[str, Any]) -> str | None:
        """Why `value` is outside the range (None when it is inside)."""
        if not isinstance(value, tuple | list) or not self.min_len <= len(value) <= self.max_len:
            return f"must be a tuple of {self.min_len} to {self.max_len} values"
        for item in value:
            problem = _record_problem(self.item, item, values)
            if problem is not None:
                return f"must be a tuple of {problem} ({item!r} is not)"
        if self.increasing and any(b <= a for a, b in itertools.pairwise(value)):
            return "must be strictly increasing"
        return None

    def describe(self, values: Mapping[str, Any]) -> str:
        """The range in words."""
        return (f"{self.min_len} to {self.max_len} values"
                + (", increasing" if self.increasing else ""))


def _record_problem(spec: Any, item: Any, values: Mapping[str, Any]) -> str | None:
    """What one item of a tuple parameter must be (None when it is fine), as a plural noun
    phrase: `integers in [10, 1000000]`, `2-tuples whose entry 1 is an integer in [2, 100]`."""
    if not isinstance(spec, tuple):
        problem = spec.problem(item, values)
        if problem is None:
            return None
        return (problem.removeprefix("must be ").replace("an integer", "integers", 1)
                .replace("a number", "numbers", 1))
    if not isinstance(item, tuple | list) or len(item) != len(spec):
        return f"{len(spec)}-tuples"
    for position, (part, entry) in enumerate(zip(spec, item, strict=True)):
        problem = part.problem(entry, values)
        if problem is not None:
            return (f"{len(spec)}-tuples whose entry {position + 1} is "
                    f"{problem.removeprefix('must be ')}")
    return None


@dataclass(frozen=True)
class OneOf:
    """One of the values that `choices(values)` returns (e.g. the seeds of a stored run)."""

    choices: Any
    what: str

    def problem(self, value: Any, values: Mapping[str, Any]) -> str | None:
        """Why `value` is not allowed (None when it is)."""
        allowed = tuple(self.choices(values))
        if isinstance(value, bool) or value not in allowed:
            return f"must be {self.what}: one of {', '.join(map(str, allowed))}"
        return None


def _stored_seeds(experiment: str) -> Any:
    def seeds(values: Mapping[str, Any]) -> tuple[int, ...]:
        from multisource.experiments import PROFILES, get

        profile = values.get("profile", COMMITTED_PROFILE)
        return tuple(get(experiment).config(profile).seeds) if profile in PROFILES else ()

    return seeds


MAX_SEED = 2**32 - 1
SEED = Int(0, MAX_SEED)
LEVEL = Float(0.5, 0.999)   # confidence level of an interval
DIMENSION_SPLIT = Int(0, "d")   # d1: source-specific coordinates, at most d

# Chapter stem -> parameter -> range, for every parameter of every chapter's `parameters`
# cell except `profile` and `device` (set with --profile and --device).
# `tests/test_parameter_ranges.py` fails when a chapter has a parameter without a range.
PARAMETER_RANGES: dict[str, dict[str, Any]] = {
    "00_scorecard": {},
    "01_formulation": {
        "seed": SEED,
        "K": Int(1, 10),            # one colour per source in the figures
        "d": Int(2, 2),             # the chapter's pictures and grid check are 2-D
        "d1": DIMENSION_SPLIT,
        "n": Int("10 * K", 100_000),  # every source gets points with near certainty
        "n_redraws": Int(100, 100_000),
    },
    "02_theorem_3_2": {
        "seed": SEED,
        "K": Int(2, 50),            # the unbalanced p_Y spreads 1 - p_small over K - 1
        "d": Int(1, 50),
        "d1": DIMENSION_SPLIT,
        "n_grid": TupleOf(Int(10, 1_000_000), 3, 20, increasing=True),
        "n_seeds": Int(100, 100_000),
        "n_boot": Int(100, 10_000),
        "box_margin": Float(0.1, 10.0),
        "n_fixed": Int(100, 1_000_000),
        "K_grid": TupleOf(Int(1, 100), 2, 20, increasing=True),
        "d_grid": TupleOf(Int(1, 100), 2, 20, increasing=True),
        "p_small": Float(0.0001, "1 / K", open_high=True),
        "unbalanced_n_grid": TupleOf(Int(100, 1_000_000), 2, 20, increasing=True),
        "worst_seeds": Int(100, 100_000),
        "growth_n": Int(10, 1_000_000),
        "growth_K": TupleOf(Int(1, 1000), 2, 30, increasing=True),
    },
    "03_bracketing_numbers": {
        "seed": SEED,
        "K": Int(1, 100),
        "d": Int(1, 50),
        "d1": DIMENSION_SPLIT,
        "mean_low": Float(-100.0, 100.0),
        "mean_high": Float("mean_low", 200.0, open_low=True),
        "eps_min": Float(1e-12, "eps_max", open_low=False, open_high=True),
        "eps_max": Float(1e-10, 0.5),
        "n_eps": Int(3, 200),
        "demo_width": Float(0.01, 10.0),
        "p_small_grid": TupleOf(Float(1e-6, 0.99), 2, 30),
        "weighted_eps": Float(1e-12, 0.5),
        "tight_n_grid": TupleOf(Int(1, 10_000_000), 2, 30, increasing=True),
        "tight_K_grid": TupleOf(Int(1, 1000), 2, 30, increasing=True),
        "tight_n": Int(1, 10_000_000),
    },
    "04_gaussian": {
        "seed": SEED,
        "n_grid_points": Int(2, 100),   # a fitted slope needs two sample sizes
    },
    "05_autoregressive": {
        "seed": SEED,
        "example_K": Int(1, 20),
        "example_n": Int(10, 100_000),
        "example_L": Int(2, 12),    # at least one transition; exact TV enumerates 2^L sequences
        "level": LEVEL,
    },
    "06_energy_based": {
        "level": LEVEL,
    },
    "07_edm2_diffusion": {
        "seed": OneOf(_stored_seeds("edm2_miniature"),
                      "a seed of the edm2_miniature run at this profile"),
        "images_shown": Int(1, 32),
    },
    "08_when_pooling_hurts": {
        "seed": SEED,
        "check_settings": TupleOf((Int(2, 100), Float(0.0, 10.0, open_low=True)), 1, 6),
        "check_seeds": Int(100, 1_000_000),
        "ar_seeds": Int(10, 100_000),
        "collapse_seeds": Int(10, 100_000),
        "collapse_generations": Int(1, 200),
        # parameters the issue-19 branch adds to chapter 8 (declared ahead of its merge)
        "small_n_seeds": Int(1000, 10_000_000),
        "boundary_seeds": Int(100, 1_000_000),
    },
}


def parameter_range(chapter: Chapter, name: str) -> Any:
    """The declared range of one parameter; InputError when the chapter declares none."""
    declared = PARAMETER_RANGES.get(chapter.stem, {})
    if name not in declared:
        raise InputError(f"parameter {name} of {chapter.stem} has no declared range "
                         f"(multisource.book.parameters.PARAMETER_RANGES); it cannot be changed")
    return declared[name]


def check_parameter_ranges(chapter: Chapter, values: Mapping[str, Any], *,
                           changed: set[str] | None = None) -> None:
    """Every parameter in its declared range, with one line naming the first that is not.

    Chapters without declared ranges (test chapters) are checked for type only. A default
    that is out of range because of a changed parameter is named as such.
    """
    declared = PARAMETER_RANGES.get(chapter.stem)
    if declared is None:
        return
    changed = set(values) if changed is None else changed
    for name, spec in declared.items():
        if name not in values:
            continue
        value = values[name]
        try:
            problem = spec.problem(value, values)
        except (TypeError, ValueError, ZeroDivisionError, NameError, KeyError):
            problem = "cannot be checked against the other parameters"
        if problem is None:
            continue
        note = "" if name in changed else " (its default; change it with -p)"
        raise InputError(f"parameter {name} of {chapter.stem} {problem}; got {value!r}{note}")
    unknown = sorted(changed - set(declared))
    if unknown:
        parameter_range(chapter, unknown[0])
