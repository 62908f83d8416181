"""I3D: Inception-v1 inflated to 3-D (Carreira & Zisserman, CVPR 2017), as a video feature network.

The paper's separation ablation replaces the multisensory features by those of an I3D network trained on
Kinetics (``net_style = 'i3d'``, module ``sep_i3d`` never released; docs/paper.md §7.6). This is the RGB stream
of DeepMind's ``kinetics-i3d`` (``i3d.py``, ``InceptionI3d``), layer for layer: every 2-D Inception-v1
kernel of size k becomes k x k x k (the stem 7 x 7 x 7), the two early max-pools do not pool time, and
every ``Unit3D`` is a SAME conv without bias, BatchNorm without scale (sonnet's default: beta only,
eps 1e-3) and ReLU. The "5 x 5" branch of each Inception block is a 3 x 3 x 3 conv, as DeepMind's is.

Module names are the TF scopes (``RGB/inception_i3d/Mixed_4f/Branch_1/Conv3d_0b_3x3/conv_3d/w`` ->
``Mixed_4f.Branch_1.Conv3d_0b_3x3.conv.weight``), so a converted checkpoint maps by name
(:func:`tf_variable_name`, :func:`from_tf_arrays`).

Dimension letters: B batch, C channels, T frames, H height, W width, K classes.

Stage outputs for a 64-frame 224 x 224 clip (T x H x W x C, as the I3D paper's figure 3):

================== ======================
Conv3d_1a_7x7      32 x 112 x 112 x 64
MaxPool3d_2a_3x3   32 x 56 x 56 x 64
Conv3d_2b_1x1      32 x 56 x 56 x 64
Conv3d_2c_3x3      32 x 56 x 56 x 192
MaxPool3d_3a_3x3   32 x 28 x 28 x 192
Mixed_3b, 3c       32 x 28 x 28 x 256, 480
MaxPool3d_4a_3x3   16 x 14 x 14 x 480
Mixed_4b .. 4f     16 x 14 x 14 x 512, 512, 512, 528, 832
MaxPool3d_5a_2x2   8 x 7 x 7 x 832
Mixed_5b, 5c       8 x 7 x 7 x 832, 1024
Logits             7 x 1 x 1 x K, averaged over time -> K
================== ======================

**As the separation's feature network** (:class:`I3DFeatures`), three scales are tapped, one per
resolution of the network, as the multisensory net's ``conv2_2`` / ``conv3_2`` / ``conv5_2`` are:
``Mixed_3c`` (T/2, H/8), ``Mixed_4f`` (T/4, H/16) and ``Mixed_5c`` (T/8, H/32); 480, 832 and 1024
channels. Which layers the unreleased ``sep_i3d`` tapped is unknown.

**Weights.** Kinetics weights cannot be downloaded on our machines. The ``synth`` profile trains this
network, supervised, on the synthetic world's action classes (the Kinetics counterpart; see
:mod:`avlib.tasks.ablations`). The ``paper`` profile loads a converted DeepMind checkpoint:
an ``.npz`` whose keys are the TF variable names of the RGB stream (``rgb_imagenet`` or ``rgb_scratch``
checkpoints of kinetics-i3d, read with ``tf.train.load_checkpoint(path).get_tensor(name)`` and saved
with ``numpy.savez``); see :func:`from_tf_arrays` for the name mapping and layouts.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avlib.models.multisensory import BatchNormNoScale, SameConv3d, pad_same

#: Inception blocks: name -> (branch 0 1x1; branch 1 1x1, 3x3; branch 2 1x1, 3x3; branch 3 pool -> 1x1),
#: the channels of GoogLeNet's table 1 (Szegedy et al. 2015), which I3D keeps.
INCEPTION = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32),
    "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64),
    "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64),
    "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128),
    "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}
#: Every endpoint in order, as ``InceptionI3d.VALID_ENDPOINTS`` (the logits come last).
ENDPOINTS = (
    "Conv3d_1a_7x7", "MaxPool3d_2a_3x3", "Conv3d_2b_1x1", "Conv3d_2c_3x3", "MaxPool3d_3a_3x3", "Mixed_3b", "Mixed_3c",
    "MaxPool3d_4a_3x3", "Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f", "MaxPool3d_5a_2x2", "Mixed_5b",
    "Mixed_5c", "Logits",
)
#: Max-pools: name -> (kernel, stride) as (T, H, W); the first two leave time alone.
POOLS = {
    "MaxPool3d_2a_3x3": ((1, 3, 3), (1, 2, 2)),
    "MaxPool3d_3a_3x3": ((1, 3, 3), (1, 2, 2)),
    "MaxPool3d_4a_3x3": ((3, 3, 3), (2, 2, 2)),
    "MaxPool3d_5a_2x2": ((2, 2, 2), (2, 2, 2)),
}
#: The separation U-Net's three video scales (finest first), one per resolution of the network.
SEPARATION_SCALES = ("Mixed_3c", "Mixed_4f", "Mixed_5c")
#: The logits' average pool (VALID), T x H x W: a 224 clip's 7 x 7 Mixed_5c becomes 1 x 1.
LOGITS_POOL = (2, 7, 7)
#: Carreira & Zisserman, table 1: "I3D, #Params 12M" (the RGB stream).
PUBLISHED_PARAMETERS = 12e6


@dataclass(frozen=True)
class I3DConfig:
    """Configuration of :class:`I3D`; the defaults are DeepMind's RGB I3D for Kinetics-400.

    Args:
        num_classes: K, the logits (400 for Kinetics).
        width: multiplies every channel count (1.0: the published network; 0.25 a quarter of the channels,
            as the synth profile's multisensory net has a quarter of the paper's width).
        dropout: dropout before the logits (DeepMind's ``dropout_keep_prob`` of 0.5 in training).
        bn_eps: BatchNorm epsilon (sonnet's 1e-3).
        bn_momentum: weight of the current batch in the running averages (sonnet's decay 0.999 -> 1e-3);
            short runs need a faster one (e.g. 0.1).
    """

    num_classes: int = 400
    width: float = 1.0
    dropout: float = 0.5
    bn_eps: float = 1e-3
    bn_momentum: float = 1e-3

    def __post_init__(self) -> None:
        if self.num_classes < 1:
            raise ValueError(f"I3DConfig.num_classes must be positive, got {self.num_classes}")
        if not self.width > 0:
            raise ValueError(f"I3DConfig.width must be positive, got {self.width}")

    def channels(self, published: int) -> int:
        """A published channel count scaled by ``width`` (at least 1)."""
        return max(1, int(round(published * self.width)))

    def block_channels(self, name: str) -> int:
        """Output channels of an Inception block: the sum of its four branches."""
        b0, _, b1, _, b2, b3 = (self.channels(c) for c in INCEPTION[name])
        return b0 + b1 + b2 + b3

    @property
    def feature_channels(self) -> tuple[int, int, int]:
        """Channels of :data:`SEPARATION_SCALES`: (480, 832, 1024) at width 1."""
        return tuple(self.block_channels(name) for name in SEPARATION_SCALES)


class Unit3D(nn.Module):
    """``Unit3D``: SAME conv without bias, BatchNorm without scale, ReLU. (B, C_in, T, H, W) -> strided."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int | tuple[int, int, int], stride: int | tuple = 1,
                 config: I3DConfig = I3DConfig()):
        super().__init__()
        self.conv = SameConv3d(in_channels, out_channels, kernel, stride)
        self.bn = BatchNormNoScale(out_channels, config)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)))


