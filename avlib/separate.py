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
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

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
#: Seconds of the input read at a time; a video no longer than this is read in one piece.
CHUNK_SECONDS = 30.0


@dataclass
class SeparationResult:
    """What :func:`separate` wrote and computed, at the input's own sample rate and length.

    ``on_screen``, ``off_screen`` and ``mixture`` (the input's mono sound), (N,) float32, are kept only when
    :func:`separate` was asked to (``keep_sound``); the files are always written.
    """

    on_screen: np.ndarray | None = None
    off_screen: np.ndarray | None = None
    mixture: np.ndarray | None = None
    sample_rate: int = 0
    files: dict[str, Path] = field(default_factory=dict)
    windows: int = 0
    model_sample_rate: int = 0
    window_multiple: int = 0
    phase: str = ""
    num_samples: int = 0
    streamed_residual: float = math.nan

    @property
    def residual(self) -> float:
        """||on + off - mixture|| / ||mixture||: how much of the input the two outputs do not account for."""
        if self.on_screen is None:
            return self.streamed_residual
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


@dataclass
class _Windows:
    """The sliding windows of :func:`separate_waveform` over ``num_samples`` at the model's rates (see there)."""

    spec_frames: int  # STFT frames per window
    covered: int  # samples the window's STFT frames cover
    window_frames: int  # video frames per window
    window_samples: int
    pad_frames: int  # the input is padded by this many frames (and samples) at the start
    pad_samples: int
    starts: list[int]  # first (padded) frame of each window
    total_samples: int  # padded length

    @classmethod
    def of(cls, model: SeparationNet, num_samples: int, window_multiple: int) -> "_Windows":
        config = model.config
        spectral, fps, rate = config.spectral, config.fps, config.spectral.sample_rate
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
        total_samples = io.num_samples_for(starts[-1], fps, rate) + window_samples
        return cls(spec_frames, covered, window_frames, window_samples, pad_frames, pad_samples, starts, total_samples)


