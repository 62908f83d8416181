"""The fused multisensory ("shift") network of Owens & Efros, ECCV 2018.

A port of ``make_net`` in ``src/shift_net.py`` of the official TensorFlow code (docs/paper.md §2).
An audio stream of strided 1-D convolutions on the raw stereo waveform and a video stream of 3-D
convolutions meet at a fusion block; a 3-D ResNet-18-like trunk follows, ending in one logit that says
whether sound and frames are aligned. The same classifier applied at every position of the last conv
gives the class activation map (CAM) used for sound-source localisation (docs/paper.md §5).

Module names follow the TF scopes (``sf/conv2_1`` -> ``audio.conv2_1``, ``im/conv3_1`` -> ``conv3_1``,
``im/merge1`` -> ``fusion.merge1``, ``joint/logits`` -> ``logits``), so converted weights map by name.

Dimension letters in shape comments: B batch, C channels, T frames, H height, W width,
N audio samples, L audio feature steps, w the base width (64 in the paper).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from typing import Callable, TypedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from avlib.models.norm import BatchRenorm
from avlib.models.same import tf_same_padding
from avlib.models.tf_pooling import fractional_max_pool_tf

AUDIO_CHANNELS = 2  # stereo waveform, the 2 input channels of sf/conv1_1
FRAME_CHANNELS = 3
MU_LAW_MU = 255.0


@dataclass
class MultisensoryConfig:
    """Configuration of :class:`MultisensoryNet`; the defaults are the paper's ``shift_v1`` model.

    Args:
        num_frames: frames per clip, ``int(4.2 s * 29.97 fps)`` = 125. The network accepts any clip size;
            the three input sizes here are the clip it is trained on, used for FLOP counts and benchmarks.
        frame_size: side of the square crop fed to the network (224).
        num_samples: stereo audio samples per clip, ``round(21000 Hz / 29.97 fps * 125)`` = 87588.
        width: base channel count w (64 in the paper); every layer's channels scale with it, e.g.
            width=16 quarters them all.
        use_sound: the paper's no-audio switch; False zeros the tiled audio features at fusion.
        cam: the ``cam_v1`` model: conv5_1 without spatial stride, so the last conv (and the CAM) is
            16x14x14 instead of 16x7x7 for the paper clip.
        bn_eps: BatchNorm epsilon (slim's 1e-3).
        bn_momentum: weight of the current batch in BatchNorm's running averages, 1 - TF decay 0.9997.
            Short runs (tests, tiny CPU profiles) need a faster one, e.g. 0.1.
        bn_scale: BatchNorms with a learned scale gamma (``weight``), as the official separation model's copy of
            this network (``sep_params.base``: ``bn_scale=True``); the shift and CAM networks have none.
        tf_pool: fuse with TF's deterministic fractional max-pool (:mod:`avlib.models.tf_pooling`) instead of
            the adaptive max-pool, as the released networks run at test time; set for imported official weights
            (:mod:`avlib.weights`).
        renorm: the BatchNorms after a residual sum (``*_bn``, ``im/merge_block_bn``) are TF batch
            renormalisation without clipping, as the official code trains them (:class:`avlib.models.norm.BatchRenorm`);
            False: plain BatchNorm, a close approximation (docs/paper.md §2.7).
        fast_conv1: compute ``im/conv1`` as the equal stride-1 conv over space-to-depth frames
            (:func:`avlib.models.fast_conv.space_to_depth_conv3d`), faster on GPUs; same weights, same results up to
            float rounding.
    """

    num_frames: int = 125
    frame_size: int = 224
    num_samples: int = 87588
    width: int = 64
    use_sound: bool = True
    cam: bool = False
    bn_eps: float = 1e-3
    bn_momentum: float = 3e-4
    bn_scale: bool = False
    tf_pool: bool = False
    renorm: bool = False
    fast_conv1: bool = False

    def __post_init__(self) -> None:
        for name in ("num_frames", "frame_size", "num_samples", "width"):
            if getattr(self, name) < 1:
                raise ValueError(f"MultisensoryConfig.{name} must be positive, got {getattr(self, name)}")


class MultisensoryOutput(TypedDict):
    """What the forward passes return.

    logit: (B,) logit of "audio and video are aligned".
    features: named activations, channels first:
        ``audio`` (B, 4w, L) audio stream before time alignment (86 x 256 for the paper clip);
        ``conv2_2`` (B, w, T/4, H/8, W/8) visual stream before fusion (32 x 28 x 28 x 64);
        ``fused`` (B, 2w, ...) output of the fusion block (32 x 28 x 28 x 128);
        ``conv3_2``, ``conv4_2`` and ``conv5_2``, the last conv (16 x 7 x 7 x 512; 16 x 14 x 14 with cam).
    """

    logit: Tensor
    features: dict[str, Tensor]


def normalize_frames(frames: Tensor) -> Tensor:
    """uint8 frames to the network's input range, as ``normalize_ims`` in the TF code: x * 2 / 255 - 1.

    (B, T, H, W, 3) uint8 -> (B, 3, T, H, W) float32 in [-1, 1]. The result is a permuted view,
    i.e. channels_last_3d in memory, which the 3-D convs take without a copy.
    """
    if frames.dim() != 5 or frames.shape[-1] != FRAME_CHANNELS:
        raise ValueError(f"expected frames of shape (B, T, H, W, 3), got {tuple(frames.shape)}")
    return frames.permute(0, 4, 1, 2, 3).float() * (2.0 / 255.0) - 1.0


def compress_audio(audio: Tensor) -> Tensor:
    """Mu-law-style companding of a waveform in [-1, 1], without quantisation (``normalize_sfs``).

    sign(x) * ln(1 + 255 |x|) / ln(256); same shape in and out.
    """
    return torch.sign(audio) * torch.log1p(MU_LAW_MU * audio.abs()) / math.log1p(MU_LAW_MU)


def pad_same(x: Tensor, kernel: tuple[int, ...], stride: tuple[int, ...], value: float = 0.0) -> Tensor:
    """Pads the trailing ``len(kernel)`` axes of (B, C, ...) ``x`` as TF "SAME" would."""
    pads: list[int] = []
    for size, k, s in zip(reversed(x.shape[2:]), reversed(kernel), reversed(stride)):
        pads.extend(tf_same_padding(size, k, s))  # F.pad lists the last axis first
    return F.pad(x, pads, value=value)


def _size_independent_same_padding(kernel: tuple[int, ...], stride: tuple[int, ...]) -> tuple[int, ...] | None:
    """Symmetric padding equal to TF "SAME" for every input size, or None if it depends on the size.

    That holds per axis for an odd kernel at stride 1 ((k-1)/2 each side) and for kernel 1 (no padding).
    """
    if all((s == 1 and k % 2 == 1) or k == 1 for k, s in zip(kernel, stride)):
        return tuple(k // 2 for k in kernel)
    return None


class SameConv1d(nn.Conv1d):
    """1-D convolution with TF "SAME" padding (docs/paper.md §10.1). (B, C_in, N) -> (B, C_out, ceil(N / stride))."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, bias: bool = False):
        padding = _size_independent_same_padding((kernel_size,), (stride,))
        super().__init__(in_channels, out_channels, kernel_size, stride, padding=padding or 0, bias=bias)
        self.pads_at_run_time = padding is None

    def forward(self, x: Tensor) -> Tensor:
        if self.pads_at_run_time:
            x = pad_same(x, self.kernel_size, self.stride)
        return super().forward(x)


class SameConv3d(nn.Conv3d):
    """3-D convolution with TF "SAME" padding (docs/paper.md §10.1).

    (B, C_in, T, H, W) -> (B, C_out, ceil(T / s_t), ceil(H / s_h), ceil(W / s_w)).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int, int],
        stride: int | tuple[int, int, int] = 1,
        bias: bool = False,
    ):
        kernel_size = _triple(kernel_size)
        stride = _triple(stride)
        padding = _size_independent_same_padding(kernel_size, stride)
        super().__init__(in_channels, out_channels, kernel_size, stride, padding=padding or 0, bias=bias)
        self.pads_at_run_time = padding is None

    def forward(self, x: Tensor) -> Tensor:
        if self.pads_at_run_time:
            x = pad_same(x, self.kernel_size, self.stride)
        return super().forward(x)


def _triple(value: int | tuple[int, int, int]) -> tuple[int, int, int]:
    return (value, value, value) if isinstance(value, int) else tuple(value)


SAME_CONV = {1: SameConv1d, 3: SameConv3d}


class BatchNormNoScale(nn.Module):
    """BatchNorm with a learned shift beta and no scale gamma, as slim's ``batch_norm(scale=False)``.

    Its own module rather than ``nn.BatchNorm`` with a frozen weight, so that the parameter count, the
    optimiser and the state dict hold beta (``bias``) and the running averages only, like the TF checkpoint.
    (B, C, ...) -> same shape.
    """

    # F.batch_norm of these fields: avlib.train.fit synchronises its statistics across DDP ranks like nn.BatchNorm's.
    is_batch_norm = True

    def __init__(self, num_channels: int, config: MultisensoryConfig):
        super().__init__()
        self.eps = config.bn_eps
        self.momentum = config.bn_momentum
        self.bias = nn.Parameter(torch.zeros(num_channels))
        # slim's gamma (scale=True); configs without the switch (I3D's) have none
        self.weight = nn.Parameter(torch.ones(num_channels)) if getattr(config, "bn_scale", False) else None
        self.register_buffer("running_mean", torch.zeros(num_channels))
        self.register_buffer("running_var", torch.ones(num_channels))

    def forward(self, x: Tensor) -> Tensor:
        return F.batch_norm(
            x, self.running_mean, self.running_var, weight=self.weight, bias=self.bias,
            training=self.training, momentum=self.momentum, eps=self.eps,
        )


def post_sum_norm(num_channels: int, config: MultisensoryConfig) -> nn.Module:
    """The BatchNorm after a residual sum: batch renorm with ``config.renorm`` (TF ``renorm=True``), else plain."""
    if config.renorm:
        return BatchRenorm(num_channels, config.bn_eps, config.bn_momentum, scale=config.bn_scale)
    return BatchNormNoScale(num_channels, config)


class ConvBN(nn.Module):
    """SAME conv without bias, BatchNorm without scale, then ReLU unless ``relu=False`` (slim's conv defaults)."""

    def __init__(
        self,
        dims: int,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int, int],
        stride: int | tuple[int, int, int],
        config: MultisensoryConfig,
        relu: bool = True,
    ):
        super().__init__()
        self.conv = SAME_CONV[dims](in_channels, out_channels, kernel_size, stride)
        self.bn = BatchNormNoScale(out_channels, config)
        self.relu = relu

    def forward(self, x: Tensor) -> Tensor:
        x = self.bn(self.conv(x))
        return F.relu(x) if self.relu else x


class ResidualBlock(nn.Module):
    """``block2`` (dims=1, audio) and ``block3`` (dims=3, video) of shift_net.py (docs/paper.md §2.6).

    out = ReLU(BN(shortcut(x) + conv_b(ReLU(BN(conv_a(x))))))

    Unlike a standard ResNet block, conv_b has a bias and no BN, and the BN comes after the sum.
    The shortcut is the identity, subsampling by the stride (TF's 1x1 max-pool) when the channels are
    unchanged, otherwise a strided 1x1 conv + BN. (B, C_in, *S) -> (B, C_out, *ceil(S / stride)).
    TF trains the post-sum BN with batch renormalisation (``config.renorm``); plain BN is a close approximation
    (docs/paper.md §2.7).
    """

    def __init__(
        self,
        dims: int,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int, int],
        stride: int | tuple[int, int, int],
        config: MultisensoryConfig,
    ):
        super().__init__()
        self.stride = (stride,) * dims if isinstance(stride, int) else tuple(stride)
        self.conv_a = ConvBN(dims, in_channels, out_channels, kernel_size, stride, config)
        self.conv_b = SAME_CONV[dims](out_channels, out_channels, kernel_size, bias=True)
        self.bn = post_sum_norm(out_channels, config)
        self.projection = (
            ConvBN(dims, in_channels, out_channels, 1, stride, config, relu=False)
            if in_channels != out_channels
            else None
        )

    def forward(self, x: Tensor) -> Tensor:
        if self.projection is not None:
            shortcut = self.projection(x)
        else:
            # A 1x1 max-pool with stride s picks every s-th element; ceil(n / s) of them, as SAME.
            shortcut = x[(..., *(slice(None, None, s) for s in self.stride))]
        return F.relu(self.bn(shortcut + self.conv_b(self.conv_a(x))))


