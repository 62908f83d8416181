"""Peak memory and time of the two apps, ``python -m avlib.localize`` and ``python -m avlib.separate``, on long videos.

Each app runs as its own process from the command line a user types, on videos generated here (moving colour
bars with stereo noise at 44.1 kHz, H.264 + AAC, 29.97 fps): 640 x 360 of 1, 5 and 30 minutes and 1080p of one
minute (``--grid small``: 1 and 5 minutes of 640 x 360 only; ``--grid long``: 30 minutes;
``--grid 1080p``: a minute of 1080p; ``--grid 720p``: a minute of 1280 x 720, the
README's timing). The networks are the synth profile's shapes with
random weights (what ``./reproduce.sh`` trains: the memory and time do not depend on the weights):

- ``localize``: the CAM network over windows and tiles, then the overlay video (``--out``);
- ``separate``: the full separation model over half-overlapping windows, the two WAVs and the two videos.

Peak memory is the process's peak resident set (``getrusage`` of the finished child); targets: 5 minutes under
1.5 GB, and less than 20 % more for 30 minutes than for 5. Times are wall-clock on a shared machine.

Usage: ``python bench/apps_memory.py [--grid full|small] [--apps localize,separate] [--out results/bench/apps_memory.md]``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
# Run as a plain script from any directory, without installing avlib.
sys.path.insert(0, str(ROOT))

from avlib.checkpoint import save_checkpoint  # noqa: E402
from avlib.config import resolve  # noqa: E402
from avlib.models.multisensory import MultisensoryNet  # noqa: E402
from avlib.models.unet import SeparationNet  # noqa: E402
from avlib.provenance import cpu_model, git_commit, git_dirty  # noqa: E402
from avlib.writer import VideoSink  # noqa: E402

GRIDS = {"full": [(640, 360, 1), (640, 360, 5), (1920, 1080, 1), (640, 360, 30)],
         "small": [(640, 360, 1), (640, 360, 5)], "720p": [(1280, 720, 1)], "long": [(640, 360, 30)], "1080p": [(1920, 1080, 1)]}
FPS = 30000 / 1001

#: Runs the app and prints its peak resident set (KiB on Linux) and wall time: a fresh process per measurement.
MEASURE = ("import resource, subprocess, sys, time\n"
           "began = time.perf_counter()\n"
           "code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)\n"
           "print(code.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, time.perf_counter() - began)\n"
           "sys.stderr.write(code.stderr[-2000:] if code.returncode else '')\n")


def make_video(path: Path, width: int, height: int, minutes: float) -> Path:
    """Moving colour bars and stereo noise, written frame by frame (memory bounded by one frame)."""
    rng = np.random.default_rng(0)
    columns = np.arange(width)
    samples = int(round(44100 / FPS))
    with VideoSink(path, width, height, FPS, sample_rate=44100, crf=28, preset="ultrafast") as sink:
        for index in range(int(minutes * 60 * FPS)):
            row = np.stack([(columns + 3 * index + shift) % 256 for shift in (0, 85, 170)], axis=-1).astype(np.uint8)
            sink.picture(np.broadcast_to(row, (height, width, 3)), index / FPS)
            sink.sound(0.05 * rng.standard_normal((2, samples)).astype(np.float32))
    return path


def checkpoints(folder: Path) -> dict[str, Path]:
    """The synth profile's CAM and separation networks, random weights, saved as the tasks save them."""
    experiment = resolve("synth")
    torch.manual_seed(0)
    cam = folder / "cam.pt"
    save_checkpoint(cam, model=MultisensoryNet(experiment.pretrain.model), step=0,
                    config={"run": {"pretrain": {"shift": asdict(experiment.pretrain.shift)}, "cam": asdict(experiment.cam),
                                    "profile": "synth"}})
    separation = folder / "separation.pt"
    save_checkpoint(separation, model=SeparationNet(experiment.separation.model), step=0,
                    config={"run": {"separation": experiment.separation.to_dict(), "profile": "synth"}})
    return {"localize": cam, "separate": separation}


