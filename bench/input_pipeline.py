"""Paper clips per second of the training input pipeline, raw and prepared AudioSet-like files, per core and with 2 workers.

A paper clip is one alignment example of the ``paper`` profile (:class:`avlib.data.shift.ShiftConfig`
defaults, docs/paper.md §1): a 4.2 s window, 125 frames at 29.97 fps squashed to 256 x 256 and randomly
cropped to 224 x 224 (flipped with p = 0.5), its 87 588 stereo samples at 21 kHz, and the shifted audio of
the same clip: what :class:`avlib.data.shift.ShiftBatches` over :class:`avlib.data.shift.FileClips` builds
for :func:`avlib.train.fit`, in batches of 5 (the paper's videos per GPU).

Files are generated here, AudioSet-like: 10 s, 29.97 fps, H.264 (x264 ``veryfast``, average bit rate
600 kb/s at 640 x 360 and 2 Mb/s at 1280 x 720, about YouTube's, x264's default keyframe interval of 250
frames: one keyframe per clip, as a cut with default settings leaves it) and AAC stereo 44.1 kHz 128 kb/s;
the picture is a panned texture with a moving disc and sensor-like noise. Each is also prepared with
:mod:`avlib.data.prepare` at its defaults (audio as 21 kHz FLAC, examples read in one pass by
:meth:`avlib.data.shift.FileClips.pair`), and, for the row "prepared before", with ``audio_rate=0`` (AAC packets
copied) and read as before that (:class:`avlib.data.shift.SeparateReads`), in the same run and load.

Measured for each set of files:

- **1 core**: the process pinned to one core (FFmpeg then decodes in one thread), building the batches of
  steps 0, 1, ... in the process: clips/s by wall clock and by process CPU time (less disturbed by other
  processes on a shared machine);
- **2 workers**: fit's DataLoader (:func:`avlib.train._loader_source`, 2 worker processes, prefetch 2, on
  every core), clips/s by wall clock.

Beside them: the model's appetite as **quoted** in issue 15 (a plain restatement of the network trained 113
videos/s on one H100, bf16, channels-last, compiled; the goal is 250), not measured here, and the cores
that would feed it at the measured per-core rate. Target: 16 clips/s per core.

Usage: ``python bench/input_pipeline.py [--quick] [--clips 15] [--out results/bench/input_pipeline.md]``.
"""

from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "AVLIB_THREADS"):  # one thread per process, before torch loads
    os.environ.setdefault(_name, "1")

import argparse  # noqa: E402
import datetime  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from fractions import Fraction  # noqa: E402
from pathlib import Path  # noqa: E402

import av  # noqa: E402
import numpy as np  # noqa: E402
import soxr  # noqa: E402
import torch  # noqa: E402

# Run as a plain script from any directory, without installing avlib.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from avlib import io  # noqa: E402
from avlib.data.prepare import PrepareSettings, prepare_file  # noqa: E402
from avlib.data.shift import FileClips, SeparateReads, ShiftBatches, ShiftConfig, make_example  # noqa: E402
from avlib.provenance import cpu_model, git_commit, git_dirty  # noqa: E402
from avlib.train import TrainConfig, _loader_source  # noqa: E402

TARGET_PER_CORE = 16.0

QUOTED_APPETITE = 113.0  # videos/s, one H100, quoted in issue 15, not measured here
QUOTED_GOAL = 250.0
BATCH = 5
SIZES = {"640x360": (640, 360, 600_000), "1280x720": (1280, 720, 2_000_000)}
FPS = Fraction(30000, 1001)
SOURCE_RATE = 44100


