"""The one place that chooses synthetic or real data: the train and held-out sources of each dataset kind.

``synthetic=True`` reads the generated world of ``world`` (a profile name of :mod:`avlib.data.world`,
generated on first use) and decodes its clips once into memory, cached on disk beside the world.
``synthetic=False`` reads the real datasets under ``data_root`` in the layout of ``docs/datasets.md``
(AudioSet clips, UCF-101 as distributed, VoxCeleb) through file sources that decode each window when
it is asked for, so that :func:`avlib.train.fit`'s DataLoader workers can decode ahead.

- :func:`scene_files` / :func:`scene_sources`: AudioSet-like clips for pretraining and CAM (docs/paper.md §3, §5),
  with the world's talking heads among the synthetic training clips (``talking_heads``)
- :func:`action_sources`: UCF-101 or the world's actions, one split (docs/paper.md §6)
- :func:`speaker_sources`: VoxCeleb or the world's speakers (docs/paper.md §7)

Callers pass ``synthetic`` and names; this module never reads a profile.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from avlib import io
from avlib.data.mixtures import MixtureConfig, SpeakerClips, load_speaker_table
from avlib.data.shift import ClipSource, DecodedClips, FileClips, ShiftConfig
from avlib.data.ucf101 import ActionClipFormat, DecodedVideos, FileVideos, UCF101Split, VideoSource, dataset_root, load_split

#: Folders of the real datasets under ``data_root`` (docs/datasets.md).
AUDIOSET_FOLDER = "audioset"
VOXCELEB_FOLDER = "voxceleb"


def _world_part(world: str, seed: int, part: str) -> Path:
    """The root of one part of the generated world (built on first use)."""
    from avlib.data.world import generate_world

    return generate_world(world, seed=seed, parts=(part,), progress=False)[part]


def _need_data_root(data_root: str | os.PathLike, what: str) -> Path:
    if not data_root:
        raise ValueError(f"real data: {what} are read under a data root; pass --data-root (see docs/datasets.md)")
    return Path(data_root)


@dataclass(frozen=True)
class SceneFiles:
    """The scene clips of pretraining and CAM, split into training and held-out clips.

    ``root`` is the world's scenes folder (ground truth in ``root/truth``) when synthetic, else None;
    ``probed`` holds the probe of each real clip (by path string), which file sources need.
    Synthetic pretraining may mix talking heads among the training clips (``talkers``, also in
    ``train``); the world's other talking heads are ``talkers_held_out``, never trained on.
    ``held_out`` holds scenes only (CAM reads their ground truth). A pretraining stage with a smaller share
    trains on the first of ``talkers`` (:meth:`with_talking_heads`).
    """

    synthetic: bool
    train: list[Path]
    held_out: list[Path]
    root: Path | None = None
    probed: dict[str, io.VideoInfo] = field(default_factory=dict)
    talkers: list[Path] = field(default_factory=list)
    talkers_held_out: list[Path] = field(default_factory=list)

    @property
    def cache_dir(self) -> Path | None:
        """Where decoded synthetic clips are cached (beside the world)."""
        return self.root.parent / "decoded" if self.root is not None else None

    def sources(self, shift: ShiftConfig) -> tuple[ClipSource, ClipSource]:
        """(training, held-out) clip sources at ``shift``'s rates and frame size: decoded into memory when
        synthetic, read from the files window by window when real."""
        if self.synthetic:
            return (DecodedClips(self.train, shift, cache_dir=self.cache_dir, progress=True),
                    DecodedClips(self.held_out, shift, cache_dir=self.cache_dir, progress=True))
        return (FileClips([self.probed[str(path)] for path in self.train], shift),
                FileClips([self.probed[str(path)] for path in self.held_out], shift))

    def with_talking_heads(self, share: float) -> SceneFiles:
        """These clips with ``share`` of the training clips talking heads: the first of ``talkers``, the rest
        left out of training (``talkers_held_out`` stays as it is: never trained on at the largest share)."""
        scenes = self.train[: len(self.train) - len(self.talkers)]
        count = talker_count(len(scenes), share)
        if count > len(self.talkers):
            where = self.talkers[0].parent.parent if self.talkers else self.root or "real clips (no talking heads)"
            raise ValueError(f"{where}: a share of {share} talking heads beside {len(scenes)} scenes needs {count} talking-head "
                             f"clips, but these clips were chosen for at most {len(self.talkers)}; pass the largest share of "
                             "any stage to scene_files")
        return replace(self, train=scenes + self.talkers[:count], talkers=self.talkers[:count])

    def talkers_held_out_source(self, shift: ShiftConfig) -> ClipSource | None:
        """The held-out talking heads at ``shift``'s rates (None when there are none)."""
        if not self.talkers_held_out:
            return None
        return DecodedClips(self.talkers_held_out, shift, cache_dir=self.cache_dir, progress=True)

    def counts(self) -> pd.DataFrame:
        """Clips by kind (scenes, talking heads) and use (training, held out): notebook 00's table."""
        scenes = len(self.train) - len(self.talkers)
        rows = [("scenes", "training", scenes), ("talking heads", "training", len(self.talkers)),
                ("scenes", "held out", len(self.held_out)), ("talking heads", "held out", len(self.talkers_held_out))]
        table = pd.DataFrame(rows, columns=["kind", "use", "clips"])
        training = max(len(self.train), 1)
        table["share of training clips %"] = [100 * count / training if use == "training" else None for _, use, count in rows]
        return table

    def truth(self, clip: Path) -> Path | None:
        """The ground-truth file of a synthetic clip (sounding objects per frame); None for real clips."""
        return self.root / "truth" / f"{Path(clip).stem}.npz" if self.root is not None else None


