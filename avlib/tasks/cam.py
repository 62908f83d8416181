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

Beyond the paper: the fine-tuning runs at ``cam.size``-pixel frames (fully convolutional, so it may be larger
than the pretraining's, which makes each conv5 cell see a part of the frame) once per training seed
(``cam.seeds``); every map is also scored on the world's sync-only clips (:class:`SyncOnlyConfig`: a silent
distractor that moves and glows like the source, out of step with the sound, so only audio-visual
correspondence finds the source) and on the speakers' talking heads (is the peak on the mouth?). Verdicts
against the baselines come from per-clip differences over seeds and clips (:func:`avlib.stats.seed_interval`).
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
from avlib.data.world import world_config
from avlib.data.world.scenes import SyncOnlyConfig, generate_sync_only
from avlib.hashing import file_digest, json_key
from avlib.localization import (
    FRAME_COLUMNS,
    CentrePrior,
    MotionEnergy,
    RandomMap,
    SceneClip,
    SceneEvaluation,
    ciou,
    clip_scores,
    object_masks,
    peak_concentration,
    peak_in,
    sounding_over_silent,
    summarise,
)
from avlib.localize import MapSource, TiledCam, map_video, overlay_scale, to_frame
from avlib.losses import alignment_loss
from avlib.metrics import alignment_accuracy
from avlib.models.multisensory import MultisensoryNet, cam_network, network_cam
from avlib.parallel import Job, run_jobs
from avlib.report.claims import verdict
from avlib.stats import interval_over_seeds, seed_spread
from avlib.tasks.pretrain import ensure_pretrained, scene_files_of
from avlib.train import resolve_device

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


def cam_checkpoint(experiment: Experiment, seed: int = 0, *, train_seed: int | None = None, data_root: str | Path = "",
                   checkpoint_root: str | Path | None = None, device: str = "auto") -> Path:
    """The CAM network's checkpoint: the pretrained one (:func:`avlib.tasks.pretrain.ensure_pretrained`, of world and
    pretraining ``seed``) with ``cam=True``, fine-tuned ``cam.fine_tune_steps`` steps with training seed ``train_seed``
    (default ``seed``) on the same alignment task, data, loss and optimiser (``pretrain.train``, at the last stage's
    frame rate), with frames of ``cam.size`` pixels cropped to ``cam.crop`` (:func:`cam_shift`; the network is fully
    convolutional). With 0 steps it is the pretrained checkpoint.

    The fine-tuned checkpoint lives in ``<checkpoints>/<profile>/cam/ft<steps>-<key>/``, the key a digest of
    the pretrained file and the fine-tuning settings, so a new pretraining or other settings never reuse a
    stale one; an interrupted run resumes.
    """
    from avlib.checkpoint import load_checkpoint
    from avlib.data.shift import ShiftBatches, evaluation_set
    from avlib.models.multisensory import from_checkpoint
    from avlib.train import fit

    settings, pretrain = experiment.cam, experiment.pretrain
    train_seed = seed if train_seed is None else train_seed
    pretrained = ensure_pretrained(experiment, seed, data_root=data_root, checkpoint_root=checkpoint_root,
                                   device=device)
    if settings.fine_tune_steps == 0:
        return pretrained
    run_device = torch.device(resolve_device(device))
    config = replace(
        pretrain.train, steps=settings.fine_tune_steps,
        lr=pretrain.train.lr if settings.fine_tune_lr is None else settings.fine_tune_lr,
        checkpoint_every=max(1, min(pretrain.train.checkpoint_every, settings.fine_tune_steps)),
        log_every=max(1, min(10, settings.fine_tune_steps)), seed=train_seed + 7919, device=str(run_device),
    )
    stage = pretrain.stages[-1]
    shift = replace(cam_shift(experiment), fps=stage.fps)
    initial = {"file": pretrained.name, "sha1_10": _digest(pretrained)}
    recipe = {"init": initial, "batch": settings.fine_tune_batch, "optimizer": config.optimizer, "lr": config.lr,
              "steps": config.steps, "seed": train_seed}
    if train_seed != seed:
        recipe["world_seed"] = seed
    if (shift.size, shift.crop) != (pretrain.shift.size, pretrain.shift.crop):
        recipe["frames"] = [shift.size, shift.crop]
    key = json_key(recipe)
    out_dir = experiment.checkpoint_dir(checkpoint_root) / "cam" / f"ft{settings.fine_tune_steps}-{key}"
    checkpoint = out_dir / "checkpoint.pt"
    if checkpoint.exists() and load_checkpoint(checkpoint)["step"] >= settings.fine_tune_steps:
        return checkpoint
    train_source, held_out_source = scene_files_of(experiment, seed, data_root).sources(shift)
    held_out = evaluation_set(held_out_source, shift, per_video=pretrain.eval_pairs_per_video, seed=seed)
    network = from_checkpoint(pretrained, cam=True, frame_size=shift.crop).train()
    fit(network, alignment_loss,
        ShiftBatches(train_source, shift, settings.fine_tune_batch, seed=train_seed + 7919), replace(config, out_dir=str(out_dir)),
        eval_fn=lambda net: alignment_accuracy(net, held_out, device=run_device),
        run_config={"profile": experiment.profile, "seed": seed, "train_seed": train_seed, "stage": "cam",
                    "shift": asdict(shift), "pretrain": pretrain.to_dict(), "cam": settings.to_dict(),
                    "initialised_from": initial})
    return checkpoint


