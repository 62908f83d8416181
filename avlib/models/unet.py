"""The on/off-screen separation network: a pix2pix-style U-Net fed with multisensory features (paper section 7.3).

A port of ``make_net`` in ``src/sourcesep.py`` of the official TensorFlow code (docs/paper.md §7.3). The U-Net
reads the mixture's normalised log-magnitude and phase on a time x frequency grid and regresses, with two
heads, the log-magnitude and phase of the **on-screen** (``gen/fg``) and the **off-screen** (``gen/bg``)
sound. It predicts no masks (``SeparationConfig(output="mask")``, not the paper's, turns the magnitude
heads into ratio masks on the mixture's magnitude; the synth profile uses it). Video features of three
scales of a feature network (the multisensory net's ``conv2_2``, ``conv3_2`` and ``conv5_2``) are
averaged over space, resized in time, tiled over frequency and concatenated after encoder layers 3, 4
and 5 (``merge_level``).

Module names follow the TF scopes: ``gen/conv3`` -> ``unet.conv3``, ``gen/deconv2`` -> ``unet.deconv2``,
``gen/fg`` -> ``unet.on_screen``, ``gen/bg`` -> ``unet.off_screen``; the multisensory sub-network is
``features.net`` with its own names (``im/``, ``sf/`` scopes).

Dimension letters: B batch, C channels, T spectrogram frames (time), F frequency bins, w the U-Net's base
width (64 in the paper), T', H', W' a feature map's time and space, N audio samples.

The feature-network interface (for I3D or any other video network), see :class:`FeatureNet`: a module with
``feature_names`` (three keys, finest scale first) and ``feature_channels`` (their channel counts), whose
``forward(frames (B, 3, T, H, W) in [-1, 1], audio (B, 2, N) in [-1, 1])`` returns a dict holding those
three keys as channels-first 5-D maps (B, C_k, T'_k, H'_k, W'_k). Any T'_k >= 1 (resized to the U-Net's
time) and any H'_k, W'_k (averaged) will do; a video-only network may ignore ``audio``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Protocol, Sequence, TypedDict, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avlib.models.multisensory import MultisensoryConfig, MultisensoryNet, normalize_frames, pad_same, tf_same_padding
from avlib.models.norm import BatchRenorm
from avlib.spectral import SpectralConfig, analyze, full_band, inverse_stft, stft

#: Encoder layers: (scope, channels in units of w, stride (time, frequency)).
ENCODER = (
    ("conv1", 1, (1, 2)), ("conv2", 2, (1, 2)), ("conv3", 4, (2, 2)), ("conv4", 8, (2, 2)), ("conv5", 8, (2, 2)),
    ("conv6", 8, (2, 2)), ("conv7", 8, (2, 2)), ("conv8", 8, (2, 2)), ("conv9", 8, (2, 2)),
)
#: Decoder layers: (scope, channels in units of w, stride); deconv k takes the skip of conv(10 - k).
DECODER = (
    ("deconv1", 8, (2, 2)), ("deconv2", 8, (2, 2)), ("deconv3", 8, (2, 2)), ("deconv4", 8, (2, 2)),
    ("deconv5", 8, (2, 2)), ("deconv6", 4, (2, 2)), ("deconv7", 2, (2, 2)), ("deconv8", 1, (1, 2)),
)
#: Encoder layers after which the video scales 0, 1, 2 are concatenated (``merge_level(net, n)``).
MERGE_AFTER = ("conv3", "conv4", "conv5")
#: The multisensory layers that feed the U-Net (docs/paper.md §7.3): visual-only before fusion, fused, last conv.
MULTISENSORY_SCALES = ("conv2_2", "conv3_2", "conv5_2")
KERNEL = 4
TIME_DIVISOR = 2 ** sum(stride[0] == 2 for _, _, stride in ENCODER)  # 128
FREQ_DIVISOR = 2 ** sum(stride[1] == 2 for _, _, stride in ENCODER)  # 512
VIDEO_MODES = ("multisensory", "none", "custom")
#: What the magnitude heads give: the source's log-magnitude (the paper's) or a ratio mask on the mixture's.
OUTPUT_MODES = ("direct", "mask")
#: In ``output="mask"``, the head's tanh output t becomes the mask sigmoid(MASK_LOGIT_SCALE t), so a mask
#: spans about -52 dB to 0 dB.
MASK_LOGIT_SCALE = 6.0


@dataclass(frozen=True)
class UNetConfig:
    """The U-Net's own settings; the defaults are the paper's (``unet_arg_scope``).

    Args:
        width: w, channels of conv1 (64); the layers have w, 2w, 4w and 8w channels as in pix2pix.
        bn_eps: BatchNorm epsilon (1e-5).
        bn_momentum: weight of the current batch in the running averages, 1 - TF decay 0.9997. Short runs
            need a faster one (e.g. 0.1).
        renorm: every BatchNorm is TF batch renormalisation without clipping, as the official code trains it
            (:class:`avlib.models.norm.BatchRenorm`); False: plain BatchNorm, which approximates it.
    """

    width: int = 64
    bn_eps: float = 1e-5
    bn_momentum: float = 3e-4
    renorm: bool = False

    def __post_init__(self) -> None:
        if self.width < 1:
            raise ValueError(f"UNetConfig.width must be positive, got {self.width}")


@dataclass(frozen=True)
class SeparationConfig:
    """Everything that defines a separation model and its inputs; the defaults are the paper's ``full``.

    Args:
        spectral: the STFT (paper: 21 kHz, 1344 / 336 / 2048, 1024 bins, 128 frames per window).
        unet: the U-Net's width and BatchNorm settings.
        video: ``"multisensory"`` (the paper's ``full``), ``"none"`` (audio-only, ``no-im``, the u-net PIT
            baseline) or ``"custom"`` (another feature network, e.g. I3D, passed to :class:`SeparationNet`).
        multisensory: the feature network's config when ``video == "multisensory"``.
        custom_channels: channels of the three scales of a ``"custom"`` feature network.
        freeze_features: keep the feature network fixed (no gradients, BatchNorm in eval mode); the paper
            fine-tunes it end to end (False).
        static_frames: the paper's ``static`` ("single frame") variant: the middle frame tiled over time.
        fps, size, crop: frames of the feature network: rate, squashed size, centre (test) / random
            (training) crop. Paper: 29.97 fps, 256, 224.
        rms: RMS of each source, per channel, before mixing (``normalize_rms``: 0.1).
        spectrogram_channel: the audio channel the U-Net's spectrogram is computed from: None, the channel mean
            (avlib's training), or 0, the left channel, as the official ``sourcesep`` graph and ``sep_video.py``
            do (set for imported official weights, :mod:`avlib.weights`). The feature network hears both channels.
        output: ``"direct"`` (the paper's: each magnitude head regresses the source's normalised
            log-magnitude) or ``"mask"`` (not the paper's: each magnitude head gives a ratio mask m in
            (0, 1), ``sigmoid(6 tanh(.))``, and the source's log-magnitude is the mixture's plus 20 log10 m,
            so the outputs start as the mixture at -6 dB and only need to learn what to remove; see
            :func:`apply_mask`). The phase heads are the same in both.
    """

    spectral: SpectralConfig = field(default_factory=SpectralConfig)
    unet: UNetConfig = field(default_factory=UNetConfig)
    video: str = "multisensory"
    multisensory: MultisensoryConfig = field(default_factory=MultisensoryConfig)
    custom_channels: tuple[int, int, int] | None = None
    freeze_features: bool = False
    static_frames: bool = False
    fps: float = 29.97
    size: int = 256
    crop: int = 224
    rms: float = 0.1
    output: str = "direct"
    spectrogram_channel: int | None = None

    def __post_init__(self) -> None:
        if self.output not in OUTPUT_MODES:
            raise ValueError(f"SeparationConfig.output must be one of {OUTPUT_MODES}, got {self.output!r}")
        if self.spectrogram_channel not in (None, 0, 1):
            raise ValueError(f"SeparationConfig.spectrogram_channel must be None (channel mean), 0 or 1, got {self.spectrogram_channel!r}")
        if self.video not in VIDEO_MODES:
            raise ValueError(f"SeparationConfig.video must be one of {VIDEO_MODES}, got {self.video!r}")
        if self.video == "custom" and (self.custom_channels is None or len(self.custom_channels) != 3):
            raise ValueError("SeparationConfig(video='custom') needs custom_channels, the three scales' channel counts")
        if self.spectral.num_frames % TIME_DIVISOR or self.spectral.num_bins % FREQ_DIVISOR:
            raise ValueError(
                f"the U-Net halves time 7 times and frequency 9 times: num_frames must be a multiple of {TIME_DIVISOR} "
                f"and num_bins of {FREQ_DIVISOR}, got {self.spectral.num_frames} x {self.spectral.num_bins}"
            )

    @property
    def video_channels(self) -> tuple[int, int, int] | None:
        """Channels of the three video scales the U-Net concatenates (None without video)."""
        if self.video == "multisensory":
            w = self.multisensory.width
            return (w, 2 * w, 8 * w)
        if self.video == "custom":
            return tuple(self.custom_channels)
        return None

    @property
    def num_video_frames(self) -> int:
        """Frames of one training window: enough to cover the spectrogram's samples (63 for the paper)."""
        return math.ceil(self.spectral.num_samples * self.fps / self.spectral.sample_rate - 1e-9)

    @property
    def num_samples(self) -> int:
        """Audio samples of one training window, spanning its frames (44 144 for the paper)."""
        return int(round(self.spectral.sample_rate / self.fps * self.num_video_frames))

    @classmethod
    def from_dict(cls, stored: dict) -> "SeparationConfig":
        """The config from ``dataclasses.asdict`` output (as a checkpoint stores it)."""
        stored = dict(stored)
        if stored.pop("mono_features", False):  # older checkpoints store this unused switch, always False
            raise ValueError("this checkpoint's model uses mono_features, a variant avlib does not implement")
        nested = {"spectral": SpectralConfig, "unet": UNetConfig, "multisensory": MultisensoryConfig}
        for name, kind in nested.items():
            if isinstance(stored.get(name), dict):
                stored[name] = kind(**stored[name])
        if stored.get("custom_channels") is not None:
            stored["custom_channels"] = tuple(stored["custom_channels"])
        return cls(**stored)


@runtime_checkable
class FeatureNet(Protocol):
    """The interface of a video feature network for the U-Net (see the module docstring)."""

    feature_names: tuple[str, str, str]
    feature_channels: tuple[int, int, int]

    def __call__(self, frames: Tensor, audio: Tensor) -> dict[str, Tensor]: ...


class MultisensoryFeatures(nn.Module):
    """The multisensory network as a :class:`FeatureNet`: ``conv2_2`` (w), ``conv3_2`` (2w), ``conv5_2`` (8w).

    For the paper clip of 63 frames, 224 x 224 and 44 144 samples: 16 x 28 x 28, 16 x 28 x 28, 8 x 7 x 7.
    """

    feature_names = MULTISENSORY_SCALES

    def __init__(self, net: MultisensoryNet):
        super().__init__()
        self.net = net
        w = net.config.width
        self.feature_channels = (w, 2 * w, 8 * w)

    def forward(self, frames: Tensor, audio: Tensor) -> dict[str, Tensor]:
        return self.net(frames, audio)["features"]


class SeparationOutput(TypedDict):
    """Both (B, T, F) in [-1, 1] per source: normalised log-magnitude (dB range) and phase / pi."""

    on_screen_magnitude: Tensor
    on_screen_phase: Tensor
    off_screen_magnitude: Tensor
    off_screen_phase: Tensor


def _init_normal(module: nn.Module) -> None:
    """``unet_arg_scope``: weights N(0, 0.02), BatchNorm gamma N(1, 0.02), zero biases and betas."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm2d, BatchRenorm)):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def unet_norm(num_channels: int, config: UNetConfig) -> nn.Module:
    """A U-Net BatchNorm (with gamma): batch renorm with ``config.renorm`` (TF ``renorm=True``), else plain."""
    if config.renorm:
        return BatchRenorm(num_channels, config.bn_eps, config.bn_momentum, scale=True)
    return nn.BatchNorm2d(num_channels, eps=config.bn_eps, momentum=config.bn_momentum)


class EncoderLayer(nn.Module):
    """4x4 SAME conv without bias, then BatchNorm; returns the pre-activation (the skip). (B, C, T, F) -> strided."""

    def __init__(self, in_channels: int, out_channels: int, stride: tuple[int, int], config: UNetConfig):
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv2d(in_channels, out_channels, KERNEL, stride, bias=False)
        self.bn = unet_norm(out_channels, config)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(self.conv(pad_same(x, (KERNEL, KERNEL), self.stride)))


class DecoderLayer(nn.Module):
    """ReLU, 4x4 SAME transposed conv (output = input x stride), then BatchNorm (none, with a bias, for the heads).

    TF's SAME transposed conv is the full transposed conv cropped by the padding that a SAME conv of the
    output size would use, more of it at the end for the time axis's stride 1 (docs/paper.md §10.1).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: tuple[int, int], config: UNetConfig, head: bool = False):
        super().__init__()
        self.stride = stride
        self.deconv = nn.ConvTranspose2d(in_channels, out_channels, KERNEL, stride, bias=head)
        self.bn = None if head else unet_norm(out_channels, config)

    def forward(self, x: Tensor) -> Tensor:
        y = transposed_conv_same(F.relu(x), self.deconv.weight, self.deconv.bias, self.stride)
        return y if self.bn is None else self.bn(y)


def transposed_conv_same(x: Tensor, weight: Tensor, bias: Tensor | None, stride: tuple[int, int]) -> Tensor:
    """TF's SAME ``conv2d_transpose``: (B, C_in, T, F) -> (B, C_out, T s_t, F s_f); weight (C_in, C_out, 4, 4)."""
    out_sizes = [size * s for size, s in zip(x.shape[2:], stride)]
    y = F.conv_transpose2d(x, weight, bias, stride)  # (B, C_out, (T - 1) s_t + 4, (F - 1) s_f + 4)
    (t0, _), (f0, _) = (tf_same_padding(size, KERNEL, s) for size, s in zip(out_sizes, stride))
    return y[:, :, t0 : t0 + out_sizes[0], f0 : f0 + out_sizes[1]]


def resize_time_tf1(x: Tensor, length: int) -> Tensor:
    """``tf.image.resize_images`` (bilinear, TF 1.x: align_corners=False, no half-pixel centres) along time.

    (B, C, T') -> (B, C, length). Output step i reads input position i * T' / length, interpolating between
    its floor and the next step (the last step repeats). 16 -> 64 for the paper's conv2_2.
    """
    steps = x.shape[-1]
    if steps == length:
        return x
    position = torch.arange(length, device=x.device, dtype=torch.float64) * (steps / length)
    low = position.floor().long().clamp(max=steps - 1)
    high = (low + 1).clamp(max=steps - 1)
    weight = (position - low).to(x.dtype)
    return x[..., low] * (1 - weight) + x[..., high] * weight


def merge_video(net: Tensor, video: Tensor) -> Tensor:
    """``merge_level``: spatial mean of a video map, resized to the U-Net's time, tiled over frequency, concatenated.

    net (B, C, T, F) after its LeakyReLU, video (B, C_v, T', H', W') -> (B, C + C_v, T, F).
    """
    series = resize_time_tf1(video.mean(dim=(3, 4)), net.shape[2])  # (B, C_v, T)
    tiled = series[..., None].expand(-1, -1, -1, net.shape[3])  # (B, C_v, T, F)
    return torch.cat([net, tiled.to(net.dtype)], dim=1)


class UNet(nn.Module):
    """The generator ``gen`` of sourcesep.py: 9 encoder and 8 decoder layers, two heads (docs/paper.md §7.3).

    Args:
        config: :class:`UNetConfig` (width w and BatchNorm).
        video_channels: channels of the three video scales concatenated after conv3, conv4 and conv5
            ((64, 128, 512) for the paper's multisensory net), or None for the audio-only U-Net.

    Shapes for the paper (w = 64, 128 x 1024 input, with video):

    ======= ======== ========== ======================================
    layer   channels T x F      skip into the decoder
    ======= ======== ========== ======================================
    conv1   64       128 x 512  the heads
    conv2   128      128 x 256  deconv8
    conv3   256      64 x 128   deconv7, + 64 video channels = 320
    conv4   512      32 x 64    deconv6, + 128 = 640
    conv5   512      16 x 32    deconv5, + 512 = 1024
    conv6-9 512      8 x 16 ... 1 x 2  deconv4 .. deconv1 (conv9: none)
    ======= ======== ========== ======================================
    """

    def __init__(self, config: UNetConfig, video_channels: Sequence[int] | None = None):
        super().__init__()
        self.config = config
        w = config.width
        self.video_channels = tuple(video_channels) if video_channels is not None else None
        extra = dict(zip(MERGE_AFTER, self.video_channels or (0, 0, 0)))
        skip_channels: dict[str, int] = {}
        in_channels = 2  # normalised log-magnitude and phase
        for name, units, stride in ENCODER:
            setattr(self, name, EncoderLayer(in_channels, units * w, stride, config))
            in_channels = skip_channels[name] = units * w + extra.get(name, 0)
        skips = [name for name, _, _ in reversed(ENCODER)]  # conv9 (popped unused by deconv1), conv8, ...
        previous = 0
        for (name, units, stride), skip in zip(DECODER, skips):
            inputs = previous + (skip_channels[skip] if name != "deconv1" else skip_channels["conv9"])
            setattr(self, name, DecoderLayer(inputs, units * w, stride, config))
            previous = units * w
        self.decoder_skips = dict(zip((name for name, _, _ in DECODER), skips))
        self.on_screen = DecoderLayer(previous + skip_channels["conv1"], 2, (1, 2), config, head=True)  # gen/fg
        self.off_screen = DecoderLayer(previous + skip_channels["conv1"], 2, (1, 2), config, head=True)  # gen/bg
        self.apply(_init_normal)

    def forward(self, spectrogram: Tensor, video: Sequence[Tensor] | None = None) -> SeparationOutput:
        """spectrogram (B, 2, T, F): [normalised log-magnitude, phase / pi] of the mixture; video: the
        three (B, C_k, T'_k, H'_k, W'_k) maps, finest first, or None. -> the two sources' (B, T, F) maps.
        Shape comments for the paper's 128 x 1024 input with video."""
        _check_spectrogram(spectrogram)
        if (video is None) != (self.video_channels is None):
            raise ValueError(
                "this U-Net was built " + ("without" if self.video_channels is None else "with")
                + " video features, but forward got " + ("none" if video is None else f"{len(video)} maps")
            )
        if video is not None:
            got = tuple(v.shape[1] if v.dim() == 5 else -1 for v in video)
            if got != self.video_channels:
                raise ValueError(
                    f"expected three 5-D video maps with {self.video_channels} channels, got shapes "
                    f"{[tuple(v.shape) for v in video]}"
                )
        scales = dict(zip(MERGE_AFTER, video or ()))
        skips: dict[str, Tensor] = {}
        net = spectrogram  # (B, 2, 128, 1024)
        for name, _, _ in ENCODER:  # conv1 (B, 64, 128, 512) ... conv9 (B, 512, 1, 2)
            pre_activation = getattr(self, name)(net)
            net = F.leaky_relu(pre_activation, 0.2)
            if name in scales:
                net = merge_video(net, scales[name])  # e.g. conv3: (B, 256 + 64, 64, 128)
                skips[name] = net  # the post-activation concat replaces the skip (acts[-1] = net)
            else:
                skips[name] = pre_activation
        x = self.deconv1(skips["conv9"])  # (B, 512, 2, 4); conv9 is popped but not concatenated
        for name, _, _ in DECODER[1:]:  # deconv2 (B, 512, 4, 8) ... deconv8 (B, 64, 128, 512)
            x = getattr(self, name)(torch.cat([x, skips[self.decoder_skips[name]]], dim=1))
        x = F.relu(torch.cat([x, skips["conv1"]], dim=1))  # (B, 128, 128, 512)
        # Both heads in one transposed conv: CPU kernels for 2 output channels are slow, 4 cost the same.
        weight = torch.cat([self.on_screen.deconv.weight, self.off_screen.deconv.weight], dim=1)
        bias = torch.cat([self.on_screen.deconv.bias, self.off_screen.deconv.bias])
        on_screen, off_screen = torch.tanh(transposed_conv_same(x, weight, bias, (1, 2))).chunk(2, dim=1)  # (B, 2, 128, 1024) each
        return SeparationOutput(
            on_screen_magnitude=on_screen[:, 0], on_screen_phase=on_screen[:, 1],
            off_screen_magnitude=off_screen[:, 0], off_screen_phase=off_screen[:, 1],
        )

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


def _check_spectrogram(spectrogram: Tensor) -> None:
    if spectrogram.dim() != 4 or spectrogram.shape[1] != 2:
        raise ValueError(f"expected a spectrogram of shape (B, 2, T, F), got {tuple(spectrogram.shape)}")
    _, _, frames, bins = spectrogram.shape
    if frames % TIME_DIVISOR or bins % FREQ_DIVISOR:
        raise ValueError(
            f"spectrogram of shape {tuple(spectrogram.shape)}: the U-Net needs T a multiple of {TIME_DIVISOR} "
            f"and F a multiple of {FREQ_DIVISOR}"
        )


def apply_mask(head: Tensor, mixture_magnitude: Tensor, spectral: SpectralConfig) -> Tensor:
    """``output="mask"``: a source's normalised log-magnitude from a magnitude head and the mixture's.

    head (B, T, F) in [-1, 1] (the head's tanh), mixture_magnitude (B, T, F) normalised -> the mixture's
    log-magnitude plus 20 log10 sigmoid(6 head) dB, in the normalised units, clipped to [-1, 1].
    """
    mask_db = -F.softplus(-MASK_LOGIT_SCALE * head) * (20.0 / math.log(10.0))  # 20 log10 sigmoid(x)
    return (mixture_magnitude + mask_db * (2.0 / (spectral.db_max - spectral.db_min))).clamp(-1.0, 1.0)


def mono_mix(audio: Tensor, channel: int | None = None) -> Tensor:
    """The spectrogram branch's input: the channel mean, or one channel (``SeparationConfig.spectrogram_channel``).
    (B, C, N) -> (B, N)."""
    return audio.mean(dim=1) if channel is None else audio[:, channel]


class SeparationNet(nn.Module):
    """The full on/off-screen model: a feature network and the U-Net (docs/paper.md §7.1-7.6).

    Args:
        config: :class:`SeparationConfig`; the defaults are the paper's ``full`` model (about 77.6 M
            U-Net parameters with video features, 113.7 M with the multisensory net: see
            :meth:`num_parameters`).
        feature_net: the video feature network. With ``config.video == "multisensory"`` it defaults to a
            fresh :class:`MultisensoryNet` (load the pretrained weights with :meth:`load_features`); with
            ``"custom"`` it is required (a :class:`FeatureNet`); with ``"none"`` it must be None.

    Inputs: frames (B, 3, T_v, H, W) in [-1, 1] of the on-screen video (ignored without video; may be None)
    and the stereo mixture (B, 2, N) in [-1, 1]. The feature network hears the stereo mixture, the U-Net
    sees the STFT of its channel mean, cropped to ``spectral.num_frames`` frames.
    """

    def __init__(self, config: SeparationConfig = SeparationConfig(), feature_net: nn.Module | None = None):
        super().__init__()
        self.config = config
        if config.video == "none":
            if feature_net is not None:
                raise ValueError("SeparationConfig(video='none') takes no feature network")
        elif config.video == "multisensory":
            feature_net = feature_net if feature_net is not None else MultisensoryFeatures(MultisensoryNet(config.multisensory))
        elif feature_net is None:
            raise ValueError("SeparationConfig(video='custom') needs a feature_net (see FeatureNet)")
        if feature_net is not None:
            if not isinstance(feature_net, FeatureNet):
                raise TypeError(f"{type(feature_net).__name__} lacks the FeatureNet interface (feature_names, feature_channels)")
            if tuple(feature_net.feature_channels) != config.video_channels:
                raise ValueError(
                    f"the feature net's channels {tuple(feature_net.feature_channels)} differ from the config's "
                    f"{config.video_channels}"
                )
        self.features = feature_net
        self.unet = UNet(config.unet, config.video_channels)
        if self.features is not None and config.freeze_features:
            self.features.requires_grad_(False)

    def train(self, mode: bool = True) -> "SeparationNet":
        super().train(mode)
        if self.features is not None and self.config.freeze_features:
            self.features.eval()  # a frozen network keeps its BatchNorm statistics
        return self

    def load_features(self, state: dict[str, Tensor]) -> None:
        """Load pretrained weights into the feature network (the paper's ``init_type = 'shift'``)."""
        if self.features is None:
            raise ValueError("this separation model has no feature network")
        target = self.features.net if isinstance(self.features, MultisensoryFeatures) else self.features
        target.load_state_dict(state)

    def video_features(self, frames: Tensor, audio: Tensor) -> list[Tensor] | None:
        """The three video maps, finest first, or None without video."""
        if self.features is None:
            return None
        if frames is None:
            raise ValueError("this separation model needs the on-screen frames")
        if self.config.static_frames:
            middle = frames.shape[2] // 2
            frames = frames[:, :, middle : middle + 1].expand_as(frames)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.config.freeze_features):
            maps = self.features(frames, audio)
        return [maps[name] for name in self.features.feature_names]

    def forward(self, frames: Tensor | None, audio: Tensor) -> SeparationOutput:
        """frames (B, 3, T_v, H, W) or None, mixture (B, 2, N) -> the two sources' (B, T, F) maps in [-1, 1]."""
        if audio.dim() != 3 or audio.shape[1] != 2:
            raise ValueError(f"expected the stereo mixture of shape (B, 2, N), got {tuple(audio.shape)}")
        spectral = self.config.spectral
        mixture = analyze(mono_mix(audio, self.config.spectrogram_channel), spectral, num_frames=self.num_frames_for(audio.shape[-1]))
        spectrogram = torch.stack([mixture.magnitude, mixture.phase], dim=1)  # (B, 2, T, F)
        output = self.unet(spectrogram, self.video_features(frames, audio))
        if self.config.output == "mask":
            for source in ("on_screen", "off_screen"):
                key = f"{source}_magnitude"
                output[key] = apply_mask(output[key], mixture.magnitude.to(output[key].dtype), spectral)
        return output

    def num_frames_for(self, num_samples: int) -> int:
        """Spectrogram frames used from ``num_samples``: the most frames, a multiple of 128, that fit."""
        available = self.config.spectral.frames_for(num_samples)
        frames = available - available % TIME_DIVISOR
        if frames < TIME_DIVISOR:
            raise ValueError(
                f"{num_samples} samples give {available} STFT frames; the U-Net needs at least {TIME_DIVISOR} "
                f"({self.config.spectral.samples_for(TIME_DIVISOR)} samples)"
            )
        return frames

    def num_parameters(self) -> dict[str, int]:
        """Parameters of the U-Net, the feature network and both (113.7 M for the paper's ``full``)."""
        unet = self.unet.num_parameters()
        features = sum(p.numel() for p in self.features.parameters()) if self.features is not None else 0
        return {"unet": unet, "features": features, "total": unet + features}


