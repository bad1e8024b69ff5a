"""`advise` out of core (streaming passes over a Parquet file) against the in-memory rule."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from multisource.common.validation import InputError
from multisource.pooling.advise import DEFAULT_WEIGHTS, _score, advise, dominance, standardise
from multisource.pooling.crossover import t_interval
from multisource.pooling.families import get_family
from multisource.pooling.outofcore import (
    ParquetRows,
    Standardising,
    advise_parquet,
    per_source,
    row_spreads,
)
from multisource.pooling.streamfolds import StratifiedFolds, stratified_stream_folds


def _frame(n: int = 6000, seed: int = 7) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.standard_normal((n, 3)) * [1.0, 3.0, 0.5] + [10.0, -2.0, 0.0]
    x[:, 0] += 0.08 * y
    x[:, 2] *= 1 + 0.3 * (y == 2)
    names = np.array(["b", "a", "c"])[y]
    frame = pd.DataFrame({"source": names, "x1": x[:, 0], "x2": x[:, 1], "x3": x[:, 2]})
    return frame, x, np.searchsorted(np.array(["a", "b", "c"]), names)


def test_stream_folds_split_every_source_exactly_whatever_the_batches() -> None:
    rng = np.random.default_rng(0)
    codes = rng.choice(4, 10_007, p=[0.7, 0.2, 0.0999, 0.0001])
    whole = stratified_stream_folds(codes, 4, 5, seed=3)
    assign = StratifiedFolds(4, 5, 3)
    cuts = np.sort(rng.choice(codes.size, 40, replace=False))
    pieces = np.concatenate([assign.assign(part) for part in np.split(codes, cuts)])
    np.testing.assert_array_equal(pieces, whole)
    for k in range(4):
        sizes = np.bincount(whole[codes == k], minlength=5)
        assert sizes.max() - sizes.min() <= 1, (k, sizes)
    # a row's fold depends on its source and its rank within the source only
    mine = codes == 0
    moved = np.concatenate([codes[mine], codes[~mine]])
    np.testing.assert_array_equal(stratified_stream_folds(moved, 4, 5, 3)[:mine.sum()],
                                  whole[mine])
    assert (stratified_stream_folds(codes, 4, 5, 4) != whole).mean() > 0.7


def test_stream_folds_are_uniform_over_positions() -> None:
    codes = np.zeros(50_000, np.int64)
    folds = stratified_stream_folds(codes, 1, 5, seed=11).reshape(-1, 5)
    assert all(sorted(block) == list(range(5)) for block in folds[:100])
    table = np.stack([np.bincount(folds[:, r], minlength=5) for r in range(5)])
    expected = folds.shape[0] / 5
    chi2 = float(((table - expected) ** 2 / expected).sum())
    assert chi2 < 60.0   # 16 degrees of freedom: P(chi2 > 60) < 1e-6 under uniformity


@pytest.mark.parametrize("family", ["gaussian", "gaussian-unit"])
def test_out_of_core_equals_in_memory_with_the_same_folds(tmp_path: Path, family: str) -> None:
    frame, x, codes = _frame()
    path = tmp_path / "s.parquet"
    frame.to_parquet(path, row_group_size=1000)
    ooc = advise_parquet(path, family, folds=5, seed=3, batch_rows=777)
    outer = stratified_stream_folds(codes, 3, 5, 3)
    grid = np.asarray(sorted(set(DEFAULT_WEIGHTS)))
    held = _score(get_family(family), standardise(x, codes, 3), codes, 3, np.zeros(3, bool),
                  outer, 5, grid).heldout
    for name, interval in ooc.scores.items():
        ref = t_interval(held[name])
        assert interval.mean == pytest.approx(ref.mean, rel=1e-9, abs=1e-9), name
        assert interval.high - interval.low == pytest.approx(ref.high - ref.low, rel=1e-6)
    best = ooc.recommendation
    assert best == max(held, key=lambda s: held[s].mean())
    for c in ooc.comparisons:
        ref = t_interval(held[best] - held[c.other], ooc.comparison_level)
        assert c.difference.low == pytest.approx(ref.low, rel=1e-6, abs=1e-9), c.other
        assert c.difference.high == pytest.approx(ref.high, rel=1e-6, abs=1e-9), c.other
    for k, answer in enumerate(ooc.per_source):
        ref = t_interval(held["pooled"][codes == k] - held["separate"][codes == k])
        assert answer.source == "abc"[k]
        assert answer.pooled_gain.mean == pytest.approx(ref.mean, rel=1e-8, abs=1e-10)
    again = advise_parquet(path, family, folds=5, seed=3)   # other batches, same answer
    assert again.recommendation == ooc.recommendation and again.reasons == ooc.reasons
    for name, interval in again.scores.items():
        assert interval.mean == pytest.approx(ooc.scores[name].mean, rel=1e-9), name


def test_row_spreads_match_the_in_memory_dominance(tmp_path: Path) -> None:
    frame, x, codes = _frame(3000, seed=2)
    path = tmp_path / "s.parquet"
    frame.to_parquet(path)
    outer = stratified_stream_folds(codes, 3, 5, 0)
    grid = np.asarray(sorted(set(DEFAULT_WEIGHTS)))
    fam = get_family("gaussian")
    held = _score(fam, standardise(x, codes, 3), codes, 3, np.zeros(3, bool), outer, 5,
                  grid).heldout
    from multisource.pooling.cellsums import score_moments
    from multisource.pooling.outofcore import fold_cells

    rows = ParquetRows(path, batch_rows=500)
    scaling = Standardising.from_sources(per_source(rows))
    sums = fold_cells(rows, scaling, 5, 0)
    scored = score_moments(fam, sums.moments(), np.zeros(3, bool), grid)
    pairs = [("pooled", "separate"), ("shrunk", "pooled"), ("partial", "separate")]
    found = row_spreads(rows, scaling, 5, 0,
                        [scored.quadratic(a) - scored.quadratic(b) for a, b in pairs], 3000)
    for (a, b), spread in zip(pairs, found, strict=True):
        d = held[a] - held[b]
        # the shrunk fit is the optimum of the REML profile: from sums that differ in the last
        # digits it moves by about 1e-7 relative
        rel = 1e-6 if "shrunk" in (a, b) else 1e-9
        assert spread.total == pytest.approx(np.abs(d).sum(), rel=rel), (a, b)
        assert spread.largest == pytest.approx(np.abs(d).max(), rel=rel), (a, b)
        assert spread.share == pytest.approx(dominance(d), rel=rel), (a, b)


def test_a_few_dominating_rows_leave_it_undecided(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    n = 4000
    y = np.repeat([0, 1], n // 2)
    x = rng.standard_normal((n, 1))
    x[rng.choice(n, 8, replace=False)] *= 400.0   # eight wild rows
    frame = pd.DataFrame({"source": np.where(y == 0, "p", "q"), "x1": x[:, 0]})
    frame.to_parquet(tmp_path / "s.parquet")
    ooc = advise_parquet(tmp_path / "s.parquet")
    memory = advise(x, y)
    assert any("summed |held-out differences|" in r for r in memory.reasons)
    assert ooc.verdict == "undecided"
    assert any("summed |held-out differences|" in r for r in ooc.reasons), ooc.reasons


def test_digits_out_of_core(tmp_path: Path) -> None:
    from sklearn.datasets import load_digits

    digits = load_digits()
    columns = [f"p{j}" for j in range(64)]
    by_class = pd.DataFrame(digits.data, columns=columns)
    by_class.insert(0, "source", [f"d{k}" for k in digits.target])
    by_class.to_parquet(tmp_path / "classes.parquet")
    answer = advise_parquet(tmp_path / "classes.parquet", "gaussian-unit")
    assert answer.recommendation != "pooled"
    assert answer.comparisons and all(c.difference.low > 0 for c in answer.comparisons
                                      if c.other == "pooled")
    three = by_class[digits.target == 3].copy()
    three["source"] = np.random.default_rng(0).choice(["half1", "half2"], len(three))
    three.to_parquet(tmp_path / "three.parquet")
    for family in ("gaussian", "gaussian-unit"):
        split = advise_parquet(tmp_path / "three.parquet", family)
        assert not (split.recommendation == "separate" and split.clear), (family, split)


def test_command_line_out_of_core(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from multisource.cli import main

    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"source": np.repeat(["a", "b"], 200),
                          "x1": rng.standard_normal(400) + np.repeat([0.0, 2.0], 200)})
    frame.to_parquet(tmp_path / "s.parquet")
    assert main(["advise", str(tmp_path / "s.parquet"), "--out-of-core", "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["recommendation"] != "pooled"
    assert answer["comparisons"]["pooled"]["low"] > 0
    assert main(["advise", str(tmp_path / "s.parquet"), "--out-of-core"]) == 0
    text = capsys.readouterr().out
    assert "pool" in text and not text.lstrip().startswith("{")
    assert main(["advise", str(tmp_path / "none.parquet"), "--out-of-core"]) == 2
    assert "no such file" in capsys.readouterr().err


@pytest.mark.parametrize("frame, message", [
    (pd.DataFrame({"x1": [1.0, 2.0]}), "no 'source' column"),
    (pd.DataFrame({"source": ["a", "b"]}), "no feature columns"),
    (pd.DataFrame({"source": ["a"] * 20, "x1": np.arange(20.0)}), "fewer than 2 sources"),
    (pd.DataFrame({"source": ["a", None] * 10, "x1": np.arange(20.0)}), "empty label"),
    (pd.DataFrame({"source": ["a", "b"] * 10, "x1": ["u"] * 20}), "is not numeric"),
    (pd.DataFrame({"source": ["a", "b"] * 10, "x1": [np.inf] + [1.0] * 19}), "not finite"),
    (pd.DataFrame({"source": ["a", "b"] * 4, "x1": np.arange(8.0)}), "at least 10 per source"),
])
def test_bad_files_get_one_line_errors(tmp_path: Path, frame: pd.DataFrame,
                                       message: str) -> None:
    frame.to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(InputError, match=message):
        advise_parquet(tmp_path / "bad.parquet")
    (tmp_path / "text.parquet").write_text("not parquet")
    with pytest.raises(InputError, match=r"cannot read text\.parquet as Parquet"):
        advise_parquet(tmp_path / "text.parquet")
    with pytest.raises(InputError, match="family must be gaussian"):
        advise_parquet(tmp_path / "bad.parquet", "tabular-ar")
