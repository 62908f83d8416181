"""The app ``avlib.separate``: any video's sound split into on- and off-screen sound, and its command line.

There is no real recording on this machine: the "real speech" here is the synthetic world's talking heads
(source-filter speech), mixed with another speaker's voice.
"""

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from avlib import io
from avlib.checkpoint import save_checkpoint
from avlib.data.mixtures import load_speaker_table
from avlib.metrics import resample
from avlib.models.unet import SeparationNet, from_checkpoint, mono_mix
from avlib.separate import main, read_sound, separate, separate_waveform
from avlib.spectral import analyze
from avlib.writer import write_video
from tests.media import decode_indices, frame_stamps, make_video
from tests.test_separation import speech, tiny_config

ROOT = Path(__file__).resolve().parent.parent


class EchoModel(SeparationNet):
    """Returns the mixture as the on-screen sound and silence (-100 dB) as the off-screen one."""

    def forward(self, frames, audio):
        mixture = analyze(mono_mix(audio), self.config.spectral, num_frames=self.num_frames_for(audio.shape[-1]))
        return {"on_screen_magnitude": mixture.magnitude, "on_screen_phase": mixture.phase,
                "off_screen_magnitude": -torch.ones_like(mixture.magnitude), "off_screen_phase": torch.zeros_like(mixture.phase)}


def test_sliding_windows_stitch_back_the_exact_signal():
    """With a model that passes the mixture through, any length, level and window size comes back as it went in."""
    model = EchoModel(tiny_config(video="none"))
    for seconds, level, multiple in ((7.3, 1.0, 1), (1.0, 0.01, 1), (5.0, 3.0, 2)):
        voice = level * speech("f", seconds, 7)
        audio = np.stack([voice, voice]).astype(np.float32)
        on_screen, off_screen, windows = separate_waveform(model, None, audio, window_multiple=multiple)
        assert on_screen.shape == off_screen.shape == (audio.shape[1],)
        assert np.abs(on_screen - voice).max() < 2e-3 * np.abs(voice).max()
        assert np.abs(off_screen).max() < 1e-3 * np.abs(voice).max()
        assert windows >= math.ceil(seconds / (2.1 * multiple))  # half-overlapping 2.1 s x multiple windows


def test_separate_a_speaker_mixed_with_another_voice(speakers, tiny_checkpoint, tmp_path):
    clips = load_speaker_table(speakers)
    on_clip = clips.iloc[0]
    off_clip = clips[clips["gender"] != on_clip["gender"]].iloc[0]
    on_path, off_path = speakers / on_clip["path"], speakers / off_clip["path"]
    info = io.probe(on_path)
    shown = io.read_clip(on_path, 0.0, fps=info.fps, num_frames=info.num_frames - 1, sample_rate=16000)
    voice = io.read_audio(off_path, 0.0, shown.audio.shape[1], sample_rate=16000)
    mixed = tmp_path / "mixed.mp4"
    write_video(mixed, shown.frames, info.fps, np.clip(shown.audio + voice, -1, 1)[:1], 16000)
    result = separate(mixed, tiny_checkpoint, tmp_path / "out", window_multiple=1)
    mixed_info = io.probe(mixed)
    expected = int(mixed_info.usable_duration * mixed_info.sample_rate)
    assert result.sample_rate == 16000
    assert result.on_screen.shape == result.off_screen.shape == result.mixture.shape == (expected,)
    assert np.isfinite(result.on_screen).all() and np.isfinite(result.off_screen).all()
    assert math.isfinite(result.residual)
    from scipy.io import wavfile

    for name in ("on_screen", "off_screen"):
        rate, samples = wavfile.read(tmp_path / "out" / f"{name}.wav")
        assert (rate, samples.shape) == (16000, (expected,))
        assert io.probe(tmp_path / "out" / f"{name}.mp4").has_audio


