"""One step of :func:`avlib.train.fit` with each task's real model and loss, for tests/test_ddp.py.

Run under ``torchrun --nproc_per_node=2`` it trains every case on its rank's shard and saves each rank's
weights; the test runs the same cases in-process on the whole batch and compares. Tiny widths and clips
keep all four cases to seconds.

Cases: ``pretrain`` (MultisensoryNet + alignment_loss), ``cam`` (the cam=True network + alignment_loss),
``renorm`` (the paper profile's network, batch renorm after every residual sum, + alignment_loss),
``ucf101`` (ActionClassifier + ClassificationLoss), ``separation`` (SeparationNet + SeparationLoss), and the
ablation rows that train another model or loss (avlib.tasks.ablations): ``i3d_actions`` (the I3D trained on
action classes, VideoClassifierLoss), ``i3d_features`` (SeparationNet on I3D features), ``no_audio`` (the
multisensory net's audio stream removed and frozen), ``static`` (the middle frame repeated) and ``unet_pit``
(no video, permutation-invariant SeparationLoss). ``scratch`` is the ``separation`` case from random weights.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
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
from avlib.models.i3d import I3D, I3DConfig, I3DFeatures  # noqa: E402
from avlib.models.multisensory import MultisensoryConfig, MultisensoryNet  # noqa: E402
from avlib.models.unet import MultisensoryFeatures, SeparationConfig, SeparationNet, UNetConfig  # noqa: E402
from avlib.spectral import SpectralConfig  # noqa: E402
from avlib.tasks.ablations import VideoClassifierLoss  # noqa: E402
from avlib.tasks.ucf101 import ActionClassifier, ClassificationLoss, ClassifierConfig  # noqa: E402
from avlib.train import TrainConfig, fit  # noqa: E402

CASES = ("pretrain", "cam", "renorm", "ucf101", "separation", "i3d_actions", "i3d_features", "no_audio", "static",
         "unet_pit")
#: The cases whose batches are separation mixtures.
MIXTURE_CASES = ("separation", "i3d_features", "no_audio", "static", "unet_pit")
#: Examples in the whole batch of a step; each of the 2 ranks trains on half.
BATCH = 4
NUM_CLASSES = 3


def _trunk_config(**overrides: Any) -> MultisensoryConfig:
    """8 frames of 32 x 32 and 4096 samples: video T' = 2, audio L = 4, width 4."""
    return MultisensoryConfig(num_frames=8, frame_size=32, num_samples=4096, width=4, bn_momentum=0.1, **overrides)


def _separation_config(**overrides: Any) -> SeparationConfig:
    return SeparationConfig(
        spectral=SpectralConfig.for_sample_rate(8000, fft_size=1024), unet=UNetConfig(width=2, bn_momentum=0.1),
        multisensory=_trunk_config(), fps=29.97 / 4, size=40, crop=32, **overrides,
    )


def _i3d() -> I3D:
    # No dropout, as for ucf101; a tenth of the published width.
    return I3D(I3DConfig(num_classes=NUM_CLASSES, width=0.1, dropout=0.0, bn_momentum=0.1))


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
    if case == "renorm":
        return MultisensoryNet(_trunk_config(renorm=True))
    if case == "separation":
        return SeparationNet(_separation_config())
    if case == "i3d_actions":
        return _i3d()
    if case == "i3d_features":
        i3d = _i3d()
        config = _separation_config(video="custom", custom_channels=i3d.config.feature_channels)
        return SeparationNet(config, I3DFeatures(i3d)).train()
    if case == "no_audio":
        net = MultisensoryNet(_trunk_config(use_sound=False))
        net.audio.requires_grad_(False)  # as avlib.tasks.ablations.build_variant: removed, so not trained
        net.fusion.audio_conv5_1.requires_grad_(False)
        return SeparationNet(replace(_separation_config(), multisensory=net.config), MultisensoryFeatures(net)).train()
    if case == "static":
        return SeparationNet(_separation_config(static_frames=True))
    if case == "unet_pit":
        return SeparationNet(_separation_config(video="none"))
    raise ValueError(f"unknown case {case!r}; one of {CASES}")


def build_loss(case: str, model: nn.Module) -> Callable[..., Any]:
    if case in ("pretrain", "cam", "renorm"):
        return alignment_loss
    if case == "ucf101":
        return ClassificationLoss()
    if case == "i3d_actions":
        return VideoClassifierLoss()
    return SeparationLoss(model.config.spectral, uses_video=model.features is not None, pit=case == "unet_pit")


def _whole_batch(case: str, step: int) -> dict[str, torch.Tensor]:
    """The step's batch of all ranks, a function of (case, step)."""
    generator = torch.Generator().manual_seed(1000 * CASES.index(case) + step)
    if case in MIXTURE_CASES:
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
    if case == "i3d_actions":
        return {"frames": frames, "label": torch.randint(0, NUM_CLASSES, (BATCH,), generator=generator)}
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
