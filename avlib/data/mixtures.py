"""On/off-screen mixtures for source separation (docs/paper.md §7.1): clip i's video and sound plus clip j's sound.

The official ``mix_sounds`` RMS-normalises each source **per channel** to 0.1 (epsilon 1e-4) and adds them,
without random gain (``augment_rms = False``). With ``both_videos_in_batch`` every clip of a batch serves
once as on-screen and once as off-screen: the batch holds B/2 pairs, each in both orders. The audio-only
PIT baseline uses one order (its output order is arbitrary anyway).

Training pairs are drawn on the fly, as a function of the step (exact resume, :class:`MixtureBatches`).
Evaluation uses a **fixed test list** (:func:`make_test_list`): pairs of clips of two different test
speakers, with their genders and window starts, written to a CSV so that every evaluation, ours and the
ablations', scores the same mixtures (:func:`write_test_list`, :func:`read_test_list`).

Shapes: frames (T, H, W, 3) uint8, audio (2, N) float32; batches add a leading B.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from avlib import io
from avlib.data.clips import ClipFormat, StepBatches, collate, crop_and_flip
from avlib.data.shift import DecodedClips, FileClips, ShiftConfig

#: RMS of each source, per channel, before mixing (``normalize_rms``'s desired_rms).
SOURCE_RMS = 0.1
RMS_EPS = 1e-4
TEST_LIST_COLUMNS = (
    "pair", "on_path", "on_speaker", "on_gender", "on_start", "off_path", "off_speaker", "off_gender", "off_start",
    "same_gender",
)


@dataclass(frozen=True)
class MixtureConfig(ClipFormat):
    """What one mixture example holds: ``num_frames`` frames at ``fps``, squashed to ``size`` and cropped to
    ``crop``, and the samples spanning them at ``sample_rate`` (the fields of
    :class:`~avlib.data.clips.ClipFormat`; training crops at random and flips, as the shift task). Paper: 63
    frames (2.135 s) at 29.97 fps, 256 -> 224, 44 144 samples at 21 kHz."""

    num_frames: int = 63
    rms: float = SOURCE_RMS

    @property
    def num_samples(self) -> int:
        return io.num_samples_for(self.num_frames, self.fps, self.sample_rate)

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps

    def decoding(self) -> ShiftConfig:
        """The decoding settings of :class:`avlib.data.shift.DecodedClips` for clips of this config."""
        return ShiftConfig(window=(self.num_frames + 0.5) / self.fps, fps=self.fps, sample_rate=self.sample_rate,
                           size=self.size, crop=self.crop, flip=self.flip)


def normalize_rms(audio: np.ndarray | torch.Tensor, rms: float = SOURCE_RMS, eps: float = RMS_EPS):
    """Each channel scaled to RMS ``rms`` (its RMS floored at ``eps``), as ``tfutil.normalize_rms``.

    (..., C, N) -> same shape and type.
    """
    if isinstance(audio, torch.Tensor):
        current = audio.pow(2).mean(dim=-1, keepdim=True).sqrt().clamp_min(eps)
    else:
        current = np.maximum(np.sqrt(np.mean(np.square(audio, dtype=np.float64), axis=-1, keepdims=True)), eps)
        return (audio * (rms / current)).astype(audio.dtype)
    return audio * (rms / current)


def load_speaker_table(root: str | os.PathLike) -> pd.DataFrame:
    """``clips.csv`` of a speakers folder with path, speaker_id, gender, split and duration per clip.

    Reads the synthetic world's tables (:func:`avlib.data.world.load_speakers`) and real data laid out as
    ``docs/datasets.md`` says (``speaker`` columns, genders in ``speakers.csv``; durations are probed when
    missing). A missing table or column raises naming the file.
    """
    root = Path(root)
    clips_path, speakers_path = root / "clips.csv", root / "speakers.csv"
    for path in (clips_path, speakers_path):
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist; a speakers folder holds clips.csv and speakers.csv")
    clips = pd.read_csv(clips_path).rename(columns={"speaker": "speaker_id"})
    speakers = pd.read_csv(speakers_path).rename(columns={"speaker": "speaker_id"})
    for table, path, needed in ((clips, clips_path, ("path", "speaker_id", "split")), (speakers, speakers_path, ("speaker_id", "gender"))):
        missing = [column for column in needed if column not in table.columns]
        if missing:
            raise ValueError(f"{path} lacks the columns {missing}")
    if "gender" not in clips.columns:
        clips = clips.merge(speakers[["speaker_id", "gender"]], on="speaker_id", how="left")
        unknown = clips["speaker_id"][clips["gender"].isna()].unique().tolist()
        if unknown:
            raise ValueError(f"{speakers_path} has no gender for the speakers {unknown[:5]}")
    if "duration" not in clips.columns:
        clips["duration"] = [io.probe(root / path).usable_duration for path in clips["path"]]
    return clips


class SpeakerClips:
    """The clips of one split of the speakers table, decoded once at the mixtures' rates (``in_memory``), or
    read window by window from their files.

    ``clips`` is ``clips.csv`` (:func:`avlib.data.world.load_speakers`, or the same columns for real data:
    path, speaker_id, gender, split); paths are relative to ``root``.
    """

    def __init__(self, root: str | os.PathLike, clips: pd.DataFrame, config: MixtureConfig, split: str | None = None,
                 cache_dir: str | os.PathLike | None = None, progress: bool = False, in_memory: bool = True):
        missing = sorted({"path", "speaker_id", "gender", "split"} - set(clips.columns))
        if missing:
            raise ValueError(f"the clip table of {root} lacks the columns {missing}")
        table = clips if split is None else clips[clips["split"] == split]
        if table.empty:
            raise ValueError(f"no clips of split {split!r} in the clip table of {root}")
        self.root = Path(root)
        self.table = table.reset_index(drop=True)
        self.config = config
        paths = [self.root / path for path in self.table["path"]]
        if in_memory:
            self.clips = DecodedClips(paths, config.decoding(), cache_dir=cache_dir, progress=progress)
        else:  # real datasets: each window is read from its file (slow without DataLoader workers)
            self.clips = FileClips([io.probe(path) for path in paths], config.decoding())
        self.index = {path: i for i, path in enumerate(self.table["path"])}
        self.speakers = self.table["speaker_id"].to_numpy()

    def __len__(self) -> int:
        return len(self.table)

    def window(self, clip: int, first_frame: int) -> tuple[np.ndarray, np.ndarray]:
        """Frames (T, size, size, 3) and audio (2, N) of the window from ``first_frame``."""
        return self.clips.window(clip, first_frame, self.config.num_frames)

    def last_start(self, clip: int) -> int:
        latest = self.clips.num_frames(clip) - self.config.num_frames
        if latest < 0:
            raise io.WindowError(self.table["path"][clip], f"has {self.clips.num_frames(clip)} frames, fewer than "
                                                         f"the {self.config.num_frames}-frame window")
        return latest

    def start_frame(self, clip: int, seconds: float) -> int:
        """The window's first frame for a start in seconds (test lists are in seconds, any frame rate)."""
        return min(int(round(seconds * self.config.fps)), self.last_start(clip))


