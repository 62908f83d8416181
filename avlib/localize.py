"""Where the alignment network "hears" the sound in any video: its class activation map (CAM) over
tiles and sliding windows, and the official overlay drawn into a video (docs/paper.md §5).

The map itself is :meth:`avlib.models.multisensory.MultisensoryNet.cam`, M(t, y, x) = sum_c w_c F_c(t, y, x) + b,
whose mean over positions is the "aligned" logit; :func:`avlib.models.multisensory.network_cam` runs it on
frames and sound. The ``cam`` network (conv5_1 without spatial stride) and its fine-tuning are
:mod:`avlib.tasks.cam`.

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

Command line: ``python -m avlib.localize VIDEO --checkpoint CKPT --out OUT.mp4``.

Dimension letters: B batch, T frames, T' CAM steps, H x W frame, h x w map, C channels, N audio samples.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Protocol, Sequence

import av
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from avlib import io
from avlib.config import PAPER_LO_FRACTION, PAPER_MAX_ALPHA, PAPER_PERCENTILE, PROFILES, CamSettings, resolve
from avlib.data.shift import ShiftConfig
from avlib.files import atomic_path
from avlib.models.multisensory import cam_network, network_cam, normalize_frames
from avlib.writer import AAC_LAYOUTS

#: x264's speed preset for the overlay (at crf 20, as before): the fastest; files about twice as large as "veryfast"'s
#: (results/bench/overlay.md gives the frames per second and sizes of both)
OVERLAY_PRESET = "ultrafast"
#: Sound codecs the overlay copies as they are (mp4, mov and mkv hold them); others are re-encoded as AAC.
COPIED_SOUND = ("aac", "mp3", "ac3", "eac3", "opus", "flac", "alac")
#: ``--device`` choices, as ``./reproduce.sh``'s.
DEVICES = ("auto", "cpu", "cuda")

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


_JET: np.ndarray | None = None


def _jet() -> np.ndarray:
    """matplotlib's jet as a (256, 3) float32 table of 0..255 colours."""
    global _JET
    if _JET is None:
        from matplotlib import colormaps

        _JET = (colormaps["jet"](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.float32)
    return _JET


def heat_overlay(frame: np.ndarray, cam: np.ndarray, max_val: float, lo_fraction: float = PAPER_LO_FRACTION,
                 max_alpha: float = PAPER_MAX_ALPHA) -> np.ndarray:
    """The official ``heatmap()`` for one frame: frame (H, W, 3) uint8, cam (H, W) -> (H, W, 3) uint8.

    lo = lo_fraction * max_val, hi = max_val + 0.001; colour = jet((cam - lo) / (hi - lo)) and
    alpha = clip((cam - lo) / (hi - lo), 0, max_alpha); out = frame (1 - alpha) + colour alpha, rounded.
    A scale <= 0 (see :func:`overlay_scale`) leaves the frame as it is. Computed in float32 one colour plane
    at a time, over the rows that hold a pixel above ``lo`` only (alpha is 0 elsewhere).
    """
    if frame.shape[:2] != cam.shape:
        raise ValueError(f"frame {frame.shape} and map {cam.shape} differ in size")
    out = np.array(frame, dtype=np.uint8, copy=True)
    if max_val <= 0:
        return out
    lo, hi = lo_fraction * max_val, max_val + 1e-3
    level = (np.asarray(cam, dtype=np.float32) - np.float32(lo)) / np.float32(hi - lo)
    rows = np.flatnonzero((level > 0).any(axis=1))
    if rows.size == 0:
        return out
    band = slice(int(rows[0]), int(rows[-1]) + 1)  # rows outside it have alpha 0 everywhere
    level = np.clip(level[band], np.float32(0.0), np.float32(1.0))
    index = (level * np.float32(255) + np.float32(0.5)).astype(np.intp)
    alpha = np.minimum(level, np.float32(max_alpha))
    for channel, table in enumerate(_jet().T):  # one colour plane at a time: contiguous float32 arithmetic
        image = out[band, :, channel].astype(np.float32)
        colour = table.take(index)
        colour -= image
        colour *= alpha
        image += colour
        image += np.float32(0.5)
        out[band, :, channel] = image.astype(np.uint8)
    return out


#: BT.601 studio-swing R'G'B' (0..255) -> Y'CbCr, as swscale converts untagged video: rows Y, Cb, Cr
_BT601 = np.array([[65.481, 128.553, 24.966], [-37.797, -74.203, 112.0], [112.0, -93.786, -18.214]]) / 255.0
_BT601_OFFSET = np.array([16.0, 128.0, 128.0])
#: frame colour spaces (AVColorSpace) that swscale converts with the BT.601 matrix: unspecified, BT470BG, SMPTE170M
_BT601_SPACES = (2, 5, 6)


class _Resize:
    """A 1-D bilinear resize from ``size_in`` to ``size_out`` samples with ``align_corners=False`` (the weights of
    :func:`to_frame`): output i mixes inputs ``first[i]`` and ``second[i]`` by ``weight[i]``; input cell c weighs in
    on outputs ``reach[0][c]`` to ``reach[1][c]``."""

    def __init__(self, size_out: int, size_in: int):
        source = np.maximum((np.arange(size_out) + 0.5) * (size_in / size_out) - 0.5, 0.0)
        self.first = np.minimum(source.astype(np.intp), size_in - 1)
        self.second = np.minimum(self.first + 1, size_in - 1)
        self.weight = (source - self.first).astype(np.float32)
        cells = np.arange(size_in)[:, None]
        used = ((self.first == cells) & (self.weight < 1)) | ((self.second == cells) & (self.weight > 0))  # (size_in, size_out)
        self.reach = (used.argmax(axis=1), size_out - 1 - used[:, ::-1].argmax(axis=1))


class PlaneBlend:
    """:func:`heat_overlay` for a whole video at one ``scale``, drawn straight on its yuv420p planes (what the decoder
    gives and x264 takes, so no conversion to RGB and back): the blend is linear, so blending Y'CbCr with the jet colour
    converted by the BT.601 matrix is blending R'G'B'; Y at full resolution, Cb and Cr at half in each direction.

    The map's level in 1/255 steps (the steps jet's colour takes) indexes a (level, plane value) -> blended value table
    per plane; the map is resized to each plane's size by the bilinear weights of :func:`to_frame`, over the box of
    pixels that mix a cell above ``lo`` only (the rest has alpha 0 and is left as it is); Cb and Cr are the mean of what
    the 2 x 2 pixels they cover would get.

    Tolerance (tests/test_localize.py asserts it, bench/overlay.py measures it): the change drawn is within 1.5 in 255 of
    :func:`heat_overlay`'s exactly (BT.601, 2 x 2 chroma means); against heat_overlay's frame converted to yuv420p by
    swscale (what the writer before handed x264), within 2 for Y' and, on maps with sharp steps, up to 10 for Cb and Cr
    (swscale's chroma filter is wider than 2 x 2), beside what that round trip through RGB alone changed.
    """

    def __init__(self, scale: float, lo_fraction: float = PAPER_LO_FRACTION, max_alpha: float = PAPER_MAX_ALPHA):
        self.scale, self.lo = scale, lo_fraction * scale
        self.gain = 255.0 / (scale + 1e-3 - lo_fraction * scale) if scale > 0 else 0.0  # map value -> level in 1/255 steps
        steps = np.arange(256, dtype=np.float32) / np.float32(255)
        alpha = np.minimum(steps, np.float32(max_alpha))[:, None]  # (level, 1)
        values = np.arange(256, dtype=np.float32)[None, :]  # (1, plane value)
        colours = (_jet().astype(np.float64) @ _BT601.T + _BT601_OFFSET).astype(np.float32)  # (256, 3) jet in Y'CbCr
        self.tables = [((values + (colour[:, None] - values) * alpha) + np.float32(0.5)).astype(np.uint8).ravel()
                       for colour in colours.T]  # Y, Cb, Cr: 3 x (256 * 256,)
        self._resizes: dict[tuple[int, int], _Resize] = {}

    def _resize(self, size_out: int, size_in: int) -> _Resize:
        if (size_out, size_in) not in self._resizes:
            self._resizes[size_out, size_in] = _Resize(size_out, size_in)
        return self._resizes[size_out, size_in]

    def __call__(self, y: np.ndarray, u: np.ndarray, v: np.ndarray, cam: np.ndarray) -> None:
        """Draw in place on the planes ``y`` (H, W) and ``u``, ``v`` (H / 2, W / 2) uint8 the map ``cam`` (h, w) covering them."""
        if y.shape[0] % 2 or y.shape[1] % 2 or u.shape != v.shape or u.shape != (y.shape[0] // 2, y.shape[1] // 2):
            raise ValueError(f"yuv420p planes of an even-sized frame expected, got Y {y.shape}, Cb {u.shape}, Cr {v.shape}")
        if self.scale <= 0:
            return
        hot = cam > self.lo
        if not hot.any():
            return
        rows, cols = np.flatnonzero(hot.any(axis=1)), np.flatnonzero(hot.any(axis=0))
        level = (cam - np.float32(self.lo)) * np.float32(self.gain)
        down, across = self._resize(y.shape[0], cam.shape[0]), self._resize(y.shape[1], cam.shape[1])
        # the box of pixels that mix a hot cell (resizing is monotone: the first and last hot cells bound it), widened to
        # whole 2 x 2 blocks, each that of one Cb and one Cr value
        top, bottom = int(down.reach[0][rows[0]]) // 2 * 2, int(down.reach[1][rows[-1]]) // 2 * 2 + 2
        left, right = int(across.reach[0][cols[0]]) // 2 * 2, int(across.reach[1][cols[-1]]) // 2 * 2 + 2
        # across first, on the map's few rows; then down, by whole rows
        first, second, weight = across.first[left:right], across.second[left:right], across.weight[left:right]
        wide = level[:, first]
        step = level[:, second] - wide
        step *= weight
        wide += step
        first, second, weight = down.first[top:bottom], down.second[top:bottom], down.weight[top:bottom, None]
        box = wide.take(first, axis=0)
        step = wide.take(second, axis=0)
        step -= box
        step *= weight
        box += step
        np.clip(box, 0.0, 255.0, out=box)
        box += np.float32(0.5)
        index = box.astype(np.uint16)
        index <<= 8
        pixels = y[top:bottom, left:right]
        pixels[...] = self.tables[0].take(index | pixels, mode="clip")  # "clip": cheaper than the bounds check; the index is < 65536
        # Cb and Cr: the mean of what the block's four pixels would each get (as averaging the drawn frame's chroma would)
        blocks = [index[row::2, col::2] for row in (0, 1) for col in (0, 1)]
        for plane, table in zip((u, v), self.tables[1:]):
            pixels = plane[top // 2 : bottom // 2, left // 2 : right // 2]
            total = np.full(pixels.shape, 2, dtype=np.uint16)  # 2: to round the mean of four
            for block in blocks:
                total += table.take(block | pixels, mode="clip")
            total >>= 2
            pixels[...] = total


def yuv_planes(frame: av.VideoFrame, scaler: av.video.reformatter.VideoReformatter) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A decoded frame's Y, Cb and Cr planes (views, as stored) in BT.601 studio-swing yuv420p, as the writer before
    made of it through RGB: as they are when the frame is so already, else converted by ``scaler``."""
    if frame.format.name != "yuv420p" or frame.colorspace not in _BT601_SPACES:
        frame = scaler.reformat(frame, format="yuv420p", dst_colorspace="ITU601", dst_color_range="MPEG")
    return plane_arrays(frame)


def plane_arrays(frame: av.VideoFrame) -> tuple[np.ndarray, ...]:
    """Views of a frame's planes as (height, width) uint8 arrays (its memory: writing to them writes the frame)."""
    return tuple(np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, : plane.width]
                 for plane in frame.planes)


# ----------------------------------------------------------------------------- checkpoints


def shift_config_of(checkpoint: str | Path) -> ShiftConfig | None:
    """The input settings (window, rates, size, crop) a pretraining or CAM checkpoint was trained with, or None."""
    from avlib.checkpoint import load_checkpoint

    run = load_checkpoint(checkpoint)["config"].get("run", {})
    stored = run.get("shift") or run.get("pretrain", {}).get("shift")
    return ShiftConfig(**stored) if stored else None


def cam_settings_of(run: dict) -> CamSettings:
    """The map settings a checkpoint's run used: stored with it, else its profile's, else the paper's."""
    if run.get("cam"):
        return CamSettings(**run["cam"])
    return resolve(run["profile"]).cam if run.get("profile") in PROFILES else resolve("paper").cam


# ----------------------------------------------------------------------------- localize a video


@dataclass
class Localization:
    """What :func:`localize` returns.

    ``track`` the maps of every window (small: one map per CAM step); ``times`` (T,) the presentation times
    of the video's T frames from the first; ``maps`` (T, h, w) float32, computed from them when asked: the
    CAM (|CAM| if ``absolute``) at each frame, on a grid covering the frame (:func:`to_frame` resizes one
    to (H, W)); ``scale`` the overlay's ``max_val``; ``out`` the overlay video.
    """

    track: MapTrack
    times: np.ndarray
    frame_size: tuple[int, int]
    fps: float
    scale: float
    absolute: bool
    out: Path | None

    @property
    def maps(self) -> np.ndarray:
        """(T, h, w) float32 maps at every frame (T x h x w x 4 bytes: for long videos use :meth:`frame_map`)."""
        return self.track.at_times(self.times)

    def frame_map(self, index: int) -> np.ndarray:
        """(H, W) map of frame ``index`` at the video's resolution."""
        return to_frame(self.track.at(float(self.times[index])), *self.frame_size)

    def save_maps(self, path: str | Path, chunk: int = 512) -> Path:
        """Write ``maps``, ``times`` and ``scale`` as an uncompressed .npz, ``chunk`` frames at a time (memory stays
        bounded by the chunk, however long the video)."""
        import zipfile

        path = Path(path)
        height, width = self.track.maps[0].shape[1:]
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)), "fortran_order": False,
                  "shape": (len(self.times), height, width)}
        with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
            with archive.open("maps.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array_header_2_0(member, header)
                for first in range(0, len(self.times), chunk):
                    member.write(np.ascontiguousarray(self.track.at_times(self.times[first : first + chunk])).tobytes())
            for name, value in (("times", np.asarray(self.times, dtype=np.float64)), ("scale", np.asarray(self.scale))):
                with archive.open(f"{name}.npy", "w") as member:
                    np.lib.format.write_array(member, value)
        return path


def output_file(path: str | Path, mkdir: bool = False) -> Path:
    """``path`` as an output file: its folder must exist, or is created with ``mkdir``."""
    path = Path(path)
    if not path.parent.is_dir():
        if not mkdir:
            raise FileNotFoundError(f"{path}: the folder {path.parent} does not exist; create it or pass --mkdir")
        path.parent.mkdir(parents=True, exist_ok=True)
    return path


def write_overlay(video: str | Path, track: MapTrack, out: str | Path, scale: float, settings: CamSettings,
                  progress: bool = False, preset: str = OVERLAY_PRESET) -> np.ndarray:
    """Decode ``video`` frame by frame, draw the map of each frame's time over it, and write ``out``
    (H.264: :class:`avlib.writer.VideoSink`) with the original sound, copied as it is when the container holds
    its codec (:data:`COPIED_SOUND`), else re-encoded as AAC at its own rate and channel count (down-mixed to
    stereo if AAC has no layout for it); every frame keeps its timestamp, so
    frame rate and duration are the input's. Odd frame sizes lose their last row or column (yuv420p needs
    even sizes). ``preset`` is x264's speed preset.

    The map is drawn on the decoded yuv420p planes (:class:`PlaneBlend`), which go to x264 as they are: no conversion
    to RGB and back (frames in another pixel format or colour matrix are first converted to BT.601 yuv420p, as the
    conversion through RGB did).

    Returns the frames' times (T,). Memory stays bounded by one frame, so videos of any length work.
    """
    from av.video.reformatter import VideoReformatter
    from tqdm.auto import tqdm

    from avlib.writer import VideoSink

    video, out = Path(video), Path(out)
    _check_overlay_path(out)
    info = io.probe(video)
    require_audio(info)
    times = []
    with av.open(str(video), metadata_errors="ignore") as source:
        vin, ain = source.streams.video[0], source.streams.audio[0]
        vin.thread_type = "AUTO"
        height, width = info.height - info.height % 2, info.width - info.width % 2
        copy = ain.codec_context.name in COPIED_SOUND and out.suffix.lower() in (".mp4", ".mov", ".mkv")
        channels = ain.codec_context.channels if ain.codec_context.channels in AAC_LAYOUTS else 2
        sample_rate = int(ain.codec_context.sample_rate)
        resampler = av.AudioResampler(format="fltp", layout=AAC_LAYOUTS[channels], rate=sample_rate)
        scaler = VideoReformatter()  # one converter for the whole video, for frames not in BT.601 yuv420p
        blend = PlaneBlend(scale, settings.lo_fraction, settings.max_alpha)
        bar = tqdm(total=info.num_frames, desc="overlay", disable=not progress, leave=False)
        try:
            with VideoSink(out, width, height, info.fps, sample_rate=sample_rate, channels=channels, preset=preset,
                           sound_from=ain if copy else None) as sink:
                for packet in source.demux(vin, ain):
                    if packet.stream.type == "audio" and copy:
                        if packet.size and packet.pts is not None:
                            sink.sound_packet(packet, shift=info.video_start)
                        continue
                    for frame in packet.decode():
                        if frame.time is None:
                            continue
                        time = frame.time - info.video_start
                        if packet.stream.type == "video":
                            drawn = av.VideoFrame(width, height, "yuv420p")  # filled and drawn on in place, then encoded
                            planes = plane_arrays(drawn)
                            for plane, stored in zip(planes, yuv_planes(frame, scaler)):
                                # upright as displayed (VideoInfo.rotation), written with no rotation tag
                                plane[...] = io.upright(stored[..., None], info.rotation)[: plane.shape[0], : plane.shape[1], 0]
                            blend(*planes, track.at(time))
                            if sink.picture(drawn, time):  # a repeated timestamp cannot be muxed
                                times.append(time)
                                bar.update()
                        else:
                            # stamped by sample count from the first sound; the input's own stamps could make the resampler pad gaps
                            frame.pts = None
                            for chunk in resampler.resample(frame):
                                sink.sound(chunk.to_ndarray(), start=max(0.0, time))
                if not copy:
                    for chunk in resampler.resample(None):
                        sink.sound(chunk.to_ndarray())
        except av.error.FFmpegError as error:
            raise io.CorruptFileError(video, f"decoding for the overlay failed ({error})") from error
        finally:
            bar.close()
    if not times:
        raise io.CorruptFileError(video, "holds no decodable frames")
    return np.asarray(times)


def _check_overlay_path(out: Path) -> None:
    if out.suffix.lower() not in (".mp4", ".mkv", ".mov"):
        raise ValueError(f"{out}: the overlay is H.264 + AAC; name an .mp4, .mkv or .mov file")


def localize(video: str | Path, checkpoint: str | Path, out: str | Path | None = None, *,
             shift: ShiftConfig | None = None, settings: CamSettings | None = None, device: str = "cpu",
             progress: bool = False, mkdir: bool = False, track: MapTrack | None = None) -> Localization:
    """Sound-source maps of a video: the CAM of ``checkpoint``'s network (loaded with ``cam=True``) over
    sliding windows and tiles, at every frame of the video; with ``out``, also an overlay video with the
    original sound and every frame at its own time.

    Streams: frames are read window by window at the network's size for the maps, then decoded, drawn and
    written one at a time for the overlay, so memory is bounded by a window, not by the video (the maps of
    every frame are computed from the windows' maps when asked: :attr:`Localization.maps`).

    ``shift`` (the network's input: window, fps, sample rate, size, crop) defaults to the one stored in
    the checkpoint by pretraining; ``settings`` to those stored with the checkpoint (:func:`cam_settings_of`).
    ``out``'s folder must exist unless ``mkdir``. ``track``: this video's maps by the same network and settings,
    already computed (:attr:`avlib.localization.SceneEvaluation.tracks`), drawn instead of mapping again.
    Raises :class:`avlib.io.NoAudioError` for a video without sound and other :class:`avlib.io.MediaError`
    subclasses for unreadable files, naming the file.
    """
    from avlib.checkpoint import load_checkpoint

    video = Path(video)
    if out is not None:
        _check_overlay_path(output_file(out, mkdir))
    require_audio(io.probe(video))
    run = load_checkpoint(checkpoint)["config"].get("run", {})
    shift = shift or shift_config_of(checkpoint)
    if shift is None:
        raise ValueError(f"checkpoint {checkpoint} does not record its input settings; pass shift=ShiftConfig(...) "
                         "or --profile")
    settings = settings or cam_settings_of(run)
    if track is None:
        net = cam_network(checkpoint, device)
        name = "CAM"
        tracks = map_video(video, [TiledCam(network_cam(net), shift.crop, name, settings.tile_batch, device)], shift,
                           settings, progress)
        track = tracks[f"{name} |CAM|" if settings.absolute else name]
    scale = overlay_scale(track.values(), settings.percentile)
    info = io.probe(video)
    if out is None:
        frame_times = _frame_times(video, info)
    else:
        frame_times = write_overlay(video, track, out, scale, settings, progress)
    return Localization(track=track, times=np.asarray(frame_times), frame_size=(info.height, info.width), fps=info.fps,
                        scale=scale, absolute=settings.absolute, out=Path(out) if out is not None else None)


def _frame_times(video: Path, info: io.VideoInfo) -> np.ndarray:
    """Presentation times of every frame from the first, from the packets (nothing is decoded)."""
    with av.open(str(video), metadata_errors="ignore") as source:
        stream = source.streams.video[0]
        stamps = sorted(float(p.pts * p.time_base) for p in source.demux(stream) if p.pts is not None and p.size)
    return np.asarray(stamps) - info.video_start


def pick_device(name: str) -> str:
    """``auto`` -> ``cuda`` when torch sees a CUDA device, else ``cpu`` (as ``./reproduce.sh``); ``cuda`` without
    one raises ValueError."""
    if name not in DEVICES:
        raise ValueError(f"--device must be one of {', '.join(DEVICES)}, got {name!r}")
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda, but this torch sees no CUDA device (a CPU-only build, or no GPU); use --device cpu")
    return name


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    """``--device auto|cpu|cuda``, the same choices and meaning as ``./reproduce.sh``."""
    parser.add_argument("--device", default="auto", choices=DEVICES,
                        help="where the network runs: auto (CUDA when torch sees a GPU, else the CPU; the default), cpu or cuda")


# ----------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    from avlib.checkpoint import CheckpointError, load_checkpoint

    parser = argparse.ArgumentParser(
        prog="python -m avlib.localize",
        description="Draw where the multisensory network hears the sound (its class activation map) over a video, "
                    "and/or save the map of every frame.")
    parser.add_argument("video", help="any video with sound (any size, frame rate, length; mono, stereo or 5.1)")
    parser.add_argument("--checkpoint", required=True,
                        help="a pretraining or CAM checkpoint (.pt): checkpoints/<profile>/cam/... from the cam task, "
                             "or the imported official network")
    parser.add_argument("--out", default=None, help="overlay video to write (.mp4, .mkv, .mov)")
    parser.add_argument("--maps", default=None, help="save the map of every frame, their times and the overlay scale "
                                                     "to this .npz (with or without --out)")
    parser.add_argument("--mkdir", action="store_true", help="create the folders of --out and --maps if missing")
    parser.add_argument("--profile", default=None, choices=sorted(PROFILES),
                        help="take the input settings from this profile instead of the checkpoint")
    parser.add_argument("--signed", action="store_true", help="overlay the signed CAM instead of |CAM|")
    add_device_argument(parser)
    args = parser.parse_args(argv)
    if args.out is None and args.maps is None:
        parser.error("nothing to write: give --out (the overlay video), --maps (the maps), or both")
    try:
        device = pick_device(args.device)
        if args.maps:
            maps_path = output_file(args.maps, args.mkdir)
            if maps_path.suffix != ".npz":
                raise ValueError(f"{maps_path}: the maps are saved as .npz; name an .npz file")
        shift, settings = None, None
        if args.profile:
            experiment = resolve(args.profile)
            shift, settings = experiment.pretrain.shift, experiment.cam
        if args.signed:
            settings = replace(settings or cam_settings_of(load_checkpoint(args.checkpoint)["config"].get("run", {})),
                               absolute=False)
        result = localize(args.video, args.checkpoint, args.out, shift=shift, settings=settings, device=device,
                          progress=True, mkdir=args.mkdir)
        if args.maps:
            result.save_maps(maps_path)
    except (io.MediaError, ValueError, FileNotFoundError, CheckpointError) as error:  # bad input: one line, not a traceback
        print(f"error: {error}", file=sys.stderr)
        return 2
    height, width = result.track.maps[0].shape[1:]
    written = [str(path) for path in (result.out, args.maps) if path]
    print(f"wrote {', '.join(written)}: {len(result.times)} frames, maps {height}x{width} per frame, "
          f"overlay scale {result.scale:.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
