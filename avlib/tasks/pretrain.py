"""Self-supervised alignment ("shift") pretraining of the multisensory network (docs/paper.md §3).

The loss is the sigmoid cross-entropy of one logit: 1 for frames with their own audio, 0 for
the same frames with audio shifted in time (:func:`avlib.losses.alignment_loss`). Each video of a
batch appears with both, and the visual stream runs once for the pair (the pair mode of
:meth:`MultisensoryNet.forward`), so every batch is balanced, as the official code's per-GPU
batches were. Held-out scores: :func:`avlib.metrics.alignment_accuracy`.

The paper trains in two stages (``src/shift_params.py``): ``shift_lowfps`` (every 4th frame,
7.49 fps, batch 15 per GPU, 30 k iterations), then ``shift_v1`` (29.97 fps, batch 5 per GPU)
initialised from it with the second block of each stage re-initialised. Settings:
:class:`avlib.config.PretrainConfig`. Each stage may set its own share of talking heads among the synthetic
training clips (``Stage.talking_heads``): the ``synth`` profile's first stage sees scenes only, its second
(``shift_talkers``) adds them (docs/world.md).

``python -m avlib.tasks.pretrain --profile smoke`` trains every stage and prints the held-out
alignment accuracy; it runs the same under ``torchrun --nproc_per_node N``.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict, replace
from pathlib import Path
from typing import Callable, Sequence

import torch

from avlib.checkpoint import CheckpointError, load_checkpoint, load_model_state
from avlib.config import Experiment, PretrainConfig
from avlib.data.shift import ClipSource, ShiftBatches, evaluation_set
from avlib.data.sources import SceneFiles, scene_files
from avlib.losses import alignment_loss
from avlib.metrics import alignment_accuracy
from avlib.models.multisensory import MultisensoryNet
from avlib.train import METRICS_FILE, fit, read_log, resolve_device


def stage_steps(config: PretrainConfig, index: int) -> int:
    """Optimizer steps of stage ``index`` (``Stage.steps`` counts from the start of the schedule)."""
    return config.stages[index].steps - (config.stages[index - 1].steps if index else 0)


def build_model(config: PretrainConfig) -> MultisensoryNet:
    return MultisensoryNet(config.model)


def in_block(name: str, block: str) -> bool:
    """Whether parameter or buffer ``name`` belongs to ``block``, a dotted module name matched as whole
    path components anywhere in it: ``conv2_2`` holds ``video.conv2_2.conv_a.conv.weight``, not
    ``conv2_21.bias`` nor ``audio.conv2_1.bn.bias``."""
    return f".{block}." in f".{name}."


def reinitialise_blocks(model: MultisensoryNet, blocks: Sequence[str], seed: int) -> None:
    """Give every parameter and buffer of ``blocks`` the value of a fresh network seeded with ``seed``."""
    torch.manual_seed(seed)
    fresh = MultisensoryNet(model.config)
    state, fresh_state = model.state_dict(), fresh.state_dict()
    for block in blocks:
        names = [name for name in state if in_block(name, block)]
        if not names:
            raise ValueError(f"no parameter of {type(model).__name__} is in a block named {block!r}")
        state.update({name: fresh_state[name] for name in names})
    model.load_state_dict(state)


#: Initial weights and batches of the first stage's attempt k are drawn from ``seed + RESTART_SEED_STRIDE * k``.
RESTART_SEED_STRIDE = 10_000


def stuck_dir(out_dir: Path, stage_name: str, attempt: int) -> Path:
    """Where a first-stage attempt that stayed on the plateau is kept (``<stage>.stuck<k>``), beside the stage."""
    return out_dir / f"{stage_name}.stuck{attempt}"


def plateau_loss(rows: Sequence[dict], step: int, window: int) -> float:
    """The mean training loss of the logged rows in the ``window`` steps up to ``step``."""
    losses = [row["loss"] for row in rows if step - window < row["step"] <= step]
    if not losses:
        raise ValueError(f"no training loss logged in steps {step - window + 1}-{step}: log more often than restart_window")
    return sum(losses) / len(losses)


def attempt_record(config: PretrainConfig, seed: int, attempt: int, rows: Sequence[dict]) -> dict:
    """A first-stage attempt: its number, seed, the step checked and its mean training loss there (``rows``: its log)."""
    return {"attempt": attempt, "seed": seed + RESTART_SEED_STRIDE * attempt, "step": config.restart_at,
            "loss": plateau_loss(rows, config.restart_at, config.restart_window)}


def stuck_attempts(config: PretrainConfig, out_dir: str | Path, seed: int = 0) -> list[dict]:
    """The first-stage attempts of a run under ``out_dir`` that were restarted (:func:`attempt_record` each).

    An attempt set aside under another rule (``restart_at``, ``restart_window`` or ``restart_loss``) is refused with
    a :class:`CheckpointError` naming its folder: its verdict was not this run's.
    """
    out_dir, name = Path(out_dir), config.stages[0].name
    rule = ("restart_at", "restart_window", "restart_loss")
    attempts = []
    while (folder := stuck_dir(out_dir, name, len(attempts))).exists():
        stored = load_checkpoint(folder / "checkpoint.pt")["config"].get("run", {}).get("pretrain", {})
        changed = [f"pretrain.{key}: {stored.get(key)} -> {getattr(config, key)}" for key in rule
                   if key in stored and stored[key] != getattr(config, key)]
        if changed:
            raise CheckpointError(f"{folder} is a first-stage attempt set aside by another restart rule "
                                  f"({', '.join(changed)}). Resume with the same config, or start over "
                                  "(resume=False, or another folder)")
        attempts.append(attempt_record(config, seed, len(attempts), read_log(folder / METRICS_FILE)))
    return attempts


def pretrain(
    config: PretrainConfig,
    sources: Callable[[float, float], tuple[ClipSource, ClipSource]],
    out_dir: str | Path,
    *,
    seed: int = 0,
    resume: bool = True,
    run_config: dict | None = None,
) -> dict:
    """Run every stage of ``config``; return each stage's history, the final checkpoint path, the last
    stage's held-out evaluation set (``held_out``), and with the restart rule the first stage's restarted attempts
    (``restarts``) and the kept one (``kept``), each an :func:`attempt_record`.

    ``sources(fps, talking_heads)`` gives (training clips, held-out clips) decoded at a stage's frame rate, with
    the stage's share of talking heads among the training clips (:meth:`PretrainConfig.stage_talking_heads`).
    Stage ``k`` writes ``out_dir/<stage name>/``; a stage that already finished is skipped, an
    interrupted one resumes. Each stage after the first starts from the previous stage's
    weights, with ``Stage.reinit`` blocks re-initialised. ``run_config`` (the resolved experiment)
    is stored in every checkpoint. The initial weights are drawn after ``torch.manual_seed(seed)``, so
    they do not depend on the caller's random state. A larger ``steps`` of the last stage extends the finished
    run (docs/training.md); a stage's later stages refuse a change of its steps.

    With ``config.restart_at`` set, the first stage stops at that step (its last step at most: the finished stage is
    then checked) and looks at its own training loss: a mean over the last ``restart_window`` steps above
    ``restart_loss`` (the plateau at ln 2 = 0.693) moves the attempt to ``out_dir/<stage>.stuck<k>/`` and starts
    the stage again from weights and batches of seed ``seed + RESTART_SEED_STRIDE * (k + 1)``, at most
    ``config.restarts`` times (the last attempt is kept, stuck or not). Only training data decides; the held-out
    clips never do. Single-process runs only.
    """
    out_dir = Path(out_dir)
    results = {"stages": {}, "checkpoint": None, "held_out": None, "restarts": []}
    device = torch.device(resolve_device(config.train.device))
    if config.restart_at is not None and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError("pretrain.restart_at restarts the first stage in one process; under torchrun set it to None")
    model = None
    for index, stage in enumerate(config.stages):
        stage_dir = out_dir / stage.name
        shift = replace(config.shift, fps=stage.fps)
        train_source, held_out_source = sources(stage.fps, config.stage_talking_heads(index))
        held_out = evaluation_set(held_out_source, shift, per_video=config.eval_pairs_per_video, seed=seed)
        checkpoint = stage_dir / "checkpoint.pt"
        restart_at = config.restart_at if index == 0 else None
        if restart_at is not None and not resume:
            for folder in out_dir.glob(f"{stage.name}.stuck*"):
                shutil.rmtree(folder)  # starting over: the earlier attempts go with the stage's checkpoint
        attempt = len(stuck_attempts(config, out_dir, seed)) if restart_at is not None else 0
        fresh = not resume
        while True:
            stage_seed = seed + RESTART_SEED_STRIDE * attempt if index == 0 else seed
            if index == 0:
                # initial weights from ``seed`` alone, not from what the caller drew before (any task may train it)
                torch.manual_seed(stage_seed)
                model = build_model(config)
            elif not checkpoint.exists():
                previous = load_checkpoint(out_dir / config.stages[index - 1].name / "checkpoint.pt",
                                           expected_model_class="MultisensoryNet")
                load_model_state(model, previous["model"], out_dir / config.stages[index - 1].name / "checkpoint.pt")
                reinitialise_blocks(model, stage.reinit, seed + index)
            batches = ShiftBatches(train_source, shift, stage.batch_size, seed=stage_seed + 1000 * index)
            stage_config = {**(run_config or {"pretrain": config.to_dict()}), "stage": stage.name, "shift": asdict(shift)}
            if restart_at is not None:
                stage_config["attempt"] = attempt

            def train_to(steps: int, fresh: bool) -> dict:
                train = replace(config.train, steps=steps, seed=stage_seed + index, out_dir=str(stage_dir))
                return fit(
                    model, alignment_loss, batches, train, resume=not fresh,
                    eval_fn=lambda net: alignment_accuracy(net, held_out, device=device), eval_every=config.eval_every,
                    run_config=stage_config,
                    # this stage's own end (its budget, checked as train.steps) and later stages' may grow; earlier
                    # ones may not
                    other_budgets=tuple(f"pretrain.stages.{later}.steps" for later in range(index, len(config.stages))),
                )

            if restart_at is None or attempt >= config.restarts:
                break
            if resume and checkpoint.exists() and load_checkpoint(checkpoint)["step"] > restart_at:
                break  # this attempt passed its check before the run was stopped
            history = train_to(restart_at, fresh=fresh)
            fresh = False  # the stage's folder now holds this attempt's run, which the next call extends
            if plateau_loss(history["train"], restart_at, config.restart_window) <= config.restart_loss:
                break
            stage_dir.rename(stuck_dir(out_dir, stage.name, attempt))
            attempt += 1
        results["stages"][stage.name] = train_to(stage_steps(config, index), fresh=fresh)
        results["checkpoint"] = checkpoint
        results["held_out"] = held_out
        if restart_at is not None:
            results["restarts"] = stuck_attempts(config, out_dir, seed)
            results["kept"] = attempt_record(config, seed, attempt, results["stages"][stage.name]["train"])
    return results


def scene_files_of(experiment: Experiment, seed: int = 0, data_root: str | Path = "") -> SceneFiles:
    """The scene clips of the experiment, split into training and held-out clips
    (:func:`avlib.data.sources.scene_files`): the world's, or AudioSet's under ``data_root``."""
    return scene_files(experiment.synthetic, experiment.profile, seed, data_root, experiment.pretrain.held_out_scenes,
                       experiment.pretrain.largest_talking_heads)


def scene_sources(experiment: Experiment, seed: int = 0,
                  data_root: str | Path = "") -> tuple[Callable[[float, float], tuple[ClipSource, ClipSource]], int, int]:
    """``sources(fps, talking_heads)`` for :func:`pretrain`, and the numbers of training clips (at the largest
    share of talking heads of any stage) and held-out clips.

    Synthetic profiles: the world's scenes (generated on first use), the last
    ``pretrain.held_out_scenes`` of them held out, with ``talking_heads`` of the training clips the first
    of the world's talking heads (those beyond the largest share of any stage are held out), decoded once
    and cached beside the world.
    ``paper``: AudioSet clips under ``data_root/audioset/{train,test}/`` (docs/datasets.md), read from
    their files.
    """
    files = scene_files_of(experiment, seed, data_root)

    def sources(fps: float, talking_heads: float):
        return files.with_talking_heads(talking_heads).sources(replace(experiment.pretrain.shift, fps=fps))

    return sources, len(files.train), len(files.held_out)


def with_device(experiment: Experiment, device: str) -> PretrainConfig:
    """The experiment's pretraining config, trained on ``device`` (auto, cpu or cuda)."""
    return replace(experiment.pretrain, train=replace(experiment.pretrain.train, device=device))


