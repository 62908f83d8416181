"""A strided TF "SAME" 3-D convolution recast as a stride-1 convolution over space-to-depth input.

The multisensory net's first video conv (``im/conv1``: 3 -> 64 channels, 5x7x7, stride 2) has only 3 input
channels and a stride, which GPU convolution kernels handle poorly: on an H100 it ran at 35 TFLOP/s, about
28 % of a training step for 10 % of its FLOPs (issue notes). The same conv, exactly:

    y[t] = sum_k w[k] x_pad[2t + k] = sum_{q, p} w[2q + p] x_pad[2(t + q) + p],   k = 2q + p, p in {0, 1}

so with the padded input split by parity on each axis (space-to-depth: 3 channels -> 3 * 2^3 = 24) and the
kernel split the same way (5x7x7 -> 3x4x4 over 24 channels, zero where 2q + p passes the kernel), it is a
stride-1 conv. The padding is TF's SAME padding, uneven split included (:func:`tf_same_padding`), plus zeros
at the end to an even length, which only zero taps or discarded outputs see. Same numbers up to float
rounding (the sums run in another order); about 1.6x the multiply-adds of the plain conv, on zeros.

Dimension letters: B batch, C channels, T frames, H height, W width, O output channels, s the stride.
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor

from avlib.models.same import tf_same_padding


def space_to_depth_conv3d(x: Tensor, weight: Tensor, bias: Tensor | None = None,
                          stride: tuple[int, int, int] = (2, 2, 2)) -> Tensor:
    """TF SAME ``conv3d`` of ``x`` (B, C, T, H, W) with ``weight`` (O, C, kT, kH, kW) at ``stride``, computed as a
    stride-1 conv over (B, C s_t s_h s_w, ...) space-to-depth input. -> (B, O, ceil(T/s_t), ceil(H/s_h), ceil(W/s_w))."""
    if x.dim() != 5 or weight.dim() != 5 or x.shape[1] != weight.shape[1]:
        raise ValueError(f"expected x (B, C, T, H, W) and weight (O, C, kT, kH, kW) with equal C, got "
                         f"{tuple(x.shape)} and {tuple(weight.shape)}")
    batch, channels = x.shape[:2]
    outputs, pads, blocks, taps = [], [], [], []
    for size, kernel, step in zip(x.shape[2:], weight.shape[2:], stride):
        before, after = tf_same_padding(size, kernel, step)
        padded = size + before + after
        blocks.append(math.ceil(padded / step))
        after += blocks[-1] * step - padded  # to a whole number of blocks
        pads.append((before, after))
        outputs.append(math.ceil(size / step))
        taps.append(math.ceil(kernel / step))
    padded = F.pad(x, [side for pair in reversed(pads) for side in pair])  # F.pad lists the last axis first
    (st, sh, sw), (ut, uh, uw), (qt, qh, qw) = stride, blocks, taps
    # (B, C, Ut, st, Uh, sh, Uw, sw) -> (B, C, st, sh, sw, Ut, Uh, Uw): position s * u + p goes to channel p, block u
    depth = padded.reshape(batch, channels, ut, st, uh, sh, uw, sw).permute(0, 1, 3, 5, 7, 2, 4, 6)
    depth = depth.reshape(batch, channels * st * sh * sw, ut, uh, uw)
    kernel_pads = [side for k, q, s in zip(reversed(weight.shape[2:]), (qw, qh, qt), (sw, sh, st)) for side in (0, q * s - k)]
    split = F.pad(weight, kernel_pads).reshape(weight.shape[0], channels, qt, st, qh, sh, qw, sw)
    split = split.permute(0, 1, 3, 5, 7, 2, 4, 6).reshape(weight.shape[0], channels * st * sh * sw, qt, qh, qw)
    y = F.conv3d(depth, split, bias)
    return y[:, :, : outputs[0], : outputs[1], : outputs[2]]
