"""Alignment pairs for the self-supervised "shift" task (docs/paper.md §3).

Every video of a batch is used twice: its frames with **their own audio** (label 1, aligned)
and with audio from **another window of the same video** (label 0, shifted). The paper's
windows are 4.2 s long, from 10.1 s clips, shifted by 2.0-5.8 s by its text and by 2.17-5.87 s in the
official code (the ``paper`` profile uses the code's, :data:`OFFICIAL_SHIFT`); at smaller scales the shift
range keeps the same fraction of the window (:meth:`ShiftConfig.scaled`).

Windows start on the frame grid of the network's rate, so a window is ``num_frames`` frames
from frame ``f`` and the samples from ``round(f / fps * sample_rate)``.

Two sources give windows: :class:`DecodedClips` decodes each (short) clip once at the
network's rates and keeps it in memory (the synthetic profiles), :class:`FileClips` reads each
window from its file (real data, in DataLoader workers). Both have the same methods.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator, Protocol, Sequence

import numpy as np
import torch

from avlib import io
from avlib.data.cache import decode_all
from avlib.data.clips import ClipFormat, StepBatches, collate, crop_and_flip, draw_crop

#: The paper's window, seconds (``src/shift_params.py``).
PAPER_WINDOW = 4.2
#: The shift range the paper's text states, seconds (UNVERIFIED against the PDF; docs/paper.md §3).
PAPER_SHIFT = (2.0, 5.8)
#: The shifts the official code allows (``src/shift_dset.py``): two 125-frame windows of a 10.1 s clip that
#: overlap by at most ``max_intersection = 60`` frames, i.e. 65-176 frames at 29.97 fps (docs/paper.md §3).
OFFICIAL_SHIFT_FRAMES = (65, 176)
#: The same in seconds, 2.169-5.873 s; at 29.97 fps these give exactly 65 and 176 frames.
OFFICIAL_SHIFT = (OFFICIAL_SHIFT_FRAMES[0] / io.PAPER_FPS, OFFICIAL_SHIFT_FRAMES[1] / io.PAPER_FPS)


@dataclass(frozen=True)
class ShiftConfig(ClipFormat):
    """What the network sees in the alignment task, and how negatives are made: the common clip
    fields of :class:`~avlib.data.clips.ClipFormat` (fps, sample_rate, size, crop, flip) and these."""

    window: float = PAPER_WINDOW  # seconds of video and audio per example
    min_shift: float = PAPER_SHIFT[0]  # |offset| of the shifted audio, seconds
    max_shift: float = PAPER_SHIFT[1]

    @property
    def num_frames(self) -> int:
        return io.num_frames_for(self.window, self.fps)

    @property
    def num_samples(self) -> int:
        return io.num_samples_for(self.num_frames, self.fps, self.sample_rate)

    def scaled(self, window: float) -> "ShiftConfig":
        """The same task for a shorter window: the shift range keeps its ratio to the window."""
        ratio = window / self.window
        return replace(self, window=window, min_shift=self.min_shift * ratio, max_shift=self.max_shift * ratio)


class ClipSource(Protocol):
    def __len__(self) -> int: ...
    def num_frames(self, video: int) -> int: ...
    def window(self, video: int, first_frame: int, num_frames: int) -> tuple[np.ndarray, np.ndarray]: ...
    def audio(self, video: int, first_frame: int, num_frames: int) -> np.ndarray: ...


def _sample_offset(first_frame: int, num_frames: int, fps: float, sample_rate: int) -> int:
    return int(round(first_frame / fps * sample_rate))


class DecodedClips:
    """Whole clips decoded once at the network's rates, kept in memory; optionally cached on disk.

    Frames are squashed to ``size`` (uncropped, so random crops stay possible); audio is
    resampled to ``sample_rate``. The disk cache (``cache_dir``) is keyed by each file's path,
    size and modification time and the decoding settings.
    """

    def __init__(self, paths: Sequence[str | os.PathLike], config: ShiftConfig, cache_dir: str | os.PathLike | None = None,
                 progress: bool = False):
        self.paths = [Path(path) for path in paths]
        self.config = config
        settings = dict(fps=config.fps, sample_rate=config.sample_rate, frame_size=config.size, version=1)
        self.frames, self.audio_tracks = decode_all(self.paths, Path, self._decode, settings, cache_dir, progress,
                                                    "decoding clips")

    def _decode(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        info = io.probe(path)
        count = int(info.usable_duration * self.config.fps - 1e-6)
        if count < self.config.num_frames:
            raise io.WindowError(path, f"{info.usable_duration:.2f} s is shorter than the {self.config.window} s window")
        clip = io.read_clip(path, 0.0, fps=self.config.fps, num_frames=count, size=self.config.size,
                            sample_rate=self.config.sample_rate)
        return clip.frames, clip.audio

    def __len__(self) -> int:
        return len(self.paths)

    def num_frames(self, video: int) -> int:
        return len(self.frames[video])

    def window(self, video: int, first_frame: int, num_frames: int) -> tuple[np.ndarray, np.ndarray]:
        return self.frames[video][first_frame : first_frame + num_frames], self.audio(video, first_frame, num_frames)

    def audio(self, video: int, first_frame: int, num_frames: int) -> np.ndarray:
        start = _sample_offset(first_frame, num_frames, self.config.fps, self.config.sample_rate)
        samples = io.num_samples_for(num_frames, self.config.fps, self.config.sample_rate)
        track = self.audio_tracks[video]
        if 0 < start + samples - track.shape[1] <= 1:  # independent roundings of start and length
            start = track.shape[1] - samples
        if start + samples > track.shape[1]:
            raise io.WindowError(self.paths[video], f"audio window {start}+{samples} passes the decoded {track.shape[1]} samples")
        return track[:, start : start + samples]


class FileClips:
    """Windows read from their files on demand (real data; use DataLoader workers)."""

    def __init__(self, videos: Sequence[io.VideoInfo], config: ShiftConfig):
        self.videos = list(videos)
        self.config = config

    def __len__(self) -> int:
        return len(self.videos)

    def num_frames(self, video: int) -> int:
        return int(self.videos[video].usable_duration * self.config.fps - 1e-6)

    def window(self, video: int, first_frame: int, num_frames: int) -> tuple[np.ndarray, np.ndarray]:
        clip = io.read_clip(self.videos[video].path, first_frame / self.config.fps, fps=self.config.fps,
                            num_frames=num_frames, size=self.config.size, sample_rate=self.config.sample_rate)
        return clip.frames, clip.audio

    def audio(self, video: int, first_frame: int, num_frames: int) -> np.ndarray:
        samples = io.num_samples_for(num_frames, self.config.fps, self.config.sample_rate)
        return io.read_audio(self.videos[video].path, first_frame / self.config.fps, samples,
                             sample_rate=self.config.sample_rate)

    def pair(self, video: int, first_frame: int, shifted_frame: int, num_frames: int, crop: ClipFormat,
             rng: np.random.Generator | None, out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(frames, audio, shifted audio) of one alignment example, read in one pass over the open file: what
        :meth:`window`, :meth:`audio` and :func:`~avlib.data.clips.crop_and_flip` (``crop``, drawing from
        ``rng`` the same numbers) give, but each frame is cropped as it is converted, into ``out`` if given."""
        size = self.config.size
        offset, flipped = draw_crop(size, size, crop, rng)
        clip = io.read_clip(self.videos[video].path, first_frame / self.config.fps, fps=self.config.fps, num_frames=num_frames,
                            size=size, sample_rate=self.config.sample_rate, crop=crop.crop, crop_offset=offset, flip=flipped,
                            out=out, extra_audio=(shifted_frame / self.config.fps,))
        return clip.frames, clip.audio, clip.extra_audio[0]


