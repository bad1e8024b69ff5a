"""`advise` on sparse and degenerate data: never a confident answer the data cannot support."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_digits

from multisource.cli import main
from multisource.pooling.advise import advise


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    return load_digits(return_X_y=True)


def test_digits_by_class_are_not_pooled(digits: tuple[np.ndarray, np.ndarray]) -> None:
    """Ten digit classes as sources: pooling is clearly worse, with either family."""
    x, t = digits
    for family in ("gaussian", "gaussian-unit"):
        advice = advise(x, t, family)
        assert advice.recommendation != "pooled", family
        versus_pooled = next(c for c in advice.comparisons if c.other == "pooled").difference
        assert versus_pooled.low > 0, family
        # finite scores on the pooled scale (no 1e17 nats from a variance of 1e-18)
        assert all(s.mean > -1e3 for s in advice.scores.values()), advice.scores
    # unit variances: the plain separate fits win, for every digit on its own samples
    assert advice.pooled_or_separate == "separate"
    assert all(a.answer == "separate" for a in advice.per_source)


def test_one_digit_split_at_random_is_pooled_or_undecided(
        digits: tuple[np.ndarray, np.ndarray]) -> None:
    """Digit 3 split into two random halves (one population): never 'separate, clear'."""
    x, t = digits
    x3 = x[t == 3]
    for seed in range(2):
        y = np.random.default_rng(seed).permutation(len(x3)) % 2
        for family in ("gaussian", "gaussian-unit"):
            advice = advise(x3, y, family)
            assert advice.recommendation in ("pooled", "shrunk", "partial") or advice.undecided
            assert not (advice.pooled_or_separate == "separate" and advice.clear)


def test_one_dominating_sample_makes_it_undecided(digits: tuple[np.ndarray, np.ndarray]
                                                  ) -> None:
    x, t = digits
    x3 = x[t == 3]
    y = np.random.default_rng(0).permutation(len(x3)) % 2
    advice = advise(x3, y, "gaussian")
    assert advice.undecided and not advice.clear
    assert any("of the summed |held-out differences|" in r for r in advice.reasons)


def test_column_constant_within_sources_is_never_clear() -> None:
    """Each source constant (a different value): no interval, and the reason is named."""
    y = np.repeat([0, 1], 30)
    x = np.column_stack([y * 2.0, np.full(60, 5.0)])
    advice = advise(x, y, "gaussian", columns=["level", "flat"])
    assert not advice.clear and advice.verdict in ("undecided", "equivalent")
    assert advice.reasons and all("\n" not in r for r in advice.reasons)


def test_constant_data_are_not_called_source_specific() -> None:
    x, y = np.full((50, 3), 7.0), np.repeat([0, 1], 25)
    for family in ("gaussian", "gaussian-unit"):
        advice = advise(x, y, family)
        assert advice.equivalent and not advice.clear
        assert "source-specific" not in advice.reasons[0]
        assert "identical or constant" in advice.reasons[0]


def test_identical_sources_are_pooled() -> None:
    """The same 40 rows under two labels: one population, so pooling wins (or ties)."""
    block = np.random.default_rng(4).standard_normal((40, 3))
    advice = advise(np.vstack([block, block]), np.repeat([0, 1], 40), "gaussian")
    assert advice.pooled_or_separate == "pooled"
    assert not (advice.recommendation == "separate" and advice.clear)


def _error(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["advise", *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    return captured.err


def test_error_messages_name_the_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert "cannot read .: it is a directory" in _error(["."], capsys)
    assert "cannot read /dev/null: the file is empty" in _error(["/dev/null"], capsys)
    quoted = tmp_path / "quoted.csv"
    quoted.write_text('source,x1\na,1\n"b\nc",2,3\nb,4\n')
    assert "line 3 has 3 fields, the header (line 1) has 2" in _error([str(quoted)], capsys)
    quoted.write_text('source,x1\na,1\n"b\nc",oops\nb,4\n')
    assert "line 3 holds 'oops'" in _error([str(quoted)], capsys)


def test_parquet_and_csv_read_the_same(tmp_path: Path) -> None:
    from multisource.pooling.csvdata import read_labelled_csv

    rng = np.random.default_rng(5)
    frame = pd.DataFrame({"x1": rng.standard_normal(40), "source": ["b", "a"] * 20,
                          "x2": rng.integers(0, 5, 40)})
    frame.to_csv(tmp_path / "s.csv", index=False)
    frame.to_parquet(tmp_path / "s.parquet")
    a, b = read_labelled_csv(tmp_path / "s.csv"), read_labelled_csv(tmp_path / "s.parquet")
    assert a.sources == b.sources == ("a", "b") and a.columns == b.columns == ("x1", "x2")
    np.testing.assert_array_equal(a.y, b.y)
    np.testing.assert_allclose(a.x, b.x, rtol=1e-15)
    np.testing.assert_array_equal(a.y, (frame.source == "b").to_numpy())
