"""`diffusion train` and `imagenet prepare|encode|train|sample|evaluate` with bad input: each
case is one line on stderr, exit status 2, no traceback, and nothing written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from imagenet_fixtures import make_image_folder, save_tiny_vae

from multisource.cli import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict[str, Path]:
    """Valid inputs to break one at a time: a folder, a VAE, a subset, latents, a run."""
    root = tmp_path_factory.mktemp("robust")
    paths = {"root": root, "train_dir": make_image_folder(root, k=2, per_class=3)}
    paths["subset"] = root / "subset.npz"
    assert main(["imagenet", "prepare", "--train-dir", str(paths["train_dir"]), "--level", "sim1",
                 "--K", "2", "--resolution", "8", "--out", str(paths["subset"]),
                 "--no-progress"]) == 0
    pytest.importorskip("diffusers")
    paths["vae"] = save_tiny_vae(root / "vae")
    paths["latents"] = root / "latents.npz"
    assert main(["imagenet", "encode", "--data", str(paths["subset"]), "--vae", str(paths["vae"]),
                 "--out", str(paths["latents"]), "--normalisation", "data",
                 "--no-progress"]) == 0
    paths["run"] = root / "run"
    assert main(["imagenet", "train", "--data", str(paths["latents"]), "--out",
                 str(paths["run"]), "--steps", "2", "--batch", "4", "--no-progress"]) == 0
    # broken inputs
    (root / "garbage.npz").write_bytes(b"PK\x03\x04 not really a zip")
    (root / "garbage.pt").write_bytes(b"\x80\x02 not a torch file")
    (root / "a_file").write_text("x")
    np.savez(root / "no_labels.npz", images=np.zeros((2, 1, 8, 8), np.float32))
    np.savez(root / "negative_labels.npz", images=np.zeros((2, 1, 8, 8), np.float32),
             labels=np.array([-1, -1]))
    np.savez(root / "negative_subset.npz", images=np.zeros((2, 8, 8, 3), np.uint8),
             labels=np.array([-1, 0]), class_indices=np.array([171]),
             meta=np.asarray(json.dumps({"level": "sim1", "n_per_class": 2})))
    truncated = root / "truncated_run"
    truncated.mkdir()
    full = (paths["run"] / "checkpoint.pt").read_bytes()
    (truncated / "checkpoint.pt").write_bytes(full[: len(full) // 2])
    (truncated / "subset.json").write_text((paths["run"] / "subset.json").read_text())
    damaged = root / "damaged_info_run"
    damaged.mkdir()
    (damaged / "subset.json").write_text("{not json")
    (root / "empty_vae").mkdir()
    (root / "junk_weights.pt").write_bytes(b"junk")
    return paths


def _cases(p: dict[str, Path]) -> list[tuple[list[str], str]]:
    r = p["root"]
    new = str(r / "new_out")
    subset, latents, run, vae = (str(p[k]) for k in ("subset", "latents", "run", "vae"))
    prep = ["imagenet", "prepare", "--train-dir", str(p["train_dir"]), "--level", "sim1"]
    train = ["imagenet", "train", "--data", latents, "--steps", "1", "--batch", "4"]
    sample = ["imagenet", "sample", "--run", run, "--vae", vae, "--samples-per-class", "2"]
    evaluate = ["imagenet", "evaluate", "--samples", subset, "--reference", subset]
    diffusion = ["diffusion", "train", "--steps", "1", "--batch", "4"]
    return [
        # diffusion train
        ([*diffusion, "--out", new, "--seed", "-1"], "--seed"),
        ([*diffusion, "--out", new, "--threads", "0"], "--threads"),
        ([*diffusion, "--out", new, "--steps", "0"], "--steps"),
        ([*diffusion, "--out", ""], "--out"),
        ([*diffusion, "--out", "/proc/x"], "--out"),
        ([*diffusion, "--out", str(r / "a_file")], "--out"),
        ([*diffusion, "--out", new, "--data", str(r / "garbage.npz")], "garbage.npz"),
        ([*diffusion, "--out", new, "--data", str(r / "garbage.pt")], "garbage.pt"),
        ([*diffusion, "--out", new, "--data", str(r / "no_labels.npz")], "labels"),
        ([*diffusion, "--out", new, "--data", str(r / "negative_labels.npz")], "labels"),
        ([*diffusion, "--out", str(r / "truncated_run")], "damaged"),
        # imagenet prepare
        ([*prep, "--K", "2", "--out", "/proc/x/y.npz"], "--out"),
        ([*prep, "--K", "2", "--out", str(r)], "--out"),
        ([*prep, "--K", "2", "--out", ""], "--out"),
        ([*prep, "--K", "2", "--seed", "-1", "--out", str(r / "p.npz")], "--seed"),
        ([*prep, "--K", "0", "--out", str(r / "p.npz")], "--K"),
        ([*prep, "--K", "2", "--classes", "171", "--out", str(r / "p.npz")], "--classes"),
        ([*prep, "--classes", "999", "--out", str(r / "p.npz")], "classes"),
        ([*prep, "--K", "2", "--n-per-class", "50", "--out", str(r / "p.npz")], "n_per_class"),
        # imagenet encode
        (["imagenet", "encode", "--data", subset, "--vae", str(r / "absent"), "--out",
          str(r / "l.npz")], "vae"),
        (["imagenet", "encode", "--data", subset, "--vae", str(r / "empty_vae"), "--out",
          str(r / "l.npz")], "config.json"),
        (["imagenet", "encode", "--data", str(r / "garbage.npz"), "--vae", vae, "--out",
          str(r / "l.npz")], "garbage.npz"),
        (["imagenet", "encode", "--data", subset, "--vae", vae, "--out", str(r)], "--out"),
        # imagenet train
        ([*train, "--out", new, "--seed", "-1"], "--seed"),
        ([*train, "--out", new, "--threads", "0"], "--threads"),
        ([*train, "--out", str(r / "a_file")], "--out"),
        ([*train, "--out", "/proc/x"], "--out"),
        ([*train, "--out", ""], "--out"),
        ([*train, "--out", str(r / "truncated_run")], "damaged"),
        ([*train, "--out", new, "--preset", "huge"], "preset"),
        ([*train, "--out", new, "--precision", "fp8"], "precision"),
        (["imagenet", "train", "--data", str(r / "garbage.npz"), "--out", new], "garbage.npz"),
        (["imagenet", "train", "--data", str(r / "negative_subset.npz"), "--out", new],
         "labels"),
        # imagenet sample
        (["imagenet", "sample", "--run", "", "--out", str(r / "s.npz")], "run"),
        (["imagenet", "sample", "--run", str(r / "absent"), "--out", str(r / "s.npz")], "run"),
        (["imagenet", "sample", "--run", str(r / "damaged_info_run"), "--out",
          str(r / "s.npz")], "damaged"),
        (["imagenet", "sample", "--run", str(r / "truncated_run"), "--vae", vae, "--out",
          str(r / "s.npz")], "damaged"),
        (["imagenet", "sample", "--run", run, "--out", str(r / "s.npz")], "vae"),
        ([*sample, "--out", ""], "--out"),
        ([*sample, "--out", str(r)], "--out"),
        ([*sample, "--out", str(r / "s.npz"), "--seed", "-1"], "--seed"),
        ([*sample, "--out", str(r / "s.npz"), "--samples-per-class", "0"], "samples-per-class"),
        ([*sample, "--out", str(r / "s.npz"), "--ema-std", "0.3"], "--ema-std"),
        # imagenet evaluate
        (["imagenet", "evaluate", "--samples", str(r / "garbage.npz"), "--reference", subset,
          "--extractor", "pixels"], "garbage.npz"),
        (["imagenet", "evaluate", "--samples", subset, "--reference", str(r / "absent.npz"),
          "--extractor", "pixels"], "--reference"),
        ([*evaluate, "--inception-weights", str(r / "absent.pt")], "inception"),
        ([*evaluate, "--inception-weights", str(r / "junk_weights.pt")], "TorchScript"),
        ([*evaluate, "--extractor", "pixels", "--out", "/proc/x/r.json"], "--out"),
        ([*evaluate, "--extractor", "pixels", "--threads", "0"], "--threads"),
    ]


def _snapshot(root: Path) -> dict[str, int | None]:
    """Every path under `root`, with files' modification times (a folder's own time changes
    when the writability probe creates and removes its temporary file)."""
    return {str(p): None if p.is_dir() else p.stat().st_mtime_ns for p in root.rglob("*")}


def test_every_bad_input_is_one_line_exit_2_and_writes_nothing(setup, capsys, monkeypatch):
    monkeypatch.delenv("MULTISOURCE_INCEPTION_WEIGHTS", raising=False)
    before = _snapshot(setup["root"])
    failures = []
    for args, expected in _cases(setup):
        try:
            code = main(args)
        except SystemExit as exit_:       # argparse usage errors
            code = exit_.code
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.strip()]
        if code != 2 or len(lines) != 1 or "Traceback" in err or expected not in err:
            failures.append((args, code, err[-500:]))
    assert not failures, failures
    assert _snapshot(setup["root"]) == before


def test_real_processes_show_no_traceback(setup) -> None:
    r = setup["root"]
    for args in (["diffusion", "train", "--out", str(r / "truncated_run")],):
        done = subprocess.run([sys.executable, "-m", "multisource", *args], capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 2 and "Traceback" not in done.stderr
        assert done.stderr.count("\n") == 1 and done.stderr.startswith("multisource: error:")


def test_diffusion_help_and_progress_bars(setup, capsys) -> None:
    with pytest.raises(SystemExit) as raised:
        main(["diffusion", "--help"])
    assert raised.value.code == 0 and "diffusion train --help" in capsys.readouterr().out
    with pytest.raises(SystemExit) as raised:
        main(["diffusion", "train", "--help"])
    assert raised.value.code == 0 and "--precision" in capsys.readouterr().out
    r = setup["root"]
    assert main(["imagenet", "prepare", "--train-dir", str(setup["train_dir"]), "--level",
                 "sim1", "--K", "1", "--resolution", "8", "--out", str(r / "bar.npz")]) == 0
    assert "prepare" in capsys.readouterr().err          # a tqdm bar on stderr
    assert main(["imagenet", "sample", "--run", str(setup["run"]), "--vae", str(setup["vae"]),
                 "--samples-per-class", "2", "--steps", "2", "--out",
                 str(r / "bar_samples.npz")]) == 0
    assert "sample" in capsys.readouterr().err
    assert main(["imagenet", "evaluate", "--samples", str(r / "bar_samples.npz"), "--reference",
                 str(setup["subset"]), "--extractor", "pixels"]) == 0
    assert "class 171" in capsys.readouterr().err
