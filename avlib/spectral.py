"""The separation network's spectrogram, exactly as the official code frames it (docs/paper.md §7.2, §7.3, §10).

The official ``sourcesep.stft`` is ``tf.contrib.signal.stft`` on the mono mixture at 21 kHz: frames of
64 ms (1344 samples) every 16 ms (336 samples), a periodic Hann window, an FFT of 2048 (the next power
of two) giving 1025 bins of which the network keeps the first 1024, and no padding at either end
(``pad_end = False``). The magnitude goes to dB, 20 log10(max(1e-5, |X|)), clipped to [-100, 80] dB and
mapped linearly to [-1, 1]; the phase, atan2 in [-pi, pi], is divided by pi.

**Framing differs from torch.stft.** TF takes ``frame_length`` samples per frame, windows them and
zero-pads *at the end* to the FFT size; ``torch.stft(n_fft=2048, win_length=1344, center=False)``
takes 2048 samples per frame and centres the 1344-sample window inside them. So torch's frames start
352 samples later, there are fewer of them (``1 + (N - 2048) // 336`` instead of
``1 + (N - 1344) // 336``), and every phase differs by a linear ramp exp(-2 pi i k 352 / 2048). This
module frames as TF does (``unfold``, window, ``rfft(n=fft_size)``); ``tests/test_spectral.py`` checks
both the TF definition and the difference from torch.stft.

**The inverse.** TF's ``inverse_stft`` overlap-adds the windowed inverse FFTs with the same Hann
window as the synthesis window, without normalising: for a frame of four hops the sum of squared
windows is 1.5 everywhere inside the signal, so TF's waveforms are 1.5x too loud, and they taper in
the first and last 3 hops. :func:`inverse_stft` divides by that constant by default (``tf_gain=True``
keeps TF's gain), which makes the round trip exact away from the ends. :func:`overlap_add` exposes the
un-normalised sum and the squared-window envelope so that windows of a long input can be stitched by
dividing the summed frames by the summed envelope (:func:`avlib.separate.separate_waveform`).

Shapes: waveforms (..., N); spectrograms (..., T, F): time first, frequency second, as the paper's
128 x 1024 grid. F is ``num_bins`` for the network's representation and ``fft_size // 2 + 1`` for
complex spectra.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

#: Floor of the magnitude before the dB conversion (``soundrep.db_from_amp``): -100 dB.
MAGNITUDE_FLOOR = 1e-5


@dataclass(frozen=True)
class SpectralConfig:
    """The STFT of the separation network; the defaults are the paper's (``sep_params.base``).

    Args:
        sample_rate: Hz of the waveform (21000).
        frame_length: samples per frame (1344 = 64 ms).
        hop: samples between frames (336 = 16 ms, 75 % overlap).
        fft_size: FFT length (2048), giving fft_size // 2 + 1 = 1025 bins.
        num_bins: bins the network sees, the lowest ones (1024: the top, Nyquist bin is dropped).
        num_frames: spectrogram frames of one training window (128 for the 2.135 s window).
        db_min, db_max: the dB range mapped to [-1, 1] ([-100, 80]).
    """

    sample_rate: int = 21000
    frame_length: int = 1344
    hop: int = 336
    fft_size: int = 2048
    num_bins: int = 1024
    num_frames: int = 128
    db_min: float = -100.0
    db_max: float = 80.0

    def __post_init__(self) -> None:
        if self.hop < 1 or self.frame_length < self.hop:
            raise ValueError(f"SpectralConfig needs 1 <= hop <= frame_length, got hop {self.hop}, frame {self.frame_length}")
        if self.fft_size < self.frame_length:
            raise ValueError(f"SpectralConfig.fft_size {self.fft_size} is shorter than the frame {self.frame_length}")
        if not 1 <= self.num_bins <= self.fft_size // 2 + 1:
            raise ValueError(f"SpectralConfig.num_bins must lie in [1, {self.fft_size // 2 + 1}], got {self.num_bins}")
        if self.db_max <= self.db_min:
            raise ValueError(f"SpectralConfig needs db_min < db_max, got [{self.db_min}, {self.db_max}]")

    @classmethod
    def for_sample_rate(cls, sample_rate: int, fft_size: int | None = None, num_frames: int = 128) -> "SpectralConfig":
        """The paper's 16 ms hop and four-hop (64 ms) frame at another rate; FFT the next power of two.

        21000 Hz gives the paper's 1344 / 336 / 2048 / 1024 bins; 11025 Hz gives 704 / 176 / 1024 / 512.
        The official rule is ``int(0.064 * sr)`` for the frame (705 at 11025 Hz); a frame of exactly four
        hops keeps the Hann overlap-add constant (1.5), so the round trip is exact at every rate.
        ``fft_size`` may be larger (zero-padded frames, finer bins) to give the U-Net the bins it needs.
        """
        hop = int(0.016 * sample_rate)
        frame_length = 4 * hop
        fft = fft_size or 2 ** math.ceil(math.log2(frame_length))
        return cls(sample_rate=sample_rate, frame_length=frame_length, hop=hop, fft_size=fft, num_bins=fft // 2,
                   num_frames=num_frames)

    @property
    def full_bins(self) -> int:
        return self.fft_size // 2 + 1

    def samples_for(self, num_frames: int) -> int:
        """Samples that ``num_frames`` frames cover: (T - 1) hop + frame (44 016 for the paper's 128)."""
        return (num_frames - 1) * self.hop + self.frame_length

    def frames_for(self, num_samples: int) -> int:
        """Frames TF's stft makes of ``num_samples`` without end padding: 1 + (N - frame) // hop."""
        return 0 if num_samples < self.frame_length else 1 + (num_samples - self.frame_length) // self.hop

    @property
    def num_samples(self) -> int:
        """Samples covered by one training window's ``num_frames``."""
        return self.samples_for(self.num_frames)


class Spectrogram(NamedTuple):
    """The network's representation of a waveform: both (..., T, F) in [-1, 1]."""

    magnitude: Tensor  # dB clipped to [db_min, db_max], mapped to [-1, 1]
    phase: Tensor  # angle / pi


def hann_window(length: int, device: torch.device | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
    """TF's default ``hann_window(periodic=True)``: 0.5 - 0.5 cos(2 pi n / L), n = 0 .. L-1."""
    return torch.hann_window(length, periodic=True, device=device, dtype=dtype)


def _check_waveform(waveform: Tensor, config: SpectralConfig) -> None:
    if waveform.shape[-1] < config.frame_length:
        raise ValueError(
            f"a waveform of {waveform.shape[-1]} samples (shape {tuple(waveform.shape)}) is shorter than one "
            f"{config.frame_length}-sample STFT frame"
        )


def stft(waveform: Tensor, config: SpectralConfig = SpectralConfig()) -> Tensor:
    """Complex STFT framed as ``tf.contrib.signal.stft(pad_end=False)``.

    (..., N) real -> (..., T, fft_size // 2 + 1) complex, T = 1 + (N - frame_length) // hop. Frame t is
    samples [t hop, t hop + frame_length), Hann-windowed, zero-padded at its end to fft_size.
    """
    _check_waveform(waveform, config)
    frames = waveform.unfold(-1, config.frame_length, config.hop)  # (..., T, frame_length)
    window = hann_window(config.frame_length, waveform.device, frames.dtype)
    return torch.fft.rfft(frames * window, n=config.fft_size)  # (..., T, fft_size // 2 + 1)


def magnitude_to_db(magnitude: Tensor) -> Tensor:
    """20 log10(max(1e-5, |X|)): magnitudes to dB, floored at -100 dB."""
    return 20.0 * torch.log10(magnitude.clamp_min(MAGNITUDE_FLOOR))


def normalize_db(db: Tensor, config: SpectralConfig = SpectralConfig()) -> Tensor:
    """dB clipped to [db_min, db_max] and mapped linearly to [-1, 1] (``norm_range``)."""
    db = db.clamp(config.db_min, config.db_max)
    return 2.0 * (db - config.db_min) / (config.db_max - config.db_min) - 1.0


def denormalize_db(normalized: Tensor, config: SpectralConfig = SpectralConfig()) -> Tensor:
    """The inverse of :func:`normalize_db` on [-1, 1] (``unnorm_range``)."""
    return 0.5 * (config.db_max - config.db_min) * (normalized + 1.0) + config.db_min


def analyze(waveform: Tensor, config: SpectralConfig = SpectralConfig(), num_frames: int | None = None) -> Spectrogram:
    """A waveform's normalised log-magnitude and phase, the network's input and targets.

    (..., N) -> Spectrogram((..., T, num_bins), (..., T, num_bins)). ``num_frames`` crops the time axis
    as the official ``spec_len`` does (a 2.135 s window at 21 kHz yields exactly its 128 frames).
    """
    spectrum = stft(waveform, config)
    if num_frames is not None:
        if spectrum.shape[-2] < num_frames:
            raise ValueError(f"{waveform.shape[-1]} samples give {spectrum.shape[-2]} STFT frames, fewer than {num_frames}")
        spectrum = spectrum[..., :num_frames, :]
    spectrum = spectrum[..., : config.num_bins]
    return Spectrogram(normalize_db(magnitude_to_db(spectrum.abs()), config), torch.angle(spectrum) / math.pi)


def full_band(magnitude: Tensor, phase: Tensor, mixture_phase: Tensor, config: SpectralConfig = SpectralConfig()) -> Tensor:
    """Complex spectrum of all fft_size // 2 + 1 bins from the network's normalised kept bins.

    magnitude, phase (..., T, num_bins) in [-1, 1]; mixture_phase (..., T, >= full_bins) normalised, or
    (..., T, full_bins - num_bins) for just the missing bins. As the official ``process``: the missing
    top bins get the floor, -100 dB (``db_from_amp(0)``), and the mixture's phase.
    """
    missing = config.full_bins - config.num_bins
    db = denormalize_db(magnitude, config)
    angle = phase * math.pi
    if missing:
        db = torch.cat([db, db.new_full((*db.shape[:-1], missing), magnitude_to_db(db.new_zeros(())).item())], dim=-1)
        angle = torch.cat([angle, mixture_phase[..., -missing:] * math.pi], dim=-1)
    return torch.polar(10.0 ** (db / 20.0), angle)


def window_envelope(num_frames: int, config: SpectralConfig = SpectralConfig(), device: torch.device | None = None) -> Tensor:
    """Sum of squared synthesis windows of ``num_frames`` overlap-added frames: (samples_for(T),)."""
    window = hann_window(config.frame_length, device)
    squares = (window**2).expand(num_frames, -1)
    return _fold(squares, config)


def _fold(frames: Tensor, config: SpectralConfig) -> Tensor:
    """Overlap-add (..., T, frame_length) frames at ``hop`` -> (..., samples_for(T))."""
    *lead, num_frames, frame_length = frames.shape
    length = config.samples_for(num_frames)
    flat = frames.reshape(-1, num_frames, frame_length).transpose(1, 2)  # (B, frame_length, T)
    out = torch.nn.functional.fold(flat, output_size=(1, length), kernel_size=(1, frame_length), stride=(1, config.hop))
    return out.reshape(*lead, length)


def overlap_add(spectrum: Tensor, config: SpectralConfig = SpectralConfig()) -> Tensor:
    """TF's ``inverse_stft`` exactly: the un-normalised overlap-add of Hann-windowed inverse FFTs.

    (..., T, fft_size // 2 + 1) complex -> (..., (T - 1) hop + frame_length). Inside the signal it is the
    waveform times the window envelope (1.5 for frames of four hops; see :func:`window_envelope`).
    """
    if spectrum.shape[-1] != config.full_bins:
        raise ValueError(f"expected {config.full_bins} frequency bins, got spectrum of shape {tuple(spectrum.shape)}")
    frames = torch.fft.irfft(spectrum, n=config.fft_size)[..., : config.frame_length]
    return _fold(frames * hann_window(config.frame_length, spectrum.device, frames.dtype), config)


def inverse_stft(spectrum: Tensor, config: SpectralConfig = SpectralConfig(), tf_gain: bool = False) -> Tensor:
    """Waveform from a complex spectrum (..., T, fft_size // 2 + 1) -> (..., (T - 1) hop + frame_length).

    TF's overlap-add divided by the envelope's value inside the signal (1.5 for frames of four hops), so
    that ``inverse_stft(stft(x))`` equals x except in the first and last ``frame_length - hop`` samples,
    which taper as TF's do. ``tf_gain=True`` returns TF's output unchanged (1.5x).
    """
    waveform = overlap_add(spectrum, config)
    return waveform if tf_gain else waveform / interior_gain(config)


def interior_gain(config: SpectralConfig = SpectralConfig()) -> float:
    """The squared-window envelope away from the ends: sum_k w(n + k hop)^2, averaged over one hop."""
    window = hann_window(config.frame_length, dtype=torch.float64)
    return float((window**2).sum() / config.hop)


def synthesize(magnitude: Tensor, phase: Tensor, mixture_phase: Tensor, config: SpectralConfig = SpectralConfig(),
               tf_gain: bool = False) -> Tensor:
    """Waveform from the network's normalised output: :func:`full_band` then :func:`inverse_stft`.

    magnitude, phase (..., T, num_bins) in [-1, 1], mixture_phase (..., T, F >= missing bins) -> (..., N).
    """
    return inverse_stft(full_band(magnitude, phase, mixture_phase, config), config, tf_gain)
