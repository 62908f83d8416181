"""The command line every task shares: ``python -m avlib.tasks.<task> --profile P [key=value ...]``.

The same line runs under ``torchrun --nproc_per_node N``: training is multi-process through
:func:`avlib.train.fit`, and only rank 0 writes results. ``--help`` lists every key of the task's
section with its value for the chosen profile.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any, Callable, Sequence

from avlib.checkpoint import CheckpointError
from avlib.config import PROFILES, SECTIONS, ConfigError, Experiment, flatten, parse_assignments, resolve
from avlib.io import MediaError

DEVICES = ("auto", "cpu", "cuda")
#: Top-level keys of :class:`avlib.config.Experiment` a task's command line sets without a section prefix:
#: every field but the profile and the sections.
TOP_LEVEL_KEYS = tuple(field.name for field in fields(Experiment) if field.name != "profile" and field.name not in SECTIONS)
#: The top-level keys ``--help`` lists beside the section's (the others describe the profile).
LISTED_TOP_LEVEL_KEYS = ("seed_processes",)


def is_main_process() -> bool:
    """Rank 0 under torchrun, or the only process."""
    return int(os.environ.get("RANK", "0")) == 0


def experiment_from(profile: str, section: str, assignments: Sequence[str]) -> Experiment:
    """Resolve ``profile`` with ``key=value`` assignments; keys not naming a section or a top-level field
    (``seed_processes``, ...) are ``section``'s."""
    overrides = {}
    for key, value in parse_assignments(list(assignments)).items():
        head = key.split(".", 1)[0]
        absolute = head in SECTIONS or head in TOP_LEVEL_KEYS
        overrides[key if absolute else f"{section}.{key}"] = value
    return resolve(profile, overrides)


def _start_process_group(device: str) -> bool:
    """Under torchrun, one process group for the whole task: every ``fit`` of the task (pretraining, then
    fine-tuning) reuses it, as a group made again from torchrun's store can read the last one's stale
    addresses. Returns whether a group was started."""
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return False
    import torch
    import torch.distributed as dist

    on_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    dist.init_process_group("nccl" if on_cuda else "gloo")
    return True


def keys_help(profile: str, section: str) -> str:
    """Every key of ``section`` with its value for ``profile``, one per line, then the top-level keys a
    task reads (:data:`LISTED_TOP_LEVEL_KEYS`)."""
    try:
        experiment = resolve(profile)
    except ConfigError as error:
        return str(error)
    values = flatten(getattr(experiment, section))
    top = {key: getattr(experiment, key) for key in LISTED_TOP_LEVEL_KEYS}
    width = max(len(key) for key in [*values, *top])
    lines = [f"  {key:<{width}}  {value!r}" for key, value in values.items()]
    lines += ["top-level keys (no section prefix):", *(f"  {key:<{width}}  {value!r}" for key, value in top.items())]
    return "\n".join(lines)


def run_task(task: str, section: str, description: str, run: Callable[[Experiment, argparse.Namespace], Any],
             argv: Sequence[str] | None = None) -> int:
    """Parse the command line, resolve the experiment, call ``run(experiment, args)``, print its summary.

    ``run`` returns a JSON-able summary; rank 0 prints it and writes it to ``--out``/summary.json.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    peek = argparse.ArgumentParser(add_help=False)
    peek.add_argument("--profile", default="synth")
    known, _ = peek.parse_known_args(argv)
    profile = known.profile if known.profile in PROFILES else "synth"
    parser = argparse.ArgumentParser(
        prog=f"python -m avlib.tasks.{task}", description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"keys of '{section}' (override with key=value; other sections as section.key=value), "
               f"values for --profile {profile}:\n{keys_help(profile, section)}")
    parser.add_argument("--profile", default="synth", choices=sorted(PROFILES), help="size of the run (default: synth)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data and the training (default: 0)")
    parser.add_argument("--data-root", default="", help="real datasets for the paper profile (docs/datasets.md)")
    parser.add_argument("--out", default="", help="folder for summary.json and the task's tables "
                        "(default: runs/<profile>/<task> in the checkout)")
    parser.add_argument("--checkpoints", default="", help="checkpoint root (default: the checkout's checkpoints/)")
    parser.add_argument("--device", default="auto", choices=DEVICES, help="auto: CUDA when present, else CPU")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. train.lr=1e-3")
    args = parser.parse_args(argv)
    try:
        experiment = experiment_from(args.profile, section, args.overrides)
    except ConfigError as error:
        parser.error(str(error))
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            parser.error("--device cuda, but torch sees no CUDA device")
    from avlib.config import CHECKOUT

    args.out = Path(args.out or CHECKOUT / "runs" / args.profile / task)
    args.checkpoints = args.checkpoints or None
    distributed = _start_process_group(args.device)
    try:
        summary = run(experiment, args)
    except (CheckpointError, MediaError, FileNotFoundError, ValueError) as error:  # bad input: one line
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        if distributed:
            import torch.distributed as dist

            dist.destroy_process_group()
    if is_main_process():
        args.out.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"task": task, "profile": args.profile, "seed": args.seed, "summary": summary,
                           "config": getattr(experiment, section).to_dict()}, indent=1, default=str)
        (args.out / "summary.json").write_text(text + "\n")
        print(json.dumps(summary, indent=1, default=str))
    return 0
