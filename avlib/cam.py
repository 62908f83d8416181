"""Class activation maps (CAM) of the alignment network: where it "hears" the sound (paper.md section 5).

The paper's maps light up speakers' mouths and moving sound sources (UNVERIFIED: from a secondary
summary, not the paper's text); how they are computed and drawn is read in the official code.

The multisensory network ends in a global average pool over (T, H, W) and one linear classifier
``joint/logits`` (weights w, bias b) that says whether picture and sound are aligned. Applying that
classifier at every position of the last conv (``conv5_2``, C = 8w channels) gives the CAM:

    M(t, y, x) = sum_c w_c F_c(t, y, x) + b,         so that  logit = mean_{t,y,x} M(t, y, x).

The paper's maps come from the ``cam`` network: conv5_1's spatial stride removed (16 x 14 x 14 maps for a
4.2 s, 224 x 224 clip), then fine-tuned 25 k iterations on the same alignment task. The weights have the
same shapes with or without the stride, so :func:`cam_checkpoint` loads the pretrained weights into
``cam=True`` and fine-tunes them for ``CamSettings.fine_tune_steps`` steps (0: no fine-tuning).

Any video, as a user would bring it:

- **Any size and aspect ratio, by tiling.** Frames are resized with the aspect ratio kept so that the
  short side is the profile's ``size`` (the scale the network was trained at: frames squashed to
  ``size`` x ``size``), then covered by a grid of ``crop`` x ``crop`` tiles, the network's input. Each tile's
  CAM is upsampled to the tile and the tiles are averaged where they overlap; the result covers the
  whole frame and is mapped back to it by one scale per axis. The official ``NetClf.predict_cam``
  (broken as released) averaged a 5 x 5 grid of crops of the frame squashed to a square; its demo
  squashed every video to 224 x 224.
- **Any length, by sliding windows** of the profile's ``window`` seconds with a hop of half a window
  (as the official ``sep_video.py``); a video shorter than a window is one shorter window (the network
  is fully convolutional in time). Each CAM step is placed at the centre of the frames it summarises,
  and each output frame's map is interpolated linearly in time, averaged over the windows covering it.
- **Mono, stereo or surround sound**: read as stereo by :mod:`avlib.io` (mono duplicated, 5.1 down-mixed).
- A video **without sound** raises :class:`avlib.io.NoAudioError`: the CAM shows where the picture
  agrees with the sound, so without sound it has no meaning.

The overlay is the official ``heatmap()`` of ``src/sep_video.py``: ``max_val`` the 97th percentile of the
video's |CAM|, ``lo = 0.5 max_val``, jet colours on [lo, max_val], alpha = clip((M - lo) / (hi - lo), 0, 0.35).

Command line: ``python -m avlib.cam VIDEO --checkpoint CKPT --out OUT.mp4``.

Dimension letters: B batch, T frames, T' CAM steps, H x W frame, h x w map, C channels, N audio samples.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import asdict, dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Callable, Protocol, Sequence

import av
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from avlib import io
from avlib.data.shift import ShiftConfig
from avlib.hashing import file_digest, json_key
from avlib.models.multisensory import MultisensoryNet, from_checkpoint, normalize_frames
from avlib.results import atomic_path
from avlib.writer import fps_fraction

#: The official overlay (``heatmap()`` in ``src/sep_video.py``).
PAPER_PERCENTILE = 97.0
PAPER_LO_FRACTION = 0.5
PAPER_MAX_ALPHA = 0.35
#: ``cam_v1`` = ``shift_v1`` at 650 k iterations, stride removed, fine-tuned to 675 k (``src/shift_params.py``).
PAPER_FINE_TUNE_STEPS = 25_000
PAPER_PRETRAIN_STEPS = 650_000
PAPER_FINE_TUNE_BATCH = 5


@dataclass(frozen=True)
class CamSettings:
    """Settings of notebook 02 and of :func:`localize`; :func:`settings_for` gives each profile's.

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


# ----------------------------------------------------------------------------- the map itself


