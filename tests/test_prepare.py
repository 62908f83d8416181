"""Prepared data trees (avlib.data.prepare) and fit's DataLoader on every real-data dataset, raw and prepared."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
import soxr
import torch

from avlib import io
from avlib.data.index import build_index, find_prepared
from avlib.data.mixtures import MixtureBatches, MixtureConfig
from avlib.data.prepare import MANIFEST, PrepareSettings, longest_gop, main, prepare_file, prepare_tree, prepared_size
from avlib.data.shift import FileClips, SeparateReads, ShiftBatches, ShiftConfig, evaluation_set
from avlib.data.sources import action_sources, scene_files, speaker_sources
from avlib.data.ucf101 import ActionClipFormat, ClipBatches, load_split
from avlib.train import TrainConfig, _loader_source
from avlib.writer import write_video
from tests.media import click_track, decode_indices, index_frames, onsets

FPS = 29.97
#: Re-encoding tolerance, frames read at the paper's 256 x 256 from a raw and a prepared file (0-255): the
#: mean absolute difference, and the largest one (at sharp edges of saturated colour, where 4:2:0 chroma at
#: 128 x 128 rounds differently from the raw file's chroma scaled in one step).
MEAN_TOLERANCE = 2.0
MAX_TOLERANCE = 96
#: Prepared audio against the raw track resampled once to 21 kHz on the clip clock: 16-bit rounding (half a step of
#: 2**-15) and float error. Against the raw read of a window the difference is that of a sub-sample delay (a window
#: starts on the 21 kHz grid, up to one sample, 48 us, off): sounds start within one sample.
AUDIO_TOLERANCE = 0.5 / 32768 + 1e-6


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
    assert (before.audio_codec, before.sample_rate, after.audio_codec, after.sample_rate, after.channels) == ("aac", 44100, "flac",
                                                                                                              21000, 2)
    # the raw track decoded from its start (its first sample at time 0 here), resampled once to 21 kHz
    with av.open(str(raw)) as container:
        decoded = list(container.decode(audio=0))
    assert decoded[0].pts == 0 and before.video_start == 0
    reference = soxr.resample(np.concatenate([frame.to_ndarray() for frame in decoded], axis=1).T, 44100, 21000, quality="HQ").T
    for start in (0.0, 0.77, 1.5):
        a = io.read_clip(raw, start, 1.4, size=256)
        b = io.read_clip(prepared, start, 1.4, size=256)
        assert np.array_equal(a.frame_times, b.frame_times)
        assert np.array_equal(decode_indices(a.frames), decode_indices(b.frames))  # no frame is shifted or repeated
        difference = np.abs(a.frames.astype(np.int16) - b.frames)
        assert difference.mean() < MEAN_TOLERANCE and difference.max() <= MAX_TOLERANCE, (difference.mean(), difference.max())
        first = int(np.floor(start * 21000 + 1e-6))  # the window's first sample on the 21 kHz grid
        expected = reference[:, first : first + b.audio.shape[1]]
        assert np.abs(b.audio - expected).max() <= AUDIO_TOLERANCE
        raw_clicks, prepared_clicks = onsets(a.audio, 21000), onsets(b.audio, 21000)
        assert len(raw_clicks) >= 1 and np.abs(raw_clicks - prepared_clicks).max() <= 1 / 21000 + 1e-9


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
    small = _video(tmp_path / "small.mp4", 128, 96, 1.0, gop=10, audio=False)
    outcome = prepare_file(small, tmp_path / "out" / "small.mp4")
    assert outcome["action"] == "copy" and (tmp_path / "out" / "small.mp4").read_bytes() == small.read_bytes()
    sound = _video(tmp_path / "sound.mp4", 128, 96, 1.0, gop=10)  # small, but its AAC audio is not the prepared audio
    assert prepare_file(sound, tmp_path / "out" / "sound.mp4")["action"] == "reencode"
    assert prepare_file(sound, tmp_path / "out" / "kept.mp4", PrepareSettings(audio_rate=0))["action"] == "copy"
    with pytest.raises(ValueError, match="audio_rate"):
        PrepareSettings(audio_rate=-1)
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


def test_one_pass_pairs_are_the_window_audio_and_crop_they_replace(prepared_root):
    """FileClips.pair (frames cropped and flipped as they are converted, both audios from one open file) gives the
    batches and held-out examples of window + audio + crop_and_flip, bit for bit, with the same draws."""
    paths = sorted((prepared_root / "audioset" / "train").glob("[ab].mp4"))
    config = ShiftConfig(window=1.0, min_shift=0.4, max_shift=1.2, size=64, crop=48)
    clips = FileClips([io.probe(path) for path in paths], config)
    fused, plain = ShiftBatches(clips, config, 3, seed=4), ShiftBatches(SeparateReads(clips), config, 3, seed=4)
    for step in range(3):
        first, second = fused(step), plain(step)
        _assert_same(first, second)
        rng_a, rng_b = fused.generator(step), plain.generator(step)
        fused.make(rng_a), plain.make(rng_b)
        assert rng_a.random() == rng_b.random()  # the same numbers drawn
    held = [evaluation_set(source, config, per_video=2) for source in (clips, SeparateReads(clips))]
    _assert_same(held[0].batch(0, 4), held[1].batch(0, 4))


def test_read_clip_crops_and_flips_into_out_as_crop_frames_does(raw_root):
    path = raw_root / "audioset" / "train" / "b.mp4"
    whole = io.read_clip(path, 0.4, 1.0, size=64)
    out = np.zeros((29, 40, 48, 3), dtype=np.uint8)
    clip = io.read_clip(path, 0.4, 1.0, size=64, crop=(40, 48), crop_offset=(5, 9), flip=True, out=out,
                        extra_audio=(1.3, 0.2))
    assert clip.frames is out
    np.testing.assert_array_equal(out, whole.frames[:, 5:45, 9:57][:, :, ::-1])
    np.testing.assert_array_equal(clip.audio, whole.audio)
    assert [audio.shape for audio in clip.extra_audio] == [whole.audio.shape] * 2
    np.testing.assert_array_equal(io.read_clip(path, 0.4, 1.0, size=64, crop=32).frames, whole.frames[:, 16:48, 16:48])
    with pytest.raises(ValueError, match="out must be"):
        io.read_clip(path, 0.4, 1.0, size=64, crop=32, out=np.zeros((29, 32, 33, 3), dtype=np.uint8))
    with pytest.raises(io.WindowError, match="passes the end of the audio"):
        io.read_clip(path, 0.4, 1.0, size=64, extra_audio=(2.5,))


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