@torch.no_grad()
def separate_windows(model: SeparationNet, windows: _Windows, frames: Callable[[int, int], np.ndarray] | None,
                     audio: Callable[[int, int], np.ndarray], num_samples: int, batch_size: int = 2,
                     phase: str = "predicted", done: Callable[[int], object] | None = None) -> Iterator[np.ndarray]:
    """The stitched (on_screen, off_screen) sound, (2, n) float32 pieces in order, ``num_samples`` in all.

    ``audio(first, stop)`` gives the padded input's samples [first, stop) (2, stop - first) and ``frames(first,
    stop)`` its frames; both are asked in increasing order. A sample is final once no later window covers it,
    so only the windows of one batch and the samples they overlap are held.
    """
    check_phase(phase)
    config = model.config
    spectral, fps, rate = config.spectral, config.fps, config.spectral.sample_rate
    device = next(model.parameters()).device
    model.eval()
    window_squares = window_envelope(windows.spec_frames, spectral).double().numpy()
    base = 0  # padded sample index of sums[:, 0]
    sums = np.zeros((2, 0), dtype=np.float64)
    envelope = np.zeros(0, dtype=np.float64)
    emitted = windows.pad_samples  # next padded sample to hand out
    end = windows.pad_samples + num_samples

    def final(until: int) -> np.ndarray:
        nonlocal base, sums, envelope, emitted
        stop = max(min(until, end), emitted)
        lo, hi = emitted - base, stop - base
        piece = np.divide(sums[:, lo:hi], envelope[lo:hi], out=np.zeros((2, hi - lo)), where=envelope[lo:hi] > 1e-8)
        emitted = stop
        sums, envelope, base = sums[:, hi:], envelope[hi:], stop
        return piece.astype(np.float32)

    for first in range(0, len(windows.starts), batch_size):
        chunk = windows.starts[first : first + batch_size]
        offsets = [io.num_samples_for(start, fps, rate) for start in chunk]
        raw = torch.from_numpy(np.stack([audio(offset, offset + windows.window_samples) for offset in offsets]))
        mixture = normalize_rms(raw, INPUT_RMS)
        channel_gains = INPUT_RMS / raw.pow(2).mean(-1).sqrt().clamp_min(RMS_EPS)  # (b, 2), as normalize_rms
        # the gain of what the spectrogram hears: the channels' mean gain, or its one channel's
        channel = model.config.spectrogram_channel
        gains = channel_gains.mean(-1) if channel is None else channel_gains[:, channel]
        video = None
        if frames is not None:
            video = normalize_frames(torch.from_numpy(np.stack([frames(s, s + windows.window_frames) for s in chunk])).to(device))
        output = model(video, mixture.to(device))
        mixture_phase = torch.angle(stft(mono_mix(mixture.to(device), channel), spectral)[:, : windows.spec_frames]) / math.pi
        reach = offsets[-1] + windows.covered - base
        if reach > envelope.shape[0]:
            sums = np.pad(sums, ((0, 0), (0, reach - envelope.shape[0])))
            envelope = np.pad(envelope, (0, reach - envelope.shape[0]))
        for k, source in enumerate(("on_screen", "off_screen")):
            estimated_phase = source_phase(output, source, mixture_phase, phase)
            spectrum = full_band(output[f"{source}_magnitude"].float(), estimated_phase, mixture_phase, spectral)
            waves = (overlap_add(spectrum, spectral).cpu().double() / gains[:, None].double()).numpy()
            for wave, offset in zip(waves, offsets):
                sums[k, offset - base : offset - base + windows.covered] += wave
        for offset in offsets:
            envelope[offset - base : offset - base + windows.covered] += window_squares
        if done is not None:
            done(len(chunk))
        following = first + batch_size
        if following < len(windows.starts) and emitted < end:
            piece = final(io.num_samples_for(windows.starts[following], fps, rate))
            if piece.shape[1]:
                yield piece
    if emitted < end:
        yield final(end)


def separate_waveform(model: SeparationNet, frames: np.ndarray | None, audio: np.ndarray, window_multiple: int = 4,
                      batch_size: int = 2, phase: str = "predicted") -> tuple[np.ndarray, np.ndarray, int]:
    """On- and off-screen sound of a whole recording held in memory, in sliding windows of half overlap, at the
    model's rates.

    frames (T, crop, crop, 3) uint8 at the model's fps (ignored without video), audio (2, N) at its sample
    rate -> (on_screen (N,), off_screen (N,), number of windows). Each window holds ``window_multiple``
    training windows (the paper's ``sep_video``: 4, 8.3 s) and is RMS-normalised per channel to 0.141, as
    in ``sep_video.py``, its outputs scaled back. Windows are stitched by summing every window's
    overlap-added frames and dividing by the summed squared-window envelope, so each sample is the
    envelope-weighted mean of all frames that cover it (the official script keeps the first window's
    samples); the input is padded at both ends (zeros, the edge frame) so that every sample is covered by
    untapered frames. ``phase`` as in :func:`avlib.models.unet.predict`. :func:`separate` streams the same
    windows (:func:`separate_windows`) from a file.
    """
    check_phase(phase)
    if audio.ndim != 2 or audio.shape[0] != 2 or audio.shape[1] == 0:
        raise ValueError(f"expected stereo audio of shape (2, N), got {audio.shape}")
    uses_video = model.features is not None
    if uses_video and (frames is None or len(frames) == 0):
        raise ValueError("this model needs the video's frames")
    num_samples = audio.shape[1]
    windows = _Windows.of(model, num_samples, window_multiple)
    sound = _Padded(lambda first, stop: audio[:, first:stop], num_samples, windows.pad_samples, num_samples + 1)
    pictures = None
    if uses_video:
        pictures = _Padded(lambda first, stop: frames[first:stop], len(frames), windows.pad_frames, len(frames) + 1,
                           edge=True)
    pieces = list(separate_windows(model, windows, pictures, sound, num_samples, batch_size, phase))
    estimates = np.concatenate(pieces, axis=1)
    return estimates[0], estimates[1], len(windows.starts)