class SeparateReads:
    """A :class:`FileClips` read without its one-pass ``pair``: an example's window (frames converted whole, then
    cropped and flipped) and its shifted audio come from separate reads, the path before ``pair``; kept so that
    the two can be compared (tests, ``bench/input_pipeline.py``)."""

    def __init__(self, clips: FileClips):
        self.clips = clips

    def __len__(self) -> int:
        return len(self.clips)

    def num_frames(self, video: int) -> int:
        return self.clips.num_frames(video)

    def window(self, video: int, first_frame: int, num_frames: int) -> tuple[np.ndarray, np.ndarray]:
        return self.clips.window(video, first_frame, num_frames)

    def audio(self, video: int, first_frame: int, num_frames: int) -> np.ndarray:
        return self.clips.audio(video, first_frame, num_frames)


def sample_pair_starts(rng: np.random.Generator, total_frames: int, config: ShiftConfig) -> tuple[int, int]:
    """(first frame of the window, first frame of the shifted audio), uniformly over valid pairs.

    The offset's magnitude lies in [min_shift, max_shift] seconds and both windows lie inside
    the clip; earlier and later shifts are both possible.
    """
    window = config.num_frames
    latest = total_frames - window
    low, high = int(np.ceil(config.min_shift * config.fps)), int(np.floor(config.max_shift * config.fps))
    if latest < low:
        raise ValueError(f"a clip of {total_frames} frames cannot hold a {window}-frame window and a "
                         f"{config.min_shift:.2f} s shift at {config.fps} fps")
    starts = np.arange(latest + 1)
    span = high - low + 1
    later = np.clip(latest - starts - low + 1, 0, span)  # valid offsets after each start
    earlier = np.clip(starts - low + 1, 0, span)  # and before it
    counts = later + earlier
    start = int(rng.choice(starts, p=counts / counts.sum()))
    pick = int(rng.integers(counts[start]))
    shifted = start + low + pick if pick < later[start] else start - low - (pick - later[start])
    return start, int(shifted)


