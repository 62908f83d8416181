"""Every training loss: the alignment ("shift") loss of pretraining (docs/paper.md §3) and the losses of the
separation models (docs/paper.md §7.4; ``add_pred_losses`` in ``src/sourcesep.py``).

A loss called by :func:`avlib.train.fit` as ``loss_fn(model, batch)`` only calls ``model(...)``: under DDP or
torch.compile ``model`` is a wrapper that has the module's ``forward`` and nothing else.

Alignment: the sigmoid cross-entropy of one logit, 1 for frames with their own audio, 0 for the same frames
with audio shifted in time. Each video of a batch appears with both (the pair mode of
:meth:`avlib.models.multisensory.MultisensoryNet.forward`), so every batch is balanced, as the official code's
per-GPU batches were.

Separation: all terms are in the networks' normalised [-1, 1] domain: log-magnitude (dB range [-100, 80])
and phase / pi.

- On/off model (``loss_types = ['fg-bg']``): L = mean|S_on^ - S_on| + mean|S_off^ - S_off|
  + 0.01 (mean|phi_on^ - phi_on| + mean|phi_off^ - phi_off|). The phase difference is plain, not circular.
- Audio-only "u-net PIT" (``loss_types = ['pit']``): the same four-term sum for both assignments of the two
  outputs to the two sources, its minimum per example, then the batch mean.

``magnitude="linear"`` (not the paper's; the synth profile's) scores the magnitudes as amplitudes instead
of dB: mean |A^ - A| / mean A per example, with A = 10^(dB / 20) of the de-normalised maps. The log L1
weighs every time-frequency bin alike, also the many where the other source dominates and the target's
level cannot be seen in the mixture; the amplitude L1 weighs the bins by their energy, as SDR does.

The official loss also covers the padded Nyquist bin (-100 dB predicted); ours covers the ``num_bins`` the
network outputs, which differs by that one constant bin. The L2 weight decay is the optimiser's
(:class:`avlib.train.TrainConfig`, U-Net only).

Shapes: (B, T, F) for every magnitude and phase map.
"""

from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avlib.models.multisensory import normalize_frames
from avlib.models.unet import mono_mix
from avlib.spectral import SpectralConfig, analyze, denormalize_db

#: The phase L1 weight (``phase_weight``) and the magnitude one (``l1_weight``).
PHASE_WEIGHT = 0.01
MAGNITUDE_WEIGHT = 1.0
#: How the magnitude maps are compared: in normalised dB (the paper's) or as amplitudes.
MAGNITUDE_LOSSES = ("log", "linear")


