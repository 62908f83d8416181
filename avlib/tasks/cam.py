"""The CAM experiment (docs/paper.md §5): the ``cam`` network's fine-tuning and its maps scored on
the synthetic world's held-out scenes.

The paper's maps come from the ``cam`` network: conv5_1's spatial stride removed (16 x 14 x 14 maps for a
4.2 s, 224 x 224 clip), then fine-tuned 25 k iterations on the same alignment task. The weights have the
same shapes with or without the stride, so :func:`cam_checkpoint` loads the pretrained weights into
``cam=True`` and fine-tunes them for ``CamSettings.fine_tune_steps`` steps (0: no fine-tuning).

:func:`evaluate_scenes` runs the maps of any video (:func:`avlib.localize.map_video`) over scene clips and
scores them against the world's ground truth with :mod:`avlib.localization`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from avlib.data.shift import ShiftConfig
from avlib.hashing import file_digest, json_key
from avlib.localization import (FRAME_COLUMNS, SceneClip, SceneEvaluation, ciou, object_masks, peak_in,
                                sounding_over_silent)
from avlib.localize import (PAPER_LO_FRACTION, PAPER_MAX_ALPHA, PAPER_PERCENTILE, MapSource, map_video,
                            overlay_scale, to_frame)
from avlib.models.multisensory import cam_network

#: ``cam_v1`` = ``shift_v1`` at 650 k iterations, stride removed, fine-tuned to 675 k (``src/shift_params.py``).
PAPER_FINE_TUNE_STEPS = 25_000
PAPER_PRETRAIN_STEPS = 650_000
PAPER_FINE_TUNE_BATCH = 5


@dataclass(frozen=True)
class CamSettings:
    """Settings of notebook 02 and of :func:`avlib.localize.localize`; :func:`settings_for` gives each profile's.

    Args:
        fine_tune_steps: steps of alignment training of the ``cam=True`` network, started from the
            pretrained weights (paper: 25 k, ``cam_v1``); 0 uses the pretrained weights as they are.
        fine_tune_batch: videos per fine-tuning step (paper: 5 per GPU).
        fine_tune_lr: learning rate of the fine-tuning; None: the pretraining's (paper: 1e-2, SGD with
            momentum 0.9, as its pretraining). The optimizer is always the pretraining's.
        hop: hop between sliding windows, as a fraction of the window (official: 0.5).
        map_stride: pixels of the resized frame (short side = the profile's ``size``) per pixel of the
            stored maps. The CAM itself has one cell per ``crop / T'``-th of a tile.
        absolute: overlay |CAM| (the official ``find_cam``) rather than the signed logit map.
        percentile, lo_fraction, max_alpha: the official overlay (97, 0.5, 0.35).
        tile_batch: tiles per forward pass.
        eval_clips: held-out scene clips scored (None: all of them).
        eval_frame_stride: score every k-th written frame of a clip.
        bootstrap: resamples of clips for the 95 % intervals.
        top_frames: frames in the paper-style figure of top responses.
    """

    fine_tune_steps: int
    fine_tune_batch: int
    fine_tune_lr: float | None = None
    hop: float = 0.5
    map_stride: int = 4
    absolute: bool = True
    percentile: float = PAPER_PERCENTILE
    lo_fraction: float = PAPER_LO_FRACTION
    max_alpha: float = PAPER_MAX_ALPHA
    tile_batch: int = 8
    eval_clips: int | None = None
    eval_frame_stride: int = 4
    bootstrap: int = 1000
    top_frames: int = 6

    def __post_init__(self) -> None:
        if self.fine_tune_steps < 0 or self.fine_tune_batch < 1:
            raise ValueError(f"CamSettings: fine_tune_steps must be >= 0 and fine_tune_batch >= 1, got {self}")
        if not 0 < self.hop <= 1:
            raise ValueError(f"CamSettings.hop must be in (0, 1], got {self.hop}")
        if self.map_stride < 1 or self.eval_frame_stride < 1 or self.tile_batch < 1:
            raise ValueError(f"CamSettings: strides and batch must be positive, got {self}")


def settings_for(profile: str) -> CamSettings:
    """Per-profile settings (the lead folds these into :mod:`avlib.profiles`).

    ``synth`` fine-tunes for the paper's share of the pretraining, 25 k of 650 k iterations (3.8 %): 23 of
    the profile's 600 steps, at its batch of 16. ``paper`` is the official ``cam_v1`` and maps 200 AudioSet
    test clips for the figure (AudioSet has no localisation ground truth).
    """
    from avlib.profiles import get_profile

    if profile == "smoke":
        return CamSettings(fine_tune_steps=2, fine_tune_batch=2, eval_clips=2, eval_frame_stride=30, bootstrap=50,
                           top_frames=2)
    if profile == "synth":
        pretrain = get_profile(profile).pretrain
        share = round(pretrain.stages[-1].steps * PAPER_FINE_TUNE_STEPS / PAPER_PRETRAIN_STEPS)
        return CamSettings(fine_tune_steps=share, fine_tune_batch=pretrain.stages[-1].batch_size, eval_frame_stride=4)
    if profile == "paper":
        return CamSettings(fine_tune_steps=PAPER_FINE_TUNE_STEPS, fine_tune_batch=PAPER_FINE_TUNE_BATCH,
                           map_stride=8, tile_batch=16, eval_clips=200)
    raise ValueError(f"unknown profile {profile!r}; use smoke, synth or paper")


# ----------------------------------------------------------------------------- scenes and their scores


def held_out_scenes(profile_name: str, seed: int = 0, limit: int | None = None) -> list[SceneClip]:
    """The scenes held out from pretraining: the last ``profile.held_out_scenes`` of the sorted clips,
    the same split as :func:`avlib.pretrain.scene_sources`; the first ``limit`` of them if given."""
    from avlib.pretrain import scene_split
    from avlib.profiles import get_profile

    profile = get_profile(profile_name)
    if not profile.synthetic:
        raise ValueError(f"profile {profile_name!r} reads real data, which has no localisation ground truth")
    root, _, held_out = scene_split(profile, seed)
    chosen = held_out[:limit] if limit is not None else held_out
    return [SceneClip(path.stem, path, root / "truth" / f"{path.stem}.npz") for path in chosen]


def evaluation_clips(profile_name: str, seed: int = 0, data_root: str | Path = "", limit: int | None = None) -> list[SceneClip]:
    """The clips notebook 02 maps: the held-out scenes (with ground truth) in the synthetic profiles,
    AudioSet test clips under ``data_root/audioset/test/`` (without) in ``paper``."""
    from avlib.profiles import get_profile

    if get_profile(profile_name).synthetic:
        return held_out_scenes(profile_name, seed, limit)
    if not data_root:
        raise ValueError("the paper profile maps AudioSet test clips: pass --data-root (see docs/datasets.md)")
    from avlib.data.index import build_index

    videos = build_index(Path(data_root) / "audioset" / "test", skip_bad=True).with_audio()
    chosen = videos[:limit] if limit is not None else videos
    return [SceneClip(Path(video.path).stem, Path(video.path), None) for video in chosen]


def evaluate_scenes(clips: Sequence[SceneClip], sources: Sequence[MapSource], shift: ShiftConfig, settings: CamSettings,
                    progress: bool = True) -> SceneEvaluation:
    """Run every map source over every clip (:func:`avlib.localize.map_video`) and score every
    ``settings.eval_frame_stride``-th frame against the clip's ground truth (clips without ground
    truth are mapped, not scored)."""
    from tqdm.auto import tqdm

    from avlib import io
    from avlib.data.world import load_truth

    rows: list[dict] = []
    evaluation = SceneEvaluation(pd.DataFrame(columns=FRAME_COLUMNS))
    for scene in tqdm(clips, desc="clips", disable=not progress):
        tracks = map_video(scene.video, sources, shift, settings)
        truth = load_truth(scene.truth) if scene.truth is not None else None
        info = io.probe(scene.video)
        num_frames, fps = (len(truth.boxes), truth.fps) if truth is not None else (info.num_frames, info.fps)
        index = np.arange(0, num_frames, settings.eval_frame_stride)
        times = index / fps
        maps = {name: track.at_times(times) for name, track in tracks.items()}
        evaluation.maps[scene.name] = maps
        evaluation.frame_index[scene.name] = index
        evaluation.scales[scene.name] = {name: overlay_scale(track.values(), settings.percentile) for name, track in tracks.items()}
        evaluation.clips[scene.name] = scene
        for position, frame in enumerate(index if truth is not None else []):
            sounding, silent = object_masks(truth, int(frame))
            if not sounding.any():
                continue
            for name, values in maps.items():
                score_map = to_frame(values[position], truth.height, truth.width)
                row = {"clip": scene.name, "frame": int(frame), "method": name,
                       "pointing": float(peak_in(score_map, sounding)), "ciou": ciou(score_map, sounding),
                       "sounding_area": float(sounding.mean()), "silent_visible": bool(silent.any()),
                       "peak_on_silent": np.nan, "sounding_over_silent": np.nan}
                if silent.any():
                    row["peak_on_silent"] = float(peak_in(score_map, silent))
                    row["sounding_over_silent"] = sounding_over_silent(score_map, sounding, silent)
                rows.append(row)
    evaluation.frames = pd.DataFrame(rows, columns=FRAME_COLUMNS)
    return evaluation


# ----------------------------------------------------------------------------- the CAM network


def _digest(path: Path) -> str:
    return file_digest(path, "sha1")[:10]


def cam_checkpoint(profile_name: str, seed: int = 0, settings: CamSettings | None = None, *, data_root: str | Path = "",
                   checkpoint_root: str | Path | None = None, device: str = "auto") -> Path:
    """The CAM network's checkpoint: the pretrained one (:func:`avlib.pretrain.ensure_pretrained`) with
    ``cam=True``, fine-tuned ``settings.fine_tune_steps`` steps on the same alignment task, data, loss and
    optimizer (at the last pretraining stage's frame rate). With 0 steps it is the pretrained checkpoint.

    The fine-tuned checkpoint lives in ``<checkpoints>/<profile>/cam/ft<steps>-<key>/``, the key a digest of
    the pretrained file and the fine-tuning settings, so a new pretraining or other settings never reuse a
    stale one; an interrupted run resumes.
    """
    from avlib.checkpoint import load_checkpoint
    from avlib.data.shift import ShiftBatches, evaluation_set
    from avlib.pretrain import alignment_accuracy, alignment_loss, ensure_pretrained, scene_sources
    from avlib.profiles import get_profile
    from avlib.train import TrainConfig, fit

    profile = get_profile(profile_name)
    settings = settings or settings_for(profile_name)
    pretrained = ensure_pretrained(profile_name, seed, data_root=data_root, checkpoint_root=checkpoint_root,
                                   device=device)
    if settings.fine_tune_steps == 0:
        return pretrained
    run_device = torch.device("cuda" if device in ("cuda", "auto") and torch.cuda.is_available() else "cpu")
    pretrain = profile.pretrain
    config = TrainConfig(
        steps=settings.fine_tune_steps, optimizer=pretrain.optimizer,
        lr=pretrain.lr if settings.fine_tune_lr is None else settings.fine_tune_lr, momentum=pretrain.momentum,
        weight_decay=pretrain.weight_decay, grad_clip=pretrain.grad_clip,
        checkpoint_every=max(1, min(pretrain.checkpoint_every, settings.fine_tune_steps)),
        log_every=max(1, min(10, settings.fine_tune_steps)), seed=seed + 7919, device=str(run_device),
        amp=pretrain.amp, channels_last=pretrain.channels_last,
    )
    initial = {"file": pretrained.name, "sha1_10": _digest(pretrained)}
    recipe = {"init": initial, "batch": settings.fine_tune_batch, "optimizer": config.optimizer, "lr": config.lr,
              "steps": config.steps, "seed": seed}
    key = json_key(recipe)
    out_dir = profile.checkpoint_dir(checkpoint_root) / "cam" / f"ft{settings.fine_tune_steps}-{key}"
    checkpoint = out_dir / "checkpoint.pt"
    if checkpoint.exists() and load_checkpoint(checkpoint)["step"] >= settings.fine_tune_steps:
        return checkpoint
    stage = pretrain.stages[-1]
    shift = replace(pretrain.shift, fps=stage.fps)
    sources, _, _ = scene_sources(profile, seed, data_root)
    train_source, held_out_source = sources(stage.fps)
    held_out = evaluation_set(held_out_source, shift, per_video=pretrain.eval_pairs_per_video, seed=seed)
    stored = pretrain.to_dict()
    stored["shift"] = asdict(shift)  # what localize() reads back as the network's input
    fit(cam_network(pretrained).train(), alignment_loss,
        ShiftBatches(train_source, shift, settings.fine_tune_batch, seed=seed + 7919), replace(config, out_dir=str(out_dir)),
        eval_fn=lambda net: alignment_accuracy(net, held_out, device=run_device),
        run_config={"pretrain": stored, "stage": "cam", "profile": profile_name, "seed": seed, "initialised_from": initial,
                    "cam_settings": asdict(settings)})
    return checkpoint
