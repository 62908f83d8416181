"""One plain training loop for every experiment: pretraining, UCF-101 fine-tuning, separation.

``fit`` takes a model, a loss function and a source of batches, and does the rest: device placement,
optional bf16 autocast / channels_last_3d / torch.compile on CUDA, gradient clipping, step decay of the
learning rate, a CSV log, atomic checkpoints, exact resume and DDP under ``torchrun``::

    config = TrainConfig(steps=650_000, out_dir="checkpoints/shift")    # the paper's shift pretraining
    history = fit(model, alignment_loss, batches, config)

Resume is exact: a run killed after a checkpoint and started again ends with the same weights, bit for
bit on the CPU, as a run that was never stopped. That needs the batches of step ``s`` to be a function
of ``s`` alone, hence the preferred callable form ``batches(step)`` (see :func:`fit`).
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import math
import os
import random
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from avlib.checkpoint import (
    CheckpointError,
    config_differences,
    load_checkpoint,
    load_model_state,
    model_config_dict,
    save_checkpoint,
)
from avlib.determinism import configure as configure_threads
from avlib.determinism import settings as thread_settings
from avlib.files import atomic_write

CHECKPOINT_FILE = "checkpoint.pt"
METRICS_FILE = "metrics.csv"
EVAL_FILE = "eval.csv"

LossFn = Callable[[nn.Module, Any], tuple[torch.Tensor, Mapping[str, float | torch.Tensor]]]
EvalFn = Callable[[nn.Module], Mapping[str, float | torch.Tensor]]
History = dict[str, list[dict[str, float]]]


class Stateful(Protocol):
    """Anything whose state a checkpoint can carry (a sampler, an EMA of the weights, ...)."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> Any: ...


@dataclass
class TrainConfig:
    """How to train. Defaults are the paper's alignment ("shift") pretraining: SGD, momentum 0.9,
    lr 1e-2 constant, gradient clipping by global norm 5, weight decay 1e-5.

    The paper's weight decay is slim's L2 term ``1e-5 * 0.5 * ||w||^2`` added to the loss; its gradient
    ``1e-5 * w`` is what the optimizer's ``weight_decay=1e-5`` adds (for Adam too: torch's Adam couples it
    into the gradient like an L2 loss). Like slim's ``weights_regularizer`` it applies to conv and linear
    weights only, not to biases or BatchNorm offsets. One difference: slim's L2 gradient is inside the
    clipped global norm, the optimizer adds it after clipping; at 1e-5 this is negligible.

    steps:                 optimizer steps in the whole run (a resumed run continues up to it)
    lr, momentum:          learning rate; momentum is used by SGD only
    weight_decay:          L2 coefficient on conv/linear weights
    weight_decay_prefixes: if not empty, weight decay applies only to parameters whose name starts
                           with one of these (the separation net decays only its U-Net, paper §7.4)
    optimizer:             'sgd' or 'adam' (the separation net: Adam, lr 1e-4)
    grad_clip:             clip the global gradient norm to this; None for no clipping
    lr_milestones, lr_gamma: multiply lr by lr_gamma from each milestone step on (separation: [120_000])
    checkpoint_every:      write out_dir/checkpoint.pt every this many steps, and at the end
    log_every:             append a row to out_dir/metrics.csv every this many steps, and at the end
    seed:                  seeds torch, numpy and random (plus the rank under DDP)
    device:                'cpu', 'cuda' or 'auto' (CUDA when available)
    amp:                   'none' or 'bf16'; bf16 autocast is used on CUDA only, the CPU runs in float32
    channels_last:         store 5-D weights and inputs as channels_last_3d on CUDA (faster 3-D convs)
    compile:               run the model through torch.compile
    workers:               0 builds each batch in this process when its step comes; more builds the batches
                           of a callable ``batches`` ahead in this many DataLoader worker processes (on CUDA
                           pinned in page-locked memory, so that their copy to the GPU does not block)
    prefetch:              batches each worker builds ahead (DataLoader's prefetch_factor)
    out_dir:               folder for checkpoint.pt, metrics.csv and eval.csv
    """

    steps: int
    lr: float = 1e-2
    momentum: float = 0.9
    weight_decay: float = 1e-5
    weight_decay_prefixes: list[str] = field(default_factory=list)
    optimizer: str = "sgd"
    grad_clip: float | None = 5.0
    lr_milestones: list[int] = field(default_factory=list)
    lr_gamma: float = 0.1
    checkpoint_every: int = 1000
    log_every: int = 10
    seed: int = 0
    device: str = "auto"
    amp: str = "none"
    channels_last: bool = False
    compile: bool = False
    workers: int = 0
    prefetch: int = 2
    out_dir: str = "checkpoints/run"

    def __post_init__(self) -> None:
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        if self.amp not in ("none", "bf16"):
            raise ValueError(f"amp must be 'none' or 'bf16', got {self.amp!r}")
        if self.device not in ("cpu", "cuda", "auto"):
            raise ValueError(f"device must be 'cpu', 'cuda' or 'auto', got {self.device!r}")
        if self.workers < 0:
            raise ValueError(f"workers must be 0 or more, got {self.workers}")
        for name in ("steps", "checkpoint_every", "log_every", "prefetch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ValueError(f"grad_clip must be positive or None, got {self.grad_clip}")


def lr_at(step: int, config: TrainConfig) -> float:
    """Learning rate of the update made at 0-based ``step``: ``lr * lr_gamma ** (milestones <= step)``,
    the same schedule as torch's MultiStepLR, computed from the step so that resume needs no state."""
    return _scheduled_lr(step, config.lr, config.lr_gamma, config.lr_milestones)


def _scheduled_lr(step: int, lr: float, gamma: float, milestones: Iterable[int]) -> float:
    """:func:`lr_at` of the schedule's three settings (a checkpoint stores them as plain values)."""
    return lr * gamma ** sum(step >= milestone for milestone in milestones)


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """SGD or Adam over the trainable parameters, weight decay on conv/linear weights only (see
    :class:`TrainConfig`)."""
    decayed, not_decayed = [], []
    prefixes = tuple(config.weight_decay_prefixes)
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        in_scope = not prefixes or name.startswith(prefixes)
        (decayed if parameter.ndim >= 2 and in_scope else not_decayed).append(parameter)
    groups = [
        {"params": decayed, "weight_decay": config.weight_decay},
        {"params": not_decayed, "weight_decay": 0.0},
    ]
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum)
    return torch.optim.Adam(groups, lr=config.lr)


