"""UCF-101 loading, clip sampling, the fine-tuning classifier and its evaluation, on a miniature
UCF-101 tree written at test time in the official layout (real AVI files, some without audio)."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from avlib import io
from avlib.checkpoint import save_checkpoint
from avlib.config import flatten, resolve
from avlib.data.ucf101 import (
    ActionClipFormat,
    ClipBatches,
    DecodedVideos,
    FileVideos,
    evaluation_batches,
    evenly_spaced_starts,
    load_split,
    read_classes,
)
from avlib.metrics import Evaluation, evaluate_classifier
from avlib.models.multisensory import MultisensoryConfig, MultisensoryNet, normalize_frames
from avlib.tasks.ucf101 import (
    SETTING_STATUS,
    VARIANT_BY_NAME,
    ActionClassifier,
    ClassifierConfig,
    accuracy_table,
    build_classifier,
    clip_format,
    curve_accuracy,
    curve_video_indices,
    finetune,
    run,
    seed_differences,
    settings_table,
    train_config,
)
from avlib.writer import write_video

ROOT = Path(__file__).resolve().parent.parent

FPS, SAMPLE_RATE = 25.0, 22050
# classInd.txt order (not alphabetical) -> 0-based labels. The real release names one class's
# folder HandstandPushups and its files v_HandStandPushups_*, which the loader must accept.
CLASSES = ("Drumming", "ApplyEyeMakeup", "HandstandPushups")
FILE_CLASS = {"HandstandPushups": "HandStandPushups"}
GROUPS = (1, 2, 8, 9)  # split 1 tests groups 1-7, split 2 groups 8-14
SILENT = {("Drumming", 2), ("ApplyEyeMakeup", 1), ("ApplyEyeMakeup", 8), ("HandstandPushups", 9)}
SHORT = ("HandstandPushups", 1)  # shorter than the clip window: looped
CRLF = "\r\n"


def _name(class_name: str, group: int) -> str:
    return f"{class_name}/v_{FILE_CLASS.get(class_name, class_name)}_g{group:02d}_c01.avi"


def _frames(label: int, group: int, count: int) -> np.ndarray:
    """Frames whose brightness encodes the class and the frame index (to find windows again)."""
    frames = np.zeros((count, 48, 64, 3), dtype=np.uint8)
    frames[..., 0] = 40 + 60 * label
    frames[..., 1] = (10 * group) % 250
    frames[:, :24, :, 2] = np.minimum(np.arange(count) * 4, 255)[:, None, None]
    return frames


@pytest.fixture(scope="module")
def ucf_tree(tmp_path_factory) -> Path:
    """<data_root>/ucf101/<Class>/v_*.avi and ucfTrainTestlist/ as UCF-101 distributes them."""
    data_root = tmp_path_factory.mktemp("data")
    root = data_root / "ucf101"
    for label, class_name in enumerate(CLASSES):
        for group in GROUPS:
            count = 20 if (class_name, group) == SHORT else 45
            samples = int(round(count / FPS * SAMPLE_RATE))
            tone = 0.3 * np.sin(2 * np.pi * (200 + 150 * label) * np.arange(samples) / SAMPLE_RATE)
            audio = None if (class_name, group) in SILENT else np.stack([tone, tone]).astype(np.float32)
            write_video(root / _name(class_name, group), _frames(label, group, count), FPS, audio, SAMPLE_RATE)
    lists = root / "ucfTrainTestlist"
    lists.mkdir()
    (lists / "classInd.txt").write_text("".join(f"{i + 1} {c}{CRLF}" for i, c in enumerate(CLASSES)), newline="")
    for split, held_out in ((1, range(1, 8)), (2, range(8, 15)), (3, range(15, 22))):
        train = [(c, g) for c in CLASSES for g in GROUPS if g not in held_out]
        test = [(c, g) for c in CLASSES for g in GROUPS if g in held_out]
        (lists / f"trainlist0{split}.txt").write_text(
            "".join(f"{_name(c, g)} {CLASSES.index(c) + 1}{CRLF}" for c, g in train), newline="")
        (lists / f"testlist0{split}.txt").write_text("".join(f"{_name(c, g)}{CRLF}" for c, g in test), newline="")
    return data_root


FORMAT = ActionClipFormat(window=1.2, fps=7.5, sample_rate=8000, size=40, crop=32, audio_jitter=0.05)


def test_split_membership_labels_and_silent_videos(ucf_tree):
    root = ucf_tree / "ucf101"
    assert read_classes(root) == list(CLASSES)
    for number, held_out in ((1, (1, 2)), (2, (8, 9))):
        split = load_split(root, number)
        assert split.classes == list(CLASSES)
        assert sorted(v.name for v in split.test) == sorted(_name(c, g) for c in CLASSES for g in held_out)
        assert sorted(v.name for v in split.train) == sorted(_name(c, g) for c in CLASSES for g in GROUPS if g not in held_out)
        for video in split.train + split.test:
            assert video.label == CLASSES.index(video.name.split("/")[0])
            assert video.has_audio == ((video.name.split("/")[0], video.group) not in SILENT)
        counts = split.audio_counts().set_index("part")
        expected_silent_test = sum((c, g) in SILENT for c in CLASSES for g in held_out)
        assert counts.loc["test", "without audio"] == expected_silent_test
        assert counts.loc["train", "without audio"] == len(SILENT) - expected_silent_test
        assert counts.loc["test", "videos"] == len(split.test)
    assert load_split(root, 3).test == []  # no group 15-21 in the miniature tree


def _copy_tree(source: Path, target: Path) -> Path:
    for path in source.rglob("*"):
        if path.is_file() and not path.name.startswith("."):
            destination = target / path.relative_to(source)
            destination.parent.mkdir(parents=True, exist_ok=True)
            destination.write_bytes(path.read_bytes())
    return target


def test_bad_lists_and_missing_videos_are_named(ucf_tree, tmp_path):
    root = _copy_tree(ucf_tree / "ucf101", tmp_path / "ucf101")
    train_list = root / "ucfTrainTestlist" / "trainlist01.txt"
    good = train_list.read_bytes().decode()
    train_list.write_text(good.replace(" 2\r\n", " 3\r\n", 1), newline="")
    with pytest.raises(ValueError, match=r"trainlist01\.txt: line \d+ .*classInd\.txt gives ApplyEyeMakeup label 2"):
        load_split(root, 1)
    train_list.write_text(good, newline="")
    missing = root / _name("Drumming", 8)
    missing.unlink()
    with pytest.raises(io.MissingFileError, match="v_Drumming_g08_c01.avi"):
        load_split(root, 1)
    split = load_split(root, 1, skip_bad=True)
    assert [name for name, _ in split.bad] == [_name("Drumming", 8)]
    assert _name("Drumming", 8) not in {video.name for video in split.train}
    (tmp_path / "bare" / "Drumming").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="classInd.txt"):
        load_split(tmp_path / "bare", 1)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_split(tmp_path / "nowhere", 1)
    with pytest.raises(ValueError, match="splits"):
        load_split(root, 4)


def test_sources_agree_loop_short_videos_and_silence_missing_audio(ucf_tree):
    split = load_split(ucf_tree / "ucf101", 1)
    decoded, files = DecodedVideos(split.test, FORMAT), FileVideos(split.test, FORMAT)
    short = next(i for i, v in enumerate(split.test) if v.name == _name(*SHORT))
    silent = next(i for i, v in enumerate(split.test) if not v.has_audio)
    loud = next(i for i, v in enumerate(split.test) if v.has_audio and i != short)
    assert decoded.num_frames(short) < FORMAT.num_frames <= decoded.num_frames(loud)
    for video in (short, silent, loud):
        frames, audio = decoded.window(video, 1)
        file_frames, file_audio = files.window(video, 1)
        assert frames.shape == (FORMAT.num_frames, 40, 40, 3) and audio.shape == (2, FORMAT.num_samples)
        assert np.abs(frames.astype(int) - file_frames.astype(int)).mean() < 2
        if split.test[video].has_audio:
            # The same sound, up to the rounding of the window's start to the output sample grid.
            assert np.corrcoef(audio[0], file_audio[0])[0, 1] > 0.99
        else:
            assert not file_audio.any()
    assert not decoded.window(silent, 0)[1].any()
    assert np.abs(decoded.window(loud, 0)[1]).max() > 0.1
    # The short video is looped: its window restarts from the first frame after the last.
    frames, _ = decoded.window(short, 0)
    count = decoded.num_frames(short)
    np.testing.assert_array_equal(frames[count], frames[0])
    assert evenly_spaced_starts(30, 9, 3) == [0, 10, 21]
    assert evenly_spaced_starts(5, 9, 3) == [0, 0, 0]
    assert evenly_spaced_starts(30, 9, 1) == [10]


def test_batches_are_a_function_of_the_step_and_carry_the_audio_flag(ucf_tree):
    split = load_split(ucf_tree / "ucf101", 1)
    source = DecodedVideos(split.train, FORMAT)
    batches = ClipBatches(source, 6, seed=3)
    first, again, other = batches(5), batches(5), batches(6)
    for key in first:
        assert torch.equal(first[key], again[key])
    assert not torch.equal(first["frames"], other["frames"])
    assert first["frames"].shape == (6, FORMAT.num_frames, 32, 32, 3) and first["frames"].dtype == torch.uint8
    assert first["audio"].shape == (6, 2, FORMAT.num_samples)
    for step in range(4):
        batch = batches(step)
        for flag, audio, label in zip(batch["has_audio"], batch["audio"], batch["label"]):
            assert bool(audio.abs().max() > 0) == bool(flag)
            assert 0 <= int(label) < len(CLASSES)
    copied = pickle.loads(pickle.dumps(ClipBatches(FileVideos(split.train, FORMAT), 6, seed=3)))  # as a DataLoader worker gets it
    for step in (5, 6):
        assert torch.equal(copied(step)["label"], batches(step)["label"])
    groups = list(evaluation_batches(DecodedVideos(split.test, FORMAT), 3, 7))
    owners = [owner for group, _ in groups for owner in group]
    assert owners == [video for video in range(len(split.test)) for _ in range(3)]
    assert all(batch["frames"].shape[0] == len(group) <= 7 for group, batch in groups)


def _net(width: int = 4, **overrides) -> MultisensoryNet:
    torch.manual_seed(0)
    return MultisensoryNet(MultisensoryConfig(width=width, bn_momentum=0.1, **overrides))


def test_classifier_head_and_the_no_audio_switch():
    classifier = ActionClassifier(ClassifierConfig(_net().config, num_classes=5, dropout=0.5), _net()).eval()
    frames = normalize_frames(torch.randint(0, 256, (3, 8, 32, 32, 3), dtype=torch.uint8))
    audio = torch.rand(3, 2, 8533) - 0.5
    other_audio = torch.rand(3, 2, 8533) - 0.5
    logits = classifier(frames, audio)
    assert logits.shape == (3, 5)
    assert classifier.logits.weight.shape == (5, 4 * 8, 1, 1, 1)  # 1x1x1 conv on 8w channels
    # A video flagged as silent does not depend on its audio; the others do.
    flags = torch.tensor([True, False, True])
    masked, masked_other = classifier(frames, audio, flags), classifier(frames, other_audio, flags)
    assert torch.allclose(masked[1], masked_other[1], atol=1e-6)
    assert not torch.allclose(masked[0], masked_other[0], atol=1e-4)
    # The paper's no-audio variant ignores audio altogether and equals a fully masked batch.
    silent = ActionClassifier(ClassifierConfig(_net(use_sound=False).config, 5), _net(use_sound=False))
    silent.load_state_dict(classifier.state_dict())
    silent.eval()
    assert torch.allclose(silent(frames, audio), silent(frames, other_audio), atol=1e-6)
    assert torch.allclose(silent(frames, audio), classifier(frames, torch.zeros_like(audio), torch.zeros(3, dtype=torch.bool)),
                          atol=1e-5)
    assert not any(p.requires_grad for p in silent.trunk.audio.parameters())
    # Dropout acts in training only.
    classifier.train()
    assert not torch.allclose(classifier(frames, audio), classifier(frames, audio))


def test_linear_probe_trains_only_the_head_and_keeps_batch_statistics(tmp_path):
    checkpoint = tmp_path / "pretrained.pt"
    save_checkpoint(checkpoint, model=_net(), step=1, config={})
    probe = build_classifier("linear_probe", checkpoint, 3, seed=1)
    assert {name for name, p in probe.named_parameters() if p.requires_grad} == {"logits.weight", "logits.bias"}
    probe.train()
    assert probe.training and not probe.trunk.training
    before = probe.trunk.video.conv1.bn.running_mean.clone()
    probe(normalize_frames(torch.randint(0, 256, (2, 8, 32, 32, 3), dtype=torch.uint8)), torch.rand(2, 2, 8533) - 0.5)
    assert torch.equal(before, probe.trunk.video.conv1.bn.running_mean)
    pretrained, random = build_classifier("with_audio", checkpoint, 3), build_classifier("random_init", checkpoint, 3, seed=5)
    reference = _net().state_dict()
    assert torch.equal(pretrained.trunk.conv5_2.conv_b.weight, reference["conv5_2.conv_b.weight"])
    assert not torch.equal(random.trunk.conv5_2.conv_b.weight, reference["conv5_2.conv_b.weight"])
    assert build_classifier("no_audio", checkpoint, 3).trunk.config.use_sound is False


def test_video_accuracy_averages_softmax_over_clips():
    # Video 0 (class 0): two weak wrong clips, one confident right clip -> clip 1/3, video right.
    # Video 1 (class 1): all clips right. Video 2 (class 1): all clips wrong.
    probs = np.array([
        [[0.45, 0.55], [0.45, 0.55], [0.95, 0.05]],
        [[0.2, 0.8], [0.3, 0.7], [0.4, 0.6]],
        [[0.9, 0.1], [0.8, 0.2], [0.7, 0.3]],
    ], dtype=np.float32)
    evaluation = Evaluation(["a", "b"], ["x", "y", "z"], np.array([0, 1, 1]), np.array([True, False, True]), probs)
    assert evaluation.clip_accuracy == pytest.approx(4 / 9)
    assert evaluation.video_accuracy == pytest.approx(2 / 3)
    assert evaluation.accuracy_where(evaluation.has_audio) == pytest.approx((1 / 6, 1 / 2))
    np.testing.assert_array_equal(evaluation.confusion(), [[1, 0], [1, 1]])
    per_class = evaluation.per_class()
    assert per_class["video accuracy"].tolist() == [1.0, 0.5]
    np.testing.assert_array_equal(evaluation.selection(), [True, True, True])
    np.testing.assert_array_equal(evaluation.selection(with_audio_only=True), [True, False, True])
    np.testing.assert_array_equal(evaluation.selection(["b"]), [False, True, True])
    np.testing.assert_array_equal(evaluation.selection(["b"], with_audio_only=True), [False, False, True])


def test_settings_state_their_status_and_paper_keeps_the_code_values():
    paper = resolve("paper").ucf101
    assert (paper.split, paper.batch_size, paper.train.lr_gamma, paper.train.weight_decay, paper.train.grad_clip) == (
        1, 8, 0.1, 1e-5, None)
    table = settings_table(paper)
    # one row per key of the section, each with a status
    assert table["setting"].tolist() == list(flatten(paper)) and set(SETTING_STATUS) == set(flatten(paper))
    assert table["status"].str.len().gt(0).all()
    assert table.set_index("setting").loc["train.lr", "status"].startswith("UNKNOWN")
    for profile in ("smoke", "synth", "paper"):
        settings = resolve(profile).ucf101
        assert all(0 < step < settings.train.steps for step in settings.train.lr_milestones)
        assert all(0 < step < settings.probe_steps for step in settings.probe_milestones)
    # Fine-tuning clips are at the pretrained network's rates: the paper's 4.2 s clip is its 125 frames.
    paper_clips = clip_format(resolve("paper"))
    assert (paper_clips.num_frames, paper_clips.num_samples, paper_clips.size, paper_clips.crop) == (125, 87588, 256, 224)
    with_format = settings_table(paper, paper_clips).set_index("setting")
    assert with_format.loc["crop", "value"] == "224" and with_format.loc["train.steps", "value"] == "30000"
    synth = resolve("synth")
    synth_clips, synth_shift = clip_format(synth), synth.pretrain.shift
    assert (synth_clips.fps, synth_clips.sample_rate, synth_clips.crop) == (synth_shift.fps, synth_shift.sample_rate, synth_shift.crop)
    assert clip_format(resolve("synth", {"ucf101.fps": "12.5"})).fps == 12.5


def test_each_row_trains_with_the_sections_schedule_and_the_probe_with_its_own(tmp_path):
    settings = resolve("synth").ucf101
    tuned = train_config(settings, VARIANT_BY_NAME["no_audio"], tmp_path / "no_audio", seed=4, device="cpu")
    assert tuned == replace(settings.train, seed=4, device="cpu", out_dir=str(tmp_path / "no_audio"))
    assert (tuned.steps, tuned.optimizer, tuned.lr) == (1500, "adam", 3e-4)
    probe = train_config(settings, VARIANT_BY_NAME["linear_probe"], tmp_path / "probe")
    assert (probe.steps, probe.lr, probe.lr_milestones, probe.optimizer) == (
        settings.probe_steps, settings.probe_lr, list(settings.probe_milestones), settings.train.optimizer)
    assert curve_video_indices(5, 0) == [0, 1, 2, 3, 4]
    assert curve_video_indices(10, 3) == [0, 4, 9]


def test_finetuning_learns_the_miniature_classes(ucf_tree, tmp_path):
    split = load_split(ucf_tree / "ucf101", 1)
    clips = replace(FORMAT, audio_jitter=0.0)
    train, test = DecodedVideos(split.train, clips), DecodedVideos(split.test, clips)
    checkpoint = tmp_path / "pretrained.pt"
    save_checkpoint(checkpoint, model=_net(), step=1, config={})
    smoke = resolve("smoke").ucf101
    settings = replace(smoke, batch_size=6, dropout=0.0,
                       train=replace(smoke.train, steps=60, lr=3e-2, lr_milestones=[50], log_every=5, checkpoint_every=60))
    model = build_classifier("with_audio", checkpoint, len(CLASSES), dropout=0.0)
    history = finetune(model, train, settings, VARIANT_BY_NAME["with_audio"], tmp_path / "run", device="cpu")
    assert history["train"][-1]["step"] == 60
    assert history["train"][-1]["loss"] < history["train"][0]["loss"]
    evaluation = evaluate_classifier(model, test, 2, split.classes)
    assert evaluation.clip_probs.shape == (len(split.test), 2, len(CLASSES))
    np.testing.assert_allclose(evaluation.clip_probs.sum(-1), 1, atol=1e-5)
    # Each class has its own colour: a few steps separate the held-out groups.
    assert evaluation.video_accuracy > 1 / len(CLASSES)
    # the training curves' eval_fn scores the centre clip of the chosen videos only
    centre = evaluate_classifier(model, test, 1, split.classes, videos=[0, len(split.test) - 1])
    point = curve_accuracy(test, split.classes, [0, len(split.test) - 1], settings)(model)
    assert point == {"test_clip_accuracy": centre.clip_accuracy}
    assert centre.clip_probs.shape == (2, 1, len(CLASSES))


def test_notebook_runs_the_paper_profile_on_a_ucf101_tree(ucf_tree, tmp_path):
    """The paper profile, unchanged but for a tiny pretrained network, clip size and schedule."""
    import jupytext
    import papermill

    from avlib.notebooks import NOTEBOOK_DIR, kernel_name

    checkpoint = tmp_path / "pretrained.pt"
    save_checkpoint(checkpoint, model=_net(), step=1, config={})
    source = NOTEBOOK_DIR / "03_ucf101.py"
    notebook = jupytext.read(source)
    notebook.metadata["kernelspec"] = {"name": kernel_name(), "display_name": "avlib", "language": "python"}
    converted, executed = tmp_path / "03.ipynb", tmp_path / "03.out.ipynb"
    jupytext.write(notebook, converted)
    results = tmp_path / "results"
    overrides = {f"ucf101.{key}": value for key, value in dict(
        window=1.2, batch_size=4, probe_steps=0, test_clips=2, eval_every=2, size=40, crop=32, fps=7.5, sample_rate=8000,
        **{"train.steps": 2, "train.lr_milestones": [], "train.log_every": 1, "train.checkpoint_every": 2,
           "train.amp": "none", "train.channels_last": False, "train.workers": 2}).items()}
    papermill.execute_notebook(
        str(converted), str(executed), kernel_name=notebook.metadata["kernelspec"]["name"], cwd=str(source.parent),
        progress_bar=False, parameters=dict(profile="paper", data_root=str(ucf_tree), device="cpu", results_root=str(results),
                                            checkpoint_root=str(tmp_path / "checkpoints"), pretrained_checkpoint=str(checkpoint),
                                            overrides=overrides))
    tables = results / "paper" / "tables"
    accuracy = pd.read_csv(tables / "ucf101_accuracy.csv")
    assert accuracy["model"].tolist()[:3] == ["pretrained, with audio", "pretrained, audio removed (fine-tuning and test)",
                                              "random initialisation, with audio"]
    assert accuracy["paper %"].notna().all()  # the probe's row (no paper number) is off with probe_steps=0
    counts = pd.read_csv(tables / "ucf101_audio.csv").set_index("part")
    assert counts.loc["test", "without audio"] == sum((c, g) in SILENT for c in CLASSES for g in (1, 2))
    assert json.loads((tables / "ucf101_accuracy.provenance.json").read_text())["profile"] == "paper"
    assert os.listdir(tmp_path / "checkpoints" / "paper" / "ucf101")


def _tiny_paper() -> dict:
    """The paper profile cut to a tiny pretrained network's clips and a two-step schedule (one for the probe)."""
    return {f"ucf101.{key}": value for key, value in dict(
        window=1.2, batch_size=4, test_clips=2, eval_every=2, size=40, crop=32, fps=7.5, sample_rate=8000,
        probe_steps=1, probe_milestones=[],
        **{"train.steps": 2, "train.lr_milestones": [], "train.log_every": 1, "train.checkpoint_every": 2,
           "train.amp": "none", "train.channels_last": False, "train.workers": 0}).items()}