class AudioStream(nn.Module):
    """``sf/conv1_1`` .. ``sf/conv4_1``: strided 1-D convs on the companded waveform (docs/paper.md §2.1).

    The waveform downsamples by 1024 in all, 87588 samples -> 86 steps, about 20.5 per second.
    """

    def __init__(self, config: MultisensoryConfig):
        super().__init__()
        w = config.width
        self.conv1_1 = ConvBN(1, AUDIO_CHANNELS, w, 65, 4, config)
        self.conv2_1 = ResidualBlock(1, w, 2 * w, 15, 4, config)
        self.conv3_1 = ResidualBlock(1, 2 * w, 2 * w, 15, 4, config)
        self.conv4_1 = ResidualBlock(1, 2 * w, 4 * w, 15, 4, config)

    def forward(self, audio: Tensor) -> Tensor:
        """(B, 2, N) waveform in [-1, 1] -> (B, 4w, L); shapes for N = 87588, w = 64."""
        x = compress_audio(audio)  # (B, 2, 87588)
        x = self.conv1_1(x)  # (B, 64, 21897)
        x = F.max_pool1d(x, 4, 4)  # (B, 64, 5474); slim's max_pool2d is VALID
        x = self.conv2_1(x)  # (B, 128, 1369)
        x = self.conv3_1(x)  # (B, 128, 343)
        return self.conv4_1(x)  # (B, 256, 86)


