"""The synthetic world: determinism, caching, and that each part really has the property its
experiment needs, checked on decoded files (PyAV) against the written ground truth."""

from __future__ import annotations

import csv
import re
import time
from pathlib import Path

import av
import numpy as np
import pytest

from avlib.data.ucf101 import read_classes, read_list
from avlib.data.world import (
    PARTS,
    generate,
    generate_world,
    load_actions,
    load_speakers,
    load_talkers,
    load_truth,
    read_manifest,
    world_config,
)
from avlib.data.world.actions import CLASS_CATALOGUE, POSES, ActionsConfig, held_out_groups, sound_only_pairs
from avlib.data.world.speakers import F0_MEAN_RANGE, F0_SWING

#: A world smaller than smoke, for tests that build several.
TINY = dict(
    scenes=dict(num_clips=2, size=48, clip_seconds=4.0),
    actions=dict(num_classes=2, num_groups=4, clips_per_group=1, width=48, height=32, clip_seconds=(1.0, 1.5)),
    speakers=dict(num_speakers=6, videos_per_speaker=1, clips_per_video=1, size=48, clip_seconds=1.5),
    talkers=dict(num_clips=1, size=48, clip_seconds=1.5),
)


def decode(path: Path) -> tuple[np.ndarray, np.ndarray | None, int]:
    """All frames (T x H x W x 3 uint8) and audio (C x N float32, or None) of a file, and its
    audio rate, decoded with PyAV: the files are checked as any reader would see them."""
    with av.open(str(path)) as container:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    with av.open(str(path)) as container:
        if not container.streams.audio:
            return frames, None, 0
        rate = container.streams.audio[0].sample_rate
        audio = np.concatenate([f.to_ndarray() for f in container.decode(audio=0)], axis=1)
    return frames, audio.astype(np.float32), rate


def rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def smoke_world(tmp_path_factory) -> dict[str, Path]:
    return generate_world("smoke", tmp_path_factory.mktemp("world"), seed=0, workers=2, progress=False)


# ---------------------------------------------------------------------------------------------
# Determinism and caching


def _metadata_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.suffix in {".csv", ".txt", ".json", ".npz"}}


def _all_bytes(root: Path) -> dict[str, int]:
    return {p.relative_to(root).as_posix(): hash(p.read_bytes()) for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_world_different_seed_different(tmp_path):
    # one run on 1 worker and one on 2: the number of processes must not change anything
    first = generate_world("smoke", tmp_path / "a", seed=3, workers=1, progress=False, **TINY)
    second = generate_world("smoke", tmp_path / "b", seed=3, workers=2, progress=False, **TINY)
    other = generate_world("smoke", tmp_path / "c", seed=4, workers=1, progress=False, **TINY)
    for part in PARTS:
        assert _metadata_files(first[part]) == _metadata_files(second[part]), part
        # the encoders run single-threaded, so even the video files are byte-identical
        assert _all_bytes(first[part]) == _all_bytes(second[part]), part
        assert _metadata_files(first[part]) != _metadata_files(other[part]), part
        videos = sorted(p.relative_to(first[part]) for p in first[part].rglob("*") if p.suffix in {".mp4", ".avi"})
        assert videos
        with_audio = next(v for v in videos if decode(first[part] / v)[1] is not None)
        frames_a, audio_a, _ = decode(first[part] / with_audio)
        frames_b, audio_b, _ = decode(second[part] / with_audio)
        np.testing.assert_array_equal(frames_a, frames_b)
        np.testing.assert_array_equal(audio_a, audio_b)
        other_video = other[part] / with_audio
        if other_video.exists():
            assert not np.array_equal(decode(other_video)[0], frames_a)


def test_cache_reuses_a_built_part_and_rebuilds_a_changed_one(tmp_path):
    config = world_config("scenes", "smoke", seed=0, **TINY["scenes"])
    root = generate("scenes", tmp_path / "scenes", config, workers=1)
    stamps = {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}
    started = time.perf_counter()
    assert generate("scenes", root, config, workers=1) == root
    assert time.perf_counter() - started < 1.0
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()} == stamps

    changed = world_config("scenes", "smoke", seed=0, **{**TINY["scenes"], "num_clips": 1})
    generate("scenes", root, changed, workers=1)
    assert len(rows(root / "scenes.csv")) == 1
    assert read_manifest(root)["config"]["num_clips"] == 1
    # a file gone missing makes the part incomplete: it is rebuilt, not served half
    next((root / "clips").iterdir()).unlink()
    generate("scenes", root, changed, workers=1)
    assert len(list((root / "clips").iterdir())) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scenes"]  # no staging folders left


