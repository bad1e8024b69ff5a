"""The command line: any setting replicates; one-line errors, exit 2; nothing half-written."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from multisource.cli import main
from multisource.common.validation import InputError
from multisource.experiments import gaussian


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "multisource", *args], capture_output=True,
                          text=True, timeout=120)


def test_replicate_json_matches_library(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["gaussian", "replicate", "--K", "7", "--D", "20", "--sim", "0.25", "--n", "300",
                 "--seeds", "7", "11", "--json"])
    assert code == 0
    payload = json.loads(capsys.readouterr().out)
    expected = gaussian.replicate(gaussian.ReplicationSetting(7, 20, 0.25, 300), (7, 11))
    assert payload["tv_single_mc"] == pytest.approx(expected.tv_single_mc, abs=0)
    assert payload["tv_multi_mc"] == pytest.approx(expected.tv_multi_mc, abs=0)
    assert [s["seed"] for s in payload["per_seed"]] == [7, 11]
    assert set(payload["per_seed"][0]) == {"seed", "tv_single_mc", "tv_multi_mc"}


def test_replicate_default_row_matches_published(published_figure1,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gaussian", "replicate", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    row = published_figure1.query("sweep == 'K' and K == 5").iloc[0]
    assert payload["tv_single_mc"] == pytest.approx(row.tv_single_mc, abs=1e-6)
    assert payload["tv_multi_mc"] == pytest.approx(row.tv_multi_mc, abs=1e-6)


def test_replicate_table_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gaussian", "replicate", "--K", "3", "--seeds", "1", "2"]) == 0
    out = capsys.readouterr().out
    assert "mean" in out and "TV single" in out


@pytest.mark.parametrize("args, parameter", [
    (["gaussian", "replicate", "--K", "0"], "K"),
    (["gaussian", "replicate", "--sim", "1.5"], "sim"),
    (["gaussian", "replicate", "--sim", "-0.2"], "sim"),
    (["gaussian", "replicate", "--n", "0"], "n"),
    (["gaussian", "replicate", "--D", "0"], "D"),
    (["gaussian", "replicate", "--seeds", "-1"], "seed"),
    (["gaussian", "replicate", "--n", "abc"], "--n"),
    (["run", "no_such_experiment"], "experiment"),
    (["run", "gaussian", "--profile", "huge"], "profile"),
    (["run", "gaussian", "--device", "tpu"], "device"),
    (["execute", "99_missing"], "chapter"),
    (["execute", "04", "--profile", "huge"], "profile"),
])
def test_bad_input_is_one_line_exit_2(args: list[str], parameter: str,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        raise SystemExit(main(args))
    assert raised.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert parameter in err


def test_bad_input_in_a_real_process_has_no_traceback() -> None:
    done = run_cli("gaussian", "replicate", "--sim", "2")
    assert done.returncode == 2
    assert done.stderr.strip() == "multisource: error: sim must be a number in [0.0, 1.0], got 2.0"
    assert done.stdout == ""


def test_bad_profile_writes_nothing(tmp_path, monkeypatch) -> None:
    from multisource.common import paths
    from multisource.experiments import runner

    monkeypatch.setattr(runner, "results_path",
                        lambda e, p, suffix=".csv": tmp_path / e / f"{p}{suffix}")
    assert main(["run", "gaussian", "--profile", "nope", "--quiet"]) == 2
    assert not any(tmp_path.rglob("*"))
    assert paths.RESULTS_DIR.name == "results"


def test_unreadable_results_file_is_one_line_exit_2(tmp_path, monkeypatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from multisource.experiments import runner

    monkeypatch.setattr(runner, "results_path",
                        lambda e, p, suffix=".csv": tmp_path / e / f"{p}{suffix}")
    folder = tmp_path / "gaussian"
    folder.mkdir()
    (folder / "smoke.csv").write_text("sweep,K\nK,1\n")
    (folder / "smoke.json").write_text("{not json")
    assert main(["show", "gaussian", "--profile", "smoke"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unreadable" in err


def test_status_lists_every_chapter(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    for stem in ("01_formulation", "04_gaussian", "07_edm2_diffusion"):
        assert stem in out


def test_diffusion_and_imagenet_commands_reject_bad_input(capsys) -> None:
    assert main(["imagenet", "prepare", "--train-dir", "no/such/folder", "--level", "sim3",
                 "--K", "3", "--out", "x.npz"]) == 2
    assert "train_dir" in capsys.readouterr().err
    with pytest.raises(SystemExit) as raised:
        main(["diffusion", "train", "--out", "unused", "--preset", "huge"])
    assert raised.value.code == 2


def test_output_and_input_path_checks(tmp_path) -> None:
    from multisource.common.validation import check_input_file, check_output_path

    assert check_output_path("--out", str(tmp_path / "new" / "deeper"), kind="dir").name == \
        "deeper"
    assert check_output_path("--out", str(tmp_path / "table.csv")).name == "table.csv"
    existing = tmp_path / "file.txt"
    existing.write_text("x")
    for bad, kind, match in (("", "dir", "non-empty path"), (str(existing), "dir", "existing file"),
                             (str(tmp_path), "file", "is a directory"),
                             ("/proc/x/y", "dir", "not writable|cannot be created"),
                             (str(existing / "below"), "file", "not a directory")):
        with pytest.raises(InputError, match=match):
            check_output_path("--out", bad, kind=kind)
    assert check_input_file("--data", str(existing)) == existing
    with pytest.raises(InputError, match="existing file"):
        check_input_file("--data", str(tmp_path / "missing.npz"))
    with pytest.raises(InputError, match=r"\.npz file"):
        check_input_file("--data", str(existing), suffixes=(".npz",))


def test_broken_pipe_is_quiet() -> None:
    proc = subprocess.run(f"{sys.executable} -m multisource status | head -c 10", shell=True,
                          capture_output=True, text=True, timeout=120)
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr
