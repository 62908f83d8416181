"""The shared clip layer (format, crop and flip, collate, step-seeded batches), the one place that
chooses synthetic or real sources, on a data root written at test time in the layout of
docs/datasets.md, and fit's DataLoader path: worker processes give the same weights, and resume exactly."""

from __future__ import annotations

import multiprocessing
import pickle
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from media import make_video  # noqa: E402

from avlib import io  # noqa: E402
from avlib.data.clips import ClipFormat, StepBatches, collate, crop_and_flip  # noqa: E402
from avlib.data.mixtures import MixtureConfig  # noqa: E402
from avlib.data.shift import FileClips, ShiftBatches, ShiftConfig  # noqa: E402
from avlib.data.sources import action_sources, scene_files, scene_sources, speaker_sources, talker_count  # noqa: E402
from avlib.data.ucf101 import ActionClipFormat, DecodedVideos, FileVideos  # noqa: E402
from avlib.train import TrainConfig, fit  # noqa: E402

SHIFT = ShiftConfig(window=1.0, fps=10.0, sample_rate=8000, min_shift=0.4, max_shift=0.9, size=40, crop=32)
ACTIONS = ActionClipFormat(window=1.0, fps=10.0, sample_rate=8000, size=40, crop=32)
MIXTURE = MixtureConfig(num_frames=8, fps=10.0, sample_rate=8000, size=40, crop=32)


# ------------------------------------------------------------------------------------ clip layer


def test_task_formats_share_the_clip_fields_and_keep_their_keywords():
    assert all(isinstance(fmt, ClipFormat) for fmt in (SHIFT, ACTIONS, MIXTURE))
    assert (SHIFT.fps, SHIFT.size, SHIFT.crop, SHIFT.flip, SHIFT.num_frames) == (10.0, 40, 32, True, 10)
    assert ShiftConfig().fps == ClipFormat().fps == io.PAPER_FPS and ShiftConfig().window == 4.2
    assert MixtureConfig().num_frames == 63 and MixtureConfig().crop == 224
    with pytest.raises(TypeError, match="fps"):
        ActionClipFormat(window=1.0, sample_rate=8000, size=40, crop=32)  # pretraining's rates must be given


@pytest.mark.parametrize("kind", ["plain", "read-only", "mirrored"])  # torch's copy, then numpy's for what torch refuses
@pytest.mark.parametrize("seed", [5, 6])
@pytest.mark.parametrize("flip", [True, False])
def test_crop_and_flip_draws_top_left_then_flip(flip, seed, kind):
    frames = np.random.default_rng(0).integers(0, 255, (3, 40, 50, 3), dtype=np.uint8)
    if kind == "read-only":
        frames.flags.writeable = False
    elif kind == "mirrored":
        frames = frames[:, :, ::-1]
    fmt = ClipFormat(size=40, crop=32, flip=flip)
    flips = []
    for into in (None, np.full((3, 32, 32, 3), 7, np.uint8)):
        rng, replay = np.random.default_rng(seed), np.random.default_rng(seed)
        out = crop_and_flip(frames, fmt, rng, into)
        top, left = int(replay.integers(9)), int(replay.integers(19))
        expected = frames[:, top : top + 32, left : left + 32]
        flips.append(flip and replay.random() < 0.5)
        if flips[-1]:
            expected = expected[:, :, ::-1]
        assert np.array_equal(out, expected) and out.flags.c_contiguous
        assert into is None or out is into
        assert rng.random() == replay.random()  # no draw more or fewer than that
    assert flips[0] == (flip and seed == 6)  # seed 6 draws a flip, seed 5 does not: both paths run
    centre = crop_and_flip(frames, fmt, None)
    assert np.array_equal(centre, frames[:, 4:36, 9:41])


def test_crop_and_flip_refuses_an_out_of_another_shape():
    frames = np.zeros((3, 40, 40, 3), np.uint8)
    with pytest.raises(ValueError, match=r"out of shape \(3, 32, 32, 3\), got uint8 \(3, 32, 31, 3\)"):
        crop_and_flip(frames, ClipFormat(size=40, crop=32), None, np.zeros((3, 32, 31, 3), np.uint8))
    with pytest.raises(ValueError, match="not C-contiguous"):
        crop_and_flip(frames, ClipFormat(size=40, crop=32), None, np.zeros((3, 32, 64, 3), np.uint8)[:, :, ::2])