def seed_everything(seed: int) -> None:
    """Seed python's random, numpy and torch (every CUDA device too)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def to_device(batch: Any, device: torch.device, channels_last: bool = False) -> Any:
    """``batch`` with every tensor moved to ``device``, through dicts, lists, tuples, named tuples and
    dataclasses; with ``channels_last``, 5-D float tensors (video) become channels_last_3d."""
    if isinstance(batch, torch.Tensor):
        batch = batch.to(device, non_blocking=True)
        if channels_last and batch.ndim == 5 and batch.is_floating_point():
            batch = batch.contiguous(memory_format=torch.channels_last_3d)
        return batch
    if isinstance(batch, Mapping):
        return {key: to_device(value, device, channels_last) for key, value in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(to_device(value, device, channels_last) for value in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(value, device, channels_last) for value in batch)
    if dataclasses.is_dataclass(batch) and not isinstance(batch, type):
        fields = [f.name for f in dataclasses.fields(batch) if f.init]
        return dataclasses.replace(
            batch, **{name: to_device(getattr(batch, name), device, channels_last) for name in fields}
        )
    return batch


class _SumOverRanks(torch.autograd.Function):
    """All-reduce (sum) with a gradient: each rank's input reaches every rank's output, so the gradient of
    each input is the sum over ranks of the output gradients."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        total = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        total = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(total)
        return total


class RankSyncedBatchNorm(nn.Module):
    """A batch norm whose training statistics are those of the whole batch over all DDP ranks.

    It takes over the parameters and buffers of ``norm`` (the same tensors, under the same names, so the
    model's state dict, its optimizer and its checkpoints see no difference) and computes, in float32,
    mean = sum x / n and var = sum (x - mean)^2 / n with both sums and n all-reduced, normalises with them
    and updates the running averages as ``F.batch_norm`` on the concatenated batch would (unbiased variance).
    In eval mode it normalises with the running averages like ``norm``. Two all-reduces of C numbers each
    per layer; the mean is reduced first so the variance is as precise as a single process's.
    """

    def __init__(self, norm: nn.Module):
        super().__init__()
        self._version = norm._version  # checkpoints keep the state-dict version of the module they came from
        for name, parameter in norm.named_parameters(recurse=False):
            self.register_parameter(name, parameter)
        for name, buffer in norm.named_buffers(recurse=False):
            self.register_buffer(name, buffer, persistent=name not in norm._non_persistent_buffers_set)
        self.eps, self.momentum = norm.eps, norm.momentum
        self.track_running_stats = getattr(norm, "track_running_stats", True) and "running_mean" in self._buffers
        self.train(norm.training)

    @torch.compiler.disable  # collectives inside an autograd Function: run eagerly, a graph break under compile
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        running_mean = self._buffers.get("running_mean")
        running_var = self._buffers.get("running_var")
        weight, bias = self._parameters.get("weight"), self._parameters.get("bias")
        if not self.training and self.track_running_stats:
            return torch.nn.functional.batch_norm(x, running_mean, running_var, weight, bias, False, 0.0, self.eps)
        shape = (1, -1) + (1,) * (x.dim() - 2)  # broadcast (C,) over (B, C, ...)
        dims = [0, *range(2, x.dim())]
        values = x.float()
        local = torch.cat([values.sum(dims), values.new_tensor([x.numel() / x.shape[1]])])
        total = _SumOverRanks.apply(local)
        count = total[-1].detach()
        mean = total[:-1] / count
        centred = values - mean.view(shape)
        var = _SumOverRanks.apply((centred * centred).sum(dims)) / count
        y = centred * torch.rsqrt(var + self.eps).view(shape)
        if weight is not None:
            y = y * weight.view(shape)
        if bias is not None:
            y = y + bias.view(shape)
        if self.training and self.track_running_stats:
            self._update_running_stats(mean.detach(), var.detach(), float(count))
        return y.to(x.dtype)

    @torch.no_grad()
    def _update_running_stats(self, mean: torch.Tensor, var: torch.Tensor, count: float) -> None:
        tracked = self._buffers.get("num_batches_tracked")
        if tracked is not None:
            tracked.add_(1)
        factor = self.momentum if self.momentum is not None else 1.0 / float(tracked)
        running_mean, running_var = self._buffers["running_mean"], self._buffers["running_var"]
        running_mean.mul_(1 - factor).add_(mean.to(running_mean.dtype), alpha=factor)
        unbiased = var * (count / max(count - 1.0, 1.0))
        running_var.mul_(1 - factor).add_(unbiased.to(running_var.dtype), alpha=factor)


def _is_batch_norm(module: nn.Module) -> bool:
    """torch's BatchNorm layers, and modules that declare ``is_batch_norm`` (F.batch_norm of the same fields)."""
    return isinstance(module, nn.modules.batchnorm._BatchNorm) or getattr(module, "is_batch_norm", False) is True