#: Map roles run once per training seed (the rest run once): the fine-tuned CAM, its whole-frame pass, random weights.
SEEDED_ROLES = ("cam", "whole", "random")


@dataclass
class CamRun:
    """What :func:`run` returns: the checkpoints (one fine-tuning per training seed), the map sources' names and every
    clip's maps and scores: the held-out scenes (``evaluation``), the sync-only clips (``sync_only``) and the speakers'
    frames (``speakers``, one row per frame and map: is the peak on the mouth, on the face)."""

    pretrained: Path
    fine_tuned: dict[int, Path]  # training seed -> checkpoint
    names: dict[str, str]  # role ("cam", "whole", "pretrained", "random") -> the maps' name in the tables
    evaluation: SceneEvaluation
    clips: list[SceneClip]
    seeds: tuple[int, ...] = (0,)
    absolute: bool = True
    sync_only: SceneEvaluation | None = None
    speakers: pd.DataFrame | None = None

    def method(self, role: str, seed: int | None = None, absolute: bool = False) -> str:
        """The name of a map in the tables: a seeded role's carries its training seed; ``absolute``: its |CAM|."""
        name = self.names[role] + (f", seed {self.seeds[0] if seed is None else seed}" if role in SEEDED_ROLES else "")
        return name + (" |CAM|" if absolute else "")

    def methods(self, role: str, absolute: bool = False) -> list[str]:
        """The maps of a role, one per training seed for a seeded role."""
        if role in SEEDED_ROLES:
            return [self.method(role, seed, absolute) for seed in self.seeds]
        return [self.method(role, None, absolute)]

    @property
    def fine_tuned_first(self) -> Path:
        """The first seed's fine-tuned checkpoint (the overlays draw its maps)."""
        return self.fine_tuned[self.seeds[0]]

    @property
    def shown(self) -> str:
        """The map the overlays draw: the first seed's CAM (|CAM| when the settings say so)."""
        return self.method("cam", self.seeds[0], self.absolute)

    def roles(self) -> dict[str, list[str]]:
        """Every map role as it appears in the seed tables (its label) -> its maps, one per training seed
        or one: the network's maps first, then the baselines (:attr:`baseline_roles`)."""
        roles = {}
        for role in ("cam", "whole", "pretrained", "random"):
            if role in self.names:
                for absolute in (False, True):
                    roles[self.names[role] + (" |CAM|" if absolute else "")] = self.methods(role, absolute)
        roles.update({name: [name] for name in (MotionEnergy.name, CentrePrior.name, RandomMap.name)})
        return roles

    @property
    def network_roles(self) -> list[str]:
        """The fine-tuned CAM's labels (signed and |CAM|): what the verdicts test."""
        return [self.names["cam"], self.names["cam"] + " |CAM|"]

    @property
    def baseline_roles(self) -> list[str]:
        return [self.names["random"], self.names["random"] + " |CAM|", MotionEnergy.name, CentrePrior.name, RandomMap.name]