def make_audioset_like(path: Path, width: int, height: int, bit_rate: int, seed: int, seconds: float = 10.0) -> Path:
    """A 10 s H.264 + AAC mp4 as described in the module docstring, written frame by frame."""
    rng = np.random.default_rng(seed)
    count = int(seconds * FPS)
    pad = 96
    yy, xx = np.mgrid[0 : height + pad, 0 : width + pad].astype(np.float32)
    coarse = rng.uniform(0, 1, size=((height + pad) // 16 + 2, (width + pad) // 16 + 2)).astype(np.float32)
    blobs = np.kron(coarse, np.ones((16, 16), np.float32))[: height + pad, : width + pad]
    texture = np.stack([90 + 60 * np.sin(xx / 37) + 60 * blobs, 110 + 50 * np.cos(yy / 23) + 50 * blobs,
                        80 + 40 * np.sin((xx + yy) / 53) + 70 * blobs], axis=-1).clip(0, 255).astype(np.uint8)
    noise = [rng.integers(-6, 7, size=(height, width, 3), dtype=np.int16) for _ in range(5)]
    gy, gx = np.mgrid[0:height, 0:width]
    samples = int(round(count / FPS * SOURCE_RATE))
    t = np.arange(samples) / SOURCE_RATE
    audio = (0.2 * np.sin(2 * np.pi * 330 * t) * (1 + np.sin(2 * np.pi * 0.7 * t)) / 2
             + 0.05 * rng.standard_normal((2, samples))).astype(np.float32)
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.codec_context.options = {"preset": "veryfast"}
        video.codec_context.bit_rate = bit_rate
        sound = container.add_stream("aac", rate=SOURCE_RATE, layout="stereo")
        sound.codec_context.bit_rate = 128_000
        position = 0
        for index in range(count):
            while position < samples and position / SOURCE_RATE <= index / FPS:  # interleave in time order
                chunk = np.ascontiguousarray(audio[:, position : position + 1024])
                frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
                frame.sample_rate, frame.pts = SOURCE_RATE, position
                for packet in sound.encode(frame):
                    container.mux(packet)
                position += chunk.shape[1]
            dy, dx = int(pad / 2 + 40 * math.sin(index / 50)), (2 * index) % pad  # a slow camera pan
            image = texture[dy : dy + height, dx : dx + width].astype(np.int16) + noise[index % len(noise)]
            disc = (gx - width / 2 - width / 3 * math.sin(index / 20)) ** 2 + (gy - height / 2) ** 2 < (height / 8) ** 2
            image[disc] = (240, 230, 40)
            frame = av.VideoFrame.from_ndarray(image.clip(0, 255).astype(np.uint8), format="rgb24")
            frame.pts, frame.time_base = index, 1 / FPS
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        for packet in sound.encode():
            container.mux(packet)
    return path


def batches_of(paths: list[Path], one_pass: bool = True) -> ShiftBatches:
    """The paper's alignment batches over ``paths`` read from their files (in one pass each, or as :class:`SeparateReads`)."""
    clips = FileClips([io.probe(path) for path in paths], ShiftConfig())
    return ShiftBatches(clips if one_pass else SeparateReads(clips), ShiftConfig(), BATCH, seed=0)


def per_core(paths: list[Path], steps: int, one_pass: bool = True) -> tuple[float, float]:
    """(wall clips/s, CPU clips/s) building ``steps`` batches in this process, pinned to one core."""
    everything = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(everything)})
    try:
        batches = batches_of(paths, one_pass)
        make_example(batches.source, 0, batches.generator(10_000), batches.config, train=True)  # warm caches and imports
        began_wall, began_cpu = time.perf_counter(), time.process_time()
        for step in range(steps):
            batches(step)
        wall, cpu = time.perf_counter() - began_wall, time.process_time() - began_cpu
    finally:
        os.sched_setaffinity(0, everything)
    return steps * BATCH / wall, steps * BATCH / cpu


def with_workers(paths: list[Path], steps: int, one_pass: bool = True, workers: int = 2) -> float:
    """Wall clips/s of fit's DataLoader with ``workers`` processes: ``steps`` batches (a multiple of ``workers``,
    so that every worker builds as many) from the loader's creation, its workers' start included."""
    steps = workers * math.ceil(steps / workers)
    batches = batches_of(paths, one_pass)
    config = TrainConfig(steps=steps, workers=workers, prefetch=2, device="cpu")
    began = time.perf_counter()
    next_batch = _loader_source(batches, 0, config, rank=0, world_size=1, pin_memory=torch.cuda.is_available())
    for step in range(steps):
        next_batch(step)
    wall = time.perf_counter() - began
    del next_batch
    return steps * BATCH / wall


def readings(raw, former, prepared) -> tuple:
    """(label, files, one-pass reads) of each row: the raw files, the prepared ones as before, the prepared ones."""
    return ("raw", raw, True), ("prepared before", former, False), ("prepared", prepared, True)


