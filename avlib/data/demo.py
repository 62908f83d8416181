"""A one-file demo video for the data notebook: a bouncing ball that clicks at each bounce."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from avlib.writer import write_video


def bouncing_ball_video(path: str | Path, *, seconds: float = 10.1, fps: float = 25.0, size: int = 320,
                        sample_rate: int = 44100, seed: int = 0) -> tuple[Path, list[float]]:
    """Write an mp4 of a ball bouncing in a box, with a click at every wall impact.

    Returns the path and the impact times (s). The impacts are computed in continuous time and
    each click starts at its impact's exact sample, so the sound is tied to the seen motion.
    """
    rng = np.random.default_rng(seed)
    radius = size / 12
    low, high = radius, size - radius
    position = rng.uniform(low, high, size=2)
    velocity = rng.uniform(0.6, 1.0, size=2) * size / 1.5 * rng.choice([-1, 1], size=2)
    step = 1 / (fps * 20)
    positions, bounces = [], []
    frame_count = int(seconds * fps)
    time = 0.0
    for frame in range(frame_count):
        while time < frame / fps:
            position = position + velocity * step
            for axis in range(2):
                if not low <= position[axis] <= high:
                    position[axis] = np.clip(position[axis], low, high)
                    velocity[axis] *= -1
                    bounces.append(time + step)
            time += step
        positions.append(position.copy())

    yy, xx = np.mgrid[0:size, 0:size]
    background = (60 + 40 * np.sin(xx / 17.0)[..., None] * np.array([0.3, 0.6, 1.0])).astype(np.uint8)
    frames = np.repeat(background[None], frame_count, axis=0)
    for frame, (x, y) in enumerate(positions):
        inside = (xx - x) ** 2 + (yy - y) ** 2 <= radius**2
        frames[frame][inside] = (240, 180, 40)

    samples = int(round(frame_count / fps * sample_rate))
    audio = 0.01 * rng.standard_normal(samples).astype(np.float32)
    ring = np.arange(int(0.08 * sample_rate)) / sample_rate
    click = (0.7 * np.sin(2 * np.pi * 900 * ring) * np.exp(-ring * 60)).astype(np.float32)
    for bounce in bounces:
        first = int(round(bounce * sample_rate))
        piece = click[: max(0, samples - first)]
        audio[first : first + len(piece)] += piece
    stereo = np.stack([audio, audio])
    return write_video(path, frames, fps, stereo, sample_rate), bounces