def from_checkpoint(path, *, map_location: str | torch.device = "cpu", feature_net: nn.Module | None = None) -> SeparationNet:
    """The separation model stored in an avlib checkpoint, in eval mode.

    A ``"custom"`` model needs its ``feature_net`` built by the caller; the weights are loaded into it.
    """
    from avlib.checkpoint import CheckpointError, load_checkpoint, load_model_state

    checkpoint = load_checkpoint(path, expected_model_class=SeparationNet)
    try:
        config = SeparationConfig.from_dict(checkpoint["config"].get("model_config") or {})
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"checkpoint {path} has a separation config this avlib does not know: {error}") from error
    model = SeparationNet(config, feature_net)
    load_model_state(model, checkpoint["model"], path)
    return model.to(map_location).eval()



# ----------------------------------------------------------------------------------------------- inference

#: The phases an estimate can be synthesised with: the network's (the paper's ``phase_type = 'pred'``) or the
#: mixture's (the official code's ``phase_type = 'orig'``).
PHASES = ("predicted", "mixture")


def check_phase(phase: str) -> None:
    if phase not in PHASES:
        raise ValueError(f"phase must be one of {PHASES}, got {phase!r}")


def source_phase(output: Mapping[str, Tensor], source: str, mixture_phase: Tensor, phase: str) -> Tensor:
    """The normalised phase (B, T, num_bins) a source is synthesised with: the network's, or the mixture's."""
    if phase == "mixture":
        return mixture_phase[..., : output[f"{source}_phase"].shape[-1]]
    return output[f"{source}_phase"].float()