@contextmanager
def ranks_synced_batch_norm(model: nn.Module) -> Iterator[int]:
    """Within: every batch norm inside ``model`` is a :class:`RankSyncedBatchNorm`, and every layer with a
    ``sync_ranks`` switch (batch renorm) has it on (yields how many of both); on exit the original modules
    are back, holding the trained tensors. Needs an initialised process group.

    torch's ``nn.SyncBatchNorm`` would do this for ``nn.BatchNorm*`` on GPUs only (torch 2.13 refuses CPU
    tensors), and knows nothing of batch norms without a scale such as the multisensory net's.
    """
    swapped: list[tuple[nn.Module, str, nn.Module]] = []
    synced = [module for module in model.modules() if getattr(module, "sync_ranks", None) is False]
    for module in synced:  # layers that reduce their own statistics (avlib.models.norm.BatchRenorm)
        module.sync_ranks = True
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if _is_batch_norm(child):
                parent._modules[name] = RankSyncedBatchNorm(child)
                swapped.append((parent, name, child))
            elif "running_mean" in child._buffers and child not in synced:
                warnings.warn(f"{type(child).__name__} looks like a batch norm but does not say so "
                              "(is_batch_norm): its statistics stay per rank", stacklevel=3)
    try:
        yield len(swapped) + len(synced)
    finally:
        for module in synced:
            module.sync_ranks = False
        for parent, name, child in swapped:
            child.train(parent._modules[name].training)
            parent._modules[name] = child


def fit(
    model: nn.Module,
    loss_fn: LossFn,
    batches: Callable[..., Any] | Iterable[Any],
    config: TrainConfig,
    *,
    resume: bool = True,
    eval_fn: EvalFn | None = None,
    eval_every: int | None = None,
    extra_state: Mapping[str, Stateful] | None = None,
    run_config: Mapping[str, Any] | None = None,
    other_budgets: Sequence[str] = (),
) -> History:
    """Train ``model`` for ``config.steps`` optimizer steps and return the logged history.

    model:       any nn.Module; its forward may return anything. Its ``config`` dataclass, if it has one,
                 goes into the checkpoint and is checked on resume.
    loss_fn:     ``loss_fn(model, batch) -> (loss, metrics)``: the scalar loss to minimise and a dict of
                 scalars to log. ``model`` is the module to call (wrapped by torch.compile / DDP when those
                 are on), so call it rather than reaching into its attributes.
    batches:     preferably a callable. ``batches(step)`` returns the batch of 0-based ``step``; under
                 torchrun it is called ``batches(step, rank, world_size)`` and returns that rank's shard
                 (write ``def batches(step, rank=0, world_size=1)`` to serve both). Because the batch is a
                 function of the step, a resumed run sees exactly the batches of an uninterrupted one.
                 With ``config.workers`` > 0 the batches are built ahead in DataLoader worker processes
                 (``batches`` must pickle), the same batches in the same order.
                 An iterable (a DataLoader, already sharded per rank) also works: it is restarted when
                 exhausted, and a resume skips the batches already used, which is exact only if it
                 yields the same sequence every time it is iterated.
    resume:      continue from ``out_dir/checkpoint.pt`` when it exists (model, optimizer, step, RNG
                 states, ``extra_state``); with False, start over: the old checkpoint and logs go.
    eval_fn:     ``eval_fn(model) -> metrics``, called on rank 0 in eval mode without gradients every
                 ``eval_every`` steps (None: only at the end); rows go to ``out_dir/eval.csv``.
    extra_state: named objects with ``state_dict``/``load_state_dict`` saved in and restored from the
                 checkpoint.
    run_config:  JSON-able facts about the run stored in the checkpoint's config (profile, data settings).
    other_budgets: dotted keys of ``run_config`` that are other runs' step budgets stored along (the u-net PIT
                 baseline's steps in the full model's section): a resume accepts them changed.

    A resume continues the checkpoint's run to ``config.steps``, which may be larger than the run it was
    started with (extending a finished run equals, bit for bit, a run started with the larger count when the
    checkpoint is at a step that run also saved); what else may change is :func:`refuse_changed_config`'s.

    Torch's thread count is first set by :func:`avlib.determinism.configure` (2 unless ``AVLIB_THREADS``
    says otherwise), since CPU results depend on it; the checkpoint records it (``extra['threads']``).

    Returns ``{'train': rows of metrics.csv, 'eval': rows of eval.csv}`` on rank 0, the whole run's rows
    (also those logged before a resume); other ranks get empty lists. Rows hold step, loss, the metrics,
    lr, grad_norm (before clipping) and elapsed_s (training seconds, summed over resumes); the logged
    loss and metrics are rank 0's own.

    Under torchrun (``WORLD_SIZE`` > 1) each rank trains on its shard, DDP averages the gradients, and
    every batch norm normalises with the statistics of the whole batch over all ranks: for the run, each
    ``nn.BatchNorm*`` and each module marked ``is_batch_norm`` (the multisensory and I3D nets' batch norm
    without scale) becomes a :class:`RankSyncedBatchNorm` sharing its tensors. torch's own
    ``nn.SyncBatchNorm`` is not used: in torch 2.13 it refuses CPU tensors (no gloo runs) and converts only
    ``nn.BatchNorm*``. DDP searches the graph for parameters the loss did not reach each step
    (``find_unused_parameters``), which some models have. So one step on R ranks equals one
    single-process step on the concatenated batch (equal shards, no dropout, the loss a mean over
    examples) up to float32 rounding: tests/test_ddp.py measures at most 1e-6 in any weight or statistic
    after one SGD step (lr 0.1) of the pretraining, CAM and UCF-101 models, 3e-5 in the separation net's
    output biases (as much as reordering the batch in one process moves them).
    """
    # a fixed torch thread count: CPU reductions, hence the weights, depend on it (avlib.determinism)
    configure_threads()
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = _resolve_device(config.device, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    created_group = world_size > 1 and not dist.is_initialized()
    if created_group:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        model.to(device)
        if config.channels_last and device.type == "cuda":
            _to_channels_last_3d(model)
        # After the move: the synced layers share the module's tensors, and .to() replaces buffers.
        with ranks_synced_batch_norm(model) if world_size > 1 else nullcontext():
            return _train(
                model, loss_fn, batches, config, device, rank, world_size,
                resume=resume, eval_fn=eval_fn, eval_every=eval_every,
                extra_state=dict(extra_state or {}), run_config=dict(run_config or {}),
                other_budgets=tuple(other_budgets),
            )
    finally:
        if created_group:
            dist.destroy_process_group()


def _train(
    model: nn.Module,
    loss_fn: LossFn,
    batches: Callable[..., Any] | Iterable[Any],
    config: TrainConfig,
    device: torch.device,
    rank: int,
    world_size: int,
    *,
    resume: bool,
    eval_fn: EvalFn | None,
    eval_every: int | None,
    extra_state: dict[str, Stateful],
    run_config: dict[str, Any],
    other_budgets: tuple[str, ...] = (),
) -> History:
    is_main = rank == 0
    out_dir = Path(config.out_dir)
    checkpoint_path = out_dir / CHECKPOINT_FILE
    metrics_path, eval_path = out_dir / METRICS_FILE, out_dir / EVAL_FILE
    on_cuda = device.type == "cuda"

    optimizer = make_optimizer(model, config)
    # Each rank draws its own dropout masks; DDP copies rank 0's initial weights to all ranks.
    seed_everything(config.seed + rank)

    start_step, elapsed_before = 0, 0.0
    if resume and checkpoint_path.exists():
        start_step, elapsed_before = _restore(
            checkpoint_path, model, optimizer, config, device, rank, world_size, extra_state, run_config,
            other_budgets,
        )
    if is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        if not resume:
            # A fresh run killed before its first checkpoint must not resume the old one later.
            checkpoint_path.unlink(missing_ok=True)
        # Rows logged after the checkpoint belong to steps that will be run again.
        _truncate_log(metrics_path, start_step)
        _truncate_log(eval_path, start_step)

    forward_model = torch.compile(model) if config.compile else model
    train_model: nn.Module = forward_model
    if world_size > 1:
        # Models may hold trainable parameters that the loss never reaches (the separation net's copy of the
        # alignment classifier); without the search DDP would wait for their gradients and reduce no bucket.
        train_model = DistributedDataParallel(
            forward_model, device_ids=[device.index] if on_cuda else None, find_unused_parameters=True
        )
    if callable(batches) and config.workers > 0 and start_step < config.steps:
        next_batch = _loader_source(batches, start_step, config, rank, world_size, pin_memory=on_cuda)
    else:
        next_batch = _batch_source(batches, start_step, rank, world_size)
    try:
        _loop(model, loss_fn, next_batch, config, optimizer, forward_model, train_model, device, rank, world_size,
              start_step, elapsed_before, eval_fn=eval_fn, eval_every=eval_every, extra_state=extra_state,
              run_config=run_config)
    finally:
        del next_batch  # a DataLoader's worker processes end with its last reference

    if world_size > 1:
        # BatchNorm statistics end as each rank's own; hand every rank the checkpoint's (rank 0's).
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)
    if not is_main:
        return {"train": [], "eval": []}
    return {"train": read_log(metrics_path), "eval": read_log(eval_path)}


