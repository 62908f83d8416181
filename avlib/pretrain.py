"""Self-supervised alignment ("shift") pretraining of the multisensory network (paper section 3).

The loss is the sigmoid cross-entropy of one logit: 1 for frames with their own audio, 0 for
the same frames with audio shifted in time. Each video of a batch appears with both, and the
visual stream runs once for the pair (:meth:`MultisensoryNet.forward_pair`), so every batch is
balanced, as the official code's per-GPU batches were.

The paper trains in two stages (``src/shift_params.py``): ``shift_lowfps`` (every 4th frame,
7.49 fps, batch 15 per GPU, 30 k iterations), then ``shift_v1`` (29.97 fps, batch 5 per GPU)
initialised from it with the second block of each stage re-initialised (``conv2_2``,
``conv3_2``, ``conv4_2``, ``conv5_2`` are excluded from the restore). :class:`Stage` holds one.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avlib.checkpoint import load_checkpoint, load_model_state
from avlib.data.shift import ClipSource, ShiftBatches, ShiftConfig, evaluation_set
from avlib.models.multisensory import MultisensoryConfig, MultisensoryNet, normalize_frames
from avlib.train import TrainConfig, fit

#: The low-frame-rate stage keeps every 4th frame of 29.97 fps video (``subsample_frames = 4``).
LOW_FPS = 29.97 / 4
#: Blocks the official code re-initialises when the full-rate stage starts from the low-fps one.
PAPER_REINIT = ("conv2_2", "conv3_2", "conv4_2", "conv5_2")


@dataclass(frozen=True)
class Stage:
    """One stage of the schedule: its frame rate, batch (videos per step) and last step."""

    name: str
    fps: float
    batch_size: int
    steps: int  # the stage ends at this global step (the paper's counts include earlier stages)
    reinit: tuple[str, ...] = ()  # module-name prefixes re-initialised when this stage starts from the last


@dataclass(frozen=True)
class PretrainConfig:
    shift: ShiftConfig
    model: MultisensoryConfig
    stages: tuple[Stage, ...]
    optimizer: str = "sgd"  # the paper's: SGD with momentum 0.9
    lr: float = 1e-2
    momentum: float = 0.9
    weight_decay: float = 1e-5
    grad_clip: float = 5.0
    eval_every: int = 100
    checkpoint_every: int = 100
    eval_pairs_per_video: int = 4
    device: str = "auto"
    amp: str = "none"
    channels_last: bool = False
    compile: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


def paper_pretrain_config() -> PretrainConfig:
    """The official two-stage schedule (per-GPU batches; the number of GPUs is unknown)."""
    return PretrainConfig(
        shift=ShiftConfig(),
        model=MultisensoryConfig(),
        stages=(Stage("shift_lowfps", LOW_FPS, 15, 30_000),
                Stage("shift_v1", 29.97, 5, 650_000, reinit=PAPER_REINIT)),
        eval_every=10_000, checkpoint_every=5_000, device="auto", amp="bf16", channels_last=True,
    )


def alignment_loss(model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
    """Mean sigmoid cross-entropy over the aligned (label 1) and shifted (label 0) copies."""
    aligned, shifted = model.forward_pair(normalize_frames(batch["frames"]), batch["audio"], batch["shifted_audio"])
    logits = torch.cat([aligned, shifted]).float()
    labels = torch.cat([torch.ones_like(aligned), torch.zeros_like(shifted)]).float()
    loss = F.binary_cross_entropy_with_logits(logits, labels)
    accuracy = ((logits > 0).float() == labels).float().mean().item()
    return loss, {"accuracy": accuracy}


def wilson_interval(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion (sound at small n and near 0 or 1)."""
    if trials == 0:
        return float("nan"), float("nan")
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return centre - half, centre + half


