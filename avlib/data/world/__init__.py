"""The synthetic audio-visual world: a generated benchmark in which every experiment of the paper
can really happen, written as real video files so that the readers of real data serve it too.

Three parts mirror the paper's datasets:

- ``scenes`` (AudioSet, for the shift task and CAM): objects that bounce, slide, shake or orbit
  over textured, panning backgrounds; sounding objects and silent distractors; impacts whose
  onsets fall on the frame of the visible impact; off-screen sound and noise. See
  :mod:`avlib.data.world.scenes`.
- ``actions`` (UCF-101, for transfer): classes of motion x sound in UCF-101's exact layout and
  split files, some pairs of classes told apart only by sound, half the clips without audio.
  See :mod:`avlib.data.world.actions`.
- ``speakers`` (VoxCeleb, for separation): drawn talking heads whose mouths open with their
  own synthetic speech, male and female voices, speaker-disjoint splits. See
  :mod:`avlib.data.world.speakers`.
- ``talkers`` (AudioSet's speech, for pretraining): talking heads written as scenes clips are,
  each a person of its own, never a speaker of ``speakers``; pretraining mixes a share of them
  among the scenes (:class:`avlib.config.PretrainConfig`). See :class:`TalkersConfig`.

Everything is a function of (seed, config): each clip draws from its own random stream, so
the number of worker processes does not change a byte. A built part is cached: its folder's
``manifest.json`` holds a hash of the config and the generator version, and a second call with
the same ones returns at once.

>>> roots = generate_world("smoke", seed=0)          # doctest: +SKIP
>>> roots["scenes"] / "scenes.csv"                   # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ._common import GENERATOR_VERSION, build_cached, config_key, default_workers, read_manifest, replace_fields
from .actions import ActionsConfig, build_actions, load_actions, sound_only_pairs
from .scenes import ScenesConfig, SceneTruth, build_scenes, load_scenes, load_truth
from .speakers import SpeakersConfig, TalkersConfig, build_speakers, build_talkers, load_speakers, load_talkers

PARTS = ("scenes", "actions", "speakers", "talkers")
CONFIG_TYPES = {"scenes": ScenesConfig, "actions": ActionsConfig, "speakers": SpeakersConfig, "talkers": TalkersConfig}
BUILDERS = {"scenes": build_scenes, "actions": build_actions, "speakers": build_speakers, "talkers": build_talkers}

#: Sizes of each profile; every field of the part's config can be overridden.
PROFILES: dict[str, dict[str, dict[str, Any]]] = {
    # tiny: proves the code runs, in seconds
    "smoke": {
        "scenes": dict(num_clips=6, size=64),
        "actions": dict(num_classes=6, num_groups=4, clips_per_group=1, width=64, height=48, clip_seconds=(4.3, 5.0)),
        "speakers": dict(num_speakers=6, videos_per_speaker=1, clips_per_video=2, size=64),
        "talkers": dict(num_clips=2, size=64),
    },
    # the default (the configs' own defaults): large enough that the effects can be measured, < 10 min on 2 cores
    "synth": {
        "scenes": dict(),
        "actions": dict(),
        "speakers": dict(),
        "talkers": dict(),
    },
}


def world_config(part: str, profile: str = "synth", seed: int = 0, **overrides: Any):
    """The config of one part at a profile's size, with ``seed`` and any field overridden."""
    if part not in CONFIG_TYPES:
        raise ValueError(f"unknown part {part!r}; use one of {PARTS}")
    if profile not in PROFILES:
        raise ValueError(f"no synthetic world for profile {profile!r} (a profile of real datasets has none); "
                         f"worlds: {sorted(PROFILES)}")
    return replace_fields(CONFIG_TYPES[part](), {**PROFILES[profile][part], "seed": seed, **overrides})


def generate(part: str, root: str | os.PathLike, config=None, *, workers: int | None = None, progress: bool = False) -> Path:
    """Build one part of the world into ``root`` (or re-use it when it is already there) and
    return ``root``. ``config`` defaults to the ``synth`` profile's with seed 0.

    Files: ``scenes``: ``scenes.csv``, ``objects.csv``, ``events.csv``, ``clips/*.mp4``,
    ``truth/*.npz``; ``actions``: ``<Class>/v_<Class>_gNN_cMM.avi``, ``ucfTrainTestlist/``,
    ``actions.csv``, ``classes.csv``; ``speakers``: ``speakers.csv``, ``clips.csv``,
    ``<speaker>/<video>/<nnnnn>.mp4``, ``truth/*.npz``; ``talkers``: ``talkers.csv``, ``clips/*.mp4``,
    ``truth/*.npz``. Every part has ``manifest.json``.
    """
    if part not in BUILDERS:
        raise ValueError(f"unknown part {part!r}; use one of {PARTS}")
    config = config if config is not None else world_config(part)
    if not isinstance(config, CONFIG_TYPES[part]):
        raise TypeError(f"part {part!r} needs a {CONFIG_TYPES[part].__name__}, got {type(config).__name__}")
    workers = default_workers() if workers is None else workers
    return build_cached(Path(root), part, config, lambda staging: BUILDERS[part](config, staging, workers, progress))


def default_world_root(profile: str, seed: int) -> Path:
    """Where worlds are cached by default: ``$AVLIB_DATA/world/<profile>-seed<seed>``, with
    ``AVLIB_DATA`` defaulting to the checkout's ignored ``data/`` folder."""
    data = Path(os.environ.get("AVLIB_DATA", Path(__file__).resolve().parents[3] / "data"))
    return data / "world" / f"{profile}-seed{seed}"


def generate_world(
    profile: str = "synth",
    root: str | os.PathLike | None = None,
    seed: int = 0,
    *,
    parts: tuple[str, ...] = PARTS,
    workers: int | None = None,
    progress: bool = True,
    **overrides: dict[str, Any],
) -> dict[str, Path]:
    """Build (or re-use) the world of a profile: ``{part: root / part}``.

    ``overrides`` are per part, e.g. ``scenes=dict(num_clips=50)``. ``root`` defaults to
    :func:`default_world_root`.
    """
    unknown = sorted(set(overrides) - set(PARTS))
    if unknown:
        raise TypeError(f"generate_world: unknown keyword(s) {unknown}; per-part overrides are {PARTS}")
    root = Path(root) if root is not None else default_world_root(profile, seed)
    return {
        part: generate(part, root / part, world_config(part, profile, seed, **overrides.get(part, {})), workers=workers, progress=progress)
        for part in parts
    }


__all__ = [
    "ActionsConfig",
    "GENERATOR_VERSION",
    "PARTS",
    "PROFILES",
    "SceneTruth",
    "ScenesConfig",
    "SpeakersConfig",
    "TalkersConfig",
    "config_key",
    "default_world_root",
    "generate",
    "generate_world",
    "load_actions",
    "load_scenes",
    "load_speakers",
    "load_talkers",
    "load_truth",
    "read_manifest",
    "sound_only_pairs",
    "world_config",
]