def class_activation_map(last_conv: Tensor, weight: Tensor, bias: Tensor | float) -> Tensor:
    """M = sum_c w_c F_c + b at every position: the classifier as a 1x1x1 conv on the last conv.

    last_conv (B, C, T', h, w), weight (C,), bias scalar -> (B, T', h, w). Its mean over positions is
    the logit of the global-average-pooled network.
    """
    if last_conv.dim() != 5 or weight.dim() != 1 or last_conv.shape[1] != weight.shape[0]:
        raise ValueError(f"expected last_conv (B, C, T, H, W) and weight (C,), got {tuple(last_conv.shape)} "
                         f"and {tuple(weight.shape)}")
    return torch.einsum("bcthw,c->bthw", last_conv, weight) + bias


def network_cam(net: MultisensoryNet) -> Callable[[Tensor, Tensor], Tensor]:
    """A function (frames (B, 3, T, S, S) in [-1, 1], audio (B, 2, N)) -> CAM (B, T', h, w) of ``net``.

    The audio stream runs once per call: every tile of a window hears the same sound.
    """

    def cam(frames: Tensor, audio: Tensor) -> Tensor:
        audio_features = net.forward_audio(audio[:1])
        output = net.forward_fused(net.forward_video(frames), audio_features.expand(len(frames), -1, -1))
        return class_activation_map(output["features"]["conv5_2"], net.logits.weight[0], net.logits.bias[0])

    return cam


# ----------------------------------------------------------------------------- geometry


def resized_size(height: int, width: int, shift: ShiftConfig) -> tuple[int, int]:
    """(H_r, W_r): the frame with its short side at ``shift.size`` and its aspect ratio kept."""
    scale = shift.size / min(height, width)
    return max(shift.crop, int(round(height * scale))), max(shift.crop, int(round(width * scale)))


def tile_offsets(length: int, crop: int) -> list[int]:
    """Starts of the fewest ``crop``-long tiles that cover ``length``, evenly spaced, both ends included."""
    if length < crop:
        raise ValueError(f"cannot tile {length} pixels with {crop}-pixel crops")
    count = 1 if length == crop else math.ceil((length - crop) / crop) + 1
    return [int(round(v)) for v in np.linspace(0, length - crop, count)]


def map_size(resized: tuple[int, int], stride: int) -> tuple[int, int]:
    """(h, w) of the stored maps: the resized frame at one pixel per ``stride``."""
    return math.ceil(resized[0] / stride), math.ceil(resized[1] / stride)


def step_times(num_frames: int, steps: int, fps: float) -> np.ndarray:
    """Seconds from a window's first frame to the centre of each of its ``steps`` CAM steps.

    Step j summarises frames [j T / T', (j + 1) T / T'); the official ``heatmap()`` placed it at its
    first frame instead, half a step earlier.
    """
    return ((np.arange(steps) + 0.5) * num_frames / steps - 0.5) / fps


def to_frame(maps: np.ndarray | Tensor, height: int, width: int) -> np.ndarray:
    """Bilinear resize of maps (..., h, w) covering the frame to (..., height, width) float32."""
    values = torch.as_tensor(np.asarray(maps, dtype=np.float32))
    lead = values.shape[:-2]
    flat = values.reshape(-1, 1, *values.shape[-2:])
    out = F.interpolate(flat, size=(height, width), mode="bilinear", align_corners=False)
    return out.reshape(*lead, height, width).numpy()


def area_resize(maps: Tensor, size: tuple[int, int]) -> Tensor:
    """(S, H, W) -> (S, h, w) by averaging (adaptive average pooling)."""
    return F.adaptive_avg_pool2d(maps[:, None], size)[:, 0]


# ----------------------------------------------------------------------------- map sources


class MapSource(Protocol):
    """Scores one window. frames (T, H_r, W_r, 3) uint8 at the network's rate, audio (2, N), the
    window's fps and the stored map size (h, w) -> step times (S,) in seconds from the window's first
    frame and named maps {name: (S, h, w) float32}."""

    def __call__(self, frames: np.ndarray, audio: np.ndarray, fps: float,
                 size: tuple[int, int]) -> tuple[np.ndarray, dict[str, np.ndarray]]: ...


