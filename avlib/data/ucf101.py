"""UCF-101 as distributed, for fine-tuning the multisensory network (paper section 6).

The layout read here is the official one (and the synthetic world's ``actions`` part)::

    <root>/<Class>/v_<Class>_gNN_cMM.avi
    <root>/ucfTrainTestlist/classInd.txt      "1 ApplyEyeMakeup"  (1-based label, class folder)
    <root>/ucfTrainTestlist/trainlist0K.txt   "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1"
    <root>/ucfTrainTestlist/testlist0K.txt    "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi"

for splits K = 1, 2, 3. In the ``paper`` profile ``<root>`` is ``<data_root>/ucf101``
(:func:`dataset_root`). The released lists end lines with CRLF, and one class is spelled two
ways (folder ``HandstandPushups``, files ``v_HandStandPushups_*``): file names are matched to
their class folder without regard to case.

**Videos without audio.** About half of UCF-101 has no audio track. They are kept, not
dropped: :func:`load_split` probes every video and counts them (:meth:`UCF101Split.audio_counts`),
the clip sources return silence for them with ``has_audio = False``, and the classifier
(:class:`avlib.tasks.ucf101.ActionClassifier`) zeroes their fused audio features, which is what the
paper's no-audio variant does to every video (zero samples and ``use_sound = False``).

**Audio timing.** MP3 audio inside AVI decodes about 25 ms late in every FFmpeg decoder (the
encoder delay that AVI cannot signal; ``tests/test_io.py`` pins it). That is under one frame at
29.97 fps and is left as it is.

**Clips.** Fine-tuning clips are ``window`` seconds at the pretrained network's frame rate, frame
size and sample rate (:class:`ActionClipFormat`): a random window, random crop and horizontal flip,
and optionally the audio moved by up to ``audio_jitter`` seconds against the frames. Test clips
are ``K`` windows per video with evenly spaced starts, centre-cropped. A video shorter than the
window is looped (frames and audio together) to fill it.
"""

from __future__ import annotations

import os
import re
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Protocol, Sequence

import numpy as np
import pandas as pd
import torch

from avlib import io
from avlib.data.cache import decode_all
from avlib.data.clips import ClipFormat, StepBatches, collate, crop_and_flip
from avlib.data.index import build_index

#: ``<data_root>/ucf101`` holds the dataset in the paper profile.
DATA_FOLDER = "ucf101"
LIST_FOLDER = "ucfTrainTestlist"
SPLITS = (1, 2, 3)
_NAME = re.compile(r"^(?P<folder>[^/\\]+)/v_(?P<cls>[^/\\]+)_g(?P<group>\d+)_c(?P<clip>\d+)\.avi$", re.IGNORECASE)


def dataset_root(data_root: str | os.PathLike) -> Path:
    """``<data_root>/ucf101``, where the paper profile expects UCF-101 as distributed."""
    return Path(data_root) / DATA_FOLDER


# ---------------------------------------------------------------------------------------------
# Split files


