"""Split any video's sound into the on-screen and the off-screen sound with a trained separation model
(docs/paper.md §7.9).

``python -m avlib.separate VIDEO --checkpoint C --out DIR`` writes ``on_screen.wav``, ``off_screen.wav`` and
the video with each sound. The model runs in sliding windows of half overlap over inputs of any length, at its
own rates; the outputs come back at the input's sample rate and length. The checkpoint's run (its resolved
``separation`` settings, :func:`avlib.tasks.separation.train`) gives the window and the phase unless the
caller gives them.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from avlib import io
from avlib.data.mixtures import RMS_EPS, normalize_rms
from avlib.models.multisensory import normalize_frames
from avlib.models.unet import SeparationNet, check_phase, from_checkpoint, mono_mix, source_phase
from avlib.spectral import full_band, overlap_add, stft, window_envelope

#: RMS of the mixture fed to the network at inference, per channel: two sources of 0.1 (``sep_video.py``).
INPUT_RMS = math.sqrt(0.1**2 + 0.1**2)
#: The paper's ``sep_video``: windows of 4 training windows (8.3 s), synthesised with the predicted phase.
PAPER_WINDOW_MULTIPLE = 4
PAPER_PHASE = "predicted"


@dataclass
class SeparationResult:
    """What :func:`separate` wrote and computed, all at the input's own sample rate and length."""

    on_screen: np.ndarray  # (N,) float32
    off_screen: np.ndarray
    mixture: np.ndarray  # (N,) the input's mono sound
    sample_rate: int
    files: dict[str, Path] = field(default_factory=dict)
    windows: int = 0
    model_sample_rate: int = 0
    window_multiple: int = 0
    phase: str = ""

    @property
    def residual(self) -> float:
        """||on + off - mixture|| / ||mixture||: how much of the input the two outputs do not account for."""
        return float(np.linalg.norm(self.on_screen + self.off_screen - self.mixture) / max(np.linalg.norm(self.mixture), 1e-12))


def write_wav(path: str | os.PathLike, audio: np.ndarray, sample_rate: int) -> Path:
    """Write (N,) or (C, N) float audio in [-1, 1] as 16-bit PCM WAV (clipped), atomically."""
    from scipy.io import wavfile

    from avlib.files import atomic_path

    path = Path(path)
    samples = np.clip(np.asarray(audio, dtype=np.float64), -1.0, 1.0)
    samples = np.round(samples * 32767).astype(np.int16)
    with atomic_path(path) as tmp:
        wavfile.write(tmp, sample_rate, samples.T if samples.ndim == 2 else samples)
    return path


def _fit_length(signal: np.ndarray, length: int) -> np.ndarray:
    return signal[:length] if signal.shape[0] >= length else np.pad(signal, (0, length - signal.shape[0]))