def cam_shift(experiment: Experiment) -> ShiftConfig:
    """The pretraining's clips at the CAM's frame size and crop (``cam.size``, ``cam.crop``)."""
    return replace(experiment.pretrain.shift, size=experiment.cam.size, crop=experiment.cam.crop)


def sync_only_clips(experiment: Experiment, seed: int = 0, data_root: str | Path = "") -> list[SceneClip]:
    """The first ``cam.sync_only_clips`` sync-only clips of the synthetic world (:class:`SyncOnlyConfig`), built on
    first use beside its scenes; none for real data or a count of 0."""
    count = experiment.cam.sync_only_clips
    if not experiment.synthetic or count == 0:
        return []
    root = scene_files_of(experiment, seed, data_root).root.parent / "sync_only"
    generate_sync_only(SyncOnlyConfig(world_config("scenes", experiment.profile, seed), count), root)
    return [SceneClip(path.stem, path, root / "truth" / f"{path.stem}.npz") for path in sorted((root / "clips").glob("*.mp4"))]


def speaker_clips(experiment: Experiment, seed: int = 0) -> list[tuple[Path, Path]]:
    """(video, truth) of the first ``cam.speaker_clips`` test clips of the world's speakers (talking heads with
    their mouth and face boxes); none for real data or a count of 0."""
    count = experiment.cam.speaker_clips
    if not experiment.synthetic or count == 0:
        return []
    from avlib.data.world import generate_world

    root = generate_world(experiment.profile, seed=seed, parts=("speakers",), progress=False)["speakers"]
    table = pd.read_csv(root / "clips.csv")
    table = table[table["split"] == "test"].sort_values("path").head(count)
    return [(root / path, root / truth) for path, truth in zip(table["path"], table["truth"])]


def evaluate_speakers(clips: Sequence[tuple[Path, Path]], sources: Sequence[MapSource], shift: ShiftConfig,
                      settings: CamSettings, progress: bool = True) -> pd.DataFrame:
    """Map speakers' clips with every source and score every ``eval_frame_stride``-th frame: is the map's peak in
    the mouth's box (``on_mouth``), in the face's box (``on_face``), and the boxes' shares of the frame."""
    from tqdm.auto import tqdm

    from avlib import io

    rows = []
    for video, truth_path in tqdm(clips, desc="speakers", disable=not progress):
        tracks = map_video(video, sources, shift, settings)
        info = io.probe(video)
        with np.load(truth_path) as truth:
            mouth, face, fps = truth["mouth_box"], truth["face_box"], float(truth["fps"])
        index = np.arange(0, len(mouth), settings.eval_frame_stride)
        maps = {name: track.at_times(index / fps) for name, track in tracks.items()}
        rows_, cols = np.mgrid[: info.height, : info.width] + 0.5
        for position, frame in enumerate(index):
            boxes = {}
            for part, box in (("mouth", mouth[frame]), ("face", face[frame])):
                boxes[part] = (cols >= box[0]) & (cols < box[2]) & (rows_ >= box[1]) & (rows_ < box[3])
            for name, values in maps.items():
                score_map = to_frame(values[position], info.height, info.width)
                rows.append({"clip": "/".join(Path(video).parts[-3:]),
                             "frame": int(frame), "method": name, "on_mouth": float(peak_in(score_map, boxes["mouth"])),
                             "on_face": float(peak_in(score_map, boxes["face"])), "mouth_area": float(boxes["mouth"].mean()),
                             "face_area": float(boxes["face"].mean())})
    return pd.DataFrame(rows, columns=["clip", "frame", "method", "on_mouth", "on_face", "mouth_area", "face_area"])