class _Padded:
    """Items [first, stop) of a padded sequence read ``chunk`` items at a time by ``read(first, stop)`` from a
    source of ``length`` items: ``pad`` items before it, then zeros after it (``edge``: the first and last item
    repeated instead, as frames). Access must not go back further than the chunk last read."""

    def __init__(self, read: Callable[[int, int], np.ndarray], length: int, pad: int, chunk: int, edge: bool = False):
        self.read, self.length, self.pad, self.chunk, self.edge = read, length, pad, max(1, chunk), edge
        self.loaded: dict[int, np.ndarray] = {}
        self.template: np.ndarray | None = None  # the first piece read: its dtype and item shape

    def _piece(self, index: int) -> np.ndarray:
        if index not in self.loaded:
            first = index * self.chunk
            self.loaded[index] = self.read(first, min(first + self.chunk, self.length))
            if self.template is None:
                self.template = self.loaded[index]
        return self.loaded[index]

    def __call__(self, first: int, stop: int) -> np.ndarray:
        positions = np.arange(first, stop) - self.pad
        if self.edge:
            positions = np.clip(positions, 0, self.length - 1)
        inside = (positions >= 0) & (positions < self.length)
        needed = positions[inside]
        for index in [i for i in self.loaded if (i + 1) * self.chunk <= (needed[0] if needed.size else self.length)]:
            del self.loaded[index]  # behind every later request
        if not needed.size:  # past the end of the sound: zeros (frames always have an edge item)
            sample = self.template if self.template is not None else self._piece(0)
            return np.zeros((sample.shape[0], stop - first), dtype=sample.dtype)
        parts = [self._piece(i) for i in range(needed[0] // self.chunk, needed[-1] // self.chunk + 1)]
        joined = np.concatenate(parts, axis=0 if self.edge else -1) if len(parts) > 1 else parts[0]
        local = needed - (needed[0] // self.chunk) * self.chunk
        if self.edge:  # frames (T, H, W, 3): every position is inside
            return joined[local]
        out = np.zeros((joined.shape[0], stop - first), dtype=joined.dtype)
        out[:, inside] = joined[:, local]
        return out


def read_sound(path: Path, info: io.VideoInfo, num_samples: int, sample_rate: int, channels: int,
               first: int = 0) -> np.ndarray:
    """``num_samples`` of a video's sound from sample ``first``, (channels, num_samples); a track that decodes
    shorter than its header says (AAC encoder padding can cost tens of ms) ends in silence instead of failing."""
    seconds = (first + num_samples) / sample_rate
    for shortfall in range(0, 16):
        available = num_samples - int(round(shortfall * sample_rate / info.fps))
        try:
            audio = io.read_audio(path, first / sample_rate, max(available, 1), sample_rate=sample_rate, channels=channels)
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


def output_folder(path: str | os.PathLike, mkdir: bool = False) -> Path:
    """``path`` as the output folder: made if missing, but its parent must exist unless ``mkdir``."""
    path = Path(path)
    if not path.is_dir():
        if not path.parent.is_dir() and not mkdir:
            raise FileNotFoundError(f"{path}: its parent folder {path.parent} does not exist; create it or pass --mkdir")
        path.mkdir(parents=True, exist_ok=True)
    return path


class _WavWriter:
    """Mono 16-bit PCM WAV written piece by piece (as :func:`write_wav`), atomically."""

    def __init__(self, path: Path, sample_rate: int):
        import wave

        from avlib.files import atomic_path

        self.path, self._atomic = path, atomic_path(path)
        self._wave = wave.open(str(self._atomic.__enter__()), "wb")
        self._wave.setnchannels(1)
        self._wave.setsampwidth(2)
        self._wave.setframerate(sample_rate)

    def write(self, samples: np.ndarray) -> None:
        clipped = np.clip(np.asarray(samples, dtype=np.float64), -1.0, 1.0)
        self._wave.writeframes(np.round(clipped * 32767).astype("<i2").tobytes())

    def close(self, error: BaseException | None = None) -> None:
        self._wave.close()
        self._atomic.__exit__(type(error) if error else None, error, error.__traceback__ if error else None)


def _read_wav(path: Path, chunk: int) -> Iterator[np.ndarray]:
    """A mono 16-bit WAV in pieces of ``chunk`` samples, float32 in [-1, 1]."""
    import wave

    with wave.open(str(path), "rb") as source:
        while True:
            data = source.readframes(chunk)
            if not data:
                return
            yield np.frombuffer(data, dtype="<i2").astype(np.float32) / 32767


def separate(video: str | os.PathLike, checkpoint: str | os.PathLike | SeparationNet, out_dir: str | os.PathLike, *,
             window_multiple: int | None = None, device: str = "cpu", batch_size: int = 2, write_videos: bool = True,
             phase: str | None = None, keep_sound: bool = True, mkdir: bool = False, progress: bool = False,
             chunk_seconds: float = CHUNK_SECONDS) -> SeparationResult:
    """Split a video's sound into the on-screen and the off-screen sound, and write them to ``out_dir``.

    For a video with one visible speaker and sound (docs/paper.md §7.9). Writes ``on_screen.wav`` and
    ``off_screen.wav`` (mono 16-bit PCM at the input's sample rate, exactly as many samples as the input's
    sound over the video's duration) and, with ``write_videos``, ``on_screen.mp4`` and ``off_screen.mp4``:
    every frame of the input at its own time, with each sound. ``checkpoint`` is a separation checkpoint (or a
    loaded model). ``out_dir`` is made if missing; its parent must exist unless ``mkdir``.

    Streams: the input is read ``chunk_seconds`` at a time (frames at the model's size), the windows' outputs
    are stitched, resampled and written as they become final, and the videos are decoded and encoded frame by
    frame, so memory is bounded by a chunk and a window, not by the video, unless ``keep_sound`` keeps the
    three sounds (``on_screen``, ``off_screen``, ``mixture``: 12 bytes a sample) in the result. A video no
    longer than a chunk is read in one piece; a longer one differs from that by the resampler's rounding
    at the chunks' seams (about 1e-7).

    ``window_multiple`` and ``phase`` (as in :func:`avlib.models.unet.predict`) of None are those the
    checkpoint's evaluation used (:func:`inference_settings`), else the paper's (4, ``"predicted"``).
    The model works at its own rates (frames squashed and centre-cropped as in training, audio resampled with
    soxr; see :func:`separate_waveform`); its outputs are resampled back to the input's rate. Sound above the
    model's Nyquist frequency (5.5 kHz in the synth profile) is in neither output. A file that cannot be read,
    has no video stream or no sound raises an :class:`avlib.io.MediaError` naming it.
    """
    import soxr
    from tqdm.auto import tqdm

    video = Path(video)
    out_dir = output_folder(out_dir, mkdir)
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
    rate, native_rate = config.spectral.sample_rate, info.sample_rate
    model_samples = int(duration * rate)
    native_samples = int(duration * native_rate)
    windows = _Windows.of(model, model_samples, window_multiple)
    sound = _Padded(lambda first, stop: read_sound(video, info, stop - first, rate, 2, first), model_samples,
                    windows.pad_samples, int(chunk_seconds * rate))
    pictures = None
    if model.features is not None:
        count = max(1, int(duration * config.fps - 1e-6))
        pictures = _Padded(lambda first, stop: io.read_clip(video, first / config.fps, fps=config.fps, num_frames=stop - first,
                                                            size=config.size, crop=config.crop, sample_rate=rate).frames,
                           count, windows.pad_frames, int(chunk_seconds * config.fps), edge=True)
    mixture_source = _Padded(lambda first, stop: read_sound(video, info, stop - first, native_rate, 1, first)[0][None],
                             native_samples, 0, int(chunk_seconds * native_rate))
    resamplers = [soxr.ResampleStream(rate, native_rate, 1, dtype="float64", quality="HQ") for _ in range(2)]
    names = ("on_screen", "off_screen")
    writers = {name: _WavWriter(out_dir / f"{name}.wav", native_rate) for name in names}
    kept: dict[str, list[np.ndarray]] = {name: [] for name in (*names, "mixture")}
    done = 0  # native samples written
    squares = np.zeros(2)  # sum of (on + off - mixture)^2 and of mixture^2, for the residual
    bar = tqdm(total=len(windows.starts), desc="windows", unit="window", disable=not progress, leave=False)

    def native(pieces: list[np.ndarray]) -> int:
        """Write the first samples of the two native-rate sounds (up to the input's length); return how many were taken."""
        nonlocal done
        taken = min(len(piece) for piece in pieces)
        stop = min(done + taken, native_samples)
        on_native, off_native = (piece[: stop - done].astype(np.float32) for piece in pieces)
        mixture = mixture_source(done, stop)[0]
        for name, values in zip(names, (on_native, off_native)):
            writers[name].write(values)
        squares[0] += float(np.sum((on_native.astype(np.float64) + off_native - mixture) ** 2))
        squares[1] += float(np.sum(mixture.astype(np.float64) ** 2))
        if keep_sound:
            for name, values in zip((*names, "mixture"), (on_native, off_native, mixture)):
                kept[name].append(values)
        done = stop
        return taken

    error = None
    try:
        pending = [np.zeros(0), np.zeros(0)]  # native-rate samples not yet written
        for piece in separate_windows(model, windows, pictures, sound, model_samples, batch_size, phase, bar.update):
            for k in range(2):
                converted = piece[k].astype(np.float64)
                fresh = converted if rate == native_rate else resamplers[k].resample_chunk(converted)
                pending[k] = np.concatenate([pending[k], fresh])
            used = native(pending)
            pending = [values[used:] for values in pending]
        if rate != native_rate:
            pending = [np.concatenate([values, stream.resample_chunk(np.zeros(0), last=True)])
                       for values, stream in zip(pending, resamplers)]
        if done < native_samples:  # the resampler's last samples, then zeros to the input's length
            native([np.pad(values, (0, max(0, native_samples - done - len(values)))) for values in pending])
    except BaseException as raised:
        error = raised
        raise
    finally:
        bar.close()
        for writer in writers.values():
            writer.close(error)
    result = SeparationResult(windows=len(windows.starts), model_sample_rate=rate, sample_rate=native_rate,
                              window_multiple=window_multiple, phase=phase, num_samples=native_samples)
    if keep_sound:
        result.on_screen, result.off_screen, result.mixture = (np.concatenate(kept[name]) for name in (*names, "mixture"))
    else:
        result.streamed_residual = float(np.sqrt(squares[0]) / max(np.sqrt(squares[1]), 1e-12))
    for name in names:
        result.files[f"{name}.wav"] = out_dir / f"{name}.wav"
    if write_videos:
        result.files.update(_write_videos(video, info, out_dir, names, progress))
    return result


def _write_videos(video: Path, info: io.VideoInfo, out_dir: Path, names: Sequence[str], progress: bool) -> dict[str, Path]:
    """``<name>.mp4`` for each name: every frame of ``video`` at its own time with ``<name>.wav``'s sound, decoded once."""
    import av
    from av.video.reformatter import VideoReformatter
    from tqdm.auto import tqdm

    from avlib.writer import VideoSink

    rotation = info.rotation  # written as displayed: upright pixels, no rotation tag
    width, height = info.width - info.width % 2, info.height - info.height % 2
    sound = {name: _read_wav(out_dir / f"{name}.wav", info.sample_rate) for name in names}  # one second at a time
    heard = 0.0  # seconds of sound written to every sink
    paths = {name: out_dir / f"{name}.mp4" for name in names}
    bar = tqdm(total=info.num_frames, desc="videos", unit="frame", disable=not progress, leave=False)
    with ExitStack() as stack:
        sinks = {name: stack.enter_context(VideoSink(paths[name], width, height, info.fps, sample_rate=info.sample_rate,
                                                     channels=1)) for name in names}
        scaler = VideoReformatter()
        try:
            with av.open(str(video), metadata_errors="ignore") as source:
                stream = source.streams.video[0]
                stream.thread_type = "AUTO"
                for frame in source.decode(stream):
                    if frame.time is None:
                        continue
                    time = frame.time - info.video_start
                    while heard < time + 1.0:  # keep the sound a second ahead of the pictures, for the muxer
                        pieces = {name: next(sound[name], None) for name in names}
                        if any(piece is None for piece in pieces.values()):
                            heard = math.inf
                            break
                        for name, piece in pieces.items():
                            sinks[name].sound(piece[None], start=0.0)
                        heard += len(pieces[names[0]]) / info.sample_rate
                    image = np.ascontiguousarray(io.upright(scaler.reformat(frame, format="rgb24").to_ndarray(), rotation)[:height, :width])
                    for name in names:
                        sinks[name].picture(image, time)
                    bar.update()
        except av.error.FFmpegError as error:
            raise io.CorruptFileError(video, f"decoding the frames for the output videos failed ({error})") from error
        finally:
            bar.close()
        for name in names:
            for piece in sound[name]:
                sinks[name].sound(piece[None])
    return {f"{name}.mp4": path for name, path in paths.items()}


# ----------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    from avlib.checkpoint import CheckpointError
    from avlib.localize import add_device_argument, pick_device

    parser = argparse.ArgumentParser(
        prog="python -m avlib.separate",
        description="Split a video's sound into the on-screen and the off-screen sound (docs/paper.md §7.9): writes "
                    "on_screen.wav, off_screen.wav and the video with each into --out. Streams: memory does not grow "
                    "with the video's length.")
    parser.add_argument("video", help="any video with sound and one visible speaker (any size, frame rate, length)")
    parser.add_argument("--checkpoint", required=True, help="a separation checkpoint (.pt) from the separation task, "
                        "e.g. checkpoints/<profile>/separation/full/checkpoint.pt")
    parser.add_argument("--out", required=True, help="folder for the outputs (made if missing; its parent must exist)")
    parser.add_argument("--mkdir", action="store_true", help="also make the missing parent folders of --out")
    parser.add_argument("--window-multiple", type=int, default=None,
                        help="window in training windows (default: what the checkpoint's evaluation used, else 4)")
    parser.add_argument("--phase", choices=("predicted", "mixture"), default=None,
                        help="phase the sounds are synthesised with (default: what the checkpoint's evaluation used, "
                             "else predicted)")
    parser.add_argument("--no-videos", action="store_true", help="write the two .wav files only")
    add_device_argument(parser)
    args = parser.parse_args(argv)
    try:
        device = pick_device(args.device)
        result = separate(args.video, args.checkpoint, args.out, window_multiple=args.window_multiple, device=device,
                          write_videos=not args.no_videos, phase=args.phase, keep_sound=False, mkdir=args.mkdir,
                          progress=True)
    except (io.MediaError, ValueError, FileNotFoundError, CheckpointError) as error:  # bad input: one line, not a traceback
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {', '.join(str(path) for path in result.files.values())}: {result.num_samples / result.sample_rate:.2f} s "
          f"at {result.sample_rate} Hz, {result.windows} windows of {result.window_multiple} training windows, "
          f"{result.phase} phase, residual {result.residual:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
