"""Alignment pretraining glue: loss labels, held-out protocol, confidence interval, checkpoints."""

from __future__ import annotations

import re
import shutil
from dataclasses import replace

import pytest
import torch

from avlib.checkpoint import CheckpointError
from avlib.config import PAPER_REINIT, Stage, resolve
from avlib.data.sources import talker_count
from avlib.losses import alignment_loss
from avlib.metrics import alignment_accuracy
from avlib.models.multisensory import MultisensoryConfig, MultisensoryNet, from_checkpoint
from avlib.tasks.pretrain import in_block, pretrain, reinitialise_blocks, scene_files_of, scene_sources, stage_steps


class _Oracle(torch.nn.Module):
    """Scores +1 when the audio's first sample is positive: a stand-in whose right answer is known."""

    def forward(self, frames, audio, shifted_audio):
        return audio[:, 0, 0].sign(), shifted_audio[:, 0, 0].sign()

    def eval(self):
        return self

    def train(self, mode=True):
        return self


def _batch(n: int = 8) -> dict[str, torch.Tensor]:
    return {"frames": torch.zeros(n, 4, 8, 8, 3, dtype=torch.uint8), "audio": torch.ones(n, 2, 16),
            "shifted_audio": -torch.ones(n, 2, 16), "label": torch.tensor([1.0, 0.0] * (n // 2))}


def test_loss_labels_aligned_one_and_shifted_zero():
    loss, metrics = alignment_loss(_Oracle(), _batch())
    assert metrics["accuracy"] == 1.0
    assert loss.item() == pytest.approx(torch.nn.functional.softplus(torch.tensor(-1.0)).item())


def test_held_out_protocol_and_interval():
    result = alignment_accuracy(_Oracle(), _batch(20), batch_size=6)
    assert result["accuracy"] == 1.0 and result["pair_accuracy"] == 1.0 and result["n"] == 20
    assert 0.8 < result["ci_low"] < 1.0 and result["ci_high"] == pytest.approx(1.0)


def test_smoke_pretraining_writes_a_loadable_checkpoint_that_refuses_damage(tmp_path):
    profile = resolve("smoke")
    config = replace(profile.pretrain, stages=(Stage("shift_lowfps", profile.pretrain.shift.fps, 2, 2),), eval_every=2)
    sources, _, _ = scene_sources(profile, seed=0)
    run = pretrain(config, sources, tmp_path / "pretrain", seed=0)
    model = from_checkpoint(run["checkpoint"])
    assert isinstance(model, MultisensoryNet) and model.config.width == profile.pretrain.model.width
    assert from_checkpoint(run["checkpoint"], use_sound=False).config.use_sound is False

    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(run["checkpoint"].read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="truncated.pt"):
        from_checkpoint(truncated)
    other = MultisensoryNet(MultisensoryConfig(width=4, num_frames=15, frame_size=32, num_samples=16016))
    with pytest.raises(CheckpointError, match="shape mismatch"):
        from avlib.checkpoint import load_checkpoint, load_model_state

        load_model_state(other, load_checkpoint(run["checkpoint"])["model"], run["checkpoint"])


@pytest.mark.parametrize("block", PAPER_REINIT)
def test_reinitialising_a_block_renews_it_and_keeps_everything_else(block):
    config = MultisensoryConfig(width=4, num_frames=8, frame_size=32, num_samples=4096)
    torch.manual_seed(0)
    model = MultisensoryNet(config)
    with torch.no_grad():  # trained weights: every tensor, zero-initialised biases too, differs from a fresh net's
        for tensor in model.state_dict().values():
            tensor.add_(torch.rand_like(tensor) + 0.5)
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    reinitialise_blocks(model, (block,), seed=7)
    torch.manual_seed(7)
    fresh = MultisensoryNet(config).state_dict()

    renewed = [name for name in before if in_block(name, block)]
    expected_prefix = "video.conv2_2." if block == "conv2_2" else f"{block}."
    assert renewed and all(name.startswith(expected_prefix) for name in renewed)
    assert any(name.endswith("conv_a.conv.weight") for name in renewed)
    for name, tensor in model.state_dict().items():
        if name in renewed:
            assert torch.equal(tensor, fresh[name]) and not torch.equal(tensor, before[name]), name
        else:
            assert torch.equal(tensor, before[name]), name


@pytest.mark.parametrize("renorm", [False, True])
def test_stage_two_reinitialises_the_four_blocks_together_and_nothing_else(renorm):
    """The paper profile's second stage renews conv2_2 (in the video stream), conv3_2, conv4_2 and conv5_2, batch
    renorm averages included, and keeps every other tensor."""
    from avlib.config import resolve

    stages = resolve("paper").pretrain.stages
    assert stages[0].reinit == () and stages[1].reinit == PAPER_REINIT
    config = MultisensoryConfig(width=4, num_frames=8, frame_size=32, num_samples=4096, renorm=renorm)
    torch.manual_seed(0)
    model = MultisensoryNet(config)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            tensor.add_(torch.rand_like(tensor) + 0.5)
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    reinitialise_blocks(model, stages[1].reinit, seed=1)
    changed = {name.split(".conv_", 1)[0].split(".bn", 1)[0].split(".projection", 1)[0]
               for name, tensor in model.state_dict().items() if not torch.equal(tensor, before[name])}
    assert changed == {"video.conv2_2", "conv3_2", "conv4_2", "conv5_2"}
    renewed = [name for name in before if any(in_block(name, block) for block in PAPER_REINIT)]
    assert all(not torch.equal(model.state_dict()[name], before[name]) for name in renewed)
    assert any(name.endswith("bn.renorm_mean") for name in renewed) == renorm


def test_block_names_match_whole_path_components():
    assert in_block("video.conv2_2.conv_a.conv.weight", "conv2_2")
    assert in_block("video.conv2_2.bn.bias", "video.conv2_2")
    assert not in_block("video.conv2_21.bn.bias", "conv2_2") and not in_block("audio.conv2_1.bn.bias", "conv2_2")
    with pytest.raises(ValueError, match="conv9_9"):
        reinitialise_blocks(MultisensoryNet(MultisensoryConfig(width=4)), ("conv9_9",), seed=0)


def test_pretraining_does_not_depend_on_what_the_caller_drew_before(tmp_path):
    profile = resolve("smoke")
    config = replace(profile.pretrain, stages=(Stage("shift_lowfps", profile.pretrain.shift.fps, 2, 1),), eval_every=1)
    sources, _, _ = scene_sources(profile, seed=0)
    torch.manual_seed(0)
    first = pretrain(config, sources, tmp_path / "first", seed=0)["checkpoint"]
    torch.rand(1000)  # a notebook that drew numbers before training the checkpoint it needs
    second = pretrain(config, sources, tmp_path / "second", seed=0)["checkpoint"]
    first_state, second_state = torch.load(first)["model"], torch.load(second)["model"]
    assert all(torch.equal(first_state[name], second_state[name]) for name in first_state)


def test_a_longer_last_stage_extends_the_run_and_a_longer_first_stage_is_refused_by_the_second(tmp_path):
    profile = resolve("smoke")
    fps = profile.pretrain.shift.fps

    def stages(first: int, second: int):
        return replace(profile.pretrain, stages=(Stage("one", fps, 2, first), Stage("two", fps, 2, second)), eval_every=1)

    sources, _, _ = scene_sources(profile, seed=0)
    pretrain(stages(1, 2), sources, tmp_path / "pretrain", seed=0)
    run = pretrain(stages(1, 3), sources, tmp_path / "pretrain", seed=0)  # stage one restored, stage two extended
    assert [row["step"] for row in run["stages"]["one"]["train"]] == [1]
    assert [row["step"] for row in run["stages"]["two"]["train"]] == [1, 2]
    with pytest.raises(CheckpointError, match=r"two.checkpoint\.pt was written with another config; differing keys: "
                                              r"run\.pretrain\.stages\.0\.steps"):
        pretrain(stages(2, 4), sources, tmp_path / "pretrain", seed=0)  # stage two started from a shorter stage one


def test_each_stage_trains_on_its_share_of_talking_heads_and_the_held_out_talkers_stay_those_of_the_largest():
    profile = resolve("smoke")
    files = scene_files_of(profile, seed=0)  # chosen at the largest share of any stage (the second's 0.25)
    scenes = files.train[: len(files.train) - len(files.talkers)]
    assert files.talkers and files.talkers_held_out and not set(files.talkers) & set(files.talkers_held_out)
    sources, train_count, _ = scene_sources(profile, seed=0)
    assert train_count == len(scenes) + len(files.talkers)
    fps = profile.pretrain.stages[0].fps
    first, first_held_out = sources(fps, profile.pretrain.stage_talking_heads(0))
    second, second_held_out = sources(fps, profile.pretrain.stage_talking_heads(1))
    assert first.paths == scenes  # the first stage: scenes only
    assert second.paths == scenes + files.talkers[: talker_count(len(scenes), 0.25)] == files.train
    assert first_held_out.paths == second_held_out.paths == files.held_out
    smaller = files.with_talking_heads(0.0)
    assert smaller.train == scenes and smaller.talkers == [] and smaller.talkers_held_out == files.talkers_held_out
    with pytest.raises(ValueError, match=re.escape(str(files.talkers[0].parent.parent)) + ".*at most 1"):
        files.with_talking_heads(0.5)  # more than the clips were chosen for


def test_a_stage_share_larger_than_the_worlds_talkers_is_refused_naming_the_world_folder():
    profile = resolve("smoke")
    talkers_folder = scene_files_of(profile, seed=0).talkers[0].parent.parent
    # the world's 2 talkers cannot be half of the training clips beside 4 scenes and leave one held out
    larger = resolve("smoke", {"pretrain.stages.0.talking_heads": "0.5"})
    with pytest.raises(ValueError, match=re.escape(str(talkers_folder)) + ": 2 talking-head clips, but a share of 0.5"):
        scene_sources(larger, seed=0)


def test_two_stage_smoke_pretraining_gives_each_stage_its_share_and_starts_the_second_from_the_first(tmp_path):
    profile = resolve("smoke")
    config = profile.pretrain
    real_sources, _, _ = scene_sources(profile, seed=0)
    asked = []

    def sources(fps, talking_heads):  # the real sources; records what each stage asked for
        train, held_out = real_sources(fps, talking_heads)
        asked.append((talking_heads, len(train)))
        return train, held_out

    run = pretrain(config, sources, tmp_path / "pretrain", seed=0)
    files = scene_files_of(profile, seed=0)
    assert asked == [(0.0, len(files.train) - len(files.talkers)), (0.25, len(files.train))]
    first_dir, second_dir = (tmp_path / "pretrain" / stage.name for stage in config.stages)
    assert run["checkpoint"] == second_dir / "checkpoint.pt"
    assert [row["step"] for row in run["stages"]["shift_talkers"]["train"]][-1] == stage_steps(config, 1) == 2

    # a first stage with other weights (a fresh network of another seed): the second stage must start from them
    checkpoint = torch.load(first_dir / "checkpoint.pt", weights_only=True)
    first_weights = checkpoint["model"]
    torch.manual_seed(123)
    other = MultisensoryNet(config.model).state_dict()
    checkpoint["model"] = other
    torch.save(checkpoint, first_dir / "checkpoint.pt")
    shutil.rmtree(second_dir)
    second = torch.load(pretrain(config, sources, tmp_path / "pretrain", seed=0)["checkpoint"], weights_only=True)["model"]
    parameters = [name for name, _ in MultisensoryNet(config.model).named_parameters()]

    def distance(a, b):
        return sum(float((a[name].float() - b[name].float()).norm() ** 2) for name in parameters) ** 0.5

    # two clipped SGD steps move the weights by far less than the distance between two networks
    assert distance(second, other) < 0.05 * distance(other, first_weights)


def _restart_config(restart_loss: float, restarts: int = 2, restart_at: int = 2):
    """smoke's pretraining with one 4-step stage checked at step ``restart_at`` (4: the finished stage, as
    ``synth`` checks): a loss above ``restart_loss`` restarts it."""
    profile = resolve("smoke")
    stage = Stage("shift_lowfps", profile.pretrain.shift.fps, 2, 4, talking_heads=0.0)
    config = replace(profile.pretrain, stages=(stage,), eval_every=2, restart_at=restart_at, restart_window=2,
                     restart_loss=restart_loss, restarts=restarts)
    return profile, config


@pytest.mark.parametrize("check", [2, 4])
def test_a_first_stage_whose_training_loss_stays_above_the_bar_restarts_from_new_weights_up_to_the_limit(tmp_path,
                                                                                                          check):
    # any loss is "still on the plateau": every attempt restarts
    profile, config = _restart_config(restart_loss=0.0, restart_at=check)
    sources, _, _ = scene_sources(profile, seed=0)
    run = pretrain(config, sources, tmp_path / "pretrain", seed=5)
    stuck = [tmp_path / "pretrain" / f"shift_lowfps.stuck{k}" for k in range(3)]
    assert stuck[0].is_dir() and stuck[1].is_dir() and not stuck[2].exists()  # two restarts, the third attempt kept
    assert [(row["attempt"], row["seed"], row["step"]) for row in run["restarts"]] == [(0, 5, check), (1, 10_005, check)]
    assert all(row["loss"] > 0 for row in run["restarts"])
    assert (run["kept"]["attempt"], run["kept"]["seed"], run["kept"]["step"]) == (2, 20_005, check)
    kept = torch.load(run["checkpoint"], weights_only=False)
    assert kept["step"] == 4 and kept["config"]["run"]["attempt"] == 2
    stuck_first = torch.load(stuck[0] / "checkpoint.pt", weights_only=False)
    assert stuck_first["step"] == check and stuck_first["config"]["run"]["attempt"] == 0
    # the kept attempt starts from other initial weights than the stuck one (seed 20_005, not 5)
    torch.manual_seed(20_005)
    fresh = MultisensoryNet(config.model).state_dict()
    torch.manual_seed(5)
    first_fresh = MultisensoryNet(config.model).state_dict()
    weight = "video.conv1.conv.weight"
    assert not torch.equal(fresh[weight], first_fresh[weight])

    # run again: nothing retrains, the same attempts are reported, the weights are the same
    again = pretrain(config, sources, tmp_path / "pretrain", seed=5)
    assert again["restarts"] == run["restarts"]
    assert torch.equal(torch.load(again["checkpoint"])["model"][weight], kept["model"][weight])
    # starting over removes the earlier attempts with the checkpoint
    over = pretrain(config, sources, tmp_path / "pretrain", seed=5, resume=False)
    assert [row["attempt"] for row in over["restarts"]] == [0, 1]


@pytest.mark.parametrize("check", [2, 4])
def test_a_first_stage_below_the_bar_keeps_its_weights_and_equals_a_run_without_the_rule(tmp_path, check):
    profile, config = _restart_config(restart_loss=100.0, restart_at=check)
    sources, _, _ = scene_sources(profile, seed=0)
    checked = pretrain(config, sources, tmp_path / "checked", seed=0)
    plain = pretrain(replace(config, restart_at=None), sources, tmp_path / "plain", seed=0)
    assert checked["restarts"] == [] and not list((tmp_path / "checked").glob("*.stuck*"))
    checked_state, plain_state = torch.load(checked["checkpoint"])["model"], torch.load(plain["checkpoint"])["model"]
    assert all(torch.equal(checked_state[name], plain_state[name]) for name in plain_state)  # stopping changes no bit
    # run again: the finished attempt is checked again and kept, nothing retrains
    again = pretrain(config, sources, tmp_path / "checked", seed=0)
    assert again["restarts"] == [] and again["kept"] == checked["kept"]
    again_state = torch.load(again["checkpoint"])["model"]
    assert all(torch.equal(again_state[name], checked_state[name]) for name in checked_state)


def test_an_interrupted_restart_resumes_the_attempt_it_was_on(tmp_path):
    profile, config = _restart_config(restart_loss=0.0, restarts=1)
    sources, _, _ = scene_sources(profile, seed=0)
    whole = pretrain(config, sources, tmp_path / "whole", seed=0)
    # the same run stopped after the first attempt was moved aside: the second attempt starts, not the first again
    pretrain(replace(config, restarts=0, stages=(replace(config.stages[0], steps=3),), restart_at=2), sources,
             tmp_path / "cut", seed=0)
    (tmp_path / "cut" / "shift_lowfps").rename(tmp_path / "cut" / "shift_lowfps.stuck0")
    resumed = pretrain(config, sources, tmp_path / "cut", seed=0)
    assert torch.load(resumed["checkpoint"], weights_only=False)["config"]["run"]["attempt"] == 1
    whole_state, resumed_state = torch.load(whole["checkpoint"])["model"], torch.load(resumed["checkpoint"])["model"]
    assert all(torch.equal(whole_state[name], resumed_state[name]) for name in whole_state)


def test_attempts_set_aside_by_another_restart_rule_are_refused_on_resume(tmp_path):
    profile, config = _restart_config(restart_loss=0.0, restarts=1, restart_at=2)
    sources, _, _ = scene_sources(profile, seed=0)
    pretrain(config, sources, tmp_path / "pretrain", seed=0)  # attempt 0 set aside at step 2
    later = replace(config, restart_at=4)
    with pytest.raises(CheckpointError, match=r"shift_lowfps\.stuck0 is a first-stage attempt set aside by another "
                                              r"restart rule \(pretrain\.restart_at: 2 -> 4\)"):
        pretrain(later, sources, tmp_path / "pretrain", seed=0)
    over = pretrain(later, sources, tmp_path / "pretrain", seed=0, resume=False)
    assert [(row["attempt"], row["step"]) for row in over["restarts"]] == [(0, 4)]


def test_a_restart_step_outside_the_first_stage_is_refused():
    assert resolve("smoke", {"pretrain.restart_at": 4}).pretrain.restart_at == 4  # the first stage's last step
    with pytest.raises(ValueError, match="restart_at must lie inside the first stage"):
        resolve("smoke", {"pretrain.restart_at": 5})