class VideoStream(nn.Module):
    """``im/conv1`` .. ``im/conv2_2``: 3-D convs reducing time by 4 and space by 8 (docs/paper.md §2.2)."""

    def __init__(self, config: MultisensoryConfig):
        super().__init__()
        w = config.width
        self.conv1 = ConvBN(3, FRAME_CHANNELS, w, (5, 7, 7), 2, config)
        self.conv2_1 = ResidualBlock(3, w, w, 3, 1, config)
        self.conv2_2 = ResidualBlock(3, w, w, 3, 2, config)
        self.fast_conv1 = None
        if config.fast_conv1:
            from avlib.models.fast_conv import space_to_depth_conv3d

            self.fast_conv1 = space_to_depth_conv3d

    def forward(self, frames: Tensor) -> Tensor:
        """(B, 3, T, H, W) in [-1, 1] -> (B, w, T', H', W'); shapes for 125 x 224 x 224, w = 64."""
        if self.fast_conv1 is not None:  # the same conv, as stride 1 over 24 channels
            x = F.relu(self.conv1.bn(self.fast_conv1(frames, self.conv1.conv.weight, stride=self.conv1.conv.stride)))
        else:
            x = self.conv1(frames)  # (B, 64, 63, 112, 112)
        x = pad_same(x, (1, 3, 3), (1, 2, 2), value=-math.inf)  # TF's SAME max-pool ignores the padding
        x = F.max_pool3d(x, (1, 3, 3), (1, 2, 2))  # (B, 64, 63, 56, 56)
        x = self.conv2_1(x)  # (B, 64, 63, 56, 56)
        return self.conv2_2(x)  # (B, 64, 32, 28, 28)


