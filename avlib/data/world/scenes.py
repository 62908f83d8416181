"""Scenes: the AudioSet counterpart, for self-supervised pretraining (the shift task) and CAM.

Each clip shows a textured background under a slow camera pan and one to three objects that
bounce (under gravity), slide (and rebound off the frame's edges), shake (in bursts) or orbit
(at a speed that changes). Some objects make sound and some are silent distractors moving the
same ways. Sound is caused by what is visible:

- an object that bounces, slides or shakes sounds at each impact (a floor, a wall, the end of a
  shake) with its own timbre: material from its shape, pitch from its size (modal synthesis);
  the onset is the exact sample at which the impact frame is shown (frame k -> k / fps);
- an orbiting object hums, as loud as it moves fast (loudness follows speed, frame by frame);
- each sound is panned to the object's horizontal position (stereo, as in the paper);
- a sounding object lights up as it sounds: it brightens with each impact, the glow decaying
  over ``glow_seconds`` as the strike's ring does, and a humming object glows as loud as it
  hums (``glow`` = 0 turns this off). This is the world's visible correlate of sound, the
  counterpart of the visible vibration and contact that real sounds come with; without it
  the alignment task stayed at chance for the whole CPU budget of the ``synth`` profile
  (docs/world.md). Silent distractors never glow (but see the sync-only clips below);
- some clips also carry off-screen sound (impacts or a hum with no visible source) and noise.

Files: ``clips/scene_NNNNN.mp4``; tables ``scenes.csv`` (one row per clip), ``objects.csv`` (one
row per object: shape, colour, size, motion, whether and how it sounds, its timbre) and
``events.csv`` (one row per sound event: clip, object or -1 for off-screen, frame, time, sample).
Ground truth per clip (``truth/<clip>.npz``, read with :func:`load_truth`): every object's box
per frame, its sprite and rendered position (hence its mask), whether it sounds, its loudness
per frame, and every sound event with the object that caused it (-1: off-screen).

Sync-only clips (:class:`SyncOnlyConfig`, :func:`generate_sync_only`; held out, for CAM, beyond the paper): a
sounding object beside a silent distractor that moves and glows with the same statistics but out of step with the
sound, so that motion and brightness cannot tell them apart and only audio-visual correspondence can. Same layout
(``scenes.csv``, ``clips/sync_NNNNN.mp4``, ``truth/``), the truth with each object's ``glow`` too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...writer import write_video
from ._common import (
    SHAPES,
    VIDEO_OPTIONS,
    add_at,
    check_frame_size,
    clip_frames,
    clip_rng,
    coloured_noise,
    frame_rms,
    frames_to_samples,
    harmonic_tone,
    impact_sound,
    object_timbre,
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
    write_npz,
    write_table,
)

#: How each kind of motion sounds when its object is a sounding one.
SOUND_OF_MOTION = {"bounce": "impact", "slide": "impact", "shake": "impact", "orbit": "continuous"}
MOTIONS = tuple(SOUND_OF_MOTION)


@dataclass(frozen=True)
class ScenesConfig:
    """The scenes part of the world (the paper's AudioSet clips, sections 3 and 5).

    The shift task needs clips long enough for two windows: the paper cuts 4.2 s windows from
    10.1 s clips with shifts of 2.0-5.8 s, and so does the default here. Frames are square;
    the network sees crops of them.
    """

    num_clips: int = 600  #: clips in the pretraining set (the paper: ~750 k AudioSet videos)
    clip_seconds: float = 10.1  #: length of each clip (paper: 10.1 s, 302 frames at 29.97 fps)
    fps: float = 30000 / 1001  #: frame rate of the files (paper: 29.97)
    sample_rate: int = 22050  #: audio rate of the files; the reader resamples to the paper's 21 kHz
    size: int = 128  #: frame height and width in pixels (paper: 256, cropped to 224)
    max_objects: int = 3  #: each clip shows 1..max_objects moving objects
    object_size: tuple[float, float] = (0.2, 0.35)  #: object side as a fraction of the frame side
    sounding_probability: float = 0.75  #: chance that an object makes sound (else a silent distractor)
    silent_scene_probability: float = 0.05  #: chance that no visible object sounds at all
    offscreen_probability: float = 0.2  #: chance of a clip carrying sound with no visible source
    noise_probability: float = 0.3  #: chance of background noise
    glow: float = 1.0  #: how far a sounding object brightens toward white at full loudness (0: never)
    glow_seconds: float = 0.25  #: time constant of the glow's decay after an impact
    motions: tuple[str, ...] = MOTIONS  #: the motions objects are drawn from
    container: str = "mp4"  #: mp4 (H.264 + AAC, sample-exact sync) or avi (MPEG-4 + MP3, ~25-50 ms late)
    seed: int = 0

    @property
    def num_frames(self) -> int:
        return clip_frames(self.clip_seconds, self.fps)

    def validate(self) -> None:
        unknown = sorted(set(self.motions) - set(MOTIONS))
        if unknown:
            raise ValueError(f"ScenesConfig.motions: unknown {unknown}; use {MOTIONS}")
        check_frame_size("ScenesConfig", self.size)
        if self.container not in ("mp4", "avi", "mkv"):
            raise ValueError(f"ScenesConfig.container must be mp4, avi or mkv, got {self.container!r}")
        if self.num_frames < 8 or self.max_objects < 1 or self.num_clips < 1:
            raise ValueError(f"ScenesConfig: too small a world: {self}")


@dataclass
class Motion:
    """One object's trajectory: top-left corner per frame (T x 2, x and y, float pixels),
    impacts as (frame, strength 0..1) and speed per frame (pixels per frame)."""

    top_left: np.ndarray
    impacts: list[tuple[int, float]]
    speed: np.ndarray
    activity: np.ndarray | None = None  # 0..1 per frame: how hard a continuously sounding motion works


def _reflect(position: np.ndarray, velocity: np.ndarray, low: float, high: float, axis: int) -> float | None:
    """Keep ``position[axis]`` in [low, high]; on contact, put the object against the wall, turn
    its velocity back and return the impact speed (None when there is no contact).

    A contact is placed on the frame nearest to it: when the object would reach the wall less
    than half a step after this frame, it touches now. So the frame before a contact is always
    at least half a step away, and the turn is visible in the frames themselves."""
    reach = 0.5 * abs(float(velocity[axis]))
    if position[axis] <= low + reach and velocity[axis] <= 0:
        position[axis] = low
    elif position[axis] >= high - reach and velocity[axis] >= 0:
        position[axis] = high
    else:
        return None
    speed = abs(float(velocity[axis]))
    velocity[axis] = -velocity[axis]
    return speed


def bounce(rng: np.random.Generator, num_frames: int, room: np.ndarray, scale: float, fps: float) -> Motion:
    """A ball under gravity: it falls, strikes the floor (and walls), and rebounds; it is kicked
    back up when its bounces grow too small, so it keeps sounding through the clip."""
    gravity = rng.uniform(0.08, 0.16) * scale
    restitution = rng.uniform(0.8, 0.95)
    kick = np.sqrt(2 * gravity * room[1] * rng.uniform(0.35, 0.9))
    position = rng.uniform(0.1, 0.9, 2) * room
    velocity = np.array([rng.uniform(0.6, 1.6) * scale * rng.choice([-1, 1]), rng.uniform(-1.5, 0.5) * scale])
    top_left, speed, impacts = np.zeros((num_frames, 2)), np.zeros(num_frames), []
    for frame in range(num_frames):
        if frame:
            position += velocity
            velocity[1] += gravity
            strengths = []
            if (hit := _reflect(position, velocity, 0, room[0], 0)) is not None:
                strengths.append(hit / (2 * scale))
            if position[1] >= room[1] - 0.5 * velocity[1] and velocity[1] >= 0:  # the floor: lose energy, or get kicked
                position[1] = room[1]
                strengths.append(velocity[1] / kick)
                # each landing loses a different share of its energy, so bounces never settle into a rhythm
                velocity[1] = -max(restitution * rng.uniform(0.75, 1.0) * velocity[1], kick * rng.uniform(0.45, 1.0))
            elif (hit := _reflect(position, velocity, 0, room[1], 1)) is not None:
                strengths.append(hit / (2 * scale))
            if strengths:
                impacts.append((frame, float(np.clip(max(strengths), 0.4, 1.0))))
        top_left[frame] = position
        speed[frame] = np.hypot(*velocity)
    return Motion(top_left, impacts, speed)


def slide(rng: np.random.Generator, num_frames: int, room: np.ndarray, scale: float, fps: float, angle: float | None = None) -> Motion:
    """Straight-line motion, rebounding off the frame's edges (billiards) a little faster or slower each time,
    in a random direction unless ``angle`` (radians from the x axis) is given."""
    direction = rng.uniform(0, 2 * np.pi) if angle is None else angle
    velocity = rng.uniform(1.0, 2.5) * scale * np.array([np.cos(direction), np.sin(direction)])
    if angle is None:  # a random direction is never parallel to an edge
        velocity[np.abs(velocity) < 0.3 * scale] = 0.3 * scale
    position = rng.uniform(0.1, 0.9, 2) * room
    top_left, impacts, speeds = np.zeros((num_frames, 2)), [], np.zeros(num_frames)
    speed = float(np.hypot(*velocity))
    for frame in range(num_frames):
        if frame:
            position += velocity
            hits = [h for axis in (0, 1) if (h := _reflect(position, velocity, 0, room[axis], axis)) is not None]
            if hits:  # each rebound changes the speed a little, so the rebounds never fall into a rhythm
                velocity *= np.clip(rng.uniform(0.7, 1.4) * speed, 1.0 * scale, 2.5 * scale) / speed
                speed = float(np.hypot(*velocity))
                impacts.append((frame, float(np.clip(max(hits) / (2 * scale), 0.4, 1.0))))
        top_left[frame] = position
        speeds[frame] = speed
    return Motion(top_left, impacts, speeds)


def shake(rng: np.random.Generator, num_frames: int, room: np.ndarray, scale: float, fps: float) -> Motion:
    """Bursts of rattling back and forth along one axis, between rests; it sounds at each turn."""
    amplitude = rng.uniform(0.05, 0.1) * room.min()
    centre = rng.uniform(amplitude, room - amplitude, 2)
    axis = np.array([np.cos(a := rng.uniform(0, np.pi)), np.sin(a)])
    displacement, speed, impacts = np.zeros(num_frames), np.zeros(num_frames), []
    frame = int(rng.integers(0, 20))
    while frame < num_frames:
        quarter = int(rng.integers(2, 5))  # frames from centre to a turn
        turns = int(rng.integers(3, 11))
        # a triangle wave 0 -> +A -> -A -> ... -> 0 with a turn every 2 * quarter frames
        knots_t = [0] + [quarter + 2 * quarter * i for i in range(turns)] + [2 * quarter * turns]
        knots_d = [0.0] + [amplitude * (1 if i % 2 == 0 else -1) for i in range(turns)] + [0.0]
        local = np.arange(2 * quarter * turns + 1)
        span = slice(frame, min(frame + local.size, num_frames))
        displacement[span] = np.interp(local, knots_t, knots_d)[: span.stop - span.start]
        speed[span] = amplitude / quarter
        impacts += [(frame + t, float(rng.uniform(0.5, 1.0))) for t in knots_t[1:-1] if frame + t < num_frames]
        frame += local.size + int(rng.uniform(0.3, 1.5) * fps)
    return Motion(centre + displacement[:, None] * axis, impacts, speed)


def orbit(rng: np.random.Generator, num_frames: int, room: np.ndarray, scale: float, fps: float) -> Motion:
    """Circling a point at a speed that speeds up, slows down and stops; no impacts."""
    radius = rng.uniform(0.2, 0.45) * room.min()
    centre = rng.uniform(radius, room - radius, 2)
    targets, frame = np.zeros(num_frames), 0
    direction = rng.choice([-1, 1])
    while frame < num_frames:
        length = int(rng.uniform(0.4, 1.5) * fps)
        targets[frame : frame + length] = 0.0 if rng.uniform() < 0.35 else direction * rng.uniform(0.04, 0.12)
        frame += length
    ramp = max(1, int(0.25 * fps))  # speed changes take a quarter second
    smooth = np.convolve(targets, np.ones(ramp) / ramp, mode="full")[:num_frames]
    angle = rng.uniform(0, 2 * np.pi) + np.cumsum(smooth)
    top_left = centre + radius * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    return Motion(top_left, [], radius * np.abs(smooth), activity=np.abs(smooth) / 0.12)


def glow_envelope(motion: Motion, num_frames: int, fps: float, seconds: float) -> np.ndarray:
    """How brightly a sounding object glows in each frame (0..1): each impact lights it at its
    strength, decaying with time constant ``seconds`` (the brightest impact wins); a continuous
    sound glows with its activity."""
    if motion.activity is not None:
        return np.clip(motion.activity, 0, 1).astype(np.float32)
    envelope = np.zeros(num_frames, dtype=np.float32)
    decay = np.exp(-np.arange(num_frames) / max(seconds * fps, 1e-6))
    for frame, strength in motion.impacts:
        envelope[frame:] = np.maximum(envelope[frame:], strength * decay[: num_frames - frame])
    return envelope


MOTION_FUNCTIONS = {"bounce": bounce, "slide": slide, "shake": shake, "orbit": orbit}


@dataclass(frozen=True)
class SceneJob:
    config: ScenesConfig
    index: int
    root: str


def clip_name(index: int) -> str:
    return f"scene_{index:05d}"


def _draw_object(rng: np.random.Generator, config: ScenesConfig, sounding: bool, motion_name: str | None = None) -> dict:
    """One object of a clip: shape, size, colour, motion (drawn from ``config.motions`` unless given), timbre and
    sprite, in that order of draws."""
    num_frames, side, fps = config.num_frames, config.size, config.fps
    low, high = config.object_size
    shape = str(rng.choice(SHAPES))
    size_fraction = rng.uniform(*config.object_size)
    size = max(6, int(round(size_fraction * side)))
    colour = random_colour(rng)
    motion_name = str(rng.choice(config.motions)) if motion_name is None else motion_name
    motion = MOTION_FUNCTIONS[motion_name](rng, num_frames, np.full(2, float(side - size)), side / 128, fps)
    # impacts in the first or last frame have no visible before/after: leave them out
    motion.impacts = [(f, s) for f, s in motion.impacts if 1 <= f <= num_frames - 2]
    return dict(
        shape=shape, size=size, colour=colour, motion_name=motion_name, motion=motion,
        sounding=bool(sounding), timbre=object_timbre(rng, shape, (size_fraction - low) / max(high - low, 1e-6)),
        alpha=shape_alpha(shape, size), surface=shaded_sprite(rng, colour, size),
    )


def render_scene(job: SceneJob) -> dict:
    """Generate, write and describe one scenes clip; returns its table rows."""
    config, index = job.config, job.index
    rng = clip_rng(config.seed, "scenes", index)
    num_frames, fps = config.num_frames, config.fps

    num_objects = int(rng.integers(1, config.max_objects + 1))
    sounding = rng.uniform(size=num_objects) < config.sounding_probability
    if not sounding.any() and rng.uniform() >= config.silent_scene_probability:
        sounding[rng.integers(num_objects)] = True
    objects = [_draw_object(rng, config, sounding[k]) for k in range(num_objects)]

    # -- pictures; a sounding object glows with its own sound (see the module docstring)
    for obj in objects:
        obj["glow"] = glow_envelope(obj["motion"], num_frames, fps, config.glow_seconds) if obj["sounding"] else None
    return _render_clip(job, rng, objects, config.offscreen_probability)


def _render_clip(job: SceneJob, rng: np.random.Generator, objects: list[dict], offscreen_probability: float,
                 extra_truth: dict | None = None, clip: str | None = None) -> dict:
    """Draw, voice, write and describe one clip of ``objects`` (each with its motion, sprite, timbre, whether it
    sounds and its ``glow`` envelope or None); returns its table rows. ``extra_truth``: more arrays for its truth file;
    ``clip``: its name (default: the scenes clip's)."""
    config, clip = job.config, clip or clip_name(job.index)
    num_frames, side, fps, sr = config.num_frames, config.size, config.fps, config.sample_rate
    num_samples = int(round(num_frames * sr / fps))
    num_objects = len(objects)
    sounding = np.array([obj["sounding"] for obj in objects], dtype=bool)
    margin = side // 4
    background = texture(rng, side + margin, side + margin)
    pan = panning_offsets(rng, num_frames, margin)
    order = rng.permutation(num_objects)
    rendered = np.zeros((num_frames, num_objects, 2), dtype=np.int16)
    boxes = np.zeros((num_frames, num_objects, 4), dtype=np.float32)
    frames = np.empty((num_frames, side, side, 3), dtype=np.uint8)
    for t in range(num_frames):
        dy, dx = pan[t]
        canvas = background[dy : dy + side, dx : dx + side].copy()
        for k in order:
            obj = objects[k]
            x, y = obj["motion"].top_left[t]
            rendered[t, k] = (int(round(x)), int(round(y)))
            boxes[t, k] = (x, y, x + obj["size"], y + obj["size"])
            surface = obj["surface"]
            if obj["glow"] is not None and config.glow > 0:
                surface = surface + (config.glow * obj["glow"][t]) * (255.0 - surface)
            paste(canvas, surface, obj["alpha"], int(round(y)), int(round(x)))
        frames[t] = to_uint8(canvas)

    # -- sounds, each object's on its own track so its loudness can be measured
    tracks = np.zeros((num_objects, 2, num_samples), dtype=np.float32)
    events = []  # (frame, object, strength)
    for k, obj in enumerate(objects):
        if not obj["sounding"]:
            continue
        x_centre = (obj["motion"].top_left[:, 0] + obj["size"] / 2) / side
        if SOUND_OF_MOTION[obj["motion_name"]] == "impact":
            strike = impact_sound(obj["timbre"], sr, rng)
            for frame, strength in obj["motion"].impacts:
                gain = 0.7 * strength * rng.uniform(0.9, 1.0)
                add_at(tracks[k], strike, sample_at_frame(frame, fps, sr), gain * stereo_gains(x_centre[frame]))
                events.append((frame, k, strength))
        else:
            loudness = np.clip(obj["motion"].activity, 0, 1)
            envelope = frames_to_samples(loudness, num_samples, fps, sr)
            pitch = 0.5 * obj["timbre"].frequencies[0] * (1 + 0.08 * envelope)
            hum = harmonic_tone(pitch, num_samples, sr, brightness=float(rng.uniform(0.3, 0.9)), rng=rng)
            tracks[k] += 0.3 * envelope * hum * frames_to_samples(stereo_gains(x_centre), num_samples, fps, sr)

    offscreen = np.zeros((2, num_samples), dtype=np.float32)
    offscreen_kind = "none"
    if rng.uniform() < offscreen_probability:
        hidden_shape = str(rng.choice(SHAPES))
        timbre = object_timbre(rng, hidden_shape, rng.uniform())
        side_gain = stereo_gains(rng.uniform())
        if rng.uniform() < 0.6:
            offscreen_kind = "impact"
            strike = impact_sound(timbre, sr, rng)
            frame = int(rng.integers(1, 30))
            while frame <= num_frames - 2:
                strength = float(rng.uniform(0.4, 1.0))
                add_at(offscreen, strike, sample_at_frame(frame, fps, sr), 0.6 * strength * side_gain)
                events.append((frame, -1, strength))
                frame += int(rng.integers(8, 45))
        else:
            offscreen_kind = "continuous"
            level = np.clip(np.convolve(rng.uniform(-0.5, 1, num_frames // 15 + 2), np.ones(2) / 2, "same"), 0, 1)
            envelope = np.interp(np.arange(num_samples), np.linspace(0, num_samples, level.size), level).astype(np.float32)
            offscreen += 0.25 * envelope * harmonic_tone(0.5 * timbre.frequencies[0], num_samples, sr, 0.6, rng) * side_gain[:, None]
    noise_rms = float(rng.uniform(0.003, 0.02)) if rng.uniform() < config.noise_probability else 0.0
    noise = noise_rms * np.stack([coloured_noise(rng, num_samples, sr, 30, None, -1.0) for _ in range(2)])

    mix = tracks.sum(axis=0) + offscreen + noise
    gain = min(1.0, 0.95 / max(float(np.abs(mix).max()), 1e-6))  # never clip: scale the whole mix
    mix *= gain

    relative = Path("clips") / f"{clip}.{config.container}"
    write_video(Path(job.root) / relative, frames, fps, mix, sr, video_options=VIDEO_OPTIONS)

    events.sort()
    event_frame = np.array([e[0] for e in events], dtype=np.int32)
    loudness = np.stack([frame_rms(gain * tracks[k], num_frames, fps, sr) for k in range(num_objects)], axis=1)
    truth_relative = Path("truth") / f"{clip}.npz"
    max_size = max(obj["size"] for obj in objects)
    sprites = np.zeros((num_objects, max_size, max_size), dtype=np.uint8)
    for k, obj in enumerate(objects):
        sprites[k, : obj["size"], : obj["size"]] = np.round(obj["alpha"] * 255)
    write_npz(
        Path(job.root) / truth_relative,
        boxes=boxes,
        top_left=rendered,
        sprites=sprites,
        sizes=np.array([obj["size"] for obj in objects], dtype=np.int16),
        sounding=sounding.astype(bool),
        loudness=loudness,
        offscreen_loudness=frame_rms(gain * offscreen, num_frames, fps, sr),
        event_frame=event_frame,
        event_object=np.array([e[1] for e in events], dtype=np.int8),
        event_strength=np.array([e[2] for e in events], dtype=np.float32),
        event_sample=np.array([sample_at_frame(f, fps, sr) for f in event_frame], dtype=np.int64),
        fps=np.float64(fps),
        sample_rate=np.int64(sr),
        **(extra_truth or {}),
    )

    scene_row = dict(
        clip=clip, path=relative.as_posix(), truth=truth_relative.as_posix(), num_frames=num_frames, duration=num_frames / fps,
        fps=fps, sample_rate=sr, width=side, height=side, num_objects=num_objects, num_sounding=int(sounding.sum()),
        num_events=int(sum(1 for e in events if e[1] >= 0)), offscreen=offscreen_kind, noise_rms=noise_rms * gain,
    )
    object_rows = [
        dict(
            clip=clip, object=k, shape=obj["shape"], colour="#%02x%02x%02x" % tuple(int(c) for c in obj["colour"]), size=obj["size"],
            motion=obj["motion_name"], sounding=obj["sounding"], sound=SOUND_OF_MOTION[obj["motion_name"]] if obj["sounding"] else "none",
            timbre=obj["timbre"].describe(),
        )
        for k, obj in enumerate(objects)
    ]
    event_rows = [
        dict(clip=clip, object=k, frame=f, time=f / fps, sample=sample_at_frame(f, fps, sr), strength=s,
             kind="impact" if k >= 0 else "offscreen")
        for f, k, s in events
    ]
    return dict(scene=scene_row, objects=object_rows, events=event_rows)


# ----------------------------------------------------------------------------- sync-only clips

#: Mixed into the random streams of sync-only clips: (index, 1) never gives a pretraining clip's stream (index,).
SYNC_ONLY_STREAM = 1


@dataclass(frozen=True)
class SyncOnlyConfig:
    """Held-out clips in which only audio-visual synchrony finds the sound's source (beyond the paper).

    Each clip shows two objects drawn alike: the same kind of motion, shape, size and colour drawn from the same
    distributions, and both glow with the same process (:func:`glow_envelope` of their own impacts or activity).
    One makes the sound; the other is silent, its glow and impacts an independent train from the same
    distribution, out of step with the sound. Motion, brightness changes, size and place tell them apart no
    better than a coin, so a map that prefers the sounding object must have heard which one the sound follows.
    Clips have the scenes' size, rates and background noise, no off-screen sound; their random streams are
    disjoint from the pretraining clips'.
    """

    scenes: ScenesConfig  #: the world's scenes (frame size, rates, glow, motions, noise)
    num_clips: int = 60  #: clips written

    def validate(self) -> None:
        self.scenes.validate()
        if self.num_clips < 1:
            raise ValueError(f"SyncOnlyConfig.num_clips must be >= 1, got {self.num_clips}")


def sync_only_name(index: int) -> str:
    return f"sync_{index:05d}"


def render_sync_only(job: SceneJob) -> dict:
    """Generate, write and describe one sync-only clip (:class:`SyncOnlyConfig`): object 0 sounds, object 1 is a
    silent distractor with the same motion kind and its own glow; the truth file also holds ``glow`` (T x 2)."""
    config = job.config
    rng = clip_rng(config.seed, "scenes", job.index, SYNC_ONLY_STREAM)
    motion_name = str(rng.choice(config.motions))
    objects = [_draw_object(rng, config, sounding, motion_name) for sounding in (True, False)]
    for obj in objects:  # both glow, each with its own impacts or activity: only the sound says which is heard
        obj["glow"] = glow_envelope(obj["motion"], config.num_frames, config.fps, config.glow_seconds)
    glow = np.stack([obj["glow"] for obj in objects], axis=1) * (config.glow > 0)
    return _render_clip(job, rng, objects, 0.0, {"glow": glow.astype(np.float32)}, sync_only_name(job.index))


def build_sync_only(config: SyncOnlyConfig, root: Path, workers: int, progress: bool) -> None:
    """Write every sync-only clip and the tables ``scenes.csv``, ``objects.csv``, ``events.csv`` (the scenes' layout)."""
    config.validate()
    jobs = [SceneJob(config.scenes, index, str(root)) for index in range(config.num_clips)]
    results = parallel_map(render_sync_only, jobs, workers, "sync-only clips" if progress else None)
    write_table(root / "scenes.csv", [r["scene"] for r in results], SCENE_COLUMNS)
    write_table(root / "objects.csv", [row for r in results for row in r["objects"]], OBJECT_COLUMNS)
    write_table(root / "events.csv", [row for r in results for row in r["events"]], EVENT_COLUMNS)


def generate_sync_only(config: SyncOnlyConfig, root: str | Path, workers: int | None = None, progress: bool = False) -> Path:
    """Build the sync-only clips into ``root`` (or re-use an identical build there) and return ``root``."""
    from ._common import build_cached, default_workers

    workers = default_workers() if workers is None else workers
    return build_cached(Path(root), "sync_only", config, lambda staging: build_sync_only(config, staging, workers, progress))


SCENE_COLUMNS = ("clip", "path", "truth", "num_frames", "duration", "fps", "sample_rate", "width", "height", "num_objects",
                 "num_sounding", "num_events", "offscreen", "noise_rms")
OBJECT_COLUMNS = ("clip", "object", "shape", "colour", "size", "motion", "sounding", "sound", "timbre")
EVENT_COLUMNS = ("clip", "object", "frame", "time", "sample", "strength", "kind")


def build_scenes(config: ScenesConfig, root: Path, workers: int, progress: bool) -> None:
    """Write every scenes clip and the tables ``scenes.csv``, ``objects.csv``, ``events.csv``."""
    config.validate()
    jobs = [SceneJob(config, index, str(root)) for index in range(config.num_clips)]
    results = parallel_map(render_scene, jobs, workers, "scenes" if progress else None)
    write_table(root / "scenes.csv", [r["scene"] for r in results], SCENE_COLUMNS)
    write_table(root / "objects.csv", [row for r in results for row in r["objects"]], OBJECT_COLUMNS)
    write_table(root / "events.csv", [row for r in results for row in r["events"]], EVENT_COLUMNS)


@dataclass
class SceneTruth:
    """The ground truth of one scenes clip, as written by the generator.

    ``boxes``: T x K x 4 (x0, y0, x1, y1) in pixels of the written frames, for every object
    (sounding or not); ``sounding``: K booleans; ``loudness``: T x K RMS of each object's own
    sound during each frame; events: ``event_frame``/``event_sample``/``event_object`` (-1 means
    off-screen)/``event_strength``.
    """

    boxes: np.ndarray
    top_left: np.ndarray
    sprites: np.ndarray
    sizes: np.ndarray
    sounding: np.ndarray
    loudness: np.ndarray
    offscreen_loudness: np.ndarray
    event_frame: np.ndarray
    event_object: np.ndarray
    event_strength: np.ndarray
    event_sample: np.ndarray
    fps: float
    sample_rate: int
    height: int
    width: int
    glow: np.ndarray | None = None  # T x K glow of each object (sync-only clips only)

    @property
    def event_time(self) -> np.ndarray:
        """Seconds of each event: its frame's presentation time."""
        return self.event_frame / self.fps

    def masks(self, frame: int) -> np.ndarray:
        """K x H x W booleans: where each object is drawn in ``frame`` (whole shape, even where
        another object covers it)."""
        out = np.zeros((len(self.sizes), self.height, self.width), dtype=bool)
        for k, size in enumerate(self.sizes):
            x, y = (int(v) for v in self.top_left[frame, k])
            sprite = self.sprites[k, :size, :size] >= 128
            y0, x0, y1, x1 = max(y, 0), max(x, 0), min(y + size, self.height), min(x + size, self.width)
            if y0 < y1 and x0 < x1:
                out[k, y0:y1, x0:x1] = sprite[y0 - y : y1 - y, x0 - x : x1 - x]
        return out

    def sounding_mask(self, frame: int) -> np.ndarray:
        """H x W booleans: pixels of the objects that make sound (the target of localisation)."""
        masks = self.masks(frame)
        return masks[self.sounding].any(axis=0) if self.sounding.any() else np.zeros(masks.shape[1:], dtype=bool)


def load_truth(path: str | Path, height: int | None = None, width: int | None = None) -> SceneTruth:
    """Read ``truth/<clip>.npz``. Frame size defaults to the clip's (read from ``scenes.csv``
    beside it when not given)."""
    path = Path(path)
    with np.load(path) as data:
        arrays = {name: data[name] for name in data.files}
    if height is None or width is None:
        import csv

        with open(path.parent.parent / "scenes.csv", newline="") as table:
            row = next(r for r in csv.DictReader(table) if Path(r["truth"]).name == path.name)
        height, width = int(row["height"]), int(row["width"])
    fps, sample_rate = float(arrays.pop("fps")), int(arrays.pop("sample_rate"))
    return SceneTruth(**arrays, fps=fps, sample_rate=sample_rate, height=height, width=width)


def load_scenes(root: str | Path):
    """The scenes table (pandas, one row per clip; ``path`` and ``truth`` relative to ``root``)."""
    import pandas as pd

    return pd.read_csv(Path(root) / "scenes.csv")
