"""Alignment pairs: shift range, windows inside the clip, deterministic batches, two equal sources."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from media import decode_indices, make_video

from avlib import io
from avlib.data.clips import collate
from avlib.data.shift import (
    DecodedClips,
    FileClips,
    ShiftBatches,
    ShiftConfig,
    evaluation_set,
    make_example,
    sample_pair_starts,
)
from avlib.metrics import alignment_accuracy
from avlib.models.multisensory import MultisensoryConfig, MultisensoryNet


def test_pair_starts_respect_the_paper_range():
    config = ShiftConfig()
    rng = np.random.default_rng(0)
    pairs = np.array([sample_pair_starts(rng, 302, config) for _ in range(5000)])  # a 10.1 s clip
    offsets = (pairs[:, 1] - pairs[:, 0]) / config.fps
    assert np.abs(offsets).min() >= 2.0 and np.abs(offsets).max() <= 5.8
    assert pairs.min() >= 0 and pairs.max() <= 302 - config.num_frames
    assert 0.4 < (offsets > 0).mean() < 0.6  # earlier and later shifts alike
    with pytest.raises(ValueError, match="cannot hold"):
        sample_pair_starts(rng, config.num_frames + 10, config)


def test_scaled_config_keeps_the_ratio():
    small = ShiftConfig().scaled(2.1)
    assert small.min_shift == pytest.approx(1.0) and small.max_shift == pytest.approx(2.9)
    assert ShiftConfig().num_frames == 125 and ShiftConfig().num_samples == 87588


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("shift")
    return [make_video(root / f"v{index}.mp4", num_frames=150, fps=25.0, height=48, width=80,
                       click_frames=(20 + 10 * index, 100)) for index in range(3)]


def _config() -> ShiftConfig:
    return ShiftConfig(window=1.2, fps=10.0, sample_rate=8000, min_shift=1.0, max_shift=3.0, size=40, crop=32)


def test_batches_are_a_function_of_the_step(videos, tmp_path):
    source = DecodedClips(videos, _config(), cache_dir=tmp_path / "cache")
    batches = ShiftBatches(source, _config(), batch_size=4, seed=7)
    first, again = batches(3), batches(3)
    for key in first:
        assert torch.equal(first[key], again[key])
    assert not torch.equal(batches(4)["audio"], first["audio"])
    assert not torch.equal(batches(3, rank=1, world_size=2)["audio"], first["audio"])
    assert first["frames"].shape == (4, 12, 32, 32, 3) and first["frames"].dtype == torch.uint8
    assert first["audio"].shape == first["shifted_audio"].shape == (4, 2, 9600)
    assert (first["shift"].abs() >= 1.0 - 1e-6).all()
    cached = DecodedClips(videos, _config(), cache_dir=tmp_path / "cache")  # from the disk cache
    assert all(np.array_equal(a, b) for a, b in zip(source.frames, cached.frames))


def test_decoded_and_file_sources_give_the_same_windows(videos):
    config = _config()
    decoded, from_files = DecodedClips(videos, config), FileClips([io.probe(path) for path in videos], config)
    assert decoded.num_frames(0) == from_files.num_frames(0) == 59
    for first in (0, 13, 40):
        frames_a, audio_a = decoded.window(1, first, config.num_frames)
        frames_b, audio_b = from_files.window(1, first, config.num_frames)
        np.testing.assert_array_equal(decode_indices(frames_a), decode_indices(frames_b))
        np.testing.assert_array_equal(decode_indices(frames_a), np.floor(np.arange(first, first + 12) * 2.5 + 1e-6))
        assert np.abs(audio_a - audio_b).max() < 0.02  # only resampler edge effects differ
        np.testing.assert_allclose(from_files.audio(1, first, config.num_frames), audio_b, atol=1e-6)


def test_evaluation_set_is_fixed_and_balanced(videos):
    source = DecodedClips(videos, _config())
    first, again = evaluation_set(source, _config(), per_video=20, seed=1), evaluation_set(source, _config(), per_video=20, seed=1)
    assert torch.equal(first.labels, again.labels) and first.pairs == again.pairs
    assert torch.equal(first.batch(7, 5)["shifted_audio"], again.batch(7, 5)["shifted_audio"])
    assert 0.3 < first.labels.mean().item() < 0.7 and len(first) == 60


def _eager_evaluation_set(source, config, per_video, seed):
    """The held-out set as it was built before streaming: every example decoded into one batch."""
    rng = np.random.default_rng([seed, 2**31 - 1])
    examples = [make_example(source, video, rng, config, train=False) for video in range(len(source)) for _ in range(per_video)]
    batch = collate(examples)
    batch["label"] = torch.from_numpy(rng.integers(0, 2, size=len(examples))).float()
    return batch


def test_streamed_evaluation_set_equals_the_eager_one(videos):
    """Same draws, same examples, same order: the batches concatenate to the eager set, and the held-out
    accuracy of a network is bit-identical either way."""
    config = _config()
    source = DecodedClips(videos, config)
    eager = _eager_evaluation_set(source, config, per_video=5, seed=3)
    streamed = evaluation_set(source, config, per_video=5, seed=3)
    parts = list(streamed.batches(4))
    assert [len(part["label"]) for part in parts] == [4, 4, 4, 3]
    for key, value in eager.items():
        assert torch.equal(torch.cat([part[key] for part in parts]), value), key
    torch.manual_seed(0)
    net = MultisensoryNet(MultisensoryConfig(num_frames=config.num_frames, frame_size=config.crop,
                                             num_samples=config.num_samples, width=4))
    assert alignment_accuracy(net, streamed, batch_size=4) == alignment_accuracy(net, eager, batch_size=4)
    with pytest.raises(IndexError, match="outside the held-out set of 15"):
        streamed.batch(15, 4)


def test_paper_profile_uses_the_official_code_shift_range():
    """65-176 frames at 29.97 fps (max_intersection = 60 of 125-frame windows), both bounds reachable; the
    synthetic profiles keep the text's 2.0-5.8 s; the paper comparison lists both."""
    from avlib.config import resolve
    from avlib.data.shift import OFFICIAL_SHIFT, PAPER_SHIFT
    from avlib.report.claims import BY_KEY

    config = resolve("paper").pretrain.shift
    assert (config.min_shift, config.max_shift) == OFFICIAL_SHIFT and config.fps == 29.97 and config.num_frames == 125
    assert (resolve("synth").pretrain.shift.min_shift, resolve("synth").pretrain.shift.max_shift) == PAPER_SHIFT
    rng = np.random.default_rng(0)
    offsets = np.abs(np.diff([sample_pair_starts(rng, 302, config) for _ in range(20000)], axis=1))
    assert offsets.min() == 65 and offsets.max() == 176
    assert BY_KEY["shift_min_code_s"].value == OFFICIAL_SHIFT[0] and BY_KEY["shift_max_code_s"].value == OFFICIAL_SHIFT[1]
    assert (BY_KEY["shift_min_s"].value, BY_KEY["shift_max_s"].value) == PAPER_SHIFT and not BY_KEY["shift_min_s"].verified


