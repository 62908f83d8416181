"""Write real video files (frames + audio) with PyAV's bundled FFmpeg.

The synthetic world and the tests write the same containers that real data comes in:
H.264 + AAC in mp4 (AudioSet, VoxCeleb style) and MPEG-4 Part 2 + MP3 in avi (UCF-101
style), so the readers in :mod:`avlib.io` are exercised on real encoders and demuxers.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

#: container -> (video codec, audio codec, pixel format)
CONTAINER_DEFAULTS = {
    "mp4": ("libx264", "aac", "yuv420p"),
    "avi": ("mpeg4", "libmp3lame", "yuv420p"),
    "mkv": ("libx264", "aac", "yuv420p"),
}

_LAYOUTS = {1: "mono", 2: "stereo", 6: "5.1"}


def fps_fraction(fps: float) -> Fraction:
    """The exact rational rate for NTSC-style rates (29.97 -> 30000/1001)."""
    for ntsc in (24, 30, 60):
        if abs(fps - ntsc * 1000 / 1001) < 1e-3:
            return Fraction(ntsc * 1000, 1001)
    return Fraction(fps).limit_denominator(1001)


def write_video(
    path: str | os.PathLike,
    frames: np.ndarray,
    fps: float,
    audio: np.ndarray | None = None,
    sample_rate: int = 44100,
    *,
    video_codec: str | None = None,
    audio_codec: str | None = None,
    crf: int = 18,
    gop: int | None = None,
    audio_bitrate: int = 128_000,
    video_options: dict[str, str] | None = None,
    rotation: int = 0,
) -> Path:
    """Encode ``frames`` (T x H x W x 3 uint8) and optionally ``audio`` (C x N float in [-1, 1]).

    The container is chosen by the suffix (``.mp4``, ``.avi``, ``.mkv``). ``audio`` may have
    1, 2 or 6 channels (6 = 5.1). The file is written to a temporary name and renamed, so a
    crash never leaves a half-written video under the final name.

    ``rotation`` (0, 90, 180, 270; counter-clockwise, as :attr:`avlib.io.VideoInfo.rotation`)
    tags the display matrix: the frames are stored as given and a player (and
    :func:`avlib.io.read_clip`) turns them by that much. To keep a phone video's orientation, write
    its stored frames with its rotation, or its frames as displayed with 0. AVI cannot carry it.
    """
    path = Path(path)
    kind = path.suffix.lstrip(".").lower()
    if kind not in CONTAINER_DEFAULTS:
        raise ValueError(f"{path}: unsupported container {kind!r}; use one of {sorted(CONTAINER_DEFAULTS)}")
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"{path}: frames must be uint8 T x H x W x 3, got {frames.dtype} {frames.shape}")
    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        raise ValueError(f"{path}: yuv420p needs even frame sizes, got {width}x{height}")
    if rotation not in (0, 90, 180, 270):
        raise ValueError(f"{path}: rotation must be 0, 90, 180 or 270 degrees, got {rotation!r}")
    if rotation and kind == "avi":
        raise ValueError(f"{path}: AVI has no display matrix to carry a rotation; write .mp4 or .mkv")
    default_vcodec, default_acodec, pix_fmt = CONTAINER_DEFAULTS[kind]
    rate = fps_fraction(fps)

    # AVI cannot signal an audio encoder's priming delay; FFmpeg's default shift of negative
    # timestamps would then move every video frame after the first by one frame. Keep the
    # video timeline exact; MP3 audio in AVI then decodes ~25 ms late, as in real UCF-101.
    container_options = {"avoid_negative_ts": "disabled"} if kind == "avi" else {}
    tmp = path.with_name(f".{path.stem}.partial{path.suffix}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(tmp), mode="w", format={"mkv": "matroska"}.get(kind, kind), container_options=container_options) as container:
        vstream = container.add_stream(video_codec or default_vcodec, rate=rate)
        vstream.width, vstream.height, vstream.pix_fmt = width, height, pix_fmt
        options = {"crf": str(crf), "preset": "veryfast"} if vstream.codec_context.name == "libx264" else {}
        if vstream.codec_context.name == "mpeg4":
            options = {"qscale": "3"}
            vstream.codec_context.bit_rate = 2_000_000
        options.update(video_options or {})
        vstream.codec_context.options = options
        if gop is not None:
            vstream.codec_context.gop_size = gop
        if rotation:
            vstream.set_display_rotation(rotation)
        astream = None
        if audio is not None:
            audio = np.asarray(audio, dtype=np.float32)
            if audio.ndim != 2 or audio.shape[0] not in _LAYOUTS:
                raise ValueError(f"{path}: audio must be C x N with C in {sorted(_LAYOUTS)}, got {audio.shape}")
            astream = container.add_stream(audio_codec or default_acodec, rate=sample_rate, layout=_LAYOUTS[audio.shape[0]])
            astream.codec_context.bit_rate = audio_bitrate

        # Interleave in time order, as real muxers do: AVI's demuxer mis-times a stream that
        # was written in one block after the other.
        audio_chunks = _audio_frames(astream, audio, sample_rate) if astream is not None else iter(())
        pending = next(audio_chunks, None)
        for index, image in enumerate(frames):
            while pending is not None and pending.pts / sample_rate <= index / rate:
                for packet in astream.encode(pending):
                    container.mux(packet)
                pending = next(audio_chunks, None)
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            frame.pts = index
            frame.time_base = 1 / rate
            for packet in vstream.encode(frame):
                container.mux(packet)
        for packet in vstream.encode():
            container.mux(packet)
        if astream is not None:
            while pending is not None:
                for packet in astream.encode(pending):
                    container.mux(packet)
                pending = next(audio_chunks, None)
            for packet in astream.encode():
                container.mux(packet)
    os.replace(tmp, path)
    return path


def _audio_frames(astream, audio: np.ndarray, sample_rate: int):
    """Planar float audio cut into encoder-sized frames, timestamped in samples."""
    audio = np.clip(audio, -1.0, 1.0)
    layout = _LAYOUTS[audio.shape[0]]
    chunk = astream.codec_context.frame_size or 1024
    for offset in range(0, audio.shape[1], chunk):
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio[:, offset : offset + chunk]), format="fltp", layout=layout)
        frame.sample_rate = sample_rate
        frame.pts = offset
        frame.time_base = Fraction(1, sample_rate)
        yield frame


#: Sound layouts the AAC encoder takes, by channel count.
AAC_LAYOUTS = {1: "mono", 2: "stereo", 6: "5.1", 8: "7.1"}


class VideoSink:
    """An H.264 + AAC video written picture by picture, each picture at its own time, so that every input
    frame and its timestamp can be kept; memory stays bounded by one picture.

    Use as a context manager: the file appears under ``path`` only when the block ends without an error
    (:func:`avlib.files.atomic_path`). ``path`` ends in ``.mp4``, ``.mkv`` or ``.mov``; ``width`` and ``height``
    must be even (yuv420p). ``fps`` is only a hint for the encoder's rate control. With ``sample_rate``, a
    sound track of ``channels`` channels (1, 2, 6 or 8) is encoded from :meth:`sound`; with ``sound_from`` (an
    input's audio stream) that stream's packets are copied instead (:meth:`sound_packet`), not re-encoded.
    ``preset`` is x264's speed preset.
    """

    def __init__(self, path: str | os.PathLike, width: int, height: int, fps: float, *, sample_rate: int | None = None,
                 channels: int = 2, crf: int = 20, preset: str = "veryfast", sound_from: av.audio.stream.AudioStream | None = None):
        self.path = Path(path)
        if self.path.suffix.lower() not in (".mp4", ".mkv", ".mov"):
            raise ValueError(f"{self.path}: the video is H.264 + AAC; name an .mp4, .mkv or .mov file")
        if width % 2 or height % 2:
            raise ValueError(f"{self.path}: yuv420p needs even frame sizes, got {width}x{height}")
        if sample_rate is not None and channels not in AAC_LAYOUTS:
            raise ValueError(f"{self.path}: sound of {channels} channels; AAC takes {sorted(AAC_LAYOUTS)}")
        self.width, self.height, self.fps, self.crf, self.preset = width, height, fps, crf, preset
        self.sample_rate, self.channels, self.sound_from = sample_rate, channels, sound_from
        self.pictures, self.samples = 0, 0
        self._last_pts = -1
        self._sound_next: int | None = None
        self._pending = np.zeros((channels, 0), dtype=np.float32)

    def __enter__(self) -> "VideoSink":
        from avlib.files import atomic_path

        self._atomic = atomic_path(self.path)
        tmp = self._atomic.__enter__()
        try:
            self._container = av.open(str(tmp), mode="w", format={".mkv": "matroska"}.get(self.path.suffix.lower()))
            self._time_base = Fraction(1, 90_000)
            self._video = self._container.add_stream("libx264", rate=fps_fraction(self.fps))
            self._video.width, self._video.height, self._video.pix_fmt = self.width, self.height, "yuv420p"
            self._video.time_base = self._video.codec_context.time_base = self._time_base
            self._video.codec_context.options = {"crf": str(self.crf), "preset": self.preset}
            self._audio = None
            if self.sound_from is not None:
                self._copied = self._container.add_stream_from_template(self.sound_from)
            elif self.sample_rate is not None:
                self._audio = self._container.add_stream("aac", rate=self.sample_rate, layout=AAC_LAYOUTS[self.channels])
                self._frame_size = self._audio.codec_context.frame_size or 1024
        except BaseException as error:
            self._atomic.__exit__(type(error), error, error.__traceback__)
            raise
        return self

    def picture(self, image: np.ndarray | av.VideoFrame, time: float) -> bool:
        """Encode one picture (H x W x 3 uint8 RGB, or a decoded frame of the sink's size) shown from ``time``
        seconds; a time that does not come after the previous picture's cannot be muxed: it is skipped
        and False returned."""
        pts = int(round(time / self._time_base))
        if pts <= self._last_pts:
            return False
        self._last_pts = pts
        frame = image if isinstance(image, av.VideoFrame) else av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        frame.pts, frame.time_base = pts, self._time_base
        self._container.mux(self._video.encode(frame))
        self.pictures += 1
        return True

    def sound(self, samples: np.ndarray, start: float | None = None) -> None:
        """Append ``samples`` (channels x N float in [-1, 1]); the first call's ``start`` (seconds, default 0)
        places the track, later calls continue where the previous one ended."""
        if self._audio is None:
            raise ValueError(f"{self.path}: this sink was opened without sound")
        samples = np.asarray(samples, dtype=np.float32)
        if samples.ndim != 2 or samples.shape[0] != self.channels:
            raise ValueError(f"{self.path}: expected sound of shape ({self.channels}, N), got {samples.shape}")
        if self._sound_next is None:
            self._sound_next = max(0, int(round((start or 0.0) * self.sample_rate)))
        self._pending = np.concatenate([self._pending, np.clip(samples, -1.0, 1.0)], axis=1)
        self._encode_sound(final=False)

    def sound_packet(self, packet: av.Packet, shift: float = 0.0) -> None:
        """Copy one packet of the ``sound_from`` stream, ``shift`` seconds earlier (e.g. the input's video start)."""
        ticks = int(round(shift / packet.time_base))
        if packet.pts is not None:
            packet.pts -= ticks
        if packet.dts is not None:
            packet.dts -= ticks
        packet.stream = self._copied
        self._container.mux(packet)

    def _encode_sound(self, final: bool) -> None:
        size = self._frame_size
        usable = self._pending.shape[1] if final else self._pending.shape[1] // size * size
        for offset in range(0, usable, size):
            chunk = np.ascontiguousarray(self._pending[:, offset : offset + size])
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=AAC_LAYOUTS[self.channels])
            frame.sample_rate, frame.pts, frame.time_base = self.sample_rate, self._sound_next, Fraction(1, self.sample_rate)
            self._sound_next += chunk.shape[1]
            self.samples += chunk.shape[1]
            self._container.mux(self._audio.encode(frame))
        self._pending = self._pending[:, usable:]

    def __exit__(self, kind, error, trace) -> None:
        try:
            if error is None:
                self._container.mux(self._video.encode())
                if self._audio is not None:
                    if self._sound_next is not None:
                        self._encode_sound(final=True)
                    self._container.mux(self._audio.encode())
        finally:
            self._container.close()
            self._atomic.__exit__(kind, error, trace)