@torch.no_grad()
def separate_waveform(model: SeparationNet, frames: np.ndarray | None, audio: np.ndarray, window_multiple: int = 4,
                      batch_size: int = 2, phase: str = "predicted") -> tuple[np.ndarray, np.ndarray, int]:
    """On- and off-screen sound of a whole recording, in sliding windows of half overlap, at the model's rates.

    frames (T, crop, crop, 3) uint8 at the model's fps (ignored without video), audio (2, N) at its sample
    rate -> (on_screen (N,), off_screen (N,), number of windows). Each window holds ``window_multiple``
    training windows (the paper's ``sep_video``: 4, 8.3 s) and is RMS-normalised per channel to 0.141, as
    in ``sep_video.py``, its outputs scaled back. Windows are stitched by summing every window's
    overlap-added frames and dividing by the summed squared-window envelope, so each sample is the
    envelope-weighted mean of all frames that cover it (the official script keeps the first window's
    samples); the input is padded at both ends (zeros, the edge frame) so that every sample is covered by
    untapered frames. ``phase`` as in :func:`avlib.models.unet.predict`.
    """
    check_phase(phase)
    config = model.config
    spectral, fps, rate = config.spectral, config.fps, config.spectral.sample_rate
    uses_video = model.features is not None
    if audio.ndim != 2 or audio.shape[0] != 2 or audio.shape[1] == 0:
        raise ValueError(f"expected stereo audio of shape (2, N), got {audio.shape}")
    num_samples = audio.shape[1]
    if uses_video and (frames is None or len(frames) == 0):
        raise ValueError("this model needs the video's frames")
    spec_frames = spectral.num_frames * window_multiple
    covered = spectral.samples_for(spec_frames)
    window_frames = math.ceil(covered * fps / rate - 1e-9)
    while io.num_samples_for(window_frames, fps, rate) < covered:
        window_frames += 1
    window_samples = io.num_samples_for(window_frames, fps, rate)
    taper = spectral.frame_length - spectral.hop
    pad_frames = math.ceil(taper * fps / rate) + 1
    pad_samples = io.num_samples_for(pad_frames, fps, rate)
    hop_frames = max(1, window_frames // 2)
    starts = [0]
    while io.num_samples_for(starts[-1], fps, rate) + covered - taper < pad_samples + num_samples:
        starts.append(starts[-1] + hop_frames)
    total_frames = starts[-1] + window_frames
    total_samples = io.num_samples_for(starts[-1], fps, rate) + window_samples
    padded_audio = np.zeros((2, total_samples), dtype=np.float32)
    padded_audio[:, pad_samples : pad_samples + num_samples] = audio
    if uses_video:
        indices = np.clip(np.arange(total_frames) - pad_frames, 0, len(frames) - 1)
        padded_frames = frames[indices]
    device = next(model.parameters()).device
    model.eval()
    sums = np.zeros((2, total_samples), dtype=np.float64)
    envelope = np.zeros(total_samples, dtype=np.float64)
    window_squares = window_envelope(spec_frames, spectral).double().numpy()
    for first in range(0, len(starts), batch_size):
        chunk = starts[first : first + batch_size]
        offsets = [io.num_samples_for(start, fps, rate) for start in chunk]
        raw = torch.from_numpy(np.stack([padded_audio[:, offset : offset + window_samples] for offset in offsets]))
        mixture = normalize_rms(raw, INPUT_RMS)
        channel_gains = INPUT_RMS / raw.pow(2).mean(-1).sqrt().clamp_min(RMS_EPS)  # (b, 2), as normalize_rms
        # the gain of what the spectrogram hears: the channels' mean gain, or its one channel's
        gains = channel_gains.mean(-1) if config.spectrogram_channel is None else channel_gains[:, config.spectrogram_channel]
        video = None
        if uses_video:
            video = normalize_frames(torch.from_numpy(np.stack([padded_frames[s : s + window_frames] for s in chunk])).to(device))
        output = model(video, mixture.to(device))
        mixture_phase = torch.angle(stft(mono_mix(mixture.to(device), config.spectrogram_channel), spectral)[:, :spec_frames]) / math.pi
        for k, source in enumerate(("on_screen", "off_screen")):
            estimated_phase = source_phase(output, source, mixture_phase, phase)
            spectrum = full_band(output[f"{source}_magnitude"].float(), estimated_phase, mixture_phase, spectral)
            waves = (overlap_add(spectrum, spectral).cpu().double() / gains[:, None].double()).numpy()
            for wave, offset in zip(waves, offsets):
                sums[k, offset : offset + covered] += wave
        for offset in offsets:
            envelope[offset : offset + covered] += window_squares
    estimates = np.divide(sums, envelope, out=np.zeros_like(sums), where=envelope > 1e-8)
    estimates = estimates[:, pad_samples : pad_samples + num_samples].astype(np.float32)
    return estimates[0], estimates[1], len(starts)


def read_sound(path: Path, info: io.VideoInfo, num_samples: int, sample_rate: int, channels: int) -> np.ndarray:
    """The first ``num_samples`` of a video's sound, (channels, num_samples); a track that decodes shorter than its
    header says (AAC encoder padding can cost tens of ms) ends in silence instead of failing."""
    seconds = num_samples / sample_rate
    for shortfall in range(0, 16):
        available = num_samples - int(round(shortfall * sample_rate / info.fps))
        try:
            audio = io.read_audio(path, 0.0, max(available, 1), sample_rate=sample_rate, channels=channels)
        except io.WindowError:
            if available <= 1:
                raise
            continue
        return np.pad(audio, ((0, 0), (0, num_samples - audio.shape[1])))
    raise io.WindowError(path, f"its sound decodes more than 15 frames short of the {seconds:.3f} s it states")


def inference_settings(checkpoint: str | os.PathLike) -> dict:
    """``window_multiple`` and ``phase`` of the run that wrote a separation checkpoint (its resolved
    ``separation`` section); empty for a checkpoint without them."""
    from avlib.checkpoint import load_checkpoint

    run = load_checkpoint(checkpoint)["config"].get("run", {})
    settings = run.get("separation") or {}
    return {key: settings[key] for key in ("window_multiple", "phase") if key in settings}


def separate(video: str | os.PathLike, checkpoint: str | os.PathLike | SeparationNet, out_dir: str | os.PathLike, *,
             window_multiple: int | None = None, device: str = "cpu", batch_size: int = 2, write_videos: bool = True,
             phase: str | None = None) -> SeparationResult:
    """Split a video's sound into the on-screen and the off-screen sound, and write them to ``out_dir``.

    For a video with one visible speaker and sound (docs/paper.md §7.9). Writes ``on_screen.wav`` and
    ``off_screen.wav`` (mono 16-bit PCM at the input's sample rate, exactly as many samples as the input's
    sound over the video's duration) and, with ``write_videos``, ``on_screen.mp4`` and ``off_screen.mp4``:
    the input's frames with each sound. ``checkpoint`` is a separation checkpoint (or a loaded model).

    ``window_multiple`` and ``phase`` (as in :func:`avlib.models.unet.predict`) of None are those the
    checkpoint's evaluation used (:func:`inference_settings`), else the paper's (4, ``"predicted"``).
    The model works at its own rates (frames squashed and centre-cropped as in training, audio resampled with
    soxr; see :func:`separate_waveform`); its outputs are resampled back to the input's rate. Sound above the
    model's Nyquist frequency (5.5 kHz in the synth profile) is in neither output. A file that cannot be read,
    has no video stream or no sound raises an :class:`avlib.io.MediaError` naming it.
    """
    from avlib.metrics import resample
    from avlib.writer import write_video

    video = Path(video)
    stored = {} if isinstance(checkpoint, SeparationNet) else inference_settings(checkpoint)
    window_multiple = window_multiple or stored.get("window_multiple", PAPER_WINDOW_MULTIPLE)
    phase = phase or stored.get("phase", PAPER_PHASE)
    check_phase(phase)
    model = checkpoint if isinstance(checkpoint, SeparationNet) else from_checkpoint(checkpoint, map_location=device)
    model = model.to(device)
    config = model.config
    info = io.probe(video)
    if not info.has_audio:
        raise io.NoAudioError(video, "has no audio track: there is no sound to separate")
    duration = info.usable_duration
    rate = config.spectral.sample_rate
    model_samples = int(duration * rate)
    native_samples = int(duration * info.sample_rate)
    audio = read_sound(video, info, model_samples, rate, channels=2)
    frames = None
    if model.features is not None:
        count = max(1, int(duration * config.fps - 1e-6))
        frames = io.read_clip(video, 0.0, fps=config.fps, num_frames=count, size=config.size, crop=config.crop,
                              sample_rate=rate).frames
    on_screen, off_screen, windows = separate_waveform(model, frames, audio, window_multiple, batch_size, phase)
    mixture = read_sound(video, info, native_samples, info.sample_rate, channels=1)[0]
    on_native = _fit_length(resample(on_screen, rate, info.sample_rate), native_samples).astype(np.float32)
    off_native = _fit_length(resample(off_screen, rate, info.sample_rate), native_samples).astype(np.float32)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = SeparationResult(on_native, off_native, mixture, info.sample_rate, windows=windows, model_sample_rate=rate,
                              window_multiple=window_multiple, phase=phase)
    for name, sound in (("on_screen", on_native), ("off_screen", off_native)):
        result.files[f"{name}.wav"] = write_wav(out_dir / f"{name}.wav", sound, info.sample_rate)
    if write_videos:
        shown = io.read_clip(video, 0.0, fps=info.fps, num_frames=max(1, int(duration * info.fps - 1e-6)),
                             sample_rate=info.sample_rate, missing_audio="silence").frames
        shown = shown[:, : shown.shape[1] // 2 * 2, : shown.shape[2] // 2 * 2]  # the encoder needs even sizes
        for name, sound in (("on_screen", on_native), ("off_screen", off_native)):
            result.files[f"{name}.mp4"] = write_video(out_dir / f"{name}.mp4", shown, info.fps,
                                                      np.clip(sound, -1, 1)[None], info.sample_rate)
    return result


# ----------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    from avlib.checkpoint import CheckpointError

    parser = argparse.ArgumentParser(
        prog="python -m avlib.separate",
        description="Split a video's sound into the on-screen and the off-screen sound (docs/paper.md §7.9): writes "
                    "on_screen.wav, off_screen.wav and the video with each into --out.")
    parser.add_argument("video", help="any video with sound and one visible speaker (any size, frame rate, length)")
    parser.add_argument("--checkpoint", required=True, help="a separation checkpoint (.pt), e.g. "
                        "checkpoints/<profile>/separation/full/checkpoint.pt")
    parser.add_argument("--out", required=True, help="folder for the outputs")
    parser.add_argument("--window-multiple", type=int, default=None,
                        help="window in training windows (default: the checkpoint's run, else 4)")
    parser.add_argument("--phase", choices=("predicted", "mixture"), default=None,
                        help="phase the sounds are synthesised with (default: the checkpoint's run, else predicted)")
    parser.add_argument("--no-videos", action="store_true", help="write the two .wav files only")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                        help="auto: CUDA when present, else CPU")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda, but torch sees no CUDA device")
    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else ("cpu" if args.device == "auto" else args.device)
    try:
        result = separate(args.video, args.checkpoint, args.out, window_multiple=args.window_multiple, device=device,
                          write_videos=not args.no_videos, phase=args.phase)
    except (io.MediaError, ValueError, FileNotFoundError, CheckpointError) as error:  # bad input: one line, not a traceback
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {', '.join(str(path) for path in result.files.values())}: {result.on_screen.size / result.sample_rate:.2f} s "
          f"at {result.sample_rate} Hz, {result.windows} windows of {result.window_multiple} training windows, "
          f"{result.phase} phase")
    return 0


if __name__ == "__main__":
    sys.exit(main())