def _loop(
    model: nn.Module,
    loss_fn: LossFn,
    next_batch: Callable[[int], Any],
    config: TrainConfig,
    optimizer: torch.optim.Optimizer,
    forward_model: nn.Module,
    train_model: nn.Module,
    device: torch.device,
    rank: int,
    world_size: int,
    start_step: int,
    elapsed_before: float,
    *,
    eval_fn: EvalFn | None,
    eval_every: int | None,
    extra_state: dict[str, Stateful],
    run_config: dict[str, Any],
) -> None:
    """The optimizer steps from ``start_step`` to ``config.steps``, with logging, evaluation and checkpoints."""
    is_main = rank == 0
    out_dir = Path(config.out_dir)
    checkpoint_path = out_dir / CHECKPOINT_FILE
    metrics_path, eval_path = out_dir / METRICS_FILE, out_dir / EVAL_FILE
    on_cuda = device.type == "cuda"
    channels_last = config.channels_last and on_cuda
    parameters = [parameter for parameter in model.parameters() if parameter.requires_grad]
    train_model.train()

    progress = tqdm(total=config.steps, initial=start_step, disable=not is_main, desc=f"train {out_dir.name}")
    started = time.perf_counter() - elapsed_before
    for step in range(start_step, config.steps):
        lr = lr_at(step, config)
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = to_device(next_batch(step), device, channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.amp == "bf16" and on_cuda):
            loss, metrics = loss_fn(train_model, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip is None:
            grad_norm = torch.nn.utils.get_total_norm([p.grad for p in parameters if p.grad is not None])
        else:
            grad_norm = torch.nn.utils.clip_grad_norm_(parameters, config.grad_clip)
        optimizer.step()
        done = step + 1
        progress.update()

        # Log and evaluate before checkpointing, so every step up to the checkpoint has its rows.
        if is_main and (done % config.log_every == 0 or done == config.steps):
            row = {"step": done, "loss": loss.item()}
            if not math.isfinite(row["loss"]):
                raise FloatingPointError(f"loss is {row['loss']} at step {done}; see {metrics_path}")
            row.update({name: float(value) for name, value in metrics.items()})
            row.update(lr=lr, grad_norm=float(grad_norm), elapsed_s=time.perf_counter() - started)
            _append_row(metrics_path, row)
            progress.set_postfix(loss=f"{row['loss']:.4g}", lr=f"{lr:.3g}")
        eval_due = (eval_every is not None and done % eval_every == 0) or done == config.steps
        if is_main and eval_fn is not None and eval_due:
            _append_row(eval_path, {"step": done, **_evaluate(eval_fn, forward_model, train_model)})
        if done % config.checkpoint_every == 0 or done == config.steps:
            _save(
                checkpoint_path, model, optimizer, done, config, run_config, extra_state,
                elapsed_s=time.perf_counter() - started,
                device=device, is_main=is_main, world_size=world_size,
            )
    progress.close()


def resolve_device(device: str) -> str:
    """'cuda' or 'cpu' for 'auto' | 'cuda' | 'cpu': CUDA when asked for (or 'auto') and torch sees a device."""
    return "cuda" if device in ("cuda", "auto") and torch.cuda.is_available() else "cpu"


def _resolve_device(name: str, local_rank: int) -> torch.device:
    """The torch device for 'cpu' | 'cuda' | 'auto'; under torchrun each process takes its LOCAL_RANK GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("TrainConfig.device is 'cuda' but torch sees no CUDA device")
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def _to_channels_last_3d(model: nn.Module) -> None:
    """Store the model's 5-D tensors channels_last_3d; other ranks (2-D audio convs, linears) have no
    such layout and stay as they are, which ``Module.to(memory_format=...)`` would refuse."""
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        if tensor.ndim == 5:
            tensor.data = tensor.data.contiguous(memory_format=torch.channels_last_3d)


def _batch_source(
    batches: Callable[..., Any] | Iterable[Any], start_step: int, rank: int, world_size: int
) -> Callable[[int], Any]:
    """A function step -> batch over either form of ``batches`` (see :func:`fit`)."""
    if callable(batches):
        if world_size == 1:
            return batches
        return lambda step: batches(step, rank, world_size)
    stream = itertools.islice(_repeat_passes(batches), start_step, None)
    return lambda step: next(stream)


class _StepDataset(torch.utils.data.Dataset):
    """Map-style view of ``batches(step, rank, world_size)``: item ``i`` is the batch of step ``start_step + i``."""

    def __init__(self, batches: Callable[..., Any], start_step: int, steps: int, rank: int, world_size: int):
        self.batches, self.start_step, self.steps, self.rank, self.world_size = batches, start_step, steps, rank, world_size

    def __len__(self) -> int:
        return self.steps - self.start_step

    def __getitem__(self, index: int) -> Any:
        step = self.start_step + index
        if self.world_size == 1:
            return self.batches(step)
        return self.batches(step, self.rank, self.world_size)


def _loader_source(
    batches: Callable[..., Any], start_step: int, config: TrainConfig, rank: int, world_size: int, *, pin_memory: bool
) -> Callable[[int], Any]:
    """A function step -> batch that takes the batches, in step order, from a DataLoader whose
    ``config.workers`` processes build them ahead (``config.prefetch`` each)."""
    loader = torch.utils.data.DataLoader(
        _StepDataset(batches, start_step, config.steps, rank, world_size),
        batch_size=None, shuffle=False, num_workers=config.workers, prefetch_factor=config.prefetch,
        pin_memory=pin_memory, persistent_workers=True,
        # Its own generator: seeding the workers must not draw from torch's global RNG (dropout, init).
        generator=torch.Generator().manual_seed(config.seed + rank),
    )
    stream = iter(loader)
    expected = iter(range(start_step, config.steps))

    def next_batch(step: int) -> Any:
        if next(expected) != step:
            raise RuntimeError(f"fit asked its DataLoader for step {step} out of order")
        return next(stream)

    return next_batch


def _repeat_passes(batches: Iterable[Any]) -> Iterator[Any]:
    """The iterable's items, pass after pass (epochs)."""
    while True:
        empty = True
        for batch in batches:
            empty = False
            yield batch
        if empty:
            raise ValueError(
                "batches yielded nothing on a new pass; give fit a re-iterable (a DataLoader) or a "
                "callable batches(step)"
            )


def _evaluate(eval_fn: EvalFn, forward_model: nn.Module, train_model: nn.Module) -> dict[str, float]:
    """Run ``eval_fn`` on the unwrapped (no DDP) model in eval mode without gradients."""
    forward_model.eval()
    try:
        with torch.no_grad():
            metrics = eval_fn(forward_model)
    finally:
        train_model.train()
    return {name: float(value) for name, value in metrics.items()}


def _rng_state(device: torch.device) -> dict[str, Any]:
    """This process's random generator states, as tensors and plain values (weights_only can load them).
    Only the training GPU's: asking every GPU would open a CUDA context on each from every rank."""
    _, key, position, has_gauss, cached_gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "numpy": {
            "key": torch.from_numpy(key.astype(np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "cached_gauss": float(cached_gauss),
        },
        "python": random.getstate(),
    }


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)
    numpy_state = state["numpy"]
    np.random.set_state(
        ("MT19937", numpy_state["key"].numpy().astype(np.uint32), numpy_state["position"],
         numpy_state["has_gauss"], numpy_state["cached_gauss"])
    )
    random.setstate(state["python"])


def _save(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    step: int,
    config: TrainConfig,
    run_config: dict[str, Any],
    extra_state: dict[str, Stateful],
    *,
    elapsed_s: float,
    device: torch.device,
    is_main: bool,
    world_size: int,
) -> None:
    """Write the checkpoint from rank 0, with every rank's RNG states so each resumes its own streams."""
    rng_states = [_rng_state(device)]
    if world_size > 1:
        gathered: list[Any] = [None] * world_size
        dist.all_gather_object(gathered, rng_states[0])
        rng_states = gathered
    if not is_main:
        return
    save_checkpoint(
        path,
        model=model,
        optimizer=optimizer,
        step=step,
        config={"train": asdict(config), "run": run_config},
        extra={
            "rng": rng_states,
            "elapsed_s": elapsed_s,
            "threads": thread_settings(),
            "state": {name: stateful.state_dict() for name, stateful in extra_state.items()},
        },
    )


def _restore(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    config: TrainConfig,
    device: torch.device,
    rank: int,
    world_size: int,
    extra_state: dict[str, Stateful],
    run_config: dict[str, Any],
    other_budgets: Sequence[str] = (),
) -> tuple[int, float]:
    """Load the checkpoint into model, optimizer, RNGs and ``extra_state``; return (step, elapsed_s)."""
    checkpoint = load_checkpoint(
        path, expected_model_class=type(model), expected_config=model_config_dict(model)
    )
    extra = checkpoint["extra"]
    if not isinstance(extra, dict) or "rng" not in extra:
        raise CheckpointError(f"checkpoint {path} was not written by avlib.train.fit: it has no RNG states")
    load_model_state(model, checkpoint["model"], path)
    try:
        optimizer.load_state_dict(checkpoint["optimizer"])
    except (ValueError, KeyError) as error:
        raise CheckpointError(
            f"checkpoint {path}: its optimizer state does not fit this run: {error}"
        ) from error

    refuse_changed_config(path, checkpoint["config"], {"train": asdict(config), "run": run_config},
                          step=checkpoint["step"], other_budgets=other_budgets)
    if len(extra["rng"]) == world_size:
        _set_rng_state(extra["rng"][rank], device)
    else:
        warnings.warn(
            f"{path} was written by {len(extra['rng'])} processes, this run has {world_size}: "
            "random streams are reseeded, so the resume is not exact",
            stacklevel=3,
        )
        seed_everything(config.seed + rank + checkpoint["step"])
    for name, stateful in extra_state.items():
        if name not in extra["state"]:
            raise CheckpointError(f"checkpoint {path} has no state for {name!r}")
        stateful.load_state_dict(extra["state"][name])
    return checkpoint["step"], float(extra["elapsed_s"])


#: Training settings a resume may change: a longer run (``train.steps``, never below the steps done), a moved
#: folder, another device, other loader processes (they make the same batches).
RESUMABLE_CHANGES = ("train.steps", "train.out_dir", "train.device", "train.workers", "train.prefetch")


def refuse_changed_config(path: Path, stored: Mapping[str, Any], current: Mapping[str, Any], *, step: int | None = None,
                          other_budgets: Sequence[str] = ()) -> None:
    """Raise :class:`CheckpointError` naming every key of the training settings or of the run's config
    (the resolved experiment) that differs between the checkpoint and this run, except what a resume may change.

    With ``step`` (the steps the checkpoint has done), a run may be extended: ``train.steps`` grows (a smaller
    count than ``step`` is refused), ``train.lr_milestones`` may move or appear after the steps done as long
    as :func:`lr_at` of every step done stays the same, and the run config's copies of the budget and of the
    milestones (a key ``steps`` / ``*_steps`` or ``*_milestones`` holding ``train.steps`` / ``train.lr_milestones``
    on both sides, e.g. ``separation.train.steps``) follow them. ``other_budgets``: run-config keys (dotted)
    that are other runs' budgets, which may change. Without ``step`` only :data:`RESUMABLE_CHANGES` may change.
    """
    stored_plain, current_plain = _plain(stored), _plain(current)
    old_train, new_train = stored_plain["train"], current_plain["train"]
    if step is not None and isinstance(new_train.get("steps"), int) and new_train["steps"] < step:
        raise CheckpointError(
            f"checkpoint {path} has done {step} steps, more than this run's train.steps = {new_train['steps']}: "
            f"a run is not shortened. Ask for train.steps >= {step}, or start over (resume=False, or another folder)"
        )
    # a setting added after the checkpoint was written, at its off value, computes what the checkpoint did
    differing = config_differences(stored_plain, current_plain, added_off_ok=True)
    changed_lr = None if step is None else _first_changed_lr_step(old_train, new_train, step)
    schedule_kept = step is not None and changed_lr is None
    changed = [key for key in differing if not (
        key in RESUMABLE_CHANGES
        or (schedule_kept and _under(key, "train.lr_milestones"))
        or any(_under(key, f"run.{budget}") for budget in other_budgets)
        or (step is not None and _copies_schedule(key, stored_plain, current_plain))
    )]
    if changed:
        why = ""
        if changed_lr is not None and any(_under(key, "train.lr_milestones") for key in changed):
            why = (f" (train.lr_milestones: the learning rate of 0-based step {changed_lr}, already done, would change from "
                   f"{_lr_of(old_train, changed_lr):g} to {_lr_of(new_train, changed_lr):g}; milestones may only "
                   f"move or appear after the {step} steps done)")
        raise CheckpointError(
            f"checkpoint {path} was written with another config; differing keys: {', '.join(changed)}{why}. "
            "Resume with the same config, or start over (resume=False, or another folder)"
        )


def _under(key: str, name: str) -> bool:
    """Whether dotted ``key`` is ``name`` or lies below it (a list element of it)."""
    return key == name or key.startswith(name + ".")


def _lr_of(train: Mapping[str, Any], step: int) -> float:
    return _scheduled_lr(step, train.get("lr", 0.0), train.get("lr_gamma", 1.0), train.get("lr_milestones", []))


def _first_changed_lr_step(old: Mapping[str, Any], new: Mapping[str, Any], done: int) -> int | None:
    """The first of the ``done`` steps whose learning rate differs between two stored schedules, or None. The rate
    is constant between milestones, so step 0 and the milestones before ``done`` are the only steps to compare."""
    candidates = {0} | {int(m) for m in [*old.get("lr_milestones", []), *new.get("lr_milestones", [])] if m < done}
    for step in sorted(candidates):
        if step < done and _lr_of(old, step) != _lr_of(new, step):
            return step
    return None


def _copies_schedule(key: str, stored: Mapping[str, Any], current: Mapping[str, Any]) -> bool:
    """Whether run-config ``key`` (or the list it is an element of) is a copy of the run's step budget or of its
    milestones on both sides: those keys change with ``train.steps`` / ``train.lr_milestones``, which are checked."""
    parts = key.split(".")
    if parts[0] != "run":
        return False
    if len(parts) > 2 and parts[-1].isdigit():
        parts = parts[:-1]
    name, node = parts[-1], parts[1:]
    old, new = _lookup(stored["run"], node), _lookup(current["run"], node)
    if name == "steps" or name.endswith("_steps"):
        return old == stored["train"].get("steps") and new == current["train"].get("steps")
    if name.endswith("milestones"):
        return (_is_sequence(old) and _is_sequence(new) and list(old) == list(stored["train"].get("lr_milestones", []))
                and list(new) == list(current["train"].get("lr_milestones", [])))
    return False


def _lookup(tree: Any, parts: Sequence[str]) -> Any:
    """The value at dotted ``parts`` in nested dicts and lists, or None where there is none."""
    for part in parts:
        if isinstance(tree, Mapping) and part in tree:
            tree = tree[part]
        elif _is_sequence(tree) and part.isdigit() and int(part) < len(tree):
            tree = tree[int(part)]
        else:
            return None
    return tree


def _is_sequence(value: Any) -> bool:
    return isinstance(value, (list, tuple))


def _plain(config: Mapping[str, Any]) -> dict[str, Any]:
    """The training settings and run config of a checkpoint's config, as plain nested dicts."""
    return {"train": dict(config.get("train", {})), "run": dict(config.get("run", {}))}


def _append_row(path: Path, row: dict[str, float]) -> None:
    """Append one row to a CSV log, writing the header with the first row. Opened per row so that a
    killed run loses nothing it logged."""
    new_file = not path.exists() or path.stat().st_size == 0
    fieldnames = list(row) if new_file else _read_header(path)
    if set(row) != set(fieldnames):
        raise ValueError(f"{path} has columns {fieldnames} but this row has {list(row)}")
    with path.open("a", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=fieldnames)
        if new_file:
            writer.writeheader()
        writer.writerow(row)


def _read_header(path: Path) -> list[str]:
    with path.open(newline="") as file:
        return next(csv.reader(file))


def read_log(path: Path) -> list[dict[str, float]]:
    """The rows of a CSV log as numbers (step as int)."""
    if not path.exists():
        return []
    with path.open(newline="") as file:
        return [
            {key: int(value) if key == "step" else float(value) for key, value in row.items()}
            for row in csv.DictReader(file)
        ]


def _truncate_log(path: Path, last_step: int) -> None:
    """Drop the rows of a CSV log after ``last_step`` (atomically); at step 0 drop the file."""
    if not path.exists():
        return
    if last_step == 0:
        path.unlink()
        return
    with path.open(newline="") as file:
        lines = file.read().splitlines(keepends=True)
    kept = lines[:1] + [line for line in lines[1:] if int(line.split(",", 1)[0]) <= last_step]
    if len(kept) < len(lines):
        atomic_write(path, lambda out: out.write("".join(kept).encode()))


# ------------------------------------------------------------------------------------------ has the loss flattened?


@dataclass(frozen=True)
class Flatness:
    """What :func:`loss_flattened` measured: the two last windows of the training loss and the verdict."""

    last_step: int  # the history's last logged step
    window_steps: int  # steps in each window
    earlier: tuple[int, int]  # (first, last) logged step of the window before the last
    last: tuple[int, int]  # (first, last) logged step of the last window
    rows: tuple[int, int]  # logged rows in the earlier and in the last window
    earlier_mean: float  # mean logged loss of the earlier window
    last_mean: float  # mean logged loss of the last window
    relative_drop: float  # (earlier_mean - last_mean) / |earlier_mean|: 0.05 is a 5 % fall
    low: float  # 95 % Welch t interval of the relative drop
    high: float
    tolerance: float  # a relative change within +-tolerance counts as flat
    verdict: str  # 'flat', 'falling', 'rising' or 'not resolved'

    @property
    def flat(self) -> bool:
        return self.verdict == "flat"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "flat": self.flat}


