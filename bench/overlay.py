"""Frames per second of the CAM overlay writer (``avlib.localize.write_overlay``) against the two writers before it.

All write the same overlay of the same 640 x 360 video (generated here: moving colour bars, stereo noise,
29.97 fps) from the same map track (a bright blob circling the frame, one map per CAM step as the synth
profile stores them), so the work is what a user's ``--out`` costs once the maps exist:

- ``before``: the writer as issue 20 found it, kept callable below (:func:`old_write_overlay`): a new RGB converter
  per frame, the blend in torch over every pixel, the sound re-encoded, x264 ``veryfast``;
- ``now``: the writer before this one, kept callable below (:func:`now_write_overlay`): one RGB converter, the blend
  by table over the box around the map's hot cells only (:class:`NowBlend`), the sound copied, x264 ``ultrafast``;
- ``new``: :func:`avlib.localize.write_overlay`: the decoder's yuv420p planes blended as they are
  (:class:`avlib.localize.PlaneBlend`: Y at full resolution, Cb and Cr at a quarter, the map resized by separable
  bilinear weights over the hot box only) and handed to x264 as they are, no RGB either way; x264 at
  :data:`avlib.localize.OVERLAY_PRESET`, and the same with other presets beside it (file sizes in the table).

Writers take turns (the order rotating), so a load that comes and goes on the shared machine slows them alike;
each writer's time is the best of ``--repeats`` rounds, pinned to one core (x264 and the H.264 decoder size their
thread pools by the cores they may use: one thread each). The pixels are compared too: the blends before
encoding, and the decoded outputs of "now" and "new".

Usage: ``python bench/overlay.py [--seconds 10] [--repeats 3] [--out results/bench/overlay.md]``.
"""

from __future__ import annotations

import argparse
import datetime
import math
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
from av.video.reformatter import VideoReformatter

# Run as a plain script from any directory, without installing avlib.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from avlib import io  # noqa: E402
from avlib.config import PAPER_LO_FRACTION, PAPER_MAX_ALPHA, CamSettings  # noqa: E402
from avlib.files import atomic_path  # noqa: E402
from avlib.localize import (  # noqa: E402
    COPIED_SOUND,
    OVERLAY_PRESET,
    MapTrack,
    PlaneBlend,
    _jet,
    heat_overlay,
    overlay_scale,
    to_frame,
    write_overlay,
    yuv_planes,
)
from avlib.provenance import cpu_model, git_commit, git_dirty  # noqa: E402
from avlib.writer import AAC_LAYOUTS, VideoSink, fps_fraction  # noqa: E402

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


# ----------------------------------------------------------------------------- the writer now (kept to compare)


class NowBlend:
    """The writer now's blend (``avlib.localize.OverlayBlend`` as it was), on RGB frames by table: the map's level in
    1/255 steps (the steps jet's colour already takes) indexes a (level, pixel value) -> blended value table per colour channel, and
    only the box around the map's cells above ``lo`` is touched (bilinear resizing never exceeds the cells it
    mixes, so the rest has alpha 0). The same pixels as :func:`heat_overlay` but for alpha's rounding to the
    level step: at most 1 in 255, on a few pixels (counted below).
    """

    def __init__(self, scale: float, lo_fraction: float = PAPER_LO_FRACTION, max_alpha: float = PAPER_MAX_ALPHA):
        self.scale, self.lo, self.span = scale, lo_fraction * scale, scale + 1e-3 - lo_fraction * scale
        steps = np.arange(256, dtype=np.float32) / np.float32(255)
        alpha = np.minimum(steps, np.float32(max_alpha))[:, None]  # (level, 1)
        values = np.arange(256, dtype=np.float32)[None, :]  # (1, pixel value)
        self.tables = [((values + (colour[:, None] - values) * alpha) + np.float32(0.5)).astype(np.uint8).ravel()
                       for colour in _jet().T]  # 3 x (256 * 256,)

    def __call__(self, frame: np.ndarray, cam: np.ndarray) -> np.ndarray:
        """Draw in place on ``frame`` (H, W, 3) uint8 the map ``cam`` (h, w) covering it; returns ``frame``."""
        if self.scale <= 0:
            return frame
        hot = cam > self.lo
        if not hot.any():
            return frame
        height, width = frame.shape[:2]
        rows, cols = np.flatnonzero(hot.any(axis=1)), np.flatnonzero(hot.any(axis=0))
        # one cell's margin: a pixel mixes the cells either side of it
        top, bottom = max(0, int((rows[0] - 1) * height / cam.shape[0])), min(height, math.ceil((rows[-1] + 2) * height / cam.shape[0]))
        left, right = max(0, int((cols[0] - 1) * width / cam.shape[1])), min(width, math.ceil((cols[-1] + 2) * width / cam.shape[1]))
        level = (to_frame(cam, height, width)[top:bottom, left:right] - np.float32(self.lo)) / np.float32(self.span)
        index = (np.clip(level, 0.0, 1.0) * np.float32(255) + np.float32(0.5)).astype(np.int32) << 8
        box = frame[top:bottom, left:right]
        for channel, table in enumerate(self.tables):
            box[..., channel] = table.take(index + box[..., channel])
        return frame


