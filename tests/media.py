"""Test media written at test time: frames that encode their own index, clicks at known frames.

Each frame shows its index as 10 binary blocks (white = 1) across the top half, large enough
to survive lossy coding; the bottom half is mid-grey. A click (a short 2 kHz burst) starts at
the presentation time of each frame listed in ``click_frames``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from avlib.writer import write_video

BITS = 10


def index_frames(num_frames: int, height: int, width: int) -> np.ndarray:
    frames = np.full((num_frames, height, width, 3), 128, dtype=np.uint8)
    block = width // BITS
    for index in range(num_frames):
        for bit in range(BITS):
            value = 255 if (index >> bit) & 1 else 0
            frames[index, : height // 2, bit * block : (bit + 1) * block] = value
    return frames


def decode_indices(frames: np.ndarray) -> np.ndarray:
    """Recover each frame's encoded index (frames T x H x W x 3, any size the blocks survive)."""
    height, width = frames.shape[1:3]
    block = width / BITS
    indices = np.zeros(len(frames), dtype=np.int64)
    for bit in range(BITS):
        lo, hi = int(bit * block + block * 0.25), int((bit + 1) * block - block * 0.25)
        level = frames[:, height // 8 : height // 2 - height // 8, lo:hi].mean(axis=(1, 2, 3))
        indices |= (level > 128).astype(np.int64) << bit
    return indices


def click_track(num_samples: int, sample_rate: int, click_times: list[float], channels: int = 2) -> np.ndarray:
    audio = np.zeros((channels, num_samples), dtype=np.float32)
    length = int(0.004 * sample_rate)
    burst = 0.8 * np.sin(2 * np.pi * 2000 * np.arange(length) / sample_rate).astype(np.float32)
    for time in click_times:
        start = int(round(time * sample_rate))
        audio[:, start : start + length] = burst[: max(0, min(length, num_samples - start))]
    return audio


def onsets(audio: np.ndarray, sample_rate: int, threshold: float = 0.3, refractory: float = 0.1) -> np.ndarray:
    """Times (s) where the channel-summed envelope first exceeds ``threshold`` of its peak."""
    envelope = np.abs(audio).max(axis=0)
    above = np.flatnonzero(envelope > threshold * envelope.max())
    times: list[float] = []
    for sample in above:
        if not times or sample / sample_rate - times[-1] > refractory:
            times.append(sample / sample_rate)
    return np.asarray(times)


def make_video(path: Path, *, num_frames: int = 100, fps: float = 25.0, height: int = 64, width: int = 160,
               channels: int | None = 2, sample_rate: int = 44100, click_frames: tuple[int, ...] = (),
               audio: np.ndarray | None = None, **writer_options) -> Path:
    """Write an indexed-frames video; ``channels=None`` writes no audio track."""
    frames = index_frames(num_frames, height, width)
    if channels is not None and audio is None:
        num_samples = int(round(num_frames / fps * sample_rate))
        audio = click_track(num_samples, sample_rate, [frame / fps for frame in click_frames], channels)
    return write_video(path, frames, fps, audio if channels is not None else None, sample_rate, **writer_options)


def write_scene(root: Path, event_object: tuple[int, ...] = ()) -> tuple[Path, Path]:
    """A 64 x 64 scene in the world's format under ``root``: a white sounding square sliding right, a black
    silent one still; sound events made by the objects ``event_object`` (-1: off screen). Returns (video, truth)."""
    num_frames, fps, side = 40, 20.0, 12
    frames = np.full((num_frames, 64, 64, 3), 128, dtype=np.uint8)
    top_left = np.zeros((num_frames, 2, 2), dtype=np.int16)
    for t in range(num_frames):
        top_left[t] = [(4 + t, 8), (40, 44)]
        frames[t, 8 : 8 + side, 4 + t : 4 + t + side] = 255
        frames[t, 44 : 44 + side, 40 : 40 + side] = 0
    audio = 0.1 * np.random.default_rng(1).standard_normal((2, 16000)).astype(np.float32)
    write_video(root / "clips" / "scene_00000.mp4", frames, fps, audio, 8000)
    boxes = np.concatenate([top_left, top_left + side], axis=2).astype(np.float32)
    (root / "truth").mkdir()
    np.savez(root / "truth" / "scene_00000.npz", boxes=boxes, top_left=top_left,
             sprites=np.full((2, side, side), 255, dtype=np.uint8), sizes=np.array([side, side], dtype=np.int16),
             sounding=np.array([True, False]), loudness=np.zeros((num_frames, 2), np.float32),
             offscreen_loudness=np.zeros(num_frames, np.float32), event_frame=np.arange(len(event_object), dtype=np.int32),
             event_object=np.array(event_object, np.int8), event_strength=np.ones(len(event_object), np.float32),
             event_sample=np.arange(len(event_object), dtype=np.int64) * 400, fps=np.float64(fps), sample_rate=np.int64(8000))
    with open(root / "scenes.csv", "w", newline="") as table:
        writer = csv.writer(table)
        writer.writerow(["clip", "path", "truth", "width", "height"])
        writer.writerow(["scene_00000", "clips/scene_00000.mp4", "truth/scene_00000.npz", 64, 64])
    return root / "clips" / "scene_00000.mp4", root / "truth" / "scene_00000.npz"


def textured_frames(num_frames: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """Indexed frames whose bottom half is noise sliding one pixel a frame: large packets, every P-frame carrying data."""
    frames = index_frames(num_frames, height, width)
    texture = np.random.default_rng(seed).integers(0, 256, (height - height // 2, width + num_frames, 3), dtype=np.uint8)
    for index in range(num_frames):
        frames[index, height // 2 :] = texture[:, index : index + width]
    return frames


def packet_spans(path: Path, kind: str = "video") -> list[tuple[int, int, float, bool]]:
    """(byte offset, size, time in s, keyframe) of every packet of the first ``kind`` stream, in file order."""
    import av

    with av.open(str(path)) as container:
        stream = getattr(container.streams, kind)[0]
        return [(packet.pos, packet.size, float(packet.pts * stream.time_base), packet.is_keyframe)
                for packet in container.demux(stream) if packet.pos is not None and packet.pos >= 0 and packet.pts is not None]


def overwrite(path: Path, out: Path, offset: int, length: int, seed: int = 0) -> Path:
    """A copy of ``path`` with ``length`` random bytes written over it from ``offset``."""
    data = bytearray(path.read_bytes())
    length = max(0, min(length, len(data) - offset))
    data[offset : offset + length] = np.random.default_rng(seed).integers(0, 256, length, dtype=np.uint8).tobytes()
    out.write_bytes(bytes(data))
    return out


def frame_stamps(path: Path) -> np.ndarray:
    """Presentation times of every frame of a video, in seconds from its first."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stamps = sorted(float(packet.pts * packet.time_base) for packet in container.demux(stream) if packet.size)
    return np.asarray(stamps) - stamps[0]
