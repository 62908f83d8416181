"""Two training seeds side by side in two processes at 1 thread each, against the same two one after the other at
2 threads in one process: wall seconds per training step of each row that notebooks 03-05 train, at a profile's
shapes (``Experiment.seed_processes``, :mod:`avlib.parallel`).

Each row is built as ``bench/seed_cost.py`` builds it (its real network, loss and optimiser on random batches of
its shapes). (a) one worker process started with 2 threads trains seed 0, then seed 1; (b) two worker processes
started with 1 thread each train seed 0 and seed 1 at the same time. Workers build their model, take one warm-up
step, then wait for each other (a file barrier) before the timed steps, so (b) times the two truly side by side.
Both columns are wall seconds per step of one seed (the span of all timed steps / 2 x steps); (a)/(b) > 1 means
the two processes finish the seeds sooner. Wall time follows the load: run it on a quiet machine.

    python bench/seed_processes.py --profile synth --steps 10
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

# Run as a plain script from any directory, without installing avlib; the workers run this file again.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from seed_cost import rows  # noqa: E402

from avlib.config import resolve  # noqa: E402
from avlib.parallel import Job, run_jobs  # noqa: E402
from avlib.provenance import cpu_model  # noqa: E402
from avlib.train import make_optimizer  # noqa: E402


def _barrier(folder: Path, party: int, parties: int) -> None:
    """Mark ``party`` ready in ``folder`` and wait until all ``parties`` are."""
    (folder / f"ready-{party}").touch()
    while sum(1 for _ in folder.glob("ready-*")) < parties:
        time.sleep(0.01)


def time_seeds(profile: str, row: str, seeds: list[int], steps: int, folder: str, party: int, parties: int) -> dict:
    """In a worker: build ``row`` (``notebook:name``) once per seed of ``seeds``, take a warm-up step each, meet the
    other parties, then time ``steps`` steps of each seed one after the other. Returns the timed span (wall clock,
    comparable across processes) and this process's torch threads."""
    for notebook, name, _, _, model, loss_fn, batch, train in rows(resolve(profile)):
        if f"{notebook}:{name}" == row:
            break
    else:
        raise ValueError(f"no row {row!r} in profile {profile!r}")
    runs = []
    for seed in seeds:
        torch.manual_seed(seed)
        net = copy.deepcopy(model)
        net.train()
        optimizer = make_optimizer(net, train)
        runs.append((net, optimizer))

    def step(net, optimizer) -> None:
        loss, _ = loss_fn(net, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for net, optimizer in runs:
        step(net, optimizer)
    _barrier(Path(folder), party, parties)
    started = time.time()
    for net, optimizer in runs:
        for _ in range(steps):
            step(net, optimizer)
    return {"start": started, "end": time.time(), "threads": torch.get_num_threads()}


def compare(profile: str, row: str, steps: int) -> tuple[float, float, list[int], list[int]]:
    """(a) and (b) wall seconds per step of one seed, and the workers' thread counts of each."""
    with tempfile.TemporaryDirectory() as one, tempfile.TemporaryDirectory() as two:
        (sequential,) = run_jobs([Job(f"{row} seeds 0, 1 at 2 threads", time_seeds, (profile, row, [0, 1], steps, one, 0, 1))],
                                 1, threads=2, spawn=True)
        side = run_jobs([Job(f"{row} seed {seed} at 1 thread", time_seeds, (profile, row, [seed], steps, two, seed, 2))
                         for seed in (0, 1)], 2, threads=2)
    a = (sequential["end"] - sequential["start"]) / (2 * steps)
    b = (max(run["end"] for run in side) - min(run["start"] for run in side)) / (2 * steps)
    return a, b, [sequential["threads"]], [run["threads"] for run in side]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="synth")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per seed and row")
    parser.add_argument("--only", default="", help="rows to measure, e.g. 03:with_audio,04:full (default all)")
    args = parser.parse_args()
    wanted = {item.strip() for item in args.only.split(",") if item.strip()}
    names = [f"{notebook}:{name}" for notebook, name, *_ in rows(resolve(args.profile))]
    print(f"profile {args.profile}, {os.cpu_count()} cores ({cpu_model()}), {args.steps} timed steps per seed, "
          f"load average {os.getloadavg()[0]:.1f} at the start\n")
    print("| notebook | row | (a) 2 seeds in turn, 2 threads: wall s / step | (b) 2 processes x 1 thread: wall s / step "
          "| (a)/(b) |")
    print("|---|---|---:|---:|---:|")
    ratios = []
    for row in names:
        if wanted and row not in wanted:
            continue
        a, b, threads_a, threads_b = compare(args.profile, row, args.steps)
        if threads_a != [2] or threads_b != [1, 1]:
            raise RuntimeError(f"{row}: workers ran {threads_a} and {threads_b} threads, not [2] and [1, 1]")
        ratios.append(a / b)
        notebook, name = row.split(":")
        print(f"| {notebook} | {name} | {a:.3f} | {b:.3f} | {a / b:.2f} |")
    if ratios:
        print(f"\n(a)/(b) from {min(ratios):.2f} to {max(ratios):.2f}; load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
