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