def test_run_trains_and_scores_every_row_per_seed_and_reloads_a_finished_run(ucf_tree, tmp_path):
    checkpoint = tmp_path / "pretrained.pt"
    save_checkpoint(checkpoint, model=_net(), step=1, config={})
    experiment = resolve("paper", {**_tiny_paper(), "ucf101.seeds": 2})
    result = run(experiment, seed=3, data_root=ucf_tree, checkpoint_root=tmp_path / "checkpoints", device="cpu",
                 pretrained_checkpoint=checkpoint)
    assert [variant.name for variant in result.variants] == ["with_audio", "no_audio", "random_init", "linear_probe"]
    assert result.checkpoint == checkpoint and result.sound_only_pairs == []
    assert result.run_dir.parent == tmp_path / "checkpoints" / "paper" / "ucf101"
    assert result.split.classes == list(CLASSES) and len(result.split.test) == 2 * len(CLASSES)
    assert result.seeds == [3, 4] and result.seeds_of("linear_probe") == [3]
    for variant in result.variants:
        folders = [result.run_dir / variant.name] + ([] if variant.frozen else [result.run_dir / "train-seed4" / variant.name])
        assert len(result.evaluations[variant.name]) == len(result.histories[variant.name]) == len(folders)
        for folder, history, scored in zip(folders, result.histories[variant.name], result.evaluations[variant.name]):
            assert (folder / "checkpoint.pt").exists()
            assert history["train"][-1]["step"] == (1 if variant.frozen else 2)
            assert scored.clip_probs.shape == (len(result.split.test), 2, len(CLASSES))
    # each training seed is its own run: another initialisation and batch order, scored on the same test videos
    first, second = result.evaluations["random_init"]
    assert not np.allclose(first.clip_probs, second.clip_probs)
    np.testing.assert_array_equal(first.labels, second.labels)
    differences = seed_differences(result.evaluations, "with_audio", "random_init")
    assert differences.shape == (2, len(result.split.test)) and set(np.unique(differences)) <= {-1.0, 0.0, 1.0}
    table = accuracy_table(result.evaluations, result.histories, "paper").set_index("model")
    with_audio = table.loc[VARIANT_BY_NAME["with_audio"].title]
    assert with_audio["seeds"] == 2 and with_audio["video accuracy %"] == pytest.approx(
        100 * np.mean([scored.video_accuracy for scored in result.evaluations["with_audio"]]))
    assert table.loc[VARIANT_BY_NAME["linear_probe"].title, "seeds"] == 1
    again = run(experiment, seed=3, data_root=ucf_tree, checkpoint_root=tmp_path / "checkpoints", device="cpu",
                pretrained_checkpoint=checkpoint)
    assert again.run_dir == result.run_dir
    for name, per_seed in result.evaluations.items():  # reloaded from the finished runs, not retrained
        for index, scored in enumerate(per_seed):
            np.testing.assert_array_equal(again.evaluations[name][index].clip_probs, scored.clip_probs)
            assert again.histories[name][index]["train"] == result.histories[name][index]["train"]


