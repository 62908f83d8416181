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
from avlib.data.mixtures import load_speaker_table
from avlib.models.unet import SeparationNet, mono_mix
from avlib.separate import separate, separate_waveform
from avlib.spectral import analyze
from avlib.writer import write_video
from tests.media import make_video
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




def separate_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "avlib.separate", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def test_command_line_help_names_its_options():
    completed = separate_cli("--help")
    assert completed.returncode == 0
    for option in ("--checkpoint", "--out", "--device", "--window-multiple", "--phase"):
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


def test_command_line_writes_both_sounds(tiny_checkpoint, tmp_path):
    video = make_video(tmp_path / "clicks.mp4", num_frames=60, fps=30.0, height=48, width=64, sample_rate=16000,
                       click_frames=(10, 40))
    completed = separate_cli(str(video), "--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "out"),
                             "--no-videos", "--window-multiple", "1", "--device", "cpu")
    assert completed.returncode == 0, completed.stderr
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["off_screen.wav", "on_screen.wav"]
