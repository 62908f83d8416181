"""Clips per second of avlib.io.read_clip against bare decord and bare PyAV, on one core.

The clip is the paper's: a 4.2 s window, 125 frames at 29.97 fps, 224 x 224, with its audio.
Every reader decodes the same windows (random starts, same seed) of the same file:

- ``avlib read_clip``: frames by timestamp (PyAV, the default), audio by PyAV, placed by its
  timestamps, channel-mapped and resampled to 21 kHz with soxr: the full work the network's data
  path does, returned as one T x H x W x 3 array and one 2 x N array. The same with
  ``frame_backend="decord"`` is shown beside it.
- ``bare decord``: ``VideoReader.get_batch`` of 125 consecutive frames plus decord's
  ``AudioReader`` at 21 kHz (its own resampler).
- ``bare PyAV``: seek, decode 125 frames to RGB with PyAV's usual call,
  ``frame.to_ndarray(format="rgb24")``, written into one T x H x W x 3 array, then the audio
  packets of the window to arrays joined into one C x N array: the clip gathered, as decord's
  ``get_batch`` and ``AudioReader`` gather it. It does less than read_clip: no resampling, no
  channel mapping, no placement by timestamp.
- ``bare PyAV, tuned``: the same with the two decoding settings read_clip uses and PyAV's usual
  call does not: one scaler (``VideoReformatter``) for all frames instead of a new one per frame,
  and the demuxer told to skip the stream not being decoded. Against it the overhead is the cost
  of read_clip's own work alone.

Readers take turns clip by clip (the order rotating), so a load that comes and goes on a shared
machine slows them alike; each reader's time is the best of ``--repeats`` rounds. Wall-clock
clips/s is the number; the ratio of process CPU times is printed beside it, being less
disturbed by other processes on the same cores.

Usage: ``python bench/decode.py [--clips 30] [--repeats 3] [--file video.mp4] [--out results/bench/decode.md]``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import av
import decord
import numpy as np
import soxr
from av.stream import Discard
from av.video.reformatter import VideoReformatter

# Run as a plain script from any directory, without installing avlib.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from avlib import io  # noqa: E402
from avlib.provenance import cpu_model, git_commit, git_dirty  # noqa: E402
from avlib.writer import write_video  # noqa: E402

FRAMES, SIZE, SOURCE_RATE = 125, 224, 44100
TARGET_OVERHEAD = 0.15


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


def _bare_pyav(path: Path, start: float, tuned: bool) -> tuple[np.ndarray, np.ndarray]:
    with av.open(str(path)) as container:
        stream, audio_stream = container.streams.video[0], container.streams.audio[0]
        stream.thread_count = 1
        scaler = VideoReformatter() if tuned else None
        if tuned:
            audio_stream.discard = Discard.all
        container.seek(int(start / stream.time_base), stream=stream, backward=True)
        frames = np.empty((FRAMES, stream.codec_context.height, stream.codec_context.width, 3), dtype=np.uint8)
        kept = 0
        for frame in container.decode(stream):
            if frame.time + 1e-3 >= start:
                if tuned:
                    frames[kept] = scaler.reformat(frame, format="rgb24", threads=1).to_ndarray()
                else:
                    frames[kept] = frame.to_ndarray(format="rgb24")
                kept += 1
                if kept == FRAMES:
                    break
        if tuned:
            audio_stream.discard, stream.discard = Discard.default, Discard.all
        container.seek(int(start / audio_stream.time_base), stream=audio_stream, backward=True)
        stop = start + FRAMES / io.PAPER_FPS
        chunks = []
        for frame in container.decode(audio_stream):
            if frame.time > stop:
                break
            chunks.append(frame.to_ndarray())
        return frames, np.concatenate(chunks, axis=1)


def read_bare_pyav(path: Path, start: float) -> None:
    _bare_pyav(path, start, tuned=False)


def read_bare_pyav_tuned(path: Path, start: float) -> None:
    _bare_pyav(path, start, tuned=True)


READERS = {
    "avlib read_clip": read_avlib,
    "avlib read_clip, decord frames": read_avlib_decord,
    "bare decord": read_bare_decord,
    "bare PyAV": read_bare_pyav,
    "bare PyAV, tuned": read_bare_pyav_tuned,
}
BARE = ("bare decord", "bare PyAV")  # the baselines: its target is against the faster one


def measure(path: Path, clips: int, seed: int = 0, repeats: int = 3) -> tuple[dict[str, float], dict[str, float]]:
    """Clips/s of each reader by wall clock and by process CPU time, each the best of ``repeats`` rounds.

    In a round every reader decodes every window, taking turns clip by clip in a rotating order.
    """
    latest = io.probe(path).usable_duration - FRAMES / io.PAPER_FPS - 0.1
    starts = np.random.default_rng(seed).uniform(0, latest, size=clips)
    names = list(READERS)
    for name in names:
        READERS[name](path, float(starts[0]))  # warm the page cache and the imports
    wall = {name: float("inf") for name in names}
    cpu = {name: float("inf") for name in names}
    for _ in range(repeats):
        round_wall = dict.fromkeys(names, 0.0)
        round_cpu = dict.fromkeys(names, 0.0)
        for index, start in enumerate(starts):
            for name in names[index % len(names):] + names[: index % len(names)]:
                began_wall, began_cpu = time.perf_counter(), time.process_time()
                READERS[name](path, float(start))
                round_wall[name] += time.perf_counter() - began_wall
                round_cpu[name] += time.process_time() - began_cpu
        for name in names:
            wall[name] = min(wall[name], round_wall[name])
            cpu[name] = min(cpu[name], round_cpu[name])
    return {name: clips / wall[name] for name in names}, {name: clips / cpu[name] for name in names}


def machine() -> str:
    """The processor, the cores and the software, for the table's header."""
    return (f"{cpu_model()}, {os.cpu_count()} logical cores, {platform.system()}; python {platform.python_version()}, "
            f"av {av.__version__} (FFmpeg {av.ffmpeg_version_info}), decord {decord.__version__}, "
            f"numpy {np.__version__}, soxr {soxr.__version__}")


