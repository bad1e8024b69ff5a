"""Chapter 2's check of the complexity term: it passes with the poster's term and fails, with
a margin, when the term is replaced by a wrong one."""

from __future__ import annotations

import numpy as np
import pytest

from multisource.common.validation import InputError
from multisource.experiments.gaussian import exact_expected_risk
from multisource.theory.complexity import (
    COMPLEXITY_TERMS,
    MAX_COMPLEXITY_SPREAD,
    check_complexity_term,
    risk_complexity_spread,
)

N = 20_000
SETTINGS = [(K, d, d1, est) for K in (1, 3, 15) for d in (1, 10) for d1 in sorted({0, d // 2, d})
            for est in ("multi", "single")]
RIGHT = "poster: (K-1)d1+d multi, Kd single"


@pytest.fixture(scope="module")
def risks() -> np.ndarray:
    return np.array([exact_expected_risk(K, d, d1, N, est) for K, d, d1, est in SETTINGS])


def _terms(name: str) -> np.ndarray:
    return np.array([COMPLEXITY_TERMS[name](K, d, d1, est) for K, d, d1, est in SETTINGS])


def test_the_posters_complexity_term_passes(risks) -> None:
    assert check_complexity_term(risks, _terms(RIGHT), N) <= MAX_COMPLEXITY_SPREAD


@pytest.mark.parametrize("wrong", [name for name in COMPLEXITY_TERMS if name != RIGHT])
def test_a_wrong_complexity_term_fails_the_same_check(risks, wrong) -> None:
    with pytest.raises(AssertionError, match="does not describe the risk"):
        check_complexity_term(risks, _terms(wrong), N)
    # and not narrowly: the spread is at least twice the allowed one
    assert risk_complexity_spread(risks, _terms(wrong), N) > 2 * MAX_COMPLEXITY_SPREAD


def test_a_risk_that_ignores_complexity_fails() -> None:
    """Any n^(-1/2) law passes a rate fit; this check needs the right dependence on C too."""
    flat = np.full(len(SETTINGS), 0.01)
    with pytest.raises(AssertionError):
        check_complexity_term(flat, _terms(RIGHT), N)


def test_bad_input() -> None:
    with pytest.raises(InputError):
        risk_complexity_spread(np.array([0.1]), np.array([1.0]), 10)
    with pytest.raises(InputError):
        risk_complexity_spread(np.array([0.1, -0.1]), np.array([1.0, 2.0]), 10)