def talker_count(scene_clips: int, share: float) -> int:
    """Talking-head clips that make up ``share`` of the training clips beside ``scene_clips`` scenes."""
    if not 0 <= share < 1:
        raise ValueError(f"the share of talking heads must be in [0, 1), got {share}")
    return round(share * scene_clips / (1 - share))


def scene_files(synthetic: bool, world: str, seed: int = 0, data_root: str | os.PathLike = "",
                held_out_share: float = 0.0, talking_heads: float = 0.0) -> SceneFiles:
    """The scene clips of pretraining and CAM.

    Synthetic: the world's scenes (sorted), the last ``held_out_share`` of them (at least one) held out,
    and, when ``talking_heads`` > 0, the first of the world's talking heads (``talkers`` part) among the
    training clips so that they make up that share of them; the other talking heads are held out. Pretraining
    passes the largest share of any stage and picks each stage's with :meth:`SceneFiles.with_talking_heads`.
    Real: the AudioSet clips with audio under ``data_root/audioset/train/`` and ``.../test/`` (held out);
    unreadable files are skipped and logged by the index.
    """
    from avlib.data.index import build_index

    if synthetic:
        root = _world_part(world, seed, "scenes")
        clips = sorted((root / "clips").glob("*.mp4"))
        held = max(1, round(len(clips) * held_out_share))
        train, talkers, talkers_held_out = clips[:-held], [], []
        count = talker_count(len(train), talking_heads)
        if talking_heads > 0:
            talking = _world_part(world, seed, "talkers")
            every = sorted((talking / "clips").glob("*.mp4"))
            if count + 1 > len(every):
                raise ValueError(f"{talking}: {len(every)} talking-head clips, but a share of {talking_heads} beside "
                                 f"{len(train)} scenes needs {count} for training and one held out; raise the world's "
                                 "talkers num_clips or lower pretrain.talking_heads")
            talkers, talkers_held_out = every[:count], every[count:]
        return SceneFiles(True, train + talkers, clips[-held:], root=root, talkers=talkers, talkers_held_out=talkers_held_out)
    if talking_heads > 0:
        raise ValueError(f"talking_heads={talking_heads}: talking heads are mixed into the synthetic world's pretraining only; "
                         "AudioSet's clips carry their own speech (set pretrain.talking_heads=0 for real data)")
    audioset = _need_data_root(data_root, "AudioSet clips") / AUDIOSET_FOLDER
    train = build_index(audioset / "train", skip_bad=True).with_audio()
    held_out = build_index(audioset / "test", skip_bad=True).with_audio()
    probed = {str(Path(video.path)): video for video in train + held_out}
    return SceneFiles(False, [Path(video.path) for video in train], [Path(video.path) for video in held_out],
                      probed=probed)


