"""A miniature data root for the ``paper`` profile's dress rehearsal, made from the synthetic world.

``python -m avlib.data.rehearsal OUT`` writes under ``OUT`` the layouts of ``docs/datasets.md``, a
handful of files each, so that every real-data path of the ``paper`` profile (file sources, the clip
index, UCF-101's split files, VoxCeleb's tables, the converted I3D checkpoint) runs on real files:

- ``audioset/train/*.mp4``, ``audioset/test/*.mp4``: the world's scenes, 10.1 s H.264 + AAC;
- ``ucf101/<Class>/v_<Class>_gNN_cMM.avi`` and ``ucf101/ucfTrainTestlist/``: the world's actions,
  MPEG-4 + MP3 in AVI, half of the groups without an audio track;
- ``voxceleb/speakers.csv`` (speaker, gender, split), ``voxceleb/clips.csv`` (path, speaker, split),
  ``voxceleb/<speaker>/<video>/<clip>.mp4``: the world's talking heads;
- ``i3d/rgb_imagenet.npz``: every variable of DeepMind's RGB I3D under its TF name and at its TF shape
  (kernels T x H x W x C_in x C_out, batch-norm statistics 1 x 1 x 1 x 1 x C), random values;
- ``REHEARSAL.md``: says what the folder is. :func:`is_rehearsal_root` finds it, and the notebook runner
  then marks every table and figure of the run as a rehearsal (:mod:`avlib.report.results`).

Everything is a function of the seed: a second call with the same seed finds the marker and returns at once.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from avlib.files import write_text

#: The file that marks a data root as a rehearsal's (read by the notebook runner).
MARKER = "REHEARSAL.md"
#: Bumped when the generated files change, so that an old miniature root is written again.
VERSION = 1
#: AudioSet-like clips: training and held-out.
TRAIN_SCENES, TEST_SCENES = 4, 2

#: The world's parts at the rehearsal's size (fields of avlib.data.world's configs).
WORLD = {
    "scenes": dict(num_clips=TRAIN_SCENES + TEST_SCENES, clip_seconds=10.1, size=128, container="mp4"),
    # 4 groups per class (the fewest with UCF-101's three test ranges), one clip each, half the groups silent
    "actions": dict(num_classes=3, num_groups=4, clips_per_group=1, clip_seconds=(4.5, 5.5), width=128, height=96,
                    audio_fraction=0.5),
    "speakers": dict(num_speakers=6, videos_per_speaker=1, clips_per_video=2, clip_seconds=5.0, size=128),
}


def is_rehearsal_root(data_root: str | Path) -> bool:
    """Whether ``data_root`` was written by :func:`write_root` (it holds :data:`MARKER`)."""
    return bool(data_root) and (Path(data_root) / MARKER).is_file()


def _settings(seed: int) -> dict:
    """What the root is made from, as its JSON record reads back (tuples as lists)."""
    return json.loads(json.dumps({"version": VERSION, "seed": seed, "world": WORLD, "train_scenes": TRAIN_SCENES,
                                  "test_scenes": TEST_SCENES}))


def i3d_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    """Every variable of the published RGB I3D under its kinetics-i3d TF name, at TF's shape, random values.

    Kernels are N(0, 1/fan_in), betas and moving means small, moving variances positive; batch-norm
    vectors have sonnet's 1 x 1 x 1 x 1 x C shape, the logits' bias is (400,).
    """
    from avlib.models.i3d import I3D, I3DConfig, to_tf_arrays

    rng = np.random.default_rng(seed)
    arrays = {}
    for name, template in sorted(to_tf_arrays(I3D(I3DConfig())).items()):
        shape = template.shape
        if template.ndim == 5:
            fan_in = int(np.prod(shape[:4]))
            value = rng.normal(0.0, 1.0 / np.sqrt(fan_in), size=shape)
        elif name.endswith("moving_variance"):
            value = rng.uniform(0.5, 1.5, size=(1, 1, 1, 1, shape[0]))
        elif name.endswith("conv_3d/b"):
            value = rng.normal(0.0, 0.01, size=shape)
        else:  # beta, moving_mean
            value = rng.normal(0.0, 0.1, size=(1, 1, 1, 1, shape[0]))
        arrays[name] = value.astype(np.float32)
    return arrays


def _scenes(world: Path, out: Path) -> None:
    clips = sorted((world / "clips").glob("*.mp4"))
    for index, clip in enumerate(clips):
        split = "train" if index < TRAIN_SCENES else "test"
        target = out / "audioset" / split / clip.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(clip, target)


def _actions(world: Path, out: Path) -> None:
    target = out / "ucf101"
    shutil.copytree(world / "ucfTrainTestlist", target / "ucfTrainTestlist")
    for folder in sorted(path for path in world.iterdir() if path.is_dir() and path.name != "ucfTrainTestlist"):
        videos = sorted(folder.glob("v_*.avi"))
        if videos:
            (target / folder.name).mkdir(parents=True, exist_ok=True)
            for video in videos:
                shutil.copy2(video, target / folder.name / video.name)


def _speakers(world: Path, out: Path) -> None:
    target = out / "voxceleb"
    speakers = pd.read_csv(world / "speakers.csv")
    clips = pd.read_csv(world / "clips.csv")
    target.mkdir(parents=True, exist_ok=True)
    # exactly the columns docs/datasets.md names: the readers must find genders and durations on their own
    speakers.rename(columns={"speaker_id": "speaker"})[["speaker", "gender", "split"]].to_csv(target / "speakers.csv", index=False)
    clips.rename(columns={"speaker_id": "speaker"})[["path", "speaker", "split"]].to_csv(target / "clips.csv", index=False)
    for path in clips["path"]:
        (target / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(world / path, target / path)


def write_root(out: str | Path, seed: int = 0, *, workers: int | None = None) -> Path:
    """Write the miniature data root into ``out`` (re-used when its marker has the same settings) and return it."""
    from avlib.data.world import generate, world_config

    out = Path(out)
    settings = _settings(seed)
    marker = out / MARKER
    if marker.is_file() and _read_settings(marker) == settings:
        return out
    if out.exists() and any(out.iterdir()):
        if not marker.is_file():
            raise FileExistsError(f"{out} is not empty and holds no {MARKER}: not overwriting a folder the rehearsal did not write")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="avlib-rehearsal-", dir=out.parent) as scratch:
        for part, copy in (("scenes", _scenes), ("actions", _actions), ("speakers", _speakers)):
            config = world_config(part, "synth", seed, **WORLD[part])
            copy(generate(part, Path(scratch) / part, config, workers=workers), out)
    (out / "i3d").mkdir()
    np.savez(out / "i3d" / "rgb_imagenet.npz", **i3d_arrays(seed))
    write_text(marker, _marker_text(settings))
    return out


def _marker_text(settings: dict) -> str:
    return ("# A dress-rehearsal data root, not real data\n\n"
            "Written by `python -m avlib.data.rehearsal` from the synthetic world, in the layouts of docs/datasets.md.\n"
            "Results of the `paper` profile on it only show that the paper's code path runs; the notebook runner\n"
            "marks their tables and figures as a rehearsal.\n\n"
            f"```json\n{json.dumps(settings, sort_keys=True)}\n```\n")


def _read_settings(marker: Path) -> dict | None:
    text = marker.read_text()
    try:
        return json.loads(text.split("```json\n", 1)[1].split("\n```", 1)[0])
    except (IndexError, ValueError):
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m avlib.data.rehearsal", description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the data root to write (made if missing)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=None, help="processes writing the world (default: the world's)")
    args = parser.parse_args(argv)
    try:
        root = write_root(args.out, args.seed, workers=args.workers)
    except FileExistsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
