"""TF's fractional max-pool over the audio steps, as the released networks run it at test time (docs/paper.md §2.3).

``shift_net.merge`` pools the audio features (L steps) down to the video's T steps with
``tf.nn.fractional_max_pool(ratio (L - 1) / T, pseudo_random=True, deterministic=True, seed=1, seed2=2)``,
non-overlapping. With fixed seeds its pooling regions depend only on L and T; TF draws them (Philox) in the
kernel, so they were generated once with TensorFlow (``scripts/make_tf_fixtures.py``) and are stored here
for the (L, T) pairs our models produce. An imported official network pooled this way sees what it saw in
TF; :func:`avlib.models.multisensory.align_audio_to_video` (an adaptive max-pool) stays for training.

Shapes: (B, C, L) audio features -> (B, C, T).
"""

from __future__ import annotations

import torch
from torch import Tensor

#: (L, T) -> the T + 1 region boundaries (TF's ``row_pooling_sequence``): region i is steps [b_i, b_{i+1}).
TF_FRACTIONAL_POOL_BOUNDARIES: dict[tuple[int, int], tuple[int, ...]] = {
    # paper: the 4.2 s clip, 125 frames (shift, CAM)
    (86, 32): (
        0, 3, 5, 8, 11, 13, 16, 19, 21, 24, 27, 29, 32, 35, 37, 40, 43, 46, 48, 51, 54, 56, 59, 62, 64, 67, 70, 72,
        75, 78, 80, 83, 86
    ),
    (86, 8): (0, 11, 21, 32, 43, 54, 64, 75, 86),  # paper: 4.2 s at 7.49 fps (first stage)
    (44, 16): (0, 3, 5, 8, 11, 14, 16, 19, 22, 25, 27, 30, 33, 36, 38, 41, 44),  # paper: the 2.135 s separation window
    # paper: sep_video.py --duration_mult 4 (8.288 s)
    (170, 62): (
        0, 3, 5, 8, 11, 14, 16, 19, 22, 24, 27, 30, 33, 35, 38, 41, 44, 46, 49, 52, 55, 57, 60, 63, 66, 68, 71, 74,
        77, 79, 82, 85, 88, 90, 93, 96, 99, 101, 104, 107, 109, 112, 115, 118, 120, 123, 126, 129, 131, 134, 137, 140,
        142, 145, 148, 151, 153, 156, 159, 162, 164, 167, 170
    ),
    (45, 8): (0, 5, 11, 17, 22, 28, 34, 39, 45),  # synth profile: pretraining clip
    (23, 4): (0, 6, 11, 17, 23),  # synth profile: separation window
    (16, 4): (0, 4, 8, 12, 16),  # smoke profile: pretraining clip
    (17, 4): (0, 4, 8, 13, 17),  # smoke profile: separation window
}


def tf_pool_boundaries(steps: int, video_steps: int) -> tuple[int, ...]:
    """The boundaries TF uses to pool ``steps`` audio steps to ``video_steps``; raises for a pair not generated."""
    try:
        return TF_FRACTIONAL_POOL_BOUNDARIES[(steps, video_steps)]
    except KeyError:
        known = ", ".join(f"{steps_}->{video}" for steps_, video in sorted(TF_FRACTIONAL_POOL_BOUNDARIES))
        raise ValueError(
            f"no TF fractional-pool boundaries stored for {steps} audio steps -> {video_steps} video steps (stored: "
            f"{known}); add the pair to scripts/make_tf_fixtures.py and regenerate them with TensorFlow"
        ) from None


def fractional_max_pool_tf(audio_features: Tensor, video_steps: int) -> Tensor:
    """Max over TF's deterministic regions: (B, C, L) -> (B, C, video_steps)."""
    boundaries = tf_pool_boundaries(audio_features.shape[-1], video_steps)
    return torch.stack([audio_features[..., start:end].amax(dim=-1) for start, end in zip(boundaries, boundaries[1:])], dim=-1)
