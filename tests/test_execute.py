"""Executing a chapter never dirties the repository.

A small synthetic chapter (a parameters cell, printed numbers, a pandas Styler table and a
matplotlib figure) is executed with papermill in a scratch git repository: executing it twice
at the book profile leaves `git status` unchanged, and executing it at another profile or with
changed parameters leaves the committed notebook untouched.
"""

from __future__ import annotations

import copy
import json
import subprocess
import textwrap
from pathlib import Path

import pytest

from multisource.book import execution, normalise, registry
from multisource.book.execution import ChapterFailed, execute_chapter, plan_execution
from multisource.book.inputs import notebook_state
from multisource.book.normalise import normalise_executed
from multisource.book.registry import Chapter
from multisource.common.validation import InputError

SOURCE = textwrap.dedent('''\
    ---
    jupytext:
      text_representation:
        extension: .md
        format_name: myst
    kernelspec:
      display_name: Python 3
      language: python
      name: python3
    ---

    # A synthetic chapter

    ```{code-cell} ipython3
    :tags: [parameters]

    profile = "book"
    device = "auto"
    seed = 3
    scale = 2.0
    ```

    ```{code-cell} ipython3
    import matplotlib.pyplot as plt
    import numpy as np
    import pandas as pd

    if scale < 0:
        from multisource.common.validation import InputError
        raise InputError("scale must be >= 0")
    values = np.random.default_rng(seed).normal(size=5) * scale
    print(profile, f"{values.sum():.6f}")
    pd.DataFrame({"value": values}).style.format("{:.3f}")
    ```

    ```{code-cell} ipython3
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot(values)
    plt.show()
    ```
    ''')


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                          text=True).stdout


@pytest.fixture
def scratch_repo(tmp_path, monkeypatch) -> tuple[Path, Chapter]:
    """A git repository with one committed, executed synthetic chapter."""
    repo = tmp_path / "repo"
    (repo / "notebooks").mkdir(parents=True)
    (repo / ".gitignore").write_text("_build/\n")
    chapter = Chapter("99_synthetic", "Synthetic", "a test", directory=repo / "notebooks")
    chapter.source.write_text(SOURCE)
    monkeypatch.setattr(execution, "EXECUTED_DIR", repo / "_build" / "executed")
    git(repo, "init", "-q")
    git(repo, "-c", "user.email=t@example.org", "-c", "user.name=t", "commit", "-q",
        "--allow-empty", "-m", "empty")
    first = execute_chapter(chapter)
    assert first.written and first.plan.committed
    git(repo, "add", "-A")
    git(repo, "-c", "user.email=t@example.org", "-c", "user.name=t", "commit", "-q", "-m",
        "executed")
    return repo, chapter


def test_executing_twice_leaves_git_status_clean_and_other_runs_go_elsewhere(
        scratch_repo) -> None:
    repo, chapter = scratch_repo
    committed = chapter.notebook.read_bytes()
    stamp = chapter.notebook.stat().st_mtime_ns

    again = execute_chapter(chapter)
    assert not again.written  # same cells and outputs: the file is not touched
    assert git(repo, "status", "--porcelain") == ""
    assert chapter.notebook.stat().st_mtime_ns == stamp

    smoke = execute_chapter(chapter, profile="smoke", parameters={"seed": 5})
    key = execution.parameters_key({"seed": 5})
    assert smoke.plan.output == repo / "_build" / "executed" / "smoke" / \
        f"99_synthetic-p{key}.ipynb"
    assert git(repo, "status", "--porcelain") == ""
    assert chapter.notebook.read_bytes() == committed
    elsewhere = json.loads(smoke.plan.output.read_text())
    assert elsewhere["metadata"]["multisource"]["parameters"] == {"seed": 5}
    assert "smoke" in "".join(elsewhere["cells"][3]["outputs"][0]["text"])
    log = (repo / "_build" / "executed" / "runs.jsonl").read_text().splitlines()
    assert [json.loads(line)["written"] for line in log] == [True, False, True]

    plan = plan_execution(chapter, parameters={"scale": 3})
    assert not plan.committed and plan.parameters == {"scale": 3}
    assert plan_execution(chapter, parameters={"seed": 3}).committed  # the default itself
    with pytest.raises(ChapterFailed) as failed:
        execute_chapter(chapter, parameters={"scale": -1.0})
    assert failed.value.user_input and "scale must be >= 0" in str(failed.value)
    assert git(repo, "status", "--porcelain") == ""
    assert (repo / "_build" / "executed" / "failed" / "99_synthetic.ipynb").is_file()

    notebook = json.loads(committed)
    assert [c["id"] for c in notebook["cells"]] == [f"99_synthetic-{i:03d}" for i in range(4)]
    assert notebook["metadata"]["multisource"]["profile"] == "book"
    assert not any("injected-parameters" in c["metadata"].get("tags", [])
                   for c in notebook["cells"])  # the defaults are not injected at all
    assert notebook_state(chapter) == "current"
    chapter.source.write_text(SOURCE.replace("seed = 3", "seed = 4"))
    assert notebook_state(chapter) == "stale-source"