def now_write_overlay(video: Path, track: MapTrack, out: Path, scale: float, settings: CamSettings, preset: str = "ultrafast") -> int:
    """The writer "now" (avlib.localize.write_overlay as it was, less its progress bar): RGB frames; returns the frames written."""
    info = io.probe(video)
    times = []
    with av.open(str(video), metadata_errors="ignore") as source:
        vin, ain = source.streams.video[0], source.streams.audio[0]
        vin.thread_type = "AUTO"
        height, width = info.height - info.height % 2, info.width - info.width % 2
        copy = ain.codec_context.name in COPIED_SOUND and out.suffix.lower() in (".mp4", ".mov", ".mkv")
        channels = ain.codec_context.channels if ain.codec_context.channels in AAC_LAYOUTS else 2
        sample_rate = int(ain.codec_context.sample_rate)
        resampler = av.AudioResampler(format="fltp", layout=AAC_LAYOUTS[channels], rate=sample_rate)
        scaler = VideoReformatter()  # one RGB converter for the whole video
        blend = NowBlend(scale, settings.lo_fraction, settings.max_alpha)
        with VideoSink(out, width, height, info.fps, sample_rate=sample_rate, channels=channels, preset=preset,
                       sound_from=ain if copy else None) as sink:
            for packet in source.demux(vin, ain):
                if packet.stream.type == "audio" and copy:
                    if packet.size and packet.pts is not None:
                        sink.sound_packet(packet, shift=info.video_start)
                    continue
                for frame in packet.decode():
                    if frame.time is None:
                        continue
                    time = frame.time - info.video_start
                    if packet.stream.type == "video":
                        # upright as displayed (VideoInfo.rotation), written with no rotation tag
                        image = np.ascontiguousarray(io.upright(scaler.reformat(frame, format="rgb24").to_ndarray(),
                                                                info.rotation)[:height, :width])
                        if sink.picture(blend(image, track.at(time)), time):  # a repeated timestamp cannot be muxed
                            times.append(time)
                    else:
                        # stamped by sample count from the first sound; the input's own stamps could make the resampler pad gaps
                        frame.pts = None
                        for chunk in resampler.resample(frame):
                            sink.sound(chunk.to_ndarray(), start=max(0.0, time))
            if not copy:
                for chunk in resampler.resample(None):
                    sink.sound(chunk.to_ndarray())
    return len(times)



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


def rgb_frames(path: Path, every: int) -> list[np.ndarray]:
    """Every ``every``-th frame of a video, decoded to RGB."""
    with av.open(str(path)) as source:
        return [frame.to_ndarray(format="rgb24") for index, frame in enumerate(source.decode(video=0)) if index % every == 0]