def _list_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing UCF-101 list file (expected UCF-101's {LIST_FOLDER}/ folder)")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def read_classes(root: str | os.PathLike) -> list[str]:
    """Class names by 0-based label, in the order of ``classInd.txt`` (label = line's number - 1)."""
    path = Path(root) / LIST_FOLDER / "classInd.txt"
    classes = []
    for number, line in enumerate(_list_lines(path), start=1):
        fields = line.split()
        if len(fields) != 2 or not fields[0].isdigit() or int(fields[0]) != number:
            raise ValueError(f"{path}: line {number} is {line!r}, expected '{number} <ClassName>'")
        classes.append(fields[1])
    if len(set(classes)) != len(classes):
        raise ValueError(f"{path}: a class is listed twice")
    return classes


def read_list(root: str | os.PathLike, name: str, classes: Sequence[str]) -> list[tuple[str, int]]:
    """``(Class/v_*.avi, 0-based label)`` of one list file; the label comes from the class folder.

    A train list's second column must agree with ``classInd.txt``; a test list has none.
    Raises ``ValueError`` naming the file and line otherwise.
    """
    path = Path(root) / LIST_FOLDER / name
    index = {class_name: label for label, class_name in enumerate(classes)}
    items = []
    for number, line in enumerate(_list_lines(path), start=1):
        fields = line.split()
        match = _NAME.match(fields[0].replace("\\", "/"))
        if match is None or len(fields) > 2:
            raise ValueError(f"{path}: line {number} is {line!r}, expected '<Class>/v_<Class>_gNN_cMM.avi [label]'")
        folder = match["folder"]
        if folder not in index:
            raise ValueError(f"{path}: line {number}: class folder {folder!r} is not in classInd.txt")
        if match["cls"].casefold() != folder.casefold():
            raise ValueError(f"{path}: line {number}: file {fields[0]!r} is not named after its folder {folder!r}")
        label = index[folder]
        if len(fields) == 2 and (not fields[1].isdigit() or int(fields[1]) != label + 1):
            raise ValueError(f"{path}: line {number} labels {fields[0]} {fields[1]!r}, but classInd.txt gives {folder} label {label + 1}")
        items.append((fields[0].replace("\\", "/"), label))
    return items


# ---------------------------------------------------------------------------------------------
# Probed splits


@dataclass(frozen=True)
class UCFVideo:
    """One video of a split: its list name, 0-based label and what probing found."""

    name: str  # "Class/v_Class_gNN_cMM.avi", as in the list files
    label: int
    info: io.VideoInfo

    @property
    def path(self) -> Path:
        return Path(self.info.path)

    @property
    def has_audio(self) -> bool:
        return self.info.has_audio

    @property
    def group(self) -> int:
        match = _NAME.match(self.name)
        return int(match["group"]) if match else 0


@dataclass
class UCF101Split:
    """Train and test videos of one split, probed, with the class names by label."""

    root: Path
    split: int
    classes: list[str]
    train: list[UCFVideo]
    test: list[UCFVideo]
    bad: list[tuple[str, str]] = field(default_factory=list)  # (list name, problem), skipped with skip_bad

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def audio_counts(self) -> pd.DataFrame:
        """Videos with and without an audio track in each part of the split (and skipped ones)."""
        rows = []
        for part, videos in (("train", self.train), ("test", self.test)):
            with_audio = sum(video.has_audio for video in videos)
            rows.append({"part": part, "videos": len(videos), "with audio": with_audio,
                         "without audio": len(videos) - with_audio,
                         "without audio %": 100 * (len(videos) - with_audio) / max(len(videos), 1)})
        frame = pd.DataFrame(rows)
        frame.attrs["skipped"] = len(self.bad)
        return frame


def load_split(root: str | os.PathLike, split: int = 1, *, skip_bad: bool = False, cache: bool = True) -> UCF101Split:
    """Read split ``split`` of the UCF-101 tree at ``root`` and probe its videos.

    Every video under ``root`` is probed once with :func:`avlib.io.probe` (cached in
    ``root/.avlib-index.json``, see :mod:`avlib.data.index`), so each knows its duration and
    whether it has an audio track. A listed video that is missing or unreadable raises its
    :class:`~avlib.io.MediaError`, naming the file, unless ``skip_bad``: then it is left out,
    counted in ``bad`` and logged.
    """
    if split not in SPLITS:
        raise ValueError(f"UCF-101 has splits {SPLITS}, not {split!r}")
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no UCF-101 folder here (the paper profile reads <data_root>/{DATA_FOLDER})")
    classes = read_classes(root)
    train_list = read_list(root, f"trainlist0{split}.txt", classes)
    test_list = read_list(root, f"testlist0{split}.txt", classes)
    overlap = {name for name, _ in train_list} & {name for name, _ in test_list}
    if overlap:
        raise ValueError(f"{root / LIST_FOLDER}: split {split} lists {len(overlap)} video(s) for both training and testing, "
                         f"e.g. {sorted(overlap)[0]}")
    index = build_index(root, skip_bad=skip_bad, cache=cache)
    probed = {Path(video.path).resolve(): video for video in index.videos}
    unreadable = {str((root / name).resolve()): problem for name, problem in index.bad}
    bad: list[tuple[str, str]] = []

    def resolve(items: list[tuple[str, int]]) -> list[UCFVideo]:
        videos = []
        for name, label in items:
            path = (root / name).resolve()
            info = probed.get(path)
            if info is None:
                problem = unreadable.get(str(path), "missing file")
                if not skip_bad:
                    raise io.MissingFileError(root / name, f"is listed in split {split} but {problem}")
                bad.append((name, problem))
                continue
            videos.append(UCFVideo(name, label, info))
        return videos

    return UCF101Split(root, split, classes, resolve(train_list), resolve(test_list), bad)


# ---------------------------------------------------------------------------------------------
# Clips


@dataclass(frozen=True, kw_only=True)
class ActionClipFormat(ClipFormat):
    """What the network sees of a video: a ``window`` at the pretrained network's rates.

    ``fps``, ``sample_rate``, ``size`` (frames squashed to size x size) and ``crop`` are those
    of pretraining (``Profile.pretrain.shift`` and its last stage's fps), and must be given;
    ``window`` is a fine-tuning choice (the official fine-tuning config leaves it undefined,
    docs/paper.md §6).
    """

    window: float  # seconds of video and audio per clip
    fps: float = field()  # field(): no default, where ClipFormat has the paper's
    sample_rate: int = field()
    size: int = field()
    crop: int = field()
    audio_jitter: float = 0.0  # in training, audio moved by up to this many seconds against the frames

    @property
    def num_frames(self) -> int:
        return io.num_frames_for(self.window, self.fps)

    @property
    def num_samples(self) -> int:
        return io.num_samples_for(self.num_frames, self.fps, self.sample_rate)

    def sample_of(self, frame: int) -> int:
        return int(round(frame / self.fps * self.sample_rate))


class VideoSource(Protocol):
    """Videos of a split as the network's clips; :class:`DecodedVideos` and :class:`FileVideos`."""

    videos: list[UCFVideo]
    config: ActionClipFormat

    def __len__(self) -> int: ...
    def num_frames(self, video: int) -> int: ...
    def window(self, video: int, first_frame: int, audio_shift: int = 0) -> tuple[np.ndarray, np.ndarray]: ...
    def windows(self, video: int, first_frames: Sequence[int]) -> list[tuple[np.ndarray, np.ndarray]]: ...


def _frames_at(fps: float, info: io.VideoInfo) -> int:
    """Whole frames of the video at ``fps`` (at least one)."""
    return max(1, int(info.usable_duration * fps - 1e-6))


def _looped(count: int, first: int, length: int) -> np.ndarray:
    """Indices ``first .. first + length`` wrapped into ``range(count)``: a short video is looped."""
    return (first + np.arange(length)) % count


def _cut(frames: np.ndarray, audio: np.ndarray, first_frame: int, audio_shift: int,
         config: ActionClipFormat) -> tuple[np.ndarray, np.ndarray]:
    """The window of ``config`` from a whole decoded video (T_v x S x S x 3, 2 x N_v), looping a short one.

    ``audio_shift`` (samples) moves the audio against the frames, kept inside the track when it fits.
    """
    count, samples = len(frames), audio.shape[1]
    clip_frames = frames[_looped(count, first_frame, config.num_frames)] if first_frame + config.num_frames > count \
        else frames[first_frame : first_frame + config.num_frames]
    start = config.sample_of(first_frame) + audio_shift
    if samples >= config.num_samples:
        start = min(max(start, 0), samples - config.num_samples)
        clip_audio = audio[:, start : start + config.num_samples]
    else:
        clip_audio = audio[:, _looped(samples, max(start, 0), config.num_samples)]
    return clip_frames, clip_audio


class DecodedVideos:
    """Whole videos decoded once at the clip format's rates and kept in memory (small datasets).

    Frames are squashed to ``size`` (uncropped); a video without audio gets a silent track.
    With ``cache_dir`` each decoded video is also kept on disk, keyed by the file's path, size
    and modification time and the decoding settings.
    """

    def __init__(self, videos: Sequence[UCFVideo], config: ActionClipFormat, cache_dir: str | os.PathLike | None = None,
                 progress: bool = False):
        self.videos = list(videos)
        self.config = config
        settings = dict(fps=config.fps, sample_rate=config.sample_rate, frame_size=config.size, kind="ucf101", version=1)
        self.frames, self.audio = decode_all(self.videos, lambda video: video.path, self._decode, settings, cache_dir,
                                             progress, "decoding videos")

    def _decode(self, video: UCFVideo) -> tuple[np.ndarray, np.ndarray]:
        config = self.config
        count = _frames_at(config.fps, video.info)
        clip = io.read_clip(video.path, 0.0, fps=config.fps, num_frames=count, size=config.size,
                            sample_rate=config.sample_rate, missing_audio="silence")
        return clip.frames, clip.audio

    def __len__(self) -> int:
        return len(self.videos)

    def num_frames(self, video: int) -> int:
        return len(self.frames[video])

    def window(self, video: int, first_frame: int, audio_shift: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Frames (T x S x S x 3 uint8, uncropped) and audio (2 x N float32) of the window from ``first_frame``."""
        return _cut(self.frames[video], self.audio[video], first_frame, audio_shift, self.config)

    def windows(self, video: int, first_frames: Sequence[int]) -> list[tuple[np.ndarray, np.ndarray]]:
        return [self.window(video, first) for first in first_frames]


class FileVideos:
    """Windows read from their files on demand (real UCF-101: 13 320 videos do not fit in memory)."""

    def __init__(self, videos: Sequence[UCFVideo], config: ActionClipFormat):
        self.videos = list(videos)
        self.config = config

    def __len__(self) -> int:
        return len(self.videos)

    def num_frames(self, video: int) -> int:
        return _frames_at(self.config.fps, self.videos[video].info)

    def window(self, video: int, first_frame: int, audio_shift: int = 0) -> tuple[np.ndarray, np.ndarray]:
        config, entry = self.config, self.videos[video]
        count = self.num_frames(video)
        if first_frame + config.num_frames > count:
            # A video shorter than the window: decode all of it and loop it.
            clip = io.read_clip(entry.path, 0.0, fps=config.fps, num_frames=count, size=config.size,
                                sample_rate=config.sample_rate, missing_audio="silence")
            return _cut(clip.frames, clip.audio, first_frame, audio_shift, config)
        clip = io.read_clip(entry.path, first_frame / config.fps, fps=config.fps, num_frames=config.num_frames,
                            size=config.size, sample_rate=config.sample_rate, missing_audio="silence")
        if not (audio_shift and entry.has_audio):
            return clip.frames, clip.audio
        # Moved audio stays inside the track, as in _cut.
        last = int(entry.info.usable_duration * config.sample_rate) - config.num_samples
        start = min(max(config.sample_of(first_frame) + audio_shift, 0), max(last, 0))
        return clip.frames, io.read_audio(entry.path, start / config.sample_rate, config.num_samples,
                                          sample_rate=config.sample_rate)

    def windows(self, video: int, first_frames: Sequence[int]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Several windows of one video, which is decoded once for all of them (test clips)."""
        config = self.config
        clip = io.read_clip(self.videos[video].path, 0.0, fps=config.fps, num_frames=self.num_frames(video),
                            size=config.size, sample_rate=config.sample_rate, missing_audio="silence")
        return [_cut(clip.frames, clip.audio, first, 0, config) for first in first_frames]


def evenly_spaced_starts(num_frames: int, window_frames: int, clips: int) -> list[int]:
    """First frames of ``clips`` evenly spaced windows, the first at 0 and the last at the end.

    One clip is the centre window. A video shorter than the window gives ``clips`` windows from 0.
    """
    if clips < 1:
        raise ValueError(f"clips per video must be at least 1, got {clips}")
    latest = max(num_frames - window_frames, 0)
    if clips == 1:
        return [latest // 2]
    return [int(round(start)) for start in np.linspace(0, latest, clips)]


def training_clip(source: VideoSource, video: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A random window of ``video``: random start, crop and flip, audio jittered. (T x C x C x 3, 2 x N)."""
    config = source.config
    first = int(rng.integers(max(source.num_frames(video) - config.num_frames, 0) + 1))
    jitter = int(round(config.audio_jitter * config.sample_rate))
    shift = int(rng.integers(-jitter, jitter + 1)) if jitter else 0
    frames, audio = source.window(video, first, shift)
    return crop_and_flip(frames, config, rng), audio


def evaluation_clips(source: VideoSource, video: int, clips: int) -> tuple[np.ndarray, np.ndarray]:
    """``clips`` evenly spaced centre-cropped windows of ``video``: (K x T x C x C x 3, K x 2 x N)."""
    config = source.config
    windows = source.windows(video, evenly_spaced_starts(source.num_frames(video), config.num_frames, clips))
    return (np.stack([crop_and_flip(frames, config, None) for frames, _ in windows]),
            np.stack([audio for _, audio in windows]))


def _batch(frames: list[np.ndarray], audio: list[np.ndarray], videos: Sequence[UCFVideo]) -> dict[str, torch.Tensor]:
    """frames (B, T, C, C, 3) uint8, audio (B, 2, N), has_audio (B,) bool and label (B,) int64."""
    return collate([{"frames": clip_frames, "audio": clip_audio, "has_audio": video.has_audio, "label": video.label}
                    for clip_frames, clip_audio, video in zip(frames, audio, videos)])


class ClipBatches(StepBatches):
    """Training batches as a function of the step: ``batches(step, rank, world_size)`` for
    :func:`avlib.train.fit`.

    Each step draws ``batch_size`` videos uniformly (with replacement) and one random clip of
    each from a generator seeded by (seed, step, rank), so a resumed run sees exactly the
    batches of an uninterrupted one (``TrainConfig.workers`` builds them ahead in DataLoader
    workers). A batch holds ``frames`` (B, T, C, C, 3) uint8, ``audio`` (B, 2, N), ``has_audio``
    (B,) and ``label`` (B,).
    """

    def __init__(self, source: VideoSource, batch_size: int, seed: int = 0):
        if len(source) == 0:
            raise ValueError("no training videos")
        self.source, self.batch_size, self.seed = source, batch_size, seed

    def make(self, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        chosen = [int(video) for video in rng.integers(len(self.source), size=self.batch_size)]
        clips = [training_clip(self.source, video, rng) for video in chosen]
        return _batch([frames for frames, _ in clips], [audio for _, audio in clips], [self.source.videos[v] for v in chosen])


def evaluation_batches(source: VideoSource, clips: int, batch_size: int, videos: Sequence[int] | None = None,
                       workers: int = 0) -> Iterator[tuple[list[int], dict[str, torch.Tensor]]]:
    """The test clips of ``videos`` (default all) in batches of about ``batch_size`` clips.

    Yields (the video index of each clip, batch); all ``clips`` windows of a video are in one
    batch. With ``workers`` > 0, threads decode up to ``2 * workers`` videos ahead.
    """
    videos = list(range(len(source))) if videos is None else list(videos)
    per_batch = max(1, batch_size // clips)
    groups = [videos[first : first + per_batch] for first in range(0, len(videos), per_batch)]

    def make(chosen: list[int]) -> tuple[list[int], dict[str, torch.Tensor]]:
        frames, audio, owners = [], [], []
        for video in chosen:
            video_frames, video_audio = evaluation_clips(source, video, clips)
            frames.extend(video_frames)
            audio.extend(video_audio)
            owners.extend([video] * clips)
        return owners, _batch(frames, audio, [source.videos[v] for v in owners])

    if workers <= 0:
        yield from map(make, groups)
        return
    with ThreadPoolExecutor(workers, thread_name_prefix="ucf101-test") as pool:
        pending: list[Future] = []
        for group in groups:
            pending.append(pool.submit(make, group))
            if len(pending) > 2 * workers:
                yield pending.pop(0).result()
        for future in pending:
            yield future.result()
