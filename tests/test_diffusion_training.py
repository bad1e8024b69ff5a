"""Training of the EDM2-style denoiser: end to end, resume after interruption, DDP equivalence."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from multisource.common.validation import InputError
from multisource.models.diffusion import PRESETS, build_model, load_result, sample, train
from multisource.models.diffusion.train_cli import load_digits_tensors, main

CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def digits():
    return load_digits_tensors()


def tiny_configs(**train_overrides):
    model_config, train_config = PRESETS["smoke"]
    fields = {"total_steps": 12, "batch_size": 16, "checkpoint_every": 4, "log_every": 2,
              "warmup_steps": 4, "t_ref_steps": 6}
    fields.update(train_overrides)
    return model_config, dataclasses.replace(train_config, **fields)


def assert_same_state(a: dict, b: dict, atol: float = 0.0) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if atol == 0.0:
            assert torch.equal(a[key], b[key]), key
        else:
            assert torch.allclose(a[key], b[key], atol=atol, rtol=0), \
                (key, float((a[key] - b[key]).abs().max()))


@pytest.mark.slow
def test_smoke_preset_trains_and_samples_digits(digits, tmp_path):
    images, labels = digits
    model_config, train_config = PRESETS["smoke"]
    result = train(model_config, train_config, images, labels, tmp_path, CPU, progress=False)
    assert result.completed and result.steps_done == train_config.total_steps
    assert set(result.ema_models) == {0.05, 0.10}
    log = result.log
    assert list(log.columns) == ["step", "loss", "lr", "seconds"]
    assert int(log.step.iloc[-1]) == train_config.total_steps
    assert log.loss.iloc[-1] < 0.5 * log.loss.iloc[0]
    for name in ("checkpoint.pt", "config.json", "log.csv", "provenance.json"):
        assert (tmp_path / name).exists(), name
    prov = json.loads((tmp_path / "provenance.json").read_text())
    assert prov["profile"] == "smoke" and prov["config_hash"] == result.provenance["config_hash"]

    # class-conditional samples look like their class: nearest class mean of the training data
    wanted = torch.arange(10).repeat(3)
    samples = sample(result.ema_models[0.05], wanted, seed=0)
    assert samples.shape == (30, 1, 8, 8)
    assert float(samples.min()) >= -1 and float(samples.max()) <= 1
    means = torch.stack([images[labels == k].mean(0) for k in range(10)])
    dist2 = (samples[:, None] - means[None]).flatten(2).square().sum(-1)
    accuracy = float((dist2.argmin(1) == wanted).float().mean())
    assert accuracy >= 0.5, accuracy

    # a finished run in the same folder returns at once with the same weights
    again = train(model_config, train_config, images, labels, tmp_path, CPU, progress=False)
    assert again.steps_done == train_config.total_steps
    assert_same_state(again.ema_models[0.05].state_dict(), result.ema_models[0.05].state_dict())
    loaded = load_result(tmp_path)
    assert_same_state(loaded.model.state_dict(), result.model.state_dict())


def test_interrupted_run_resumes_to_the_same_weights(digits, tmp_path):
    images, labels = digits
    model_config, train_config = tiny_configs()
    straight = train(model_config, train_config, images, labels, tmp_path / "a", CPU,
                     progress=False)
    # stop after 10 steps without a final checkpoint: the last one on disk is at step 8
    part = train(model_config, train_config, images, labels, tmp_path / "b", CPU,
                 progress=False, stop_after=10)
    assert not part.completed and part.steps_done == 10
    assert torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)["step"] == 8
    resumed = train(model_config, train_config, images, labels, tmp_path / "b", CPU,
                    progress=False)
    assert resumed.completed and resumed.steps_done == 12
    assert_same_state(resumed.model.state_dict(), straight.model.state_dict())
    for s in train_config.ema_stds:
        assert_same_state(resumed.ema_models[s].state_dict(), straight.ema_models[s].state_dict())
    assert resumed.log.loss.tolist() == straight.log.loss.tolist()
    assert resumed.provenance["resumed_from_step"] == 8

    # a checkpoint of other configs is refused, not overwritten
    other = dataclasses.replace(train_config, seed=1)
    with pytest.raises(InputError, match="out_dir"):
        train(model_config, other, images, labels, tmp_path / "b", CPU, progress=False)
    stored = json.loads((tmp_path / "b" / "config.json").read_text())
    assert stored["train"]["seed"] == train_config.seed      # the folder's record is untouched


@pytest.mark.slow
def test_killed_cli_run_resumes_to_the_same_weights(digits, tmp_path):
    """SIGKILL a CLI run after its first checkpoint; rerunning finishes like a straight run."""
    out = tmp_path / "killed"
    args = [sys.executable, "-m", "multisource.models.diffusion.train_cli", "--out", str(out),
            "--steps", "60", "--batch", "8", "--checkpoint-every", "10", "--threads", "1",
            "--no-progress"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not (out / "checkpoint.pt").exists() and proc.poll() is None:
            assert time.monotonic() < deadline, "no checkpoint within 60 s"
            time.sleep(0.02)
        proc.kill()
    finally:
        proc.wait()
    killed_at = torch.load(out / "checkpoint.pt", weights_only=True)["step"]
    if killed_at >= 60:
        pytest.skip("the run finished before it could be killed")
    assert main(["--out", str(out), "--steps", "60", "--batch", "8", "--checkpoint-every", "10",
                 "--no-progress"]) == 0
    resumed = load_result(out)
    images, labels = digits
    model_config, train_config = PRESETS["smoke"]
    train_config = dataclasses.replace(train_config, total_steps=60, batch_size=8,
                                       checkpoint_every=10)
    straight = train(model_config, train_config, images, labels, tmp_path / "straight", CPU,
                     progress=False)
    assert resumed.steps_done == 60 and resumed.provenance["resumed_from_step"] == killed_at
    assert_same_state(resumed.model.state_dict(), straight.model.state_dict())
    assert_same_state(resumed.ema_models[0.05].state_dict(),
                      straight.ema_models[0.05].state_dict())


def test_gradient_accumulation_matches_whole_batch(digits, tmp_path):
    images, labels = digits
    model_config, whole = tiny_configs(total_steps=3)
    chunked = dataclasses.replace(whole, batch_per_device=5)   # chunks of 5, 5, 5 and 1
    a = train(model_config, whole, images, labels, tmp_path / "a", CPU, progress=False)
    b = train(model_config, chunked, images, labels, tmp_path / "b", CPU, progress=False)
    assert_same_state(a.model.state_dict(), b.model.state_dict(), atol=1e-5)
    assert a.log.loss.tolist() == pytest.approx(b.log.loss.tolist(), rel=1e-5)


def test_unconditional_model_trains_and_samples(digits, tmp_path):
    images, _ = digits
    model_config, train_config = tiny_configs(total_steps=2)
    model_config = dataclasses.replace(model_config, label_dim=0)
    result = train(model_config, train_config, images, None, tmp_path, CPU, progress=False)
    out = sample(result.ema_models[0.10], None, num_samples=3, num_steps=4)
    assert out.shape == (3, 1, 8, 8)


def test_bad_inputs_raise_input_errors(digits, tmp_path):
    images, labels = digits
    model_config, train_config = tiny_configs()
    with pytest.raises(InputError, match=r"images must lie in \[-1, 1\]"):
        train(model_config, train_config, images * 3, labels, tmp_path, CPU, progress=False)
    with pytest.raises(InputError, match="images must be a float tensor"):
        train(model_config, train_config, images[:, :, :4], labels, tmp_path, CPU)
    with pytest.raises(InputError, match="labels must be in"):
        train(model_config, train_config, images, labels + 5, tmp_path, CPU, progress=False)


def test_cli_trains_in_one_process(tmp_path, capsys):
    code = main(["--preset", "smoke", "--data", "digits", "--out", str(tmp_path), "--steps", "3",
                 "--batch", "8", "--no-progress"])
    assert code == 0
    assert "trained 3 steps" in capsys.readouterr().out
    assert (tmp_path / "checkpoint.pt").exists()
    assert main(["--out", str(tmp_path), "--data", "nowhere.npz"]) == 2


DDP_SCRIPT = textwrap.dedent("""
    import dataclasses, sys
    from pathlib import Path
    import torch
    import torch.distributed as dist
    from multisource.models.diffusion import PRESETS, train
    from multisource.models.diffusion.train_cli import load_digits_tensors

    out = Path(sys.argv[1])
    images, labels = load_digits_tensors()
    model_config, train_config = PRESETS["smoke"]
    train_config = dataclasses.replace(train_config, **{fields!r})
    dist.init_process_group("gloo")
    result = train(model_config, train_config, images, labels, out / "run", torch.device("cpu"),
                   progress=False)
    state = {{"model": result.model.state_dict(),
             "ema": result.ema_models[0.05].state_dict(), "world": dist.get_world_size()}}
    torch.save(state, out / f"rank{{dist.get_rank()}}.pt")
    dist.destroy_process_group()
