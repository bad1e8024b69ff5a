"""Executing a chapter never dirties the repository.

A small synthetic chapter (a parameters cell, printed numbers, a pandas Styler table and a
matplotlib figure) is executed with papermill in a scratch git repository: executing it twice
at the book profile leaves `git status` unchanged, and executing it at another profile or with
changed parameters leaves the committed notebook untouched.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

import pytest

from multisource import chapters
from multisource.chapters import (
    Chapter,
    ChapterFailed,
    execute_chapter,
    normalise_executed,
    notebook_state,
    plan_execution,
)
from multisource.validation import InputError

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
        from multisource.validation import InputError
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
    monkeypatch.setattr(chapters, "EXECUTED_DIR", repo / "_build" / "executed")
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
    assert smoke.plan.output == repo / "_build" / "executed" / "smoke" / "99_synthetic.ipynb"
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
    parse = chapters.parse_parameter_value
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


def test_only_values_that_change_the_run_are_injected(tmp_path) -> None:
    import torch

    chapter = Chapter("99_synthetic", "Synthetic", "a test", directory=tmp_path)
    chapter.source.write_text(SOURCE)
    injected = chapters._injected_parameters
    assert injected(plan_execution(chapter)) == {}
    # `cpu` is what `auto` means on a machine without CUDA: nothing to inject, same notebook
    assert ("device" in injected(plan_execution(chapter, device="cpu"))) == \
        torch.cuda.is_available()
    assert injected(plan_execution(chapter, profile="smoke", parameters={"seed": 4})) == \
        {"profile": "smoke", "seed": 4}


def test_a_dirty_commit_record_is_replaced_once_by_a_clean_one() -> None:
    def notebook(commit: str) -> dict:
        return {"metadata": {"multisource": {"source_commit": commit}}}

    assert chapters._cleans_commit(notebook("abc-dirty"), {"source_commit": "def"})
    assert not chapters._cleans_commit(notebook("abc"), {"source_commit": "def"})  # no churn
    assert not chapters._cleans_commit(notebook("abc-dirty"), {"source_commit": "def-dirty"})
    assert not chapters._cleans_commit({"metadata": {}}, {"source_commit": "def"})
