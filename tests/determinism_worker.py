"""Two steps of alignment pretraining of the smoke-profile network on random clips, for
tests/test_determinism.py: run in a child process whose thread settings the test chooses, it saves
the final weights to ``--out``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from avlib.config import resolve  # noqa: E402
from avlib.losses import alignment_loss  # noqa: E402
from avlib.models.multisensory import MultisensoryNet  # noqa: E402
from avlib.train import TrainConfig, fit  # noqa: E402

PROFILE = resolve("smoke").pretrain
BATCH = 2


def batches(step: int) -> dict[str, torch.Tensor]:
    """Random frames and two random audio tracks per clip: a function of ``step`` alone."""
    generator = torch.Generator().manual_seed(step)
    shift = PROFILE.shift
    frames = torch.randint(0, 256, (BATCH, shift.num_frames, shift.crop, shift.crop, 3), generator=generator, dtype=torch.uint8)
    audio = 0.1 * torch.randn(2, BATCH, 2, shift.num_samples, generator=generator)
    return {"frames": frames, "audio": audio[0], "shifted_audio": audio[1]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = MultisensoryNet(PROFILE.model)
    config = TrainConfig(steps=2, optimizer="adam", lr=1e-3, weight_decay=0.0, checkpoint_every=2, log_every=2, seed=0,
                         device="cpu", out_dir=str(args.out.parent / (args.out.stem + "-run")))
    fit(model, alignment_loss, batches, config, resume=False)
    # the separation metrics solve systems of this size; a thread count raised at run time breaks them
    system = torch.eye(512, dtype=torch.float64) * 4 + torch.rand(512, 512, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    solved = bool(torch.allclose(system @ torch.linalg.solve(system, torch.ones(512, 1, dtype=torch.float64)),
                                 torch.ones(512, 1, dtype=torch.float64)))
    torch.save({"state": model.state_dict(), "threads": torch.get_num_threads(), "solved": solved}, args.out)


if __name__ == "__main__":
    main()