def ensure_pretrained(experiment: Experiment, seed: int = 0, *, data_root: str | Path = "",
                      checkpoint_root: str | Path | None = None, device: str = "auto") -> Path:
    """The profile's pretrained checkpoint, training it first if it is missing (or unfinished).

    The other tasks call this, so each runs on its own; after pretraining it returns at once.
    """
    checkpoint = experiment.pretrained_checkpoint(checkpoint_root)
    config = with_device(experiment, device)
    if checkpoint.exists() and load_checkpoint(checkpoint)["step"] >= stage_steps(config, len(config.stages) - 1):
        return checkpoint
    sources, _, _ = scene_sources(experiment, seed, data_root)
    return pretrain(config, sources, experiment.checkpoint_dir(checkpoint_root) / "pretrain", seed=seed,
                    run_config=run_record(experiment, seed))["checkpoint"]


def run_record(experiment: Experiment, seed: int) -> dict:
    """What a pretraining checkpoint stores about its run: the profile, the seed and the resolved
    pretraining config (a resume with another one is refused)."""
    return {"profile": experiment.profile, "seed": seed, "pretrain": experiment.pretrain.to_dict()}


def _run(experiment: Experiment, args) -> dict:
    config = with_device(experiment, args.device)
    sources, train_count, held_out_count = scene_sources(experiment, args.seed, args.data_root)
    run = pretrain(config, sources, experiment.checkpoint_dir(args.checkpoints) / "pretrain", seed=args.seed,
                   run_config=run_record(experiment, args.seed))
    last = run["stages"][config.stages[-1].name]
    return {"checkpoint": str(run["checkpoint"]), "training_clips": train_count, "held_out_clips": held_out_count,
            "held_out": last["eval"][-1] if last["eval"] else None}


def main(argv: Sequence[str] | None = None) -> int:
    from avlib.tasks.cli import run_task

    return run_task("pretrain", "pretrain", "Self-supervised alignment pretraining (docs/paper.md §3).", _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