def test_crop_and_flip_flips_about_half_the_clips():
    frames = np.tile(np.arange(32, dtype=np.uint8)[None, None, :, None], (1, 32, 1, 3))
    rng = np.random.default_rng(1)
    flipped = [crop_and_flip(frames, ClipFormat(size=32, crop=32), rng)[0, 0, 0, 0] == 31 for _ in range(400)]
    assert 0.4 < np.mean(flipped) < 0.6


@dataclass
class _Example:
    frames: np.ndarray
    shift: float


def test_collate_stacks_arrays_and_types_scalars():
    batch = collate([{"frames": np.zeros((2, 4, 4, 3), np.uint8), "audio": np.ones((2, 5)), "has_audio": True, "label": 3},
                     {"frames": np.ones((2, 4, 4, 3), np.uint8), "audio": np.zeros((2, 5)), "has_audio": False, "label": 1}])
    assert batch["frames"].dtype == torch.uint8 and batch["frames"].shape == (2, 2, 4, 4, 3)
    assert batch["audio"].dtype == torch.float32  # float64 arrays become float32
    assert batch["has_audio"].tolist() == [True, False] and batch["label"].dtype == torch.long
    from_dataclasses = collate([_Example(np.zeros((1, 2, 2, 3), np.uint8), -0.5), _Example(np.zeros((1, 2, 2, 3), np.uint8), 1.0)])
    assert from_dataclasses["shift"].dtype == torch.float32 and from_dataclasses["shift"].tolist() == [-0.5, 1.0]
    with pytest.raises(TypeError, match="str"):
        collate([{"name": "a"}])


def test_collate_takes_stacked_fields_as_they_are_and_checks_them():
    frames = np.arange(2 * 3 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 3, 4, 4, 3)
    batch = collate([{"frames": frames[0], "label": 1}, {"frames": frames[1], "label": 2}], stacked={"frames": frames})
    assert batch["frames"].data_ptr() == frames.ctypes.data and torch.equal(batch["frames"], torch.from_numpy(frames))
    assert batch["label"].tolist() == [1, 2]
    with pytest.raises(ValueError, match="stacked 'frames' is not the examples' frames row by row"):
        collate([{"frames": frames[0].copy()}, {"frames": frames[1]}], stacked={"frames": frames})
    with pytest.raises(ValueError, match="row by row"):
        collate([{"frames": frames[1]}, {"frames": frames[0]}], stacked={"frames": frames})


class _Counter(StepBatches):
    def __init__(self, seed: int):
        self.seed = seed

    def make(self, rng: np.random.Generator) -> torch.Tensor:
        return torch.from_numpy(rng.integers(1000, size=4))


def test_step_batches_are_a_function_of_seed_step_and_rank():
    batches = _Counter(seed=7)
    assert torch.equal(batches(3), batches(3)) and torch.equal(batches(3), pickle.loads(pickle.dumps(batches))(3))
    assert not torch.equal(batches(3), batches(4)) and not torch.equal(batches(3, 0, 2), batches(3, 1, 2))
    assert not torch.equal(batches(3), _Counter(seed=8)(3))
    with pytest.raises(NotImplementedError, match="make"):
        StepBatches()(0)


# ------------------------------------------------------------------------------------ real data root


UCF_CLASSES = ("Drumming", "Typing")