def test_separate_a_video_without_a_speaker_and_refuse_one_without_sound(tiny_checkpoint, tmp_path):
    clicks = make_video(tmp_path / "clicks.mp4", num_frames=90, fps=30.0, height=48, width=64, sample_rate=22050,
                        click_frames=(10, 40, 70))
    result = separate(clicks, tiny_checkpoint, tmp_path / "out", window_multiple=1, write_videos=False)
    info = io.probe(clicks)
    assert result.on_screen.shape == (int(info.usable_duration * 22050),)
    assert np.isfinite(result.on_screen).all() and np.isfinite(result.off_screen).all()
    assert set(result.files) == {"on_screen.wav", "off_screen.wav"}
    silent = make_video(tmp_path / "silent.mp4", num_frames=30, fps=30.0, height=48, width=64, channels=None)
    with pytest.raises(io.NoAudioError, match="silent.mp4"):
        separate(silent, tiny_checkpoint, tmp_path / "out2")


def test_streaming_equals_the_whole_video_in_memory_and_videos_keep_every_frame(tiny_checkpoint, tmp_path):
    video = make_video(tmp_path / "clicks.mp4", num_frames=131, fps=29.97, height=48, width=64, sample_rate=44100,
                       click_frames=(10, 70, 120))
    streamed = separate(video, tiny_checkpoint, tmp_path / "out", window_multiple=1)
    # the same separation with everything in memory: the whole sound and every frame read at once
    model = from_checkpoint(tiny_checkpoint)
    info, config = io.probe(video), model.config
    rate = config.spectral.sample_rate
    audio = read_sound(video, info, int(info.usable_duration * rate), rate, channels=2)
    frames = io.read_clip(video, 0.0, fps=config.fps, num_frames=int(info.usable_duration * config.fps - 1e-6),
                          size=config.size, crop=config.crop, sample_rate=rate).frames
    on_screen, off_screen, windows = separate_waveform(model, frames, audio, window_multiple=1)
    native = int(info.usable_duration * info.sample_rate)
    for kept, computed in ((streamed.on_screen, on_screen), (streamed.off_screen, off_screen)):
        expected = resample(computed, rate, info.sample_rate)[:native]
        expected = np.pad(expected, (0, native - len(expected))).astype(np.float32)  # as long as the input's sound
        np.testing.assert_array_equal(kept, expected)
    assert streamed.windows == windows > 2
    # every input frame, at its own time, in both videos (the old writer dropped the last one)
    for name in ("on_screen", "off_screen"):
        written = tmp_path / "out" / f"{name}.mp4"
        np.testing.assert_allclose(frame_stamps(written), frame_stamps(video), atol=1e-4)
        shown = io.read_clip(written, 0.0, fps=info.fps, num_frames=info.num_frames, sample_rate=16000).frames
        np.testing.assert_array_equal(decode_indices(shown), np.arange(info.num_frames))


def test_streaming_holds_no_whole_sound_and_reads_in_chunks(tiny_checkpoint, tmp_path):
    video = make_video(tmp_path / "clicks.mp4", num_frames=150, fps=25.0, height=48, width=64, sample_rate=16000,
                       click_frames=(10, 60, 130))
    whole = separate(video, tiny_checkpoint, tmp_path / "whole", window_multiple=1, write_videos=False)
    chunked = separate(video, tiny_checkpoint, tmp_path / "chunked", window_multiple=1, write_videos=False,
                       keep_sound=False, chunk_seconds=2.0)
    assert chunked.on_screen is None and chunked.mixture is None
    from scipy.io import wavfile

    for name, kept in (("on_screen", whole.on_screen), ("off_screen", whole.off_screen)):
        rate, samples = wavfile.read(tmp_path / "chunked" / f"{name}.wav")
        assert (rate, samples.shape) == (16000, kept.shape)
        # the 2 s chunks are read apart, so the resampler sees each seam on its own: equal to a 16-bit step away from them
        assert np.abs(samples / 32767 - kept).max() < 2e-3
    assert chunked.residual == pytest.approx(whole.residual, rel=1e-3)


