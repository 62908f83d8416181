"""What training seeds cost: CPU seconds per training step of each row that notebooks 03-05 train, at a profile's
shapes, and the training time of the notebooks at their ``seeds``.

Each row is its real network, loss and optimiser (``avlib.tasks.ucf101``, ``avlib.tasks.separation``,
``avlib.tasks.ablations`` with the profile's settings), fed random batches of its real shapes, so this measures
the model's forward, backward and optimiser step, not decoding (the synth profile decodes its training videos once
into memory). CPU seconds (``time.process_time``) count the work whatever else runs on the machine; the wall time
is printed beside them with the load average, since a loaded machine stretches it.

    python bench/seed_cost.py --profile synth --steps 10
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

# Run as a plain script from any directory, without installing avlib.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from avlib.config import resolve  # noqa: E402
from avlib.losses import SeparationLoss  # noqa: E402
from avlib.models.multisensory import MultisensoryNet  # noqa: E402
from avlib.models.unet import MultisensoryFeatures, SeparationNet  # noqa: E402
from avlib.tasks.ablations import VARIANT_BY_NAME as ABLATION_ROWS  # noqa: E402
from avlib.tasks.ablations import build_variant  # noqa: E402
from avlib.tasks.separation import pit_config  # noqa: E402
from avlib.tasks.ucf101 import VARIANT_BY_NAME as UCF_ROWS  # noqa: E402
from avlib.tasks.ucf101 import ActionClassifier, ClassificationLoss, ClassifierConfig, clip_format  # noqa: E402
from avlib.train import make_optimizer  # noqa: E402


def ucf_batch(experiment, batch_size: int) -> dict[str, torch.Tensor]:
    clips = clip_format(experiment)
    return {"frames": torch.randint(0, 255, (batch_size, clips.num_frames, clips.crop, clips.crop, 3), dtype=torch.uint8),
            "audio": torch.rand(batch_size, 2, clips.num_samples) * 0.2 - 0.1,
            "has_audio": torch.ones(batch_size, dtype=torch.bool),
            "label": torch.randint(0, 10, (batch_size,))}


def separation_batch(config, batch_size: int) -> dict[str, torch.Tensor]:
    sources = {name: torch.rand(batch_size, 2, config.num_samples) * 0.2 - 0.1 for name in ("on_screen", "off_screen")}
    return {"frames": torch.randint(0, 255, (batch_size, config.num_video_frames, config.crop, config.crop, 3),
                                    dtype=torch.uint8),
            **sources, "mixture": sources["on_screen"] + sources["off_screen"]}


def rows(experiment):
    """(notebook, row, steps per seed, seeds, model, loss, batch, train config) of every trained row."""
    ucf, separation, ablation = experiment.ucf101, experiment.separation, experiment.ablations
    trunk = MultisensoryNet(experiment.pretrain.model)
    for name in ("with_audio", "no_audio", "random_init", "linear_probe"):
        variant = UCF_ROWS[name]
        config = ClassifierConfig(replace(trunk.config, use_sound=variant.use_sound), 15, ucf.dropout, variant.frozen)
        steps, seeds = (ucf.probe_steps, 1) if variant.frozen else (ucf.train.steps, ucf.seeds)
        yield ("03", name, steps, seeds, ActionClassifier(config), ClassificationLoss(), ucf_batch(experiment, ucf.batch_size),
               ucf.train)
    model = separation.model
    for name, pit in (("full", False), ("unet_pit", True)):
        config = pit_config(separation) if pit else model
        net = SeparationNet(config) if pit else SeparationNet(config, MultisensoryFeatures(MultisensoryNet(model.multisensory)))
        yield ("04", name, separation.pit_steps if pit else separation.train.steps, separation.seeds, net,
               SeparationLoss(config.spectral, not pit, pit, separation.magnitude_loss),
               separation_batch(config, separation.pit_batch_size if pit else separation.batch_size), separation.train)
    for name in ("full", "no_audio", "static", "scratch"):  # the I3D row is measured by its own 150-step training
        variant = ABLATION_ROWS[name]
        net = build_variant(replace(variant, initialisation="random"), separation)  # random weights: the same arithmetic
        yield ("05", name, ablation.steps, ablation.seeds, net,
               SeparationLoss(model.spectral, True, False, separation.magnitude_loss),
               separation_batch(model, separation.batch_size), separation.train)


def measure(model, loss_fn, batch, train, steps: int) -> tuple[float, float]:
    """(CPU seconds, wall seconds) per step, after one warm-up step."""
    optimizer = make_optimizer(model, train)
    model.train()

    def step() -> None:
        loss, _ = loss_fn(model, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(steps):
        step()
    return (time.process_time() - cpu) / steps, (time.perf_counter() - wall) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="synth")
    parser.add_argument("--steps", type=int, default=10, help="measured steps per row")
    parser.add_argument("--only", default="", help="rows to measure, e.g. 03:with_audio,04:full (default all)")
    args = parser.parse_args()
    experiment = resolve(args.profile)
    wanted = {item.strip() for item in args.only.split(",") if item.strip()}
    torch.manual_seed(0)
    load = os.getloadavg()[0]
    print(f"profile {args.profile}, {torch.get_num_threads()} torch thread(s), {os.cpu_count()} cores, "
          f"load average {load:.1f} at the start\n")
    print("| notebook | row | CPU s / step | wall s / step | steps x seeds | CPU s, all seeds |")
    print("|---|---|---:|---:|---:|---:|")
    totals: dict[str, float] = {}
    for notebook, name, steps, seeds, model, loss_fn, batch, train in rows(experiment):
        if wanted and f"{notebook}:{name}" not in wanted:
            continue
        cpu, wall = measure(model, loss_fn, batch, train, args.steps)
        totals[notebook] = totals.get(notebook, 0.0) + cpu * steps * seeds
        print(f"| {notebook} | {name} | {cpu:.3f} | {wall:.3f} | {steps} x {seeds} | {cpu * steps * seeds:.0f} |")
    print("\n" + ", ".join(f"notebook {notebook}: {total:.0f} CPU s of training" for notebook, total in totals.items())
          + f"; load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
