"""Batch renormalisation as the official code trains it: TF 1.x ``tf.layers.batch_normalization(renorm=True)``
with no clipping (docs/paper.md §2.7, §7.3).

In training a batch renorm layer normalises with the batch's moments, like batch norm, then corrects the
result towards its own moving moments: y = ((x - mu_B) / sigma_B * r + d) * gamma + beta with

    sigma_B = sqrt(var_B + eps),   r = sigma_B / sigma_R,   d = (mu_B - mu_R) / sigma_R

where r and d carry no gradient (TF's ``stop_gradient``) and (mu_R, sigma_R) are exponential averages of
the batch moments with decay ``renorm_decay`` (TF's ``renorm_momentum``, 0.99), debiased by a weight
(the average of the constant 1), so that before the first update they equal the batch's own moments
(r = 1, d = 0). No clipping: the official code sets no ``renorm_clipping``, so r and d are unbounded. The
inference averages (``running_mean``, ``running_var``; TF's ``moving_mean``, ``moving_variance``) follow the
debiased renorm averages, mu_R and sigma_R^2 - eps, with the layer's own momentum (TF decay 0.9997). In
evaluation the layer is plain batch norm with the inference averages. Variances are the biased batch
variances throughout (TF's ``nn.moments``).

Buffers are TF's variables under the module's names: ``renorm_mean``, ``renorm_stddev`` and their scalar
weights ``renorm_mean_weight``, ``renorm_stddev_weight`` (all start at 0).

Under DDP, :func:`avlib.train.fit` sets :attr:`BatchRenorm.sync_ranks`: the batch moments are then those of
the whole batch over all ranks (sums all-reduced, as :class:`avlib.train.RankSyncedBatchNorm` does for batch
norm), so every rank computes the same r, d and averages.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

#: TF's ``renorm_momentum`` default: decay of the renorm averages (their weight of the new batch is 0.01).
TF_RENORM_DECAY = 0.99


class _SumOverRanks(torch.autograd.Function):
    """All-reduce (sum) whose gradient is the all-reduced output gradient."""

    @staticmethod
    def forward(ctx: Any, tensor: Tensor) -> Tensor:
        total = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        total = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(total)
        return total


class BatchRenorm(nn.Module):
    """TF 1.x batch renormalisation without clipping over (B, C, ...) inputs; same shape out.

    Args:
        num_channels: C.
        eps: epsilon (1e-3 in the shift net, 1e-5 in the U-Net).
        momentum: weight of the current value in the inference averages, 1 - TF's ``momentum`` (decay).
        renorm_decay: TF's ``renorm_momentum``, the decay of the renorm averages (0.99).
        scale: a learned gamma (``weight``); the shift net has none (slim ``scale=False``), the U-Net has one.
    """

    def __init__(self, num_channels: int, eps: float, momentum: float, renorm_decay: float = TF_RENORM_DECAY,
                 scale: bool = False):
        super().__init__()
        if not 0.0 <= renorm_decay < 1.0:
            raise ValueError(f"renorm_decay must be in [0, 1), got {renorm_decay}")
        self.eps, self.momentum, self.renorm_decay = eps, momentum, renorm_decay
        self.weight = nn.Parameter(torch.ones(num_channels)) if scale else None
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.register_buffer("running_mean", torch.zeros(num_channels))
        self.register_buffer("running_var", torch.ones(num_channels))
        for name, shape in (("renorm_mean", (num_channels,)), ("renorm_stddev", (num_channels,)),
                            ("renorm_mean_weight", ()), ("renorm_stddev_weight", ())):
            self.register_buffer(name, torch.zeros(shape))
        #: the batch moments over all DDP ranks (set by avlib.train.fit under torchrun)
        self.sync_ranks = False

    def extra_repr(self) -> str:
        return (f"{len(self.bias)}, eps={self.eps}, momentum={self.momentum}, renorm_decay={self.renorm_decay}, "
                f"scale={self.weight is not None}")

    def _moments(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Per-channel mean and biased variance of ``x`` (over every rank with ``sync_ranks``)."""
        dims = [0, *range(2, x.dim())]
        if not self.sync_ranks:
            return x.mean(dims), x.var(dims, unbiased=False)
        shape = (1, -1) + (1,) * (x.dim() - 2)
        total = _SumOverRanks.apply(torch.cat([x.sum(dims), x.new_tensor([x.numel() / x.shape[1]])]))
        count = total[-1].detach()
        mean = total[:-1] / count
        centred = x - mean.view(shape)
        return mean, _SumOverRanks.apply((centred * centred).sum(dims)) / count

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() < 2 or x.shape[1] != len(self.bias):
            raise ValueError(f"expected input of shape (B, {len(self.bias)}, ...), got {tuple(x.shape)}")
        if not self.training:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        shape = (1, -1) + (1,) * (x.dim() - 2)
        values = x if x.dtype == torch.float64 else x.float()  # half-precision inputs normalise in float32
        mean, var = self._moments(values)
        stddev = torch.sqrt(var + self.eps)
        r, d = self._corrections_and_update(mean.detach(), stddev.detach())
        y = (values - mean.view(shape)) / stddev.view(shape) * r.view(shape) + d.view(shape)
        if self.weight is not None:
            y = y * self.weight.view(shape)
        return (y + self.bias.view(shape)).to(x.dtype)

    @torch.no_grad()
    def _corrections_and_update(self, mean: Tensor, stddev: Tensor) -> tuple[Tensor, Tensor]:
        """r and d from the renorm averages before this batch, then every average updated (TF's order)."""
        mixed_mean = self.renorm_mean + (1.0 - self.renorm_mean_weight) * mean
        mixed_stddev = self.renorm_stddev + (1.0 - self.renorm_stddev_weight) * stddev
        r, d = stddev / mixed_stddev, (mean - mixed_mean) / mixed_stddev
        factor = 1.0 - self.renorm_decay
        for average, weight, value in ((self.renorm_mean, self.renorm_mean_weight, mean),
                                       (self.renorm_stddev, self.renorm_stddev_weight, stddev)):
            average.add_((value.to(average.dtype) - average) * factor)
            weight.add_((1.0 - weight) * factor)
        new_mean = self.renorm_mean / self.renorm_mean_weight
        new_var = (self.renorm_stddev / self.renorm_stddev_weight) ** 2 - self.eps
        self.running_mean.add_((new_mean - self.running_mean) * self.momentum)
        self.running_var.add_((new_var - self.running_var) * self.momentum)
        return r, d
