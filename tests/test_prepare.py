"""Prepared data trees (avlib.data.prepare) and fit's DataLoader on every real-data dataset, raw and prepared."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from avlib import io
from avlib.data.index import build_index, find_prepared
from avlib.data.mixtures import MixtureBatches, MixtureConfig
from avlib.data.prepare import MANIFEST, PrepareSettings, longest_gop, main, prepare_file, prepare_tree, prepared_size
from avlib.data.shift import ShiftBatches, ShiftConfig
from avlib.data.sources import action_sources, scene_files, speaker_sources
from avlib.data.ucf101 import ActionClipFormat, ClipBatches, load_split
from avlib.train import TrainConfig, _loader_source
from avlib.writer import write_video
from tests.media import click_track, decode_indices, index_frames

FPS = 29.97
#: Re-encoding tolerance, frames read at the paper's 256 x 256 from a raw and a prepared file (0-255): the
#: mean absolute difference, and the largest one (at sharp edges of saturated colour, where 4:2:0 chroma at
#: 128 x 128 rounds differently from the raw file's chroma scaled in one step).
MEAN_TOLERANCE = 2.0
MAX_TOLERANCE = 96


def _frames(count: int, height: int, width: int, seed: int) -> np.ndarray:
    """Index blocks on top (they survive lossy coding), a moving textured gradient with a red bar below."""
    frames = index_frames(count, height, width)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0 : height - height // 2, 0:width]
    texture = rng.integers(-12, 13, size=(height - height // 2, width, 1))
    for t in range(count):
        bottom = 128 + 60 * np.sin(xx / 17 + t / 7)[..., None] + 40 * np.cos(yy / 11)[..., None] + texture
        frames[t, height // 2 :] = np.clip(bottom, 0, 255).astype(np.uint8)
        bar = (4 * t) % (width - 24)
        frames[t, height // 2 + 8 : height // 2 + 24, bar : bar + 24] = (220, 30, 30)
    return frames


def _video(path: Path, width: int, height: int, seconds: float, seed: int = 0, audio: bool = True, **options) -> Path:
    count = int(seconds * FPS)
    samples = int(round(count / FPS * 44100))
    sound = click_track(samples, 44100, [0.5, 1.25, 2.0]) + 0.05 * np.random.default_rng(seed).standard_normal((2, samples))
    return write_video(path, _frames(count, height, width, seed), FPS, sound.astype(np.float32) if audio else None, 44100,
                       **options)


@pytest.fixture(scope="module")
def raw_root(tmp_path_factory) -> Path:
    """A miniature data root in the layout of docs/datasets.md: AudioSet-like mp4 (448x288, one keyframe per clip),
    UCF-101 AVIs (320x240, one silent) with their lists, VoxCeleb-like clips with their tables, and one corrupt clip."""
    root = tmp_path_factory.mktemp("raw")
    for split, names in (("train", ("a", "b")), ("test", ("c",))):
        for seed, name in enumerate(names):
            _video(root / "audioset" / split / f"{name}.mp4", 448, 288, 3.0, seed=seed, gop=250)
    (root / "audioset" / "train" / "broken.mp4").write_bytes(b"not a video at all" * 10)
    ucf = root / "ucf101"
    for group, audio in ((1, True), (2, True), (3, False)):
        _video(ucf / "Drumming" / f"v_Drumming_g0{group}_c01.avi", 320, 240, 2.0, seed=group, audio=audio)
    (ucf / "ucfTrainTestlist").mkdir()
    (ucf / "ucfTrainTestlist" / "classInd.txt").write_text("1 Drumming\r\n")
    (ucf / "ucfTrainTestlist" / "trainlist01.txt").write_text(
        "Drumming/v_Drumming_g01_c01.avi 1\r\nDrumming/v_Drumming_g02_c01.avi 1\r\n")
    (ucf / "ucfTrainTestlist" / "testlist01.txt").write_text("Drumming/v_Drumming_g03_c01.avi\r\n")
    vox = root / "voxceleb"
    rows = []
    for index, (speaker, split) in enumerate((("id1", "train"), ("id2", "train"), ("id3", "train"), ("id4", "test"))):
        name = f"{speaker}/v0/00001.mp4"
        _video(vox / name, 224, 224, 2.5, seed=10 + index)
        rows.append(f"{name},{speaker},{split}")
    (vox / "speakers.csv").write_text("speaker,gender\nid1,m\nid2,f\nid3,m\nid4,f\n")
    (vox / "clips.csv").write_text("path,speaker,split\n" + "\n".join(rows) + "\n")
    return root


@pytest.fixture(scope="module")
def prepared_root(raw_root, tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("prepared") / "data"
    assert main([str(raw_root), str(target), "--workers", "2"]) == 0
    return target


def test_sizes_squash_or_keep_the_aspect_and_never_enlarge():
    assert prepared_size(640, 360, PrepareSettings()) == (256, 256)
    assert prepared_size(320, 240, PrepareSettings()) == (256, 240)
    assert prepared_size(200, 100, PrepareSettings()) == (200, 100)
    short = PrepareSettings(resize="short_side")
    assert prepared_size(640, 360, short) == (456, 256)
    assert prepared_size(720, 1280, short) == (256, 456)
    assert prepared_size(320, 240, short) == (320, 240)
    with pytest.raises(ValueError, match="resize"):
        PrepareSettings(resize="crop")
    with pytest.raises(ValueError, match="keyint"):
        PrepareSettings(keyint=0)


def test_prepared_clip_reads_the_same_frames_and_audio(raw_root, prepared_root):
    raw, prepared = raw_root / "audioset" / "train" / "a.mp4", prepared_root / "audioset" / "train" / "a.mp4"
    before, after = io.probe(raw), io.probe(prepared)
    assert (after.width, after.height) == (256, 256) and (before.width, before.height) == (448, 288)
    assert (after.fps, after.num_frames, after.duration, after.video_start) == (before.fps, before.num_frames, before.duration,
                                                                                before.video_start)
    assert longest_gop(raw) > 15 >= longest_gop(prepared)
    for start in (0.0, 0.77, 1.5):
        a = io.read_clip(raw, start, 1.4, size=256)
        b = io.read_clip(prepared, start, 1.4, size=256)
        assert np.array_equal(a.frame_times, b.frame_times)
        assert np.array_equal(decode_indices(a.frames), decode_indices(b.frames))  # no frame is shifted or repeated
        difference = np.abs(a.frames.astype(np.int16) - b.frames)
        assert difference.mean() < MEAN_TOLERANCE and difference.max() <= MAX_TOLERANCE, (difference.mean(), difference.max())
        np.testing.assert_array_equal(a.audio, b.audio)  # the audio packets are copied: the same samples


def test_ucf_avi_is_reencoded_in_place_and_its_split_reads(raw_root, prepared_root):
    raw, prepared = raw_root / "ucf101", prepared_root / "ucf101"
    assert (prepared / "ucfTrainTestlist" / "trainlist01.txt").read_bytes() == (raw / "ucfTrainTestlist" / "trainlist01.txt").read_bytes()
    split = load_split(prepared, 1)
    assert [video.name for video in split.train] == [video.name for video in load_split(raw, 1).train]
    assert [video.has_audio for video in split.train + split.test] == [True, True, False]
    name = "Drumming/v_Drumming_g01_c01.avi"
    info = io.probe(prepared / name)
    assert info.video_codec == "mpeg4" and (info.width, info.height) == (256, 240)
    a, b = io.read_clip(raw / name, 0.4, 1.0, size=256), io.read_clip(prepared / name, 0.4, 1.0, size=256)
    assert np.array_equal(decode_indices(a.frames), decode_indices(b.frames))
    assert np.abs(a.frames.astype(np.int16) - b.frames).mean() < MEAN_TOLERANCE
    np.testing.assert_array_equal(a.audio, b.audio)


def test_manifest_lists_each_file_and_a_second_run_redoes_nothing(raw_root, prepared_root):
    manifest = json.loads((prepared_root / MANIFEST).read_text())
    files = manifest["files"]
    assert files["audioset/train/a.mp4"]["action"] == "reencode"
    assert files["audioset/train/broken.mp4"]["action"] == "copy" and "unreadable" in files["audioset/train/broken.mp4"]["reason"]
    assert files["voxceleb/clips.csv"]["action"] == "copy"
    assert not any(name.endswith(".avlib-index.json") for name in files)
    assert find_prepared(prepared_root / "audioset" / "train")["size"] == 256
    assert find_prepared(raw_root / "audioset") is None
    stamps = [(prepared_root / name).stat().st_mtime_ns for name in ("audioset/train/a.mp4", MANIFEST)]
    again = prepare_tree(raw_root, prepared_root, PrepareSettings())
    assert again["files"] == files
    assert [(prepared_root / name).stat().st_mtime_ns for name in ("audioset/train/a.mp4", MANIFEST)] == stamps


def test_small_short_gop_video_is_copied_and_bad_arguments_are_named(tmp_path):
    small = _video(tmp_path / "small.mp4", 128, 96, 1.0, gop=10)
    outcome = prepare_file(small, tmp_path / "out" / "small.mp4")
    assert outcome["action"] == "copy" and (tmp_path / "out" / "small.mp4").read_bytes() == small.read_bytes()
    with pytest.raises(FileNotFoundError, match="no such folder"):
        prepare_tree(tmp_path / "missing", tmp_path / "out")
    with pytest.raises(ValueError, match="outside the source tree"):
        prepare_tree(tmp_path, tmp_path / "inside")


def test_index_of_a_prepared_tree_names_its_settings(raw_root, prepared_root):
    index = build_index(prepared_root / "audioset" / "train", skip_bad=True)
    assert sorted(Path(video.path).name for video in index.videos) == ["a.mp4", "b.mp4"]
    assert [name for name, _ in index.bad] == ["broken.mp4"]
    assert index.prepared is not None and index.prepared["size"] == 256 and index.prepared["resize"] == "squash"
    assert build_index(raw_root / "audioset" / "train", skip_bad=True).prepared is None


def _loader_batches(batches, steps: int) -> list:
    """The batches of steps 0..steps-1 as fit's DataLoader with 2 worker processes hands them over."""
    next_batch = _loader_source(batches, 0, TrainConfig(steps=steps, workers=2, device="cpu"), 0, 1, pin_memory=False)
    return [next_batch(step) for step in range(steps)]


