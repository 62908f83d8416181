"""Pieces shared by the three parts of the synthetic world: seeding, drawing, sound, tables, cache."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import os
import shutil
import zipfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, fields
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
from scipy.fft import irfft, next_fast_len, rfft, rfftfreq

#: Bumped whenever the generator's output changes, so cached worlds are rebuilt.
GENERATOR_VERSION = "world-4"

#: Part name -> a number mixed into every seed, so parts never share random streams.
PART_IDS = {"scenes": 1, "actions": 2, "speakers": 3, "talkers": 4}

#: Encoder options that make the bytes independent of the number of cores and workers, and of the call: one
#: thread, and no macroblock-tree rate control, whose lookahead gave some small clips other bytes from one
#: encode of the same frames to the next (tests/test_world_determinism.py).
VIDEO_OPTIONS = {"threads": "1", "x264-params": "mbtree=0"}


def clip_rng(seed: int, part: str, *index: int) -> np.random.Generator:
    """The random stream of one clip (or group, speaker): a function of (seed, part, index) only,
    so clips can be generated in any order and by any number of workers."""
    # the length goes in too: SeedSequence gives [a, b] and [a, b, 0] the same stream
    return np.random.default_rng(np.random.SeedSequence([seed, PART_IDS[part], len(index), *index]))


# ---------------------------------------------------------------------------------------------
# Drawing


def random_colour(rng: np.random.Generator, saturation: tuple[float, float] = (0.5, 1.0),
                  value: tuple[float, float] = (0.5, 1.0)) -> np.ndarray:
    """An RGB colour (floats 0..255) with random hue and the given saturation/value ranges."""
    hue = rng.uniform(0, 6)
    sat, val = rng.uniform(*saturation), rng.uniform(*value)
    sector, frac = int(hue) % 6, hue - int(hue)
    p, q, t = val * (1 - sat), val * (1 - sat * frac), val * (1 - sat * (1 - frac))
    rgb = [(val, t, p), (q, val, p), (p, val, t), (p, q, val), (t, p, val), (val, p, q)][sector]
    return np.array(rgb, dtype=np.float32) * 255


def texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A textured background (height x width x 3 float32 in 0..255): two colours blended by a
    random pattern (grating, checks or blobs) under a slow illumination gradient."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    kind = rng.integers(3)
    if kind == 0:
        angle, period = rng.uniform(0, np.pi), rng.uniform(6, 24)
        pattern = 0.5 + 0.5 * np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period + rng.uniform(0, 6.3))
    elif kind == 1:
        cell = rng.uniform(5, 16)
        pattern = ((np.floor(xx / cell) + np.floor(yy / cell)) % 2).astype(np.float32) * 0.8 + 0.1
    else:
        coarse = rng.uniform(0, 1, (height // 8 + 2, width // 8 + 2)).astype(np.float32)
        pattern = bilinear_upsample(coarse, height, width)
    low, high = random_colour(rng, (0.1, 0.6), (0.25, 0.7)), random_colour(rng, (0.1, 0.6), (0.4, 0.9))
    light = 0.8 + 0.2 * (np.cos(rng.uniform(0, 6.3)) * xx / width + np.sin(rng.uniform(0, 6.3)) * yy / height)
    image = (low * (1 - pattern[..., None]) + high * pattern[..., None]) * light[..., None]
    return np.clip(image, 0, 255).astype(np.float32)


def bilinear_upsample(coarse: np.ndarray, height: int, width: int) -> np.ndarray:
    """Upsample a 2-D array to height x width by separable linear interpolation."""
    rows = np.linspace(0, coarse.shape[0] - 1, height)
    cols = np.linspace(0, coarse.shape[1] - 1, width)
    by_rows = np.stack([np.interp(rows, np.arange(coarse.shape[0]), column) for column in coarse.T], axis=1)
    return np.stack([np.interp(cols, np.arange(coarse.shape[1]), row) for row in by_rows], axis=0).astype(np.float32)


def panning_offsets(rng: np.random.Generator, num_frames: int, margin: int) -> np.ndarray:
    """Per-frame (dy, dx) offsets into a background larger by ``margin``: a slow camera pan that
    turns back at the edges (num_frames x 2 int)."""
    if margin == 0:
        return np.zeros((num_frames, 2), dtype=np.int64)
    speed = rng.uniform(0.05, 0.35, 2) * rng.choice([-1, 1], 2)
    path = rng.uniform(0, margin, 2) + np.arange(num_frames)[:, None] * speed
    folded = np.abs((path % (2 * margin)) - margin)  # a triangle wave stays inside [0, margin]
    return np.round(folded).astype(np.int64)


SHAPES = ("circle", "square", "triangle", "diamond")


def shape_alpha(shape: str, size: int, angle: float = 0.0, scale: float = 1.0) -> np.ndarray:
    """Anti-aliased coverage (size x size float32 in 0..1) of a shape centred in its box, rotated by
    ``angle`` (radians) and scaled by ``scale`` (1 fills the box)."""
    centre = (size - 1) / 2
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) - centre
    cos, sin = np.cos(angle), np.sin(angle)
    u, v = cos * xx + sin * yy, -sin * xx + cos * yy
    radius = scale * size / 2
    if shape == "circle":
        distance = np.hypot(u, v) - radius
    elif shape == "square":
        distance = np.maximum(np.abs(u), np.abs(v)) - radius * 0.85
    elif shape == "diamond":
        distance = (np.abs(u) + np.abs(v)) / np.sqrt(2) - radius * 0.7
    elif shape == "triangle":
        # equilateral, pointing up: the largest signed distance to its three edges
        normals = [(0.0, -1.0), (np.sqrt(3) / 2, 0.5), (-np.sqrt(3) / 2, 0.5)]
        distance = np.max([nx * u + ny * v for nx, ny in normals], axis=0) - radius * 0.5
    else:
        raise ValueError(f"unknown shape {shape!r}; use one of {SHAPES}")
    return np.clip(0.5 - distance, 0.0, 1.0).astype(np.float32)


def shaded_sprite(rng: np.random.Generator, colour: np.ndarray, size: int) -> np.ndarray:
    """An object's surface (size x size x 3 float32): its colour lit from a random side, with a
    faint stripe pattern so that objects are textured too."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / max(size - 1, 1) - 0.5
    light = rng.uniform(0, 2 * np.pi)
    shade = 0.85 + 0.3 * (np.cos(light) * xx + np.sin(light) * yy)
    stripes = 1 + 0.08 * np.sign(np.sin((xx + yy) * rng.uniform(8, 20)))
    return np.clip(colour * (shade * stripes)[..., None], 0, 255).astype(np.float32)


