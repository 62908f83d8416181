"""A tiny training run for tests/test_train.py, run in a child process: killed mid-run to test resume,
or under ``torchrun --nproc_per_node=2`` to test DDP. Also supplies the model, batches and loss that the
tests use in-process, so both sides train exactly the same thing."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from avlib.train import TrainConfig, fit  # noqa: E402


@dataclass
class TinyNetConfig:
    width: int = 4
    dropout: float = 0.3


class TinyNet(nn.Module):
    """Conv3d -> BatchNorm -> ReLU -> dropout -> pool -> linear: a resume must restore BN running stats
    and the dropout RNG to match an uninterrupted run."""

    def __init__(self, config: TinyNetConfig = TinyNetConfig()) -> None:
        super().__init__()
        self.config = config
        self.features = nn.Sequential(
            nn.Conv3d(1, config.width, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm3d(config.width),
            nn.ReLU(),
            nn.Dropout(config.dropout),
            nn.AdaptiveAvgPool3d(1),
            nn.Flatten(),
        )
        self.classifier = nn.Linear(config.width, 2)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(video))


def build_model(seed: int, config: TinyNetConfig = TinyNetConfig()) -> TinyNet:
    torch.manual_seed(seed)
    return TinyNet(config)


def batches(step: int, rank: int = 0, world_size: int = 1) -> dict[str, torch.Tensor]:
    """The batch of ``step`` for ``rank``: a function of its arguments alone."""
    generator = torch.Generator().manual_seed(step * world_size + rank)
    video = torch.randn(4, 1, 4, 6, 6, generator=generator)
    label = torch.randint(0, 2, (4,), generator=generator)
    return {"video": video + label.view(-1, 1, 1, 1, 1), "label": label}


def loss_fn(model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, Any]]:
    logits = model(batch["video"])
    accuracy = (logits.argmax(dim=1) == batch["label"]).float().mean()
    return F.cross_entropy(logits, batch["label"]), {"accuracy": accuracy}


def train_config(out_dir: Path, steps: int, checkpoint_every: int) -> TrainConfig:
    """SGD with momentum, weight decay, clipping and a milestone inside the run: all must survive resume."""
    return TrainConfig(
        steps=steps, lr=0.1, lr_milestones=[6], checkpoint_every=checkpoint_every, log_every=1,
        seed=0, device="cpu", out_dir=str(out_dir),
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--checkpoint-every", type=int, required=True)
    parser.add_argument("--kill-at-step", type=int, help="SIGKILL this process when it asks for this step's batch")
    parser.add_argument("--state-dir", type=Path, help="save this rank's final state_dict and batch calls here")
    args = parser.parse_args()

    calls: list[tuple[int, int, int]] = []

    def recorded_batches(step: int, rank: int = 0, world_size: int = 1) -> dict[str, torch.Tensor]:
        if step == args.kill_at_step:
            os.kill(os.getpid(), signal.SIGKILL)
        calls.append((step, rank, world_size))
        return batches(step, rank, world_size)

    model = build_model(seed=int(os.environ.get("RANK", "0")))  # ranks start different; DDP syncs them
    fit(model, loss_fn, recorded_batches, train_config(args.out_dir, args.steps, args.checkpoint_every))
    if args.state_dir is not None:
        rank = os.environ.get("RANK", "0")
        torch.save({"model": model.state_dict(), "calls": calls}, args.state_dir / f"rank{rank}.pt")


if __name__ == "__main__":
    main()
