"""`multisource advise FILE.csv`: a recommendation on good input, one line and exit 2 on bad."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from multisource.cli import main


def write_samples(path: Path, shift: float = 2.0, per_source: int = 60) -> Path:
    rng = np.random.default_rng(0)
    frames = []
    for k, name in enumerate(["alpha", "beta", "gamma"]):
        x = rng.standard_normal((per_source, 2)) + np.array([shift * k, 0.0])
        frame = pd.DataFrame(x, columns=["x1", "x2"])
        frame.insert(1, "source", name)
        frames.append(frame)
    pd.concat(frames).to_csv(path, index=False)
    return path


def test_advise_prints_a_recommendation_with_uncertainty(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_samples(tmp_path / "samples.csv")
    assert main(["advise", str(path)]) == 0
    out = capsys.readouterr().out
    assert ("recommendation: separate models" in out
            or "recommendation: per-source means shrunk" in out)
    assert "3 sources (alpha: 60, beta: 60, gamma: 60)" in out
    better = next(line for line in out.splitlines() if "better than pooled by" in line)
    assert better.endswith("(clear)")
    # the shifted sources lose from pooling, each on its own held-out samples
    assert "-> separate" in out.split("per source:")[1]


def test_advise_json_with_specific_columns(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    path = write_samples(tmp_path / "samples.csv")
    assert main(["advise", str(path), "--family", "gaussian-unit", "--specific", "x1",
                 "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["family"] == "gaussian-unit" and payload["sources"] == ["alpha", "beta",
                                                                           "gamma"]
    # x1 (where the sources differ) is specific and x2 is identical: pooling x2 helps
    assert payload["pooled_or_separate"] == "pooled"
    assert set(payload["scores"]) == {"pooled", "separate", "partial", "shrunk"}


def _bad_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    good = pd.read_csv(write_samples(tmp_path / "good.csv"))
    cases: dict[str, tuple[Path, str]] = {}

    def frame_case(name: str, frame: pd.DataFrame, expected: str) -> None:
        path = tmp_path / f"{name}.csv"
        frame.to_csv(path, index=False)
        cases[name] = (path, expected)

    frame_case("single_source", good.assign(source="alpha"), "single source")
    empty = good.copy()
    empty.loc[7, "source"] = ""
    frame_case("empty_source", empty, "line 9 has an empty source label")
    frame_case("no_source_column", good.drop(columns="source"), "no 'source' column")
    text = good.astype({"x2": object})
    text.loc[3, "x2"] = "abc"
    frame_case("non_numeric", text, "column 'x2' is not numeric (line 5 holds 'abc')")
    missing = good.copy()
    missing.loc[4, "x1"] = np.nan
    frame_case("nan_feature", missing, "column 'x1' has a missing value (NaN) on line 6")
    frame_case("tiny_source", good.iloc[:125], "source 'gamma' has 5 samples")
    frame_case("no_features", good[["source"]], "no feature columns")
    (tmp_path / "empty.csv").write_text("")
    cases["empty_file"] = (tmp_path / "empty.csv", "the file is empty")
    (tmp_path / "binary.csv").write_bytes(b"\xff\xfe\x00\x81source,x\n\x9c1,2\n")
    cases["binary_file"] = (tmp_path / "binary.csv", "cannot read binary.csv")
    cases["missing_file"] = (tmp_path / "nope.csv", "cannot read nope.csv: no such file")
    cases["directory"] = (tmp_path, "it is a directory")
    return cases


CASES = ["single_source", "empty_source", "no_source_column", "non_numeric", "nan_feature",
         "tiny_source", "no_features", "empty_file", "binary_file", "missing_file", "directory"]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_line_exit_2(case: str, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    path, expected = _bad_files(tmp_path)[case]
    assert main(["advise", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
    assert captured.err.startswith("multisource: error: ")
    assert expected in captured.err


@pytest.mark.parametrize("args, expected", [
    (["--family", "poisson"], "family must be one of gaussian, gaussian-unit, tabular-ar"),
    (["--specific", "x9"], "specific column 'x9' is not a feature column"),
    (["--folds", "1"], "folds must be an integer in [2, 20]"),
])
def test_bad_options_are_one_line_exit_2(args: list[str], expected: str, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    path = write_samples(tmp_path / "samples.csv")
    assert main(["advise", str(path), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err


def test_bad_input_in_a_real_process(tmp_path: Path) -> None:
    path, _ = _bad_files(tmp_path)["nan_feature"]
    done = subprocess.run([sys.executable, "-m", "multisource", "advise", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == ("multisource: error: nan_feature.csv: column 'x1' has a missing "
                           "value (NaN) on line 6\n")


# ---------------------------------------------------------------------------------------------
# Edge cases: the command never contradicts itself
# ---------------------------------------------------------------------------------------------


def _reject_constant(name: str) -> None:
    raise ValueError(f"not JSON: {name}")


def _json(text: str) -> dict:
    return json.loads(text, parse_constant=_reject_constant)


def _frame(per_source: int, seed: int, shift: float = 0.0, columns: int = 2) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2 * per_source, columns))
    x[per_source:, 0] += shift
    frame = pd.DataFrame(x, columns=[f"x{j + 1}" for j in range(columns)])
    frame.insert(0, "source", ["a"] * per_source + ["b"] * per_source)
    return frame


def test_small_files_never_compare_a_fit_with_itself(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """30 + 30 rows, many seeds: the partial fit is labelled by the weights it chose per fold,
    and no strategy is said to beat a strategy that is the same fit."""
    for seed in range(12):
        path = tmp_path / f"small_{seed}.csv"
        _frame(30, seed, shift=0.3).to_csv(path, index=False)
        assert main(["advise", str(path), "--json"]) == 0
        payload = _json(capsys.readouterr().out)
        rec = payload["recommendation"]
        end = {"pooled": 1.0, "separate": 0.0}.get(rec)
        weights = set(payload["fold_weights"])
        # partial with the recommended end point in every fold is that fit: never compared
        if end is not None and weights == {end}:
            assert "partial" not in payload["comparisons"]
        assert rec not in payload["comparisons"]
        assert main(["advise", str(path)]) == 0
        text = capsys.readouterr().out
        for line in text.splitlines():
            if line.strip().startswith("better than"):
                assert not (rec == "pooled" and "w=1.00 in every fold" in line), text
                assert not (rec == "separate" and "w=0.00 in every fold" in line), text


def test_identical_fits_are_reported_as_equivalent(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "specific.csv"
    _frame(40, 1, shift=1.0).to_csv(path, index=False)
    assert main(["advise", str(path), "--specific", "x1", "x2"]) == 0
    out = capsys.readouterr().out
    assert "recommendation: either: the pooled and separate fits are the same model" in out
    assert "better than" not in out and "confidence: not applicable" in out
    assert main(["advise", str(path), "--specific", "x1", "x2", "--json"]) == 0
    payload = _json(capsys.readouterr().out)
    assert payload["recommendation"] == "equivalent" and payload["comparisons"] == {}
    assert payload["clear"] is False


@pytest.mark.parametrize("scale", [1e-12, 1e6, 1e300])
def test_recommendation_does_not_depend_on_units(scale: float, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Scaling every feature (1e-12 once hit a variance floor; near 1e308 once gave NaN) leaves
    the recommendation and the scores unchanged, and --json stays valid JSON."""
    frame = _frame(80, 2, shift=0.5, columns=3)
    base, scaled = tmp_path / "base.csv", tmp_path / "scaled.csv"
    frame.to_csv(base, index=False)
    frame.assign(**{c: frame[c] * scale for c in ("x1", "x2", "x3")}).to_csv(scaled, index=False)
    for family in ("gaussian", "gaussian-unit"):
        results = []
        for path in (base, scaled):
            assert main(["advise", str(path), "--family", family, "--json"]) == 0
            results.append(_json(capsys.readouterr().out))
        assert results[0]["recommendation"] == results[1]["recommendation"]
        assert results[0]["pooled_or_separate"] == results[1]["pooled_or_separate"]
        for name in ("pooled", "separate"):
            assert results[1]["scores"][name]["mean"] == pytest.approx(
                results[0]["scores"][name]["mean"], rel=1e-6)


