"""The paper's latent protocol through the command line, on tiny stand-ins (no ImageNet, no
downloaded weights): generated ImageFolder -> random AutoencoderKL from a config -> latents ->
training -> samples -> decoded images -> per-class FID with a stand-in Inception network."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from imagenet_fixtures import make_image_folder, save_standin_inception, save_tiny_vae

from multisource.cli import main
from multisource.common.validation import InputError
from multisource.images import imagenet, imagenet_runs, latents
from multisource.models.diffusion import load_result, sample
from multisource.models.diffusion.config import PAPER_SCHEDULES, paper_train_config
from multisource.models.diffusion.schedules import select_schedule

pytest.importorskip("diffusers")
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def run(*args: str) -> None:
    assert main(list(args)) == 0, args


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Folder, VAE, stand-in Inception, a prepared subset and its references (built once)."""
    root = tmp_path_factory.mktemp("imagenet")
    train_dir = make_image_folder(root)
    vae = save_tiny_vae(root / "vae")
    inception = save_standin_inception(root / "inception.pt")
    run("imagenet", "prepare", "--train-dir", str(train_dir), "--level", "sim1", "--K", "3",
        "--n-per-class", "4", "--resolution", "16", "--out", str(root / "subset.npz"),
        "--no-progress")
    run("imagenet", "prepare", "--train-dir", str(train_dir), "--level", "sim1", "--K", "3",
        "--resolution", "16", "--out", str(root / "reference.npz"), "--no-progress")
    return root, vae, inception


def test_end_to_end_through_the_command_line(world, capsys) -> None:
    root, vae, inception = world
    run("imagenet", "encode", "--data", str(root / "subset.npz"), "--vae", str(vae),
        "--out", str(root / "latents.npz"), "--normalisation", "data", "--device", "cpu",
        "--no-progress")
    data = latents.load_latents(root / "latents.npz")
    assert data.mean.shape == (12, 4, 8, 8) and data.std.shape == (12, 4, 8, 8)
    assert (data.std > 0).all()                  # a real posterior, not a copy of the mean
    assert data.meta["normalisation"]["source"] == "data"
    stats = latents.channel_statistics(data.training_latents())
    assert np.allclose(stats["mean"], 0.0, atol=1e-5)   # the data normalisation did its job
    assert np.allclose(stats["std"], 0.5, atol=1e-5)

    run("imagenet", "train", "--data", str(root / "latents.npz"), "--out", str(root / "run"),
        "--steps", "3", "--batch", "8", "--device", "cpu", "--no-progress")
    out = capsys.readouterr().out
    assert "no authors' preset for K=3, n=4" in out and "latents 4x8x8" in out
    run("imagenet", "sample", "--run", str(root / "run"), "--vae", str(vae), "--out",
        str(root / "samples.npz"), "--samples-per-class", "4", "--steps", "3", "--device", "cpu",
        "--no-progress")
    samples = imagenet.load_subset(root / "samples.npz")
    assert samples.images.shape == (12, 16, 16, 3) and samples.images.dtype == np.uint8
    with np.load(root / "samples.npz") as npz:
        stored = torch.from_numpy(npz["latents"])
    # the decoded images are the VAE's decode of the stored latents
    vae_model = latents.load_vae(vae)
    again = latents.decode_latents(vae_model, stored, data.normalisation)
    assert np.array_equal(again, samples.images)

    report_path = root / "report.json"
    run("imagenet", "evaluate", "--samples", str(root / "samples.npz"), "--reference",
        str(root / "reference.npz"), "--inception-weights", str(inception), "--device", "cpu",
        "--out", str(report_path), "--no-progress")
    report = json.loads(report_path.read_text())
    assert report["metric"] == "FID" and set(report["per_class"]) == {"171", "1", "18"}
    assert report["reference_per_class"] == {"171": 6, "1": 6, "18": 6}
    assert np.isfinite(report["mean"]) and report["mean"] > 0
    assert report["mean"] == pytest.approx(np.mean(list(report["per_class"].values())))
    # the reference set against itself scores zero; the samples do not
    run("imagenet", "evaluate", "--samples", str(root / "reference.npz"), "--reference",
        str(root / "reference.npz"), "--inception-weights", str(inception), "--device", "cpu",
        "--out", str(root / "self.json"), "--no-progress")
    assert json.loads((root / "self.json").read_text())["mean"] < 1e-8


def _write_latent_file(path: Path, mean: np.ndarray, labels: np.ndarray, *, level: str,
                       n_per_class: int | None, normalisation: latents.LatentNormalisation,
                       classes: list[int]) -> Path:
    meta = {"level": level, "n_per_class": n_per_class, "k": len(classes), "seed": 0,
            "normalisation": normalisation.to_dict(), "draw": "mean"}
    np.savez(path, latent_mean=mean.astype(np.float32),
             latent_std=np.zeros_like(mean, dtype=np.float32), labels=labels,
             class_indices=np.asarray(classes), meta=np.asarray(json.dumps(meta)))
    return path