class MaxPool3dSame(nn.Module):
    """TF's SAME max-pool: the padding never wins (-inf). (B, C, T, H, W) -> (B, C, ceil(T / s_t), ...)."""

    def __init__(self, kernel: tuple[int, int, int], stride: tuple[int, int, int]):
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: Tensor) -> Tensor:
        return F.max_pool3d(pad_same(x, self.kernel, self.stride, value=-float("inf")), self.kernel, self.stride)


class InceptionBlock(nn.Module):
    """``InceptionModule``: four branches concatenated over channels, spatial size unchanged.

    Branch_0: 1x1x1; Branch_1: 1x1x1 -> 3x3x3; Branch_2: 1x1x1 -> 3x3x3; Branch_3: 3x3x3 max-pool -> 1x1x1.
    """

    def __init__(self, in_channels: int, name: str, config: I3DConfig):
        super().__init__()
        b0, b1a, b1, b2a, b2, b3 = (config.channels(c) for c in INCEPTION[name])
        self.Branch_0 = nn.Sequential(OrderedDict(Conv3d_0a_1x1=Unit3D(in_channels, b0, 1, config=config)))
        self.Branch_1 = nn.Sequential(OrderedDict(Conv3d_0a_1x1=Unit3D(in_channels, b1a, 1, config=config),
                                                  Conv3d_0b_3x3=Unit3D(b1a, b1, 3, config=config)))
        self.Branch_2 = nn.Sequential(OrderedDict(Conv3d_0a_1x1=Unit3D(in_channels, b2a, 1, config=config),
                                                  Conv3d_0b_3x3=Unit3D(b2a, b2, 3, config=config)))
        self.Branch_3 = nn.Sequential(OrderedDict(MaxPool3d_0a_3x3=MaxPool3dSame((3, 3, 3), (1, 1, 1)),
                                                  Conv3d_0b_1x1=Unit3D(in_channels, b3, 1, config=config)))

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.Branch_0(x), self.Branch_1(x), self.Branch_2(x), self.Branch_3(x)], dim=1)