class TiledCam:
    """The CAM of a network over a whole frame, by tiling (see the module docstring).

    Args:
        cam: (frames (B, 3, T, S, S) in [-1, 1], audio (B, 2, N)) -> (B, T', h', w'); :func:`network_cam`.
        crop: the tile side S, the network's input size.
        name: the returned maps are ``name`` (signed logits) and ``name + " |CAM|"`` (|CAM| per tile,
            then averaged, as the official ``predict_cam``).
        tile_batch: tiles per forward pass.
        device: where ``cam`` runs.
        whole_frame: one pass over the whole resized frame instead of tiles (the network is fully
            convolutional, so it takes any size); an ablation of the tiling.
    """

    def __init__(self, cam: Callable[[Tensor, Tensor], Tensor], crop: int, name: str = "CAM",
                 tile_batch: int = 8, device: str | torch.device = "cpu", whole_frame: bool = False):
        self.cam, self.crop, self.name, self.tile_batch = cam, crop, name, tile_batch
        self.device, self.whole_frame = torch.device(device), whole_frame

    @torch.no_grad()
    def __call__(self, frames: np.ndarray, audio: np.ndarray, fps: float,
                 size: tuple[int, int]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        num_frames, height, width = frames.shape[:3]
        tile_h, tile_w = (height, width) if self.whole_frame else (self.crop, self.crop)
        offsets = [(y, x) for y in tile_offsets(height, tile_h) for x in tile_offsets(width, tile_w)]
        sound = torch.from_numpy(np.ascontiguousarray(audio))[None].to(self.device)  # (1, 2, N)
        signed = absolute = counts = None
        for first in range(0, len(offsets), self.tile_batch):
            batch = offsets[first : first + self.tile_batch]
            tiles = np.stack([frames[:, y : y + tile_h, x : x + tile_w] for y, x in batch])  # (B, T, S, S, 3)
            video = normalize_frames(torch.from_numpy(tiles).to(self.device))
            cam = self.cam(video, sound.expand(len(batch), -1, -1)).float()  # (B, T', h', w')
            cam = F.interpolate(cam, size=(tile_h, tile_w), mode="bilinear", align_corners=False).cpu()
            if signed is None:
                signed = torch.zeros(cam.shape[1], height, width)
                absolute, counts = torch.zeros_like(signed), torch.zeros(height, width)
            for (y, x), tile in zip(batch, cam):
                signed[:, y : y + tile_h, x : x + tile_w] += tile
                absolute[:, y : y + tile_h, x : x + tile_w] += tile.abs()
                counts[y : y + tile_h, x : x + tile_w] += 1
        signed, absolute = signed / counts, absolute / counts
        times = step_times(num_frames, signed.shape[0], fps)
        return times, {self.name: area_resize(signed, size).numpy(),
                       f"{self.name} |CAM|": area_resize(absolute, size).numpy()}


# ----------------------------------------------------------------------------- maps of a video


@dataclass
class MapTrack:
    """The maps of one video on its clock (seconds from its first frame), window by window.

    ``spans[i]``: (first, last) frame time of window i; ``times[i]`` (S_i,) its step times;
    ``maps[i]`` (S_i, h, w) its maps.
    """

    spans: list[tuple[float, float]]
    times: list[np.ndarray]
    maps: list[np.ndarray]

    def at(self, time: float) -> np.ndarray:
        """(h, w) map at ``time``: each covering window interpolated linearly between its steps
        (held constant before its first and after its last), averaged over the covering windows;
        outside every window, the nearest window's."""
        covering = [i for i, (first, last) in enumerate(self.spans) if first <= time <= last]
        if not covering:
            distance = [min(abs(time - first), abs(time - last)) for first, last in self.spans]
            covering = [int(np.argmin(distance))]
        total = None
        for i in covering:
            times, maps = self.times[i], self.maps[i]
            if time <= times[0] or len(times) == 1:
                value = maps[0]
            elif time >= times[-1]:
                value = maps[-1]
            else:
                right = int(np.searchsorted(times, time, side="right"))
                weight = (time - times[right - 1]) / (times[right] - times[right - 1])
                value = (1 - weight) * maps[right - 1] + weight * maps[right]
            total = value if total is None else total + value
        return (total / len(covering)).astype(np.float32)

    def at_times(self, times: Sequence[float]) -> np.ndarray:
        """(len(times), h, w) maps."""
        return np.stack([self.at(float(t)) for t in times])

    def values(self) -> np.ndarray:
        """Every step map of every window, flattened (for the overlay's percentile)."""
        return np.concatenate([maps.ravel() for maps in self.maps])


def window_starts(total: int, window: int, hop: float) -> list[int]:
    """First frames of sliding windows of ``window`` frames over ``total`` frames: a hop of
    ``hop * window`` frames, the last window flush with the end; one window if the clip is shorter."""
    if total <= window:
        return [0]
    step = max(1, int(round(hop * window)))
    starts = list(range(0, total - window + 1, step))
    if starts[-1] != total - window:
        starts.append(total - window)
    return starts


def require_audio(info: io.VideoInfo) -> None:
    """Raise :class:`avlib.io.NoAudioError` for a video without sound, saying why it matters."""
    if not info.has_audio:
        raise io.NoAudioError(info.path, "has no audio track; a class activation map shows where the picture "
                                         "agrees with the sound, so without sound it has no meaning")


def map_video(path: str | Path, sources: Sequence[MapSource], shift: ShiftConfig, settings: CamSettings,
              progress: bool = False) -> dict[str, MapTrack]:
    """Run every source over sliding windows of a video; return one :class:`MapTrack` per map name.

    Windows are read at the network's rates (``shift.fps``, ``shift.sample_rate``, stereo) with frames
    resized by :func:`resized_size`; maps are stored at :func:`map_size`.
    """
    from tqdm.auto import tqdm

    info = io.probe(path)
    require_audio(info)
    resized = resized_size(info.height, info.width, shift)
    size = map_size(resized, settings.map_stride)
    total = int(info.usable_duration * shift.fps - 1e-6)
    if total < 1:
        raise io.WindowError(path, f"{info.usable_duration:.3f} s of picture and sound is shorter than one "
                                   f"frame at {shift.fps} fps")
    window = min(shift.num_frames, total)
    tracks: dict[str, MapTrack] = {}
    for start in tqdm(window_starts(total, window, settings.hop), desc="windows", disable=not progress, leave=False):
        clip = io.read_clip(path, start / shift.fps, fps=shift.fps, num_frames=window, size=resized,
                            resize="squash", sample_rate=shift.sample_rate, channels=2)
        first = start / shift.fps
        span = (first, first + (window - 1) / shift.fps)
        for source in sources:
            times, maps = source(clip.frames, clip.audio, shift.fps, size)
            for name, values in maps.items():
                track = tracks.setdefault(name, MapTrack([], [], []))
                track.spans.append(span)
                track.times.append(first + times)
                track.maps.append(values.astype(np.float32))
    return tracks


# ----------------------------------------------------------------------------- overlay


def overlay_scale(values: np.ndarray, percentile: float = PAPER_PERCENTILE) -> float:
    """The official adaptive ``max_val``: the ``percentile`` of the video's map values; 0 (draw nothing)
    when the whole video's map is flat (a range of at most 0.001, as the official ``same`` test)."""
    if float(values.max() - values.min()) <= 1e-3:
        return 0.0
    return float(np.percentile(values, percentile))


_JET: Tensor | None = None


def _jet() -> Tensor:
    """matplotlib's jet as a (256, 3) float32 table of 0..255 colours."""
    global _JET
    if _JET is None:
        from matplotlib import colormaps

        _JET = torch.from_numpy((colormaps["jet"](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.float32))
    return _JET


def heat_overlay(frame: np.ndarray, cam: np.ndarray, max_val: float, lo_fraction: float = PAPER_LO_FRACTION,
                 max_alpha: float = PAPER_MAX_ALPHA) -> np.ndarray:
    """The official ``heatmap()`` for one frame: frame (H, W, 3) uint8, cam (H, W) -> (H, W, 3) uint8.

    lo = lo_fraction * max_val, hi = max_val + 0.001; colour = jet((cam - lo) / (hi - lo)) and
    alpha = clip((cam - lo) / (hi - lo), 0, max_alpha); out = frame (1 - alpha) + colour alpha.
    A scale <= 0 (see :func:`overlay_scale`) leaves the frame as it is.
    """
    if frame.shape[:2] != cam.shape:
        raise ValueError(f"frame {frame.shape} and map {cam.shape} differ in size")
    if max_val <= 0:
        return frame.copy()
    lo, hi = lo_fraction * max_val, max_val + 1e-3
    level = ((torch.as_tensor(np.asarray(cam, dtype=np.float32)) - lo) / (hi - lo)).clamp_(0.0, 1.0)
    colour = _jet()[(level * 255 + 0.5).long()]  # (H, W, 3)
    alpha = level.clamp(max=max_alpha).unsqueeze(-1)
    image = torch.from_numpy(np.ascontiguousarray(frame)).float()
    return image.add_(colour.sub_(image).mul_(alpha)).add_(0.5).to(torch.uint8).numpy()


# ----------------------------------------------------------------------------- checkpoints


def shift_config_of(checkpoint: str | Path) -> ShiftConfig | None:
    """The input settings (window, rates, size, crop) a pretraining checkpoint was trained with, or None."""
    from avlib.checkpoint import load_checkpoint

    stored = load_checkpoint(checkpoint)["config"].get("run", {}).get("pretrain", {}).get("shift")
    return ShiftConfig(**stored) if stored else None


def cam_network(checkpoint: str | Path, device: str | torch.device = "cpu") -> MultisensoryNet:
    """The network of ``checkpoint`` with conv5_1's spatial stride removed (``cam=True``), in eval mode.

    The weights fit with or without the stride; a checkpoint from :func:`cam_checkpoint` is the
    fine-tuned CAM network, a pretraining checkpoint is used as it is.
    """
    return from_checkpoint(checkpoint, map_location=device, cam=True)


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
    from avlib.losses import alignment_loss
    from avlib.metrics import alignment_accuracy
    from avlib.pretrain import ensure_pretrained, scene_sources
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
    stage = profile.pretrain.stages[-1]
    shift = replace(profile.pretrain.shift, fps=stage.fps)
    sources, _, _ = scene_sources(profile, seed, data_root)
    train_source, held_out_source = sources(stage.fps)
    held_out = evaluation_set(held_out_source, shift, per_video=profile.pretrain.eval_pairs_per_video, seed=seed)
    model = cam_network(pretrained).train()
    run_device = torch.device("cuda" if device in ("cuda", "auto") and torch.cuda.is_available() else "cpu")
    config = TrainConfig(
        steps=settings.fine_tune_steps, optimizer=profile.pretrain.optimizer,
        lr=profile.pretrain.lr if settings.fine_tune_lr is None else settings.fine_tune_lr, momentum=profile.pretrain.momentum,
        weight_decay=profile.pretrain.weight_decay, grad_clip=profile.pretrain.grad_clip,
        checkpoint_every=max(1, min(profile.pretrain.checkpoint_every, settings.fine_tune_steps)),
        log_every=max(1, min(10, settings.fine_tune_steps)), seed=seed + 7919, device=str(run_device),
        amp=profile.pretrain.amp, channels_last=profile.pretrain.channels_last, out_dir=str(out_dir),
    )
    pretrain_config = profile.pretrain.to_dict()
    pretrain_config["shift"] = asdict(shift)
    fit(model, alignment_loss, ShiftBatches(train_source, shift, settings.fine_tune_batch, seed=seed + 7919), config,
        eval_fn=lambda net: alignment_accuracy(net, held_out, device=run_device),
        run_config={"pretrain": pretrain_config, "stage": "cam", "profile": profile_name, "seed": seed,
                    "initialised_from": {"file": pretrained.name, "sha1_10": _digest(pretrained)},
                    "cam_settings": asdict(settings)})
    return out_dir / "checkpoint.pt"


# ----------------------------------------------------------------------------- localize a video


@dataclass
class Localization:
    """What :func:`localize` returns.

    ``maps`` (T, h, w) float32: the CAM (|CAM| if ``absolute``) at each of the video's T frames, on a
    grid covering the frame (:func:`to_frame` resizes one to (H, W)); ``times`` (T,) the frames'
    presentation times from the first frame; ``scale`` the overlay's ``max_val``; ``out`` the overlay video.
    """

    maps: np.ndarray
    times: np.ndarray
    frame_size: tuple[int, int]
    fps: float
    scale: float
    absolute: bool
    out: Path | None

    def frame_map(self, index: int) -> np.ndarray:
        """(H, W) map of frame ``index`` at the video's resolution."""
        return to_frame(self.maps[index], *self.frame_size)


#: Output layouts the AAC encoder takes, by channel count; others are down-mixed to stereo.
_AAC_LAYOUTS = {1: "mono", 2: "stereo", 6: "5.1", 8: "7.1"}


def write_overlay(video: str | Path, track: MapTrack, out: str | Path, scale: float, settings: CamSettings,
                  progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Decode ``video`` frame by frame, draw the map of each frame's time over it, and write ``out``
    (H.264 + AAC mp4, or any container :mod:`avlib.writer` knows) with the original sound re-encoded
    at its own rate and channel count; frame timestamps are kept, so frame rate and duration are the
    input's. Odd frame sizes lose their last row or column (yuv420p needs even sizes).

    Returns the maps at every frame (T, h, w) and the frames' times (T,). Memory stays bounded by one
    frame, so videos of any length work.
    """
    from tqdm.auto import tqdm

    video, out = Path(video), Path(out)
    _check_overlay_path(out)
    maps, times = [], []
    info = io.probe(video)
    require_audio(info)
    with av.open(str(video), metadata_errors="ignore") as source:
        vin, ain = source.streams.video[0], source.streams.audio[0]
        vin.thread_type = "AUTO"
        height, width = info.height - info.height % 2, info.width - info.width % 2
        rate = fps_fraction(info.fps)  # a hint for the encoder: every frame keeps its own timestamp
        layout = _AAC_LAYOUTS.get(ain.codec_context.channels, "stereo")
        sample_rate = int(ain.codec_context.sample_rate)
        time_base = Fraction(1, 90_000)
        with atomic_path(out) as tmp:
            with av.open(str(tmp), mode="w", format={".mkv": "matroska"}.get(out.suffix.lower())) as sink:
                vout = sink.add_stream("libx264", rate=rate)
                vout.width, vout.height, vout.pix_fmt = width, height, "yuv420p"
                vout.time_base = time_base
                vout.codec_context.time_base = time_base
                vout.codec_context.options = {"crf": "20", "preset": "veryfast"}
                aout = sink.add_stream("aac", rate=sample_rate, layout=layout)
                resampler = av.AudioResampler(format="fltp", layout=layout, rate=sample_rate,
                                              frame_size=aout.codec_context.frame_size or 1024)
                audio_next: int | None = None
                last_pts = -1
                bar = tqdm(total=info.num_frames, desc="overlay", disable=not progress, leave=False)
                try:
                    for packet in source.demux(vin, ain):
                        for frame in packet.decode():
                            if frame.time is None:
                                continue
                            time = frame.time - info.video_start
                            if packet.stream.type == "video":
                                pts = int(round(time / time_base))
                                if pts <= last_pts:  # a repeated timestamp cannot be muxed
                                    continue
                                last_pts = pts
                                value = track.at(time)
                                maps.append(value)
                                times.append(time)
                                image = frame.to_ndarray(format="rgb24")[:height, :width]
                                drawn = heat_overlay(image, to_frame(value, height, width), scale, settings.lo_fraction,
                                                     settings.max_alpha)
                                picture = av.VideoFrame.from_ndarray(drawn, format="rgb24")
                                picture.pts, picture.time_base = pts, time_base
                                sink.mux(vout.encode(picture))
                                bar.update()
                            else:
                                if audio_next is None:  # audio before the first picture is dropped
                                    audio_next = max(0, int(round(time * sample_rate)))
                                # stamped by sample count below; the input's own stamps could make the resampler pad gaps
                                frame.pts = None
                                for chunk in resampler.resample(frame):
                                    chunk.pts, chunk.time_base = audio_next, Fraction(1, sample_rate)
                                    audio_next += chunk.samples
                                    sink.mux(aout.encode(chunk))
                    for chunk in resampler.resample(None):
                        chunk.pts, chunk.time_base = audio_next, Fraction(1, sample_rate)
                        audio_next += chunk.samples
                        sink.mux(aout.encode(chunk))
                    sink.mux(vout.encode())
                    sink.mux(aout.encode())
                except av.error.FFmpegError as error:
                    raise io.CorruptFileError(video, f"decoding for the overlay failed ({error})") from error
                finally:
                    bar.close()
    if not maps:
        raise io.CorruptFileError(video, "holds no decodable frames")
    return np.stack(maps), np.asarray(times)


def _check_overlay_path(out: Path) -> None:
    if out.suffix.lower() not in (".mp4", ".mkv", ".mov"):
        raise ValueError(f"{out}: the overlay is H.264 + AAC; name an .mp4, .mkv or .mov file")


def localize(video: str | Path, checkpoint: str | Path, out: str | Path | None = None, *,
             shift: ShiftConfig | None = None, settings: CamSettings | None = None, device: str = "cpu",
             progress: bool = False) -> Localization:
    """Sound-source maps of a video: the CAM of ``checkpoint``'s network (loaded with ``cam=True``) over
    sliding windows and tiles, at every frame of the video; with ``out``, also an overlay video with the
    original sound, frame rate and duration.

    ``shift`` (the network's input: window, fps, sample rate, size, crop) defaults to the one stored in
    the checkpoint by pretraining; ``settings`` to :func:`settings_for` of the checkpoint's profile.
    Raises :class:`avlib.io.NoAudioError` for a video without sound and other :class:`avlib.io.MediaError`
    subclasses for unreadable files, naming the file.
    """
    from avlib.checkpoint import load_checkpoint

    video = Path(video)
    if out is not None:
        _check_overlay_path(Path(out))
    require_audio(io.probe(video))
    run = load_checkpoint(checkpoint)["config"].get("run", {})
    shift = shift or shift_config_of(checkpoint)
    if shift is None:
        raise ValueError(f"checkpoint {checkpoint} does not record its input settings; pass shift=ShiftConfig(...) "
                         "or --profile")
    settings = settings or settings_for(run.get("profile", "paper"))
    net = cam_network(checkpoint, device)
    name = "CAM"
    tracks = map_video(video, [TiledCam(network_cam(net), shift.crop, name, settings.tile_batch, device)], shift,
                       settings, progress)
    track = tracks[f"{name} |CAM|" if settings.absolute else name]
    scale = overlay_scale(track.values(), settings.percentile)
    info = io.probe(video)
    if out is None:
        frame_times = _frame_times(video, info)
        maps = track.at_times(frame_times)
    else:
        maps, frame_times = write_overlay(video, track, out, scale, settings, progress)
    return Localization(maps=maps, times=np.asarray(frame_times), frame_size=(info.height, info.width), fps=info.fps,
                        scale=scale, absolute=settings.absolute, out=Path(out) if out is not None else None)


def _frame_times(video: Path, info: io.VideoInfo) -> np.ndarray:
    """Presentation times of every frame from the first, from the packets (nothing is decoded)."""
    with av.open(str(video), metadata_errors="ignore") as source:
        stream = source.streams.video[0]
        stamps = sorted(float(p.pts * p.time_base) for p in source.demux(stream) if p.pts is not None and p.size)
    return np.asarray(stamps) - info.video_start


# ----------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m avlib.cam",
        description="Draw where the multisensory network hears the sound (its class activation map) over a video.")
    parser.add_argument("video", help="any video with sound (any size, frame rate, length; mono, stereo or 5.1)")
    parser.add_argument("--checkpoint", required=True, help="a pretraining or CAM checkpoint (.pt)")
    parser.add_argument("--out", required=True, help="overlay video to write (.mp4, .mkv)")
    parser.add_argument("--profile", default=None, choices=("smoke", "synth", "paper"),
                        help="take the input settings from this profile instead of the checkpoint")
    parser.add_argument("--signed", action="store_true", help="overlay the signed CAM instead of |CAM|")
    parser.add_argument("--maps", default=None, help="also save the per-frame maps to this .npz")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)

    shift, settings = None, None
    if args.profile:
        from avlib.profiles import get_profile

        shift = get_profile(args.profile).pretrain.shift
        settings = settings_for(args.profile)
    if args.signed:
        from avlib.checkpoint import load_checkpoint

        base = settings or settings_for(load_checkpoint(args.checkpoint)["config"].get("run", {}).get("profile", "paper"))
        settings = replace(base, absolute=False)
    try:
        result = localize(args.video, args.checkpoint, args.out, shift=shift, settings=settings, device=args.device,
                          progress=True)
    except (io.MediaError, ValueError, FileNotFoundError) as error:  # bad input: one line, not a traceback
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.maps:
        np.savez_compressed(args.maps, maps=result.maps, times=result.times, scale=result.scale)
    print(f"wrote {result.out}: {len(result.times)} frames, maps {result.maps.shape[1]}x{result.maps.shape[2]} "
          f"per frame, overlay scale {result.scale:.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
