"""How fast the synthetic world is generated: clips per second for each part, and in total.

    python bench/world.py                    # the smoke world (acceptance: < 30 s on 2 cores)
    python bench/world.py --profile synth    # the default world (acceptance: < 10 min on 2 cores)

Each part is generated from scratch into a temporary folder (nothing cached is re-used) and
the folder is removed afterwards unless ``--keep DIR`` is given. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

from avlib.data.world import PARTS, generate, world_config
from avlib.data.world._common import default_workers

#: The table of each part that lists its clips.
CLIP_TABLES = {"scenes": "scenes.csv", "actions": "actions.csv", "speakers": "clips.csv", "talkers": "talkers.csv"}


def count_rows(path: Path) -> int:
    with open(path, newline="") as handle:
        return sum(1 for _ in csv.DictReader(handle))


def seconds_of_video(path: Path) -> float:
    with open(path, newline="") as handle:
        return sum(float(row["duration"]) for row in csv.DictReader(handle))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="smoke", choices=["smoke", "synth"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=None, help="processes (default: up to 2, the cores available)")
    parser.add_argument("--parts", default=",".join(PARTS), help="comma-separated subset of " + ",".join(PARTS))
    parser.add_argument("--keep", type=Path, default=None, help="write the world here and keep it")
    args = parser.parse_args()
    workers = args.workers or default_workers()
    parts = [p for p in args.parts.split(",") if p]

    root = args.keep or Path(tempfile.mkdtemp(prefix="world-bench-"))
    lines = ["| part | clips | video (s) | generation (s) | clips/s |", "|---|---:|---:|---:|---:|"]
    total_clips, total_seconds = 0, 0.0
    try:
        for part in parts:
            config = world_config(part, args.profile, args.seed)
            shutil.rmtree(root / part, ignore_errors=True)
            started = time.perf_counter()
            out = generate(part, root / part, config, workers=workers, progress=False)
            elapsed = time.perf_counter() - started
            clips = count_rows(out / CLIP_TABLES[part])
            lines.append(f"| {part} | {clips} | {seconds_of_video(out / CLIP_TABLES[part]):.0f} | {elapsed:.1f} | {clips / elapsed:.2f} |")
            total_clips, total_seconds = total_clips + clips, total_seconds + elapsed
            print(f"{part}: {clips} clips in {elapsed:.1f} s", flush=True)
        lines.append(f"| **total** | {total_clips} | | {total_seconds:.1f} | {total_clips / total_seconds:.2f} |")
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    machine = platform.processor() or platform.machine()
    print(f"\nprofile {args.profile}, seed {args.seed}, {workers} worker(s), {os.cpu_count()} CPU(s), {machine}\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
