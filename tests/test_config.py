"""The experiment config: profiles as data, overrides, derived fields, the command lines' keys."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest

from avlib.config import (
    LOW_FPS,
    PROFILES,
    ConfigError,
    Experiment,
    flatten,
    parse_assignments,
    resolve,
    run_settings,
    seed_folder,
    set_key,
    training_seeds,
)
from avlib.tasks.cli import experiment_from
from avlib.train import TrainConfig

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_every_profile_resolves_and_the_network_fits_its_clips(profile: str) -> None:
    experiment = resolve(profile)
    assert isinstance(experiment, Experiment) and experiment.profile == profile
    shift, model = experiment.pretrain.shift, experiment.pretrain.model
    assert (model.num_frames, model.frame_size, model.num_samples) == (shift.num_frames, shift.crop, shift.num_samples)
    assert experiment.cam.fine_tune_steps is not None and experiment.cam.fine_tune_batch is not None


def test_paper_profile_is_the_dataclass_defaults() -> None:
    paper = resolve("paper")
    assert paper.pretrain.train == TrainConfig(steps=650_000, checkpoint_every=5_000, amp="bf16", channels_last=True, workers=8)
    assert [(stage.fps, stage.batch_size, stage.steps) for stage in paper.pretrain.stages] == [
        (LOW_FPS, 15, 30_000), (29.97, 5, 650_000)]
    assert paper.pretrain.model.num_frames == 125 and paper.pretrain.model.num_samples == 87588
    assert paper.cam.fine_tune_steps == 25_000 and paper.separation.train.lr == 1e-4
    assert paper.separation.train.lr_milestones == [120_000] and not paper.synthetic


def test_derived_fields_follow_the_pretraining() -> None:
    synth = resolve("synth")
    # the paper's share of the pretraining: 25 k of 650 k, of 900 steps (both stages)
    assert synth.cam.fine_tune_steps == round(900 * 25_000 / 650_000) == 35
    assert synth.cam.fine_tune_batch == synth.pretrain.stages[-1].batch_size
    longer = resolve("synth", {"pretrain.stages.1.steps": "1300"})
    assert longer.cam.fine_tune_steps == 50
    separation = synth.separation.model
    assert separation.multisensory == synth.pretrain.model
    assert separation.spectral.sample_rate == synth.pretrain.shift.sample_rate == 11025
    assert (separation.fps, separation.size, separation.crop) == (LOW_FPS, 40, 32)


def test_synth_and_smoke_pretrain_on_scenes_then_with_talking_heads_and_the_paper_keeps_none() -> None:
    for profile in ("synth", "smoke"):
        pretrain = resolve(profile).pretrain
        first, second = pretrain.stages
        assert (first.name, second.name) == ("shift_lowfps", "shift_talkers")
        assert (first.fps, first.batch_size) == (second.fps, second.batch_size) and second.reinit == ()
        assert [pretrain.stage_talking_heads(index) for index in (0, 1)] == [0.0, 0.25] == [first.talking_heads, second.talking_heads]
        assert pretrain.largest_talking_heads == 0.25
    assert resolve("synth").pretrain.stages[1].steps == 900
    paper = resolve("paper").pretrain
    assert all(stage.talking_heads is None for stage in paper.stages) and paper.largest_talking_heads == 0.0


def test_a_stage_without_its_own_share_of_talking_heads_takes_the_sections() -> None:
    smoke = resolve("smoke", {"pretrain.stages.1.talking_heads": "None", "pretrain.talking_heads": "0.4"}).pretrain
    assert smoke.stages[1].talking_heads is None
    assert [smoke.stage_talking_heads(index) for index in (0, 1)] == [0.0, 0.4] and smoke.largest_talking_heads == 0.4
    raised = resolve("smoke", {"pretrain.stages.0.talking_heads": "0.5"}).pretrain
    assert [raised.stage_talking_heads(index) for index in (0, 1)] == [0.5, 0.25] and raised.largest_talking_heads == 0.5


def test_overrides_parse_literals_by_the_fields_type() -> None:
    experiment = resolve("smoke", {"ucf101.train.lr": "3e-4", "ucf101.train.lr_milestones": "[5, 9]",
                                   "cam.eval_clips": "none", "separation.phase": "mixture",
                                   "ucf101.flip": "false", "pretrain.eval_every": 7})
    assert experiment.ucf101.train.lr == 3e-4 and experiment.ucf101.train.lr_milestones == [5, 9]
    assert experiment.cam.eval_clips is None and experiment.separation.phase == "mixture"
    assert experiment.ucf101.flip is False and experiment.pretrain.eval_every == 7


@pytest.mark.parametrize("key, value, message", [
    ("ucf101.train.lrr", "1", "unknown key 'lrr'"),
    ("ucf101.batch_size", "big", "is not a Python literal"),
    ("ucf101.batch_size", "1.5", "is not a int"),
    ("ucf101.train.optimizer", "rmsprop", "optimizer must be 'sgd' or 'adam'"),
    ("pretrain.stages.3.steps", "1", "index '3' is not in a tuple of 2"),
    ("pretrain.stages.1.talking_heads", "1.0", r"Stage 'shift_talkers': talking_heads must be in \[0, 1\)"),
    ("pretrain.stages.0.steps", "6", r"each stage must end after the one before .* got steps \[6, 6\]"),
])
def test_bad_overrides_name_the_key(key: str, value: str, message: str) -> None:
    with pytest.raises((ConfigError, ValueError), match=message):
        resolve("smoke", {key: value})


def test_unknown_profile_is_refused() -> None:
    with pytest.raises(ConfigError, match="unknown profile 'big'"):
        resolve("big")


def test_every_flattened_key_can_be_set_back() -> None:
    experiment = resolve("synth")
    for key, value in flatten(experiment).items():
        assert flatten(set_key(experiment, key, value))[key] == value, key


def test_a_nested_train_config_is_created_on_demand() -> None:
    paper = resolve("paper", {"ablations.i3d_train": "None"})
    assert paper.ablations.i3d_train is None
    smoke = resolve("smoke", {"ablations.i3d_train.steps": "5"})
    assert smoke.ablations.i3d_train.steps == 5 and smoke.ablations.i3d_train.optimizer == "adam"


def test_task_keys_are_relative_to_their_section() -> None:
    experiment = experiment_from("smoke", "ucf101", ["train.steps=9", "pretrain.eval_every=3"])
    assert experiment.ucf101.train.steps == 9 and experiment.pretrain.eval_every == 3
    assert parse_assignments(["a.b=1", "c = x"]) == {"a.b": "1", "c": "x"}
    with pytest.raises(ConfigError, match="is not key=value"):
        parse_assignments(["steps"])


def test_profiles_are_data() -> None:
    # plain values only: a profile is data, never code
    def plain(value) -> bool:
        if isinstance(value, dict):
            return all(isinstance(key, str) and plain(item) for key, item in value.items())
        if isinstance(value, list):
            return all(plain(item) for item in value)
        return value is None or isinstance(value, (bool, int, float, str))

    assert all(plain(data) for data in PROFILES.values())
    assert asdict(resolve("smoke"))["profile"] == "smoke"


def test_no_task_module_branches_on_a_profile_name() -> None:
    sources = [path for path in (ROOT / "avlib").rglob("*.py") if path.name != "config.py"]
    offenders = [f"{path.relative_to(ROOT)}:{number}" for path in sources
                 for number, line in enumerate(path.read_text().splitlines(), 1)
                 if any(f"== {quote}{name}{quote}" in line or f"!= {quote}{name}{quote}" in line
                        for name in PROFILES for quote in "\"'")]
    assert offenders == []


@pytest.mark.parametrize("task", ["pretrain", "cam", "ucf101", "separation", "ablations"])
def test_every_task_has_a_command_line_that_lists_its_keys(task: str) -> None:
    result = subprocess.run([sys.executable, "-m", f"avlib.tasks.{task}", "--profile", "smoke", "--help"],
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"python -m avlib.tasks.{task}" in result.stdout and "key=value" in result.stdout
    section = {"ucf101": "ucf101", "ablations": "ablations"}.get(task, task)
    for key in [*flatten(getattr(resolve("smoke"), section)), "seed_processes"]:
        assert f"  {key} " in result.stdout, key


def test_a_bad_key_on_the_command_line_is_one_line() -> None:
    result = subprocess.run([sys.executable, "-m", "avlib.tasks.pretrain", "--profile", "smoke", "train.lrr=1"],
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 2 and "unknown key 'lrr'" in result.stderr and "Traceback" not in result.stderr


def test_training_seeds_count_from_the_notebooks_seed_and_keep_the_first_seeds_folder() -> None:
    assert [resolve(profile).ucf101.seeds for profile in ("paper", "synth", "smoke")] == [1, 3, 2]
    for section in ("ucf101", "separation", "ablations"):
        assert getattr(resolve("synth"), section).seeds >= 3 and getattr(resolve("smoke"), section).seeds == 2
    assert training_seeds(5, 3) == [5, 6, 7]
    assert seed_folder("runs", 5, 5) == Path("runs") and seed_folder("runs", 5, 7) == Path("runs") / "train-seed7"
    with pytest.raises(ConfigError, match="ucf101.seeds must be at least 1"):
        resolve("smoke", {"ucf101.seeds": 0})
    # a run's stored settings leave the seed count out: raising it resumes the seeds already trained
    assert run_settings(resolve("synth").separation) == run_settings(resolve("synth", {"separation.seeds": 5}).separation)
    assert "seeds" not in run_settings(resolve("synth").ablations)