@dataclass
class ShiftExample:
    frames: np.ndarray  # T x H x W x 3 uint8
    audio: np.ndarray  # C x N float32, aligned with the frames
    shifted_audio: np.ndarray  # C x N float32, from the same video, shifted
    shift: float  # seconds; negative = earlier audio


def make_example(source: ClipSource, video: int, rng: np.random.Generator, config: ShiftConfig, train: bool,
                 out: np.ndarray | None = None) -> ShiftExample:
    """One alignment example of ``video``; its cropped frames are written into ``out`` if given (a row of
    :func:`batch_frames`), else into a new array."""
    start, shifted_start = sample_pair_starts(rng, source.num_frames(video), config)
    frames, audio, shifted = _read_pair(source, video, start, shifted_start, config, rng if train else None, out)
    return ShiftExample(frames, audio, shifted, (shifted_start - start) / config.fps)


def _read_pair(source: ClipSource, video: int, start: int, shifted_start: int, config: ShiftConfig,
               rng: np.random.Generator | None, out: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cropped frames, audio and shifted audio of a pair: in one pass by a source that reads files (``pair``), else
    its window and audio, then :func:`crop_and_flip`; the same values and draws from ``rng`` either way."""
    if hasattr(source, "pair"):
        return source.pair(video, start, shifted_start, config.num_frames, config, rng, out)
    frames, audio = source.window(video, start, config.num_frames)
    shifted = source.audio(video, shifted_start, config.num_frames)
    return crop_and_flip(frames, config, rng, out), audio, shifted


def batch_frames(batch_size: int, config: ShiftConfig) -> np.ndarray:
    """An empty (B, T, crop, crop, 3) uint8 batch for :func:`make_example` to crop into, row by row."""
    return np.empty((batch_size, config.num_frames, config.crop, config.crop, 3), dtype=np.uint8)


class ShiftBatches(StepBatches):
    """Training batches as a function of the step: ``batches(step, rank, world_size)``.

    Each step draws its videos and windows from a generator seeded by (seed, step, rank), so a
    resumed run sees exactly the batches of an uninterrupted one, and each DDP rank its own.
    A batch holds ``frames`` (B, T, C, C, 3) uint8, ``audio`` and ``shifted_audio`` (B, 2, N)
    and ``shift`` (B,) seconds.
    """

    def __init__(self, source: ClipSource, config: ShiftConfig, batch_size: int, seed: int = 0):
        self.source, self.config, self.batch_size, self.seed = source, config, batch_size, seed

    def make(self, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        videos = rng.integers(len(self.source), size=self.batch_size)
        frames = batch_frames(self.batch_size, self.config)  # cropped straight into the batch: one copy per clip
        examples = [make_example(self.source, int(video), rng, self.config, train=True, out=frames[index])
                    for index, video in enumerate(videos)]
        return collate(examples, stacked={"frames": frames})


@dataclass(frozen=True)
class HeldOutPair:
    """One example of the held-out set: which video, where its window and its shifted audio start."""

    video: int
    start: int  # first frame of the window (frames and aligned audio)
    shifted_start: int  # first frame of the shifted audio


class EvaluationSet:
    """A fixed held-out set, decoded batch by batch: ``per_video`` pairs per video, centre crops, and a
    50/50 label per pair (:func:`evaluation_set`).

    Every random draw happens here, up front and cheaply (window starts need only each clip's length),
    in the order of the eager set this replaces; :meth:`batches` then decodes ``batch_size`` examples at
    a time, so memory does not grow with the number of held-out clips. ``len`` is the number of examples,
    ``labels`` their (N,) float labels.
    """

    def __init__(self, source: ClipSource, config: ShiftConfig, per_video: int = 1, seed: int = 0):
        if per_video < 1:
            raise ValueError(f"per_video must be at least 1, got {per_video}")
        self.source, self.config = source, config
        rng = np.random.default_rng([seed, 2**31 - 1])
        self.pairs = [HeldOutPair(video, *sample_pair_starts(rng, source.num_frames(video), config))
                      for video in range(len(source)) for _ in range(per_video)]
        self.labels = torch.from_numpy(rng.integers(0, 2, size=len(self.pairs))).float()

    def __len__(self) -> int:
        return len(self.pairs)

    def example(self, index: int, out: np.ndarray | None = None) -> ShiftExample:
        """Example ``index``, decoded (what :func:`make_example` gives for an evaluation pair); its centre crop
        written into ``out`` if given."""
        pair, config = self.pairs[index], self.config
        frames, audio, shifted = _read_pair(self.source, pair.video, pair.start, pair.shifted_start, config, None, out)
        return ShiftExample(frames, audio, shifted, (pair.shifted_start - pair.start) / config.fps)

    def batch(self, first: int, size: int) -> dict[str, torch.Tensor]:
        """Examples ``first`` .. ``first + size - 1`` as one batch with their ``label``."""
        if not 0 <= first < len(self):
            raise IndexError(f"example {first} is outside the held-out set of {len(self)}")
        indices = range(first, min(first + size, len(self)))
        frames = batch_frames(len(indices), self.config)
        batch = collate([self.example(index, frames[row]) for row, index in enumerate(indices)], stacked={"frames": frames})
        batch["label"] = self.labels[first : first + len(indices)]
        return batch

    def batches(self, batch_size: int = 16) -> Iterator[dict[str, torch.Tensor]]:
        """The whole set in order, ``batch_size`` examples at a time (the last batch may be smaller)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        for first in range(0, len(self), batch_size):
            yield self.batch(first, batch_size)


def evaluation_set(source: ClipSource, config: ShiftConfig, per_video: int = 1, seed: int = 0) -> EvaluationSet:
    """A fixed held-out set: ``per_video`` pairs per video, centre crops, and a 50/50 label per pair,
    streamed in batches (:class:`EvaluationSet`).

    ``label`` 1 means the example is to be scored with its aligned audio, 0 with the shifted
    one, as the official test protocol (``do_shift``); both audios are kept so that the
    pairwise score (aligned logit > shifted logit) can be reported too.
    """
    return EvaluationSet(source, config, per_video, seed)
