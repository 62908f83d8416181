"""Clips per second of avlib.io.read_clip against bare decord and bare PyAV, on one core.

The clip is the paper's: a 4.2 s window, 125 frames at 29.97 fps, 224 x 224, with its audio.
Every reader decodes the same windows (random starts, same seed) of the same file:

- ``avlib read_clip``: frames by timestamp (PyAV, the default), audio by PyAV, channel-mapped
  and resampled to 21 kHz with soxr: the full work the network's data path does. The same with
  ``frame_backend="decord"`` is shown beside it.
- ``bare decord``: ``VideoReader.get_batch`` of 125 consecutive frames plus decord's
  ``AudioReader`` at 21 kHz (its own resampler).
- ``bare PyAV``: seek, decode 125 frames to RGB arrays, decode the audio packets of the window
  to arrays (no resampling).

Usage: ``python bench/decode.py [--clips 40] [--file video.mp4] [--out table.md]``.
Absolute times on shared machines are noise; the ratio to the faster bare decoder is the number.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import av
import decord
import numpy as np

from avlib import io
from avlib.writer import write_video

FRAMES, SIZE, SOURCE_RATE = 125, 224, 44100


def make_source(path: Path, seconds: float = 10.1) -> Path:
    """A 10.1 s, 29.97 fps, 224 x 224 H.264 + stereo AAC file with moving content and sound."""
    rng = np.random.default_rng(0)
    count = int(seconds * io.PAPER_FPS)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    frames = np.empty((count, SIZE, SIZE, 3), dtype=np.uint8)
    for index in range(count):  # smooth moving gradients and a moving disc: camera-like content
        phase = index / 15.0
        frames[index, ..., 0] = 128 + 100 * np.sin(xx / 23 + phase)
        frames[index, ..., 1] = 128 + 100 * np.cos(yy / 31 - phase)
        frames[index, ..., 2] = 128 + 60 * np.sin((xx + yy) / 41 + 2 * phase)
        disc = (xx - 112 - 80 * np.sin(phase)) ** 2 + (yy - 112 - 60 * np.cos(phase)) ** 2 < 400
        frames[index][disc] = (250, 250, 30)
    frames = np.clip(frames.astype(np.int16) + rng.integers(-6, 7, size=frames.shape, dtype=np.int16), 0, 255).astype(np.uint8)
    samples = int(count / io.PAPER_FPS * SOURCE_RATE)
    audio = (0.1 * rng.standard_normal((2, samples))).astype(np.float32)
    return write_video(path, frames, io.PAPER_FPS, audio, SOURCE_RATE)


def read_avlib(path: Path, start: float) -> None:
    io.read_clip(path, start, io.PAPER_DURATION)


def read_avlib_decord(path: Path, start: float) -> None:
    io.read_clip(path, start, io.PAPER_DURATION, frame_backend="decord")


def read_bare_decord(path: Path, start: float) -> None:
    video = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
    first = int(round(start * io.PAPER_FPS))
    video.get_batch(list(range(first, first + FRAMES))).asnumpy()
    audio = decord.AudioReader(str(path), ctx=decord.cpu(0), sample_rate=io.PAPER_SAMPLE_RATE, mono=False)
    first_sample = int(start * io.PAPER_SAMPLE_RATE)
    audio[first_sample : first_sample + io.num_samples_for(FRAMES, io.PAPER_FPS, io.PAPER_SAMPLE_RATE)].asnumpy()


def read_bare_pyav(path: Path, start: float) -> None:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_count = 1
        container.seek(int(start / stream.time_base), stream=stream, backward=True)
        kept = 0
        for frame in container.decode(stream):
            if frame.time + 1e-3 >= start:
                frame.to_ndarray(format="rgb24")
                kept += 1
                if kept == FRAMES:
                    break
        audio_stream = container.streams.audio[0]
        container.seek(int(start / audio_stream.time_base), stream=audio_stream, backward=True)
        stop = start + FRAMES / io.PAPER_FPS
        for frame in container.decode(audio_stream):
            if frame.time > stop:
                break
            frame.to_ndarray()


READERS = {"avlib read_clip": read_avlib, "avlib read_clip, decord frames": read_avlib_decord, "bare decord": read_bare_decord, "bare PyAV": read_bare_pyav}


def measure(path: Path, clips: int, seed: int = 0, repeats: int = 3) -> dict[str, float]:
    """Best of ``repeats`` rounds; in each round every reader decodes the same windows in turn."""
    latest = io.probe(path).usable_duration - FRAMES / io.PAPER_FPS - 0.1
    starts = np.random.default_rng(seed).uniform(0, latest, size=clips)
    best = {name: 0.0 for name in READERS}
    for _ in range(repeats):
        for name, reader in READERS.items():
            reader(path, float(starts[0]))  # warm the page cache and the imports
            began = time.perf_counter()
            for start in starts:
                reader(path, float(start))
            best[name] = max(best[name], clips / (time.perf_counter() - began))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--file", type=Path, default=None, help="a video to read (default: a generated one)")
    parser.add_argument("--out", type=Path, default=None, help="also write the table to this Markdown file")
    args = parser.parse_args()

    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core, as the target says
    with tempfile.TemporaryDirectory() as scratch:
        path = args.file or make_source(Path(scratch) / "paper_clip.mp4")
        speeds = measure(path, args.clips, repeats=args.repeats)
    fastest_bare = max(speeds["bare decord"], speeds["bare PyAV"])
    lines = [
        f"4.2 s clip, {FRAMES} frames {SIZE}x{SIZE} at 29.97 fps + stereo audio -> 21 kHz; one core of "
        f"{platform.processor() or platform.machine()}; best of {args.repeats} x {args.clips} clips",
        "",
        "| reader | clips/s | time vs faster bare decoder |",
        "|---|---:|---:|",
    ]
    for name, speed in speeds.items():
        lines.append(f"| {name} | {speed:.1f} | {fastest_bare / speed:.3f} |")
    overhead = fastest_bare / speeds["avlib read_clip"] - 1
    lines += ["", f"avlib overhead over the faster bare decoder: {100 * overhead:+.1f} % (target: under 15 %)"]
    table = "\n".join(lines)
    print(table)
    if args.out:
        args.out.write_text(table + "\n")


if __name__ == "__main__":
    main()
