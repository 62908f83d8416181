"""Frames per second of the CAM overlay writer (``avlib.localize.write_overlay``) against the writer it replaced.

Both write the same overlay of the same 640 x 360 video (generated here: moving colour bars, stereo noise,
29.97 fps) from the same map track (a bright blob circling the frame, one map per CAM step as the synth
profile stores them), so the work is what a user's ``--out`` costs once the maps exist:

- ``before``: the writer as it was, kept callable below (:func:`old_write_overlay`): a new RGB converter per
  frame, the blend in torch over every pixel, x264 ``veryfast``;
- ``now``: :func:`avlib.localize.write_overlay`: one RGB converter, the blend by table over the box around the map's
  hot cells only (:class:`avlib.localize.OverlayBlend`), the sound copied rather than re-encoded, frames through
  ``avlib.writer.VideoSink``, x264 at :data:`avlib.localize.OVERLAY_PRESET`; the same with other x264 presets
  beside it (``veryfast`` was the one before).

Writers take turns (the order rotating), so a load that comes and goes on the shared machine slows them alike;
each writer's time is the best of ``--repeats`` rounds, pinned to one core. The blend of the two writers is also
compared pixel by pixel on the bench's frames.

Usage: ``python bench/overlay.py [--seconds 20] [--repeats 3] [--out results/bench/overlay.md]``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

# Run as a plain script from any directory, without installing avlib.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from avlib import io  # noqa: E402
from avlib.config import CamSettings  # noqa: E402
from avlib.files import atomic_path  # noqa: E402
from avlib.localize import (  # noqa: E402
    OVERLAY_PRESET,
    MapTrack,
    OverlayBlend,
    heat_overlay,
    overlay_scale,
    to_frame,
    write_overlay,
)
from avlib.provenance import cpu_model, git_commit, git_dirty  # noqa: E402
from avlib.writer import VideoSink, fps_fraction  # noqa: E402

# ----------------------------------------------------------------------------- the writer before (kept to compare)

_OLD_LAYOUTS = {1: "mono", 2: "stereo", 6: "5.1", 8: "7.1"}
_OLD_JET: torch.Tensor | None = None


def old_heat_overlay(frame: np.ndarray, cam: np.ndarray, max_val: float, lo_fraction: float, max_alpha: float) -> np.ndarray:
    """The blend as it was: torch, every pixel."""
    global _OLD_JET
    if _OLD_JET is None:
        from matplotlib import colormaps

        _OLD_JET = torch.from_numpy((colormaps["jet"](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.float32))
    if max_val <= 0:
        return frame.copy()
    lo, hi = lo_fraction * max_val, max_val + 1e-3
    level = ((torch.as_tensor(np.asarray(cam, dtype=np.float32)) - lo) / (hi - lo)).clamp_(0.0, 1.0)
    colour = _OLD_JET[(level * 255 + 0.5).long()]
    alpha = level.clamp(max=max_alpha).unsqueeze(-1)
    image = torch.from_numpy(np.ascontiguousarray(frame)).float()
    return image.add_(colour.sub_(image).mul_(alpha)).add_(0.5).to(torch.uint8).numpy()


def old_write_overlay(video: Path, track: MapTrack, out: Path, scale: float, settings: CamSettings) -> int:
    """The overlay writer as it was (less its progress bar and returned maps); returns the frames written."""
    info = io.probe(video)
    written = 0
    with av.open(str(video), metadata_errors="ignore") as source:
        vin, ain = source.streams.video[0], source.streams.audio[0]
        vin.thread_type = "AUTO"
        height, width = info.height - info.height % 2, info.width - info.width % 2
        layout = _OLD_LAYOUTS.get(ain.codec_context.channels, "stereo")
        sample_rate = int(ain.codec_context.sample_rate)
        time_base = Fraction(1, 90_000)
        with atomic_path(out) as tmp:
            with av.open(str(tmp), mode="w") as sink:
                vout = sink.add_stream("libx264", rate=fps_fraction(info.fps))
                vout.width, vout.height, vout.pix_fmt = width, height, "yuv420p"
                vout.time_base = time_base
                vout.codec_context.time_base = time_base
                vout.codec_context.options = {"crf": "20", "preset": "veryfast"}
                aout = sink.add_stream("aac", rate=sample_rate, layout=layout)
                resampler = av.AudioResampler(format="fltp", layout=layout, rate=sample_rate,
                                              frame_size=aout.codec_context.frame_size or 1024)
                audio_next, last_pts = None, -1
                for packet in source.demux(vin, ain):
                    for frame in packet.decode():
                        if frame.time is None:
                            continue
                        time_ = frame.time - info.video_start
                        if packet.stream.type == "video":
                            pts = int(round(time_ / time_base))
                            if pts <= last_pts:
                                continue
                            last_pts = pts
                            image = frame.to_ndarray(format="rgb24")[:height, :width]
                            drawn = old_heat_overlay(image, to_frame(track.at(time_), height, width), scale,
                                                     settings.lo_fraction, settings.max_alpha)
                            picture = av.VideoFrame.from_ndarray(drawn, format="rgb24")
                            picture.pts, picture.time_base = pts, time_base
                            sink.mux(vout.encode(picture))
                            written += 1
                        else:
                            if audio_next is None:
                                audio_next = max(0, int(round(time_ * sample_rate)))
                            frame.pts = None
                            for chunk in resampler.resample(frame):
                                chunk.pts, chunk.time_base = audio_next, Fraction(1, sample_rate)
                                audio_next += chunk.samples
                                sink.mux(aout.encode(chunk))
                for chunk in resampler.resample(None):
                    chunk.pts, chunk.time_base = audio_next, Fraction(1, sample_rate)
                    audio_next += chunk.samples
                    sink.mux(aout.encode(chunk))
                sink.mux(vout.encode())
                sink.mux(aout.encode())
    return written


# ----------------------------------------------------------------------------- inputs


def make_input(path: Path, seconds: float, width: int = 640, height: int = 360, fps: float = 30000 / 1001) -> Path:
    """Moving colour bars with stereo noise at 44.1 kHz, written frame by frame."""
    rng = np.random.default_rng(0)
    columns = np.arange(width)
    with VideoSink(path, width, height, fps, sample_rate=44100, crf=23) as sink:
        for index in range(int(seconds * fps)):
            row = np.stack([(columns + 3 * index + shift) % 256 for shift in (0, 85, 170)], axis=-1).astype(np.uint8)
            sink.picture(np.broadcast_to(row, (height, width, 3)), index / fps)
            sink.sound(0.05 * rng.standard_normal((2, int(round(44100 / fps)))).astype(np.float32))
    return path


def blob_track(seconds: float, size: tuple[int, int], window: float = 2.1, steps: int = 8) -> MapTrack:
    """Half-overlapping windows of ``steps`` maps each: a Gaussian blob circling the frame over a weak floor."""
    rows, cols = np.mgrid[0 : size[0], 0 : size[1]].astype(np.float32)
    track = MapTrack([], [], [])
    for first in np.arange(0.0, max(seconds - window, 0.0) + 1e-9, window / 2):
        times = first + (np.arange(steps) + 0.5) * window / steps
        maps = []
        for time_ in times:
            y, x = (0.5 + 0.3 * np.sin(time_)) * size[0], (0.5 + 0.35 * np.cos(time_)) * size[1]
            maps.append(0.2 + np.exp(-((rows - y) ** 2 + (cols - x) ** 2) / (2 * (0.15 * size[1]) ** 2)))
        track.spans.append((float(first), float(first + window)))
        track.times.append(times)
        track.maps.append(np.stack(maps).astype(np.float32))
    return track


def load() -> str:
    return "/".join(f"{value:.1f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the generated 640x360 video")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "results" / "bench" / "overlay.md")
    args = parser.parse_args()
    torch.set_num_threads(1)
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    load_before, began = load(), time.perf_counter()
    settings = CamSettings()
    with tempfile.TemporaryDirectory(prefix="avlib-bench-overlay-") as folder:
        folder = Path(folder)
        video = make_input(folder / "in.mp4", args.seconds)
        info = io.probe(video)
        track = blob_track(args.seconds, (45, 80))  # 640x360 resized to a 256-pixel short side, a map pixel per 8
        scale = overlay_scale(track.values(), settings.percentile)
        # the pixels: the old blend against heat_overlay (the same) and the writer's table blend (alpha in 1/255 steps)
        largest, differing, pixels = 0, 0, 0
        blend = OverlayBlend(scale, settings.lo_fraction, settings.max_alpha)
        with av.open(str(video)) as source:
            for index, frame in enumerate(source.decode(video=0)):
                if index % 10 == 0:
                    image = frame.to_ndarray(format="rgb24")
                    cam = to_frame(track.at(frame.time), info.height, info.width)
                    old = old_heat_overlay(image, cam, scale, settings.lo_fraction, settings.max_alpha)
                    assert np.array_equal(old, heat_overlay(image, cam, scale, settings.lo_fraction, settings.max_alpha))
                    difference = np.abs(blend(image.copy(), track.at(frame.time)).astype(int) - old)
                    largest = max(largest, int(difference.max()))
                    differing, pixels = differing + int((difference > 0).sum()), pixels + difference.size
        writers = {
            "before (torch blend, new converter per frame, veryfast)":
                lambda out: old_write_overlay(video, track, out, scale, settings),
            f"now (write_overlay, x264 {OVERLAY_PRESET})": lambda out: len(write_overlay(video, track, out, scale, settings)),
            "now, x264 veryfast": lambda out: len(write_overlay(video, track, out, scale, settings, preset="veryfast")),
            "now, x264 superfast": lambda out: len(write_overlay(video, track, out, scale, settings, preset="superfast")),
        }
        best = {name: (np.inf, np.inf) for name in writers}
        sizes, counts = {}, {}
        names = list(writers)
        for round_ in range(args.repeats):
            for name in names[round_ % len(names):] + names[: round_ % len(names)]:
                out = folder / "out.mp4"
                wall, cpu = time.perf_counter(), time.process_time()
                counts[name] = writers[name](out)
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                best[name] = (min(best[name][0], wall), min(best[name][1], cpu))
                sizes[name] = out.stat().st_size
    before = names[0]
    rows = [f"| {name} | {counts[name] / best[name][0]:.1f} | {best[before][0] / best[name][0]:.2f} | "
            f"{counts[name] / best[name][1]:.1f} | {best[before][1] / best[name][1]:.2f} | {sizes[name] / 1e6:.1f} |"
            for name in names]
    commit = git_commit() or "unknown"
    text = "\n".join([
        f"CAM overlay of a {args.seconds:g} s 640x360 video at 29.97 fps ({counts[before]} frames) with stereo 44.1 kHz sound; "
        f"pinned to one core; best of {args.repeats} rounds, writers taking turns",
        "",
        f"Machine: {cpu_model()}, {os.cpu_count()} logical cores, {platform.system()}; python {platform.python_version()}, "
        f"av {av.__version__}, torch {torch.__version__}, numpy {np.__version__}.",
        f"Load average (1/5/15 min) before: {load_before}, after: {load()}; {time.perf_counter() - began:.0f} s; "
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; avlib commit {commit[:10]}"
        f"{' (dirty)' if git_dirty() else ''}.",
        "",
        "| writer | frames/s | speed-up | CPU frames/s | CPU speed-up | MB written |",
        "|---|---:|---:|---:|---:|---:|",
        *rows,
        "",
        f"The drawn pixels against the blend before, on every 10th frame: heat_overlay the same; the writer's table blend "
        f"differs by at most {largest} (in 255) on {100 * differing / pixels:.3f} % of the values. Target: the overlay 3x faster.",
    ])
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
