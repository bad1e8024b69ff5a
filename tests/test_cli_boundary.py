"""Every command (except the ImageNet and diffusion training ones, tested with their modules)
with bad files, bad output paths and extreme values: one line on stderr, exit status 2, no
traceback, nothing written.

Commands run in-process through `cli.main`, so an exception that escapes the error boundary
fails the test; paths are redirected into a scratch folder.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from multisource import cli
from multisource.book import execution, registry, status
from multisource.book.registry import Chapter
from multisource.common import paths
from multisource.experiments import runner

REPO = paths.REPO_ROOT
SOURCE = (Path(__file__).parent / "test_execute.py").read_text()
CHAPTER_SOURCE = SOURCE[SOURCE.index("---\n    jupytext"):SOURCE.index("    ''')")]
CHAPTER_SOURCE = "\n".join(line[4:] for line in CHAPTER_SOURCE.splitlines()) + "\n"


def repo_state() -> str:
    """Tracked changes and untracked files of the repository (what a command could dirty)."""
    return subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=REPO,
                          check=True, capture_output=True, text=True).stdout


def files_under(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


@pytest.fixture
def scratch(tmp_path, monkeypatch) -> Path:
    """Results, build and chapter folders redirected into tmp_path; papermill and the book
    builder must never be reached."""
    results = tmp_path / "results"
    results.mkdir()
    monkeypatch.setattr(runner, "results_path",
                        lambda e, p, suffix=".csv": results / e / f"{p}{suffix}")
    monkeypatch.setattr(runner, "COMPUTED_RESULTS_DIR", tmp_path / "computed")
    monkeypatch.setattr(execution, "EXECUTED_DIR", tmp_path / "build" / "executed")
    book = tmp_path / "notebooks"
    book.mkdir()
    chapter = Chapter("01_formulation", "Synthetic", "a test", directory=book)
    chapter.source.write_text(CHAPTER_SOURCE)
    monkeypatch.setattr(registry, "CHAPTERS", (chapter,))
    monkeypatch.setattr(status, "CHAPTERS", (chapter,))

    def never(*args, **kwargs):
        raise AssertionError("work started before the input was checked")

    import papermill

    monkeypatch.setattr(papermill, "execute_notebook", never)
    monkeypatch.setattr(cli.subprocess, "call", never)
    return tmp_path


def sidecar_pair(folder: Path, csv: bytes, sidecar: bytes) -> None:
    (folder / "gaussian").mkdir(parents=True, exist_ok=True)
    (folder / "gaussian" / "smoke.csv").write_bytes(csv)
    (folder / "gaussian" / "smoke.json").write_bytes(sidecar)


# (command line, text the one-line error must contain, files to plant first)
NOT_A_DIR = "a-file/below"  # a path whose parent is a regular file: nothing can be created
CASES = [
    (["gaussian", "replicate", "--D", "1000000000"], "memory", None),
    (["gaussian", "replicate", "--test-size", "100000000000"], "memory", None),
    (["gaussian", "replicate", "--n", "10000000000"], "memory", None),
    (["gaussian", "replicate", "--K", "10000000000"], "memory", None),
    (["gaussian", "replicate", "--seeds", "-3"], "seed", None),
    (["gaussian", "exact", "--n", "10000000"], "n must be", None),
    (["gaussian", "exact", "--K", "0"], "K must be", None),
    (["gaussian", "exact", "--sim", "nan"], "sim", None),
    (["run", "gaussian", "--profile", "smoke", "--quiet"], "results folder", "results-unwritable"),
    (["run", "gaussian", "--device", "cuda"], "device", None),
    (["show", "gaussian", "--profile", "smoke"], "not a JSON object", "sidecar-list"),
    (["show", "gaussian", "--profile", "smoke"], "unreadable", "sidecar-binary"),
    (["show", "gaussian", "--profile", "smoke"], "csv_sha256", "csv-edited"),
    (["show", "gaussian", "--profile", "smoke"], "none are stored", None),
    (["show", "nope"], "experiment must be one of", None),
    (["execute", "01", "--out", "/proc/x.ipynb"], "not writable", None),
    (["execute", "01", "--out", "."], "directory", None),
    (["execute", "01", "--out", ""], "non-empty path", None),
    (["execute", "01", "--out", "table.csv"], ".ipynb", None),
    (["execute", "01", "--out", NOT_A_DIR + "/x.ipynb"], "not a directory", "a-file"),
    (["execute", "01", "--device", "cuda"], "CUDA is not available", None),
    (["execute", "01", "--device", "tpu"], "device must be one of", None),
    (["execute", "01", "-p", "seed", "1.5"], "integer", None),
    (["execute", "01", "-p", "nope", "1"], "parameters of 01_formulation", None),
    (["execute", "01", "--profile", "smoke"], "output notebook is not writable",
     "build-unwritable"),
    (["execute", "01"], "unreadable", "source-binary"),
    (["execute", "01"], "exactly one code cell tagged", "source-no-parameters"),
    (["book"], "MathJax", "no-mathjax"),
    (["book"], "build folder", "build-dir-unwritable"),
    (["book"], "notebooks/01_formulation.ipynb is damaged", "notebook-truncated"),
    # the cases of issue 16
    (["gaussian", "replicate", "--seeds", "1", "1"], "seeds must be distinct", None),
    (["gaussian", "exact", "--D", "1000000000"], "D must be an integer in [1, 100000]", None),
    (["show", "gaussian", "--profile", "nosuch"], "profile must be one of", None),
    (["execute", "01", "--profile", "smoke", "--out", "notebooks/05_autoregressive.ipynb"],
     "must not be inside", None),
    (["execute", "01", "--out", str(REPO / "data" / "results" / "gaussian" / "book.ipynb")],
     "must not be inside data/", None),
    (["execute", "01", "--out", str(REPO / "my_run.ipynb")], "must be under _build/", None),
    (["execute", "01", "-p", "seed", "-1"], "seed of 01_formulation must be an integer in [0,",
     None),
]


def plant(kind: str | None, scratch: Path, monkeypatch) -> None:
    results = scratch / "results"
    chapter = registry.CHAPTERS[0]
    if kind == "results-unwritable":
        (scratch / "a-file").write_text("x")
        monkeypatch.setattr(runner, "results_path", lambda e, p, suffix=".csv":
                            scratch / "a-file" / e / f"{p}{suffix}")
    elif kind == "sidecar-list":
        sidecar_pair(results, b"a\n1\n", b"[1, 2]")
    elif kind == "sidecar-binary":
        sidecar_pair(results, b"a\n1\n", b"\xff\xfe\x00binary")
    elif kind == "csv-edited":
        sidecar_pair(results, b"a\n1\n", b'{"csv_sha256": "0000"}')
    elif kind == "a-file":
        (scratch / "a-file").write_text("x")
    elif kind == "build-unwritable":
        monkeypatch.setattr(execution, "EXECUTED_DIR", Path("/proc/no/executed"))
    elif kind == "source-binary":
        chapter.source.write_bytes(b"\xff\xfe\x00\x01 not markdown")
    elif kind == "source-no-parameters":
        chapter.source.write_text(CHAPTER_SOURCE.replace(":tags: [parameters]", ""))
    elif kind == "notebook-truncated":
        chapter.notebook.write_text('{"cells": [{"cell_type": "mark')
    elif kind == "no-mathjax":
        monkeypatch.setattr(paths, "BOOK_DIR", scratch / "no-book")
    elif kind == "build-dir-unwritable":
        chapter.notebook.write_text("{}")
        monkeypatch.setattr(paths, "BUILD_DIR", Path("/proc/no/_build"))


@pytest.mark.parametrize("argv, message, kind", CASES,
                         ids=[f"{' '.join(c[0][:2])}-{c[2] or c[1]}" for c in CASES])
def test_one_line_exit_2_nothing_written(argv, message, kind, scratch, monkeypatch, capsys
                                         ) -> None:
    plant(kind, scratch, monkeypatch)
    monkeypatch.chdir(scratch)
    before_repo, before_scratch = repo_state(), files_under(scratch)
    code = cli.main(argv)
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert err.count("\n") == 1 and err.startswith("multisource: error: "), err
    assert message in err, err
    assert "Traceback" not in err + out
    assert files_under(scratch) == before_scratch
    assert repo_state() == before_repo


def test_run_stops_before_any_task_when_results_folder_is_read_only(scratch, monkeypatch
                                                                    ) -> None:
    from multisource.experiments import gaussian

    calls = []
    monkeypatch.setattr(gaussian, "_run_task", lambda *a: calls.append(a) or [{"x": 1}])
    plant("results-unwritable", scratch, monkeypatch)
    assert cli.main(["run", "gaussian", "--profile", "smoke", "--quiet"]) == 2
    assert calls == []


def test_debug_shows_the_exception() -> None:
    from multisource.common.validation import InputError

    with pytest.raises(InputError):
        cli.main(["gaussian", "exact", "--n", "0", "--debug"])


@pytest.mark.parametrize("argv, expected", [
    (["diffusion", "--help"], "diffusion train --help"),
    (["run", "--help"], "energy_ising"),
    (["execute", "--help"], "-p NAME VALUE"),
])
def test_help_helps(argv, expected, capsys) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(argv)
    assert done.value.code == 0
    assert expected in capsys.readouterr().out


def test_status_reports_every_chapter_and_marks_a_damaged_one(scratch, monkeypatch, capsys
                                                              ) -> None:
    damaged = registry.CHAPTERS[0]
    fine = Chapter("02_theorem_3_2", "Fine", "a test", directory=damaged.directory)
    fine.source.write_text(CHAPTER_SOURCE)
    monkeypatch.setattr(status, "CHAPTERS", (damaged, fine))
    damaged.notebook.write_text('{"cells": [')   # cut off
    code = cli.main(["status"])
    out, err = capsys.readouterr()
    assert code == 1
    assert "01_formulation: Synthetic" in out and "02_theorem_3_2: Fine" in out
    assert "DAMAGED: notebook notebooks/01_formulation.ipynb is damaged (not JSON" in out
    assert "not executed" in out   # the other chapter is still reported
    assert err.count("\n") == 1 and "damaged chapter notebook: 01_formulation" in err
    assert "Traceback" not in out + err


def test_execute_runs_a_chapter_named_several_ways_once(scratch, monkeypatch, capsys) -> None:
    ran = []

    def fake(plan, **kwargs):
        ran.append(plan.chapter.stem)
        return execution.Execution(plan, 0.0, False)

    monkeypatch.setattr(execution, "execute_chapter", fake)
    assert cli.main(["execute", "1", "01", "01_formulation", "--profile", "smoke"]) == 0
    assert ran == ["01_formulation"]
    assert "[1/1]" in capsys.readouterr().out


def test_gaussian_exact_at_its_largest_sizes_is_accurate_and_quiet(capsys) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cli.main(["gaussian", "exact", "--K", "5", "--D", "100000", "--n", "1",
                         "--json"]) == 0
    import json

    record = json.loads(capsys.readouterr().out)
    assert record["exact_single"] == pytest.approx(1.0, abs=1e-9)
    assert record["exact_multi"] == pytest.approx(1.0, abs=1e-9)


def test_gaussian_exact_never_prints_a_number_of_unknown_accuracy(monkeypatch, capsys) -> None:
    import warnings

    from scipy.integrate import IntegrationWarning

    from multisource.experiments import gaussian

    def not_converged(*args, **kwargs):
        warnings.warn("The integral is probably divergent", IntegrationWarning, stacklevel=1)
        return 0.3

    monkeypatch.setattr(gaussian, "exact_expected_risk", not_converged)
    assert cli.main(["gaussian", "exact", "--D", "50000", "--n", "1"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert "did not converge at K=5, D=50000" in err and "IntegrationWarning" not in err


def test_out_must_be_a_regular_file_or_a_new_path(scratch, monkeypatch, capsys) -> None:
    """A link to /dev/full used to be read until the process ran out of memory."""
    for name, target in (("full.ipynb", "/dev/full"), ("null.ipynb", "/dev/null")):
        (scratch / name).symlink_to(target)
    monkeypatch.chdir(scratch)
    for name in ("full.ipynb", "null.ipynb"):
        assert cli.main(["execute", "01", "--profile", "smoke", "--out", name]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        assert (f"--out must be a regular file or a new path, but {name} is a link to a "
                f"character device") in err


def _planted_notebook(chapter: Chapter, kind: str) -> None:
    """A committed notebook damaged in one of the ways `notebook_damage` names."""
    import json

    cells = [{"cell_type": "markdown", "id": "a-001", "metadata": {}, "source": "# T"},
             {"cell_type": "code", "id": "a-002", "metadata": {}, "source": "1",
              "execution_count": 1, "outputs": []}]
    notebook = {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    if kind == "no ids or outputs":
        for cell in cells:
            cell.pop("id")
            cell.pop("outputs", None)
    elif kind == "no outputs":
        cells[1].pop("outputs")
    elif kind == "empty":
        notebook["cells"] = []
    chapter.notebook.write_text(json.dumps(notebook))


DAMAGE = {"no ids or outputs": "schema-invalid: cell 1 has no id",
          "no outputs": "schema-invalid: cell 2: 'outputs' is a required property",
          "empty": "empty: no cells"}


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_status_book_and_execute_agree_on_a_damaged_notebook(kind, scratch, monkeypatch,
                                                             capsys) -> None:
    """One judgement, one line each: `status` exits 1 and keeps its table's row, `book` refuses
    to build (an empty chapter would be a blank page renumbering the others), and `execute`
    says it replaces the damaged notebook."""
    chapter = registry.CHAPTERS[0]
    _planted_notebook(chapter, kind)
    words = f"notebooks/01_formulation.ipynb is damaged ({DAMAGE[kind]})"

    assert cli.main(["status"]) == 1
    out, err = capsys.readouterr()
    assert f"DAMAGED: notebook {words}; restore it with `git checkout" in out
    assert err.count("\n") == 1 and "damaged chapter notebook: 01_formulation" in err

    assert cli.main(["book"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err

    monkeypatch.setattr(execution, "execute_chapter",
                        lambda plan, **kwargs: execution.Execution(plan, 0.0, True))
    assert cli.main(["execute", "01"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.endswith(f"(replacing it: damaged ({DAMAGE[kind]}))")


def test_a_tampered_table_is_named_as_such_and_run_is_the_fix(scratch, monkeypatch, capsys
                                                              ) -> None:
    """An edited book.csv is not "results that do not match the code": the table does not
    match its own provenance record, and `multisource run` (not re-executing) is the fix."""
    import multisource.experiments as experiments
    from multisource.experiments import Experiment

    monkeypatch.setitem(experiments._REGISTRY, "toy_table", Experiment(
        name="toy_table", description="toy", chapter="01_formulation",
        profiles={p: {"n": 1} for p in ("smoke", "book", "paper")},
        tasks=lambda c: [{"i": 0}], run_task=lambda c, t, d: [{"i": 0, "value": 1.5}]))
    runner.run_experiment("toy_table", "book", "cpu", progress=False)
    csv = scratch / "results" / "toy_table" / "book.csv"
    csv.write_text(csv.read_text().replace("1.5", "2.5"))
    words = "does not match its provenance record (csv_sha256 differs: edited or damaged?)"

    assert cli.main(["status"]) == 0
    out = capsys.readouterr().out
    assert f"toy_table[book]: INVALID ({words})" in out
    assert "`multisource run toy_table --profile book` computes it again" in out

    assert cli.main(["show", "toy_table"]) == 2
    err = capsys.readouterr().err
    assert words in err and "`multisource run toy_table --profile book`" in err

    assert cli.main(["execute", "01"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "01_formulation loads stored results that cannot be used: toy_table[book]" in err
    assert words in err and "`multisource run toy_table --profile book`" in err
