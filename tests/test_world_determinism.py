"""The world's video encoder gives the same bytes for the same frames, call after call: a world generated twice is
the same world. With x264's macroblock-tree rate control some small clips came out with other bytes from one
encode to the next, in one process (so the drift test's two runs trained on different videos)."""

from __future__ import annotations

import hashlib

import numpy as np

from avlib.data.world._common import VIDEO_OPTIONS
from avlib.writer import write_video


def test_the_world_encoder_gives_the_same_bytes_every_time(tmp_path):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (30, 64, 64, 3), dtype=np.uint8)
    frames[:, 20:40, 20:40] = 200  # a flat square over noise: encodes that differed 1 time in 4 with macroblock-tree
    digests = set()
    for attempt in range(24):
        path = write_video(tmp_path / f"clip{attempt}.mp4", frames, 30, None, 11025, video_options=VIDEO_OPTIONS)
        digests.add(hashlib.sha256(path.read_bytes()).hexdigest())
    assert len(digests) == 1
