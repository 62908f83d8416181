"""The separation U-Net: the paper's configuration on the meta device, its variants and TF's layers on tiny ones."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from avlib.checkpoint import save_checkpoint
from avlib.models.multisensory import MultisensoryConfig, pad_same
from avlib.models.unet import (
    MASK_LOGIT_SCALE,
    SeparationConfig,
    SeparationNet,
    UNet,
    UNetConfig,
    apply_mask,
    from_checkpoint,
    mono_mix,
    resize_time_tf1,
    transposed_conv_same,
)
from avlib.spectral import SpectralConfig, analyze

# docs/paper.md §7.10 (computed from the official code): U-Net with video 77.6 M, without 67.0 M, with the multisensory net 113.7 M.
PAPER_PARAMETERS_M = {"unet": 77.6, "unet_no_video": 67.0, "total": 113.7}

# Channels and T x F of every layer's output for the paper's 128 x 1024 input with video (docs/paper.md §7.3);
# the encoder layers after which video is concatenated show the concatenation.
PAPER_LAYERS = {
    "conv1": (64, 128, 512), "conv2": (128, 128, 256), "conv3": (256, 64, 128), "conv4": (512, 32, 64),
    "conv5": (512, 16, 32), "conv6": (512, 8, 16), "conv9": (512, 1, 2),
    "deconv1": (512, 2, 4), "deconv5": (512, 32, 64), "deconv6": (256, 64, 128), "deconv7": (128, 128, 256),
    "deconv8": (64, 128, 512),
}
PAPER_DECODER_INPUTS = {"deconv5": 512 + 1024, "deconv6": 512 + 640, "deconv7": 256 + 320, "deconv8": 128 + 128}


def tiny_config(**overrides) -> SeparationConfig:
    """8 kHz, FFT 1024 (512 bins), U-Net width 2, multisensory width 4 on 32 x 32 frames at 7.49 fps."""
    settings = dict(
        spectral=SpectralConfig.for_sample_rate(8000, fft_size=1024), unet=UNetConfig(width=2, bn_momentum=0.1),
        multisensory=MultisensoryConfig(width=4, bn_momentum=0.1), fps=29.97 / 4, size=40, crop=32,
    )
    settings.update(overrides)
    return SeparationConfig(**settings)


def tiny_inputs(config: SeparationConfig, batch: int = 2, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    frames = torch.rand(batch, 3, config.num_video_frames, config.crop, config.crop, generator=generator) * 2 - 1
    audio = (torch.rand(batch, 2, config.num_samples, generator=generator) * 2 - 1) * 0.2
    return frames, audio


class TinyFeatureNet(nn.Module):
    """A stand-in for I3D: video only, three scales of 3, 5 and 7 channels."""

    feature_names = ("a", "b", "c")
    feature_channels = (3, 5, 7)

    def __init__(self):
        super().__init__()
        self.a = nn.Conv3d(3, 3, 3, stride=2, padding=1)
        self.b = nn.Conv3d(3, 5, 3, stride=2, padding=1)
        self.c = nn.Conv3d(5, 7, 3, stride=2, padding=1)

    def forward(self, frames, audio):
        a = self.a(frames)
        b = self.b(a)
        return {"a": a, "b": b, "c": self.c(b)}


def test_paper_parameter_counts():
    with torch.device("meta"):
        full = SeparationNet(SeparationConfig()).num_parameters()
        audio_only = SeparationNet(SeparationConfig(video="none")).num_parameters()
    assert full["unet"] / 1e6 == pytest.approx(PAPER_PARAMETERS_M["unet"], abs=0.05)
    assert full["total"] / 1e6 == pytest.approx(PAPER_PARAMETERS_M["total"], abs=0.05)
    assert audio_only["unet"] / 1e6 == pytest.approx(PAPER_PARAMETERS_M["unet_no_video"], abs=0.05)
    assert audio_only["features"] == 0


def test_paper_configuration_shapes_on_meta_device():
    config = SeparationConfig()
    assert (config.num_video_frames, config.num_samples) == (63, 44144)  # the 2.135 s window
    with torch.device("meta"):
        model = SeparationNet(config)
        frames = torch.empty(2, 3, 63, 224, 224)
        audio = torch.empty(2, 2, 44144)
        outputs, inputs = {}, {}
        for name in PAPER_LAYERS:
            module = getattr(model.unet, name)
            module.register_forward_hook(lambda m, i, o, name=name: outputs.__setitem__(name, tuple(o.shape[1:])))
            module.register_forward_pre_hook(lambda m, i, name=name: inputs.__setitem__(name, i[0].shape[1]))
        video = model.video_features(frames, audio)
        result = model(frames, audio)
    assert [tuple(v.shape[1:3]) for v in video] == [(64, 16), (128, 16), (512, 8)]  # conv2_2, conv3_2, conv5_2
    assert outputs == PAPER_LAYERS
    for name, channels in PAPER_DECODER_INPUTS.items():
        assert inputs[name] == channels
    assert set(result) == {"on_screen_magnitude", "on_screen_phase", "off_screen_magnitude", "off_screen_phase"}
    assert all(value.shape == (2, 128, 1024) for value in result.values())


def test_transposed_conv_is_the_adjoint_of_tf_same_conv():
    """TF's SAME conv2d_transpose is the gradient of the SAME conv: <conv(u), v> == <u, conv_transpose(v)>."""
    generator = torch.Generator().manual_seed(0)
    for stride, size in (((2, 2), (8, 12)), ((1, 2), (7, 10))):
        weight = torch.randn(3, 5, 4, 4, generator=generator, dtype=torch.float64)  # (C_in of deconv, C_out, k, k)
        v = torch.randn(2, 3, *size, generator=generator, dtype=torch.float64)
        u = torch.randn(2, 5, size[0] * stride[0], size[1] * stride[1], generator=generator, dtype=torch.float64)
        conv_u = F.conv2d(pad_same(u, (4, 4), stride), weight, stride=stride)  # a SAME conv back to v's size
        assert conv_u.shape == v.shape
        transposed_v = transposed_conv_same(v, weight, None, stride)
        assert transposed_v.shape == u.shape
        torch.testing.assert_close((conv_u * v).sum(), (u * transposed_v).sum())


