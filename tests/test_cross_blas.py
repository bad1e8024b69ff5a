"""A chapter's shown numbers do not depend on the machine: chapters executed under another BLAS
kernel, another vector instruction set and another thread count store the same outputs (glued
values, checked outputs, tables and figures), byte for byte, as the committed notebooks.

Here numpy and scipy use OpenBLAS (`OPENBLAS_CORETYPE` picks its kernel), torch uses MKL
(`MKL_ENABLE_INSTRUCTIONS`) and its own vectorised kernels (`ATEN_CPU_CAPABILITY`, e.g. tanh
and exp). `MULTISOURCE_CROSS_BLAS=all` adds the slower chapters (about 2 minutes more)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import threadpoolctl

from multisource.book.normalise import CHECK_OUTPUT_MARKER
from multisource.common.paths import REPO_ROOT

pytestmark = [pytest.mark.slow, pytest.mark.cross_blas]

OTHER_KERNELS = {"OPENBLAS_CORETYPE": "Haswell", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2",
                 "ATEN_CPU_CAPABILITY": "default", "OMP_NUM_THREADS": "2",
                 "OPENBLAS_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}
QUICK = ["02_theorem_3_2", "03_bracketing_numbers"]
SLOW = ["00_scorecard", "01_formulation", "04_gaussian", "05_autoregressive", "06_energy_based",
        "07_edm2_diffusion", "08_when_pooling_hurts"]
CHAPTERS = QUICK + (SLOW if os.environ.get("MULTISOURCE_CROSS_BLAS") == "all" else [])


def shown_values(notebook: dict) -> dict[str, str]:
    """Every glued value as stored, and the printed output of every nbval-checked cell."""
    shown: dict[str, str] = {}
    for cell in notebook["cells"]:
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"])
        for output in cell.get("outputs", []):
            scrapbook = output.get("metadata", {}).get("scrapbook")
            if scrapbook:
                shown[f"glue:{scrapbook['name']}"] = json.dumps(output["data"], sort_keys=True)
            elif source.startswith(CHECK_OUTPUT_MARKER) and output.get("name") == "stdout":
                shown[f"{cell['id']}:stdout"] = shown.get(f"{cell['id']}:stdout", "") + "".join(
                    output["text"])
    return shown


def test_the_kernels_varied_here_are_the_ones_in_use() -> None:
    libraries = {(i["internal_api"], i["user_api"]) for i in threadpoolctl.threadpool_info()}
    assert ("openblas", "blas") in libraries      # numpy's and scipy's BLAS
    import torch
    assert "BLAS_INFO=mkl" in torch.__config__.show()


def test_shown_values_reads_glue_and_checked_output() -> None:
    notebook = {"cells": [
        {"cell_type": "code", "id": "a", "source": "glue('x', x)", "outputs": [
            {"metadata": {"scrapbook": {"name": "x"}}, "data": {"p/text/plain": "0.1"}}]},
        {"cell_type": "code", "id": "b", "source": f"{CHECK_OUTPUT_MARKER}\nprint(x)",
         "outputs": [{"name": "stdout", "text": ["0.10\n"]}]},
        {"cell_type": "code", "id": "c", "source": "print(x)",
         "outputs": [{"name": "stdout", "text": ["noise\n"]}]}]}
    assert shown_values(notebook) == {"glue:x": '{"p/text/plain": "0.1"}', "b:stdout": "0.10\n"}


@pytest.mark.parametrize("stem", CHAPTERS)
def test_another_blas_kernel_shows_the_same_numbers(stem: str) -> None:
    committed = json.loads((REPO_ROOT / "notebooks" / f"{stem}.ipynb").read_text())
    out = REPO_ROOT / "_build" / "cross_blas" / f"{stem}.ipynb"
    out.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **OTHER_KERNELS, "PYTHONPATH": str(REPO_ROOT / "src")}
    done = subprocess.run([sys.executable, "-m", "multisource", "execute", stem,
                           "--profile", "book", "--out", str(out)],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    expected, got = shown_values(committed), shown_values(json.loads(out.read_text()))
    assert expected, f"{stem}: the committed notebook shows no glued or checked value"
    differ = {k: (expected.get(k), got.get(k)) for k in expected.keys() | got.keys()
              if expected.get(k) != got.get(k)}
    assert differ == {}, f"{stem}: shown values differ under {OTHER_KERNELS}: {differ}"
    # and every other output too (tables, figures): the committed notebook, byte for byte
    changed = [cell_id for cell_id, outputs in cell_outputs(committed).items()
               if cell_outputs(json.loads(out.read_text())).get(cell_id) != outputs]
    assert changed == [], f"{stem}: outputs of cells {changed} differ under {OTHER_KERNELS}"


def cell_outputs(notebook: dict) -> dict[str, str]:
    """Each code cell's outputs, serialised (cell id -> JSON)."""
    return {cell["id"]: json.dumps(cell.get("outputs", []), sort_keys=True)
            for cell in notebook["cells"] if cell["cell_type"] == "code"}