def scene_sources(synthetic: bool, world: str, seed: int, data_root: str | os.PathLike, shift: ShiftConfig,
                  held_out_share: float = 0.0, talking_heads: float = 0.0) -> tuple[ClipSource, ClipSource]:
    """(training, held-out) scene clip sources at ``shift``'s rates (:func:`scene_files`, :meth:`SceneFiles.sources`)."""
    return scene_files(synthetic, world, seed, data_root, held_out_share, talking_heads).sources(shift)


@dataclass
class ActionData:
    """One split of UCF-101 (or of the world's actions): the probed split and its clip sources."""

    root: Path
    split: UCF101Split
    train: VideoSource
    test: VideoSource
    sound_only_pairs: list[tuple[str, str]]  # classes that differ only in sound (synthetic world only)


def action_sources(synthetic: bool, world: str, seed: int, data_root: str | os.PathLike, clip_format: ActionClipFormat,
                   split: int = 1, in_memory: bool | None = None) -> ActionData:
    """The train and test videos of ``split`` as clip sources of ``clip_format``.

    Synthetic: the world's ``actions`` part (UCF-101's layout). Real: UCF-101 under ``data_root/ucf101``,
    listed videos that cannot be read skipped and counted (``split.bad``). ``in_memory`` (default:
    ``synthetic``) decodes every video once, cached beside the world (or the dataset); otherwise clips are
    read from the files.
    """
    from avlib.data.world import load_actions

    if synthetic:
        root = _world_part(world, seed, "actions")
        pairs = load_actions(root).attrs["sound_only_pairs"]
    else:
        root, pairs = dataset_root(_need_data_root(data_root, "UCF-101 videos")), []
    videos = load_split(root, split, skip_bad=not synthetic)
    if synthetic if in_memory is None else in_memory:
        cache = Path(root).parent / "decoded-ucf101"
        train = DecodedVideos(videos.train, clip_format, cache_dir=cache, progress=True)
        test = DecodedVideos(videos.test, clip_format, cache_dir=cache, progress=True)
    else:
        train, test = FileVideos(videos.train, clip_format), FileVideos(videos.test, clip_format)
    return ActionData(Path(root), videos, train, test, pairs)


@dataclass
class SpeakerData:
    """The speakers' clip table and the training and test clips of the mixtures."""

    root: Path
    table: pd.DataFrame
    train: SpeakerClips
    test: SpeakerClips


def speaker_sources(synthetic: bool, world: str, seed: int, data_root: str | os.PathLike,
                    mixture: MixtureConfig) -> SpeakerData:
    """The speakers' clips at ``mixture``'s rates, split by speaker into train and test.

    Synthetic: the world's ``speakers`` part, decoded once and cached beside it. Real: VoxCeleb under
    ``data_root/voxceleb/`` (``clips.csv``, ``speakers.csv``; docs/datasets.md), read window by window.
    """
    if synthetic:
        root = _world_part(world, seed, "speakers")
        cache = root.parent / "decoded-speakers"
    else:
        root, cache = _need_data_root(data_root, "VoxCeleb clips") / VOXCELEB_FOLDER, None
    table = load_speaker_table(root)
    train = SpeakerClips(root, table, mixture, "train", cache_dir=cache, in_memory=synthetic)
    test = SpeakerClips(root, table, mixture, "test", cache_dir=cache, in_memory=synthetic)
    return SpeakerData(root, table, train, test)