def test_time_resize_is_tf1_bilinear():
    series = torch.arange(4.0)[None, None]
    torch.testing.assert_close(resize_time_tf1(series, 8), torch.tensor([[[0, 0.5, 1, 1.5, 2, 2.5, 3, 3]]]))
    assert resize_time_tf1(series, 4) is series


def test_tiny_model_trains_and_uses_the_video():
    config = tiny_config()
    torch.manual_seed(0)
    model = SeparationNet(config)
    frames, audio = tiny_inputs(config)
    output = model(frames, audio)
    assert all(value.shape == (2, 128, 512) and value.abs().max() <= 1 for value in output.values())
    sum(value.mean() for value in output.values()).backward()
    assert model.features.net.video.conv1.conv.weight.grad.abs().sum() > 0  # fine-tuned end to end
    model.eval()
    with torch.no_grad():
        same = model(frames, audio)["on_screen_magnitude"]
        other = model(frames.flip(2), audio)["on_screen_magnitude"]
    assert not torch.allclose(same, other)


def test_mask_output_scales_the_mixture_down():
    config = tiny_config(video="none", output="mask")
    torch.manual_seed(0)
    model = SeparationNet(config).eval()
    _, audio = tiny_inputs(config)
    with torch.no_grad():
        output = model(None, audio)
    spectral = config.spectral
    mixture = analyze(mono_mix(audio), spectral, 128).magnitude
    for source in ("on_screen", "off_screen"):
        gain_db = (output[f"{source}_magnitude"] - mixture) * (spectral.db_max - spectral.db_min) / 2
        assert gain_db.max() <= 1e-4 and gain_db.min() >= -20 * math.log10(1 + math.exp(MASK_LOGIT_SCALE)) - 1e-3
        # a fresh network's masks are near 0.5: both outputs start as the mixture at about -6 dB
        assert gain_db.mean().item() == pytest.approx(-6.02, abs=1.0)
    head = torch.tensor([[[-1.0, 0.0, 1.0]]])
    zero = torch.zeros_like(head)
    expected = 20 * torch.log10(torch.sigmoid(MASK_LOGIT_SCALE * head)) * 2 / (spectral.db_max - spectral.db_min)
    torch.testing.assert_close(apply_mask(head, zero, spectral), expected)
    with pytest.raises(ValueError, match="output"):
        tiny_config(output="spectrogram")


def test_audio_only_variant_ignores_frames():
    config = tiny_config(video="none")
    model = SeparationNet(config).eval()
    frames, audio = tiny_inputs(config)
    assert model.features is None and model.unet.video_channels is None
    with torch.no_grad():
        torch.testing.assert_close(model(None, audio), model(frames, audio))
    with pytest.raises(ValueError, match="takes no feature network"):
        SeparationNet(config, TinyFeatureNet())


def test_frozen_feature_net_gets_no_gradient_and_keeps_its_statistics():
    model = SeparationNet(tiny_config(freeze_features=True)).train()
    assert not model.features.training and model.unet.training
    frames, audio = tiny_inputs(model.config)
    before = model.features.net.video.conv1.bn.running_mean.clone()
    output = model(frames, audio)
    sum(value.mean() for value in output.values()).backward()
    assert all(p.grad is None for p in model.features.parameters())
    assert model.unet.conv1.conv.weight.grad is not None
    torch.testing.assert_close(model.features.net.video.conv1.bn.running_mean, before)


def test_another_feature_net_plugs_in_through_the_interface():
    config = tiny_config(video="custom", custom_channels=(3, 5, 7))
    model = SeparationNet(config, TinyFeatureNet())
    frames, audio = tiny_inputs(config)
    output = model(frames, audio)
    sum(value.mean() for value in output.values()).backward()
    assert model.features.c.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="needs a feature_net"):
        SeparationNet(config)
    with pytest.raises(ValueError, match="channels"):
        SeparationNet(tiny_config(video="custom", custom_channels=(3, 5, 8)), TinyFeatureNet())


def test_bad_shapes_are_refused():
    unet = UNet(UNetConfig(width=2))
    with pytest.raises(ValueError, match="multiple of 128"):
        unet(torch.zeros(1, 2, 100, 512))
    with pytest.raises(ValueError, match="with video features"):
        UNet(UNetConfig(width=2), (3, 5, 7))(torch.zeros(1, 2, 128, 512))
    with pytest.raises(ValueError, match="multiple of 128"):
        tiny_config(spectral=SpectralConfig.for_sample_rate(8000, fft_size=1024, num_frames=100))
    model = SeparationNet(tiny_config())
    with pytest.raises(ValueError, match="stereo mixture"):
        model(None, torch.zeros(1, 100))


def test_checkpoint_round_trip(tmp_path):
    config = tiny_config(static_frames=True)
    model = SeparationNet(config)
    optimizer = torch.optim.Adam(model.parameters())
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, model=model, optimizer=optimizer, step=1, config={})
    loaded = from_checkpoint(path)
    assert loaded.config == config and not loaded.training
    frames, audio = tiny_inputs(config)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(frames, audio), model(frames, audio))
