"""Measuring sound-source localisation on the synthetic world's ground truth (beyond the paper).

The paper shows CAMs but scores none (docs/paper.md §5). The synthetic scenes know, at every frame,
which pixels belong to an object that makes sound and which to a silent distractor that moves the same
ways (:class:`avlib.data.world.SceneTruth`), so maps can be scored:

- **pointing game**: the map's peak lies inside a sounding object (Zhang et al.'s pointing game, as used
  for sound localisation); chance is the sounding objects' share of the frame;
- **cIoU** (Senocak et al., 2018): the map, min-max normalised per frame and binarised at 0.5, against the
  sounding mask G: |P & G| / (|G| + |P - G|); reported as its mean, the share of frames with cIoU >= 0.5,
  and the AUC of that share over thresholds 0, 0.05, ..., 1;
- **silent distractors**, separately, on frames that show one: how often the peak falls on a silent
  object (lower is better), and how often the map is higher on average over the sounding objects than
  over the silent ones (50 % = cannot tell them apart).

Baseline maps share the CAM's windows, tiles and resizing (:func:`avlib.localize.map_video`): a centre
prior, motion energy (frame differences), and random maps (chance); :func:`avlib.tasks.cam.evaluate_scenes`
runs them all and scores them here. Frames are scored where a sounding object
is visible; the 95 % intervals resample clips, since frames of one clip are not independent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from scipy.ndimage import gaussian_filter

from avlib.localize import MapTrack, area_resize, to_frame
from avlib.stats import cluster_bootstrap_ratio

FRAME_COLUMNS = ("clip", "frame", "method", "pointing", "ciou", "sounding_area", "silent_visible", "peak_on_silent",
                 "sounding_over_silent")
#: cIoU thresholds of the success curve whose area is the AUC (Senocak et al.; Chen et al.'s LVS code).
CIOU_THRESHOLDS = np.linspace(0.0, 1.0, 21)


# ----------------------------------------------------------------------------- baselines


class CentrePrior:
    """A Gaussian bump in the frame's centre (sigma a quarter of each side), constant in time:
    where photographers put things."""

    name = "centre prior"

    def __call__(self, frames: np.ndarray, audio: np.ndarray, fps: float,
                 size: tuple[int, int]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        rows = (np.arange(size[0]) + 0.5) / size[0] - 0.5
        cols = (np.arange(size[1]) + 0.5) / size[1] - 0.5
        bump = np.exp(-(rows[:, None] ** 2 + cols[None, :] ** 2) / (2 * 0.25**2)).astype(np.float32)
        return np.array([(len(frames) - 1) / 2 / fps]), {self.name: bump[None]}


class MotionEnergy:
    """|I_t - I_{t-1}| of the grey frames at the network's rate, blurred with a Gaussian of ``sigma``
    pixels of the resized frame: everything that moves, sounding or not, and the panning background."""

    name = "motion energy"

    def __init__(self, sigma: float = 4.0):
        self.sigma = sigma

    def __call__(self, frames: np.ndarray, audio: np.ndarray, fps: float,
                 size: tuple[int, int]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        grey = frames.astype(np.float32).mean(axis=-1)  # (T, H, W)
        if len(grey) == 1:
            energy = np.zeros_like(grey)
        else:
            difference = np.abs(np.diff(grey, axis=0))
            energy = np.concatenate([difference[:1], difference])  # frame 0 borrows frame 1's motion
        energy = gaussian_filter(energy, sigma=(0, self.sigma, self.sigma))
        return np.arange(len(frames)) / fps, {self.name: area_resize(torch.from_numpy(energy), size).numpy()}


class RandomMap:
    """Uniform noise at each network frame: the level of chance for every score."""

    name = "random map (chance)"

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng([seed, 2718])

    def __call__(self, frames: np.ndarray, audio: np.ndarray, fps: float,
                 size: tuple[int, int]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        return np.arange(len(frames)) / fps, {self.name: self.rng.random((len(frames), *size), dtype=np.float32)}


# ----------------------------------------------------------------------------- scores of one frame


def peak_in(score_map: np.ndarray, mask: np.ndarray) -> bool:
    """Pointing game: is the map's maximum (first one, in raster order) inside ``mask``? (H, W) both."""
    return bool(mask.flat[int(np.argmax(score_map))])