def measure(command: list[str]) -> tuple[float, float, str]:
    """(peak RSS in MB, seconds, error) of one run of ``command``."""
    completed = subprocess.run([sys.executable, "-c", MEASURE, *command], capture_output=True, text=True,
                               env={**os.environ, "PYTHONPATH": str(ROOT)})
    code, peak, seconds = completed.stdout.split()
    return int(peak) / 1024, float(seconds), "" if code == "0" else completed.stderr.strip().splitlines()[-1]


def write_table(rows: list, apps: list[str], began: float, out: Path) -> str:
    """The results table so far, printed to ``out``."""
    lines = ["| app | video | minutes | peak memory (MB) | time (s) | time per video minute (s) | video encoded in (s) | error |",
             "|---|---|---:|---:|---:|---:|---:|---|"]
    lines += [f"| {app} | {size} | {minutes:g} | {peak:.0f} | {seconds:.0f} | {seconds / minutes:.0f} | {encoded:.0f} | {error} |"
              for app, size, minutes, peak, seconds, encoded, error in rows]
    growth = []
    for app in apps:
        peaks = {minutes: peak for name, size, minutes, peak, *_ in rows if name == app and size == "640x360"}
        if 5 in peaks and 30 in peaks:
            growth.append(f"{app}: {100 * (peaks[30] / peaks[5] - 1):+.1f} % from 5 to 30 minutes")
        if 5 in peaks:
            growth.append(f"{app}: {peaks[5] / 1024:.2f} GB for 5 minutes")
    commit = git_commit() or "unknown"
    text = "\n".join([
        "Peak resident memory of each app's command line on generated videos (H.264 + AAC, 29.97 fps, stereo 44.1 kHz); "
        "synth-profile networks with random weights; --device cpu",
        "",
        f"Machine: {cpu_model()}, {os.cpu_count()} logical cores, {platform.system()}; python {platform.python_version()}, "
        f"torch {torch.__version__}; load average now {'/'.join(f'{v:.1f}' for v in os.getloadavg())}; "
        f"{time.perf_counter() - began:.0f} s; {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; "
        f"avlib commit {commit[:10]}{' (dirty)' if git_dirty() else ''}.",
        "",
        *lines,
        "",
        "Targets: 5 minutes under 1.5 GB; less than 20 % growth from 5 to 30 minutes. " + "; ".join(growth),
    ])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grid", choices=sorted(GRIDS), default="full")
    parser.add_argument("--apps", default="localize,separate")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "bench" / "apps_memory.md")
    args = parser.parse_args()
    apps = args.apps.split(",")
    began = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory(prefix="avlib-bench-apps-") as folder:
        folder = Path(folder)
        networks = checkpoints(folder)
        for width, height, minutes in GRIDS[args.grid]:
            start = time.perf_counter()
            video = make_video(folder / f"{width}x{height}_{minutes}min.mp4", width, height, minutes)
            encoded = time.perf_counter() - start
            print(f"{video.name}: encoded in {encoded:.0f} s", flush=True)
            for app in apps:
                out = folder / f"{app}_out"
                target = ["--out", str(out / "overlay.mp4"), "--mkdir"] if app == "localize" else ["--out", str(out)]
                peak, seconds, error = measure([sys.executable, "-m", f"avlib.{app}", str(video), "--checkpoint",
                                                str(networks[app]), "--device", "cpu", *target])
                rows.append((app, f"{width}x{height}", minutes, peak, seconds, encoded, error))
                print(f"  {app}: peak {peak:.0f} MB, {seconds:.0f} s {error}", flush=True)
                subprocess.run(["rm", "-rf", str(out)], check=True)
                write_table(rows, apps, began, args.out)
            video.unlink()
    print(write_table(rows, apps, began, args.out))
if __name__ == "__main__":
    main()