def test_non_finite_scores_are_one_line_exit_2(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from multisource.pooling import families

    path = tmp_path / "samples.csv"
    _frame(40, 3).to_csv(path, index=False)
    broken = families.GaussianUnit()
    monkeypatch.setattr(type(broken), "log_density",
                        lambda self, params, x, y: np.full(len(y), np.nan))
    assert main(["advise", str(path), "--family", "gaussian-unit", "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert "held-out log-likelihoods are not finite" in captured.err


@pytest.mark.parametrize("text, expected", [
    ("source,x1\na,1.0,2.0\nb,2.0,3.0\n",
     "line 2 has 3 fields, the header (line 1) has 2"),
    ("source,x1,x2\na,1.0,2.0\nb,2.0\n", "line 3 has 2 fields, the header (line 1) has 3"),
    ("source,x1,x1\na,1.0,2.0\nb,2.0,3.0\n",
     "column name 'x1' appears more than once (columns 2 and 3)"),
    ("source,,x2\na,1.0,2.0\nb,2.0,3.0\n", "column 2 of the header has no name"),
])
def test_ragged_and_duplicate_columns_are_errors(text: str, expected: str, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    assert main(["advise", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert expected in captured.err


def test_blank_lines_and_line_numbers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "blank.csv"
    path.write_text("source,x1\n\na,1.0\n\nb,oops\n")
    assert main(["advise", str(path)]) == 2
    assert "column 'x1' is not numeric (line 5 holds 'oops')" in capsys.readouterr().err