def run(experiment: Experiment, *, seed: int = 0, data_root: str | Path = "", checkpoint_root: str | Path | None = None,
        device: str = "auto", work_dir: str | Path | None = None, progress: bool = True) -> CamRun:
    """Fine-tune the CAM network once per training seed (``cam.seeds``), then map every evaluation clip, the sync-only
    clips and the speakers' clips with each seed's network (tiled and, where tiles differ from the frame, whole-frame),
    with random weights (one draw per seed), with the pretrained weights, and with the motion-energy, centre and
    random baselines; score the maps where the clip has ground truth. Without ground truth in any clip (real data) only
    the networks' tiled maps are made: the others would never be scored. ``work_dir`` keeps the maps
    (``evaluation/``, ``sync_only/``). With ``experiment.seed_processes`` > 1 the fine-tunings run side by side in
    that many worker processes (:func:`avlib.parallel.run_jobs`); each worker decodes its own training clips (the
    task holds none to share), so clips in memory are held once per worker."""
    settings, shift = experiment.cam, cam_shift(experiment)
    device_name = resolve_device(device)
    pretrained = ensure_pretrained(experiment, seed, data_root=data_root, checkpoint_root=checkpoint_root, device=device)
    if experiment.seed_processes > 1 and settings.fine_tune_steps:  # fine-tunings side by side, each worker loads its clips
        jobs = [Job(f"cam fine-tuning, training seed {train_seed}", cam_checkpoint, (experiment, seed),
                    dict(train_seed=train_seed, data_root=data_root, checkpoint_root=checkpoint_root, device=device))
                for train_seed in settings.seeds]
        fine_tuned = dict(zip(settings.seeds, run_jobs(jobs, experiment.seed_processes)))
    else:
        fine_tuned = {train_seed: cam_checkpoint(experiment, seed, train_seed=train_seed, data_root=data_root,
                                                 checkpoint_root=checkpoint_root, device=device)
                      for train_seed in settings.seeds}
    tuned = fine_tuned[settings.seeds[0]] != pretrained
    frames = f"{settings.size} px frames" if (settings.size, settings.crop) != (experiment.pretrain.shift.size,
                                                                               experiment.pretrain.shift.crop) else ""
    detail = ", ".join(part for part in (f"fine-tuned {settings.fine_tune_steps} steps" if tuned else "", frames) if part)
    names = {"cam": "multisensory CAM" + (f" ({detail})" if detail else ""), "random": "random weights"}
    if settings.size != settings.crop:  # ablation: one pass over the frame instead of tiles (the same when one tile covers it)
        names["whole"] = names["cam"] + ", whole frame"
    if tuned:
        names["pretrained"] = "pretrained weights, no fine-tuning"
    result = CamRun(pretrained, fine_tuned, names, SceneEvaluation(pd.DataFrame(columns=FRAME_COLUMNS)), [],
                    tuple(settings.seeds), settings.absolute)
    result.clips = evaluation_clips(experiment, seed, data_root, limit=settings.eval_clips)
    # the whole-frame ablation and the baselines exist to be scored: clips without ground truth (real data) skip them
    scored = any(clip.truth is not None for clip in result.clips)
    sources: list[MapSource] = []
    for train_seed in settings.seeds:
        cam_net = cam_network(fine_tuned[train_seed], device_name)
        sources.append(TiledCam(network_cam(cam_net), shift.crop, result.method("cam", train_seed), settings.tile_batch,
                                device_name))
        if not scored:
            continue
        if "whole" in names:
            sources.append(TiledCam(network_cam(cam_net), shift.crop, result.method("whole", train_seed), settings.tile_batch,
                                    device_name, whole_frame=True))
        torch.manual_seed(train_seed)
        random_net = MultisensoryNet(cam_net.config).to(device_name).eval()
        sources.append(TiledCam(network_cam(random_net), shift.crop, result.method("random", train_seed),
                                settings.tile_batch, device_name))
    if tuned and scored:
        sources.append(TiledCam(network_cam(cam_network(pretrained, device_name)), shift.crop, names["pretrained"],
                                settings.tile_batch, device_name))
    if scored:
        sources += [MotionEnergy(sigma=settings.map_stride), CentrePrior(), RandomMap(seed)]
    result.evaluation = evaluate_scenes(result.clips, sources, shift, settings, progress=progress)
    synchrony = sync_only_clips(experiment, seed, data_root)
    if synchrony:
        result.sync_only = evaluate_scenes(synchrony, sources, shift, settings, progress=progress)
    speakers = speaker_clips(experiment, seed)
    if speakers:
        result.speakers = evaluate_speakers(speakers, sources, shift, settings, progress=progress)
    if work_dir is not None:
        result.evaluation.save(Path(work_dir) / "evaluation")
        if result.sync_only is not None:
            result.sync_only.save(Path(work_dir) / "sync_only")
    return result