@pytest.mark.slow
def test_command_line_runs_the_smoke_profile_end_to_end(tmp_path):
    out, checkpoints = tmp_path / "out", tmp_path / "checkpoints"
    completed = subprocess.run([sys.executable, "-m", "avlib.tasks.ucf101", "--profile", "smoke", "--device", "cpu",
                                "--out", str(out), "--checkpoints", str(checkpoints), "test_clips=1"],
                               capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["task"] == "ucf101" and summary["profile"] == "smoke" and summary["config"]["test_clips"] == 1
    rows = summary["summary"]["rows"]
    assert list(rows) == ["with_audio", "no_audio", "random_init", "linear_probe"]
    assert all(0 <= value <= 100 for row in rows.values() for value in row["video accuracy %"])
    assert rows["with_audio"]["steps"] == [3, 3] and rows["linear_probe"]["steps"] == [2]
    assert rows["with_audio"]["seeds"] == [0, 1] and rows["linear_probe"]["seeds"] == [0]
    accuracy = pd.read_csv(out / "accuracy.csv")
    assert accuracy["video accuracy %"].iloc[0] == pytest.approx(np.mean(rows["with_audio"]["video accuracy %"]))
    # the task trained its own pretrained network under --checkpoints
    assert Path(summary["summary"]["checkpoint"]) == resolve("smoke").pretrained_checkpoint(checkpoints)
    assert Path(summary["summary"]["checkpoint"]).exists()
