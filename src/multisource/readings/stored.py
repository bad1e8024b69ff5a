"""Stored tables for the readings, only when their provenance matches the current code."""

from __future__ import annotations

import pandas as pd

from multisource.common.validation import InputError


def current_table(name: str, profile: str = "book") -> pd.DataFrame:
    """The stored table of experiment `name` at `profile`; InputError (one line, naming the
    command that regenerates it) when it is missing or does not match the current code."""
    from multisource.experiments.runner import load_results, stored_state

    stored = load_results(name, profile)
    if stored is None:
        state = stored_state(name, profile).state
        raise InputError(f"the stored results of {name}[{profile}] are {state}; run "
                         f"`multisource run {name} --profile {profile}` (or `multisource "
                         f"restamp {name}` after a change that cannot alter them)")
    return stored.frame


def current_or_interim(name: str, profile: str = "book") -> tuple[pd.DataFrame, bool]:
    """(table, interim): the stored table when current; for a run still in progress across
    sessions, the verified finished tasks of its committed checkpoint (interim True: lines
    whose checksum, config hash and code hash match, the rows the final table will hold);
    otherwise the InputError of `current_table`."""
    from multisource.experiments.runner import interim_results, load_results, stored_state

    stored = load_results(name, profile)
    if stored is not None:
        return stored.frame, False
    if stored_state(name, profile).state == "missing":
        interim = interim_results(name, profile)
        if interim is not None:
            return interim.frame, True
    return current_table(name, profile), False
