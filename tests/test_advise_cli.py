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
    assert "recommendation: separate models" in out
    assert "3 sources (alpha: 60, beta: 60, gamma: 60)" in out
    assert "better than pooled by" in out and "confidence: clear" in out


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
    assert set(payload["scores"]) == {"pooled", "separate", "partial"}


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