def paste(frame: np.ndarray, surface: np.ndarray, alpha: np.ndarray, top: int, left: int) -> None:
    """Alpha-blend ``surface`` into ``frame`` (float32, in place) with its top-left corner at
    (top, left); parts outside the frame are dropped."""
    height, width = frame.shape[:2]
    size_y, size_x = alpha.shape
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + size_y, height), min(left + size_x, width)
    if y0 >= y1 or x0 >= x1:
        return
    a = alpha[y0 - top : y1 - top, x0 - left : x1 - left, None]
    s = surface[y0 - top : y1 - top, x0 - left : x1 - left]
    region = frame[y0:y1, x0:x1]
    region += a * (s - region)


def to_uint8(frames: np.ndarray) -> np.ndarray:
    return np.clip(np.round(frames), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# Sound


@dataclass(frozen=True)
class Timbre:
    """The sound an object makes when struck: decaying sinusoids (modal synthesis) plus a short
    noise click. ``frequencies``/``decays``/``amplitudes`` are per mode (Hz, seconds, linear)."""

    frequencies: tuple[float, ...]
    decays: tuple[float, ...]
    amplitudes: tuple[float, ...]
    click: float  # level of the broadband contact click, relative to the modes

    def describe(self) -> str:
        return " ".join(f"{f:.0f}Hz/{d * 1000:.0f}ms" for f, d in zip(self.frequencies, self.decays))


#: Material of each shape: mode frequency ratios, decay range (s), base-frequency range (Hz).
MATERIALS = {
    "circle": ((1.0, 2.32, 4.25), (0.04, 0.09), (180.0, 600.0)),  # rubber/wood: low, dull
    "square": ((1.0, 2.76, 5.40, 8.93), (0.15, 0.30), (350.0, 1200.0)),  # metal: rings
    "triangle": ((1.0, 2.01, 3.03), (0.07, 0.16), (900.0, 2600.0)),  # glass: high, bright
    "diamond": ((1.0, 1.59, 2.14, 2.30), (0.06, 0.12), (300.0, 900.0)),  # ceramic/membrane
}


def object_timbre(rng: np.random.Generator, shape: str, size_fraction: float) -> Timbre:
    """A timbre that belongs to the object: the material follows its shape and the pitch its size
    (larger objects sound lower), with a little individual variation."""
    ratios, decay_range, (f_low, f_high) = MATERIALS[shape]
    base = f_low * (f_high / f_low) ** float(np.clip(1.0 - size_fraction, 0, 1)) * rng.uniform(0.92, 1.08)
    frequencies = tuple(float(base * r * rng.uniform(0.98, 1.02)) for r in ratios)
    decay = rng.uniform(*decay_range)
    decays = tuple(float(decay / (1 + 0.6 * i)) for i in range(len(ratios)))
    amplitudes = tuple(float(rng.uniform(0.5, 1.0) / (1 + i)) for i in range(len(ratios)))
    return Timbre(frequencies, decays, amplitudes, click=float(rng.uniform(0.1, 0.4)))


def impact_sound(timbre: Timbre, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """One strike of ``timbre`` (1-D float32, peak about 1), starting at its first sample."""
    length = int(min(5 * max(timbre.decays), 0.8) * sample_rate)
    t = np.arange(length, dtype=np.float32) / sample_rate
    sound = np.zeros(length, dtype=np.float32)
    for frequency, decay, amplitude in zip(timbre.frequencies, timbre.decays, timbre.amplitudes):
        if frequency < sample_rate / 2:
            sound += amplitude * np.exp(-t / decay) * np.sin(2 * np.pi * frequency * t + rng.uniform(0.3, 1.2))
    click_length = max(int(0.004 * sample_rate), 1)
    envelope = np.exp(-np.arange(click_length) / (click_length / 3))
    sound[:click_length] += timbre.click * rng.standard_normal(click_length).astype(np.float32) * envelope
    return sound / max(float(np.abs(sound).max()), 1e-6)


def add_at(track: np.ndarray, sound: np.ndarray, start: int, gain: float | np.ndarray = 1.0) -> None:
    """Add ``sound`` (1-D) to ``track`` (C x N) from sample ``start`` on, times a per-channel gain."""
    end = min(start + sound.shape[-1], track.shape[-1])
    if end > start:
        track[:, start:end] += np.asarray(gain, dtype=np.float32).reshape(-1, 1) * sound[: end - start]


def stereo_gains(x_fraction: np.ndarray | float) -> np.ndarray:
    """Constant-power panning: an object at horizontal position x (0 left .. 1 right) is heard
    from that side. Returns 2 x ... gains."""
    angle = np.clip(x_fraction, 0, 1) * np.pi / 2
    return np.stack([np.cos(angle), np.sin(angle)]).astype(np.float32) * np.sqrt(2)


def frames_to_samples(per_frame: np.ndarray, num_samples: int, fps: float, sample_rate: int) -> np.ndarray:
    """Linear interpolation of a per-frame control curve (..., T) to audio samples (..., N)."""
    frame_times = np.arange(per_frame.shape[-1]) / fps
    sample_times = np.arange(num_samples) / sample_rate
    flat = per_frame.reshape(-1, per_frame.shape[-1])
    stacked = np.stack([np.interp(sample_times, frame_times, row) for row in flat])
    return stacked.reshape(*per_frame.shape[:-1], num_samples).astype(np.float32)


def harmonic_tone(frequency: np.ndarray | float, num_samples: int, sample_rate: int, brightness: float,
                  rng: np.random.Generator) -> np.ndarray:
    """A harmonic tone (1-D float32, peak about 1) at a fixed or per-sample ``frequency``;
    ``brightness`` in 0..1 sets how slowly the harmonics fall off."""
    frequency = np.broadcast_to(np.asarray(frequency, dtype=np.float64), (num_samples,))
    phase = 2 * np.pi * np.cumsum(frequency) / sample_rate + rng.uniform(0, 2 * np.pi)
    rotor = np.exp(1j * phase)
    partial = rotor.copy()  # exp(i h phase) by repeated multiplication: far cheaper than sin
    tone = np.zeros(num_samples, dtype=np.float64)
    for harmonic in range(1, 9):
        if harmonic * frequency.max() >= sample_rate / 2:
            break
        tone += (0.25 + 0.55 * brightness) ** (harmonic - 1) * partial.imag
        partial *= rotor
    return (tone / max(np.abs(tone).max(), 1e-6)).astype(np.float32)


def coloured_noise(rng: np.random.Generator, num_samples: int, sample_rate: int, low: float = 0.0, high: float | None = None,
                   slope: float = 0.0) -> np.ndarray:
    """Noise (1-D float32, unit RMS) band-limited to [low, high] Hz with a power-law spectrum
    (``slope`` -1 is pink, -2 brown)."""
    length = next_fast_len(num_samples, real=True)  # FFT sizes with large prime factors are slow
    spectrum = rfft(rng.standard_normal(length))
    frequencies = rfftfreq(length, 1 / sample_rate)
    gain = np.where((frequencies >= low) & (frequencies <= (high or sample_rate)), 1.0, 0.0)
    gain[1:] *= frequencies[1:] ** (slope / 2)
    gain[0] = 0
    noise = irfft(spectrum * gain, length)[:num_samples]
    return (noise / max(float(np.sqrt(np.mean(noise**2))), 1e-9)).astype(np.float32)


def frame_rms(signal: np.ndarray, num_frames: int, fps: float, sample_rate: int) -> np.ndarray:
    """RMS of a (C x N or N) signal over each video frame's span of samples (num_frames,)."""
    mono = signal if signal.ndim == 1 else np.mean(signal**2, axis=0) ** 0.5
    bounds = np.round(np.arange(num_frames + 1) * sample_rate / fps).astype(np.int64)
    power = np.concatenate([[0.0], np.cumsum(mono.astype(np.float64) ** 2)])
    bounds = np.clip(bounds, 0, mono.shape[-1])
    counts = np.maximum(bounds[1:] - bounds[:-1], 1)
    return np.sqrt((power[bounds[1:]] - power[bounds[:-1]]) / counts).astype(np.float32)


def sample_at_frame(frame: int, fps: float, sample_rate: int) -> int:
    """The audio sample at which video frame ``frame`` is shown (time frame / fps)."""
    return int(round(frame * sample_rate / fps))


# ---------------------------------------------------------------------------------------------
# Tables and ground truth


def format_value(value: Any) -> str:
    """Deterministic text for a table cell: floats with 6 significant decimals, bools as 0/1."""
    if isinstance(value, (bool, np.bool_)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.6f}"
    return str(value)


def write_table(path: Path, rows: Sequence[dict[str, Any]], columns: Sequence[str], line_end: str = "\n") -> Path:
    """A CSV with a header row and deterministic formatting."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator=line_end)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([format_value(row[column]) for column in columns])
    path.write_text(buffer.getvalue(), newline="")
    return path


def write_npz(path: Path, **arrays: np.ndarray) -> Path:
    """Like ``np.savez_compressed`` but byte-identical across runs (fixed zip timestamps)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(arrays):
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.asarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, buffer.getvalue())
    return path


# ---------------------------------------------------------------------------------------------
# Configs, cache and parallel generation


def config_key(part: str, config: Any) -> str:
    """A hash of everything that determines a part's files: its config and the generator version."""
    payload = json.dumps({"part": part, "version": GENERATOR_VERSION, "config": asdict(config)}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def replace_fields(config: Any, overrides: dict[str, Any]) -> Any:
    """``dataclasses.replace`` that names the config and its fields when a key is wrong."""
    known = {f.name for f in fields(config)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise TypeError(f"{type(config).__name__} has no field(s) {unknown}; fields are {sorted(known)}")
    return dataclasses.replace(config, **overrides)


def read_manifest(root: Path) -> dict | None:
    try:
        return json.loads((root / "manifest.json").read_text())
    except (OSError, ValueError):
        return None


def is_complete(root: Path, key: str) -> bool:
    """True when ``root`` holds a finished build with this key and every file it lists."""
    manifest = read_manifest(root)
    if manifest is None or manifest.get("key") != key:
        return False
    return all((root / name).is_file() and (root / name).stat().st_size == size for name, size in manifest["files"].items())


def build_cached(root: Path, part: str, config: Any, build: Callable[[Path], None]) -> Path:
    """Build a part into ``root`` unless an identical build is already there.

    The build goes into a hidden sibling folder and is renamed into place only when complete,
    so ``root`` never holds half a world; its manifest (written last) lists every file and size.
    """
    root = Path(root)
    key = config_key(part, config)
    if is_complete(root, key):
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = root.with_name(f".{root.name}.building-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        build(staging)
        files = {p.relative_to(staging).as_posix(): p.stat().st_size for p in sorted(staging.rglob("*")) if p.is_file()}
        manifest = {"part": part, "key": key, "generator": GENERATOR_VERSION, "config": asdict(config), "files": files}
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True, default=str) + "\n")
        if root.exists():
            retired = root.with_name(f".{root.name}.retired-{os.getpid()}")
            os.replace(root, retired)
            shutil.rmtree(retired, ignore_errors=True)
        try:
            os.replace(staging, root)
        except OSError:
            if not is_complete(root, key):  # only another process finishing the same build is fine
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root


def default_workers() -> int:
    return max(1, min(2, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


def parallel_map(function: Callable, jobs: Iterable, workers: int, progress: str | None = None) -> list:
    """``[function(job) for job in jobs]`` on ``workers`` processes (spawned, so a parent that
    has loaded torch or OpenMP is safe), in order. Results do not depend on ``workers``."""
    jobs = list(jobs)
    bar = _progress(len(jobs), progress)
    try:
        if workers <= 1 or len(jobs) <= 1:
            results = []
            for job in jobs:
                results.append(function(job))
                bar.update()
            return results
        # spawned workers inherit the environment when they start: one BLAS/OpenMP thread each
        previous = os.environ.get("OMP_NUM_THREADS")
        os.environ["OMP_NUM_THREADS"] = "1"
        try:
            with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
                results = []
                for result in pool.map(function, jobs, chunksize=1):
                    results.append(result)
                    bar.update()
                return results
        finally:
            if previous is None:
                os.environ.pop("OMP_NUM_THREADS", None)
            else:
                os.environ["OMP_NUM_THREADS"] = previous
    finally:
        bar.close()


def _progress(total: int, description: str | None):
    if description is None:
        return _NoProgress()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=description, unit="clip", leave=False)


class _NoProgress:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def clip_frames(seconds: float, fps: float) -> int:
    """Frames per clip, counted as the paper does: ``int(seconds * fps)`` (10.1 s at 29.97 fps -> 302)."""
    return int(seconds * fps + 1e-9)


def check_frame_size(owner: str, size: int) -> None:
    """Square frames of a part must have an even side of at least 32 pixels (H.264's 4:2:0 and the crops)."""
    if size % 2 or size < 32:
        raise ValueError(f"{owner}.size must be even and >= 32, got {size}")
