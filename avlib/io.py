"""Probe and decode clips: frames (PyAV, or decord) and audio (PyAV), in sync, at the paper's rates.

The paper's network sees a 4.2 s window: ``int(4.2 * 29.97) = 125`` frames and
``round(125 / 29.97 * 21000) = 87 588`` stereo samples (docs/paper.md §1).
:func:`read_clip` returns that window from any video:

- frames are decoded by PyAV (default) or decord and chosen **by timestamp**: output frame ``i`` is the source frame on screen at
  ``start + i / fps``, so 25, 30, 29.97 or variable-rate sources all map to the requested rate;
- frames come out **as displayed**: a rotation in the container's display matrix (phone videos) is
  applied before resizing and cropping, so width and height swap for 90 and 270 degrees;
- audio is decoded with PyAV, placed on the same clock by its timestamps, channel-mapped
  (mono duplicated, 5.1 and other layouts down-mixed at the level of FFmpeg's ``-ac 2`` into
  16-bit audio, never dropped; see :func:`downmix_matrix`) and resampled with soxr;
- time 0 is the first video frame's presentation time;
- a packet FFmpeg cannot decode is skipped, not fatal: the frame before it stays on screen (and
  damaged audio is silence), the damage is listed in ``Clip.concealed`` and announced by a
  :class:`ConcealedDamageWarning`. Only a window that cannot be filled raises.

Every problem with an input raises a :class:`MediaError` subclass that names the file.
"""

from __future__ import annotations

import math
import os
import sys
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal, NamedTuple, Sequence

import av
import numpy as np
import soxr
from av.stream import Discard
from av.video.reformatter import VideoReformatter

try:
    import decord
except ImportError:  # decord has no wheel for some platforms; PyAV serves frames there
    decord = None

#: Default frame decoder. PyAV, not decord: on the paper's clip (125 frames, 224 x 224, one
#: core) PyAV decodes about twice as fast as decord here (bench/decode.py); decord stays
#: selectable and is tested to give the same frames.
DEFAULT_FRAME_BACKEND = "pyav"

#: The paper's clip: 4.2 s at 29.97 fps, 21 kHz stereo (``src/shift_params.py``).
PAPER_FPS = 29.97
PAPER_SAMPLE_RATE = 21000
PAPER_DURATION = 4.2