@pytest.mark.parametrize("from_files", [False, True])
def test_batches_equal_examples_cropped_one_by_one_and_stacked(videos, from_files):
    """ShiftBatches crops straight into one batch array; its batches are byte-equal to stacking the examples
    that make_example gives alone (a new array each), with the same draws, flipped or not."""
    config = _config()
    source = FileClips([io.probe(path) for path in videos], config) if from_files else DecodedClips(videos, config)
    batches = ShiftBatches(source, config, batch_size=4, seed=2)
    flips = 0
    for step in range(3):
        rng = batches.generator(step)
        chosen = rng.integers(len(source), size=4)
        alone = [make_example(source, int(video), rng, config, train=True) for video in chosen]
        expected = {"frames": torch.from_numpy(np.stack([example.frames for example in alone])),
                    "audio": torch.from_numpy(np.stack([example.audio for example in alone])),
                    "shifted_audio": torch.from_numpy(np.stack([example.shifted_audio for example in alone])),
                    "shift": torch.tensor([example.shift for example in alone], dtype=torch.float32)}
        batch = batches(step)
        assert batch.keys() == expected.keys()
        for key, value in expected.items():
            assert batch[key].dtype == value.dtype and torch.equal(batch[key], value), key
        assert batch["frames"].is_contiguous()
        replay = batches.generator(step)  # the same draws again, to count the flips among them
        for video in replay.integers(len(source), size=4):
            sample_pair_starts(replay, source.num_frames(int(video)), config)
            replay.integers(config.size - config.crop + 1), replay.integers(config.size - config.crop + 1)
            flips += replay.random() < 0.5
    assert 0 < flips < 12  # both the flipped and the plain copy ran


class _WindowsInWorkers(torch.utils.data.Dataset):
    """Window ``index`` of a file source as a DataLoader worker reads it, with the decoder threads it used."""

    def __init__(self, source: FileClips):
        self.source = source

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int):
        frames, audio = self.source.window(index % len(self.source), 3 * index, self.source.config.num_frames)
        return io.decoder_threads(), frames, audio


def test_dataloader_workers_decode_with_their_share_of_the_cores_and_the_same_frames(videos):
    source = FileClips([io.probe(path) for path in videos], _config())
    assert io.decoder_threads() == 0  # outside a worker: FFmpeg's automatic count
    loader = torch.utils.data.DataLoader(_WindowsInWorkers(source), batch_size=None, num_workers=2)
    share = max(1, len(os.sched_getaffinity(0)) // 2)
    for index, (threads, frames, audio) in enumerate(loader):
        alone, alone_audio = source.window(index % len(source), 3 * index, source.config.num_frames)
        assert threads == share and np.array_equal(frames.numpy(), alone) and np.array_equal(audio.numpy(), alone_audio)