def _assert_same(first: dict, second: dict) -> None:
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), key


@pytest.mark.slow
@pytest.mark.parametrize("tree", ["raw", "prepared"])
def test_dataloader_workers_give_the_in_process_batches_on_every_real_dataset(tree, raw_root, prepared_root):
    """AudioSet alignment pairs, UCF-101 clips and VoxCeleb mixtures, read from files: 2 workers = workers 0."""
    root = raw_root if tree == "raw" else prepared_root
    shift = ShiftConfig(window=1.0, min_shift=0.4, max_shift=1.2, size=64, crop=48)
    scenes = scene_files(False, "paper", data_root=root)
    assert len(scenes.train) == 2 and len(scenes.held_out) == 1  # the corrupt clip is skipped
    clip_format = ActionClipFormat(window=1.0, fps=FPS, sample_rate=16000, size=64, crop=48, audio_jitter=0.05)
    actions = action_sources(False, "paper", 0, root, clip_format)
    speakers = speaker_sources(False, "paper", 0, root, MixtureConfig(num_frames=30, size=64, crop=48))
    for batches in (ShiftBatches(scenes.sources(shift)[0], shift, 3, seed=1), ClipBatches(actions.train, 3, seed=2),
                    MixtureBatches(speakers.train, 4, seed=3)):
        for step, loaded in enumerate(_loader_batches(batches, 4)):
            _assert_same(loaded, batches(step))