def compare_pixels(video: Path, track: MapTrack, scale: float, settings: CamSettings, every: int = 10) -> dict[str, float]:
    """The blends on every ``every``-th frame against :func:`heat_overlay` (R'G'B' uint8 drawn, and that converted to
    yuv420p as x264 is handed it): the largest difference and the share of values that differ, in 1/255 steps."""
    now, new = NowBlend(scale, settings.lo_fraction, settings.max_alpha), PlaneBlend(scale, settings.lo_fraction, settings.max_alpha)
    scaler, found = VideoReformatter(), {"now": [], "new": [], "trip": [], "change": []}
    with av.open(str(video)) as source:
        for index, frame in enumerate(source.decode(video=0)):
            if index % every:
                continue
            image, cam = frame.to_ndarray(format="rgb24"), track.at(frame.time)
            drawn = heat_overlay(image, to_frame(cam, frame.height, frame.width), scale, settings.lo_fraction, settings.max_alpha)
            assert np.array_equal(drawn, old_heat_overlay(image, to_frame(cam, frame.height, frame.width), scale,
                                                          settings.lo_fraction, settings.max_alpha))
            found["now"].append(np.abs(now(image.copy(), cam).astype(int) - drawn))
            planes = [plane.copy() for plane in yuv_planes(frame, scaler)]
            new(*planes, cam)
            decoded = frame.to_ndarray(format="yuv420p").ravel().astype(int)
            written = np.concatenate([plane.ravel() for plane in planes]).astype(int)
            reference = av.VideoFrame.from_ndarray(drawn, format="rgb24").reformat(format="yuv420p").to_ndarray().ravel().astype(int)
            found["new"].append(np.abs(written - reference))
            # what the round trip through RGB alone changes: the undrawn frame, to RGB and back, against the decoder's planes
            trip = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p").to_ndarray().ravel().astype(int)
            found["trip"].append(np.abs(trip - decoded))
            found["change"].append(np.abs((written - decoded) - (reference - trip)))  # the drawing alone, less the round trip
    stats = {}
    for name, values in found.items():
        values = np.concatenate([value.ravel() for value in values])
        stats[f"{name} max"], stats[f"{name} >0"], stats[f"{name} >2"] = int(values.max()), (values > 0).mean(), (values > 2).mean()
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the generated 640x360 video")
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
        track = blob_track(args.seconds, (45, 80))  # 640x360 resized to a 256-pixel short side, a map pixel per 8
        scale = overlay_scale(track.values(), settings.percentile)
        pixels = compare_pixels(video, track, scale, settings)
        writers = {
            "before (torch blend, new converter per frame, x264 veryfast)":
                lambda out: old_write_overlay(video, track, out, scale, settings),
            "now (RGB table blend, x264 ultrafast)": lambda out: now_write_overlay(video, track, out, scale, settings),
            f"new (write_overlay: yuv420p planes, x264 {OVERLAY_PRESET})":
                lambda out: len(write_overlay(video, track, out, scale, settings)),
            "new, x264 superfast": lambda out: len(write_overlay(video, track, out, scale, settings, preset="superfast")),
            "new, x264 veryfast": lambda out: len(write_overlay(video, track, out, scale, settings, preset="veryfast")),
        }
        names = list(writers)
        best = {name: (np.inf, np.inf) for name in names}
        sizes, counts = {}, {}
        outputs = {name: folder / f"out{index}.mp4" for index, name in enumerate(names)}
        for round_ in range(args.repeats):
            for name in names[round_ % len(names):] + names[: round_ % len(names)]:
                wall, cpu = time.perf_counter(), time.process_time()
                counts[name] = writers[name](outputs[name])
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                best[name] = (min(best[name][0], wall), min(best[name][1], cpu))
                sizes[name] = outputs[name].stat().st_size
        # the decoded outputs of now and new (both x264 ultrafast) against each other and against the RGB blend drawn
        every = 10
        drawn = [heat_overlay(image, to_frame(track.at(index * every / (30000 / 1001)), *image.shape[:2]), scale,
                              settings.lo_fraction, settings.max_alpha) for index, image in enumerate(rgb_frames(video, every))]
        decoded_now, decoded_new = rgb_frames(outputs[names[1]], every), rgb_frames(outputs[names[2]], every)
        between = np.abs(np.stack(decoded_new).astype(int) - np.stack(decoded_now))
        error_now = np.abs(np.stack(decoded_now).astype(int) - np.stack(drawn)).mean()
        error_new = np.abs(np.stack(decoded_new).astype(int) - np.stack(drawn)).mean()
    before, now = names[0], names[1]
    rows = [f"| {name} | {counts[name] / best[name][0]:.1f} | {best[before][0] / best[name][0]:.2f} | "
            f"{best[now][0] / best[name][0]:.2f} | {counts[name] / best[name][1]:.1f} | {best[before][1] / best[name][1]:.2f} | "
            f"{best[now][1] / best[name][1]:.2f} | {1000 * best[name][1] / counts[name]:.2f} | {sizes[name] / 1e6:.2f} |"
            for name in names]
    commit = git_commit() or "unknown"
    text = "\n".join([
        f"CAM overlay of a {args.seconds:g} s 640x360 video at 29.97 fps ({counts[before]} frames) with stereo 44.1 kHz sound "
        f"(bench/overlay.py); pinned to one core; best of {args.repeats} rounds, writers taking turns. Speed-ups are frames/s "
        "against the row named (wall clock, then CPU time).",
        "",
        f"Machine: {cpu_model()}, {os.cpu_count()} logical cores, {platform.system()}; python {platform.python_version()}, "
        f"av {av.__version__}, torch {torch.__version__}, numpy {np.__version__}.",
        f"Load average (1/5/15 min) before: {load_before}, after: {load()}; {time.perf_counter() - began:.0f} s; "
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; avlib commit {commit[:10]}"
        f"{' (dirty)' if git_dirty() else ''}.",
        "",
        "| writer | frames/s | vs before | vs now | CPU frames/s | CPU vs before | CPU vs now | CPU ms/frame | MB written |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        f"Pixels, on every {every}th frame (values 0..255). Before encoding: the old torch blend and heat_overlay the same; "
        f"now's RGB table blend against heat_overlay: at most {pixels['now max']}, on {100 * pixels['now >0']:.3f} % of the values; "
        f"new's yuv420p planes against heat_overlay's RGB converted to yuv420p (what now hands x264, less now's level rounding): "
        f"at most {pixels['new max']}, {100 * pixels['new >0']:.2f} % of the values differ, {100 * pixels['new >2']:.3f} % by more "
        f"than 2; the RGB round trip alone (the undrawn frame to RGB and back against the decoder's planes, which new keeps): "
        f"at most {pixels['trip max']}, {100 * pixels['trip >0']:.2f} % differ, {100 * pixels['trip >2']:.3f} % by more than 2; "
        f"the change drawn (new's less the decoder's planes against heat_overlay's converted less the round trip): "
        f"at most {pixels['change max']}, {100 * pixels['change >0']:.2f} % differ, {100 * pixels['change >2']:.3f} % by more than 2.",
        f"The decoded outputs (x264 ultrafast, crf 20) of new against now: at most {int(between.max())}, mean {between.mean():.2f}, "
        f"{100 * (between > 2).mean():.2f} % of the values by more than 2; mean distance to heat_overlay drawn on the decoded "
        f"input: now {error_now:.2f}, new {error_new:.2f}. Target (issue 20): the overlay 3x faster than before.",
    ])
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
