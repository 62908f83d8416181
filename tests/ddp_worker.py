"""One step of :func:`avlib.train.fit` with each task's real model and loss, for tests/test_ddp.py.

Run under ``torchrun --nproc_per_node=2`` it trains every case on its rank's shard and saves each rank's
weights; the test runs the same cases in-process on the whole batch and compares. Tiny widths and clips
keep all four cases to seconds.

Cases: ``pretrain`` (MultisensoryNet + alignment_loss), ``cam`` (the cam=True network + alignment_loss),
``ucf101`` (ActionClassifier + ClassificationLoss), ``separation`` (SeparationNet + SeparationLoss).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from avlib.losses import (
    SeparationLoss,  # noqa: E402
    alignment_loss,  # noqa: E402
)
from avlib.models.multisensory import MultisensoryConfig, MultisensoryNet  # noqa: E402
from avlib.models.unet import SeparationConfig, SeparationNet, UNetConfig  # noqa: E402
from avlib.spectral import SpectralConfig  # noqa: E402
from avlib.tasks.ucf101 import ActionClassifier, ClassificationLoss, ClassifierConfig  # noqa: E402
from avlib.train import TrainConfig, fit  # noqa: E402

CASES = ("pretrain", "cam", "ucf101", "separation")
#: Examples in the whole batch of a step; each of the 2 ranks trains on half.
BATCH = 4
NUM_CLASSES = 3


def _trunk_config(**overrides: Any) -> MultisensoryConfig:
    """8 frames of 32 x 32 and 4096 samples: video T' = 2, audio L = 4, width 4."""
    return MultisensoryConfig(num_frames=8, frame_size=32, num_samples=4096, width=4, bn_momentum=0.1, **overrides)


def _separation_config() -> SeparationConfig:
    return SeparationConfig(
        spectral=SpectralConfig.for_sample_rate(8000, fft_size=1024), unet=UNetConfig(width=2, bn_momentum=0.1),
        multisensory=_trunk_config(), fps=29.97 / 4, size=40, crop=32,
    )


def build_model(case: str, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    if case == "pretrain":
        return MultisensoryNet(_trunk_config())
    if case == "cam":
        return MultisensoryNet(_trunk_config(cam=True))
    if case == "ucf101":
        # No dropout: each rank draws its own masks, so with dropout no step equals a single-process one.
        trunk = MultisensoryNet(_trunk_config())
        return ActionClassifier(ClassifierConfig(trunk.config, NUM_CLASSES, dropout=0.0), trunk)
    if case == "separation":
        return SeparationNet(_separation_config())
    raise ValueError(f"unknown case {case!r}; one of {CASES}")


def build_loss(case: str, model: nn.Module) -> Callable[..., Any]:
    if case in ("pretrain", "cam"):
        return alignment_loss
    if case == "ucf101":
        return ClassificationLoss()
    return SeparationLoss(model.config.spectral, uses_video=True)


def _whole_batch(case: str, step: int) -> dict[str, torch.Tensor]:
    """The step's batch of all ranks, a function of (case, step)."""
    generator = torch.Generator().manual_seed(1000 * CASES.index(case) + step)
    if case == "separation":
        config = _separation_config()
        frames = torch.randint(0, 256, (BATCH, config.num_video_frames, config.crop, config.crop, 3),
                               dtype=torch.uint8, generator=generator)
        on_screen, off_screen = (0.2 * (torch.rand(BATCH, 2, config.num_samples, generator=generator) * 2 - 1)
                                 for _ in range(2))
        return {"frames": frames, "mixture": on_screen + off_screen, "on_screen": on_screen, "off_screen": off_screen}
    config = _trunk_config()
    frames = torch.randint(0, 256, (BATCH, config.num_frames, config.frame_size, config.frame_size, 3),
                           dtype=torch.uint8, generator=generator)
    audio = torch.rand(BATCH, 2, config.num_samples, generator=generator) * 2 - 1
    if case == "ucf101":
        return {"frames": frames, "audio": audio, "has_audio": torch.tensor([True, False, True, True]),
                "label": torch.randint(0, NUM_CLASSES, (BATCH,), generator=generator)}
    return {"frames": frames, "audio": audio, "shifted_audio": audio.roll(1024, dims=2)}


def batches_for(case: str) -> Callable[..., dict[str, torch.Tensor]]:
    def batches(step: int, rank: int = 0, world_size: int = 1) -> dict[str, torch.Tensor]:
        shard = BATCH // world_size
        return {key: value[rank * shard : (rank + 1) * shard] for key, value in _whole_batch(case, step).items()}

    return batches


def train_config(case: str, out_dir: Path) -> TrainConfig:
    """One SGD step with momentum, weight decay and clipping, for every case: Adam's first step is about
    lr * sign(gradient), which turns the rounding of a near-zero gradient into a difference of 2 lr."""
    return TrainConfig(steps=1, lr=0.1, checkpoint_every=1, log_every=1, seed=0, device="cpu",
                       out_dir=str(out_dir / case))


def train_one_step(case: str, out_dir: Path, seed: int) -> nn.Module:
    model = build_model(case, seed)
    fit(model, build_loss(case, model), batches_for(case), train_config(case, out_dir), resume=False)
    return model


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    args = parser.parse_args()
    rank = int(os.environ["RANK"])
    dist.init_process_group("gloo")  # one group for all cases: fit leaves a group it did not create alone
    try:
        for case in args.cases:
            # Ranks start from different weights: DDP must hand every rank rank 0's.
            model = train_one_step(case, args.out_dir, seed=rank)
            torch.save(model.state_dict(), args.out_dir / case / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
