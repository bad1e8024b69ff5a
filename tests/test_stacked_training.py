"""Stacked (vmapped) training equals separate training of each model, to float tolerance."""

import tempfile
from pathlib import Path

import pytest
import torch

from multisource.common.validation import InputError
from multisource.models.diffusion import DiffusionConfig, TrainConfig, train
from multisource.models.diffusion.stacked import StackedTrainer, StackMember

MODEL = DiffusionConfig(img_resolution=8, img_channels=1, label_dim=5, model_channels=8,
                        channel_mult=(1, 2), num_blocks=1, attn_resolutions=())


def _members(count: int = 3, steps: int = 12, seed: int = 5) -> list[StackMember]:
    gen = torch.Generator().manual_seed(0)
    out = []
    for m in range(count):
        n = 30 + 7 * m
        images = torch.rand(n, 1, 8, 8, generator=gen) * 2 - 1
        labels = torch.randint(0, 2 + m, (n,), generator=gen)
        config = TrainConfig(batch_size=16, total_steps=steps, lr_ref=0.02, t_ref_steps=4,
                             warmup_steps=2, ema_stds=(0.1,), seed=seed, checkpoint_every=1000,
                             log_every=4, lr_decay="multisource")
        out.append(StackMember(images, labels, config))
    return out


def _separate(member: StackMember):
    with tempfile.TemporaryDirectory() as folder:
        return train(MODEL, member.train_config, member.images, member.labels, Path(folder),
                     torch.device("cpu"), progress=False)


def _max_difference(a: torch.nn.Module, b: torch.nn.Module) -> float:
    return max(float((x - y).abs().max()) for x, y in
               zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def test_each_stacked_model_follows_its_separate_run():
    members = _members()
    stack = StackedTrainer(MODEL, members, torch.device("cpu"))
    for _ in range(12):
        stack.step()
    for i, member in enumerate(members):
        alone = _separate(member)
        assert _max_difference(alone.ema_models[0.1], stack.ema_model(i)) < 1e-4
        assert _max_difference(alone.model, stack.raw_model(i)) < 1e-4


def test_a_changed_batch_draw_breaks_the_equality():
    """The comparison can fail: another seed for one member moves it far from its run."""
    members = _members()
    stack = StackedTrainer(MODEL, _members(seed=6), torch.device("cpu"))
    for _ in range(12):
        stack.step()
    assert _max_difference(_separate(members[0]).ema_models[0.1], stack.ema_model(0)) > 1e-2


def test_members_that_leave_do_not_disturb_the_others_and_state_round_trips():
    members = _members()
    stack = StackedTrainer(MODEL, members, torch.device("cpu"))
    for _ in range(5):
        stack.step()
    stack.keep([0, 2])
    state = stack.state_dict()
    resumed = StackedTrainer(MODEL, [members[0], members[2]], torch.device("cpu"))
    resumed.load_state_dict(state)
    for _ in range(7):
        stack.step()
        resumed.step()
    for i, member in zip((0, 1), (members[0], members[2]), strict=True):
        alone = _separate(member)
        assert _max_difference(alone.ema_models[0.1], stack.ema_model(i)) < 1e-4
        assert _max_difference(stack.ema_model(i), resumed.ema_model(i)) < 1e-6


def test_configs_may_differ_only_in_seed():
    members = _members(2)
    other = TrainConfig(**{**members[1].train_config.__dict__, "lr_ref": 0.05})
    with pytest.raises(InputError, match="lr_ref"):
        StackedTrainer(MODEL, [members[0], StackMember(members[1].images, members[1].labels,
                                                       other)], torch.device("cpu"))