def alignment_loss(model: nn.Module, batch: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
    """Mean sigmoid cross-entropy over the aligned (label 1) and shifted (label 0) copies, and their accuracy.

    model: a :class:`~avlib.models.multisensory.MultisensoryNet` (``cam=True`` too) or its DDP / compiled
    wrapper; batch: ``frames`` (B, T, H, W, 3) uint8, ``audio`` and ``shifted_audio`` (B, 2, N).
    """
    aligned, shifted = model(normalize_frames(batch["frames"]), batch["audio"], batch["shifted_audio"])
    logits = torch.cat([aligned, shifted]).float()
    labels = torch.cat([torch.ones_like(aligned), torch.zeros_like(shifted)]).float()
    loss = F.binary_cross_entropy_with_logits(logits, labels)
    accuracy = ((logits > 0).float() == labels).float().mean().item()
    return loss, {"accuracy": accuracy}


def _per_example_l1(prediction: Tensor, target: Tensor) -> Tensor:
    """mean |prediction - target| over all but the batch axis: (B, ...) -> (B,)."""
    if prediction.shape != target.shape:
        raise ValueError(f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ in shape")
    return (prediction - target).abs().flatten(1).mean(dim=1)


def magnitude_l1(prediction: Tensor, target: Tensor, magnitude: str = "log", spectral: SpectralConfig | None = None) -> Tensor:
    """Per-example L1 of normalised log-magnitude maps (B, T, F) -> (B,): ``"log"``, mean |prediction - target|
    in the normalised domain; ``"linear"``, mean |A^ - A| / mean A on amplitudes A = 10^(dB / 20), dB
    de-normalised with ``spectral``'s range (default: the paper's)."""
    if magnitude == "log":
        return _per_example_l1(prediction, target)
    if magnitude != "linear":
        raise ValueError(f"magnitude must be one of {MAGNITUDE_LOSSES}, got {magnitude!r}")
    spectral = spectral or SpectralConfig()
    predicted, wanted = (10.0 ** (denormalize_db(x, spectral) / 20.0) for x in (prediction, target))
    return _per_example_l1(predicted, wanted) / wanted.flatten(1).mean(dim=1).clamp_min(1e-12)


def _assignment_terms(output: Mapping[str, Tensor], first: Mapping[str, Tensor], second: Mapping[str, Tensor],
                      phase_weight: float, magnitude: str = "log", spectral: SpectralConfig | None = None) -> dict[str, Tensor]:
    """Per-example terms when the on-screen head is scored against ``first`` and the off-screen one against ``second``."""
    return {
        "on_magnitude": MAGNITUDE_WEIGHT * magnitude_l1(output["on_screen_magnitude"], first["magnitude"], magnitude, spectral),
        "on_phase": phase_weight * _per_example_l1(output["on_screen_phase"], first["phase"]),
        "off_magnitude": MAGNITUDE_WEIGHT * magnitude_l1(output["off_screen_magnitude"], second["magnitude"], magnitude, spectral),
        "off_phase": phase_weight * _per_example_l1(output["off_screen_phase"], second["phase"]),
    }


def separation_loss(output: Mapping[str, Tensor], on_screen: Mapping[str, Tensor], off_screen: Mapping[str, Tensor],
                    phase_weight: float = PHASE_WEIGHT, magnitude: str = "log",
                    spectral: SpectralConfig | None = None) -> tuple[Tensor, dict[str, float]]:
    """The on/off loss: L1 on log-magnitude plus ``phase_weight`` x L1 on phase, for both outputs.

    output: :class:`avlib.models.unet.SeparationOutput`; on_screen, off_screen: targets with ``magnitude``
    and ``phase`` (B, T, F) (an :class:`avlib.spectral.Spectrogram`'s ``_asdict()``). ``magnitude``, ``spectral``:
    as :func:`magnitude_l1`. Returns the batch mean and its four terms.
    """
    terms = _assignment_terms(output, on_screen, off_screen, phase_weight, magnitude, spectral)
    loss = sum(terms.values()).mean()
    return loss, {name: float(value.detach().mean()) for name, value in terms.items()}


def pit_loss(output: Mapping[str, Tensor], first: Mapping[str, Tensor], second: Mapping[str, Tensor],
             phase_weight: float = PHASE_WEIGHT, magnitude: str = "log",
             spectral: SpectralConfig | None = None) -> tuple[Tensor, dict[str, float]]:
    """The permutation-invariant loss: per example, the smaller loss of the two output-to-source assignments.

    Same arguments as :func:`separation_loss`; the order of ``first`` and ``second`` does not matter, nor does
    the order of the outputs. Also returns the share of examples scored in swapped order.
    """
    straight = sum(_assignment_terms(output, first, second, phase_weight, magnitude, spectral).values())  # (B,)
    swapped = sum(_assignment_terms(output, second, first, phase_weight, magnitude, spectral).values())
    per_example = torch.minimum(straight, swapped)
    return per_example.mean(), {"swapped": float((swapped < straight).float().mean())}


def separation_inputs(batch: Mapping[str, Tensor], uses_video: bool) -> tuple[Tensor | None, Tensor]:
    """(frames (B, 3, T, H, W) in [-1, 1] or None, mixture (B, 2, N)) from a mixture batch."""
    return (normalize_frames(batch["frames"]) if uses_video else None), batch["mixture"]


class SeparationLoss:
    """``loss_fn(model, batch)`` for :func:`avlib.train.fit`: the on/off loss, or PIT with ``pit=True``;
    ``magnitude`` as :func:`magnitude_l1` (docs/paper.md §7.4)."""

    def __init__(self, spectral: SpectralConfig, uses_video: bool, pit: bool = False, magnitude: str = "log"):
        self.spectral, self.uses_video, self.pit, self.magnitude = spectral, uses_video, pit, magnitude

    def __call__(self, model: nn.Module, batch: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        output = model(*separation_inputs(batch, self.uses_video))
        num_frames = output["on_screen_magnitude"].shape[1]
        on_screen = analyze(mono_mix(batch["on_screen"]), self.spectral, num_frames)._asdict()
        off_screen = analyze(mono_mix(batch["off_screen"]), self.spectral, num_frames)._asdict()
        output = {key: value.float() for key, value in output.items()}
        loss = pit_loss if self.pit else separation_loss
        return loss(output, on_screen, off_screen, magnitude=self.magnitude, spectral=self.spectral)


def loss_label(magnitude: str) -> str:
    """The axis label of a separation training-loss plot: what the magnitude term compares."""
    compared = "normalised log-magnitude" if magnitude == "log" else "amplitudes, relative"
    return f"training loss (L1 on {compared})"