# ----------------------------------------------------------------------------- scores over training seeds


def seed_rows(frames: pd.DataFrame, roles: dict[str, list[str]], column: str, measure: str) -> list[dict]:
    """One row per role of ``column`` (0/1 per frame) in %: per-clip means, averaged over clips and seeds, with
    :func:`~avlib.stats.interval_over_seeds` and the seeds' spread (:func:`seed_spread` of each seed's mean over clips)."""
    rows = []
    for label, methods in roles.items():
        matrix, clips = clip_scores(frames, methods, column)
        if not len(clips):
            continue
        mean, low, high = interval_over_seeds(100 * matrix)
        spread = seed_spread(100 * matrix.mean(axis=1))
        rows.append({"measure": measure, "method": label, "seeds": len(methods), "mean %": mean, "95 % low": low,
                     "95 % high": high, "seed sd": spread["sd"], "seed min": spread["min"], "seed max": spread["max"],
                     "clips": len(clips), "frames per seed": int(frames[frames["method"] == methods[0]][column].notna().sum())})
    return rows


def difference_rows(frames: pd.DataFrame, roles: dict[str, list[str]], networks: Sequence[str], baselines: Sequence[str],
                    column: str, measure: str) -> list[dict]:
    """Each network role minus each baseline role on ``column`` (points), per clip: paired seed by seed when both
    have a map per seed (random weights), else against the one baseline map; :func:`~avlib.stats.interval_over_seeds` and verdict."""
    rows = []
    for network in networks:
        for baseline in baselines:
            ours, theirs = roles[network], roles[baseline]
            matrix, clips = clip_scores(frames, ours + [m for m in theirs if m not in ours], column)
            if not len(clips):
                continue
            mine, other = matrix[: len(ours)], matrix[len(ours):]
            differences = 100 * (mine - (other if len(other) == len(mine) else other[:1]))
            mean, low, high = interval_over_seeds(differences)
            rows.append({"measure": measure, "network map": network, "baseline": baseline, "difference (points)": mean,
                         "95 % low": low, "95 % high": high, "seeds": len(ours), "clips": len(clips),
                         "verdict": verdict(low, high, 1)})
    return rows


SYNC_MEASURE = "sync-only clips: frames with more map on the sounding object than on the distractor"
POINTING_MEASURE = "held-out scenes: pointing (peak on a sounding object)"
MOUTH_MEASURE = "speakers: peak on the mouth"
FACE_MEASURE = "speakers: peak on the face"


def scores(result: CamRun, settings: CamSettings, seed: int = 0) -> dict[str, pd.DataFrame] | None:
    """The scored tables of a run with ground truth (None without): ``localization`` (every map on the held-out
    scenes), ``seeds`` (each role over its training seeds: the sync-only headline, pointing, and on speakers the
    mouth and face, with intervals and seed spread), ``vs_baselines`` (the CAM minus each baseline per clip, intervals
    over seeds and clips, verdicts), ``sync_only`` (every map on the sync-only clips) and ``peaks``."""
    frames = result.evaluation.frames
    if not len(frames):
        return None
    roles = result.roles()
    table = summarise(frames, settings.bootstrap, seed)
    rows, differences = [], []
    measures = [(frames, "pointing", POINTING_MEASURE)]
    if result.sync_only is not None and len(result.sync_only.frames):
        measures.insert(0, (result.sync_only.frames, "sounding_over_silent", SYNC_MEASURE))
    if result.speakers is not None and len(result.speakers):
        measures += [(result.speakers, "on_mouth", MOUTH_MEASURE), (result.speakers, "on_face", FACE_MEASURE)]
    for scored, column, measure in measures:
        rows += seed_rows(scored, roles, column, measure)
        differences += difference_rows(scored, roles, result.network_roles, result.baseline_roles, column, measure)
    peaks = pd.DataFrame([{"method": method, **peak_concentration(result.evaluation, method)}
                          for method in frames["method"].unique()])
    tables = {"localization": table, "seeds": pd.DataFrame(rows), "vs_baselines": pd.DataFrame(differences), "peaks": peaks}
    if result.sync_only is not None and len(result.sync_only.frames):
        tables["sync_only"] = summarise(result.sync_only.frames, settings.bootstrap, seed)
    return tables