class TooFewLoggedRows(ValueError):
    """:func:`loss_flattened` cannot apply its rule: a window holds fewer than two logged rows (or the log none)."""


def loss_flattened(history: Iterable[Mapping[str, float]] | str | os.PathLike, *, window: float = 0.1,
                   tolerance: float = 0.02, level: float = 0.95, column: str = "loss") -> Flatness:
    """Whether a training loss has flattened at the end of its run, from the rows of its metrics.csv.

    ``history``: rows with ``step`` and ``loss`` (``fit``'s ``history['train']``), or the path of a metrics.csv.
    The rule: the last ``window`` of the steps (a tenth: steps ``(S - w, S]`` with ``w = round(window * S)``, S the
    last logged step) is compared with the window before it (``(S - 2w, S - w]``). The relative drop is
    ``(earlier mean - last mean) / |earlier mean|``, and its ``level`` interval is the Welch t interval of the
    difference of the two windows' means (the logged rows of a window as independent draws around its mean)
    divided by ``|earlier mean|``. Verdict:

    - ``flat``: the whole interval lies within ``+-tolerance`` (at 95 %, the loss moved by less than 2 % over
      the last tenth of the run);
    - ``falling``: the interval lies above ``+tolerance`` (``rising``: below ``-tolerance``);
    - ``not resolved``: the interval reaches past ``+-tolerance`` on one side only or both: the windows are too
      noisy to say; train longer (wider windows) or log more often.

    An interval that contains 0 is not taken as flat: a drop the noise hides is still a drop, so a noisy curve
    is ``not resolved`` rather than flat. Each window needs at least two logged rows.
    """
    source = f"{history}" if isinstance(history, (str, os.PathLike)) else "the history"
    if isinstance(history, (str, os.PathLike)):
        path = Path(history)
        if not path.is_file():
            raise FileNotFoundError(f"no training log at {path}")
        rows = read_log(path)
    else:
        rows = list(history)
    if not 0 < window <= 0.5:
        raise ValueError(f"window is a share of the steps in (0, 0.5], got {window}")
    if tolerance <= 0:
        raise ValueError(f"tolerance must be positive, got {tolerance}")
    missing = [name for name in ("step", column) if rows and name not in rows[0]]
    if missing:
        raise ValueError(f"{source} has no column {missing[0]!r} (columns: {', '.join(rows[0])})")
    steps = np.asarray([row["step"] for row in rows], dtype=np.int64)
    losses = np.asarray([row[column] for row in rows], dtype=np.float64)
    if steps.size == 0:
        raise TooFewLoggedRows(f"{source} has no logged rows")
    last_step = int(steps.max())
    width = max(1, round(window * last_step))
    in_last = (steps > last_step - width) & (steps <= last_step)
    in_earlier = (steps > last_step - 2 * width) & (steps <= last_step - width)
    if in_last.sum() < 2 or in_earlier.sum() < 2:
        raise TooFewLoggedRows(
            f"{source}: the windows of {width} steps before step {last_step} hold {int(in_earlier.sum())} and "
            f"{int(in_last.sum())} logged rows; each needs 2 or more (log more often, or a wider window)")
    from avlib.stats import welch_interval

    difference, low, high = welch_interval(losses[in_earlier], losses[in_last], level)
    scale = abs(float(losses[in_earlier].mean()))
    if scale == 0:
        raise ValueError(f"{source}: the earlier window's mean loss is 0, so no relative drop")
    drop, low, high = difference / scale, low / scale, high / scale
    if -tolerance < low and high < tolerance:
        verdict = "flat"
    elif low >= tolerance:
        verdict = "falling"
    elif high <= -tolerance:
        verdict = "rising"
    else:
        verdict = "not resolved"
    return Flatness(
        last_step=last_step, window_steps=width,
        earlier=(int(steps[in_earlier].min()), int(steps[in_earlier].max())),
        last=(int(steps[in_last].min()), int(steps[in_last].max())),
        rows=(int(in_earlier.sum()), int(in_last.sum())),
        earlier_mean=float(losses[in_earlier].mean()), last_mean=float(losses[in_last].mean()),
        relative_drop=float(drop), low=float(low), high=float(high), tolerance=tolerance, verdict=verdict,
    )