def load() -> str:
    try:
        return "/".join(f"{value:.1f}" for value in os.getloadavg())
    except OSError:
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--file", type=Path, default=None, help="a video to read (default: a generated one)")
    parser.add_argument("--out", type=Path, default=None, help="also write the table to this Markdown file")
    args = parser.parse_args()

    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core, as the target says
    load_before, began = load(), time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        path = args.file or make_source(Path(scratch) / "paper_clip.mp4")
        wall, cpu = measure(path, args.clips, repeats=args.repeats)
    fastest = max(BARE, key=wall.get)
    fastest_cpu = max(BARE, key=cpu.get)
    dirty = git_dirty()
    lines = [
        f"4.2 s clip, {FRAMES} frames {SIZE}x{SIZE} at 29.97 fps + stereo audio -> 21 kHz; pinned to one core; "
        f"best of {args.repeats} rounds of {args.clips} clips, readers taking turns clip by clip",
        "",
        f"Machine: {machine()}.",
        f"Load average (1/5/15 min) before: {load_before}, after: {load()}; "
        f"{time.perf_counter() - began:.0f} s; {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}; "
        f"avlib commit {git_commit()[:10]}{' (with local changes)' if dirty else ''}.",
        "",
        f"| reader | clips/s | time vs {fastest} | CPU clips/s | CPU time vs {fastest_cpu} |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in READERS:
        lines.append(f"| {name} | {wall[name]:.1f} | {wall[fastest] / wall[name]:.3f} | {cpu[name]:.1f} | "
                     f"{cpu[fastest_cpu] / cpu[name]:.3f} |")
    ours = "avlib read_clip"
    lines += [
        "",
        f"avlib overhead over the faster bare decoder ({fastest}): {100 * (wall[fastest] / wall[ours] - 1):+.1f} % "
        f"(CPU time: {100 * (cpu[fastest_cpu] / cpu[ours] - 1):+.1f} %); target: under {100 * TARGET_OVERHEAD:.0f} %",
        f"avlib overhead over bare PyAV, tuned: {100 * (wall['bare PyAV, tuned'] / wall[ours] - 1):+.1f} % "
        f"(CPU time: {100 * (cpu['bare PyAV, tuned'] / cpu[ours] - 1):+.1f} %)",
    ]
    table = "\n".join(lines)
    print(table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table + "\n")


if __name__ == "__main__":
    main()
