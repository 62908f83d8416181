"""Losses of the paper's separation models (paper.md 7.4; ``add_pred_losses`` in ``src/sourcesep.py``).

All terms are in the networks' normalised [-1, 1] domain: log-magnitude (dB range [-100, 80]) and phase / pi.

- On/off model (``loss_types = ['fg-bg']``): L = mean|S_on^ - S_on| + mean|S_off^ - S_off|
  + 0.01 (mean|phi_on^ - phi_on| + mean|phi_off^ - phi_off|). The phase difference is plain, not circular.
- Audio-only "u-net PIT" (``loss_types = ['pit']``): the same four-term sum for both assignments of the two
  outputs to the two sources, its minimum per example, then the batch mean.

The official loss also covers the padded Nyquist bin (-100 dB predicted); ours covers the ``num_bins`` the
network outputs, which differs by that one constant bin. The L2 weight decay is the optimiser's
(:class:`avlib.train.TrainConfig`, U-Net only).

Shapes: (B, T, F) for every magnitude and phase map.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor

#: The phase L1 weight (``phase_weight``) and the magnitude one (``l1_weight``).
PHASE_WEIGHT = 0.01
MAGNITUDE_WEIGHT = 1.0


def _per_example_l1(prediction: Tensor, target: Tensor) -> Tensor:
    """mean |prediction - target| over all but the batch axis: (B, ...) -> (B,)."""
    if prediction.shape != target.shape:
        raise ValueError(f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ in shape")
    return (prediction - target).abs().flatten(1).mean(dim=1)


def _assignment_terms(output: Mapping[str, Tensor], first: Mapping[str, Tensor], second: Mapping[str, Tensor],
                      phase_weight: float) -> dict[str, Tensor]:
    """Per-example terms when the on-screen head is scored against ``first`` and the off-screen one against ``second``."""
    return {
        "on_magnitude": MAGNITUDE_WEIGHT * _per_example_l1(output["on_screen_magnitude"], first["magnitude"]),
        "on_phase": phase_weight * _per_example_l1(output["on_screen_phase"], first["phase"]),
        "off_magnitude": MAGNITUDE_WEIGHT * _per_example_l1(output["off_screen_magnitude"], second["magnitude"]),
        "off_phase": phase_weight * _per_example_l1(output["off_screen_phase"], second["phase"]),
    }


def separation_loss(output: Mapping[str, Tensor], on_screen: Mapping[str, Tensor], off_screen: Mapping[str, Tensor],
                    phase_weight: float = PHASE_WEIGHT) -> tuple[Tensor, dict[str, float]]:
    """The on/off loss: L1 on log-magnitude plus ``phase_weight`` x L1 on phase, for both outputs.

    output: :class:`avlib.models.unet.SeparationOutput`; on_screen, off_screen: targets with ``magnitude``
    and ``phase`` (B, T, F) (an :class:`avlib.spectral.Spectrogram`'s ``_asdict()``). Returns the batch
    mean and its four terms.
    """
    terms = _assignment_terms(output, on_screen, off_screen, phase_weight)
    loss = sum(terms.values()).mean()
    return loss, {name: float(value.detach().mean()) for name, value in terms.items()}


def pit_loss(output: Mapping[str, Tensor], first: Mapping[str, Tensor], second: Mapping[str, Tensor],
             phase_weight: float = PHASE_WEIGHT) -> tuple[Tensor, dict[str, float]]:
    """The permutation-invariant loss: per example, the smaller loss of the two output-to-source assignments.

    Same arguments as :func:`separation_loss`; the order of ``first`` and ``second`` does not matter, nor does
    the order of the outputs. Also returns the share of examples scored in swapped order.
    """
    straight = sum(_assignment_terms(output, first, second, phase_weight).values())  # (B,)
    swapped = sum(_assignment_terms(output, second, first, phase_weight).values())
    per_example = torch.minimum(straight, swapped)
    return per_example.mean(), {"swapped": float((swapped < straight).float().mean())}