@torch.no_grad()
def alignment_accuracy(model: MultisensoryNet, held_out: dict[str, Tensor], batch_size: int = 16,
                       device: torch.device | str = "cpu") -> dict[str, float]:
    """Held-out accuracy of the official protocol: each clip is scored once, with its aligned audio
    (label 1) or its shifted audio (label 0), 50/50; correct when (logit > 0) == label.

    Also the pairwise accuracy (aligned logit > shifted logit, ties counted half), a
    lower-variance view of the same skill. Returns accuracy, its 95 % Wilson interval, n, and pair_accuracy.
    """
    was_training = model.training
    model.eval()
    aligned_logits, shifted_logits = [], []
    for first in range(0, len(held_out["label"]), batch_size):
        part = {key: value[first : first + batch_size].to(device) for key, value in held_out.items()}
        aligned, shifted = model.forward_pair(normalize_frames(part["frames"]), part["audio"], part["shifted_audio"])
        aligned_logits.append(aligned.float().cpu())
        shifted_logits.append(shifted.float().cpu())
    model.train(was_training)
    aligned, shifted = torch.cat(aligned_logits), torch.cat(shifted_logits)
    labels = held_out["label"]
    scored = torch.where(labels > 0, aligned, shifted)
    correct = int(((scored > 0).float() == labels).sum())
    low, high = wilson_interval(correct, len(labels))
    return {"accuracy": correct / len(labels), "ci_low": low, "ci_high": high, "n": len(labels),
            "pair_accuracy": float(((aligned > shifted).float() + 0.5 * (aligned == shifted).float()).mean())}


def stage_steps(config: PretrainConfig, index: int) -> int:
    """Optimizer steps of stage ``index`` (``Stage.steps`` counts from the start of the schedule)."""
    return config.stages[index].steps - (config.stages[index - 1].steps if index else 0)


def build_model(config: PretrainConfig) -> MultisensoryNet:
    return MultisensoryNet(config.model)


def _reinitialise(model: MultisensoryNet, prefixes: Sequence[str], seed: int) -> None:
    torch.manual_seed(seed)
    fresh = MultisensoryNet(model.config)
    state = model.state_dict()
    for name, value in fresh.state_dict().items():
        if any(name.startswith(prefix) for prefix in prefixes):
            state[name] = value
    model.load_state_dict(state)


def pretrain(
    config: PretrainConfig,
    sources: Callable[[float], tuple[ClipSource, ClipSource]],
    out_dir: str | Path,
    *,
    seed: int = 0,
    resume: bool = True,
    run_config: dict | None = None,
) -> dict:
    """Run every stage of ``config``; return each stage's history, the final checkpoint path and
    the last stage's held-out evaluation set (``held_out``).

    ``sources(fps)`` gives (training clips, held-out clips) decoded at a stage's frame rate.
    Stage ``k`` writes ``out_dir/<stage name>/``; a stage that already finished is skipped, an
    interrupted one resumes. Each stage after the first starts from the previous stage's
    weights, with ``Stage.reinit`` blocks re-initialised. The initial weights are drawn after
    ``torch.manual_seed(seed)``, so they do not depend on the caller's random state.
    """
    out_dir = Path(out_dir)
    # initial weights from ``seed`` alone, not from what the caller drew before (notebooks 02-05 may train it)
    torch.manual_seed(seed)
    model = build_model(config)
    results = {"stages": {}, "checkpoint": None, "held_out": None}
    device = torch.device("cuda" if config.device in ("cuda", "auto") and torch.cuda.is_available() else "cpu")
    for index, stage in enumerate(config.stages):
        stage_dir = out_dir / stage.name
        shift = replace(config.shift, fps=stage.fps)
        train_source, held_out_source = sources(stage.fps)
        held_out = evaluation_set(held_out_source, shift, per_video=config.eval_pairs_per_video, seed=seed)
        checkpoint = stage_dir / "checkpoint.pt"
        if index > 0 and not checkpoint.exists():
            previous = load_checkpoint(out_dir / config.stages[index - 1].name / "checkpoint.pt",
                                       expected_model_class="MultisensoryNet")
            load_model_state(model, previous["model"], out_dir / config.stages[index - 1].name / "checkpoint.pt")
            _reinitialise(model, stage.reinit, seed + index)
        train = TrainConfig(
            steps=stage_steps(config, index), optimizer=config.optimizer, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
            grad_clip=config.grad_clip, checkpoint_every=config.checkpoint_every, log_every=max(1, min(10, config.eval_every)),
            seed=seed + index, device=config.device, amp=config.amp, channels_last=config.channels_last,
            compile=config.compile, out_dir=str(stage_dir),
        )
        history = fit(
            model, alignment_loss, ShiftBatches(train_source, shift, stage.batch_size, seed=seed + 1000 * index), train,
            resume=resume, eval_fn=lambda net: alignment_accuracy(net, held_out, device=device), eval_every=config.eval_every,
            run_config={"pretrain": config.to_dict(), "stage": stage.name, **(run_config or {})},
        )
        results["stages"][stage.name] = history
        results["checkpoint"] = checkpoint
        results["held_out"] = held_out
    return results