def ciou(score_map: np.ndarray, mask: np.ndarray, threshold: float = 0.5) -> float:
    """cIoU of the map min-max normalised and binarised at ``threshold`` against ``mask`` (Senocak et al.):
    |P & G| / (|G| + |P - G|). A flat map predicts nothing and scores 0."""
    low, high = float(score_map.min()), float(score_map.max())
    predicted = (score_map - low) / (high - low) >= threshold if high > low else np.zeros_like(mask)
    return float((predicted & mask).sum() / (mask.sum() + (predicted & ~mask).sum()))


def success_auc(cious: Sequence[float], thresholds: np.ndarray = CIOU_THRESHOLDS) -> float:
    """Area under the share of frames with cIoU >= tau, tau over ``thresholds`` (trapezoids)."""
    values = np.asarray(cious, dtype=np.float64)
    if values.size == 0:
        return float("nan")
    success = [(values >= tau).mean() for tau in thresholds]
    return float(np.trapezoid(success, thresholds))


def sounding_over_silent(score_map: np.ndarray, sounding: np.ndarray, silent: np.ndarray) -> float:
    """1 if the map's mean over the sounding pixels exceeds its mean over the silent ones, 0 if lower, 0.5 if equal."""
    difference = float(score_map[sounding].mean() - score_map[silent].mean())
    return 1.0 if difference > 0 else 0.0 if difference < 0 else 0.5


# ----------------------------------------------------------------------------- scenes


def object_masks(truth, frame: int) -> tuple[np.ndarray, np.ndarray]:
    """(sounding, silent) H x W masks of ``frame`` of a :class:`SceneTruth`: pixels of objects that make
    sound, and pixels of silent objects not covered by a sounding one."""
    masks = truth.masks(frame)
    sounding = masks[truth.sounding].any(axis=0) if truth.sounding.any() else np.zeros(masks.shape[1:], dtype=bool)
    silent = masks[~truth.sounding].any(axis=0) if (~truth.sounding).any() else np.zeros_like(sounding)
    return sounding, silent & ~sounding


@dataclass(frozen=True)
class SceneClip:
    """A clip to map: its name, video and ground truth (``truth/<clip>.npz``; None for real video)."""

    name: str
    video: Path
    truth: Path | None


def on_screen_events(scene: SceneClip) -> int:
    """Sound events of ``scene`` made by a visible object (0 for a clip without ground truth)."""
    from avlib.data.world import load_truth

    return int((load_truth(scene.truth).event_object >= 0).sum()) if scene.truth is not None else 0


