"""`advise_sufficient` (scored from sums per fold and source) gives `advise`'s answer."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_digits

from multisource.cli import main
from multisource.common.validation import InputError
from multisource.pooling import cli as advise_cli
from multisource.pooling.advise import Advice, advise, standardise, stratified_folds
from multisource.pooling.crossover import MeanInterval
from multisource.pooling.evaluate import LAWS, sample
from multisource.pooling.families import fold_moments
from multisource.pooling.misspecified import MisspecifiedGaussian
from multisource.pooling.report import render
from multisource.pooling.sufficient import (
    CellRows,
    SufficientAdvice,
    advise_sufficient,
    standardise_columns,
    supports,
)

FAMILIES = ("gaussian", "gaussian-unit")
Data = tuple[np.ndarray, np.ndarray, dict]


def _unequal_sizes() -> Data:
    """Three sources of expected sizes 150, 750 and 2100, one shifted."""
    setting = MisspecifiedGaussian(K=3, d=3, d1=0, delta=0.4, p_y=(0.05, 0.25, 0.7))
    x, y = sample(setting, 3000, LAWS["gaussian"], np.random.default_rng(1), 10)
    return x * [1.0, 30.0, 0.01] + [5.0, -200.0, 0.0], y, {}


def _student_t() -> Data:
    setting = MisspecifiedGaussian(K=4, d=2, d1=0, delta=0.3)
    x, y = sample(setting, 2000, LAWS["student-t"], np.random.default_rng(2), 10)
    return x, y, {}


def _very_heavy_tails() -> Data:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 3000)
    x = rng.standard_t(2, (3000, 3))
    x[:, 0] += 0.1 * y
    return x, y, {}


def _constant_feature() -> Data:
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 1000)
    x = rng.standard_normal((1000, 3)) + 0.2 * y[:, None]
    x[:, 1] = 3.0
    return x, y, {}


def _constant_in_one_source() -> Data:
    """A column constant within one small source: the variance floor decides (gaussian)."""
    rng = np.random.default_rng(23)
    n, K = int(rng.integers(40, 200)), int(rng.integers(2, 4))
    y = np.arange(n) % K
    x = rng.standard_normal((n, 2))
    x[:, 0] += rng.normal(0, 0.5) * y
    x[y == 0, 1] = np.round(rng.normal() * 2)
    x[:, 1] += (y != 0) * rng.normal(0, 0.3, n) * rng.choice([0.01, 1, 10])
    return x, y, {}


def _near_duplicate_split() -> Data:
    """One population split at random in two, one half shifted by a hair."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1200, 2))
    y = rng.permutation(1200) % 2
    x[y == 1, 0] += 1e-3
    return x, y, {}


def _identical_sources() -> Data:
    block = np.random.default_rng(4).standard_normal((40, 3))
    return np.vstack([block, block]), np.repeat([0, 1], 40), {}


def _one_outlier() -> Data:
    """Under 100 rows: the reason names the dominating row."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal((99, 2))
    x[5, 0] = 80.0
    return x, np.arange(99) % 3, {}


def _specific_column() -> Data:
    rng = np.random.default_rng(7)
    y = rng.integers(0, 3, 600)
    x = rng.standard_normal((600, 3))
    x[:, 0] += 2 * y
    return x, y, {"specific": np.array([True, False, False]), "columns": ["a", "b", "c"]}


def _every_column_specific() -> Data:
    x, y, _ = _specific_column()
    return x, y, {"specific": np.ones(3, bool)}


def _constant_data() -> Data:
    return np.full((50, 3), 7.0), np.repeat([0, 1], 25), {}


def _digits_by_class() -> Data:
    x, t = load_digits(return_X_y=True)
    return x, t, {"source_names": [f"digit {k}" for k in range(10)], "folds": 3}


def _digit_three_split() -> Data:
    x, t = load_digits(return_X_y=True)
    x3 = x[t == 3]
    return x3, np.random.default_rng(0).permutation(len(x3)) % 2, {"seed": 4}


CASES: dict[str, Callable[[], Data]] = {
    "unequal sizes": _unequal_sizes, "student t": _student_t,
    "very heavy tails": _very_heavy_tails, "constant feature": _constant_feature,
    "constant in one source": _constant_in_one_source,
    "near-duplicate split": _near_duplicate_split, "identical sources": _identical_sources,
    "one outlier": _one_outlier, "specific column": _specific_column,
    "every column specific": _every_column_specific, "constant data": _constant_data,
    "digits by class": _digits_by_class, "digit 3 split": _digit_three_split,
}


def _close(fast: MeanInterval | None, slow: MeanInterval | None) -> None:
    """Mean and bounds equal to 1e-9 of the interval's largest magnitude."""
    assert (fast is None) == (slow is None)
    if fast is None or slow is None:
        return
    assert fast.n == slow.n
    scale = max(abs(slow.mean), abs(slow.low), abs(slow.high))
    for a, b in ((fast.mean, slow.mean), (fast.low, slow.low), (fast.high, slow.high)):
        assert abs(a - b) <= 1e-9 * scale, (fast, slow)


