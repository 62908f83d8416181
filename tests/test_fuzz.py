"""Damaged variants of real media: every probe and read returns data or raises a named MediaError, in time.

Sources are written at test time (H.264/AAC mp4, MPEG-4/MP3 avi, H.264/AAC mkv, a rotated mp4 with 5.1
sound). Each case damages one of them with a seeded mutation (bytes flipped, a chunk of garbage, a chunk
zeroed, truncated, the header cut off, a chunk repeated) and hands it to a worker process, which probes it
and reads two windows and some audio. A case fails if the worker hangs past its time limit, dies (a crash
in native code), or raises anything but a :class:`avlib.io.MediaError`; returned data must have the
asked shape and finite samples. The default run covers 96 cases; 384 more are marked slow.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

TIME_LIMIT = 30.0  # seconds a case may take before it counts as a hang (the slowest undamaged one takes < 1 s)
MUTATIONS = ("flip", "garbage", "zero", "truncate", "cut_header", "repeat")
SOURCES = ("mp4", "avi", "mkv", "rotated_surround")


def _write_sources(root: Path) -> dict[str, Path]:
    from media import click_track, textured_frames

    from avlib.writer import write_video

    frames = textured_frames(40, 96, 128)
    stereo = click_track(int(40 / 25 * 44100), 44100, [0.4, 1.0])
    surround = np.concatenate([stereo, stereo, stereo]) * 0.5
    return {
        "mp4": write_video(root / "source.mp4", frames, 25.0, stereo, 44100, gop=12),
        "avi": write_video(root / "source.avi", frames, 25.0, stereo, 44100, gop=12),
        "mkv": write_video(root / "source.mkv", frames, 25.0, stereo, 44100, gop=12),
        "rotated_surround": write_video(root / "rotated.mp4", frames, 25.0, surround, 44100, gop=12, rotation=90),
    }


def mutate(data: bytes, mutation: str, seed: int) -> bytes:
    """``data`` damaged by ``mutation``, reproducibly from ``seed``."""
    rng = np.random.default_rng(seed)
    size = len(data)
    damaged = bytearray(data)
    if mutation == "flip":  # 1 to 64 bytes anywhere get some of their bits flipped
        flipped = np.frombuffer(data, np.uint8).copy()
        where = rng.integers(0, size, int(rng.integers(1, 65)))
        flipped[where] ^= rng.integers(1, 256, len(where), dtype=np.uint8)
        damaged = bytearray(flipped.tobytes())
    elif mutation in ("garbage", "zero"):  # a chunk of 16 B to 16 KB overwritten
        length = int(rng.integers(16, 16 * 1024))
        offset = int(rng.integers(0, max(1, size - length)))
        fill = rng.integers(0, 256, length, dtype=np.uint8).tobytes() if mutation == "garbage" else bytes(length)
        damaged[offset : offset + length] = fill[: size - offset]
    elif mutation == "truncate":
        damaged = damaged[: int(rng.integers(0, size))]
    elif mutation == "cut_header":  # the first 1 B to 4 KB gone
        damaged = damaged[int(rng.integers(1, 4096)) :]
    elif mutation == "repeat":  # a chunk copied in again elsewhere, shifting everything after it
        length = int(rng.integers(16, 8 * 1024))
        offset = int(rng.integers(0, max(1, size - length)))
        at = int(rng.integers(0, size))
        damaged[at:at] = damaged[offset : offset + length]
    else:
        raise ValueError(f"unknown mutation {mutation!r}")
    return bytes(damaged)


def _read_everything(path: str) -> dict[str, str]:
    """What the worker does with one file: the outcome of each read ("data", a MediaError's name, or "other: ...")."""
    from avlib import io

    outcomes: dict[str, str] = {}

    def attempt(name: str, read, check) -> object:
        try:
            value = read()
        except io.MediaError as error:
            outcomes[name] = type(error).__name__
            return None
        except Exception as error:  # anything else is what this test exists to find
            outcomes[name] = f"other: {type(error).__name__}: {error}"
            return None
        problem = check(value)
        outcomes[name] = f"other: bad data: {problem}" if problem else "data"
        return value

    def clip_problem(clip, shape) -> str:
        if clip.frames.dtype != np.uint8 or clip.frames.shape[1:] != shape:
            return f"frames {clip.frames.dtype} {clip.frames.shape}"
        if clip.audio.shape[0] != 2 or not np.isfinite(clip.audio).all():
            return f"audio {clip.audio.shape} finite={np.isfinite(clip.audio).all()}"
        return ""

    info = attempt("probe", lambda: io.probe(path), lambda info: "" if info.width > 0 and info.height > 0 else f"size {info}")
    attempt("window", lambda: io.read_clip(path, 0.3, 1.0, fps=25.0, size=(48, 64), missing_audio="silence"),
            lambda clip: clip_problem(clip, (48, 64, 3)))
    attempt("native", lambda: io.read_clip(path, 0.0, 0.4, fps=25.0, missing_audio="silence"),
            lambda clip: clip_problem(clip, clip.frames.shape[1:3] + (3,)))
    if info is not None and info.has_audio:
        attempt("audio", lambda: io.read_audio(path, 0.2, 4000),
                lambda audio: "" if audio.shape == (2, 4000) and np.isfinite(audio).all() else f"audio {audio.shape}")
    return outcomes


def _worker() -> None:
    """Read paths from stdin, one a line; answer each with one JSON line of outcomes."""
    import warnings

    warnings.simplefilter("ignore")  # concealment warnings are expected here
    for line in sys.stdin:
        print(json.dumps(_read_everything(line.strip())), flush=True)


class _Worker:
    """A worker process that can be replaced when a case kills it or makes it hang."""

    def __init__(self, log: Path):
        self.log = log
        self.process = None

    def run(self, path: Path) -> dict[str, str] | str:
        """The case's outcomes, or "hang" or "crash (exit code N)"."""
        if self.process is None or self.process.poll() is not None:
            env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]), str(Path(__file__).parent),
                                                                  os.environ.get("PYTHONPATH", "")])}
            with open(self.log, "ab") as log:
                self.process = subprocess.Popen([sys.executable, __file__, "--worker"], stdin=subprocess.PIPE,
                                                stdout=subprocess.PIPE, stderr=log, env=env, text=True)
        self.process.stdin.write(f"{path}\n")
        self.process.stdin.flush()
        ready, _, _ = select.select([self.process.stdout], [], [], TIME_LIMIT)
        if not ready:
            self.close()
            return "hang"
        line = self.process.stdout.readline()
        if not line:
            code = self.process.wait()
            self.process = None
            return f"crash (exit code {code})"
        return json.loads(line)

    def close(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


def _fuzz(tmp_path: Path, seeds: range) -> Counter:
    sources = _write_sources(tmp_path)
    worker = _Worker(tmp_path / "worker.log")
    failures, counts = [], Counter()
    try:
        for source in SOURCES:
            data = sources[source].read_bytes()
            for mutation in MUTATIONS:
                for seed in seeds:
                    case = tmp_path / f"{source}-{mutation}-{seed}{sources[source].suffix}"
                    case.write_bytes(mutate(data, mutation, seed))
                    outcome = worker.run(case)
                    if isinstance(outcome, str) or any(value.startswith("other") for value in outcome.values()):
                        failures.append(f"{case.name}: {outcome}")
                        continue
                    counts["cases"] += 1
                    counts.update(f"{read}={value}" for read, value in outcome.items())
                    case.unlink()
    finally:
        worker.close()
    assert not failures, f"{len(failures)} damaged file(s) broke a reader:\n" + "\n".join(failures)
    print(dict(sorted(counts.items())))
    return counts


def test_mutations_are_reproducible_and_damage(tmp_path):
    data = bytes(range(256)) * 64
    for mutation in MUTATIONS:
        assert mutate(data, mutation, 3) == mutate(data, mutation, 3)
        assert mutate(data, mutation, 3) != data
    with pytest.raises(ValueError, match="unknown"):
        mutate(data, "melt", 0)


def test_damaged_media_give_data_or_named_errors(tmp_path):
    """4 sources x 6 mutations x 4 seeds = 96 cases."""
    counts = _fuzz(tmp_path, range(4))
    assert counts["cases"] == 96
    # the damage is real: some reads fail with named errors, and some are concealed into data
    assert sum(value for key, value in counts.items() if key.startswith("window=") and key != "window=data") > 0
    assert counts["window=data"] > 0


@pytest.mark.slow
def test_more_damaged_media_give_data_or_named_errors(tmp_path):
    """384 further cases (seeds 4 to 19)."""
    assert _fuzz(tmp_path, range(4, 20))["cases"] == 384


if __name__ == "__main__" and sys.argv[1:] == ["--worker"]:
    _worker()
