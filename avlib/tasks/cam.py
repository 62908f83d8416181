"""The CAM experiment (docs/paper.md §5): the ``cam`` network's fine-tuning and its maps scored on
the synthetic world's held-out scenes.

The paper's maps come from the ``cam`` network: conv5_1's spatial stride removed (16 x 14 x 14 maps for a
4.2 s, 224 x 224 clip), then fine-tuned 25 k iterations on the same alignment task. The weights have the
same shapes with or without the stride, so :func:`cam_checkpoint` loads the pretrained weights into
``cam=True`` and fine-tunes them for ``cam.fine_tune_steps`` steps (0: no fine-tuning).

:func:`evaluate_scenes` runs the maps of any video (:func:`avlib.localize.map_video`) over scene clips and
scores them against the world's ground truth with :mod:`avlib.localization`; :func:`run` does the
whole experiment (fine-tuning, the network's maps beside the baselines', scores) and
``python -m avlib.tasks.cam --profile P`` runs it from a shell.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from avlib.config import CamSettings, Experiment
from avlib.data.shift import ShiftConfig
from avlib.hashing import file_digest, json_key
from avlib.localization import (
    FRAME_COLUMNS,
    CentrePrior,
    MotionEnergy,
    RandomMap,
    SceneClip,
    SceneEvaluation,
    ciou,
    object_masks,
    peak_concentration,
    peak_in,
    pointing_difference,
    sounding_over_silent,
    summarise,
)
from avlib.localize import MapSource, TiledCam, map_video, overlay_scale, to_frame
from avlib.losses import alignment_loss
from avlib.metrics import alignment_accuracy
from avlib.models.multisensory import MultisensoryNet, cam_network, network_cam
from avlib.report.claims import verdict
from avlib.tasks.pretrain import ensure_pretrained, scene_files_of, scene_sources

# ----------------------------------------------------------------------------- scenes and their scores


def held_out_scenes(experiment: Experiment, seed: int = 0, limit: int | None = None) -> list[SceneClip]:
    """The scenes held out from pretraining (the same split as :func:`avlib.tasks.pretrain.scene_sources`),
    with their ground truth; the first ``limit`` of them if given."""
    if not experiment.synthetic:
        raise ValueError(f"profile {experiment.profile!r} reads real data, which has no localisation ground truth")
    return evaluation_clips(experiment, seed, limit=limit)


def evaluation_clips(experiment: Experiment, seed: int = 0, data_root: str | Path = "",
                     limit: int | None = None) -> list[SceneClip]:
    """The clips the experiment maps: the held-out scenes (with ground truth) of the synthetic world,
    or AudioSet test clips under ``data_root/audioset/test/`` (without)."""
    files = scene_files_of(experiment, seed, data_root)
    chosen = files.held_out[:limit] if limit is not None else files.held_out
    return [SceneClip(path.stem, path, files.truth(path)) for path in chosen]


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
        evaluation.tracks[scene.name] = tracks
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


def cam_checkpoint(experiment: Experiment, seed: int = 0, *, data_root: str | Path = "",
                   checkpoint_root: str | Path | None = None, device: str = "auto") -> Path:
    """The CAM network's checkpoint: the pretrained one (:func:`avlib.tasks.pretrain.ensure_pretrained`) with
    ``cam=True``, fine-tuned ``cam.fine_tune_steps`` steps on the same alignment task, data, loss and
    optimiser (``pretrain.train``, at the last stage's frame rate). With 0 steps it is the pretrained checkpoint.

    The fine-tuned checkpoint lives in ``<checkpoints>/<profile>/cam/ft<steps>-<key>/``, the key a digest of
    the pretrained file and the fine-tuning settings, so a new pretraining or other settings never reuse a
    stale one; an interrupted run resumes.
    """
    from avlib.checkpoint import load_checkpoint
    from avlib.data.shift import ShiftBatches, evaluation_set
    from avlib.train import fit

    settings, pretrain = experiment.cam, experiment.pretrain
    pretrained = ensure_pretrained(experiment, seed, data_root=data_root, checkpoint_root=checkpoint_root,
                                   device=device)
    if settings.fine_tune_steps == 0:
        return pretrained
    run_device = torch.device("cuda" if device in ("cuda", "auto") and torch.cuda.is_available() else "cpu")
    config = replace(
        pretrain.train, steps=settings.fine_tune_steps,
        lr=pretrain.train.lr if settings.fine_tune_lr is None else settings.fine_tune_lr,
        checkpoint_every=max(1, min(pretrain.train.checkpoint_every, settings.fine_tune_steps)),
        log_every=max(1, min(10, settings.fine_tune_steps)), seed=seed + 7919, device=str(run_device),
    )
    initial = {"file": pretrained.name, "sha1_10": _digest(pretrained)}
    recipe = {"init": initial, "batch": settings.fine_tune_batch, "optimizer": config.optimizer, "lr": config.lr,
              "steps": config.steps, "seed": seed}
    key = json_key(recipe)
    out_dir = experiment.checkpoint_dir(checkpoint_root) / "cam" / f"ft{settings.fine_tune_steps}-{key}"
    checkpoint = out_dir / "checkpoint.pt"
    if checkpoint.exists() and load_checkpoint(checkpoint)["step"] >= settings.fine_tune_steps:
        return checkpoint
    stage = pretrain.stages[-1]
    shift = replace(pretrain.shift, fps=stage.fps)
    sources, _, _ = scene_sources(experiment, seed, data_root)
    train_source, held_out_source = sources(stage.fps)
    held_out = evaluation_set(held_out_source, shift, per_video=pretrain.eval_pairs_per_video, seed=seed)
    fit(cam_network(pretrained).train(), alignment_loss,
        ShiftBatches(train_source, shift, settings.fine_tune_batch, seed=seed + 7919), replace(config, out_dir=str(out_dir)),
        eval_fn=lambda net: alignment_accuracy(net, held_out, device=run_device),
        run_config={"profile": experiment.profile, "seed": seed, "stage": "cam", "shift": asdict(shift),
                    "pretrain": pretrain.to_dict(), "cam": settings.to_dict(), "initialised_from": initial})
    return checkpoint


@dataclass
class CamRun:
    """What :func:`run` returns: the checkpoints, the map sources' names and every clip's maps and scores."""

    pretrained: Path
    fine_tuned: Path
    names: dict[str, str]  # role ("cam", "whole", "pretrained", "random") -> method name in the tables
    evaluation: SceneEvaluation
    clips: list[SceneClip]

    @property
    def shown(self) -> str:
        """The map the overlays draw."""
        return self.names["shown"]

    @property
    def baselines(self) -> list[str]:
        return [self.names["random"], self.names["random"] + " |CAM|", MotionEnergy.name, CentrePrior.name,
                RandomMap.name]

    @property
    def network_maps(self) -> list[str]:
        return [self.names["cam"], self.names["cam"] + " |CAM|"]


def run(experiment: Experiment, *, seed: int = 0, data_root: str | Path = "", checkpoint_root: str | Path | None = None,
        device: str = "auto", work_dir: str | Path | None = None, progress: bool = True) -> CamRun:
    """Fine-tune the CAM network, then map every evaluation clip with it (tiled and whole-frame), with the
    pretrained and random weights, and with the motion-energy, centre and random baselines; score the maps
    where the clip has ground truth. Without ground truth in any clip (real data) only the network's tiled
    map is made: the others would never be scored. ``work_dir`` keeps the maps (``evaluation/``)."""
    settings, shift = experiment.cam, experiment.pretrain.shift
    device_name = "cuda" if device in ("cuda", "auto") and torch.cuda.is_available() else "cpu"
    pretrained = ensure_pretrained(experiment, seed, data_root=data_root, checkpoint_root=checkpoint_root, device=device)
    fine_tuned = cam_checkpoint(experiment, seed, data_root=data_root, checkpoint_root=checkpoint_root, device=device)
    cam_net = cam_network(fine_tuned, device_name)
    pretrained_net = cam_network(pretrained, device_name)
    torch.manual_seed(seed)
    random_net = MultisensoryNet(cam_net.config).to(device_name).eval()
    clips = evaluation_clips(experiment, seed, data_root, limit=settings.eval_clips)
    names = {"cam": "multisensory CAM" + (f" (fine-tuned {settings.fine_tune_steps} steps)" if fine_tuned != pretrained else ""),
             "pretrained": "pretrained weights, no fine-tuning", "random": "random weights"}
    names["whole"] = names["cam"] + ", whole frame"  # ablation: one pass over the frame instead of tiles
    names["shown"] = names["cam"] + (" |CAM|" if settings.absolute else "")
    sources = [TiledCam(network_cam(cam_net), shift.crop, names["cam"], settings.tile_batch, device_name)]
    # the whole-frame ablation and the baselines exist to be scored: clips without ground truth (real data) skip them
    if any(clip.truth is not None for clip in clips):
        sources.append(TiledCam(network_cam(cam_net), shift.crop, names["whole"], settings.tile_batch, device_name, whole_frame=True))
        if fine_tuned != pretrained:
            sources.append(TiledCam(network_cam(pretrained_net), shift.crop, names["pretrained"], settings.tile_batch, device_name))
        sources += [TiledCam(network_cam(random_net), shift.crop, names["random"], settings.tile_batch, device_name),
                    MotionEnergy(sigma=settings.map_stride), CentrePrior(), RandomMap(seed)]
    evaluation = evaluate_scenes(clips, sources, shift, settings, progress=progress)
    if work_dir is not None:
        evaluation.save(Path(work_dir) / "evaluation")
    return CamRun(pretrained, fine_tuned, names, evaluation, clips)


def scores(result: CamRun, settings: CamSettings, seed: int = 0) -> dict[str, pd.DataFrame] | None:
    """The scored tables of a run with ground truth (None without): ``localization`` (every method),
    ``vs_baselines`` (each network map minus each baseline, paired 95 % intervals, verdicts) and ``peaks``."""
    frames = result.evaluation.frames
    if not len(frames):
        return None
    table = summarise(frames, settings.bootstrap, seed)
    comparisons = pd.DataFrame([
        {"network map": method, "baseline": baseline,
         **pointing_difference(frames, method, baseline, settings.bootstrap, seed)}
        for method in result.network_maps for baseline in result.baselines])
    comparisons = comparisons.rename(columns={"difference": "pointing difference (points)", "low": "95 % low",
                                              "high": "95 % high"})
    comparisons["verdict"] = [verdict(low, high, 1) for low, high in zip(comparisons["95 % low"], comparisons["95 % high"])]
    peaks = pd.DataFrame([{"method": method, **peak_concentration(result.evaluation, method)}
                          for method in frames["method"].unique()])
    return {"localization": table, "vs_baselines": comparisons, "peaks": peaks}


def _run(experiment: Experiment, args) -> dict:
    from avlib.tasks.cli import is_main_process

    result = run(experiment, seed=args.seed, data_root=args.data_root, checkpoint_root=args.checkpoints,
                 device=args.device, work_dir=args.out if is_main_process() else None)
    tables = scores(result, experiment.cam, args.seed)
    summary = {"checkpoint": str(result.fine_tuned), "clips": len(result.clips)}
    if tables is not None and is_main_process():
        for name, table in tables.items():
            table.to_csv(args.out / f"{name}.csv", index=False)
        cam_row = tables["localization"].set_index("method").loc[result.names["cam"]]
        summary.update({"pointing %": float(cam_row["pointing %"]), "frames": int(cam_row["frames"]),
                        "tables": sorted(f"{name}.csv" for name in tables)})
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    from avlib.tasks.cli import run_task

    return run_task("cam", "cam", "CAM sound-source localisation (docs/paper.md §5): fine-tune the cam network, "
                    "map the held-out clips, score them against baselines.", _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