def assert_same_advice(fast: Advice, slow: Advice) -> None:
    """Every decision identical, every mean and interval equal to 1e-9 relative."""
    assert (fast.recommendation, fast.verdict, fast.clear, fast.undecided, fast.reasons) == (
        slow.recommendation, slow.verdict, slow.clear, slow.undecided, slow.reasons)
    assert (fast.weight, fast.fold_weights, fast.partial_distinct) == (
        slow.weight, slow.fold_weights, slow.partial_distinct)
    assert (fast.family, fast.sources, fast.counts, fast.folds, fast.standardised) == (
        slow.family, slow.sources, slow.counts, slow.folds, slow.standardised)
    assert fast.comparison_level == slow.comparison_level
    assert list(fast.scores) == list(slow.scores)
    for name in slow.scores:
        _close(fast.scores[name], slow.scores[name])
    assert [c.other for c in fast.comparisons] == [c.other for c in slow.comparisons]
    for a, b in zip(fast.comparisons, slow.comparisons, strict=True):
        _close(a.difference, b.difference)
    for a, b in zip(fast.per_source, slow.per_source, strict=True):
        assert (a.source, a.count, a.answer) == (b.source, b.count, b.answer)
        _close(a.pooled_gain, b.pooled_gain)
        _close(a.shrunk_gain, b.shrunk_gain)
    assert render(fast) == render(slow)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("case", list(CASES))
def test_the_sums_give_advises_answer(case: str, family: str) -> None:
    x, y, options = CASES[case]()
    with np.errstate(divide="ignore", invalid="ignore"):
        slow = advise(x, y, family, **options)
        fast = advise_sufficient(x, y, family, **options)
    assert isinstance(fast, SufficientAdvice)   # decided from the sums, not handed over
    assert_same_advice(fast, slow)


def test_the_cases_cover_every_kind_of_answer() -> None:
    """The data sets above reach each verdict and each kind of reason."""
    found = []
    for build in CASES.values():
        x, y, options = build()
        for family in FAMILIES:
            with np.errstate(divide="ignore", invalid="ignore"):
                found.append(advise(x, y, family, **options))
    verdicts = {a.verdict for a in found}
    assert verdicts == {"clear", "within noise", "undecided", "equivalent"}
    reasons = " ".join(r for a in found for r in a.reasons)
    for words in ("of the summed |held-out differences|", "variance floor", "one sample (row",
                  "every parameter is source-specific", "identical or constant"):
        assert words in reasons
    assert {a.recommendation for a in found} >= {"pooled", "separate", "partial", "shrunk"}


def test_columns_rows_and_arrays_are_the_same_input() -> None:
    x, y, _ = _student_t()
    expected = advise_sufficient(x, y).to_dict()
    assert advise_sufficient(tuple(np.array(c) for c in x.T), y).to_dict() == expected
    assert advise_sufficient(x.tolist(), y.tolist()).to_dict() == expected


def test_a_constant_difference_is_left_to_advise() -> None:
    """Each source constant: the differences have no spread, `advise` decides from its rows."""
    y = np.repeat([0, 1], 30)
    x = np.column_stack([y * 2.0, np.full(60, 5.0)])
    for family in FAMILIES:
        fast = advise_sufficient(x, y, family, columns=["level", "flat"])
        slow = advise(x, y, family, columns=["level", "flat"])
        assert type(fast) is Advice
        assert fast.reasons == slow.reasons and "no interval" in fast.reasons[0]