class MediaError(Exception):
    """A media file cannot give what was asked. ``path`` and ``problem`` say which and why."""

    def __init__(self, path: str | os.PathLike, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem


class MissingFileError(MediaError, FileNotFoundError):
    """The file does not exist."""


class CorruptFileError(MediaError):
    """The file is not a readable video: corrupt, truncated, or not media at all."""


class NoVideoStreamError(MediaError):
    """The file has no video stream."""


class NoAudioError(MediaError):
    """The file has no audio track (pass ``missing_audio="silence"`` to get silence and a flag)."""


class WindowError(MediaError, ValueError):
    """The requested window does not fit in the file (past the end, or the clip is too short)."""


class ConcealedDamageWarning(UserWarning):
    """Damaged packets were skipped and concealed while reading a window; ``Clip.concealed`` lists them."""


class Concealment(NamedTuple):
    """One damaged piece of a window, at ``time`` s on the clip clock: a source video frame FFmpeg could not
    decode (or decoded with errors), or the start of damaged audio (a packet, or a gap a demuxer left)."""

    stream: Literal["video", "audio"]
    time: float


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` learns from a file's headers, without decoding it."""

    path: str
    duration: float  # seconds of video
    fps: float  # average frame rate of the video stream
    num_frames: int  # from the container if it says, else duration * fps
    width: int  # as displayed (after the rotation)
    height: int
    video_codec: str
    video_start: float  # presentation time of the first frame, seconds (the clip clock's zero)
    has_audio: bool
    sample_rate: int = 0
    channels: int = 0
    audio_codec: str = ""
    audio_duration: float = 0.0  # seconds of audio after the first video frame
    rotation: int = 0  # degrees counter-clockwise a player turns the stored frames: 0, 90, 180 or 270

    @property
    def usable_duration(self) -> float:
        """Seconds in which both frames and (if present) audio exist."""
        return min(self.duration, self.audio_duration) if self.has_audio else self.duration

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Clip:
    """A window of a video as the network sees it.

    ``frames``: T x H x W x 3 uint8 RGB. ``audio``: C x N float32 in [-1, 1].
    ``frame_times``: the presentation time (s, clip clock) of the source frame shown at each
    output frame. ``has_audio`` is False when the file had no audio and silence was returned.
    ``concealed``: damaged source frames and audio packets inside the window, skipped and
    concealed (empty for an undamaged file). ``extra_audio``: the audio windows asked for with
    ``read_clip(extra_audio=...)``, each C x N like ``audio``.
    """

    path: str
    frames: np.ndarray
    audio: np.ndarray
    fps: float
    sample_rate: int
    start: float
    frame_times: np.ndarray
    has_audio: bool = True
    concealed: list[Concealment] = field(default_factory=list)
    extra_audio: list[np.ndarray] = field(default_factory=list)

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def duration(self) -> float:
        """Seconds covered: ``num_frames / fps`` (the audio covers the same span)."""
        return self.num_frames / self.fps


def num_frames_for(duration: float, fps: float) -> int:
    """Frames in a window, as the paper counts them: ``int(duration * fps)`` (4.2 s -> 125)."""
    return int(duration * fps + 1e-9)


def num_samples_for(num_frames: int, fps: float, sample_rate: int) -> int:
    """Samples spanning ``num_frames`` frames: ``round(sample_rate / fps * num_frames)`` (-> 87 588)."""
    return int(round(sample_rate / fps * num_frames))


def _open(path: Path):
    if not path.exists():
        raise MissingFileError(path, "no such file")
    if path.is_dir():
        raise CorruptFileError(path, "is a directory, not a video file")
    try:
        return av.open(str(path), metadata_errors="ignore")
    except av.error.FFmpegError as error:
        raise CorruptFileError(path, f"cannot be opened as media ({error.strerror or error})") from error


def _video_stream(container, path: Path):
    if not container.streams.video:
        raise NoVideoStreamError(path, "has no video stream")
    return container.streams.video[0]


def _stream_seconds(stream, value) -> float | None:
    return None if value is None else float(value * stream.time_base)


def _demux_only(container, keep) -> None:
    """Make the demuxer skip every stream but ``keep``: it then neither reads nor returns their packets."""
    for stream in container.streams:
        stream.discard = Discard.default if stream.index == keep.index else Discard.all


class _Decoded:
    """A stream's frames as ``container.decode`` yields them, except that a packet FFmpeg cannot decode is
    skipped rather than fatal (FFmpeg conceals what it can in the frames that follow).

    ``lost``: timestamps (stream ticks) of packets that never came out as a frame although a later one
    did; packets before the first frame count only if ``count_leading`` (decoding from the file's start:
    after a seek, an open GOP's leading frames are dropped by design). ``corrupt``: timestamps of frames
    FFmpeg marked as concealed, and of the frames after a lost or corrupt one up to the next keyframe
    (they are predicted from it, so FFmpeg's concealment shows in them).
    """

    def __init__(self, container, stream, count_leading: bool = False):
        self.container, self.stream, self.count_leading = container, stream, count_leading
        self.lost: list[int] = []
        self.corrupt: list[int] = []

    def __iter__(self):
        pending: list[int] = []  # timestamps sent to the decoder and not yet seen as a frame
        started = self.count_leading
        tainted = False  # a frame since the last keyframe was lost or corrupt
        for packet in self.container.demux(self.stream):
            if packet.pts is not None:
                pending.append(packet.pts)
            try:
                frames = packet.decode()
            except av.error.FFmpegError:  # its frame never comes out: counted as lost when a later one does
                continue
            for frame in frames:
                pts = frame.pts
                if pts is not None:
                    # frames leave the decoder in timestamp order: any earlier packet still pending is lost
                    lost = len(self.lost)
                    if started:
                        self.lost.extend(earlier for earlier in pending if earlier < pts)
                    pending = [later for later in pending if later > pts]
                    started = True
                    tainted = not frame.key_frame and (tainted or len(self.lost) > lost)
                    if frame.is_corrupt or tainted:
                        self.corrupt.append(pts)
                        tainted = True
                yield frame

    def damaged_times(self, offset: float) -> list[float]:
        """Seconds on the clip clock (``offset``: the video's start) of every lost or corrupt frame."""
        base = float(self.stream.time_base)
        return sorted({float(pts * base - offset) for pts in self.lost + self.corrupt})


def _seek(container, stream, seconds: float) -> None:
    """Seek ``stream`` to the keyframe at or before ``seconds``; to the start if a damaged index refuses."""
    try:
        container.seek(max(0, int(seconds / stream.time_base)), stream=stream, backward=True)
    except av.error.FFmpegError:
        container.seek(0, stream=stream)


def _rotation_of(frame) -> int:
    """The frame's display-matrix rotation, counter-clockwise, snapped to 0, 90, 180 or 270 degrees."""
    return int(round(frame.rotation / 90.0)) % 4 * 90


def _display_rotation(container, vstream) -> int:
    """Rotation a player applies to the stream, read from its first decodable frame (PyAV exposes the
    display matrix only on decoded frames); 0 when none decodes in the first packets."""
    _demux_only(container, vstream)
    try:
        for count, packet in enumerate(container.demux(vstream)):
            try:
                frames = packet.decode()
            except av.error.FFmpegError:  # a damaged packet: try the next ones
                frames = []
            if frames:
                return _rotation_of(frames[0])
            if count >= 256:
                break
    except av.error.FFmpegError:
        pass
    return 0


def upright(frames: np.ndarray, rotation: int) -> np.ndarray:
    """Stored frames (... x H x W x C, e.g. from PyAV directly) turned as a player shows them: ``rotation``
    degrees counter-clockwise, as :attr:`VideoInfo.rotation` gives it. A view, not a copy."""
    if rotation not in (0, 90, 180, 270):
        raise ValueError(f"rotation must be 0, 90, 180 or 270 degrees, got {rotation!r}")
    return np.rot90(frames, rotation // 90, axes=(-3, -2)) if rotation else frames


def _displayed(width: int, height: int, rotation: int) -> tuple[int, int]:
    """(width, height) of a ``width`` x ``height`` stored frame once turned by ``rotation`` degrees."""
    return (height, width) if rotation in (90, 270) else (width, height)


def _probe_container(container, path: Path) -> VideoInfo:
    vstream = _video_stream(container, path)
    rate = vstream.average_rate or vstream.guessed_rate or vstream.base_rate
    if not rate or not vstream.codec_context.width:
        raise CorruptFileError(path, "video stream has no frame rate or size")
    fps = float(rate)
    video_start = _stream_seconds(vstream, vstream.start_time) or 0.0
    duration = _stream_seconds(vstream, vstream.duration)
    if duration is None:
        if container.duration is None:
            raise CorruptFileError(path, "neither the video stream nor the container states a duration")
        duration = container.duration / av.time_base - video_start
    num_frames = int(vstream.frames) or int(round(duration * fps))
    info = dict(
        path=str(path), duration=duration, fps=fps, num_frames=num_frames,
        width=vstream.codec_context.width, height=vstream.codec_context.height,
        video_codec=vstream.codec_context.name, video_start=video_start, has_audio=False,
    )
    if container.streams.audio:
        astream = container.streams.audio[0]
        audio_start = _stream_seconds(astream, astream.start_time) or 0.0
        audio_duration = _stream_seconds(astream, astream.duration)
        if audio_duration is None:
            audio_duration = container.duration / av.time_base - audio_start if container.duration else duration
        info.update(
            has_audio=True, sample_rate=int(astream.codec_context.sample_rate),
            channels=int(astream.codec_context.channels), audio_codec=astream.codec_context.name,
            audio_duration=audio_start + audio_duration - video_start,
        )
    return VideoInfo(**info)


def probe(path: str | os.PathLike) -> VideoInfo:
    """Duration, frame rate, frame count, size as displayed, rotation and audio format of a video.

    Everything but the rotation comes from the headers; the rotation from the first decoded frame
    (docs/media.md).
    """
    path = Path(path)
    with _open(path) as container:
        info = _probe_container(container, path)
        if container.format.name == "avi":  # no display matrix in AVI: spare the decoding
            return info
        return _with_rotation(info, _display_rotation(container, container.streams.video[0]))


def _with_rotation(info: VideoInfo, rotation: int) -> VideoInfo:
    width, height = _displayed(info.width, info.height, rotation)
    return VideoInfo(**{**info.to_dict(), "width": width, "height": height, "rotation": rotation})


# ----------------------------------------------------------------------------- frames

ResizeMode = Literal["squash", "short_side"]


def output_size(width: int, height: int, size: int | tuple[int, int] | None, resize: ResizeMode) -> tuple[int, int]:
    """(height, width) after resizing a ``width`` x ``height`` frame.

    ``squash``: exactly ``size`` (H, W), aspect ratio not kept, as the paper's
    ``ffmpeg -vf scale=256:256``. ``short_side``: the short side becomes ``size``, aspect kept.
    """
    if size is None:
        return height, width
    if resize == "squash":
        return (size, size) if isinstance(size, int) else tuple(size)
    if resize == "short_side":
        short = size if isinstance(size, int) else min(size)
        scale = short / min(width, height)
        return max(short, int(round(height * scale))), max(short, int(round(width * scale)))
    raise ValueError(f"resize must be 'squash' or 'short_side', got {resize!r}")


def crop_box(height: int, width: int, crop: int | tuple[int, int] | None,
             offset: tuple[int, int] | None = None) -> tuple[int, int, int, int]:
    """(top, left, crop height, crop width) of ``crop`` in ``height`` x ``width`` frames (the whole frame if
    ``crop`` is None); ``offset`` (y, x) of the top-left corner, centre if None. Raises ValueError if it does not fit."""
    if crop is None:
        return 0, 0, height, width
    crop_h, crop_w = (crop, crop) if isinstance(crop, int) else crop
    if crop_h > height or crop_w > width:
        raise ValueError(f"crop {crop_h}x{crop_w} is larger than the frames {height}x{width}")
    y, x = offset if offset is not None else ((height - crop_h) // 2, (width - crop_w) // 2)
    if not (0 <= y <= height - crop_h and 0 <= x <= width - crop_w):
        raise ValueError(f"crop offset {(y, x)} puts a {crop_h}x{crop_w} crop outside {height}x{width} frames")
    return y, x, crop_h, crop_w


def crop_frames(frames: np.ndarray, crop: int | tuple[int, int] | None, offset: tuple[int, int] | None = None) -> np.ndarray:
    """Crop T x H x W x 3 frames to ``crop``; ``offset`` (y, x) of the top-left corner, centre if None."""
    if crop is None:
        return frames
    y, x, crop_h, crop_w = crop_box(*frames.shape[1:3], crop, offset)
    return frames[:, y : y + crop_h, x : x + crop_w]


def place_frame(target: np.ndarray, image: np.ndarray, flip: bool) -> None:
    """Copy one H x W x 3 ``image`` (a view, e.g. a crop) into C-contiguous ``target``, mirrored left-right if ``flip``."""
    if flip and image.flags.writeable and min(image.strides) >= 0:
        import torch  # only where clips are flipped (training), where torch is loaded already

        # torch's flip then copy: several times faster than numpy's copy of a negative-stride view, as exact
        torch.from_numpy(target).copy_(torch.from_numpy(image).flip(1))
    else:  # numpy's copy (torch takes no negative strides: a rotated video's turned frames)
        np.copyto(target, image[:, ::-1] if flip else image)


def _select(source_times: np.ndarray, targets: np.ndarray, frame_period: float) -> np.ndarray:
    """Index of the source frame on screen at each target time (the last one shown at or before it)."""
    # A tolerance of 1 % of a source frame absorbs float rounding of rational timestamps.
    index = np.searchsorted(source_times, targets + 0.01 * frame_period, side="right") - 1
    return np.clip(index, 0, len(source_times) - 1)


def _frames_decord(path: Path, targets: np.ndarray, out_hw: tuple[int, int], native_hw: tuple[int, int], threads: int):
    height, width = out_hw
    resize = (height, width) != native_hw
    try:
        reader = decord.VideoReader(str(path), ctx=decord.cpu(0), width=width if resize else -1,
                                    height=height if resize else -1, num_threads=threads)
        stamps = reader.get_frame_timestamp(range(len(reader)))
    except decord.DECORDError as error:
        raise CorruptFileError(path, f"decord cannot decode the video stream ({str(error).splitlines()[0]})") from error
    if len(stamps) == 0:
        raise CorruptFileError(path, "video stream holds no decodable frames")
    starts = stamps[:, 0].astype(np.float64) - float(stamps[0, 0])
    period = float(np.median(np.diff(stamps[:, 0]))) if len(stamps) > 1 else float(stamps[0, 1] - stamps[0, 0])
    end = starts[-1] + period
    _check_window(path, targets, end, period)
    index = _select(starts, targets, period)
    try:
        frames = reader.get_batch(index.tolist()).asnumpy()
    except decord.DECORDError as error:
        raise CorruptFileError(path, f"frames {index[0]}-{index[-1]} cannot be decoded, the file may be truncated") from error
    finally:
        del reader
    return frames, starts[index]


def _check_window(path: Path, targets: np.ndarray, video_end: float, period: float) -> None:
    if targets[0] < -1e-9:
        raise WindowError(path, f"window starts at {targets[0]:.3f} s, before the video")
    if targets[-1] >= video_end + 0.5 * period:
        raise WindowError(path, f"window needs frames up to {targets[-1]:.3f} s but the video ends at {video_end:.3f} s")


def decoder_threads() -> int:
    """FFmpeg's video decoding threads for this process: in a torch DataLoader worker, its share of the
    cores the process may run on (at least 1), since FFmpeg's automatic count starts a thread per core in
    every worker; elsewhere 0, FFmpeg's automatic count. The decoded frames are the same either way."""
    data = sys.modules.get("torch.utils.data")  # loaded in any DataLoader worker; not imported here for others
    worker = data.get_worker_info() if data is not None else None
    if worker is None:
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // worker.num_workers)


def _frames_pyav(container, path: Path, info: VideoInfo, targets: np.ndarray, size, resize: ResizeMode, threads: int = 1,
                 crop=None, crop_offset=None, flip: bool = False, out: np.ndarray | None = None):
    """Decode from the keyframe before the window, converting only the frames that are shown.

    Each shown frame is converted once, by one scaler kept for the whole clip (a scaler per
    frame, as ``frame.to_ndarray(format=...)`` makes, costs about a tenth of the decoding), and
    its crop (``crop``, ``crop_offset``, mirrored if ``flip``) written straight into the output
    array (``out`` if given), turned as displayed. Returns frames, their source times and the
    times of damaged source frames the window would have shown.
    """
    vstream = container.streams.video[0]
    if not vstream.codec_context.is_open:  # open already when the rotation was read first (decord's fallback)
        vstream.thread_type = "AUTO"
        vstream.codec_context.thread_count = decoder_threads()
    _demux_only(container, vstream)
    period = 1.0 / info.fps
    _check_window(path, targets, info.duration, period)
    window = _FrameWindow(targets, period, info, size, resize, threads, crop, crop_offset, flip, out)
    try:
        # Seek to the keyframe at or before the first frame shown (half a frame early against
        # timestamp rounding); seeking further back would decode a whole extra GOP at times.
        _seek(container, vstream, targets[0] - 0.5 * period + info.video_start)
        decoded = _Decoded(container, vstream)
        shown = window.fill(decoded)
        if shown is None:  # the seek overshot the window (no usable index) or its keyframe is damaged: from the start
            container.seek(0, stream=vstream)
            decoded = _Decoded(container, vstream, count_leading=True)
            shown = window.fill(decoded)
    except av.error.FFmpegError as error:
        raise CorruptFileError(path, f"video decoding failed ({error.strerror or error}), the file may be corrupt") from error
    shown = shown or 0
    damaged = window.shown_of(decoded.damaged_times(info.video_start))
    if shown < len(targets):
        why = f"{len(damaged)} damaged frame(s) in it" if damaged else "the file may be truncated"
        raise CorruptFileError(path, f"only {shown} of {len(targets)} frames could be decoded; {why}")
    return window.frames, window.times, damaged


class _FrameWindow:
    """The output frames of one window, filled with the decoded frame on screen at each target time.

    The array is made (or ``out`` checked) when the first frame arrives, whose display matrix gives the
    rotation; the size asked for (``size``, ``resize``) and the crop apply to the frame as displayed.
    """

    def __init__(self, targets: np.ndarray, period: float, info: VideoInfo, size, resize: ResizeMode, threads: int,
                 crop=None, crop_offset=None, flip: bool = False, out: np.ndarray | None = None):
        self.targets, self.period, self.info, self.size, self.resize, self.threads = targets, period, info, size, resize, threads
        self.crop, self.crop_offset, self.flip, self.out = crop, crop_offset, flip, out
        # Compare against the targets shifted by the rounding tolerance, as plain floats.
        self.limits = (targets + 0.01 * period).tolist()
        self.frames: np.ndarray | None = None
        self.times = np.empty(len(targets), dtype=np.float64)
        self.rotation = 0

    def _start(self, frame) -> None:
        self.rotation = _rotation_of(frame)
        width, height = _displayed(self.info.width, self.info.height, self.rotation)
        out_hw = output_size(width, height, self.size, self.resize)
        # the scaler works on the stored frame: its size is the output's, turned back
        self.scaled_hw = out_hw if self.rotation in (0, 180) else out_hw[::-1]
        y, x, crop_h, crop_w = crop_box(*out_hw, self.crop, self.crop_offset)
        self.rows, self.columns = slice(y, y + crop_h), slice(x, x + crop_w)
        shape = (len(self.targets), crop_h, crop_w, 3)
        if self.out is not None:
            if self.out.shape != shape or self.out.dtype != np.uint8 or not self.out.flags.c_contiguous:
                raise ValueError(f"out must be a C-contiguous uint8 array of shape {shape}, got {self.out.dtype} {self.out.shape}")
            self.frames = self.out
        elif self.frames is None or self.frames.shape != shape:
            self.frames = np.empty(shape, dtype=np.uint8)

    def fill(self, decoded: _Decoded) -> int | None:
        """Fill from ``decoded``; returns how many targets were filled, or None if decoding began after
        the first target (unless frames were lost before it: then the first frame stands in for them).

        A frame is on screen from its own timestamp until the next frame's, so each frame is
        converted (once, however many targets show it) when its successor arrives.
        """
        total, limits, video_start = len(self.targets), self.limits, self.info.video_start
        scaler = VideoReformatter()
        filled = 0
        previous, previous_time = None, 0.0

        def emit(until: float) -> int:
            last = filled
            while last < total and limits[last] < until:
                last += 1
            if last > filled:
                height, width = self.scaled_hw
                image = scaler.reformat(previous, width=width, height=height, format="rgb24", interpolation="BICUBIC",
                                        threads=self.threads).to_ndarray()
                place_frame(self.frames[filled], upright(image, self.rotation)[self.rows, self.columns], self.flip)
                if last > filled + 1:  # a frame shown at several targets: copies of the first
                    self.frames[filled + 1 : last] = self.frames[filled]
                self.times[filled:last] = previous_time
            return last

        for frame in decoded:
            frame_time = frame.time
            if frame_time is None:
                continue
            frame_time -= video_start
            if previous is None:
                if frame_time > limits[0] and not (decoded.count_leading and decoded.lost):
                    return None
                self._start(frame)
            else:
                filled = emit(frame_time)
                if filled == total:
                    return filled
            previous, previous_time = frame, frame_time
        if previous is not None:
            filled = emit(previous_time + 1.5 * self.period)
        return filled

    def shown_of(self, times: list[float]) -> list[float]:
        """Those of ``times`` (source frames) that some target would have shown (within one source frame)."""
        limits = np.asarray(self.limits)
        index = np.searchsorted(limits, times, side="left")
        return [time for time, at in zip(times, index) if at < len(limits) and limits[at] < time + self.period]


# ----------------------------------------------------------------------------- audio

# libswresample's down-mix weights to (left, right), its defaults: centre and surround at -3 dB, LFE left out.
_CENTRE = 1 / math.sqrt(2)
_DOWNMIX = {
    "FL": (1.0, 0.0), "FR": (0.0, 1.0), "FC": (_CENTRE, _CENTRE), "LFE": (0.0, 0.0),
    "BL": (_CENTRE, 0.0), "BR": (0.0, _CENTRE), "SL": (_CENTRE, 0.0), "SR": (0.0, _CENTRE),
    "FLC": (1.0, 0.0), "FRC": (0.0, 1.0), "BC": (0.5, 0.5), "TC": (0.5, 0.5),
}


def downmix_matrix(channel_names: list[str]) -> np.ndarray:
    """2 x C matrix mapping named channels to stereo: FFmpeg's, scaled as FFmpeg scales it for 16-bit output
    (by the largest row sum, when above 1) so that a full-scale input cannot clip. docs/media.md says why."""
    if channel_names == ["FC"] or len(channel_names) == 1:
        return np.ones((2, 1), dtype=np.float32)
    unknown = [name for name in channel_names if name not in _DOWNMIX]
    if unknown:
        # Unnamed layouts (e.g. 4 unknown channels): split evenly between left and right.
        half = len(channel_names) // 2
        matrix = np.zeros((2, len(channel_names)), dtype=np.float32)
        matrix[0, :half] = 1.0
        matrix[1, half:] = 1.0
    else:
        matrix = np.array([_DOWNMIX[name] for name in channel_names], dtype=np.float32).T
        largest = matrix.sum(axis=1).max()
        return matrix / largest if largest > 1 else matrix
    return matrix / matrix.sum(axis=1, keepdims=True)


def map_channels(audio: np.ndarray, channel_names: list[str], channels: int) -> np.ndarray:
    """Map C_in x N audio to ``channels`` (1 or 2): mono is duplicated, surround is down-mixed."""
    if channels not in (1, 2):
        raise ValueError(f"channels must be 1 or 2, got {channels}")
    if audio.shape[0] == 2 and len(channel_names) == 2:
        stereo = audio
    else:
        stereo = downmix_matrix(channel_names) @ audio
    return stereo.mean(axis=0, keepdims=True) if channels == 1 else stereo


#: Decoded sample formats: numpy type, full scale, and the value of silence.
_SAMPLE_FORMATS = {
    "flt": (np.float32, 1.0, 0.0), "fltp": (np.float32, 1.0, 0.0), "dbl": (np.float64, 1.0, 0.0), "dblp": (np.float64, 1.0, 0.0),
    "s16": (np.int16, 32768.0, 0.0), "s16p": (np.int16, 32768.0, 0.0), "s32": (np.int32, 2.0**31, 0.0), "s32p": (np.int32, 2.0**31, 0.0),
    "u8": (np.uint8, 128.0, 128.0), "u8p": (np.uint8, 128.0, 128.0),
}


def _frame_channels(frame, dtype, scale: float, zero: float) -> list[np.ndarray]:
    """One decoded audio frame as one float32 array per channel, in [-1, 1].

    Float32 samples are views on the frame's planes (no copy, no stacking): the caller copies
    them once, into its buffer. Other formats are converted.
    """
    count = frame.samples
    if frame.format.is_planar:
        channels = [np.frombuffer(plane, dtype, count) for plane in frame.planes]
    else:
        width = len(frame.layout.channels)
        packed = np.frombuffer(frame.planes[0], dtype, count * width).reshape(count, width)
        channels = [packed[:, channel] for channel in range(width)]
    if dtype is np.float32:
        return channels
    if zero:
        return [(channel.astype(np.float32) - zero) / scale for channel in channels]
    return [channel.astype(np.float32) / scale for channel in channels]


def _decode_audio(container, path: Path, info: VideoInfo, start: float, stop: float,
                  required: tuple[float, float] | None = None) -> tuple[np.ndarray, list[str], int, list[float]]:
    """Native-rate samples covering [start, stop) on the clip clock, placed by their timestamps.

    Samples the track does not have are zeros. Within ``required`` (default: all of it) at most
    one video frame's or two codec frames' worth may be missing, whichever is more (an AAC track
    decodes up to ~2 frames short of what its header states); more raises :class:`WindowError`.
    A packet the decoder rejects is skipped: its samples stay silent, do not count as missing, and
    its time (clip clock) is returned in the last item when it lies within ``required``; so is a hole
    longer than a codec frame between decoded samples (packets a demuxer skipped while resyncing).
    """
    astream = container.streams.audio[0]
    rate = int(astream.codec_context.sample_rate)
    if rate <= 0:
        raise CorruptFileError(path, f"audio track states an invalid sample rate ({rate})")
    first = int(math.floor((start + info.video_start) * rate))
    total = int(math.ceil((stop - start) * rate))
    buffer = None
    names: list[str] = []
    filled = np.zeros(total, dtype=bool)
    damaged: list[int] = []  # first sample (track clock) of each packet the decoder rejected
    samples_per_tick = float(astream.time_base) * rate  # float, not Fraction: this runs per codec frame

    def decoded():
        for packet in container.demux(astream):
            try:
                frames = packet.decode()
            except av.error.FFmpegError:  # a damaged packet: its samples stay silent, decoding goes on
                if packet.pts is not None:
                    damaged.append(int(round(packet.pts * samples_per_tick)))
                    lo = damaged[-1] - first
                    filled[max(lo, 0) : max(lo + int(round((packet.duration or 0) * samples_per_tick)), 0)] = True
                continue
            yield from frames

    _demux_only(container, astream)
    try:
        _seek(container, astream, start + info.video_start - 0.1)
        restarted = False
        for frame in decoded():
            if frame.pts is None:
                continue
            frame_first = int(round(frame.pts * samples_per_tick))
            if buffer is None and frame_first > first and not restarted and start + info.video_start > 0.1:
                container.seek(0, stream=astream)  # the generator reads on from the new position
                restarted = True
                continue
            if buffer is None:
                names = [channel.name for channel in frame.layout.channels]
                if frame.format.name not in _SAMPLE_FORMATS:
                    raise CorruptFileError(path, f"audio sample format {frame.format.name!r} is not supported")
                sample_format = _SAMPLE_FORMATS[frame.format.name]
                buffer = np.zeros((len(names), total), dtype=np.float32)
            lo = frame_first - first
            if lo >= total:
                break
            hi = lo + frame.samples
            if hi > 0:  # the frame reaches into the window: copy its part, channel by channel
                a, b = max(lo, 0), min(hi, total)
                for row, samples in zip(buffer, _frame_channels(frame, *sample_format)):
                    row[a:b] = samples[a - lo : b - lo]
                filled[a:b] = True
    except av.error.FFmpegError as error:
        raise CorruptFileError(path, f"audio decoding failed ({error.strerror or error}), the file may be corrupt") from error
    if buffer is None:
        raise CorruptFileError(path, "audio track holds no decodable samples")
    for hole_start, hole_end in _holes(filled, astream.codec_context.frame_size or 1024):
        damaged.append(first + hole_start)
        filled[hole_start:hole_end] = True
    lo, hi = required if required is not None else (start, stop)
    needed = filled[max(0, int((lo - start) * rate)) : int(math.ceil((hi - start) * rate))]
    missing = needed.size - int(needed.sum())
    if missing > max(rate / info.fps, 2 * (astream.codec_context.frame_size or 1024)):
        raise WindowError(path, f"audio covers only {(needed.size - missing) / rate:.3f} s of the {needed.size / rate:.3f} s "
                                f"window starting at {lo:.3f} s")
    damaged_times = sorted({float(sample / rate - info.video_start) for sample in damaged})
    return buffer, names, rate, [time for time in damaged_times if lo - 0.1 <= time < hi]


def _holes(filled: np.ndarray, longer_than: int) -> list[tuple[int, int]]:
    """[start, end) of each run of False longer than ``longer_than`` with True on both sides."""
    inside = np.flatnonzero(filled)
    if inside.size == 0:
        return []
    edges = np.diff(np.concatenate([[0], (~filled[inside[0] : inside[-1] + 1]).astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return [(inside[0] + a, inside[0] + b) for a, b in zip(starts.tolist(), ends.tolist()) if b - a > longer_than]


def _audio_window(container, path: Path, info: VideoInfo, start: float, samples: int, sample_rate: int,
                  channels: int) -> tuple[np.ndarray, list[float]]:
    """``samples`` samples at ``sample_rate`` from ``start`` (clip clock), channel-mapped, in [-1, 1];
    and the times of damaged packets in the window (their samples are silent)."""
    margin = 0.05  # resampler context on both sides, cut away below
    first = max(0.0, start - margin)
    stop = start + samples / sample_rate
    native, names, native_rate, damaged = _decode_audio(container, path, info, first, stop + margin, required=(start, stop))
    mapped = map_channels(native, names, channels)
    # at the same rate soxr returns its input: skipped (a prepared tree stores the network's rate, avlib.data.prepare)
    resampled = mapped if native_rate == sample_rate else soxr.resample(mapped.T, native_rate, sample_rate, quality="HQ").T
    offset = int(round((start - first) * sample_rate))
    audio = np.ascontiguousarray(resampled[:, offset : offset + samples], dtype=np.float32)
    if audio.shape[1] < samples:
        audio = np.pad(audio, ((0, 0), (0, samples - audio.shape[1])))
    return np.clip(audio, -1.0, 1.0, out=audio), damaged


def _warn_concealed(path: Path, concealed: list[Concealment]) -> None:
    if not concealed:
        return
    parts = []
    for stream, what in (("video", "damaged video frame(s)"), ("audio", "stretch(es) of damaged audio")):
        times = [item.time for item in concealed if item.stream == stream]
        if times:
            shown = ", ".join(f"{time:.3f}" for time in times[:8]) + (", ..." if len(times) > 8 else "")
            parts.append(f"{len(times)} {what} at {shown} s")
    warnings.warn(ConcealedDamageWarning(f"{path}: concealed {' and '.join(parts)} (the frame before stays on screen, "
                                         "damaged sound is silent)"), stacklevel=3)


def read_audio(path: str | os.PathLike, start: float, num_samples: int, *, sample_rate: int = PAPER_SAMPLE_RATE,
               channels: int = 2) -> np.ndarray:
    """Only the audio of a window: ``channels`` x ``num_samples`` float32 from ``start`` (clip clock).

    Used for the shifted audio of an alignment pair, whose frames are not needed.
    """
    path = Path(path)
    if start < 0:
        raise WindowError(path, f"window starts at {start:.3f} s, before the video")
    with _open(path) as container:
        info = _probe_container(container, path)
        if not info.has_audio:
            raise NoAudioError(path, "has no audio track")
        if start + num_samples / sample_rate > info.audio_duration + 1.0 / info.fps:
            raise WindowError(path, f"audio window up to {start + num_samples / sample_rate:.3f} s passes the end "
                                    f"of the audio at {info.audio_duration:.3f} s")
        audio, damaged = _audio_window(container, path, info, start, num_samples, sample_rate, channels)
    _warn_concealed(path, [Concealment("audio", time) for time in damaged])
    return audio


def read_clip(
    path: str | os.PathLike,
    start: float = 0.0,
    duration: float = PAPER_DURATION,
    *,
    fps: float = PAPER_FPS,
    size: int | tuple[int, int] | None = None,
    resize: ResizeMode = "squash",
    crop: int | tuple[int, int] | None = None,
    crop_offset: tuple[int, int] | None = None,
    sample_rate: int = PAPER_SAMPLE_RATE,
    channels: int = 2,
    num_frames: int | None = None,
    missing_audio: Literal["raise", "silence"] = "raise",
    frame_backend: Literal["decord", "pyav"] = DEFAULT_FRAME_BACKEND,
    threads: int = 1,
    flip: bool = False,
    out: np.ndarray | None = None,
    extra_audio: Sequence[float] = (),
) -> Clip:
    """Read ``duration`` seconds from ``start`` at ``fps`` frames/s and ``sample_rate`` Hz.

    The window holds ``num_frames_for(duration, fps)`` frames (or ``num_frames``) and
    ``num_samples_for(num_frames, fps, sample_rate)`` samples. The paper's setting is
    ``read_clip(path, start, 4.2, size=256, crop=224)``: squash to 256 x 256, crop 224.

    ``size``/``resize``: resize in the decoder, in uint8 (see :func:`output_size`), the frame as
    displayed (a rotated phone video is turned upright first).
    ``crop``/``crop_offset``: crop after resizing, centred unless an offset (y, x) is given; ``flip``:
    mirror the (cropped) frames left-right. ``out``: a C-contiguous uint8 (T, H, W, 3) array (e.g. a row of
    a batch) that the frames are written into, as each is converted: the only copy made.
    ``extra_audio``: start times (clip clock) of more audio windows of the same length, read from the same
    open file (an alignment example's shifted audio), in ``clip.extra_audio``.
    ``channels``: 2 (mono duplicated, more channels down-mixed) or 1 (average).
    ``missing_audio``: ``"raise"`` -> :class:`NoAudioError`; ``"silence"`` -> zeros and
    ``clip.has_audio = False``. ``frame_backend``: ``"pyav"`` (default) or ``"decord"`` (a rotated
    video's frames are read by PyAV all the same; decord conceals no damage).
    ``threads``: decord's decoding threads, or the PyAV scaler's (conversion to RGB and resizing).

    Damaged packets are skipped and concealed (see the module's docstring): they are listed in
    ``clip.concealed`` and a :class:`ConcealedDamageWarning` names them.
    """
    path = Path(path)
    count = num_frames if num_frames is not None else num_frames_for(duration, fps)
    if count < 1:
        raise WindowError(path, f"a {duration} s window at {fps} fps holds no frame")
    for other in extra_audio:
        if other < 0:
            raise WindowError(path, f"audio window starts at {other:.3f} s, before the video")
    targets = start + np.arange(count) / fps
    backend = frame_backend
    if backend not in ("pyav", "decord"):
        raise ValueError(f"frame_backend must be 'pyav' or 'decord', got {backend!r}")
    if backend == "decord" and decord is None:
        raise ImportError("frame_backend='decord' needs the decord package; use frame_backend='pyav'")

    with _open(path) as container:
        info = _probe_container(container, path)
        if not info.has_audio and missing_audio == "raise":
            raise NoAudioError(path, "has no audio track (pass missing_audio='silence' to read silence)")
        # decord turns an mp4's rotated frames but not a Matroska's: rotated videos are read by PyAV
        if backend == "decord" and _display_rotation(container, container.streams.video[0]) == 0:
            out_hw = output_size(info.width, info.height, size, resize)
            frames, frame_times = _frames_decord(path, targets, out_hw, (info.height, info.width), threads)
            frames = _placed(crop_frames(frames, crop, crop_offset), flip, out)
            damaged_frames: list[float] = []
        else:
            frames, frame_times, damaged_frames = _frames_pyav(container, path, info, targets, size, resize, threads,
                                                               crop, crop_offset, flip, out)

        samples = num_samples_for(count, fps, sample_rate)
        damaged_audio: list[float] = []
        audios = []
        for number, first in enumerate((start, *extra_audio)):
            if not info.has_audio:
                audios.append(np.zeros((channels, samples), dtype=np.float32))
                continue
            if number and first + samples / sample_rate > info.audio_duration + 1.0 / info.fps:
                raise WindowError(path, f"audio window up to {first + samples / sample_rate:.3f} s passes the end "
                                        f"of the audio at {info.audio_duration:.3f} s")
            audio, damaged = _audio_window(container, path, info, first, samples, sample_rate, channels)
            audios.append(audio)
            damaged_audio += damaged

    concealed = [Concealment("video", time) for time in damaged_frames] + [Concealment("audio", time) for time in damaged_audio]
    _warn_concealed(path, concealed)
    return Clip(path=str(path), frames=frames, audio=audios[0], fps=fps, sample_rate=sample_rate,
                start=start, frame_times=np.asarray(frame_times, dtype=np.float64), has_audio=info.has_audio,
                concealed=concealed, extra_audio=audios[1:])


def _placed(frames: np.ndarray, flip: bool, out: np.ndarray | None) -> np.ndarray:
    """``frames`` (T x H x W x 3, a view) copied into ``out`` (or a new array), mirrored left-right if ``flip``."""
    if out is None and not flip:
        return np.ascontiguousarray(frames)
    if out is None:
        out = np.empty(frames.shape, dtype=np.uint8)
    elif out.shape != frames.shape or out.dtype != np.uint8 or not out.flags.c_contiguous:
        raise ValueError(f"out must be a C-contiguous uint8 array of shape {frames.shape}, got {out.dtype} {out.shape}")
    for target, image in zip(out, frames):
        place_frame(target, image, flip)
    return out