@pytest.mark.parametrize("parameters, match", [
    ({"sed": 1}, "one of the parameters"), ({"seed": 1.5}, "must be an integer"),
    ({"seed": True}, "must be an integer"), ({"scale": "big"}, "must be a number"),
    ({"profile": "smoke"}, "--profile"),
])
def test_bad_parameters_are_refused_before_any_work(tmp_path, parameters, match) -> None:
    chapter = Chapter("99_synthetic", "Synthetic", "a test", directory=tmp_path)
    chapter.source.write_text(SOURCE)
    with pytest.raises(InputError, match=match):
        plan_execution(chapter, parameters=parameters)


def test_parameter_values_parse_as_python_literals() -> None:
    parse = registry.parse_parameter_value
    assert parse("7") == 7 and parse("0.5") == 0.5 and parse("[1, 2]") == [1, 2]
    assert parse("True") is True and parse("'x'") == "x" and parse("cpu") == "cpu"


def test_normalising_makes_run_specific_details_stable() -> None:
    def executed(address: str, uid: str) -> dict:
        html = f'<style>#T_{uid}_row0 {{}}</style><table id="T_{uid}">'
        return {"metadata": {"papermill": {"duration": 1.0}}, "cells": [
            {"cell_type": "code", "id": address, "metadata": {"execution": {"t": address}},
             "outputs": [{"output_type": "execute_result", "data": {
                 "text/plain": [f"<pandas.io.formats.style.Styler at 0x{address}>"],
                 "text/html": [html]}}]},
            {"cell_type": "code", "id": uid, "metadata": {"tags": ["injected-parameters"]},
             "outputs": []}]}

    one = normalise_executed(executed("7f2acc266290", "28c10"), "07_x")
    two = normalise_executed(executed("7f27baa51d90", "eddaa"), "07_x")
    assert one == two
    assert one["cells"][0]["id"] == "07_x-000"
    assert "remove-cell" in one["cells"][1]["metadata"]["tags"]
    assert "papermill" not in one["metadata"]
    assert "execution" not in one["cells"][0]["metadata"]


def test_glued_floats_are_stored_to_ten_significant_digits() -> None:
    prefix = "application/papermill.record/"

    def glued(value: str) -> dict:
        return {"output_type": "display_data",
                "metadata": {"scrapbook": {"name": "x", "mime_prefix": prefix}},
                "data": {f"{prefix}text/plain": value}}

    def stored(*values: str) -> list[str]:
        cells = [{"cell_type": "code", "metadata": {}, "source": "glue('x', x)",
                  "outputs": [glued(v) for v in values]}]
        notebook = normalise_executed({"metadata": {}, "cells": cells}, "06_x")
        return [o["data"][f"{prefix}text/plain"] for o in notebook["cells"][0]["outputs"]]

    # last-bit noise of two BLAS kernels: the same stored bytes
    assert stored("0.08456354433118317", "0.08456354433118321") == ["0.08456354433"] * 2
    assert stored("-4.6499962505877734e-12") == ["-4.649996251e-12"]
    # a change in the 10th digit is kept; ints, bools and strings are not touched
    assert stored("0.0845635443", "0.0845635444") == ["0.0845635443", "0.0845635444"]
    assert stored("3", "True", "'0.123456789123'", "nan") == [
        "3", "True", "'0.123456789123'", "nan"]
    # an ordinary output's text is not a glued value
    cells = [{"cell_type": "code", "metadata": {}, "source": "x",
              "outputs": [{"output_type": "execute_result",
                           "data": {"text/plain": "0.08456354433118317"}}]}]
    notebook = normalise_executed({"metadata": {}, "cells": cells}, "06_x")
    assert notebook["cells"][0]["outputs"][0]["data"]["text/plain"] == "0.08456354433118317"