def test_output_folder_needs_its_parent(tiny_checkpoint, tmp_path):
    video = make_video(tmp_path / "clicks.mp4", num_frames=30, fps=30.0, height=48, width=64, sample_rate=16000)
    with pytest.raises(FileNotFoundError, match="missing"):
        separate(video, tiny_checkpoint, tmp_path / "missing" / "out", window_multiple=1, write_videos=False)
    assert not (tmp_path / "missing").exists()
    separate(video, tiny_checkpoint, tmp_path / "missing" / "out", window_multiple=1, write_videos=False, mkdir=True)
    assert (tmp_path / "missing" / "out" / "on_screen.wav").is_file()


def test_the_checkpoints_inference_settings_are_the_default(tmp_path):
    torch.manual_seed(0)
    model = SeparationNet(tiny_config())
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, model=model, step=0, config={"run": {"separation": {"window_multiple": 2, "phase": "mixture"}}})
    video = make_video(tmp_path / "clicks.mp4", num_frames=30, fps=30.0, height=48, width=64, sample_rate=16000)
    result = separate(video, path, tmp_path / "out", write_videos=False)
    assert (result.window_multiple, result.phase) == (2, "mixture")
    assert separate(video, path, tmp_path / "out", write_videos=False, phase="predicted").phase == "predicted"


def separate_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "avlib.separate", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def test_command_line_help_names_its_options():
    completed = separate_cli("--help")
    assert completed.returncode == 0
    for option in ("--checkpoint", "--out", "--device", "--window-multiple", "--phase", "--mkdir", "{auto,cpu,cuda}"):
        assert option in completed.stdout


def test_command_line_reports_bad_input_in_one_line(tiny_checkpoint, tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all" * 100)
    completed = separate_cli(str(broken), "--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "out"),
                             "--device", "cpu")
    assert completed.returncode == 2
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "broken.mp4" in lines[0]
    not_a_checkpoint = tmp_path / "model.pt"
    not_a_checkpoint.write_bytes(b"junk")
    video = make_video(tmp_path / "clicks.mp4", num_frames=30, fps=30.0, height=48, width=64, sample_rate=16000,
                       click_frames=(10,))
    completed = separate_cli(str(video), "--checkpoint", str(not_a_checkpoint), "--out", str(tmp_path / "out"))
    assert completed.returncode == 2
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "model.pt" in lines[0]


def test_command_line_refuses_a_text_checkpoint_a_missing_parent_and_cuda_without_a_gpu(tiny_checkpoint, tmp_path, capsys):
    video = make_video(tmp_path / "clicks.mp4", num_frames=30, fps=30.0, height=48, width=64, sample_rate=16000)

    def one_line_error(*args: str) -> str:
        assert main([str(video), *args]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ")
        return lines[0]

    text = tmp_path / "notes.pt"
    text.write_text("these are notes, not a network\n")
    line = one_line_error("--checkpoint", str(text), "--out", str(tmp_path / "out"), "--device", "cpu")
    assert "notes.pt" in line and "weights_only" not in line and "False" not in line  # no advice to load it unsafely
    line = one_line_error("--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "no" / "out"), "--device", "cpu")
    assert str(tmp_path / "no") in line and "--mkdir" in line and not (tmp_path / "no").exists()
    if not torch.cuda.is_available():  # the CPU build's answer to --device cuda
        assert "CUDA" in one_line_error("--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "out"), "--device", "cuda")
    assert main([str(video), "--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "no" / "out"), "--mkdir",
                 "--no-videos", "--window-multiple", "1"]) == 0  # auto: the CPU here
    assert "wrote" in capsys.readouterr().out and (tmp_path / "no" / "out" / "on_screen.wav").is_file()


def test_command_line_writes_both_sounds(tiny_checkpoint, tmp_path):
    video = make_video(tmp_path / "clicks.mp4", num_frames=60, fps=30.0, height=48, width=64, sample_rate=16000,
                       click_frames=(10, 40))
    completed = separate_cli(str(video), "--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "out"),
                             "--no-videos", "--window-multiple", "1", "--device", "cpu")
    assert completed.returncode == 0, completed.stderr
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["off_screen.wav", "on_screen.wav"]