class Logits(nn.Module):
    """Average pool (2, 7, 7) VALID, dropout, a 1x1x1 conv with bias, the mean over time.

    (B, C, T', H', W') -> (B, K). The pool is clamped to the map's size for clips smaller than 224 x 224
    (the synth profile's 56 x 56 frames give a 2 x 2 Mixed_5c), which the published network cannot take.
    """

    def __init__(self, in_channels: int, config: I3DConfig):
        super().__init__()
        self.dropout = nn.Dropout(config.dropout)
        self.Conv3d_0c_1x1 = nn.Module()
        self.Conv3d_0c_1x1.conv = nn.Conv3d(in_channels, config.num_classes, 1, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        kernel = tuple(min(k, size) for k, size in zip(LOGITS_POOL, x.shape[2:]))
        x = F.avg_pool3d(x, kernel, stride=1)  # (B, C, T' - 1, 1, 1) for a 224 clip
        x = self.Conv3d_0c_1x1.conv(self.dropout(x))  # (B, K, T' - 1, h, w)
        return x.mean(dim=(2, 3, 4))  # spatial squeeze (h = w = 1 at 224), then the mean over time


class I3D(nn.Module):
    """The RGB I3D network (``InceptionI3d``), with every endpoint named as in TF.

    Args:
        config: :class:`I3DConfig`. The default is the published network: 12.7 M parameters with the
            400 Kinetics logits (see :meth:`num_parameters` and the notebook's comparison with the 12 M
            of Carreira & Zisserman).

    Input: frames (B, 3, T, H, W) in [-1, 1] (:func:`avlib.models.multisensory.normalize_frames`).
    """

    def __init__(self, config: I3DConfig = I3DConfig()):
        super().__init__()
        self.config = config
        c = config.channels
        self.Conv3d_1a_7x7 = Unit3D(3, c(64), 7, 2, config)
        self.MaxPool3d_2a_3x3 = MaxPool3dSame(*POOLS["MaxPool3d_2a_3x3"])
        self.Conv3d_2b_1x1 = Unit3D(c(64), c(64), 1, 1, config)
        self.Conv3d_2c_3x3 = Unit3D(c(64), c(192), 3, 1, config)
        self.MaxPool3d_3a_3x3 = MaxPool3dSame(*POOLS["MaxPool3d_3a_3x3"])
        channels = c(192)
        for name in ENDPOINTS:
            if name in INCEPTION:
                self.add_module(name, InceptionBlock(channels, name, config))
                channels = config.block_channels(name)
            elif name in POOLS and not hasattr(self, name):
                self.add_module(name, MaxPool3dSame(*POOLS[name]))
        self.Logits = Logits(channels, config)
        self.apply(_init_weights)

    def forward(self, frames: Tensor, final_endpoint: str = "Logits") -> dict[str, Tensor]:
        """frames (B, 3, T, H, W) -> every endpoint up to ``final_endpoint``: 5-D maps (B, C, T', H', W')
        and ``Logits`` (B, K). Shapes for a 64 x 224 x 224 clip in the module docstring."""
        if frames.dim() != 5 or frames.shape[1] != 3:
            raise ValueError(f"expected frames of shape (B, 3, T, H, W), got {tuple(frames.shape)}; uint8 (B, T, H, W, 3) "
                             "frames go through normalize_frames first")
        if final_endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {final_endpoint!r}; use one of {ENDPOINTS}")
        outputs: dict[str, Tensor] = {}
        x = frames
        for name in ENDPOINTS:
            x = outputs[name] = getattr(self, name)(x)
            if name == final_endpoint:
                break
        return outputs

    def num_parameters(self, logits: bool = True) -> int:
        """Learned parameters (BatchNorm betas, no gammas; running averages are not parameters)."""
        return sum(p.numel() for name, p in self.named_parameters() if logits or not name.startswith("Logits."))


def _init_weights(module: nn.Module) -> None:
    """Sonnet's default: truncated normal with stddev 1 / sqrt(fan_in), zero biases."""
    if isinstance(module, nn.Conv3d):
        std = 1.0 / np.sqrt(module.weight[0].numel())
        nn.init.trunc_normal_(module.weight, std=std, a=-2 * std, b=2 * std)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class I3DFeatures(nn.Module):
    """I3D as the separation U-Net's :class:`~avlib.models.unet.FeatureNet`: ``Mixed_3c``, ``Mixed_4f``, ``Mixed_5c``.

    Video only: the mixture's audio is ignored. For the synth clip (15 frames, 56 x 56): 8 x 7 x 7,
    4 x 4 x 4 and 2 x 2 x 2; the logits are not computed.
    """

    feature_names = SEPARATION_SCALES

    def __init__(self, net: I3D):
        super().__init__()
        self.net = net
        self.feature_channels = net.config.feature_channels

    def forward(self, frames: Tensor, audio: Tensor | None = None) -> dict[str, Tensor]:
        return self.net(frames, final_endpoint=SEPARATION_SCALES[-1])


# ----------------------------------------------------------------------------------------- weights

TF_SCOPE = "RGB/inception_i3d"
_TF_LEAVES = {"conv.weight": "conv_3d/w", "conv.bias": "conv_3d/b", "bn.bias": "batch_norm/beta",
              "bn.running_mean": "batch_norm/moving_mean", "bn.running_var": "batch_norm/moving_variance"}


def tf_variable_name(name: str) -> str:
    """The kinetics-i3d TF variable of a state-dict entry.

    ``Mixed_4f.Branch_1.Conv3d_0b_3x3.conv.weight`` -> ``RGB/inception_i3d/Mixed_4f/Branch_1/Conv3d_0b_3x3/conv_3d/w``;
    ``bn.bias`` -> ``batch_norm/beta``, ``bn.running_mean`` / ``running_var`` -> ``moving_mean`` / ``moving_variance``.
    """
    for leaf, tf_leaf in _TF_LEAVES.items():
        if name.endswith("." + leaf):
            return f"{TF_SCOPE}/{name[: -len(leaf) - 1].replace('.', '/')}/{tf_leaf}"
    raise KeyError(f"{name!r} has no kinetics-i3d counterpart")


def from_tf_arrays(arrays: Mapping[str, np.ndarray], config: I3DConfig = I3DConfig(), source: str = "arrays") -> I3D:
    """An :class:`I3D` holding the weights of a converted kinetics-i3d checkpoint.

    ``arrays`` maps TF variable names (:func:`tf_variable_name`) to arrays in TF's layouts: conv kernels
    (T, H, W, C_in, C_out) become PyTorch's (C_out, C_in, T, H, W); biases, betas and moving averages are
    (C,) (sonnet stores them as (1, 1, 1, 1, C); any shape with C entries is accepted). Extra TF variables
    (optimiser slots, ``global_step``) are ignored; a missing or misshapen one raises naming ``source``.
    """
    model = I3D(config)
    state = model.state_dict()
    missing, wrong = [], []
    for name, target in state.items():
        if name.endswith("num_batches_tracked"):
            continue
        key = tf_variable_name(name)
        if key not in arrays:
            missing.append(key)
            continue
        value = np.asarray(arrays[key])
        value = value.transpose(4, 3, 0, 1, 2) if target.dim() == 5 and value.ndim == 5 else value.reshape(-1)
        if tuple(value.shape) != tuple(target.shape):
            wrong.append(f"{key}: {tuple(np.asarray(arrays[key]).shape)} for {tuple(target.shape)}")
            continue
        state[name] = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))
    if missing or wrong:
        raise ValueError(f"{source} is not a kinetics-i3d RGB checkpoint of {config}: "
                         + (f"{len(missing)} variable(s) missing, e.g. {missing[:3]}" if missing else "")
                         + ("; " if missing and wrong else "") + (f"shapes differ: {wrong[:3]}" if wrong else ""))
    model.load_state_dict(state)
    return model