def frame_difference(raw: Path, prepared: Path, windows: int = 3) -> tuple[float, float, int, float, float, float, float]:
    """(mean, 99.9th percentile, max) abs difference in 0-255 of the frames read from both files at the paper's
    size; the max abs difference of their audio and its RMS over the raw audio's RMS; the max abs difference of the
    prepared audio from the raw track decoded from its start and resampled once to 21 kHz (the generated files' audio
    starts at time 0), and the RMS ratio of the raw read's; over ``windows`` evenly spaced windows."""
    means, tails, peak, audio_peak, audio_power, raw_power, again_power = [], [], 0, 0.0, 0.0, 0.0, 0.0
    with av.open(str(raw)) as container:
        track = np.concatenate([frame.to_ndarray() for frame in container.decode(audio=0)], axis=1)
    reference = soxr.resample(track.T, SOURCE_RATE, io.PAPER_SAMPLE_RATE, quality="HQ").T
    reference_peak = 0.0
    latest = io.probe(raw).usable_duration - io.PAPER_DURATION - 0.1
    for start in np.linspace(0.0, latest, windows):
        a = io.read_clip(raw, float(start), size=256)
        b = io.read_clip(prepared, float(start), size=256)
        difference = np.abs(a.frames.astype(np.int16) - b.frames)
        means.append(float(difference.mean()))
        tails.append(float(np.percentile(difference, 99.9)))
        peak = max(peak, int(difference.max()))
        audio_peak = max(audio_peak, float(np.abs(a.audio - b.audio).max()))
        audio_power += float(np.square(a.audio - b.audio).sum())
        raw_power += float(np.square(a.audio).sum())
        first = int(math.floor(float(start) * io.PAPER_SAMPLE_RATE + 1e-6))  # the window's first sample on the 21 kHz grid
        expected = reference[:, first : first + b.audio.shape[1]]
        reference_peak = max(reference_peak, float(np.abs(b.audio - expected).max()))
        again_power += float(np.square(a.audio - expected).sum())
    return (float(np.mean(means)), max(tails), peak, audio_peak, math.sqrt(audio_power / raw_power), reference_peak,
            math.sqrt(again_power / raw_power))


def machine() -> str:
    return (f"{cpu_model()}, {os.cpu_count()} logical cores, {platform.system()}; python {platform.python_version()}, "
            f"av {av.__version__} (FFmpeg {av.ffmpeg_version_info}), torch {torch.__version__}, numpy {np.__version__}")