def claim_inputs(result: CamRun, tables: dict[str, pd.DataFrame], measure: str,
                 baselines: Sequence[str] | None = None) -> dict | None:
    """Keyword arguments of :meth:`avlib.report.results.ResultWriter.compare` for the fine-tuned CAM (signed) on
    ``measure``: its mean % over seeds and clips with :func:`~avlib.stats.interval_over_seeds`, each baseline's difference interval
    (``baselines``: default all of :attr:`CamRun.baseline_roles`), the training seeds and each seed's score; None
    when the run did not score ``measure``."""
    seeds_table, differences = tables["seeds"], tables["vs_baselines"]
    if not len(seeds_table) or measure not in set(seeds_table["measure"]):
        return None
    row = seeds_table[(seeds_table["measure"] == measure) & (seeds_table["method"] == result.names["cam"])].iloc[0]
    against = differences[(differences["measure"] == measure) & (differences["network map"] == result.names["cam"])]
    if baselines is not None:
        against = against[against["baseline"].isin(baselines)]
    frames = {SYNC_MEASURE: (result.sync_only.frames if result.sync_only is not None else None, "sounding_over_silent"),
              POINTING_MEASURE: (result.evaluation.frames, "pointing"),
              MOUTH_MEASURE: (result.speakers, "on_mouth"), FACE_MEASURE: (result.speakers, "on_face")}[measure]
    matrix, _ = clip_scores(frames[0], result.methods("cam"), frames[1])
    return {"ours": float(row["mean %"]), "low": float(row["95 % low"]), "high": float(row["95 % high"]),
            "n": int(row["clips"]), "against": {baseline: (low, high) for baseline, low, high in
                                                zip(against["baseline"], against["95 % low"], against["95 % high"])},
            "seeds": list(result.seeds), "seed_scores": [float(score) for score in 100 * matrix.mean(axis=1)]}


def _run(experiment: Experiment, args) -> dict:
    from avlib.tasks.cli import is_main_process

    result = run(experiment, seed=args.seed, data_root=args.data_root, checkpoint_root=args.checkpoints,
                 device=args.device, work_dir=args.out if is_main_process() else None)
    tables = scores(result, experiment.cam, args.seed)
    summary = {"checkpoint": str(result.fine_tuned_first),
               "checkpoints": {str(train_seed): str(path) for train_seed, path in result.fine_tuned.items()},
               "clips": len(result.clips)}
    if tables is not None and is_main_process():
        for name, table in tables.items():
            table.to_csv(args.out / f"{name}.csv", index=False)
        cam_row = tables["localization"].set_index("method").loc[result.method("cam")]
        by_role = tables["seeds"].set_index(["measure", "method"])["mean %"]
        summary.update({"pointing %": float(cam_row["pointing %"]), "frames": int(cam_row["frames"]),
                        "tables": sorted(f"{name}.csv" for name in tables)})
        if (SYNC_MEASURE, result.names["cam"]) in by_role.index:
            summary["sync-only %"] = float(by_role[(SYNC_MEASURE, result.names["cam"])])
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    from avlib.tasks.cli import run_task

    return run_task("cam", "cam", "CAM sound-source localisation (docs/paper.md §5): fine-tune the cam network, "
                    "map the held-out clips, score them against baselines.", _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