def scene_split(profile, seed: int = 0) -> tuple[Path, list[Path], list[Path]]:
    """(scenes root, training clips, held-out clips) of a synthetic profile's world, generated on
    first use: the last ``profile.held_out_scenes`` of the sorted clips are held out."""
    from avlib.data.world import generate_world

    scenes_root = generate_world(profile.name, seed=seed, parts=("scenes",), progress=False)["scenes"]
    clips = sorted((scenes_root / "clips").glob("*.mp4"))
    held = max(1, round(len(clips) * profile.held_out_scenes))
    return scenes_root, clips[:-held], clips[-held:]


def scene_sources(profile, seed: int = 0, data_root: str | Path = "") -> tuple[Callable[[float], tuple[ClipSource, ClipSource]], int, int]:
    """``sources(fps)`` for :func:`pretrain` from a profile, and the numbers of training and held-out clips.

    Synthetic profiles: the world's scenes (generated on first use), the last
    ``profile.held_out_scenes`` of them held out, decoded once and cached beside the world.
    ``paper``: AudioSet clips under ``data_root/audioset/{train,test}/`` (docs/datasets.md).
    """
    from avlib.data.shift import DecodedClips, FileClips

    if profile.synthetic:
        scenes_root, train_paths, held_out_paths = scene_split(profile, seed)
        cache = Path(scenes_root).parent / "decoded"

        def sources(fps: float):
            shift = replace(profile.pretrain.shift, fps=fps)
            return (DecodedClips(train_paths, shift, cache_dir=cache, progress=True),
                    DecodedClips(held_out_paths, shift, cache_dir=cache, progress=True))
    else:
        from avlib.data.index import build_index

        if not data_root:
            raise ValueError("the paper profile reads AudioSet clips: pass --data-root (see docs/datasets.md)")
        train_paths = build_index(Path(data_root) / "audioset" / "train", skip_bad=True).with_audio()
        held_out_paths = build_index(Path(data_root) / "audioset" / "test", skip_bad=True).with_audio()

        def sources(fps: float):
            shift = replace(profile.pretrain.shift, fps=fps)
            return FileClips(train_paths, shift), FileClips(held_out_paths, shift)

    return sources, len(train_paths), len(held_out_paths)


def ensure_pretrained(profile_name: str, seed: int = 0, *, data_root: str | Path = "", checkpoint_root: str | Path | None = None,
                      device: str = "auto") -> Path:
    """The profile's pretrained checkpoint, training it first if it is missing (or unfinished).

    Notebooks 02-05 call this, so each runs on its own; after notebook 01 it returns at once.
    """
    from avlib.profiles import get_profile

    profile = get_profile(profile_name)
    checkpoint = profile.pretrained_checkpoint(checkpoint_root)
    config = replace(profile.pretrain, device=device)
    if checkpoint.exists() and load_checkpoint(checkpoint)["step"] >= stage_steps(config, len(config.stages) - 1):
        return checkpoint
    sources, _, _ = scene_sources(profile, seed, data_root)
    return pretrain(config, sources, profile.checkpoint_dir(checkpoint_root) / "pretrain", seed=seed,
                    run_config={"profile": profile_name, "seed": seed})["checkpoint"]