def test_latents_of_std_5_train_and_samples_are_not_clamped(world, tmp_path) -> None:
    _, vae, _ = world
    rng = np.random.default_rng(0)
    mean = 5.0 * rng.standard_normal((24, 4, 8, 8))
    labels = np.repeat(np.arange(3), 8)
    data = _write_latent_file(tmp_path / "wide.npz", mean, labels, level="sim2",
                              n_per_class=8, classes=[171, 269, 279],
                              normalisation=latents.identity_normalisation(4))
    run("imagenet", "train", "--data", str(data), "--out", str(tmp_path / "run"), "--steps", "4",
        "--batch", "8", "--device", "cpu", "--no-progress")
    result = load_result(tmp_path / "run")
    assert np.isfinite(result.log.loss).all()
    run("imagenet", "sample", "--run", str(tmp_path / "run"), "--vae", str(vae), "--out",
        str(tmp_path / "samples.npz"), "--samples-per-class", "3", "--steps", "4", "--device",
        "cpu", "--no-progress")
    with np.load(tmp_path / "samples.npz") as npz:
        stored = npz["latents"]
    assert float(np.abs(stored).max()) > 1.0       # clamping to [-1, 1] would make this false
    expected = torch.cat([sample(result.ema_models[0.05], torch.full((3,), j), num_steps=4,
                                 seed=1_000_003 * j, clip=None) for j in range(3)])
    assert np.allclose(stored, expected.numpy(), atol=1e-6)


def test_paper_preset_selects_the_authors_schedule(tmp_path, capsys) -> None:
    labels = np.repeat(np.arange(3), 2)
    mean = np.zeros((6, 4, 32, 32))
    mean[:, :, 0, 0] = np.arange(6)[:, None]
    norm = latents.edm2_normalisation()
    good = _write_latent_file(tmp_path / "k3n500.npz", mean, labels, level="sim3",
                              n_per_class=500, classes=[171, 182, 198], normalisation=norm)
    run("imagenet", "train", "--data", str(good), "--out", str(tmp_path / "unused"), "--preset",
        "paper", "--plan", "--device", "cpu")
    out = capsys.readouterr().out
    assert "schedule edm2-img256-xs-3c-500 (K=3, n=500 per class, level sim3" in out
    assert "32768 steps of batch 2048" in out     # 67,108,864 images / 2048
    assert not (tmp_path / "unused").exists()
    plan, _ = imagenet_runs.plan_training(good, preset="paper", device="cpu")
    assert plan.model_config.img_resolution == 32 and plan.model_config.img_channels == 4
    assert plan.model_config.attn_resolutions == (16, 8) and plan.value_range is None
    assert plan.train_config == paper_train_config(3, 500, precision="fp32")

    bad = _write_latent_file(tmp_path / "k3n4.npz", mean, labels, level="sim3", n_per_class=4,
                             classes=[171, 182, 198], normalisation=norm)
    assert main(["imagenet", "train", "--data", str(bad), "--out", str(tmp_path / "x"),
                 "--preset", "paper", "--plan"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "K=3, n per class=4" in err and "(10,1000)" in err

    pixels = tmp_path / "pixels.npz"
    np.savez(pixels, images=np.zeros((6, 256, 256, 3), np.uint8), labels=labels,
             class_indices=np.asarray([171, 182, 198]),
             meta=np.asarray(json.dumps({"level": "sim3", "n_per_class": 500})))
    with pytest.raises(InputError, match="4x32x32 SD-VAE latents"):
        imagenet_runs.plan_training(pixels, preset="paper", device="cpu")


def test_schedule_table_and_variants() -> None:
    for (k, n) in PAPER_SCHEDULES:
        for level in ("sim1", "sim2", "sim3"):
            chosen = select_schedule(k, n, level)
            assert chosen.name == f"edm2-img256-xs-{k}c-{n}"
            assert imagenet.PRESETS[chosen.name] == (chosen.training_images, 2048, chosen.lr_ref,
                                                      chosen.ref_batches)
            assert chosen.train_config(1024) == paper_train_config(k, n, batch_size=1024)
    nlr = select_schedule(10, 1000, "sim1", "nlr")
    assert imagenet.PRESETS[nlr.name] == (1_610_612_736, 2048, 0.0040, 6000)
    config = nlr.train_config()
    assert (config.total_steps, config.lr_ref, config.t_ref_steps) == (786_432, 0.004, 6000)
    for bad in [(4, 500, "sim1", None), (3, 500, "sim4", None), (3, None, "sim1", None),
                (3, 500, "sim1", "nlr"), (True, 500, "sim1", None)]:
        with pytest.raises(InputError, match="valid"):
            select_schedule(*bad)


@pytest.mark.ddp
def test_two_process_imagenet_train_matches_one_process(tmp_path) -> None:
    rng = np.random.default_rng(1)
    mean = 0.5 * rng.standard_normal((16, 4, 8, 8))
    data = _write_latent_file(tmp_path / "lat.npz", mean, np.repeat(np.arange(2), 8),
                              level="sim1", n_per_class=8, classes=[171, 1],
                              normalisation=latents.identity_normalisation(4))
    args = ["imagenet", "train", "--data", str(data), "--steps", "4", "--batch", "8",
            "--device", "cpu", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "multisource", *args, "--out", str(tmp_path / "ddp")],
        capture_output=True, text=True, timeout=180, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("wrote ") == 1            # only rank 0 reports and writes
    run(*args, "--out", str(tmp_path / "single"))
    ddp, single = load_result(tmp_path / "ddp"), load_result(tmp_path / "single")
    assert ddp.provenance["world_size"] == 2 and single.provenance["world_size"] == 1
    a, b = ddp.model.state_dict(), single.model.state_dict()
    moved = max(float((a[k] - load_untrained(single)[k]).abs().max()) for k in a)
    assert moved > 1e-3                               # training changed the weights ...
    for key in a:                                     # ... identically in both runs
        assert torch.allclose(a[key], b[key], atol=1e-5, rtol=0), key


def load_untrained(result) -> dict:
    from multisource.models.diffusion import build_model

    config = dataclasses.replace(result.model.config)
    return build_model(config, seed=0).state_dict()