@pytest.mark.parametrize("p", [1, 2, 5])
def test_standardisation_and_moments_are_bit_for_bit(p: int) -> None:
    rng = np.random.default_rng(p)
    y = rng.integers(0, 3, 5001)
    x = rng.standard_normal((5001, p)) * 10.0**rng.integers(-3, 4, p) + 1e3
    u = standardise_columns([x[:, j].copy() for j in range(p)], y, 3)
    expected = standardise(x.copy(), y, 3)
    np.testing.assert_array_equal(np.column_stack(u), expected)
    outer = stratified_folds(y, 3, 4, np.random.default_rng(0))
    m = CellRows.sort(u, outer * 3 + y, 12).moments(4, 3)
    reference = fold_moments(expected, y, 3, outer, 4)
    for a, b in ((m.n, reference.n), (m.s, reference.s), (m.q, reference.q)):
        np.testing.assert_array_equal(a, b)


def _csv(path: Path, rows: int = 600) -> Path:
    rng = np.random.default_rng(8)
    frame = pd.DataFrame(rng.standard_normal((rows, 2)), columns=["x1", "x2"])
    frame.insert(0, "source", rng.choice(["a", "b", "c"], rows))
    frame["x1"] += 0.2 * (frame.source == "c")
    frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("args", [[], ["--json"], ["--family", "gaussian-unit"],
                                  ["--specific", "x2", "--folds", "3", "--seed", "2"]])
def test_command_line_uses_the_sums_from_the_threshold_on(
        args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    path = _csv(tmp_path / "s.csv")
    calls = []

    def spy(*a: object, **k: object) -> Advice:
        calls.append(1)
        return advise_sufficient(*a, **k)

    monkeypatch.setattr(advise_cli, "advise_sufficient", spy)
    outputs = []
    for threshold in (10**9, 600):
        monkeypatch.setattr(advise_cli, "SUFFICIENT_ROWS", threshold)
        assert main(["advise", str(path), *args]) == 0
        outputs.append(capsys.readouterr().out)
    assert len(calls) == 1
    if "--json" in args:   # every digit printed: equal to rounding
        _same_json(json.loads(outputs[1]), json.loads(outputs[0]))
    else:
        assert outputs[1] == outputs[0]


def _same_json(fast: object, slow: object) -> None:
    if isinstance(slow, dict):
        assert isinstance(fast, dict) and list(fast) == list(slow)
        for key in slow:
            _same_json(fast[key], slow[key])
    elif isinstance(slow, list):
        assert isinstance(fast, list) and len(fast) == len(slow)
        for a, b in zip(fast, slow, strict=True):
            _same_json(a, b)
    elif isinstance(slow, float):
        assert fast == pytest.approx(slow, rel=1e-9, abs=1e-12)
    else:
        assert fast == slow


def test_other_families_and_the_response_go_row_by_row() -> None:
    assert supports("gaussian") and supports("gaussian-unit")
    assert not supports("tabular-ar") and not supports("linear")
    with pytest.raises(InputError, match="family must be gaussian or gaussian-unit"):
        advise_sufficient(np.zeros((40, 2)), np.repeat([0, 1], 20), "tabular-ar")


@pytest.mark.parametrize("x, y, options", [
    (np.zeros(40), np.repeat([0, 1], 20), {}),
    (np.full((40, 2), np.nan), np.repeat([0, 1], 20), {}),
    (np.zeros((40, 2)), np.repeat([0.0, 1.0], 20), {}),
    (np.zeros((40, 2)), np.zeros(40, int), {}),
    (np.zeros((40, 2)), np.repeat([0, 1], [35, 5]), {}),
    (np.zeros((40, 2)), np.repeat([0, 1], 20), {"folds": 1}),
    (np.zeros((40, 2)), np.repeat([0, 1], 20), {"level": 0.2}),
    (np.zeros((40, 2)), np.repeat([0, 1], 20), {"weights": [2.0]}),
    (np.zeros((40, 2)), np.repeat([0, 1], 20), {"specific": [True]}),
    (np.zeros((40, 2)), np.repeat([0, 1], 20), {"source_names": ["a"]}),
    (np.zeros((40, 2)), np.repeat([0, 1], 20), {"seed": -1}),
])
def test_bad_input_is_the_same_error(x: np.ndarray, y: np.ndarray, options: dict) -> None:
    with pytest.raises(InputError) as slow:
        advise(x, y, "gaussian", **options)
    with pytest.raises(InputError) as fast:
        advise_sufficient(x, y, "gaussian", **options)
    assert str(fast.value) == str(slow.value)
