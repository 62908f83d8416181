"""TF's fractional max-pool over the audio steps, as the released networks run it at test time (docs/paper.md §2.3).

``shift_net.merge`` pools the audio features (L steps) to the video's T steps with
``tf.nn.fractional_max_pool(ratio (L - 1) / T, pseudo_random=True, deterministic=True, seed=1, seed2=2)``,
non-overlapping. With fixed seeds TF seeds a fresh Philox4x32-10 generator on every call, so the regions
depend only on L, T and the seeds. This module reproduces that generator and TF's pseudo-random sequence
(``GeneratePoolingSequencePseudoRandom``: boundaries ceil(alpha (i + u)) with alpha = L / T and one
uniform draw u), for any L and T; ``tests/test_weights.py`` checks it against the boundaries TensorFlow
itself produced (``scripts/make_tf_fixtures.py``), for our models' (L, T) pairs and a grid of others.
An imported official network pooled this way sees what it saw in TF;
:func:`avlib.models.multisensory.align_audio_to_video` (an adaptive max-pool) stays for training.

Shapes: (B, C, L) audio features -> (B, C, T).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

#: The release's test-time seeds (``seed = 1, seed2 = 2`` in ``shift_net.merge``).
RELEASE_SEEDS = (1, 2)
_MASK32 = 0xFFFFFFFF


def _philox_first_block(seed: int, seed2: int) -> list[int]:
    """The first four 32-bit outputs of TF's ``PhiloxRandom(seed, seed2)``: 10 rounds of Philox4x32."""
    counter = [0, 0, seed2 & _MASK32, (seed2 >> 32) & _MASK32]
    key = [seed & _MASK32, (seed >> 32) & _MASK32]
    for _ in range(10):
        product0, product1 = 0xD2511F53 * counter[0], 0xCD9E8D57 * counter[2]
        counter = [((product1 >> 32) ^ counter[1] ^ key[0]) & _MASK32, product1 & _MASK32,
                   ((product0 >> 32) ^ counter[3] ^ key[1]) & _MASK32, product0 & _MASK32]
        key = [(key[0] + 0x9E3779B9) & _MASK32, (key[1] + 0xBB67AE85) & _MASK32]
    return counter


def _first_uniform(seed: int, seed2: int) -> float:
    """TF's ``SimplePhilox::RandDouble`` on a fresh generator: 52 mantissa bits from two outputs, in [0, 1)."""
    high, low = _philox_first_block(seed, seed2)[:2]
    bits = (1023 << 52) | ((high & 0xFFFFF) << 32) | low
    return float(np.array([bits], dtype=np.uint64).view(np.float64)[0]) - 1.0


def tf_output_steps(steps: int, video_steps: int) -> int:
    """Output length of the release's pool: floor(L / ratio) in float32, ratio = float32((L - 1) / T); T for T < L - 1."""
    ratio = np.float32((steps - 1) / video_steps)
    return int(np.floor(np.float32(steps) / ratio))


def tf_pool_boundaries(steps: int, out_steps: int, seed: int = RELEASE_SEEDS[0], seed2: int = RELEASE_SEEDS[1]) -> tuple[int, ...]:
    """TF's ``row_pooling_sequence`` for ``steps`` -> ``out_steps`` (pseudo-random, deterministic, non-overlapping).

    The ``out_steps + 1`` boundaries: region i covers steps [b_i, b_{i+1}). When L is a multiple of T the
    regions are equal; otherwise b_i = ceil(alpha (i + u)) - 1 with alpha = L / T and u uniform in
    [0, u_max), u_max keeping every region 1 .. ceil(alpha) + 1 long.
    """
    if not 1 <= out_steps <= steps:
        raise ValueError(f"cannot pool {steps} steps to {out_steps}")
    if (seed, seed2) == (0, 0):
        raise ValueError("seeds (0, 0) make TF draw random seeds; the release uses (1, 2)")
    if steps % out_steps == 0:
        return tuple(range(0, steps + 1, steps // out_steps))
    alpha = steps / out_steps
    k = steps // out_steps
    u_max = min((k + 2) / alpha - 1, (steps + 1 - k) / alpha - (out_steps - 1))
    u = _first_uniform(seed, seed2) * u_max
    return (0, *(math.ceil(alpha * (i + u)) - 1 for i in range(1, out_steps)), steps)


def fractional_max_pool_tf(audio_features: Tensor, video_steps: int) -> Tensor:
    """The release's test-time pool: (B, C, L) -> (B, C, T') with T' = :func:`tf_output_steps` (T for T < L - 1)."""
    steps = audio_features.shape[-1]
    if video_steps < 1 or steps - 1 < video_steps:
        raise ValueError(
            f"audio features of shape {tuple(audio_features.shape)} cannot be pooled to {video_steps} steps: TF's "
            "fractional pool needs a ratio (L - 1) / T of at least 1"
        )
    boundaries = tf_pool_boundaries(steps, tf_output_steps(steps, video_steps))
    return torch.stack([audio_features[..., start:end].amax(dim=-1) for start, end in zip(boundaries, boundaries[1:])], dim=-1)
