"""A task's real ``run`` with ``seed_processes`` workers, in a child process whose thread count tests/test_parallel.py
sets. ``ucf101``: on a miniature UCF-101 tree, every row with two training seeds; writes the accuracy table, every
test clip's probabilities, the training logs and the provenance settings to ``--out``. ``separation``: the smoke
profile (two training seeds); writes the per-pair scores, the training logs and the provenance settings.
``ablations``: the smoke profile's rows and I3D (two training seeds); the same, and the I3D's accuracies."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from avlib import determinism  # noqa: E402
from avlib.config import resolve  # noqa: E402
from avlib.tasks import ablations, separation  # noqa: E402
from avlib.tasks.ucf101 import accuracy_table, run  # noqa: E402


def logs(histories: list[dict]) -> list[dict]:
    """fit's rows without their training seconds (the only part that follows the clock)."""
    return [{part: [{key: value for key, value in row.items() if key != "elapsed_s"} for row in rows]
             for part, rows in history.items()} for history in histories]


def tiny(processes: int) -> dict:
    """The paper profile cut to a tiny pretrained network's clips, two steps, two training seeds, videos in memory."""
    return {"seed_processes": processes, **{f"ucf101.{key}": value for key, value in dict(
        window=1.2, batch_size=4, test_clips=2, eval_every=1, size=40, crop=32, fps=7.5, sample_rate=8000,
        probe_steps=1, probe_milestones=[], in_memory=True, seeds=2,
        **{"train.steps": 2, "train.lr_milestones": [], "train.log_every": 1, "train.checkpoint_every": 2,
           "train.amp": "none", "train.channels_last": False, "train.workers": 0}).items()}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--task", choices=("ucf101", "separation", "ablations"), default="ucf101")
    for name in ("--data-root", "--pretrained"):
        parser.add_argument(name, default="")
    for name in ("--checkpoints", "--out"):
        parser.add_argument(name, required=True)
    parser.add_argument("--processes", type=int, required=True)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.task == "separation":
        result = separation.run(resolve("smoke", {"seed_processes": args.processes}), checkpoint_root=args.checkpoints,
                                device="cpu", progress=False)
        result.scores().to_csv(out / "scores.csv", index=False)
        (out / "run.json").write_text(json.dumps({"determinism": determinism.record(), "histories": {
            "full": logs(result.full_histories), "unet_pit": logs(result.pit_histories)}}))
        return
    if args.task == "ablations":
        scored_here = []  # the rows this process scores itself (spawned workers import the module afresh)
        score = ablations.evaluate
        ablations.evaluate = lambda systems, *rest, **options: scored_here.append(list(systems)) or score(systems, *rest, **options)
        result = ablations.run(resolve("smoke", {"seed_processes": args.processes}), checkpoint_root=args.checkpoints,
                               device="cpu")
        result.scores.to_csv(out / "scores.csv", index=False)
        (out / "run.json").write_text(json.dumps({"determinism": determinism.record(), "i3d": result.i3d_accuracies,
                                                  "histories": {name: logs(runs) for name, runs in result.seed_runs.items()},
                                                  "scored_here": scored_here}))
        return
    result = run(resolve("paper", tiny(args.processes)), seed=3, data_root=args.data_root, checkpoint_root=args.checkpoints,
                 device="cpu", pretrained_checkpoint=args.pretrained)
    accuracy_table(result.evaluations, result.histories, "paper").to_csv(out / "accuracy.csv", index=False)
    np.savez(out / "probs.npz", **{f"{name}-{index}": scored.clip_probs for name, per_seed in result.evaluations.items()
                                   for index, scored in enumerate(per_seed)})
    (out / "run.json").write_text(json.dumps({
        "run_dir": str(result.run_dir), "determinism": determinism.record(),
        "histories": {name: logs(per_seed) for name, per_seed in result.histories.items()}}))


if __name__ == "__main__":
    main()