def _ucf_name(class_name: str, group: int) -> str:
    return f"{class_name}/v_{class_name}_g{group:02d}_c01.avi"


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    """A data root as docs/datasets.md lays it out: audioset/, ucf101/ and voxceleb/, real containers."""
    root = tmp_path_factory.mktemp("data_root")
    video = dict(fps=25.0, height=48, width=64, sample_rate=8000)
    for part, count in (("train", 3), ("test", 2)):
        for index in range(count):
            make_video(root / "audioset" / part / f"clip{index}.mp4", num_frames=50 + 5 * index, click_frames=(5 + index,), **video)
    make_video(root / "audioset" / "train" / "silent.mp4", num_frames=50, channels=None, **video)  # no audio: left out
    ucf = root / "ucf101"
    for class_name in UCF_CLASSES:
        for group in (1, 8):
            make_video(ucf / _ucf_name(class_name, group), num_frames=40, **video)
    lists = ucf / "ucfTrainTestlist"
    lists.mkdir()
    (lists / "classInd.txt").write_text("".join(f"{i + 1} {c}\n" for i, c in enumerate(UCF_CLASSES)))
    (lists / "trainlist01.txt").write_text("".join(f"{_ucf_name(c, 8)} {i + 1}\n" for i, c in enumerate(UCF_CLASSES)))
    (lists / "testlist01.txt").write_text("".join(f"{_ucf_name(c, 1)}\n" for c in UCF_CLASSES))
    vox = root / "voxceleb"
    speakers = [("id1", "m", "train"), ("id2", "f", "train"), ("id3", "m", "test"), ("id4", "f", "test")]
    clips = []
    for speaker, _, split in speakers:
        path = f"{speaker}/vid/00001.mp4"
        make_video(vox / path, num_frames=30, **video)
        clips.append((path, speaker, split))
    pd.DataFrame(speakers, columns=["speaker", "gender", "split"]).to_csv(vox / "speakers.csv", index=False)
    pd.DataFrame(clips, columns=["path", "speaker", "split"]).to_csv(vox / "clips.csv", index=False)
    return root


def test_real_scenes_are_file_sources_of_the_audioset_folders(data_root):
    files = scene_files(False, "paper", data_root=data_root)
    assert [path.name for path in files.train] == ["clip0.mp4", "clip1.mp4", "clip2.mp4"]
    assert [path.name for path in files.held_out] == ["clip0.mp4", "clip1.mp4"]
    assert files.truth(files.held_out[0]) is None
    train, held_out = scene_sources(False, "paper", 0, data_root, SHIFT)
    assert isinstance(train, FileClips) and len(train) == 3 and len(held_out) == 2
    frames, audio = train.window(0, 2, SHIFT.num_frames)
    assert frames.shape == (SHIFT.num_frames, 40, 40, 3) and audio.shape == (2, SHIFT.num_samples)
    with pytest.raises(ValueError, match="docs/datasets.md"):
        scene_files(False, "paper", data_root="")


def test_synthetic_scenes_hold_out_the_last_clips_with_their_truth():
    files = scene_files(True, "smoke", seed=0, held_out_share=0.34)
    clips = sorted((files.root / "clips").glob("*.mp4"))
    assert files.train + files.held_out == clips and len(files.held_out) == max(1, round(len(clips) * 0.34))
    assert all(files.truth(path).exists() for path in files.held_out)


def test_synthetic_pretraining_mixes_talking_heads_in_their_share():
    files = scene_files(True, "smoke", seed=0, held_out_share=0.34, talking_heads=0.25)
    scenes = sorted((files.root / "clips").glob("*.mp4"))
    talkers = sorted((files.root.parent / "talkers" / "clips").glob("*.mp4"))
    assert files.held_out == scenes[-len(files.held_out):]  # scenes only: CAM reads their truth
    assert files.train == scenes[: -len(files.held_out)] + files.talkers
    assert len(files.talkers) == talker_count(len(scenes) - len(files.held_out), 0.25) >= 1
    assert files.talkers + files.talkers_held_out == talkers and files.talkers_held_out
    counts = files.counts().set_index(["kind", "use"])["clips"]
    assert counts["talking heads", "training"] == len(files.talkers) and counts["scenes", "held out"] == len(files.held_out)
    assert talker_count(540, 0.25) == 180 and talker_count(10, 0.0) == 0
    with pytest.raises(ValueError, match="talkers"):
        scene_files(True, "smoke", seed=0, held_out_share=0.34, talking_heads=0.9)
    with pytest.raises(ValueError, match="in \\[0, 1\\)"):
        talker_count(10, 1.0)


def test_real_pretraining_refuses_synthetic_talking_heads(data_root):
    with pytest.raises(ValueError, match="AudioSet"):
        scene_files(False, "paper", data_root=data_root, talking_heads=0.25)


