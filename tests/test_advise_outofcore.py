"""`advise` out of core (DuckDB sums per fold and source) against the in-memory rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("duckdb")

from multisource.pooling.advise import DEFAULT_WEIGHTS, _score, standardise
from multisource.pooling.crossover import t_interval
from multisource.pooling.families import get_family
from multisource.pooling.outofcore import advise_parquet, fold_of_rows


@pytest.mark.parametrize("family", ["gaussian", "gaussian-unit"])
def test_out_of_core_equals_in_memory_with_the_same_folds(tmp_path: Path, family: str) -> None:
    rng = np.random.default_rng(7)
    n, K = 6000, 3
    y = rng.integers(0, K, n)
    x = rng.standard_normal((n, 3)) * [1.0, 3.0, 0.5] + [10.0, -2.0, 0.0]
    x[:, 0] += 0.08 * y
    x[:, 2] *= 1 + 0.3 * (y == 2)
    names = np.array(["b", "a", "c"])[y]
    frame = pd.DataFrame({"source": names, "x1": x[:, 0], "x2": x[:, 1], "x3": x[:, 2]})
    path = tmp_path / "s.parquet"
    frame.to_parquet(path)
    ooc = advise_parquet(path, family, folds=5, seed=3)
    codes = np.searchsorted(np.array(sorted({"a", "b", "c"})), names)
    outer = fold_of_rows(np.arange(n), 5, 3)
    fam = get_family(family)
    grid = np.asarray(sorted(set(DEFAULT_WEIGHTS)))
    held = _score(fam, standardise(x, codes, K), codes, K, np.zeros(3, bool), outer, 5,
                  grid).heldout
    for name, interval in ooc.scores.items():
        ref = t_interval(held[name])
        assert interval.mean == pytest.approx(ref.mean, rel=1e-9, abs=1e-9), name
        assert interval.high - interval.low == pytest.approx(ref.high - ref.low, rel=1e-6)
    best = ooc.recommendation
    assert best == max(ooc.scores, key=lambda s: ooc.scores[s].mean) or best != "partial"
    for other, interval in ooc.comparisons.items():
        ref = t_interval(held[best] - held[other], ooc.comparison_level)
        assert interval.low == pytest.approx(ref.low, rel=1e-6, abs=1e-9), other
        assert interval.high == pytest.approx(ref.high, rel=1e-6, abs=1e-9), other
    for k, name in enumerate(("a", "b", "c")):
        rows = codes == k
        ref = t_interval(held["pooled"][rows] - held["separate"][rows])
        assert ooc.per_source[name].mean == pytest.approx(ref.mean, rel=1e-8, abs=1e-10)


def test_command_line_out_of_core(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from multisource.cli import main

    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"source": np.repeat(["a", "b"], 200),
                          "x1": rng.standard_normal(400) + np.repeat([0.0, 2.0], 200)})
    frame.to_parquet(tmp_path / "s.parquet")
    assert main(["advise", str(tmp_path / "s.parquet"), "--out-of-core"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["recommendation"] != "pooled"
    assert answer["comparisons"]["pooled"]["low"] > 0
    assert main(["advise", str(tmp_path / "none.parquet"), "--out-of-core"]) == 2
    assert "no such file" in capsys.readouterr().err
