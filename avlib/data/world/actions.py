"""Actions: the UCF-101 counterpart, for transfer to action recognition (paper section 6).

Each class is a motion pattern with a sound pattern (``BounceDrum``: a ball bouncing with a
drum at each landing). Some classes share their motion and differ only in sound
(``BounceDrum`` / ``BounceBell``): only audio tells them apart, which is where a multisensory
network should help. Files follow UCF-101's layout exactly::

    <root>/<Class>/v_<Class>_gNN_cMM.avi          (MPEG-4 video + MP3 audio, 25 fps)
    <root>/ucfTrainTestlist/classInd.txt          "1 BounceDrum"
    <root>/ucfTrainTestlist/trainlist0K.txt       "BounceDrum/v_BounceDrum_g08_c01.avi 1"
    <root>/ucfTrainTestlist/testlist0K.txt        "BounceDrum/v_BounceDrum_g01_c01.avi"

As in UCF-101, clips of one group share their background, actor and sound, and the three
splits hold out disjoint ranges of groups (UCF-101: groups 1-7, 8-14, 15-21 of 25; here the
same fractions of ``num_groups``); the list files end lines with CRLF, as UCF-101's do. About
half the groups are written without an audio track (about half of UCF-101 has none); clips of
a sound-only pair without audio cannot be told apart, as in UCF-101. The actor is 35-50 % of the
frame height, as UCF-101's actors fill much of the frame, so that its motion shows at the ``synth``
network's 40-pixel input (docs/world.md).

Beside the layout: ``actions.csv`` (one row per clip: class, 1-based label, group, motion,
sound, ``has_audio``, the frames of its sounding impacts, and train/test in each split) and
``classes.csv`` (label, class, motion, sound, and its sound-only partner if it has one).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ...writer import write_video
from ._common import (
    SHAPES,
    VIDEO_OPTIONS,
    Timbre,
    add_at,
    clip_rng,
    coloured_noise,
    frames_to_samples,
    harmonic_tone,
    impact_sound,
    panning_offsets,
    parallel_map,
    paste,
    random_colour,
    sample_at_frame,
    shaded_sprite,
    shape_alpha,
    stereo_gains,
    texture,
    to_uint8,
    write_table,
)
from .scenes import Motion, bounce, orbit, shake, slide

#: Every class the world can have, as (name, motion, sound), in the order they are taken:
#: ``num_classes`` takes the first N. Classes sharing a motion differ only by sound.
CLASS_CATALOGUE: tuple[tuple[str, str, str], ...] = (
    ("BounceDrum", "bounce", "drum"),
    ("BounceBell", "bounce", "bell"),
    ("SwingTick", "swing", "tick"),
    ("OrbitHum", "orbit", "hum"),
    ("OrbitWhoosh", "orbit", "whoosh"),
    ("HopClap", "hop", "clap"),
    ("SlideKnock", "slide", "knock"),
    ("SlideChirp", "slide", "chirp"),
    ("SpinWhistle", "spin", "whistle"),
    ("ShakeRattle", "shake", "rattle"),
    ("PulseDrum", "pulse", "drum"),
    ("ZigzagBell", "zigzag", "bell"),
    ("HopKnock", "hop", "knock"),
    ("SwingWhistle", "swing", "whistle"),
    ("DriftHum", "drift", "hum"),
    ("SpinWhoosh", "spin", "whoosh"),
    ("ShakeBell", "shake", "bell"),
    ("PulseChirp", "pulse", "chirp"),
    ("ZigzagKnock", "zigzag", "knock"),
    ("DriftWhoosh", "drift", "whoosh"),
)
#: Sounds made at each impact of the motion, and sounds that follow its speed.
IMPACT_SOUNDS = ("drum", "bell", "knock", "clap", "tick", "chirp", "rattle")
CONTINUOUS_SOUNDS = ("hum", "whoosh", "whistle")
#: Motions that have impacts (landings, ends of a swing, largest sizes), which impact sounds need.
MOTIONS_WITH_IMPACTS = ("bounce", "slide", "zigzag", "shake", "swing", "hop", "pulse")
#: UCF-101 has 25 groups; test groups of split K are 1-7, 8-14, 15-21; 22-25 are always train.
UCF_GROUPS, UCF_TEST_BOUNDS = 25, (0, 7, 14, 21)


@dataclass(frozen=True)
class ActionsConfig:
    """The actions part of the world (the paper's UCF-101 fine-tuning, section 6)."""

    num_classes: int = 15  #: classes taken from :data:`CLASS_CATALOGUE` (UCF-101: 101); at most 20
    num_groups: int = 25  #: groups per class, as UCF-101; splits hold out the same groups (1-7, 8-14, 15-21)
    clips_per_group: int = 3  #: clips per group (UCF-101: 4-7); fixed, so classes are balanced
    clip_seconds: tuple[float, float] = (4.5, 7.0)  #: clip length range (UCF-101: ~7 s on average)
    fps: float = 25.0  #: UCF-101 is 25 fps
    width: int = 128  #: UCF-101 is 320 x 240; the same 4:3 shape, smaller
    height: int = 96
    sample_rate: int = 44100  #: UCF-101's audio is 44.1 kHz (its MP3 then decodes ~25 ms late)
    audio_fraction: float = 0.5  #: share of each class's groups written with an audio track
    actor_size: tuple[float, float] = (0.35, 0.5)  #: actor's side, fraction of the frame height (docs/world.md)
    distractor_probability: float = 0.3  #: chance of a silent object drifting in the background
    seed: int = 0

    def classes(self) -> list[tuple[str, str, str]]:
        return list(CLASS_CATALOGUE[: self.num_classes])

    def validate(self) -> None:
        if not 2 <= self.num_classes <= len(CLASS_CATALOGUE):
            raise ValueError(f"ActionsConfig.num_classes must be in 2..{len(CLASS_CATALOGUE)}, got {self.num_classes}")
        if self.num_groups < 4:
            raise ValueError(f"ActionsConfig.num_groups must be >= 4 (3 test ranges + train), got {self.num_groups}")
        if self.width % 2 or self.height % 2:
            raise ValueError(f"ActionsConfig: frame size must be even, got {self.width}x{self.height}")
        for name, motion, sound in self.classes():
            if sound not in IMPACT_SOUNDS + CONTINUOUS_SOUNDS or (sound in IMPACT_SOUNDS and motion not in MOTIONS_WITH_IMPACTS):
                raise ValueError(f"class {name}: a {motion} motion cannot make a {sound} sound")


def held_out_groups(split: int, num_groups: int) -> range:
    """1-based groups held out for testing in split 1, 2 or 3, scaled from UCF-101's 25 groups."""
    bounds = [round(b * num_groups / UCF_GROUPS) for b in UCF_TEST_BOUNDS]
    return range(bounds[split - 1] + 1, bounds[split] + 1)


def sound_only_pairs(classes: list[tuple[str, str, str]] | None = None) -> list[tuple[str, str]]:
    """Pairs of class names with the same motion and different sound (told apart only by audio)."""
    classes = classes if classes is not None else list(CLASS_CATALOGUE)
    return [(a[0], b[0]) for i, a in enumerate(classes) for b in classes[i + 1 :] if a[1] == b[1]]


def video_name(class_name: str, group: int, clip: int) -> str:
    return f"v_{class_name}_g{group:02d}_c{clip:02d}.avi"


# ---------------------------------------------------------------------------------------------
# Motions beyond the scenes' (bounce, slide, shake, orbit)


@dataclass
class Pose:
    """Where and how the actor is drawn in each frame: a Motion plus rotation, scale and the
    pivot of a pendulum's string (all per frame)."""

    motion: Motion
    angle: np.ndarray
    scale: np.ndarray
    pivot: np.ndarray | None = None


def swing(rng: np.random.Generator, num_frames: int, room: np.ndarray, scale: float, fps: float) -> Pose:
    """A pendulum hanging from the top edge; it ticks at each end of its swing."""
    half_period = int(rng.integers(int(0.4 * fps), int(0.8 * fps)))  # frames between the ends
    first_end = int(rng.integers(1, half_period + 1))
    amplitude = rng.uniform(0.5, 0.9)
    pivot = np.array([rng.uniform(0.35, 0.65) * room[0], -0.1 * room[1]])
    # long enough to see, short enough that the whole swing stays in the frame
    length = min(rng.uniform(0.5, 0.8) * room[1], min(pivot[0], room[0] - pivot[0]) / np.sin(amplitude))
    frames = np.arange(num_frames)
    theta = amplitude * np.cos(np.pi * (frames - first_end) / half_period)
    top_left = pivot + length * np.stack([np.sin(theta), np.cos(theta)], axis=1)
    impacts = [(int(f), float(rng.uniform(0.6, 1.0))) for f in range(first_end, num_frames, half_period)]
    omega = np.abs(np.gradient(theta))
    motion = Motion(top_left, impacts, length * omega, activity=omega / max(omega.max(), 1e-6))
    return Pose(motion, np.zeros(num_frames), np.ones(num_frames), pivot=np.tile(pivot, (num_frames, 1)))


def hop(rng: np.random.Generator, num_frames: int, room: np.ndarray, scale: float, fps: float) -> Pose:
    """Hops along the floor: a parabola, a landing (the sound), a short rest, again."""
    top_left, speed, impacts = np.zeros((num_frames, 2)), np.zeros(num_frames), []
    x, step = rng.uniform(0, room[0]), rng.uniform(0.3, 1.0) * scale * rng.choice([-1, 1])
    top_left[:, 1] = room[1]
    frame = int(rng.integers(0, 6))
    while frame < num_frames:
        duration, height = int(rng.integers(int(0.35 * fps), int(0.6 * fps))), rng.uniform(0.4, 0.9) * room[1]
        for j in range(duration + 1):
            if frame + j < num_frames:
                top_left[frame + j] = (x + step * j, room[1] - 4 * height * j * (duration - j) / duration**2)
                speed[frame + j] = 4 * height / duration
        x += step * duration
        if not 0 <= x <= room[0]:
            x, step = float(np.clip(x, 0, room[0])), -step
        landing = frame + duration
        if landing < num_frames:
            impacts.append((landing, float(rng.uniform(0.6, 1.0))))
        rest = int(rng.integers(int(0.1 * fps), int(0.4 * fps)))
        top_left[landing : landing + rest + 1] = (x, room[1])
        frame = landing + rest
    top_left[:, 0] = np.clip(top_left[:, 0], 0, room[0])
    return Pose(Motion(top_left, impacts, speed, activity=speed / max(speed.max(), 1e-6)), np.zeros(num_frames), np.ones(num_frames))


def _speed_profile(rng: np.random.Generator, num_frames: int, fps: float, low: float = 0.3) -> np.ndarray:
    """A smooth 0..1 speed that changes every 0.4-1.5 s and sometimes stops."""
    targets, frame = np.zeros(num_frames), 0
    while frame < num_frames:
        length = int(rng.uniform(0.4, 1.5) * fps)
        targets[frame : frame + length] = 0.0 if rng.uniform() < 0.3 else rng.uniform(low, 1.0)
        frame += length
    ramp = max(1, int(0.25 * fps))
    return np.convolve(targets, np.ones(ramp) / ramp, mode="full")[:num_frames]


def spin(rng: np.random.Generator, num_frames: int, room: np.ndarray, scale: float, fps: float) -> Pose:
    """Turning in place, speeding up and slowing down; it sounds as fast as it turns."""
    profile = _speed_profile(rng, num_frames, fps)
    angle = rng.uniform(0, 2 * np.pi) + rng.choice([-1, 1]) * np.cumsum(profile) * rng.uniform(0.15, 0.3)
    position = rng.uniform(0.2, 0.8, 2) * room
    motion = Motion(np.tile(position, (num_frames, 1)), [], profile, activity=profile)
    return Pose(motion, angle, np.ones(num_frames))


def pulse(rng: np.random.Generator, num_frames: int, room: np.ndarray, scale: float, fps: float) -> Pose:
    """Growing and shrinking in place, with a beat at each largest size."""
    half_period = int(rng.integers(int(0.3 * fps), int(0.6 * fps)))
    first_peak = int(rng.integers(1, 2 * half_period + 1))
    frames = np.arange(num_frames)
    size = 0.775 + 0.225 * np.cos(np.pi * (frames - first_peak) / half_period)
    position = rng.uniform(0.2, 0.8, 2) * room
    impacts = [(int(f), float(rng.uniform(0.6, 1.0))) for f in range(first_peak, num_frames, 2 * half_period)]
    rate = np.abs(np.gradient(size))
    motion = Motion(np.tile(position, (num_frames, 1)), impacts, rate, activity=rate / max(rate.max(), 1e-6))
    return Pose(motion, np.zeros(num_frames), size)


def drift(rng: np.random.Generator, num_frames: int, room: np.ndarray, scale: float, fps: float) -> Pose:
    """Wandering slowly, now faster, now still; it sounds as fast as it moves."""
    profile = _speed_profile(rng, num_frames, fps, low=0.5)
    heading = rng.uniform(0, 2 * np.pi) + np.cumsum(rng.normal(0, 0.15, num_frames))
    velocity = profile[:, None] * 1.5 * scale * np.stack([np.cos(heading), np.sin(heading)], axis=1)
    position = rng.uniform(0.2, 0.8, 2) * room + np.cumsum(velocity, axis=0)
    top_left = room - np.abs((position % (2 * room)) - room)  # fold the path back into the room
    return Pose(Motion(top_left, [], profile, activity=profile), np.zeros(num_frames), np.ones(num_frames))


def _pose(motion: Motion, num_frames: int) -> Pose:
    """A rigid, upright pose around a Motion; activity defaults to speed relative to its peak."""
    if motion.activity is None:
        motion.activity = motion.speed / max(motion.speed.max(), 1e-6)
    return Pose(motion, np.zeros(num_frames), np.ones(num_frames))


def slide_across(rng: np.random.Generator, num_frames: int, room: np.ndarray, scale: float, fps: float) -> Pose:
    """Sliding left and right across the frame, knocking at each side."""
    return _pose(slide(rng, num_frames, room, scale, fps, angle=float(rng.choice([0.0, np.pi]))), num_frames)


def zigzag(rng: np.random.Generator, num_frames: int, room: np.ndarray, scale: float, fps: float) -> Pose:
    """A steep diagonal bouncing between top and bottom while crossing the frame."""
    return _pose(slide(rng, num_frames, room, scale, fps, angle=float(rng.choice([1, -1]) * rng.uniform(1.0, 1.3))), num_frames)


#: How much wider the actions' rattle is than the scenes' (about a third of the actor's side; docs/world.md).
SHAKE_WIDENING = 4.0


def shake_wide(rng: np.random.Generator, num_frames: int, room: np.ndarray, scale: float, fps: float) -> Pose:
    """The scenes' rattle in bursts, widened by :data:`SHAKE_WIDENING` about its rest position and kept in the frame:
    the scenes' swing of 5-10 % of the frame moves less than a pixel per frame at the network's input."""
    motion = shake(rng, num_frames, room, scale, fps)
    rest = motion.top_left[0].copy()  # every burst starts and ends at rest
    motion.top_left = np.clip(rest + SHAKE_WIDENING * (motion.top_left - rest), 0, room)
    motion.speed = motion.speed * SHAKE_WIDENING
    return _pose(motion, num_frames)


def _rigid(function: Callable[..., Motion]) -> Callable[..., Pose]:
    """A scenes motion as an upright pose of fixed size."""
    return lambda rng, num_frames, room, scale, fps: _pose(function(rng, num_frames, room, scale, fps), num_frames)


#: Motion name -> function(rng, num_frames, room (x, y extent of the top-left corner), scale, fps)
POSES: dict[str, Callable[..., Pose]] = {
    "bounce": _rigid(bounce),
    "slide": slide_across,
    "zigzag": zigzag,
    "shake": shake_wide,
    "orbit": _rigid(orbit),
    "swing": swing,
    "hop": hop,
    "spin": spin,
    "pulse": pulse,
    "drift": drift,
}


# ---------------------------------------------------------------------------------------------
# Sounds


def group_voice(rng: np.random.Generator, sound: str) -> dict:
    """The parameters of a sound pattern for one group (one 'recording session')."""
    if sound == "drum":
        base = rng.uniform(70, 140)
        timbre = Timbre((base, base * 1.59, base * 2.14), (0.18, 0.12, 0.08), (1.0, 0.6, 0.4), click=0.6)
    elif sound == "bell":
        base = rng.uniform(600, 1200)
        timbre = Timbre(tuple(base * r for r in (1.0, 2.0, 2.4, 3.0, 4.1)), (0.7, 0.5, 0.4, 0.3, 0.2),
                        (1.0, 0.6, 0.5, 0.4, 0.3), click=0.05)
    elif sound == "knock":
        base = rng.uniform(250, 500)
        timbre = Timbre((base, base * 2.32, base * 4.25), (0.05, 0.03, 0.02), (1.0, 0.7, 0.4), click=0.4)
    elif sound == "tick":
        base = rng.uniform(2500, 4000)
        timbre = Timbre((base, base * 1.5), (0.012, 0.008), (1.0, 0.6), click=0.8)
    else:
        timbre = None
    return dict(sound=sound, timbre=timbre, pitch=float(rng.uniform(0.8, 1.25)), level=float(rng.uniform(0.4, 0.8)))


def strike(voice: dict, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """One sound of an impact pattern (1-D, peak about 1), starting at its first sample."""
    sound, pitch = voice["sound"], voice["pitch"] * rng.uniform(0.97, 1.03)
    if voice["timbre"] is not None:
        timbre = voice["timbre"]
        pitched = Timbre(tuple(f * pitch for f in timbre.frequencies), timbre.decays, timbre.amplitudes, timbre.click)
        return impact_sound(pitched, sample_rate, rng)
    if sound == "clap":
        length = int(0.05 * sample_rate)
        burst = coloured_noise(rng, length, sample_rate, 800 * pitch, 5000 * pitch)
        return burst * np.exp(-np.arange(length) / (0.012 * sample_rate)).astype(np.float32) / 3
    if sound == "chirp":
        length = int(0.12 * sample_rate)
        t = np.arange(length) / sample_rate
        frequency = 900 * pitch * (1 + t / t[-1])
        return (np.sin(2 * np.pi * np.cumsum(frequency) / sample_rate) * np.minimum(1, t / 0.003) * np.exp(-t / 0.06)).astype(np.float32)
    if sound == "rattle":
        length = int(0.09 * sample_rate)
        out = np.zeros(length, dtype=np.float32)
        for offset in [0, *sorted(rng.integers(int(0.01 * sample_rate), int(0.06 * sample_rate), 3))]:
            piece = coloured_noise(rng, int(0.012 * sample_rate), sample_rate, 2000 * pitch, 8000)
            piece *= np.exp(-np.arange(piece.size) / (0.003 * sample_rate)) / 3
            out[offset : offset + piece.size] += piece[: length - offset] * (1.0 if offset == 0 else 0.5)
        return out
    raise ValueError(f"{sound!r} is not an impact sound")


def continuous(voice: dict, activity: np.ndarray, num_samples: int, fps: float, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """A sound that follows the motion: as loud (and, for a whistle, as high) as it is fast."""
    envelope = frames_to_samples(np.clip(activity, 0, 1), num_samples, fps, sample_rate)
    sound, pitch = voice["sound"], voice["pitch"]
    if sound == "hum":
        return envelope * harmonic_tone(160 * pitch * (1 + 0.1 * envelope), num_samples, sample_rate, 0.7, rng)
    if sound == "whoosh":
        return envelope * coloured_noise(rng, num_samples, sample_rate, 300 * pitch, 3000 * pitch) / 3
    if sound == "whistle":
        frequency = 700 * pitch * (1 + 0.5 * envelope)
        return envelope * np.sin(2 * np.pi * np.cumsum(frequency) / sample_rate).astype(np.float32)
    raise ValueError(f"{sound!r} is not a continuous sound")


# ---------------------------------------------------------------------------------------------
# Clips


@dataclass(frozen=True)
class ActionJob:
    config: ActionsConfig
    label: int  # 0-based index into config.classes()
    group: int  # 1-based, as in UCF-101 names
    has_audio: bool
    root: str


def render_group(job: ActionJob) -> list[dict]:
    """Write the clips of one group (shared background, actor and sound); returns table rows."""
    config = job.config
    name, motion_name, sound = config.classes()[job.label]
    group_rng = clip_rng(config.seed, "actions", job.label, job.group)
    width, height, fps, sr = config.width, config.height, config.fps, config.sample_rate
    scale = height / 96
    margin = height // 4
    background = texture(group_rng, height + margin, width + margin)
    shape = str(group_rng.choice(SHAPES[1:] if motion_name == "spin" else SHAPES))  # a spinning circle shows nothing
    size = max(6, int(round(group_rng.uniform(*config.actor_size) * height)))
    colour = random_colour(group_rng)
    surface = shaded_sprite(group_rng, colour, size)
    still_alpha = shape_alpha(shape, size)
    voice = group_voice(group_rng, sound)
    ambience = float(group_rng.uniform(0.002, 0.015))
    rows = []
    for clip in range(1, config.clips_per_group + 1):
        rng = clip_rng(config.seed, "actions", job.label, job.group, clip)
        num_frames = int(rng.uniform(*config.clip_seconds) * fps)
        num_samples = int(round(num_frames * sr / fps))
        room = np.array([width - size, height - size], dtype=np.float64)
        pose = POSES[motion_name](rng, num_frames, room, scale, fps)
        motion = pose.motion
        motion.impacts = [(f, s) for f, s in motion.impacts if 1 <= f <= num_frames - 2]
        distractor = None
        if rng.uniform() < config.distractor_probability:
            d_size = max(6, int(round(rng.uniform(0.1, 0.2) * height)))
            d_shape = str(rng.choice(SHAPES))
            d_pose = drift(rng, num_frames, np.array([width - d_size, height - d_size], dtype=np.float64), scale, fps)
            distractor = (shaded_sprite(rng, random_colour(rng), d_size), shape_alpha(d_shape, d_size), d_pose.motion.top_left)

        pan = panning_offsets(rng, num_frames, margin)
        frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
        string_colour = np.array([30.0, 30.0, 30.0], dtype=np.float32)
        for t in range(num_frames):
            dy, dx = pan[t]
            canvas = background[dy : dy + height, dx : dx + width].copy()
            if distractor is not None:
                d_surface, d_alpha, d_top_left = distractor
                paste(canvas, d_surface, d_alpha, int(round(d_top_left[t, 1])), int(round(d_top_left[t, 0])))
            x, y = motion.top_left[t]
            if pose.pivot is not None:
                _draw_line(canvas, pose.pivot[t] + size / 2, np.array([x, y]) + size / 2, string_colour)
            moving_shape = pose.angle[t] != 0 or pose.scale[t] != 1
            alpha = shape_alpha(shape, size, pose.angle[t], pose.scale[t]) if moving_shape else still_alpha
            paste(canvas, surface, alpha, int(round(y)), int(round(x)))
            frames[t] = to_uint8(canvas)

        audio = None
        if job.has_audio:
            x_fraction = (motion.top_left[:, 0] + size / 2) / width
            track = np.zeros((2, num_samples), dtype=np.float32)
            if sound in IMPACT_SOUNDS:
                for frame, strength in motion.impacts:
                    gain = voice["level"] * strength * stereo_gains(x_fraction[frame])
                    add_at(track, strike(voice, sr, rng), sample_at_frame(frame, fps, sr), gain)
            else:
                mono = voice["level"] * continuous(voice, motion.activity, num_samples, fps, sr, rng)
                track += mono * frames_to_samples(stereo_gains(x_fraction), num_samples, fps, sr)
            track += ambience * np.stack([coloured_noise(rng, num_samples, sr, 40, None, -1.0) for _ in range(2)])
            audio = track * min(1.0, 0.95 / max(float(np.abs(track).max()), 1e-6))

        relative = f"{name}/{video_name(name, job.group, clip)}"
        write_video(Path(job.root) / relative, frames, fps, audio, sr, video_options=VIDEO_OPTIONS)
        rows.append(
            dict(
                path=relative, class_name=name, label=job.label + 1, group=job.group, clip=clip, motion=motion_name, sound=sound,
                has_audio=job.has_audio, num_frames=num_frames, duration=num_frames / fps, fps=fps,
                sample_rate=sr if job.has_audio else 0, width=width, height=height,
                num_impacts=len(motion.impacts) if sound in IMPACT_SOUNDS else 0,
                impact_frames=" ".join(str(f) for f, _ in motion.impacts) if sound in IMPACT_SOUNDS else "",
                **{f"split{k}": "test" if job.group in held_out_groups(k, config.num_groups) else "train" for k in (1, 2, 3)},
            )
        )
    return rows


def _draw_line(canvas: np.ndarray, start: np.ndarray, end: np.ndarray, colour: np.ndarray) -> None:
    """A one-pixel line (a pendulum's string), clipped to the canvas."""
    steps = int(np.hypot(*(end - start))) + 1
    xs = np.round(np.linspace(start[0], end[0], steps)).astype(int)
    ys = np.round(np.linspace(start[1], end[1], steps)).astype(int)
    inside = (xs >= 0) & (xs < canvas.shape[1]) & (ys >= 0) & (ys < canvas.shape[0])
    canvas[ys[inside], xs[inside]] = colour


ACTION_COLUMNS = (
    "path", "class_name", "label", "group", "clip", "motion", "sound", "has_audio", "num_frames", "duration", "fps",
    "sample_rate", "width", "height", "num_impacts", "impact_frames", "split1", "split2", "split3",
)
CLASS_COLUMNS = ("label", "class_name", "motion", "sound", "sound_only_partner")


def audio_groups(config: ActionsConfig, label: int) -> set[int]:
    """The groups of a class written with audio: ``audio_fraction`` of them, at random."""
    rng = clip_rng(config.seed, "actions", label)
    count = int(round(config.audio_fraction * config.num_groups))
    return {int(g) + 1 for g in rng.permutation(config.num_groups)[:count]}


def build_actions(config: ActionsConfig, root: Path, workers: int, progress: bool) -> None:
    """Write every clip, the UCF-101 split files and the tables ``actions.csv``, ``classes.csv``."""
    config.validate()
    classes = config.classes()
    jobs = [
        ActionJob(config, label, group, group in audio_groups(config, label), str(root))
        for label in range(len(classes))
        for group in range(1, config.num_groups + 1)
    ]
    rows = [row for group_rows in parallel_map(render_group, jobs, workers, "actions" if progress else None) for row in group_rows]

    lists = root / "ucfTrainTestlist"
    lists.mkdir()
    crlf = "\r\n"  # UCF-101's list files are written with Windows line ends
    (lists / "classInd.txt").write_text("".join(f"{i + 1} {c[0]}{crlf}" for i, c in enumerate(classes)), newline="")
    for split in (1, 2, 3):
        train = [r for r in rows if r[f"split{split}"] == "train"]
        test = [r for r in rows if r[f"split{split}"] == "test"]
        (lists / f"trainlist0{split}.txt").write_text("".join(f"{r['path']} {r['label']}{crlf}" for r in train), newline="")
        (lists / f"testlist0{split}.txt").write_text("".join(f"{r['path']}{crlf}" for r in test), newline="")

    write_table(root / "actions.csv", rows, ACTION_COLUMNS)
    partners = {a: b for pair in sound_only_pairs(classes) for a, b in (pair, pair[::-1])}
    class_rows = [dict(label=i + 1, class_name=c[0], motion=c[1], sound=c[2], sound_only_partner=partners.get(c[0], ""))
                  for i, c in enumerate(classes)]
    write_table(root / "classes.csv", class_rows, CLASS_COLUMNS)


def load_actions(root: str | Path):
    """The actions table (one row per clip, pandas) with its classes in ``.attrs``:
    ``classes`` (names by 0-based label) and ``sound_only_pairs``."""
    import pandas as pd

    root = Path(root)
    table = pd.read_csv(root / "actions.csv")
    with open(root / "classes.csv", newline="") as handle:
        classes = [(r["class_name"], r["motion"], r["sound"]) for r in csv.DictReader(handle)]
    table.attrs["classes"] = [c[0] for c in classes]
    table.attrs["sound_only_pairs"] = sound_only_pairs(classes)
    return table