def test_real_actions_are_file_sources_of_the_split(data_root):
    actions = action_sources(False, "paper", 0, data_root, ACTIONS, split=1)
    assert isinstance(actions.train, FileVideos) and isinstance(actions.test, FileVideos)
    assert [video.label for video in actions.train.videos] == [0, 1] and len(actions.test) == 2
    assert actions.root == data_root / "ucf101" and actions.sound_only_pairs == []
    in_memory = action_sources(False, "paper", 0, data_root, ACTIONS, split=1, in_memory=True)
    assert isinstance(in_memory.train, DecodedVideos)
    assert np.array_equal(in_memory.train.window(1, 3)[0], actions.train.window(1, 3)[0])


def test_real_speakers_are_read_from_their_files_by_split(data_root):
    speakers = speaker_sources(False, "paper", 0, data_root, MIXTURE)
    assert isinstance(speakers.train.clips, FileClips) and isinstance(speakers.test.clips, FileClips)
    assert set(speakers.train.speakers) == {"id1", "id2"} and set(speakers.test.speakers) == {"id3", "id4"}
    frames, audio = speakers.test.window(1, 0)
    assert frames.shape == (8, 40, 40, 3) and audio.shape == (2, MIXTURE.num_samples)
    with pytest.raises(ValueError, match="data-root"):
        speaker_sources(False, "paper", 0, "", MIXTURE)


# ------------------------------------------------------------------------------------ DataLoader path


class _AlignNet(nn.Module):
    """Frames and audio to one logit, with dropout: a resume must carry the dropout RNG."""

    def __init__(self) -> None:
        super().__init__()
        self.video = nn.Conv3d(3, 4, 3, stride=2)
        self.audio = nn.Conv1d(2, 4, 9, stride=4)
        self.drop = nn.Dropout(0.3)
        self.head = nn.Linear(8, 1)

    def forward(self, frames: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        video = self.video(frames.permute(0, 4, 1, 2, 3).float() / 255).mean(dim=(2, 3, 4))
        sound = self.audio(audio).mean(dim=2)
        return self.head(self.drop(torch.cat([video, sound], dim=1))).squeeze(1)


def _align_loss(model: nn.Module, batch: dict[str, torch.Tensor]):
    logits = torch.cat([model(batch["frames"], batch["audio"]), model(batch["frames"], batch["shifted_audio"])])
    labels = torch.cat([torch.ones(len(batch["audio"])), torch.zeros(len(batch["audio"]))])
    return F.binary_cross_entropy_with_logits(logits, labels), {}


def _fit(out_dir: Path, source, steps: int, workers: int) -> nn.Module:
    torch.manual_seed(0)
    model = _AlignNet()
    config = TrainConfig(steps=steps, lr=0.05, checkpoint_every=3, log_every=1, device="cpu", workers=workers,
                         prefetch=2, out_dir=str(out_dir))
    fit(model, _align_loss, ShiftBatches(source, SHIFT, 3, seed=11), config)
    return model


def test_dataloader_workers_train_the_same_weights_and_resume_exactly(data_root, tmp_path):
    source = scene_sources(False, "paper", 0, data_root, SHIFT)[0]
    in_process = _fit(tmp_path / "in_process", source, 6, workers=0)
    with_workers = _fit(tmp_path / "workers", source, 6, workers=2)
    assert not multiprocessing.active_children()  # the workers ended with the run
    _fit(tmp_path / "resumed", source, 3, workers=2)
    resumed = _fit(tmp_path / "resumed", source, 6, workers=2)  # continues from the step-3 checkpoint
    reference = in_process.state_dict()
    for model in (with_workers, resumed):
        assert all(torch.equal(reference[name], value) for name, value in model.state_dict().items())
    torch.manual_seed(0)
    assert not torch.equal(_AlignNet().head.weight, in_process.head.weight)  # it trained
    assert pd.read_csv(tmp_path / "resumed" / "metrics.csv")["step"].tolist() == [1, 2, 3, 4, 5, 6]


def test_train_config_checks_the_loader_settings():
    with pytest.raises(ValueError, match="workers"):
        TrainConfig(steps=1, workers=-1)
    with pytest.raises(ValueError, match="prefetch"):
        TrainConfig(steps=1, prefetch=0)