def loss_end_label(history: Iterable[Mapping[str, float]] | str | os.PathLike, **rule: Any) -> str:
    """:func:`loss_flattened` of ``history`` in a few words for a table: ``"falling: 19.6 % (8.9 to 30.2)"`` (the
    relative drop over the last tenth with its interval), or why the rule could not be applied (too few logged
    rows in the windows, no rows)."""
    try:
        flatness = loss_flattened(history, **rule)
    except TooFewLoggedRows:
        return "too few logged steps to judge"
    return f"{flatness.verdict}: {100 * flatness.relative_drop:.1f} % ({100 * flatness.low:.1f} to {100 * flatness.high:.1f})"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m avlib.train METRICS_CSV ...``: print :func:`loss_flattened` of each training log, a line each
    (``--json``: every number as JSON)."""
    import argparse
    import json
    import sys

    parser = argparse.ArgumentParser(prog="python -m avlib.train", description="Has the training loss flattened? "
                                     "Compares the mean loss of the last tenth of the steps with the tenth before "
                                     "(avlib.train.loss_flattened, docs/training.md).")
    parser.add_argument("logs", nargs="+", help="metrics.csv files written by avlib.train.fit")
    parser.add_argument("--window", type=float, default=0.1, help="share of the steps in each window (default 0.1)")
    parser.add_argument("--tolerance", type=float, default=0.02, help="relative change counted as flat (default 0.02)")
    parser.add_argument("--json", action="store_true", help="print every number as JSON")
    args = parser.parse_args(argv)
    try:
        verdicts = {log: loss_flattened(log, window=args.window, tolerance=args.tolerance) for log in args.logs}
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({log: verdict.to_dict() for log, verdict in verdicts.items()}, indent=1))
        return 0
    for log, v in verdicts.items():
        print(f"{log}: {v.verdict} at step {v.last_step}: mean loss {v.earlier_mean:.4g} (steps {v.earlier[0]}-{v.earlier[1]}, "
              f"{v.rows[0]} rows) -> {v.last_mean:.4g} (steps {v.last[0]}-{v.last[1]}, {v.rows[1]} rows), drop "
              f"{100 * v.relative_drop:.2f} % (95 % interval {100 * v.low:.2f} to {100 * v.high:.2f} %, flat within "
              f"+-{100 * v.tolerance:g} %)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