def test_only_values_that_change_the_run_are_injected(tmp_path) -> None:
    import torch

    chapter = Chapter("99_synthetic", "Synthetic", "a test", directory=tmp_path)
    chapter.source.write_text(SOURCE)
    injected = execution._injected_parameters
    assert injected(plan_execution(chapter)) == {}
    # `cpu` is what `auto` means on a machine without CUDA: nothing to inject, same notebook
    assert ("device" in injected(plan_execution(chapter, device="cpu"))) == \
        torch.cuda.is_available()
    assert injected(plan_execution(chapter, profile="smoke", parameters={"seed": 4})) == \
        {"profile": "smoke", "seed": 4}


def test_a_dirty_commit_record_is_replaced_once_by_a_clean_one() -> None:
    def notebook(commit: str) -> dict:
        return {"metadata": {"multisource": {"source_commit": commit}}}

    assert normalise._cleans_commit(notebook("abc-dirty"), {"source_commit": "def"})
    assert not normalise._cleans_commit(notebook("abc"), {"source_commit": "def"})  # no churn
    assert not normalise._cleans_commit(notebook("abc-dirty"), {"source_commit": "def-dirty"})
    assert not normalise._cleans_commit({"metadata": {}}, {"source_commit": "def"})


def test_cells_that_only_check_are_hidden_by_rule() -> None:
    def code(text: str, outputs=(), tags=()) -> dict:
        return {"cell_type": "code", "source": text, "metadata": {"tags": list(tags)},
                "outputs": list(outputs), "execution_count": 1}

    printed = {"output_type": "stream", "name": "stdout", "text": "0.123\n"}
    warning = {"output_type": "stream", "name": "stderr", "text": "UserWarning\n"}
    shown = {"output_type": "display_data", "data": {"text/plain": "0.5"}}
    cells = [
        code("# NBVAL_CHECK_OUTPUT\nprint(f'{x:.3f}')", [printed]),        # 0 remove-cell
        code("# claims\nassert x > 0\nif check_claims:\n    assert y < 1"),  # 1 remove-cell
        code("glue('x', x, display=False)\nglue('y', y, display=False)", [warning]),  # 2
        code("from myst_nb import glue\nglue('x', x)", [shown]),           # 3 remove-input
        code("z = x + 1\nglue('z', z, display=False)\nassert z > 1"),       # 4 hide-input
        code("z = x + 1\nprint(z)", [printed]),                              # 5 shown
        code("plot()\nplt.show()", tags=["hide-input"]),                     # 6 unchanged
        code("assert x", tags=["hide-input"]),                               # 7 + remove-cell
        code("glue('x', x)", [shown], tags=["remove-cell"]),                 # 8 unchanged
        {"cell_type": "markdown", "source": "assert x", "metadata": {}},    # 9 prose
        code("%matplotlib inline\nassert x"),                                # 10 remove-cell
    ]
    normalised = normalise_executed({"metadata": {}, "cells": cells}, "07_x")
    tags = [c["metadata"].get("tags", []) for c in normalised["cells"]]
    assert tags == [["remove-cell"], ["remove-cell"], ["remove-cell"], ["remove-input"],
                    ["hide-input"], [], ["hide-input"], ["hide-input", "remove-cell"],
                    ["remove-cell"], [], ["remove-cell"]]


def test_a_tag_change_alone_rewrites_the_committed_notebook(scratch_repo) -> None:
    _, chapter = scratch_repo
    committed = json.loads(chapter.notebook.read_text())
    notebook = copy.deepcopy(committed)
    notebook["cells"][1]["metadata"]["tags"] = ["hide-input"]   # as if tagged by an older rule
    chapter.notebook.write_text(normalise.notebook_text(notebook))
    again = execute_chapter(chapter)
    assert again.written   # the same outputs, other tags: a change worth writing
    assert json.loads(chapter.notebook.read_text())["cells"] == committed["cells"]


