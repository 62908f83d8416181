"""TF "SAME" padding on one axis, shared by the convs written to TF's semantics (docs/paper.md §2.7)."""

from __future__ import annotations


def tf_same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """Padding (before, after) of TF "SAME" on one axis: output ceil(size / stride), the odd pixel at the end."""
    out_size = -(-size // stride)
    total = max((out_size - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2
