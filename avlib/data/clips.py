"""The clip layer every task shares: the clip format, crop and flip, collate, and step-seeded batches.

A training clip is ``T`` frames squashed to ``size`` x ``size`` and cropped to ``crop`` x ``crop``
(random crop and, with ``flip``, a horizontal flip of the whole clip with p = 0.5: the paper's only
image augmentation, docs/paper.md §3), with the audio samples spanning the same time at
``sample_rate``. Evaluation clips are centre-cropped.

Batches are a function of the step (:class:`StepBatches`): the batch of step ``s`` on rank ``r``
is drawn from a generator seeded by ``(seed, s, r)``, so a resumed run sees exactly the batches of
an uninterrupted one, and :func:`avlib.train.fit` can build them ahead in DataLoader workers.

Shapes: frames (T, H, W, 3) uint8, audio (C, N) float32; batches add a leading B.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from avlib import io


@dataclass(frozen=True, kw_only=True)
class ClipFormat:
    """What the network sees of a clip, common to every task: rates, frame size, crop and flip.

    Each task's format adds its own length and settings to these fields (:class:`~avlib.data.shift.ShiftConfig`,
    :class:`~avlib.data.ucf101.ActionClipFormat`, :class:`~avlib.data.mixtures.MixtureConfig`). Defaults are
    the paper's (docs/paper.md §3).
    """

    fps: float = io.PAPER_FPS  # frames per second fed to the network (paper: 29.97; low-fps stage 7.49)
    sample_rate: int = io.PAPER_SAMPLE_RATE  # audio samples per second fed to the network
    size: int = 256  # frames squashed to size x size ...
    crop: int = 224  # ... then cropped (random in training, centre at test)
    flip: bool = True  # horizontal flip of the whole clip with p = 0.5 in training


def draw_crop(height: int, width: int, clip_format: ClipFormat, rng: np.random.Generator | None) -> tuple[tuple[int, int], bool]:
    """((top, left), flip) of the crop :func:`crop_and_flip` takes from ``height`` x ``width`` frames, drawn from ``rng``
    as it draws them (at random in training; the centre, unflipped, without ``rng``), for readers that crop as they decode."""
    if rng is None:
        return ((height - clip_format.crop) // 2, (width - clip_format.crop) // 2), False
    offset = (int(rng.integers(height - clip_format.crop + 1)), int(rng.integers(width - clip_format.crop + 1)))
    return offset, bool(clip_format.flip and rng.random() < 0.5)


def crop_and_flip(frames: np.ndarray, clip_format: ClipFormat, rng: np.random.Generator | None,
                  out: np.ndarray | None = None) -> np.ndarray:
    """``frames`` (T, H, W, 3) cropped to ``clip_format.crop``: at random and flipped with p = 0.5 (if
    ``clip_format.flip``) with ``rng`` (training), at the centre without (evaluation). C-contiguous.

    Draws from ``rng`` in this order: the crop's top row, its left column, then (only with ``flip``)
    one uniform number for the flip. ``out``: a C-contiguous (T, crop, crop, 3) array (e.g. one row of
    a batch, see :func:`collate`'s ``stacked``) to write the result into, the only copy made; returned.
    """
    offset, flipped = draw_crop(*frames.shape[1:3], clip_format, rng)
    view = io.crop_frames(frames, clip_format.crop, offset)
    if out is None:
        out = np.empty(view.shape, dtype=view.dtype)
    elif out.shape != view.shape or out.dtype != view.dtype or not out.flags.c_contiguous:
        raise ValueError(f"crop_and_flip needs a C-contiguous {view.dtype} out of shape {view.shape}, "
                         f"got {out.dtype} {out.shape}{'' if out.flags.c_contiguous else ' (not C-contiguous)'}")
    if not view.flags.writeable or min(view.strides) < 0:  # torch takes neither: numpy's (slower) copy
        np.copyto(out, view[:, :, ::-1] if flipped else view)
    elif flipped:  # frame by frame in torch: 7x faster than numpy's copy of a negative-stride view, as exact
        target, source = torch.from_numpy(out), torch.from_numpy(view)
        for index in range(len(out)):
            target[index].copy_(source[index].flip(1))
    else:
        torch.from_numpy(out).copy_(torch.from_numpy(view))
    return out


def _stack(values: list[Any]) -> torch.Tensor:
    """One field of a batch: arrays stacked (floating ones as float32), scalars as bool, int64 or float32."""
    first = values[0]
    if isinstance(first, np.ndarray):
        stacked = np.stack(values)
        if np.issubdtype(stacked.dtype, np.floating):
            stacked = stacked.astype(np.float32, copy=False)
        return torch.from_numpy(stacked)
    if isinstance(first, (bool, np.bool_)):
        return torch.tensor([bool(value) for value in values], dtype=torch.bool)
    if isinstance(first, (int, np.integer)):
        return torch.tensor([int(value) for value in values], dtype=torch.long)
    if isinstance(first, (float, np.floating)):
        return torch.tensor([float(value) for value in values], dtype=torch.float32)
    raise TypeError(f"collate cannot batch a field of type {type(first).__name__}")


def _is_row(value: Any, array: np.ndarray, index: int) -> bool:
    """Whether ``value`` is row ``index`` of ``array`` itself (the same memory, shape and strides), not a copy."""
    row = array[index]
    return (isinstance(value, np.ndarray) and value.ctypes.data == row.ctypes.data and value.shape == row.shape
            and value.strides == row.strides)


def collate(examples: Sequence[Mapping[str, Any] | Any], stacked: Mapping[str, np.ndarray] | None = None) -> dict[str, torch.Tensor]:
    """Examples (dicts or dataclasses of equal fields) as one batch: a dict of tensors with a leading B.

    Arrays are stacked (floating arrays as float32, uint8 frames stay uint8); Python scalars become
    bool, int64 or float32 vectors. ``stacked``: fields already stacked, taken as they are (no copy),
    e.g. frames that :func:`crop_and_flip` wrote into the rows of one batch array; each example's value
    of such a field must be that array's row (checked by identity of memory).
    """
    if not examples:
        raise ValueError("collate needs at least one example")
    rows = [example if isinstance(example, Mapping) else
            {item.name: getattr(example, item.name) for item in dataclasses.fields(example)} for example in examples]
    stacked = dict(stacked or {})
    for key, array in stacked.items():
        values = [row[key] for row in rows]
        if len(array) != len(values) or not all(_is_row(value, array, index) for index, value in enumerate(values)):
            raise ValueError(f"collate's stacked {key!r} is not the examples' {key} row by row")
    return {key: torch.from_numpy(stacked[key]) if key in stacked else _stack([row[key] for row in rows]) for key in rows[0]}


class StepBatches:
    """Training batches as a function of the step: ``batches(step, rank, world_size)`` for
    :func:`avlib.train.fit`.

    A subclass sets ``seed`` and writes :meth:`make`, which draws everything random from the
    generator it is given; the generator of (step, rank) is seeded by ``(seed, step, rank)``. A
    batch source must pickle (fit's DataLoader workers receive a copy): keep open files and
    thread pools out of its state.
    """

    seed: int = 0

    def generator(self, step: int, rank: int = 0) -> np.random.Generator:
        """The generator that step ``step`` of rank ``rank`` draws from."""
        return np.random.default_rng([self.seed, step, rank])

    def make(self, rng: np.random.Generator) -> Any:
        """The batch drawn from ``rng``."""
        raise NotImplementedError(f"{type(self).__name__} must define make(rng)")

    def __call__(self, step: int, rank: int = 0, world_size: int = 1) -> Any:
        return self.make(self.generator(step, rank))