def test_other_parameters_go_to_other_files(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(execution, "EXECUTED_DIR", tmp_path / "executed")
    chapter = Chapter("99_synthetic", "Synthetic", "a test", directory=tmp_path)
    chapter.source.write_text(SOURCE)
    outputs = {plan_execution(chapter, profile="smoke", parameters=p).output
               for p in ({}, {"seed": 4}, {"seed": 5}, {"seed": 4, "scale": 1.0})}
    assert len(outputs) == 4
    assert plan_execution(chapter, parameters={"seed": 4}).output == \
        plan_execution(chapter, parameters={"seed": 4}).output   # stable names
    assert all(o.parent == tmp_path / "executed" / "smoke" for o in outputs)


@pytest.mark.parametrize("where, message", [
    ("notebooks/05_autoregressive.ipynb", "must not be inside notebooks/"),
    ("data/results/gaussian/book.ipynb", "must not be inside data/"),
    ("book/page.ipynb", "must not be inside book/"),
    ("my_run.ipynb", "must be under _build/"),
    ("src/x.ipynb", "must be under _build/"),
])
def test_out_never_writes_into_the_repository_outside_build(where, message) -> None:
    from multisource.common.paths import REPO_ROOT

    chapter = registry.find_chapter("04")
    with pytest.raises(InputError, match=message):
        plan_execution(chapter, profile="smoke", output=REPO_ROOT / where)
    assert plan_execution(chapter, profile="smoke",
                          output=REPO_ROOT / "_build" / "mine.ipynb").output.name == "mine.ipynb"


def test_out_refuses_a_file_tracked_by_git(tmp_path) -> None:
    repo = tmp_path / "repo"
    (repo / "notebooks").mkdir(parents=True)
    chapter = Chapter("99_synthetic", "Synthetic", "a test", directory=repo / "notebooks")
    chapter.source.write_text(SOURCE)
    git(repo, "init", "-q")
    tracked = repo / "kept.ipynb"
    tracked.write_text("{}")
    git(repo, "add", "kept.ipynb")
    with pytest.raises(InputError, match="tracked by git"):
        plan_execution(chapter, profile="smoke", output=tracked)
    assert plan_execution(chapter, profile="smoke", output=repo / "other.ipynb").output == \
        repo / "other.ipynb"


@pytest.fixture
def stale_experiment(tmp_path, monkeypatch):
    """A toy experiment shown by the synthetic chapter, with stored results whose code hash
    no longer matches the code."""
    from dataclasses import dataclass

    import multisource.experiments as experiments
    from multisource.experiments import Experiment, runner

    @dataclass(frozen=True)
    class Config:
        size: int = 2

    monkeypatch.setitem(experiments._REGISTRY, "toy_stale", Experiment(
        name="toy_stale", description="toy", chapter="99_synthetic",
        profiles={p: Config() for p in ("smoke", "book", "paper")},
        tasks=lambda c: [{"i": i} for i in range(c.size)],
        run_task=lambda c, t, d: [{"i": t["i"]}]))
    results = tmp_path / "results"
    monkeypatch.setattr(runner, "results_path",
                        lambda e, p, suffix=".csv": results / e / f"{p}{suffix}")
    runner.run_experiment("toy_stale", "book", "cpu", progress=False, results_dir=results)
    sidecar = results / "toy_stale" / "book.json"
    record = json.loads(sidecar.read_text())
    record.update(code_hash="0" * 16, wall_time_s=5400.0)
    sidecar.write_text(json.dumps(record))
    return "toy_stale"


def test_stale_stored_results_stop_the_book_profile_with_one_line(tmp_path, monkeypatch,
                                                                  stale_experiment) -> None:
    monkeypatch.setattr(execution, "EXECUTED_DIR", tmp_path / "_build" / "executed")
    chapter = Chapter("99_synthetic", "Synthetic", "a test", directory=tmp_path / "notebooks")
    chapter.directory.mkdir()
    chapter.source.write_text(SOURCE)
    with pytest.raises(InputError) as refused:
        plan_execution(chapter)
    message = str(refused.value)
    assert "\n" not in message
    for fragment in ("toy_stale[book]", "code that computes them changed", "90 min",
                     "`multisource run toy_stale --profile book`", "--recompute-stale"):
        assert fragment in message, message
    plan_execution(chapter, profile="smoke")   # other profiles compute what is missing

    done = execute_chapter(plan_execution(chapter, recompute_stale=True))
    assert done.plan.recomputed == ("toy_stale",) and not done.plan.committed
    assert done.plan.output == tmp_path / "_build" / "executed" / "book" / \
        "99_synthetic-recomputed.ipynb"
    assert not chapter.notebook.exists()   # the committed place is never written
    notebook = json.loads(done.plan.output.read_text())
    assert notebook["metadata"]["multisource"]["recomputed"] == ["toy_stale"]
    notice = "".join(notebook["cells"][1]["source"])
    assert notice.startswith(":::{warning}\nRecomputed, not the book's stored results")
    assert "stored results," not in json.dumps(notebook["cells"])
