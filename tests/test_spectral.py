"""The separation STFT: TF's framing, the dB / phase normalisation, and the round trip (docs/paper.md §7.2, §7.3, §10)."""

import math

import numpy as np
import pytest
import torch

from avlib.spectral import (
    SpectralConfig,
    analyze,
    denormalize_db,
    full_band,
    interior_gain,
    inverse_stft,
    normalize_db,
    overlap_add,
    stft,
    synthesize,
    window_envelope,
)

PAPER = SpectralConfig()
SMALL = SpectralConfig.for_sample_rate(8000)  # 512 / 128 / 512: fast


def tf_stft_reference(signal: np.ndarray, frame_length: int, hop: int, fft_size: int) -> np.ndarray:
    """tf.contrib.signal.stft(pad_end=False) written out: frames from sample 0, periodic Hann, FFT padded at the end."""
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(frame_length) / frame_length)
    count = 1 + (len(signal) - frame_length) // hop
    frames = np.stack([signal[t * hop : t * hop + frame_length] * window for t in range(count)])
    return np.fft.rfft(frames, n=fft_size)


def test_paper_configuration_and_its_scaled_versions():
    assert (PAPER.sample_rate, PAPER.frame_length, PAPER.hop, PAPER.fft_size, PAPER.num_bins) == (21000, 1344, 336, 2048, 1024)
    assert SpectralConfig.for_sample_rate(21000) == PAPER
    synth = SpectralConfig.for_sample_rate(11025)
    assert (synth.frame_length, synth.hop, synth.fft_size, synth.num_bins) == (704, 176, 1024, 512)
    # the paper's 2.135 s window: 63 frames at 29.97 fps = 44 144 samples -> the 128 STFT frames of spec_len
    assert PAPER.frames_for(44144) == 128 and PAPER.samples_for(128) == 44016 <= 44144
    with pytest.raises(ValueError, match="num_bins"):
        SpectralConfig(num_bins=2000)


def test_stft_frames_exactly_as_tensorflow():
    rng = np.random.default_rng(0)
    signal = rng.standard_normal(PAPER.samples_for(20) + 100)
    ours = stft(torch.from_numpy(signal), PAPER).numpy()
    reference = tf_stft_reference(signal, PAPER.frame_length, PAPER.hop, PAPER.fft_size)
    assert ours.shape == reference.shape == (20, 1025)
    np.testing.assert_allclose(ours, reference, atol=1e-9)


def test_torch_stft_frames_differ_by_the_centred_window():
    """torch.stft centres the 1344-sample window in 2048-sample frames: 352 samples later, a linear phase ramp."""
    rng = np.random.default_rng(1)
    signal = torch.from_numpy(rng.standard_normal(PAPER.samples_for(40)))
    window = torch.hann_window(PAPER.frame_length, periodic=True, dtype=torch.float64)
    theirs = torch.stft(signal, PAPER.fft_size, PAPER.hop, PAPER.frame_length, window, center=False, return_complex=True).T
    offset = (PAPER.fft_size - PAPER.frame_length) // 2
    ours = stft(signal[offset:], PAPER)[: theirs.shape[0]]
    ramp = torch.exp(-2j * math.pi * torch.arange(PAPER.full_bins, dtype=torch.float64) * offset / PAPER.fft_size)
    assert theirs.shape[0] < stft(signal, PAPER).shape[0]  # torch makes fewer frames of the same signal
    torch.testing.assert_close(theirs, ours * ramp, atol=1e-8, rtol=1e-8)
    assert not torch.allclose(theirs, stft(signal, PAPER)[: theirs.shape[0]], atol=1e-3)


def test_round_trip_is_exact_inside_and_tensorflow_gain_is_one_and_a_half():
    rng = np.random.default_rng(2)
    signal = torch.from_numpy(rng.standard_normal((2, SMALL.samples_for(64))))
    spectrum = stft(signal, SMALL)
    rebuilt = inverse_stft(spectrum, SMALL)
    inside = slice(SMALL.frame_length - SMALL.hop, signal.shape[1] - (SMALL.frame_length - SMALL.hop))
    torch.testing.assert_close(rebuilt[:, inside], signal[:, inside], atol=1e-9, rtol=1e-9)
    assert interior_gain(SMALL) == pytest.approx(1.5)
    torch.testing.assert_close(inverse_stft(spectrum, SMALL, tf_gain=True), 1.5 * rebuilt)
    envelope = window_envelope(64, SMALL)
    torch.testing.assert_close(envelope[inside], torch.full_like(envelope[inside], 1.5), atol=1e-6, rtol=0)
    assert envelope[0] == 0  # TF's output tapers to zero at the ends
    torch.testing.assert_close(overlap_add(spectrum, SMALL), rebuilt * 1.5)


def test_log_magnitude_and_phase_are_normalised_to_minus_one_one():
    db = torch.tensor([-150.0, -100.0, -10.0, 80.0, 120.0])
    normalized = normalize_db(db, PAPER)
    torch.testing.assert_close(normalized, torch.tensor([-1.0, -1.0, 0.0, 1.0, 1.0]))
    torch.testing.assert_close(denormalize_db(normalized, PAPER), db.clamp(-100, 80))
    rng = np.random.default_rng(3)
    signal = torch.from_numpy(rng.standard_normal((3, SMALL.samples_for(128) + 50))).float() * 0.1
    spectrogram = analyze(signal, SMALL, num_frames=128)
    assert spectrogram.magnitude.shape == spectrogram.phase.shape == (3, 128, SMALL.num_bins)
    for values in spectrogram:
        assert values.min() >= -1 and values.max() <= 1
    magnitude = stft(signal, SMALL)[:, :128, : SMALL.num_bins].abs()
    expected = normalize_db(20 * torch.log10(magnitude.clamp_min(1e-5)), SMALL)
    torch.testing.assert_close(spectrogram.magnitude, expected)


def test_network_representation_synthesises_the_waveform():
    """Kept bins + the mixture's phase for the dropped Nyquist bin: a band-limited signal comes back."""
    sample_rate = SMALL.sample_rate
    t = torch.arange(SMALL.samples_for(128)) / sample_rate
    signal = (0.3 * torch.sin(2 * math.pi * 440 * t) + 0.2 * torch.sin(2 * math.pi * 1234 * t + 1.0))[None]
    spectrogram = analyze(signal, SMALL, num_frames=128)
    mixture_phase = torch.angle(stft(signal, SMALL)[:, :128]) / math.pi
    rebuilt = synthesize(spectrogram.magnitude, spectrogram.phase, mixture_phase, SMALL)
    inside = slice(SMALL.frame_length, -SMALL.frame_length)
    error = (rebuilt[:, inside] - signal[:, inside]).abs().max()
    assert error < 1e-3
    spectrum = full_band(spectrogram.magnitude, spectrogram.phase, mixture_phase, SMALL)
    assert spectrum.shape[-1] == SMALL.full_bins
    assert spectrum[..., -1].abs().max() == pytest.approx(1e-5)  # the dropped bin gets -100 dB


def test_too_short_a_waveform_is_refused():
    with pytest.raises(ValueError, match="shorter than one"):
        stft(torch.zeros(100), PAPER)
    with pytest.raises(ValueError, match="fewer than 128"):
        analyze(torch.zeros(PAPER.samples_for(10)), PAPER, num_frames=128)