def align_audio_to_video(audio_features: Tensor, num_steps: int) -> Tensor:
    """Max-pools the audio features over time to the video's number of steps. (B, C, L) -> (B, C, num_steps).

    The TF code uses ``tf.nn.fractional_max_pool`` with ratio (L - 1) / T (86 -> 32), which draws
    pseudo-random pooling regions, even at test time in the paper's experiments. PyTorch's fractional
    pool does not reproduce TF's sequence (docs/paper.md §10.2), so we use the deterministic adaptive max-pool:
    windows of 2.7 steps on average, as in TF, placed evenly, so train and test see the same alignment.
    """
    if audio_features.shape[-1] < num_steps:
        raise ValueError(
            f"audio features of shape {tuple(audio_features.shape)} have fewer than the video's {num_steps} "
            "time steps; the audio clip is too short for the frames"
        )
    return F.adaptive_max_pool1d(audio_features, num_steps)


class Fusion(nn.Module):
    """``merge``: aligns audio to video time, tiles it over space, concatenates, residual fusion block.

    The shortcut of the fusion block is the visual channels with the last w audio channels (TF's
    ``concat(net[..., :64], net[..., -64:])``), so that it matches the 2w channels of ``merge2``.
    """

    def __init__(self, config: MultisensoryConfig):
        super().__init__()
        w = config.width
        self.width = w
        self.use_sound = config.use_sound
        self.tf_pool = config.tf_pool
        self.audio_conv5_1 = ConvBN(1, 4 * w, 2 * w, 3, 1, config)  # sf/conv5_1
        self.merge1 = ConvBN(3, 3 * w, 8 * w, 1, 1, config)
        self.merge2 = SameConv3d(8 * w, 2 * w, 1, bias=True)
        self.bn = post_sum_norm(2 * w, config)  # im/merge_block_bn

    def forward(self, visual: Tensor, audio_features: Tensor) -> Tensor:
        """visual (B, w, T, H, W), audio_features (B, 4w, L) -> (B, 2w, T, H, W); 32 x 28 x 28 for the paper."""
        _, _, num_steps, height, width = visual.shape
        pool = fractional_max_pool_tf if self.tf_pool else align_audio_to_video
        pooled = pool(audio_features, num_steps)  # (B, 256, 32)
        if pooled.shape[-1] != num_steps:
            raise ValueError(f"TF's fractional pool gives {pooled.shape[-1]} audio steps from {audio_features.shape[-1]}, "
                             f"not the video's {num_steps}: these clip lengths do not fit the imported network")
        audio = self.audio_conv5_1(pooled)  # (B, 128, 32)
        if not self.use_sound:
            audio = torch.zeros_like(audio)  # zeroing before tiling equals TF's zeroing after it
        audio = audio[..., None, None].expand(-1, -1, -1, height, width)  # (B, 128, 32, 28, 28)
        fused = torch.cat([visual, audio], dim=1)  # (B, 192, 32, 28, 28)
        shortcut = torch.cat([visual, audio[:, -self.width:]], dim=1)  # (B, 128, 32, 28, 28)
        return F.relu(self.bn(self.merge2(self.merge1(fused)) + shortcut))