def predict(model: SeparationNet, frames: Tensor | None, mixture: Tensor, batch_size: int = 8,
            phase: str = "predicted") -> dict[str, Tensor]:
    """Waveforms of both estimates and of the mono mixture, over the samples the spectrogram covers (docs/paper.md §7.7).

    frames (B, T, H, W, 3) uint8 or None, mixture (B, 2, N) -> ``on_screen``, ``off_screen``, ``mixture``,
    each (B, L) with L = (T_spec - 1) hop + frame_length, and the normalised maps ``*_magnitude`` (B, T, F).
    The missing top bin takes -100 dB and the mixture's phase; the inverse STFT is TF's divided by 1.5.
    ``phase``: ``"predicted"`` (the paper's ``phase_type = 'pred'``) or ``"mixture"`` (the official code's
    ``phase_type = 'orig'``: each estimate takes the mixture's phase; see :func:`source_phase`).
    """
    return predict_phases(model, frames, mixture, batch_size, (phase,))[phase]


@torch.no_grad()
def predict_phases(model: SeparationNet, frames: Tensor | None, mixture: Tensor, batch_size: int = 8,
                   phases: Sequence[str] = ("predicted",)) -> dict[str, dict[str, Tensor]]:
    """:func:`predict` with each of ``phases``, from one pass of the network: ``{phase: predict's dict}``."""
    for phase in phases:
        check_phase(phase)
    model.eval()
    device = next(model.parameters()).device
    spectral = model.config.spectral
    parts: dict[str, dict[str, list[Tensor]]] = {phase: {} for phase in phases}
    for first in range(0, mixture.shape[0], batch_size):
        audio = mixture[first : first + batch_size].to(device)
        video = normalize_frames(frames[first : first + batch_size].to(device)) if model.features is not None else None
        output = model(video, audio)
        num_frames = output["on_screen_magnitude"].shape[1]
        mono = mono_mix(audio, model.config.spectrogram_channel)
        mixture_phase = torch.angle(stft(mono, spectral)[:, :num_frames]) / math.pi
        covered = spectral.samples_for(num_frames)
        for phase in phases:
            results = {"mixture": mono[:, :covered], "mixture_magnitude": analyze(mono, spectral, num_frames).magnitude}
            for source in ("on_screen", "off_screen"):
                magnitude = output[f"{source}_magnitude"].float()
                spectrum = full_band(magnitude, source_phase(output, source, mixture_phase, phase), mixture_phase, spectral)
                results[source] = inverse_stft(spectrum, spectral)
                results[f"{source}_magnitude"] = magnitude
            for key, value in results.items():
                parts[phase].setdefault(key, []).append(value.cpu())
    return {phase: {key: torch.cat(values) for key, values in found.items()} for phase, found in parts.items()}