def test_configs_reject_unknown_fields_and_profiles(tmp_path):
    with pytest.raises(TypeError, match="num_clip"):
        world_config("scenes", "smoke", num_clip=3)
    with pytest.raises(ValueError, match="paper"):
        world_config("scenes", "paper")
    with pytest.raises(TypeError, match="scene"):
        generate_world("smoke", tmp_path, scene=dict(num_clips=1))


# ---------------------------------------------------------------------------------------------
# Scenes: every sound at its visible cause


def onset_strength(audio: np.ndarray, rate: int, hop: int = 64, window: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Times (s) and spectral flux: how much log-power rises, summed over frequencies, against the
    loudest of the frames 2-4 hops before (so slow swells do not count, sudden onsets do)."""
    mono = audio.mean(axis=0)
    count = (mono.size - window) // hop
    segments = mono[np.arange(window)[None, :] + hop * np.arange(count)[:, None]] * np.hanning(window)
    power = np.abs(np.fft.rfft(segments, axis=1)) ** 2
    log_power = np.log10(power + 1e-5 * power.max() + 1e-20)  # a floor: silence has no onsets
    before = np.maximum.reduce([np.roll(log_power, k, axis=0) for k in (2, 3, 4)])
    flux = np.maximum(log_power - before, 0).sum(axis=1)
    flux[:4] = 0
    return (np.arange(count) * hop + window / 2) / rate, flux


ONSET_THRESHOLD = 30.0  # events give > 50, everything else < 15 in the decoded smoke world


def test_every_scene_sound_is_at_its_visible_cause(smoke_world):
    root = smoke_world["scenes"]
    table = rows(root / "scenes.csv")
    assert len(table) == world_config("scenes", "smoke").num_clips
    heard_events = 0
    for row in table:
        frames, audio, rate = decode(root / row["path"])
        truth = load_truth(root / row["truth"])
        fps = truth.fps
        assert frames.shape[0] == int(row["num_frames"]) and audio.shape[0] == 2 and rate == truth.sample_rate

        times, flux = onset_strength(audio, rate)
        is_peak = (flux > ONSET_THRESHOLD) & (flux >= np.roll(flux, 1)) & (flux >= np.roll(flux, -1))
        onsets = times[is_peak]
        event_times = truth.event_frame / fps
        heard_events += event_times.size
        # each event (on- or off-screen) is heard within one frame of its frame's time ...
        for time_s, obj in zip(event_times, truth.event_object):
            assert np.min(np.abs(onsets - time_s)) <= 1 / fps, f"{row['clip']}: event of object {obj} at {time_s:.3f} s not heard"
        # ... and nothing is heard that is not an event
        for onset in onsets:
            assert np.min(np.abs(event_times - onset)) <= 1 / fps, f"{row['clip']}: onset at {onset:.3f} s with no cause"

        # an on-screen impact is where the object visibly turns: its velocity flips sign
        centres = (truth.boxes[..., :2] + truth.boxes[..., 2:]) / 2
        for frame, obj in zip(truth.event_frame, truth.event_object):
            if obj < 0:
                continue
            assert truth.sounding[obj]
            before = centres[frame, obj] - centres[frame - 1, obj]
            after = centres[frame + 1, obj] - centres[frame, obj]
            assert np.any((before * after < 0) & (np.abs(before) > 0.05) & (np.abs(after) > 0.05)), f"{row['clip']}: frame {frame}"
    assert heard_events > 0


def test_scene_truth_masks_objects_and_loudness_follows_motion(smoke_world):
    root = smoke_world["scenes"]
    objects = rows(root / "objects.csv")
    assert {o["sounding"] for o in objects} == {"0", "1"}  # sounding objects and silent distractors
    checked_hum = False
    for row in rows(root / "scenes.csv"):
        truth = load_truth(root / row["truth"])
        masks = truth.masks(10)
        assert masks.shape == (len(truth.sizes), int(row["height"]), int(row["width"]))
        for k in range(len(truth.sizes)):
            ys, xs = np.nonzero(masks[k])
            x0, y0, x1, y1 = truth.boxes[10, k]
            assert xs.min() >= x0 - 1 and xs.max() <= x1 + 1 and ys.min() >= y0 - 1 and ys.max() <= y1 + 1
        assert truth.sounding_mask(10).any() == bool(truth.sounding.any())
        # silent objects are silent; a humming (orbiting) object is as loud as it is fast
        assert np.all(truth.loudness[:, ~truth.sounding] == 0)
        for o in (o for o in objects if o["clip"] == row["clip"] and o["sound"] == "continuous"):
            k = int(o["object"])
            centres = (truth.boxes[:, k, :2] + truth.boxes[:, k, 2:]) / 2
            speed = np.linalg.norm(np.diff(centres, axis=0), axis=1)
            assert np.corrcoef(speed, truth.loudness[1:, k])[0, 1] > 0.8
            checked_hum = True
    assert checked_hum


def test_scene_clips_are_long_enough_for_the_shift_task(smoke_world):
    # the paper: 4.2 s windows from 10.1 s clips with shifts of 2.0-5.8 s
    for row in rows(smoke_world["scenes"] / "scenes.csv"):
        assert float(row["duration"]) >= 4.2 + 5.8


# ---------------------------------------------------------------------------------------------
# Actions: UCF-101's layout and splits


def _group(relative_path: str) -> int:
    return int(re.search(r"_g(\d\d)_c\d\d\.avi$", relative_path).group(1))


def test_actions_follow_ucf101_layout_and_splits(smoke_world):
    root = smoke_world["actions"]
    config = world_config("actions", "smoke")
    classes_text = (root / "ucfTrainTestlist" / "classInd.txt").read_bytes()
    assert classes_text.startswith(b"1 ") and b"\r\n" in classes_text  # UCF-101's files use CRLF
    for split in (1, 2, 3):
        classes = read_classes(root)
        train = read_list(root, f"trainlist0{split}.txt", classes)
        test = read_list(root, f"testlist0{split}.txt", classes)
        assert len(classes) == config.num_classes
        for line in (root / "ucfTrainTestlist" / f"trainlist0{split}.txt").read_text().splitlines():
            assert re.fullmatch(r"(\w+)/v_\1_g\d\d_c\d\d\.avi \d+", line), line
        for path, _ in train + test:
            assert (root / path).is_file()
        train_groups = {(p.split("/")[0], _group(p)) for p, _ in train}
        test_groups = {(p.split("/")[0], _group(p)) for p, _ in test}
        assert train_groups and test_groups and not train_groups & test_groups
        assert {g for _, g in test_groups} == set(held_out_groups(split, config.num_groups))
        counts = np.bincount([label for _, label in train + test], minlength=len(classes))
        assert counts.max() <= 1.1 * counts.min()

    table = load_actions(root)
    assert table.attrs["sound_only_pairs"], "some classes must differ only by sound"
    for a, b in table.attrs["sound_only_pairs"]:
        assert table[table.class_name == a].motion.iloc[0] == table[table.class_name == b].motion.iloc[0]
        assert table[table.class_name == a].sound.iloc[0] != table[table.class_name == b].sound.iloc[0]
    assert 0.3 <= table.has_audio.mean() <= 0.7
    for row in table.itertuples():
        with av.open(str(root / row.path)) as container:
            assert bool(container.streams.audio) == bool(row.has_audio), row.path
            assert container.streams.video[0].codec_context.name == "mpeg4"
            if row.has_audio:
                assert container.streams.audio[0].codec_context.name in {"mp3", "mp3float"}


def test_actions_impacts_are_heard_on_their_frames(smoke_world):
    # MP3 in AVI decodes ~25 ms late (an encoder delay AVI cannot signal, as in real UCF-101):
    # each impact is still heard within one frame (40 ms at 25 fps) of its visible frame
    root = smoke_world["actions"]
    table = load_actions(root)
    clips = table[(table.has_audio == 1) & (table.num_impacts > 0)]
    assert len(clips) > 0
    for clip in clips.iloc[:4].itertuples():
        _, audio, rate = decode(root / clip.path)
        times, flux = onset_strength(audio, rate)
        onsets = times[(flux > ONSET_THRESHOLD) & (flux >= np.roll(flux, 1)) & (flux >= np.roll(flux, -1))]
        for frame in map(int, clip.impact_frames.split()):
            assert np.min(np.abs(onsets - frame / clip.fps)) <= 1 / clip.fps, f"{clip.path}: impact at frame {frame}"


# ---------------------------------------------------------------------------------------------
# Speakers: voices, splits, lips


def estimate_f0(audio: np.ndarray, rate: int) -> float:
    """Median f0 (Hz) of the loud 40 ms frames, by normalised autocorrelation (70-300 Hz)."""
    mono = audio.mean(axis=0)
    window = int(0.04 * rate)
    frames = np.stack([mono[i : i + window] for i in range(0, mono.size - window, window // 2)])
    energy = (frames**2).mean(axis=1)
    lowest_lag, highest_lag = int(rate / 300), int(rate / 70)
    estimates = []
    for frame in frames[energy > 0.3 * np.percentile(energy, 90)]:
        frame = frame - frame.mean()
        correlation = np.correlate(frame, frame, "full")[window - 1 :]
        correlation /= correlation[0] + 1e-12
        lag = lowest_lag + int(np.argmax(correlation[lowest_lag:highest_lag]))
        if correlation[lag] > 0.5:
            estimates.append(rate / lag)
    return float(np.median(estimates))


def test_speakers_have_disjoint_balanced_splits_and_their_own_voices(smoke_world):
    root = smoke_world["speakers"]
    speakers, clips = load_speakers(root)
    assert speakers.speaker_id.is_unique
    for split, group in speakers.groupby("split"):
        assert set(group.gender) == {"m", "f"}, split
    assert set(speakers.split) == {"train", "val", "test"}
    assert clips.groupby("speaker_id").split.nunique().max() == 1
    assert dict(zip(clips.speaker_id, clips.split)) == dict(zip(speakers.speaker_id, speakers.split))
    for gender, (low, high) in F0_MEAN_RANGE.items():
        f0 = speakers[speakers.gender == gender].f0_hz
        assert f0.between(low, high).all()
    assert 85 <= F0_MEAN_RANGE["m"][0] * F0_SWING[0] and F0_MEAN_RANGE["m"][1] * F0_SWING[1] <= 156
    assert 165 <= F0_MEAN_RANGE["f"][0] * F0_SWING[0] and F0_MEAN_RANGE["f"][1] * F0_SWING[1] <= 256

    for gender in ("m", "f"):
        clip = clips[clips.gender == gender].iloc[0]
        frames, audio, rate = decode(root / clip.path)
        assert audio.shape[0] == 1  # mono, as VoxCeleb
        table_f0 = float(speakers.set_index("speaker_id").f0_hz[clip.speaker_id])
        assert abs(estimate_f0(audio, rate) - table_f0) < 0.1 * table_f0, clip.path


def test_mouths_open_with_their_own_speech(smoke_world):
    root = smoke_world["speakers"]
    _, clips = load_speakers(root)
    for clip in clips.iloc[:2].itertuples():
        frames, audio, rate = decode(root / clip.path)
        with np.load(root / clip.truth) as truth:
            mouth_open, mouth_box, fps = truth["mouth_open"], truth["mouth_box"], float(truth["fps"])
        bounds = np.round(np.arange(len(mouth_open) + 1) * rate / fps).astype(int)
        envelope = np.array([np.sqrt(np.mean(audio[0, a:b] ** 2)) for a, b in zip(bounds[:-1], bounds[1:])])
        assert np.corrcoef(envelope, mouth_open)[0, 1] > 0.8
        # and it is visible: the mouth region holds more dark pixels when the mouth is open
        darkness = []
        for frame, (x0, y0, x1, y1) in zip(frames, mouth_box):
            region = frame[int(y0) : int(np.ceil(y1)) + 1, int(x0) : int(np.ceil(x1)) + 1].astype(int)
            darkness.append((region.sum(axis=-1) < 150).sum())
        assert np.corrcoef(darkness, mouth_open)[0, 1] > 0.6


def test_talkers_are_scenes_like_clips_of_people_who_are_not_the_speakers(smoke_world):
    talkers, scenes = load_talkers(smoke_world["talkers"]), rows(smoke_world["scenes"] / "scenes.csv")
    speakers, _ = load_speakers(smoke_world["speakers"])
    assert len(talkers) == world_config("talkers", "smoke").num_clips
    # written as the pretraining clips are: frame size, rates, length
    for column in ("width", "height", "fps", "sample_rate", "num_frames"):
        assert set(talkers[column].astype(float)) == {float(row[column]) for row in scenes}, column
    # each talker is a person of its own, drawn from another random stream than any speaker
    assert talkers.f0_hz.is_unique and not set(np.round(talkers.f0_hz, 6)) & set(np.round(speakers.f0_hz, 6))
    for clip in talkers.itertuples():
        frames, audio, rate = decode(smoke_world["talkers"] / clip.path)
        assert audio.shape[0] == 2 and frames.shape[1:3] == (clip.height, clip.width)
        with np.load(smoke_world["talkers"] / clip.truth) as truth:
            mouth_open, fps = truth["mouth_open"], float(truth["fps"])
        bounds = np.round(np.arange(len(mouth_open) + 1) * rate / fps).astype(int)
        envelope = np.array([np.sqrt(np.mean(audio[:, a:b] ** 2)) for a, b in zip(bounds[:-1], bounds[1:])])
        usable = min(len(envelope), len(mouth_open))
        # the mouth opens with the voice (off-screen sound and noise, as the scenes have, blur it a little)
        assert np.corrcoef(envelope[:usable], mouth_open[:usable])[0, 1] > 0.5, clip.path


def _actor_visibility(motion: str, config: ActionsConfig, network_size: int = 40, network_fps: float = 29.97 / 4,
                      trials: int = 12) -> tuple[float, float]:
    """(actor side, median movement per network frame) in pixels of the network's squashed frame, over draws of a motion."""
    scale_x = network_size / config.width
    sides, moves = [], []
    for trial in range(trials):
        rng = np.random.default_rng(trial)
        size = int(round(rng.uniform(*config.actor_size) * config.height))
        num_frames = int(4 * config.fps)
        room = np.array([config.width - size, config.height - size], dtype=float)
        pose = POSES[motion](rng, num_frames, room, config.height / 96, config.fps)
        picked = np.round(np.arange(0, 4, 1 / network_fps) * config.fps).astype(int)
        centre = pose.motion.top_left[picked] + size / 2
        shift = np.hypot(*(np.diff(centre, axis=0) * [scale_x, network_size / config.height]).T)
        growth = np.abs(np.diff(pose.scale[picked])) * size * scale_x
        turn = np.abs(np.diff(pose.angle[picked])) * size / 2 * scale_x
        sides.append(size * scale_x)
        moves.append(float(np.median(shift + growth + turn)))
    return float(np.median(sides)), float(np.median(moves))


def test_every_action_is_visible_at_the_synth_networks_input():
    # docs/world.md: at the synth profile's 40-pixel frames every actor is a dozen pixels wide and every motion,
    # the in-place ones too, moves it by more than a pixel per frame
    config = world_config("actions", "synth")
    for motion in dict.fromkeys(motion for _, motion, _ in CLASS_CATALOGUE):
        side, move = _actor_visibility(motion, config)
        assert side >= 11 and move >= 1.0, (motion, side, move)
    # the sound-only pairs still move alike: only their sound tells them apart
    motions = {name: motion for name, motion, _ in CLASS_CATALOGUE}
    assert sound_only_pairs() and all(motions[a] == motions[b] for a, b in sound_only_pairs())


# ---------------------------------------------------------------------------------------------
# The readers of real data read the world


def test_world_files_read_through_avlib_io(smoke_world):
    io = pytest.importorskip("avlib.io")
    scene = smoke_world["scenes"] / rows(smoke_world["scenes"] / "scenes.csv")[0]["path"]
    info = io.probe(scene)
    assert info.has_audio and abs(info.fps - 30000 / 1001) < 1e-3
    clip = io.read_clip(scene, start=1.0, duration=4.2, fps=29.97, sample_rate=21000)
    assert clip.frames.shape[0] == 125 and clip.audio.shape == (2, 87588)