def _check_frames(frames: Tensor) -> None:
    if frames.dim() != 5 or frames.shape[1] != FRAME_CHANNELS:
        raise ValueError(
            f"expected frames of shape (B, 3, T, H, W), got {tuple(frames.shape)}; "
            "uint8 (B, T, H, W, 3) frames go through normalize_frames first"
        )
    if not frames.is_floating_point():
        raise ValueError(f"expected float frames in [-1, 1], got {frames.dtype}; use normalize_frames")


def _check_audio(audio: Tensor) -> None:
    if audio.dim() != 3 or audio.shape[1] != AUDIO_CHANNELS:
        raise ValueError(
            f"expected stereo audio of shape (B, 2, N), got {tuple(audio.shape)}; "
            "TF's (B, N, 2) layout needs audio.transpose(1, 2), mono needs duplicating to 2 channels"
        )
    if -(-audio.shape[2] // 4) < 4:  # sf/conv1_1 must leave a full window for the VALID max-pool
        raise ValueError(f"audio of shape {tuple(audio.shape)} is too short: at least 13 samples are needed")


def _check_inputs(frames: Tensor, audio: Tensor) -> None:
    _check_frames(frames)
    _check_audio(audio)
    if frames.shape[0] != audio.shape[0]:
        raise ValueError(f"batch sizes differ: frames {tuple(frames.shape)}, audio {tuple(audio.shape)}")


class MultisensoryNet(nn.Module):
    """The fused audio-visual network trained to tell aligned from shifted audio (docs/paper.md §2, §3, §5).

    Args:
        config: :class:`MultisensoryConfig`; its defaults give the paper's ``shift_v1`` network
            (36.04 M parameters), ``cam=True`` the ``cam_v1`` network used for the paper's CAMs.

    Inputs are channels first: frames (B, 3, T, H, W) in [-1, 1] (see :func:`normalize_frames`) and the
    stereo waveform (B, 2, N) in [-1, 1], companded inside the network. TF's layout is (B, N, 2).
    """

    def __init__(self, config: MultisensoryConfig):
        super().__init__()
        self.config = config
        w = config.width
        self.audio = AudioStream(config)
        self.video = VideoStream(config)
        self.fusion = Fusion(config)
        self.conv3_1 = ResidualBlock(3, 2 * w, 2 * w, 3, 1, config)
        self.conv3_2 = ResidualBlock(3, 2 * w, 2 * w, 3, 1, config)
        self.conv4_1 = ResidualBlock(3, 2 * w, 4 * w, 3, 2, config)
        self.conv4_2 = ResidualBlock(3, 4 * w, 4 * w, 3, 1, config)
        self.conv5_1 = ResidualBlock(3, 4 * w, 8 * w, 3, (1, 1, 1) if config.cam else (1, 2, 2), config)
        self.conv5_2 = ResidualBlock(3, 8 * w, 8 * w, 3, 1, config)
        self.logits = nn.Linear(8 * w, 1)  # joint/logits, a 1x1x1 conv on the pooled features
        self.apply(_init_weights)

    def forward_video(self, frames: Tensor) -> Tensor:
        """Visual stream, computed once per video. (B, 3, T, H, W) -> (B, w, T', H', W'), 32 x 28 x 28 x 64."""
        _check_frames(frames)
        return self.video(frames)

    def forward_audio(self, audio: Tensor) -> Tensor:
        """Audio stream, before time alignment. (B, 2, N) waveform in [-1, 1] -> (B, 4w, L), 86 x 256."""
        _check_audio(audio)
        return self.audio(audio)

    def forward_fused(self, visual: Tensor, audio_features: Tensor) -> MultisensoryOutput:
        """Fusion, the layers after it and the head.

        visual (B, w, T, H, W) from :meth:`forward_video`, audio_features (B, 4w, L) from
        :meth:`forward_audio` -> logit (B,) and features (see :class:`MultisensoryOutput`).
        """
        w = self.config.width
        if visual.dim() != 5 or visual.shape[1] != w:
            raise ValueError(f"expected visual features of shape (B, {w}, T, H, W), got {tuple(visual.shape)}")
        if audio_features.dim() != 3 or audio_features.shape[1] != 4 * w:
            raise ValueError(
                f"expected audio features of shape (B, {4 * w}, L), got {tuple(audio_features.shape)}"
            )
        if visual.shape[0] != audio_features.shape[0]:
            raise ValueError(
                f"batch sizes differ: visual {tuple(visual.shape)}, audio features {tuple(audio_features.shape)}"
            )
        fused = self.fusion(visual, audio_features)  # (B, 128, 32, 28, 28)
        x = self.conv3_1(fused)  # (B, 128, 32, 28, 28)
        conv3_2 = self.conv3_2(x)  # (B, 128, 32, 28, 28)
        x = self.conv4_1(conv3_2)  # (B, 256, 16, 14, 14)
        conv4_2 = self.conv4_2(x)  # (B, 256, 16, 14, 14)
        x = self.conv5_1(conv4_2)  # (B, 512, 16, 7, 7); 16 x 14 x 14 with cam
        last_conv = self.conv5_2(x)  # (B, 512, 16, 7, 7)
        logit = self.logits(last_conv.mean(dim=(2, 3, 4))).squeeze(1)  # (B,)
        features = {
            "audio": audio_features,
            "conv2_2": visual,
            "fused": fused,
            "conv3_2": conv3_2,
            "conv4_2": conv4_2,
            "conv5_2": last_conv,
        }
        return MultisensoryOutput(logit=logit, features=features)

    def forward(self, frames: Tensor, audio: Tensor,
                shifted_audio: Tensor | None = None) -> MultisensoryOutput | tuple[Tensor, Tensor]:
        """frames (B, 3, T, H, W) in [-1, 1], audio (B, 2, N) in [-1, 1] -> logit (B,) and features.

        With ``shifted_audio`` (B, 2, N), the pair of the paper's balanced batches (section 3): the logits
        of each video with its aligned and with its shifted audio, (B,) and (B,), the visual stream computed
        once. Only the audio stream and the layers after fusion run twice, as one batch of 2B, which is
        faster and gives every BatchNorm batch the same 50/50 mix of aligned and shifted examples, as TF's
        random order did; batch statistics then cannot tell the two apart. The pair is a mode of
        ``forward`` so that DDP and torch.compile, which wrap ``forward``, see it.
        """
        if shifted_audio is None:
            _check_inputs(frames, audio)
            return self.forward_fused(self.forward_video(frames), self.forward_audio(audio))
        if audio.shape != shifted_audio.shape:
            raise ValueError(f"audio {tuple(audio.shape)} and shifted audio {tuple(shifted_audio.shape)} differ")
        _check_inputs(frames, audio)
        visual = self.forward_video(frames)  # (B, 64, 32, 28, 28)
        audio_features = self.forward_audio(torch.cat([audio, shifted_audio]))  # (2B, 256, 86)
        logit = self.forward_fused(torch.cat([visual, visual]), audio_features)["logit"]  # (2B,)
        aligned, shifted = logit.chunk(2)
        return aligned, shifted

    def cam(self, last_conv: Tensor) -> Tensor:
        """Class activation map: the classifier, bias included, at every position of the last conv.

        (B, 8w, T', H', W') ``features["conv5_2"]`` -> (B, T', H', W') logits, 16 x 7 x 7 (16 x 14 x 14
        with cam). The classifier is linear, so the map's mean over positions is the logit.
        """
        channels = self.logits.in_features
        if last_conv.dim() != 5 or last_conv.shape[1] != channels:
            raise ValueError(
                f"expected last conv features of shape (B, {channels}, T, H, W), got {tuple(last_conv.shape)}"
            )
        return torch.einsum("bcthw,c->bthw", last_conv, self.logits.weight[0]) + self.logits.bias[0]

    def num_parameters(self) -> int:
        """Trainable parameters: 36.04 M for the paper configuration (BN beta only, no gamma)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def estimate_mfu(self, videos_per_second: float, peak_flops_per_second: float) -> float:
        """Model FLOPs utilisation of training at ``videos_per_second`` clips of the config's size.

        One video is one training example of the paper: the pair forward (aligned and shifted audio)
        and its backward; see :func:`count_train_flops`.
        """
        return count_train_flops(self.config) * videos_per_second / peak_flops_per_second


def _init_weights(module: nn.Module) -> None:
    """TF1 ``variance_scaling_initializer()``: truncated normal, stddev sqrt(1.3 * 2 / fan_in), zero biases.

    The factor 1.3 makes up for the variance lost by truncating at two standard deviations, giving He init.
    """
    if isinstance(module, (nn.Conv1d, nn.Conv3d, nn.Linear)):
        fan_in = module.weight[0].numel()
        std = math.sqrt(1.3 * 2.0 / fan_in)
        nn.init.trunc_normal_(module.weight, std=std, a=-2 * std, b=2 * std)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def count_train_flops(config: MultisensoryConfig, batch_size: int = 1) -> int:
    """FLOPs (2 per multiply-add) of one training step on ``batch_size`` videos of the config's clip size.

    Counts convolutions and the classifier of the pair :meth:`MultisensoryNet.forward` and its backward,
    as MFU estimates usually do (BatchNorm, ReLU and pooling are left out). Runs on the meta device,
    so it allocates nothing. About 1.5 TFLOP per video for the paper configuration.
    """
    with torch.device("meta"):
        model = MultisensoryNet(replace(config, fast_conv1=False))  # the network's FLOPs, not the zero taps
        frames = torch.empty(batch_size, FRAME_CHANNELS, config.num_frames, config.frame_size, config.frame_size)
        audio = torch.empty(batch_size, AUDIO_CHANNELS, config.num_samples)
    with FlopCounterMode(display=False) as counter:
        aligned, shifted = model(frames, audio, audio)
        (aligned.sum() + shifted.sum()).backward()
    return counter.get_total_flops()


def from_checkpoint(path: str | os.PathLike, *, map_location: str | torch.device = "cpu",
                    **overrides: object) -> MultisensoryNet:
    """The network stored in an avlib checkpoint, in eval mode.

    ``overrides`` change config fields that do not change the weights' shapes, e.g.
    ``use_sound=False`` or ``cam=True`` (the CAM model of paper section 5 is this network with
    conv5_1's spatial stride removed, then fine-tuned). A missing, truncated or foreign
    checkpoint raises with the file named (:mod:`avlib.checkpoint`).
    """
    from avlib.checkpoint import CheckpointError, load_checkpoint, load_model_state

    checkpoint = load_checkpoint(path, expected_model_class=MultisensoryNet)
    stored = checkpoint["config"].get("model_config") or {}
    try:
        config = MultisensoryConfig(**{**stored, **overrides})
    except TypeError as error:
        raise CheckpointError(f"checkpoint {path} has a model config this avlib does not know: {error}") from error
    model = MultisensoryNet(config)
    load_model_state(model, checkpoint["model"], path)
    return model.to(map_location).eval()


def cam_network(checkpoint: str | os.PathLike, device: str | torch.device = "cpu") -> MultisensoryNet:
    """The network of ``checkpoint`` with conv5_1's spatial stride removed (``cam=True``), in eval mode.

    The weights fit with or without the stride (docs/paper.md §5): a CAM fine-tuning checkpoint is the
    fine-tuned CAM network, a pretraining checkpoint is used as it is.
    """
    return from_checkpoint(checkpoint, map_location=device, cam=True)


def network_cam(net: MultisensoryNet) -> Callable[[Tensor, Tensor], Tensor]:
    """A function (frames (B, 3, T, S, S) in [-1, 1], audio (B, 2, N)) -> CAM (B, T', h, w) of ``net``
    (:meth:`MultisensoryNet.cam` on its last conv).

    The audio stream runs once per call: every tile of a window hears the same sound.
    """

    def cam(frames: Tensor, audio: Tensor) -> Tensor:
        audio_features = net.forward_audio(audio[:1])
        output = net.forward_fused(net.forward_video(frames), audio_features.expand(len(frames), -1, -1))
        return net.cam(output["features"]["conv5_2"])

    return cam