def load() -> str:
    return "/".join(f"{value:.1f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 clips per core measurement, 10 with 2 workers")
    parser.add_argument("--clips", type=int, default=15, help="clips per measurement (rounded up to batches of 5)")
    parser.add_argument("--files", type=int, default=1, help="generated files per frame size (windows are drawn at random)")
    parser.add_argument("--out", type=Path, default=None, help="also write the table to this Markdown file")
    args = parser.parse_args()
    clips, files = (BATCH, args.files) if args.quick else (args.clips, args.files)
    steps = max(1, math.ceil(clips / BATCH))
    settings, before = PrepareSettings(), PrepareSettings(audio_rate=0)

    load_before, began = load(), time.perf_counter()
    rows, notes = [], []
    with tempfile.TemporaryDirectory() as scratch:
        for label, (width, height, bit_rate) in SIZES.items():
            raw_dir, prepared_dir = Path(scratch) / label / "raw", Path(scratch) / label / "prepared"
            raw_dir.mkdir(parents=True)
            generated = time.perf_counter()
            raw = [make_audioset_like(raw_dir / f"clip{index}.mp4", width, height, bit_rate, seed=index) for index in range(files)]
            generated = time.perf_counter() - generated
            prepare_began = time.process_time()
            prepared = [prepared_dir / path.name for path in raw]
            for source, target in zip(raw, prepared):
                prepare_file(source, target, settings)
            prepare_cpu = (time.process_time() - prepare_began) / files
            former = [Path(scratch) / label / "before" / path.name for path in raw]
            for source, target in zip(raw, former):
                prepare_file(source, target, before)
            mean, tail, peak, audio_peak, audio_rms, reference_peak, raw_rms = frame_difference(raw[0], prepared[0])
            kbits = [8 * sum(path.stat().st_size for path in group) / len(group) / 10_000 for group in (raw, prepared)]
            hour = [kbit * 3600 / 8 / 1000 for kbit in kbits]  # MB per hour of video
            notes.append(f"{label}: generated in {generated:.0f} s; raw {kbits[0]:.0f} kb/s ({hour[0]:.0f} MB per hour), prepared "
                         f"{kbits[1]:.0f} kb/s ({hour[1]:.0f} MB per hour; {io.probe(prepared[0]).width}x{io.probe(prepared[0]).height}, "
                         f"{io.probe(prepared[0]).audio_codec} {io.probe(prepared[0]).sample_rate} Hz); preparing took "
                         f"{prepare_cpu:.1f} s of CPU per 10 s file; prepared vs raw frames at 256x256: abs difference mean "
                         f"{mean:.2f}, 99.9th percentile {tail:.0f}, max {peak} (0-255, largest at the edges of saturated colours: "
                         f"4:2:0 chroma at 128x128); audio max abs difference {audio_peak:.3f}, RMS difference {100 * audio_rms:.1f} % "
                         f"of the raw audio's. Against the raw track decoded from its start and resampled once to 21 kHz, "
                         f"the prepared audio differs by at most {reference_peak:.1e} (16-bit rounding), the raw read by "
                         f"{100 * raw_rms:.1f} % RMS: reading decodes AAC from 0.1 s before the window, and this decoder's "
                         f"output after a seek differs from a decode from the start for about a second (most in the "
                         f"window's first 0.3 s) on this white-noise audio")
            for kind, paths, one_pass in readings(raw, former, prepared):
                wall, cpu = per_core(paths, steps, one_pass)
                two = with_workers(paths, steps, one_pass)
                rows.append((label, kind, wall, cpu, two))
                print(f"{label} {kind}: 1 core {wall:.2f} clips/s (CPU {cpu:.2f}), 2 workers {two:.2f}", flush=True)
    dirty = git_dirty()
    lines = [
        f"Paper clips (alignment examples: 125 frames at 29.97 fps squashed to 256x256, cropped to 224x224, 4.2 s of "
        f"21 kHz stereo and its shifted audio) per second from AudioSet-like 10 s H.264 + AAC files; {files} file(s) per "
        f"size, {steps * BATCH} clips per core measurement, {2 * math.ceil(steps / 2) * BATCH} with 2 workers, in batches of "
        f"{BATCH}; prepared = `python -m avlib.data.prepare` "
        f"defaults ({settings.size}x{settings.size} {settings.resize}, keyframe every {settings.keyint} frames, "
        f"x264 crf {settings.crf} tune {settings.tune}, audio 16-bit stereo FLAC at {settings.audio_rate} Hz), each example "
        f"read in one pass (frames cropped and flipped as they are converted, into the batch; the shifted audio from the "
        f"same open file); 'before' = the same video with the AAC packets copied, read as before (window, then crop, "
        f"then the shifted audio from a second opening).",
        "",
        f"Machine: {machine()}.",
        f"Load average (1/5/15 min) before: {load_before}, after: {load()} (the machine is shared: wall-clock rates are "
        f"lower bounds, CPU-time rates are closer to an idle core's); {time.perf_counter() - began:.0f} s; "
        f"{datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}; avlib commit {git_commit()[:10]}"
        f"{' (with local changes)' if dirty else ''}.",
        "",
        f"| files | reading | 1 core, clips/s | 1 core, CPU clips/s | 2 workers, clips/s | CPU rate vs target {TARGET_PER_CORE:.0f}/core "
        f"| cores to feed {QUOTED_APPETITE:.0f}/s | cores to feed {QUOTED_GOAL:.0f}/s |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, kind, wall, cpu, two in rows:
        lines.append(f"| {label} | {kind} | {wall:.2f} | {cpu:.2f} | {two:.2f} | {cpu / TARGET_PER_CORE:.2f} | "
                     f"{math.ceil(QUOTED_APPETITE / cpu)} | {math.ceil(QUOTED_GOAL / cpu)} |")
    lines += ["", *[f"- {note}" for note in notes]]
    for label in SIZES:
        raw_cpu, before_cpu, prepared_cpu = (next(row[3] for row in rows if row[:2] == (label, kind))
                                             for kind, _, _ in readings(None, None, None))
        lines.append(f"- {label}: preparing gains x{prepared_cpu / raw_cpu:.1f} per core (CPU time); FLAC at 21 kHz and one-pass "
                     f"reads gain x{prepared_cpu / before_cpu:.2f} over the prepared files and reads before them (same run)")
    lines += [
        f"- The model's appetite is quoted, not measured: a plain restatement of the network trained "
        f"{QUOTED_APPETITE:.0f} videos/s on one H100 (bf16, channels-last, compiled), the goal is {QUOTED_GOAL:.0f} "
        f"(issue 15). Cores to feed it = appetite / the per-core CPU-time rate, rounded up.",
    ]
    table = "\n".join(lines)
    print(table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table + "\n")


if __name__ == "__main__":
    main()
