"""On/off-screen source separation: settings, training, evaluation, and ``separate`` for any video (paper section 7).

The pieces: the STFT (:mod:`avlib.spectral`), the U-Net with multisensory features (:mod:`avlib.models.unet`),
mixtures and the fixed test list (:mod:`avlib.data.mixtures`), the losses (:mod:`avlib.losses`) and the
metrics (:mod:`avlib.metrics`). This module joins them for notebook 04 (and 05):

- :func:`settings_for` gives each profile's :class:`SeparationSettings` (``paper``: the paper's);
- :func:`build_model` makes the full model from the pretrained multisensory net, or the audio-only U-Net;
- :class:`SeparationLoss` is the loss function :func:`avlib.train.fit` calls;
- :func:`predict` turns the network's maps into waveforms, :func:`evaluate` scores the test list;
- :func:`separate` splits a user's video into ``on_screen.wav`` and ``off_screen.wav`` (and videos).

The paper's separation claims, as the project's source summary states them, are in
:data:`avlib.report.claims.CLAIMS`: no number of the paper's separation tables could be verified (docs/paper.md §7.8).
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from avlib import io
from avlib.data.mixtures import RMS_EPS, MixtureConfig, normalize_rms
from avlib.losses import pit_loss, separation_loss
from avlib.metrics import best_permutation, score_pair
from avlib.models.multisensory import normalize_frames
from avlib.models.unet import (
    MultisensoryFeatures,
    SeparationConfig,
    SeparationNet,
    UNetConfig,
    from_checkpoint,
    mono_mix,
)
from avlib.spectral import SpectralConfig, analyze, full_band, inverse_stft, overlap_add, stft, window_envelope

#: RMS of the mixture fed to the network at inference, per channel: two sources of 0.1 (``sep_video.py``).
INPUT_RMS = math.sqrt(0.1**2 + 0.1**2)

#: The paper's separation claims, as the project's source summary states them (docs/paper.md §12). UNVERIFIED:
#: the summary is a reading of the paper, and none of the paper's separation numbers could be checked.


@dataclass(frozen=True)
class SeparationSettings:
    """Notebook 04's settings for one profile.

    model: the full model's :class:`SeparationConfig` (the audio-only baseline is the same with
        ``video="none"``); its ``spectral.num_frames`` and the feature net's rate fix the training window.
    steps, batch_size: training of the full model; clips per batch, each pair in both orders (paper:
        160 k iterations, batch 6 per GPU).
    pit_steps, pit_batch_size: the u-net PIT baseline; mixtures per batch (paper: 24 clips, 12 mixtures).
    lr, lr_milestones, lr_gamma, grad_clip, weight_decay: Adam 1e-4, x0.1 at 120 k, clip 10, L2 1e-5 on the
        U-Net only (docs/paper.md §7.5).
    test_pairs: mixtures in the fixed test list; eval_batch: windows per forward pass at evaluation.
    window_multiple: :func:`separate`'s windows in training windows (paper's ``sep_video``: 4, 8.3 s).
    examples_shown: test pairs shown with spectrograms and players.
    phase: the phase the estimates are synthesised with in :func:`separate` and the headline rows:
        ``"predicted"`` (the paper's) or ``"mixture"`` (the official ``phase_type = 'orig'``); both are scored.
    magnitude_loss: ``"log"`` (the paper's L1 on normalised log-magnitude) or ``"linear"`` (L1 on amplitudes,
        see :func:`avlib.losses.magnitude_l1`).
    """

    model: SeparationConfig
    steps: int
    batch_size: int
    pit_steps: int
    pit_batch_size: int
    lr: float = 1e-4
    lr_milestones: tuple[int, ...] = ()
    lr_gamma: float = 0.1
    grad_clip: float = 10.0
    weight_decay: float = 1e-5
    test_pairs: int = 100
    eval_batch: int = 8
    window_multiple: int = 4
    examples_shown: int = 3
    checkpoint_every: int = 100
    log_every: int = 10
    amp: str = "none"
    phase: str = "predicted"
    magnitude_loss: str = "log"

    @property
    def mixture(self) -> MixtureConfig:
        """The training and test window of the full model's inputs."""
        config = self.model
        return MixtureConfig(num_frames=config.num_video_frames, fps=config.fps, sample_rate=config.spectral.sample_rate,
                             size=config.size, crop=config.crop, rms=config.rms)

    @property
    def pit_model(self) -> SeparationConfig:
        return replace(self.model, video="none")

    def to_dict(self) -> dict:
        return asdict(self)


def _from_pretrain(profile_name: str, unet_width: int, fft_size: int | None = None, output: str = "direct") -> SeparationConfig:
    """A separation config whose feature net and rates are those of the profile's pretrained network."""
    from avlib.profiles import get_profile

    pretrain = get_profile(profile_name).pretrain
    return SeparationConfig(
        spectral=SpectralConfig.for_sample_rate(pretrain.shift.sample_rate, fft_size=fft_size),
        unet=UNetConfig(width=unet_width, bn_momentum=0.1), multisensory=pretrain.model,
        fps=pretrain.shift.fps, size=pretrain.shift.size, crop=pretrain.shift.crop, output=output,
    )


def settings_for(profile: str) -> SeparationSettings:
    """The settings of ``smoke``, ``synth`` or ``paper``.

    synth: the pretrained net of the synth profile (width 16, 7.49 fps, 40 -> 32 frames, 11 025 Hz), the
    paper's 16 ms / 64 ms STFT at that rate (704 / 176, FFT 1024, 512 bins, 128 frames = 2.09 s), a U-Net of
    width 8, batches of 4 clips, and a learning rate of 2e-3 rather than the paper's 1e-4 for a run of a few
    hundred steps. A few hundred steps do not teach the U-Net to regress phase (measured: SAR -2.5 dB with
    its predicted phase after 120 steps, 16 dB with the mixture's), so the synth headline uses the official
    ``phase_type = 'orig'`` (the mixture's phase); both are scored. Two departures from the paper, for
    synth only: the magnitude heads give **ratio masks** on the mixture (``output="mask"``) and the
    magnitude loss is **L1 on amplitudes** (``magnitude_loss="linear"``). With the paper's direct regression
    and L1 on log-magnitude, a few hundred steps learn nothing (measured: on-screen SDR gain -0.07 dB, u-net
    PIT +0.06 dB): the log L1 weighs every bin alike, most of them bins where the other voice dominates and
    the target's level is hidden, and a direct regression first has to learn to reproduce the mixture. With
    both changes the u-net PIT baseline gains about +5 dB (oracle assignment; 24 test pairs) after 150 steps
    of 8 mixtures. The full model still has to learn from the video which voice is on screen. With the
    first speakers world (heads at 0.9-1.15 of the frame side, a mouth of a few pixels at 32) it never did:
    its training loss stayed flat for 400 steps and its on-screen SDR gain was -0.24 dB (48 pairs); with the
    frames replaced by a disc that glowed with the on-screen loudness the same run's loss fell (1.51 -> 1.28),
    so the cue was what was missing. With close-ups (heads at 1.5-1.8, mouths opening 1.6 times wider, the
    world's ``head_scale`` and ``mouth_gain``) the loss falls from step ~175, and 1000 steps of 4 clips gain
    +1.06 dB on-screen (95 % CI 0.64-1.47, 48 pairs; measured before this setting was adopted).
    smoke: an FFT of 1024 at 8 kHz gives the 512 bins the U-Net's nine halvings need.
    """
    if profile == "paper":
        return SeparationSettings(
            model=SeparationConfig(), steps=160_000, batch_size=6, pit_steps=160_000, pit_batch_size=12,
            lr=1e-4, lr_milestones=(120_000,), test_pairs=1000, eval_batch=16, window_multiple=4,
            checkpoint_every=10_000, log_every=10, amp="bf16",
        )
    if profile == "synth":
        return SeparationSettings(
            model=_from_pretrain("synth", unet_width=8, output="mask"), steps=1000, batch_size=4, pit_steps=250,
            pit_batch_size=8, lr=2e-3, test_pairs=48, eval_batch=16, window_multiple=2, checkpoint_every=50, log_every=10,
            phase="mixture", magnitude_loss="linear",
        )
    if profile == "smoke":
        return SeparationSettings(
            model=_from_pretrain("smoke", unet_width=4, fft_size=1024), steps=2, batch_size=4, pit_steps=2,
            pit_batch_size=2, lr=1e-3, test_pairs=4, eval_batch=4, window_multiple=1, examples_shown=1,
            checkpoint_every=2, log_every=1,
        )
    raise ValueError(f"unknown profile {profile!r}; use smoke, synth or paper")


def test_list_name(seed: int) -> str:
    """The test list's table name under ``results/<profile>/tables/`` (one list per world seed)."""
    return f"separation_test_list_seed{seed}"


def speaker_data(profile: str, settings: SeparationSettings, seed: int = 0, data_root: str | os.PathLike = ""):
    """(speakers root, clip table, training clips, test clips) of a profile, as notebooks 04 and 05 read them.

    Synthetic profiles: the world's speakers (generated on first use), decoded once and cached beside it.
    ``paper``: VoxCeleb under ``data_root/voxceleb/`` (docs/datasets.md), read window by window.
    """
    from avlib.data.sources import speaker_sources
    from avlib.profiles import get_profile

    data = speaker_sources(get_profile(profile).synthetic, profile, seed, data_root, settings.mixture)
    return data.root, data.table, data.train, data.test


def ensure_test_list(out, clips: pd.DataFrame, settings: SeparationSettings, seed: int = 0) -> pd.DataFrame:
    """The profile's fixed test list from ``out``'s tables (:func:`test_list_name`), made and written on first use.

    ``out`` is the notebook's :class:`avlib.report.results.ResultWriter`; notebooks 04 and 05 read the same file.
    """
    from avlib.data.mixtures import make_test_list, read_test_list

    path = Path(out.directory) / "tables" / f"{test_list_name(seed)}.csv"
    if not path.exists():
        test_list = make_test_list(clips, settings.test_pairs, settings.mixture.duration, seed=seed)
        out.table(test_list, test_list_name(seed), float_format="%.3f", caption=(
            "The fixed test list: on-screen clip (its video and voice) and off-screen clip (its voice), window starts in "
            f"seconds ({settings.mixture.duration:.3f} s windows), both speakers' genders."))
    return read_test_list(path)


def build_model(config: SeparationConfig, pretrained: str | os.PathLike | None = None) -> SeparationNet:
    """The separation model; with ``pretrained``, the multisensory net starts from that checkpoint.

    The paper's ``full`` model initialises its multisensory sub-network from the shift model
    (``init_type = 'shift'``) and fine-tunes everything; the U-Net starts from scratch. ``pretrained`` must
    hold a network of ``config.multisensory``'s shape.
    """
    if config.video != "multisensory" or pretrained is None:
        return SeparationNet(config)
    from avlib.models.multisensory import from_checkpoint as multisensory_from_checkpoint

    net = multisensory_from_checkpoint(pretrained)
    if net.config.width != config.multisensory.width:
        raise ValueError(f"{pretrained} holds a multisensory net of width {net.config.width}, the separation "
                         f"config asks for width {config.multisensory.width}")
    return SeparationNet(config, MultisensoryFeatures(net)).train()


def _targets(batch: Mapping[str, Tensor], spectral: SpectralConfig, num_frames: int) -> tuple[dict, dict]:
    on_screen = analyze(mono_mix(batch["on_screen"]), spectral, num_frames)._asdict()
    off_screen = analyze(mono_mix(batch["off_screen"]), spectral, num_frames)._asdict()
    return on_screen, off_screen


def model_inputs(batch: Mapping[str, Tensor], uses_video: bool) -> tuple[Tensor | None, Tensor]:
    """(frames (B, 3, T, H, W) in [-1, 1] or None, mixture (B, 2, N)) from a mixture batch."""
    return (normalize_frames(batch["frames"]) if uses_video else None), batch["mixture"]


class SeparationLoss:
    """``loss_fn(model, batch)`` for :func:`avlib.train.fit`: the on/off loss, or PIT with ``pit=True``;
    ``magnitude`` as :func:`avlib.losses.magnitude_l1`."""

    def __init__(self, spectral: SpectralConfig, uses_video: bool, pit: bool = False, magnitude: str = "log"):
        self.spectral, self.uses_video, self.pit, self.magnitude = spectral, uses_video, pit, magnitude

    def __call__(self, model: torch.nn.Module, batch: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        output = model(*model_inputs(batch, self.uses_video))
        on_screen, off_screen = _targets(batch, self.spectral, output["on_screen_magnitude"].shape[1])
        output = {key: value.float() for key, value in output.items()}
        loss = pit_loss if self.pit else separation_loss
        return loss(output, on_screen, off_screen, magnitude=self.magnitude, spectral=self.spectral)


def loss_label(settings: SeparationSettings) -> str:
    """The axis label of a training-loss plot: what the magnitude term compares (``settings.magnitude_loss``)."""
    compared = "normalised log-magnitude" if settings.magnitude_loss == "log" else "amplitudes, relative"
    return f"training loss (L1 on {compared})"


def train(model: SeparationNet, batches, settings: SeparationSettings, out_dir: str | os.PathLike, *, pit: bool = False,
          steps: int | None = None, seed: int = 0, device: str = "auto", resume: bool = True,
          run_config: dict | None = None) -> dict:
    """Train with the paper's optimiser (Adam, clipping 10, weight decay on the U-Net only) via :func:`fit`."""
    from avlib.train import TrainConfig, fit

    config = TrainConfig(
        steps=steps or (settings.pit_steps if pit else settings.steps), lr=settings.lr, optimizer="adam",
        weight_decay=settings.weight_decay, weight_decay_prefixes=["unet."], grad_clip=settings.grad_clip,
        lr_milestones=list(settings.lr_milestones), lr_gamma=settings.lr_gamma, checkpoint_every=settings.checkpoint_every,
        log_every=settings.log_every, seed=seed, device=device, amp=settings.amp, out_dir=str(out_dir),
    )
    loss = SeparationLoss(model.config.spectral, model.features is not None, pit, settings.magnitude_loss)
    return fit(model, loss, batches, config, resume=resume,
               run_config={"separation": settings.to_dict(), "pit": pit, **(run_config or {})})


PHASES = ("predicted", "mixture")


def _check_phase(phase: str) -> None:
    if phase not in PHASES:
        raise ValueError(f"phase must be one of {PHASES}, got {phase!r}")


def source_phase(output: Mapping[str, Tensor], source: str, mixture_phase: Tensor, phase: str) -> Tensor:
    """The normalised phase (B, T, num_bins) a source is synthesised with: the network's, or the mixture's."""
    if phase == "mixture":
        return mixture_phase[..., : output[f"{source}_phase"].shape[-1]]
    return output[f"{source}_phase"].float()


@torch.no_grad()
def predict(model: SeparationNet, frames: Tensor | None, mixture: Tensor, batch_size: int = 8,
            phase: str = "predicted") -> dict[str, Tensor]:
    """Waveforms of both estimates and of the mono mixture, over the samples the spectrogram covers.

    frames (B, T, H, W, 3) uint8 or None, mixture (B, 2, N) -> ``on_screen``, ``off_screen``, ``mixture``,
    each (B, L) with L = (T_spec - 1) hop + frame_length, and the normalised maps ``*_magnitude`` (B, T, F).
    The missing top bin takes -100 dB and the mixture's phase; the inverse STFT is TF's divided by 1.5.
    ``phase``: ``"predicted"`` (the paper's ``phase_type = 'pred'``) or ``"mixture"`` (the official code's
    ``phase_type = 'orig'``: each estimate takes the mixture's phase; see :func:`source_phase`).
    """
    _check_phase(phase)
    model.eval()
    device = next(model.parameters()).device
    spectral = model.config.spectral
    parts: dict[str, list[Tensor]] = {}
    for first in range(0, mixture.shape[0], batch_size):
        audio = mixture[first : first + batch_size].to(device)
        video = normalize_frames(frames[first : first + batch_size].to(device)) if model.features is not None else None
        output = model(video, audio)
        num_frames = output["on_screen_magnitude"].shape[1]
        mono = mono_mix(audio)
        mixture_phase = torch.angle(stft(mono, spectral)[:, :num_frames]) / math.pi
        covered = spectral.samples_for(num_frames)
        results = {"mixture": mono[:, :covered], "mixture_magnitude": analyze(mono, spectral, num_frames).magnitude}
        for source in ("on_screen", "off_screen"):
            magnitude = output[f"{source}_magnitude"].float()
            spectrum = full_band(magnitude, source_phase(output, source, mixture_phase, phase), mixture_phase, spectral)
            results[source] = inverse_stft(spectrum, spectral)
            results[f"{source}_magnitude"] = magnitude
        for key, value in results.items():
            parts.setdefault(key, []).append(value.cpu())
    return {key: torch.cat(values) for key, values in parts.items()}


def evaluate(systems: Mapping[str, tuple], test_batch: Mapping[str, Tensor], test_list: pd.DataFrame,
             batch_size: int = 8, speech_metrics: bool | Sequence[str] = True, progress: bool = False,
             score_mixture: bool = True, stoi: bool = True) -> pd.DataFrame:
    """Score each system and the mixture on every test pair: one row per (pair, system, source).

    systems: name -> (model, order_free) or (model, order_free, phase) with ``phase`` as in :func:`predict`
    (default ``"predicted"``). An order-free (PIT) model's outputs are assigned to on- and off-screen by the
    better mean SDR (an oracle assignment: it has no way to know which is on screen). All systems are scored
    on the same span: the samples every frame fully covers, leaving out the first and last
    ``frame_length - hop`` samples, where the inverse STFT tapers. References are the mono sources.
    ``speech_metrics``: PESQ and STOI for every system (True), none (False), or the named systems and the
    mixture (they take most of the time); the others get NaN. ``score_mixture=False`` leaves the mixture's rows out
    (a caller that has them already); ``stoi=False`` leaves STOI out (NaN), PESQ stays.
    """
    from tqdm.auto import tqdm

    if isinstance(speech_metrics, bool):
        speech_systems = set(systems) | {"mixture"} if speech_metrics else set()
    else:
        speech_systems = set(speech_metrics) | {"mixture"}

    predictions, order_free = {}, {}
    for name, (model, free, *phase) in systems.items():
        predictions[name] = predict(model, test_batch["frames"], test_batch["mixture"], batch_size, *phase)
        order_free[name] = free
    spectral = next(iter(systems.values()))[0].config.spectral
    rows = []
    for index, pair in enumerate(tqdm(test_list.itertuples(), total=len(test_list), disable=not progress, desc="scoring")):
        some = next(iter(predictions.values()))
        length = some["on_screen"].shape[1]
        span = slice(spectral.frame_length - spectral.hop, length - (spectral.frame_length - spectral.hop))
        on_reference = mono_mix(test_batch["on_screen"][index : index + 1])[0, :length][span].numpy()
        off_reference = mono_mix(test_batch["off_screen"][index : index + 1])[0, :length][span].numpy()
        mixture = some["mixture"][index][span].numpy()
        estimates = {"mixture": (mixture, mixture)} if score_mixture else {}
        for name, prediction in predictions.items():
            first, second = prediction["on_screen"][index][span].numpy(), prediction["off_screen"][index][span].numpy()
            estimates[name] = best_permutation(on_reference, off_reference, first, second) if order_free[name] else (first, second)
        for with_speech in (True, False):
            chosen = {name: value for name, value in estimates.items() if (name in speech_systems) == with_speech}
            if not chosen:
                continue
            for row in score_pair(on_reference, off_reference, chosen, spectral.sample_rate, with_speech, stoi):
                rows.append({"pair": pair.pair, "same_gender": pair.same_gender, "on_gender": pair.on_gender,
                             "off_gender": pair.off_gender, "pesq": float("nan"), "stoi": float("nan"), **row})
    return pd.DataFrame(rows)


def improvement_over_mixture(scores: pd.DataFrame, metric: str = "sdr") -> pd.DataFrame:
    """Per pair and source, each system's ``metric`` minus the mixture's (e.g. SDR improvement)."""
    table = scores.pivot_table(index=["pair", "source"], columns="system", values=metric)
    gains = table.drop(columns="mixture").sub(table["mixture"], axis=0)
    return gains.reset_index().melt(id_vars=["pair", "source"], var_name="system", value_name=f"{metric}_gain")


def on_screen_gains(gains: pd.DataFrame, system: str, test_list: pd.DataFrame | None = None,
                    same_gender: bool | None = None) -> pd.Series:
    """On-screen SDR gains over the mixture (:func:`improvement_over_mixture`) of ``system``; with
    ``same_gender`` True or False, only of the ``test_list`` pairs of same- or different-gender speakers."""
    rows = gains[(gains.system == system) & (gains.source == "on_screen")]
    if same_gender is not None:
        rows = rows[rows.pair.isin(test_list.pair[test_list.same_gender == same_gender])]
    return rows["sdr_gain"]


# ----------------------------------------------------------------------------------------------- separate


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
    untapered frames. ``phase`` as in :func:`predict`.
    """
    _check_phase(phase)
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
        gains = (INPUT_RMS / raw.pow(2).mean(-1).sqrt().clamp_min(RMS_EPS)).mean(-1)  # (b,), as normalize_rms
        video = None
        if uses_video:
            video = normalize_frames(torch.from_numpy(np.stack([padded_frames[s : s + window_frames] for s in chunk])).to(device))
        output = model(video, mixture.to(device))
        mixture_phase = torch.angle(stft(mono_mix(mixture.to(device)), spectral)[:, :spec_frames]) / math.pi
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


def separate(video: str | os.PathLike, checkpoint: str | os.PathLike | SeparationNet, out_dir: str | os.PathLike, *,
             window_multiple: int = 4, device: str = "cpu", batch_size: int = 2, write_videos: bool = True,
             phase: str = "predicted") -> SeparationResult:
    """Split a video's sound into the on-screen and the off-screen sound, and write them to ``out_dir``.

    For a video with one visible speaker and sound (docs/paper.md §7.9). Writes ``on_screen.wav`` and
    ``off_screen.wav`` (mono 16-bit PCM at the input's sample rate, exactly as many samples as the input's
    sound over the video's duration) and, with ``write_videos``, ``on_screen.mp4`` and ``off_screen.mp4``:
    the input's frames with each sound. ``checkpoint`` is a separation checkpoint (or a loaded model).

    The model works at its own rates (frames squashed and centre-cropped as in training, audio resampled with
    soxr; see :func:`separate_waveform`); its outputs are resampled back to the input's rate. Sound above the
    model's Nyquist frequency (5.5 kHz in the synth profile) is in neither output. ``phase`` as in
    :func:`predict` (the paper's: ``"predicted"``). A file that cannot be read,
    has no video stream or no sound raises an :class:`avlib.io.MediaError` naming it.
    """
    from avlib.writer import write_video

    video = Path(video)
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
    from avlib.metrics import resample

    on_native = _fit_length(resample(on_screen, rate, info.sample_rate), native_samples).astype(np.float32)
    off_native = _fit_length(resample(off_screen, rate, info.sample_rate), native_samples).astype(np.float32)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = SeparationResult(on_native, off_native, mixture, info.sample_rate, windows=windows, model_sample_rate=rate)
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
