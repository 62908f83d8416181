"""Peak memory of the held-out alignment evaluation against the number of held-out clips.

The held-out set of pretraining (``avlib.data.shift.evaluation_set``, ``per_video`` pairs per clip) is
scored by ``avlib.metrics.alignment_accuracy`` with a small multisensory net, clips read from their files
(``FileClips``, as the ``paper`` profile reads AudioSet). Two ways to hold the set:

- ``streamed``: the :class:`~avlib.data.shift.EvaluationSet`, decoded ``batch`` examples at a time;
- ``eager``: every example decoded into one batch first (how the set was built before it was streamed).

Each (mode, clips) runs in a fresh process; its peak resident memory (``ru_maxrss``) is the number. The clip
is the paper's window (4.2 s at 29.97 fps, 21 kHz stereo) at a reduced frame size, so a row takes seconds;
the held-out "clips" are one generated 10.1 s file listed ``clips`` times.

Usage: ``python bench/eval_memory.py [--clips 10 100] [--modes streamed eager] [--per-video 4] [--size 64]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# Run as a plain script from any directory, without installing avlib.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from avlib import io  # noqa: E402
from avlib.provenance import cpu_model, git_commit  # noqa: E402
from avlib.writer import write_video  # noqa: E402

SOURCE_RATE = 44100


def make_source(path: Path, size: int, seconds: float = 10.1) -> Path:
    """A 10.1 s, 29.97 fps, ``size`` x ``size`` H.264 + stereo AAC file with noise frames and noise audio."""
    rng = np.random.default_rng(0)
    count = int(seconds * io.PAPER_FPS)
    frames = rng.integers(0, 256, size=(count, size, size, 3), dtype=np.uint8)
    audio = (0.1 * rng.standard_normal((2, int(count / io.PAPER_FPS * SOURCE_RATE)))).astype(np.float32)
    return write_video(path, frames, io.PAPER_FPS, audio, SOURCE_RATE)


def measure(args: argparse.Namespace) -> dict:
    """One (mode, clips) row, in this process: the evaluation's wall time and the process's peak RSS."""
    import torch

    from avlib.data.clips import collate
    from avlib.data.shift import FileClips, ShiftConfig, evaluation_set
    from avlib.metrics import alignment_accuracy
    from avlib.models.multisensory import MultisensoryConfig, MultisensoryNet

    torch.set_num_threads(1)
    config = ShiftConfig(fps=io.PAPER_FPS, sample_rate=21000, size=args.size, crop=args.size - 8)
    source = FileClips([io.probe(args.file)] * args.clips, config)
    torch.manual_seed(0)
    net = MultisensoryNet(MultisensoryConfig(num_frames=config.num_frames, frame_size=config.crop,
                                             num_samples=config.num_samples, width=4, bn_momentum=0.1))
    start = time.perf_counter()
    held_out = evaluation_set(source, config, per_video=args.per_video, seed=0)
    if args.mode == "eager":
        whole = collate([held_out.example(index) for index in range(len(held_out))])
        whole["label"] = held_out.labels
        held_out = whole
    result = alignment_accuracy(net, held_out, batch_size=args.batch)
    return {"mode": args.mode, "clips": args.clips, "examples": result["n"], "accuracy": result["accuracy"],
            "seconds": time.perf_counter() - start, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--modes", nargs="+", default=["streamed", "eager"], choices=["streamed", "eager"])
    parser.add_argument("--per-video", type=int, default=4, help="pairs per held-out clip (the paper profile's 4)")
    parser.add_argument("--batch", type=int, default=16, help="examples per evaluation batch")
    parser.add_argument("--size", type=int, default=64, help="decoded frame side (the crop is 8 pixels less)")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # a child: measure one row
    parser.add_argument("--mode", default="streamed", help=argparse.SUPPRESS)
    parser.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        args.clips = args.clips[0]
        print(json.dumps(measure(args)))
        return
    with tempfile.TemporaryDirectory() as folder:
        source = make_source(Path(folder) / "clip.mp4", args.size)
        rows = []
        for mode in args.modes:
            for clips in args.clips:
                child = subprocess.run(
                    [sys.executable, __file__, "--one", "--mode", mode, "--clips", str(clips), "--file", str(source),
                     "--per-video", str(args.per_video), "--batch", str(args.batch), "--size", str(args.size)],
                    capture_output=True, text=True, check=True)
                rows.append(json.loads(child.stdout.strip().splitlines()[-1]))
                print(f"{mode} {clips}: {rows[-1]['peak_rss_mb']:.0f} MB", file=sys.stderr)
    print(f"Held-out alignment evaluation, peak RSS; {args.per_video} pairs per clip, batches of {args.batch}, "
          f"125 frames of {args.size - 8} px + 87588 stereo samples per example; {cpu_model()} ({platform.machine()}), "
          f"commit {git_commit()[:10]}\n")
    print("| mode | held-out clips | examples | peak RSS (MB) | seconds | accuracy |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['mode']} | {row['clips']} | {row['examples']} | {row['peak_rss_mb']:.0f} | {row['seconds']:.1f} "
              f"| {row['accuracy']:.4f} |")


if __name__ == "__main__":
    main()