""")


@pytest.mark.ddp
def test_two_process_ddp_matches_one_process(digits, tmp_path):
    fields = {"total_steps": 8, "batch_size": 16, "checkpoint_every": 4, "log_every": 4,
              "warmup_steps": 4, "t_ref_steps": 6}
    script = tmp_path / "ddp_train.py"
    script.write_text(DDP_SCRIPT.format(fields=fields))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(script), str(tmp_path)], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1)]
    assert ranks[0]["world"] == 2
    assert_same_state(ranks[0]["model"], ranks[1]["model"])       # identical on every rank
    assert_same_state(ranks[0]["ema"], ranks[1]["ema"])
    prov = json.loads((tmp_path / "run" / "provenance.json").read_text())
    assert prov["world_size"] == 2

    images, labels = digits
    model_config, train_config = PRESETS["smoke"]
    train_config = dataclasses.replace(train_config, **fields)
    single = train(model_config, train_config, images, labels, tmp_path / "single", CPU,
                   progress=False)
    # same global batch: equal up to the order of floating-point reductions
    assert_same_state(ranks[0]["model"], single.model.state_dict(), atol=1e-4)
    assert_same_state(ranks[0]["ema"], single.ema_models[0.05].state_dict(), atol=1e-4)
    # training moved the weights far beyond that tolerance, so the check can fail
    untrained = build_model(model_config, seed=train_config.seed).state_dict()
    with pytest.raises(AssertionError):
        assert_same_state(ranks[0]["model"], untrained, atol=1e-4)


def test_snapshot_of_a_long_run_equals_a_run_stopped_there(digits, tmp_path):
    """The schedule and EMA do not depend on total_steps: snapshots are the shorter budgets."""
    from multisource.models.diffusion import load_snapshot, snapshot_steps

    images, labels = digits
    model_config, long_config = tiny_configs(total_steps=12, snapshot_every=4)
    train(model_config, long_config, images, labels, tmp_path / "long", CPU, progress=False)
    assert snapshot_steps(tmp_path / "long") == [4, 8, 12]
    _, short_config = tiny_configs(total_steps=8)
    short = train(model_config, short_config, images, labels, tmp_path / "short", CPU,
                  progress=False)
    snapped, seconds = load_snapshot(tmp_path / "long", 8)
    assert seconds > 0
    for std, ema in short.ema_models.items():
        assert_same_state(snapped[std].state_dict(), ema.state_dict())
    with pytest.raises(InputError, match="snapshots"):
        load_snapshot(tmp_path / "long", 5)


def test_latents_with_large_values_train_and_samples_are_not_clipped(tmp_path):
    model_config, train_config = tiny_configs(total_steps=4)
    model_config = dataclasses.replace(model_config, img_channels=4, sigma_data=5.0)
    gen = torch.Generator().manual_seed(0)
    latents = 5.0 * torch.randn(32, 4, 8, 8, generator=gen)
    labels = torch.randint(0, 10, (32,), generator=gen)
    with pytest.raises(InputError, match="value_range=None"):
        train(model_config, train_config, latents, labels, tmp_path / "a", CPU, progress=False)
    result = train(model_config, train_config, latents, labels, tmp_path / "b", CPU,
                   progress=False, value_range=None)
    out = sample(result.ema_models[0.10], torch.arange(4), num_steps=4, clip=None)
    assert float(out.abs().max()) > 1.0
    clipped = sample(result.ema_models[0.10], torch.arange(4), num_steps=4)
    assert float(clipped.abs().max()) <= 1.0


def test_bf16_autocast_trains_with_fp32_master_weights(digits, tmp_path):
    images, labels = digits
    model_config, fp32 = tiny_configs(total_steps=6)
    bf16 = dataclasses.replace(fp32, precision="bf16")
    a = train(model_config, fp32, images, labels, tmp_path / "fp32", CPU, progress=False)
    b = train(model_config, bf16, images, labels, tmp_path / "bf16", CPU, progress=False)
    assert all(p.dtype == torch.float32 for p in b.model.parameters())
    assert b.provenance["precision"] == "bf16"
    la, lb = a.log.loss.to_numpy(), b.log.loss.to_numpy()
    assert abs(lb - la).max() < 0.05 * abs(la).max() + 0.05
    assert not (lb == la).all()   # autocast really changed the arithmetic