@dataclass
class SceneEvaluation:
    """Scores and maps of every method on a set of scene clips.

    ``frames``: one row per (clip, frame, method) where a sounding object is visible: ``pointing``
    (0/1), ``ciou``, ``silent_visible``, ``peak_on_silent`` and ``sounding_over_silent`` (NaN without a
    visible silent object). ``maps[clip][method]`` (F, h, w) at the scored frame indices
    ``frame_index[clip]`` (every ``eval_frame_stride``-th frame, whatever is visible), ``scales[clip][method]``
    each track's overlay scale, ``clips[clip]`` the video and truth paths, ``tracks[clip][method]`` the
    :class:`avlib.localize.MapTrack` of every window (kept in memory for an overlay, not saved).
    """

    frames: pd.DataFrame
    maps: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    frame_index: dict[str, np.ndarray] = field(default_factory=dict)
    scales: dict[str, dict[str, float]] = field(default_factory=dict)
    clips: dict[str, SceneClip] = field(default_factory=dict)
    tracks: dict[str, dict[str, MapTrack]] = field(default_factory=dict)  # clip -> method -> MapTrack; in memory only

    @property
    def methods(self) -> list[str]:
        """Map names, in the order the sources gave them."""
        first = next(iter(self.maps.values()), {})
        return list(first)

    def save(self, directory: str | Path) -> Path:
        """Write ``frames.csv``, ``maps.npz`` and ``index.json`` under ``directory`` (for the browser)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.frames.to_csv(directory / "frames.csv", index=False)
        arrays = {f"{clip}|{method}": values for clip, methods in self.maps.items() for method, values in methods.items()}
        arrays.update({f"{clip}|frame_index": index for clip, index in self.frame_index.items()})
        np.savez_compressed(directory / "maps.npz", **arrays)
        index = {clip: {"video": str(scene.video), "truth": None if scene.truth is None else str(scene.truth),
                        "scales": self.scales[clip]}
                 for clip, scene in self.clips.items()}
        (directory / "index.json").write_text(json.dumps(index, indent=1))
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> "SceneEvaluation":
        directory = Path(directory)
        index = json.loads((directory / "index.json").read_text())
        evaluation = cls(pd.read_csv(directory / "frames.csv"))
        with np.load(directory / "maps.npz") as data:
            for key in data.files:
                clip, name = key.split("|", 1)
                if name == "frame_index":
                    evaluation.frame_index[clip] = data[key]
                else:
                    evaluation.maps.setdefault(clip, {})[name] = data[key]
        for clip, entry in index.items():
            evaluation.clips[clip] = SceneClip(clip, Path(entry["video"]), entry["truth"] and Path(entry["truth"]))
            evaluation.scales[clip] = entry["scales"]
        return evaluation


# ----------------------------------------------------------------------------- summaries


def summarise(frames: pd.DataFrame, resamples: int = 1000, seed: int = 0) -> pd.DataFrame:
    """One row per method, in order of appearance: pointing accuracy (%) with its 95 % clip-bootstrap
    interval, cIoU (mean, share >= 0.5, AUC), and the silent-distractor scores, with the numbers of
    clips and frames each was measured on."""
    rows = []
    for method in dict.fromkeys(frames["method"]):
        scored = frames[frames["method"] == method]
        per_clip = scored.groupby("clip").agg(hits=("pointing", "sum"), n=("pointing", "size"))
        low, high = cluster_bootstrap_ratio(per_clip["hits"].to_numpy(), per_clip["n"].to_numpy(), resamples, seed)
        distractor = scored[scored["silent_visible"]]
        rows.append({
            "method": method,
            "pointing %": 100 * scored["pointing"].mean(),
            "pointing 95 % interval": f"{100 * low:.1f}-{100 * high:.1f}" if np.isfinite(low) else "",
            "cIoU": scored["ciou"].mean(),
            "cIoU >= 0.5 %": 100 * (scored["ciou"] >= 0.5).mean(),
            "cIoU AUC": success_auc(scored["ciou"]),
            "clips": int(scored["clip"].nunique()),
            "frames": len(scored),
            "peak on silent object %": 100 * distractor["peak_on_silent"].mean() if len(distractor) else np.nan,
            "sounding > silent %": 100 * distractor["sounding_over_silent"].mean() if len(distractor) else np.nan,
            "clips with a silent object": int(distractor["clip"].nunique()),
            "frames with a silent object": len(distractor),
        })
    return pd.DataFrame(rows)


def pointing_difference(frames: pd.DataFrame, method: str, baseline: str, resamples: int = 1000,
                        seed: int = 0) -> dict[str, float]:
    """Pointing accuracy of ``method`` minus ``baseline`` (percentage points) on the same frames, with a
    95 % interval from resampling clips (paired: both methods see the same resampled clips)."""
    pair = frames[frames["method"].isin([method, baseline])].pivot_table(
        index=["clip", "frame"], columns="method", values="pointing").dropna()
    difference = (pair[method] - pair[baseline]).groupby(level="clip").agg(["sum", "size"])
    low, high = cluster_bootstrap_ratio(difference["sum"].to_numpy(), difference["size"].to_numpy(), resamples, seed)
    return {"difference": 100 * float(difference["sum"].sum() / max(difference["size"].sum(), 1)),
            "low": 100 * low, "high": 100 * high, "clips": len(difference)}


def clip_scores(frames: pd.DataFrame, methods: Sequence[str], column: str) -> tuple[np.ndarray, list[str]]:
    """(len(methods), N) per-clip means of ``column`` for each method, over the clips every method scored (NaN
    frames, e.g. ``sounding_over_silent`` without a visible distractor, left out), and the N clips' names: the
    examples of :func:`avlib.stats.seed_interval`, since frames of one clip are not independent."""
    scored = frames[frames["method"].isin(methods) & frames[column].notna()]
    table = scored.pivot_table(index="clip", columns="method", values=column, aggfunc="mean")
    table = table.reindex(columns=list(methods)).dropna()
    return table.to_numpy(dtype=np.float64).T, [str(clip) for clip in table.index]


def top_responses(evaluation: SceneEvaluation, method: str, count: int) -> pd.DataFrame:
    """The ``count`` scored frames with the strongest map peak of ``method``, at most one per clip
    (the paper's figure of top-responding held-out frames): clip, frame, response."""
    best = []
    for clip, maps in evaluation.maps.items():
        peaks = maps[method].reshape(len(maps[method]), -1).max(axis=1)
        position = int(np.argmax(peaks))
        best.append({"clip": clip, "frame": int(evaluation.frame_index[clip][position]), "position": position,
                     "response": float(peaks[position])})
    return pd.DataFrame(best).sort_values("response", ascending=False).head(count).reset_index(drop=True)


def peak_concentration(evaluation: SceneEvaluation, method: str) -> dict[str, float]:
    """Where the peaks of ``method``'s maps land, over every stored map of every clip: the stored-map
    cell that holds the most peaks (``row``, ``col``, as fractions of the frame's height and width from
    the top left), the share of peaks in it, and the share a map with its peak anywhere at random would
    put in its most common cell (1 / cells). A map stuck to one place (the official CAM's failure on
    other resolutions) has a share far above that."""
    counts: np.ndarray | None = None
    for maps in evaluation.maps.values():
        values = maps[method]
        if counts is None:
            counts = np.zeros(values.shape[1:], dtype=np.int64)
        flat = values.reshape(len(values), -1).argmax(axis=1)
        counts += np.bincount(flat, minlength=counts.size).reshape(counts.shape)
    if counts is None or counts.sum() == 0:
        return {"row": np.nan, "col": np.nan, "share %": np.nan, "uniform share %": np.nan, "maps": 0}
    row, col = np.unravel_index(int(np.argmax(counts)), counts.shape)
    return {"row": (row + 0.5) / counts.shape[0], "col": (col + 0.5) / counts.shape[1],
            "share %": 100.0 * counts.max() / counts.sum(), "uniform share %": 100.0 / counts.size,
            "maps": int(counts.sum())}


def mask_means(track_maps: np.ndarray, frame_index: np.ndarray, truth) -> pd.DataFrame:
    """Per scored frame, the map's mean over the sounding objects, the silent objects and the rest of
    the frame (NaN where there is none): the CAM over time. ``truth`` a :class:`SceneTruth`."""
    rows = []
    for values, frame in zip(track_maps, frame_index):
        sounding, silent = object_masks(truth, int(frame))
        rest = ~(sounding | silent)
        score_map = to_frame(values, truth.height, truth.width)
        rows.append({"frame": int(frame), "time": frame / truth.fps,
                     "sounding": score_map[sounding].mean() if sounding.any() else np.nan,
                     "silent": score_map[silent].mean() if silent.any() else np.nan,
                     "background": score_map[rest].mean() if rest.any() else np.nan})
    return pd.DataFrame(rows)


__all__ = [
    "CIOU_THRESHOLDS", "CentrePrior", "MotionEnergy", "RandomMap", "SceneClip", "SceneEvaluation", "ciou", "clip_scores",
    "mask_means", "object_masks", "on_screen_events", "peak_concentration", "peak_in", "pointing_difference",
    "sounding_over_silent", "success_auc", "summarise", "top_responses",
]