def mixture_example(clips: SpeakerClips, on_clip: int, on_start: int, off_clip: int, off_start: int,
                    rng: np.random.Generator | None = None) -> dict[str, np.ndarray]:
    """One example: the on-screen clip's frames, both sources RMS-normalised, and their sum."""
    frames, on_screen = clips.window(on_clip, on_start)
    _, off_screen = clips.window(off_clip, off_start)
    on_screen = normalize_rms(on_screen, clips.config.rms)
    off_screen = normalize_rms(off_screen, clips.config.rms)
    return {"frames": crop_and_flip(frames, clips.config, rng), "on_screen": on_screen,
            "off_screen": off_screen, "mixture": on_screen + off_screen}


class MixtureBatches(StepBatches):
    """Training mixtures as a function of the step: ``batches(step, rank, world_size)``.

    Each step draws ``batch_size // 2`` pairs of clips of two different speakers (``both_orders``, the
    paper's ``both_videos_in_batch``: each pair appears with either clip on screen) or ``batch_size`` pairs
    in one order (the PIT baseline), each clip from a uniformly random window. A batch holds ``frames``
    (B, T, C, C, 3) uint8 and ``on_screen`` / ``off_screen`` / ``mixture`` (B, 2, N) float32.
    """

    def __init__(self, clips: SpeakerClips, batch_size: int, seed: int = 0, both_orders: bool = True):
        if both_orders and batch_size % 2:
            raise ValueError(f"both_orders needs an even batch size, got {batch_size}")
        if len(set(clips.speakers)) < 2:
            raise ValueError("mixtures need clips of at least two speakers")
        self.clips, self.batch_size, self.seed, self.both_orders = clips, batch_size, seed, both_orders

    def make(self, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        clips = self.clips
        examples = []
        for _ in range(self.batch_size // 2 if self.both_orders else self.batch_size):
            first = int(rng.integers(len(clips)))
            others = np.flatnonzero(clips.speakers != clips.speakers[first])
            second = int(rng.choice(others))
            starts = [int(rng.integers(clips.last_start(c) + 1)) for c in (first, second)]
            examples.append(mixture_example(clips, first, starts[0], second, starts[1], rng))
            if self.both_orders:
                examples.append(mixture_example(clips, second, starts[1], first, starts[0], rng))
        return collate(examples)


def make_test_list(clips: pd.DataFrame, num_pairs: int, window: float, seed: int = 0, split: str = "test",
                   same_gender_share: float = 0.5) -> pd.DataFrame:
    """A fixed list of test mixtures over ``split``: on-screen clip, off-screen clip of another speaker.

    On-screen clips take turns (round robin over a shuffled order); each pair's off-screen speaker is of the
    same gender for a ``same_gender_share`` of the pairs where the split allows it, so both kinds are well
    represented (the ablations score them apart). Window starts are in seconds, uniform over each clip
    (``duration`` column) less ``window`` seconds, rounded to milliseconds.

    Returns the columns of :data:`TEST_LIST_COLUMNS`; ``same_gender`` is a bool.
    """
    table = clips[clips["split"] == split].reset_index(drop=True)
    if table["speaker_id"].nunique() < 2:
        raise ValueError(f"the {split!r} split has {table['speaker_id'].nunique()} speaker(s); mixtures need two")
    rng = np.random.default_rng([seed, 7])
    order = rng.permutation(len(table))
    same_possible = any(
        (table["gender"] == table["gender"][i]).sum() > (table["speaker_id"] == table["speaker_id"][i]).sum()
        for i in range(len(table))
    )
    wanted_same = int(round(num_pairs * same_gender_share)) if same_possible else 0
    kinds = rng.permutation([True] * wanted_same + [False] * (num_pairs - wanted_same))
    rows = []
    for pair, same in enumerate(kinds):
        on = int(order[pair % len(order)])
        other_speaker = table["speaker_id"] != table["speaker_id"][on]
        same_kind = table["gender"] == table["gender"][on]
        candidates = np.flatnonzero(other_speaker & (same_kind if same else ~same_kind))
        if len(candidates) == 0:  # this clip's gender has a single speaker in the split
            candidates = np.flatnonzero(other_speaker)
        off = int(rng.choice(candidates))
        starts = [round(float(rng.uniform(0.0, max(table["duration"][c] - window, 0.0))), 3) for c in (on, off)]
        rows.append(dict(
            pair=pair, on_path=table["path"][on], on_speaker=table["speaker_id"][on], on_gender=table["gender"][on],
            on_start=starts[0], off_path=table["path"][off], off_speaker=table["speaker_id"][off],
            off_gender=table["gender"][off], off_start=starts[1],
            same_gender=bool(table["gender"][on] == table["gender"][off]),
        ))
    return pd.DataFrame(rows, columns=list(TEST_LIST_COLUMNS))


def write_test_list(test_list: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write the test list as CSV (atomically)."""
    from avlib.files import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        test_list.to_csv(tmp, index=False)
    return path


def read_test_list(path: str | os.PathLike) -> pd.DataFrame:
    """Read a test list written by :func:`write_test_list`; a missing or malformed file raises naming it."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"test list {path} does not exist; make one with make_test_list")
    try:
        table = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise ValueError(f"test list {path} is not a readable CSV: {error}") from error
    missing = [column for column in TEST_LIST_COLUMNS if column not in table.columns]
    if missing:
        raise ValueError(f"test list {path} lacks the columns {missing}")
    if (table["on_speaker"] == table["off_speaker"]).any():
        raise ValueError(f"test list {path} mixes a speaker with themself (pairs "
                         f"{table['pair'][table['on_speaker'] == table['off_speaker']].tolist()})")
    table["same_gender"] = table["same_gender"].astype(str).str.lower().map({"true": True, "false": False})
    if table["same_gender"].isna().any():
        raise ValueError(f"test list {path} has same_gender values other than True / False")
    return table


def load_test_mixtures(test_list: pd.DataFrame, clips: SpeakerClips) -> dict[str, torch.Tensor]:
    """Every pair of a test list as one batch (centre crops), in the list's order."""
    missing = sorted(set(test_list["on_path"]).union(test_list["off_path"]) - set(clips.index))
    if missing:
        raise ValueError(f"the test list names clips that are not among the decoded clips of {clips.root}: {missing[:5]}")
    examples = []
    for row in test_list.itertuples():
        on, off = clips.index[row.on_path], clips.index[row.off_path]
        examples.append(mixture_example(clips, on, clips.start_frame(on, row.on_start), off,
                                        clips.start_frame(off, row.off_start)))
    return collate(examples)