def to_tf_arrays(model: I3D) -> dict[str, np.ndarray]:
    """The inverse of :func:`from_tf_arrays`: TF names and layouts (what a converted checkpoint holds)."""
    arrays = {}
    for name, value in model.state_dict().items():
        if name.endswith("num_batches_tracked"):
            continue
        array = value.detach().cpu().numpy()
        arrays[tf_variable_name(name)] = array.transpose(2, 3, 4, 1, 0) if array.ndim == 5 else array
    return arrays


def load_converted(path: str | os.PathLike, config: I3DConfig = I3DConfig()) -> I3D:
    """Load a converted kinetics-i3d checkpoint (an ``.npz`` of TF-named arrays, see the module docstring)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"I3D checkpoint {path} does not exist; the paper profile needs a converted kinetics-i3d "
                                "RGB checkpoint (.npz of TF variable names, see avlib.models.i3d)")
    try:
        with np.load(path) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError) as error:
        raise ValueError(f"I3D checkpoint {path} is not a readable .npz: {error}") from error
    return from_tf_arrays(arrays, config, source=str(path))


def from_checkpoint(path: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> I3D:
    """The I3D stored in an avlib checkpoint (as :func:`avlib.train.fit` writes it), in eval mode."""
    from avlib.checkpoint import CheckpointError, load_checkpoint, load_model_state

    checkpoint = load_checkpoint(path, expected_model_class=I3D)
    try:
        config = I3DConfig(**(checkpoint["config"].get("model_config") or {}))
    except TypeError as error:
        raise CheckpointError(f"checkpoint {path} has an I3D config this avlib does not know: {error}") from error
    model = I3D(config)
    load_model_state(model, checkpoint["model"], path)
    return model.to(map_location).eval()
