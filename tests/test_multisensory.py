"""Tests of the multisensory network: the paper's configurations on the meta device, behaviour on tiny ones."""

import json
import math
from dataclasses import asdict

import pytest
import torch
import torch.nn.functional as F

from avlib.models.multisensory import (
    MultisensoryConfig,
    MultisensoryNet,
    SameConv1d,
    SameConv3d,
    compress_audio,
    count_train_flops,
    network_cam,
    normalize_frames,
    tf_same_padding,
)

PAPER_PARAMETERS = 36.05e6  # docs/paper.md §2.7, with BN gamma; ours has beta only (36.04 M)

# Output (channels, *size) of every stage for the paper's clip, docs/paper.md §2.1-2.4.
PAPER_STAGES = {
    "audio.conv1_1": (64, 21897),
    "audio.conv2_1": (128, 1369),
    "audio.conv3_1": (128, 343),
    "audio.conv4_1": (256, 86),
    "video.conv1": (64, 63, 112, 112),
    "video.conv2_1": (64, 63, 56, 56),
    "video.conv2_2": (64, 32, 28, 28),
    "fusion.audio_conv5_1": (128, 32),
    "fusion": (128, 32, 28, 28),
    "conv3_1": (128, 32, 28, 28),
    "conv3_2": (128, 32, 28, 28),
    "conv4_1": (256, 16, 14, 14),
    "conv4_2": (256, 16, 14, 14),
    "conv5_1": (512, 16, 7, 7),
    "conv5_2": (512, 16, 7, 7),
}
# Inputs of the stages that follow the max-pools, which are not modules.
PAPER_POOLED = {"audio.conv2_1": (64, 5474), "video.conv2_1": (64, 63, 56, 56)}


def tiny_config(**overrides) -> MultisensoryConfig:
    """Width 8, 16 x 64 x 64 frames, 4096 samples: video T' = 4, audio L = 4, last conv 2 x 2 x 2."""
    settings = dict(num_frames=16, frame_size=64, num_samples=4096, width=8, bn_momentum=0.1)
    settings.update(overrides)
    return MultisensoryConfig(**settings)


def tiny_inputs(config: MultisensoryConfig, batch: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    size = config.frame_size
    frames = torch.rand(batch, 3, config.num_frames, size, size, generator=generator) * 2 - 1
    audio = torch.rand(batch, 2, config.num_samples, generator=generator) * 2 - 1
    return frames, audio


def meta_run(config: MultisensoryConfig):
    """Builds the network and runs it on the meta device, recording every module's input and output shape."""
    shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}

    def record(name: str):
        def hook(module, inputs, output):
            shapes[name] = (tuple(inputs[0].shape[1:]), tuple(output.shape[1:]))

        return hook

    with torch.device("meta"):
        model = MultisensoryNet(config)
        for name in PAPER_STAGES:
            model.get_submodule(name).register_forward_hook(record(name))
        frames = torch.empty(1, 3, config.num_frames, config.frame_size, config.frame_size)
        audio = torch.empty(1, 2, config.num_samples)
        output = model(frames, audio)
        cam = model.cam(output["features"]["conv5_2"])
    return model, output, cam, shapes


def test_paper_parameter_count():
    for cam in (False, True):
        with torch.device("meta"):
            model = MultisensoryNet(MultisensoryConfig(cam=cam))
        assert abs(model.num_parameters() - PAPER_PARAMETERS) / PAPER_PARAMETERS < 0.002
    # per-part counts of docs/paper.md §2.7
    audio = sum(p.numel() for p in model.audio.parameters()) + sum(
        p.numel() for p in model.fusion.audio_conv5_1.parameters()
    )
    assert round(audio / 1e6, 3) == 2.484
    assert round(sum(p.numel() for p in model.video.parameters()) / 1e6, 3) == 0.490
    assert sum(p.numel() for p in model.logits.parameters()) == 513


def test_no_batchnorm_scale():
    model = MultisensoryNet(tiny_config())
    names = {name for name, _ in model.named_parameters()}
    assert "video.conv1.bn.bias" in names and not any(name.endswith("bn.weight") for name in names)
    assert model.video.conv1.conv.bias is None  # convs followed by BN have no bias
    assert model.video.conv2_1.conv_b.bias is not None


def test_paper_stage_shapes():
    _, output, cam, shapes = meta_run(MultisensoryConfig())
    for name, expected in PAPER_STAGES.items():
        assert shapes[name][1] == expected, name
    for name, expected in PAPER_POOLED.items():
        assert shapes[name][0] == expected, name
    features = {name: tuple(value.shape[1:]) for name, value in output["features"].items()}
    assert features["audio"] == (256, 86)
    assert features["conv2_2"] == (64, 32, 28, 28)
    assert features["fused"] == (128, 32, 28, 28)
    assert features["conv3_2"] == (128, 32, 28, 28)
    assert features["conv5_2"] == (512, 16, 7, 7)
    assert output["logit"].shape == (1,)
    assert cam.shape == (1, 16, 7, 7)


def test_paper_cam_model_shapes():
    _, output, cam, shapes = meta_run(MultisensoryConfig(cam=True))
    assert shapes["conv5_1"][1] == (512, 16, 14, 14)
    assert tuple(output["features"]["conv5_2"].shape[1:]) == (512, 16, 14, 14)
    assert cam.shape == (1, 16, 14, 14)


def test_paper_low_frame_rate_shapes():
    """shift_lowfps: every 4th frame (32) with the same 4.2 s of audio, aligned 86 -> 8 steps."""
    _, output, _, shapes = meta_run(MultisensoryConfig(num_frames=32))
    assert shapes["fusion.audio_conv5_1"][1] == (128, 8)
    assert tuple(output["features"]["conv2_2"].shape[1:]) == (64, 8, 28, 28)
    assert tuple(output["features"]["conv5_2"].shape[1:]) == (512, 4, 7, 7)


def test_config_is_plain_json():
    config = MultisensoryConfig(width=16, cam=True)
    assert MultisensoryConfig(**json.loads(json.dumps(asdict(config)))) == config
    with pytest.raises(ValueError, match="width"):
        MultisensoryConfig(width=0)


@pytest.mark.parametrize(
    "size, kernel, stride, expected",
    [
        (224, 7, 2, (2, 3)),  # im/conv1 in space
        (125, 5, 2, (2, 2)),  # im/conv1 in time
        (87588, 65, 4, (30, 31)),  # sf/conv1_1
        (56, 3, 2, (0, 1)),
        (63, 3, 2, (1, 1)),
        (112, 3, 2, (0, 1)),  # the video max-pool
        (7, 1, 2, (0, 0)),
        (5, 3, 1, (1, 1)),
    ],
)
def test_tf_same_padding_values(size, kernel, stride, expected):
    assert tf_same_padding(size, kernel, stride) == expected


@pytest.mark.parametrize("size", [5, 6, 7, 8, 13])
@pytest.mark.parametrize("stride", [1, 2, 3, 4])
@pytest.mark.parametrize("kernel", [1, 3, 4, 7])
def test_same_conv_output_size(size, stride, kernel):
    conv1d = SameConv1d(1, 1, kernel, stride)
    conv3d = SameConv3d(1, 1, (kernel, 3, kernel), (stride, 1, stride))
    out_size = math.ceil(size / stride)
    assert conv1d(torch.zeros(1, 1, size)).shape == (1, 1, out_size)
    assert conv3d(torch.zeros(1, 1, size, size + 1, size + 1)).shape[2:] == (
        out_size, size + 1, math.ceil((size + 1) / stride)
    )


def test_same_conv_pads_more_at_the_end():
    conv = SameConv1d(1, 1, 3, 2)
    torch.nn.init.ones_(conv.weight)
    # TF: out size 2, one pad at the end: [1+2+3, 3+4+0]; symmetric padding would give [0+1+2, 2+3+4]
    output = conv(torch.tensor([[[1.0, 2.0, 3.0, 4.0]]]))
    assert output.flatten().tolist() == [6.0, 7.0]


def test_normalize_frames_and_compress_audio():
    frames = torch.zeros(1, 2, 4, 5, 3, dtype=torch.uint8)
    frames[..., 1] = 255
    normalized = normalize_frames(frames)
    assert normalized.shape == (1, 3, 2, 4, 5) and normalized.dtype == torch.float32
    assert normalized[:, 0].eq(-1).all() and normalized[:, 1].eq(1).all()
    with pytest.raises(ValueError, match=r"\(1, 2, 4, 5\)"):
        normalize_frames(torch.zeros(1, 2, 4, 5))
    waveform = torch.tensor([-1.0, -0.01, 0.0, 0.01, 1.0])
    compressed = compress_audio(waveform)
    assert compressed[[0, 2, 4]].tolist() == [-1.0, 0.0, 1.0]
    assert compressed[3] == pytest.approx(math.log(1 + 2.55) / math.log(256)) and compressed[1] == -compressed[3]


def test_cam_mean_is_logit():
    torch.manual_seed(0)
    config = tiny_config()
    model = MultisensoryNet(config).eval()
    frames, audio = tiny_inputs(config)
    with torch.no_grad():
        output = model(frames, audio)
        cam = model.cam(output["features"]["conv5_2"])
    assert cam.shape == (2, 2, 2, 2)
    torch.testing.assert_close(cam.mean(dim=(1, 2, 3)), output["logit"], rtol=1e-5, atol=1e-5)


def test_cam_of_handmade_features_and_classifier():
    # width 1: 8 channels on a 2 x 2 x 2 grid; channel 0 is 1 at one position, channel 1 is 2 everywhere
    model = MultisensoryNet(MultisensoryConfig(width=1))
    features = torch.zeros(1, 8, 2, 2, 2)
    features[0, 0, 1, 0, 1] = 1.0
    features[0, 1] = 2.0
    with torch.no_grad():
        model.logits.weight.zero_()
        model.logits.weight[0, :2] = torch.tensor([5.0, -1.0])
        model.logits.bias.fill_(0.5)
        cam = model.cam(features)
        pooled_logit = model.logits(features.mean(dim=(2, 3, 4)))[0, 0]
    expected = torch.full((1, 2, 2, 2), -2.0 + 0.5)
    expected[0, 1, 0, 1] = 5.0 - 2.0 + 0.5
    torch.testing.assert_close(cam, expected)
    torch.testing.assert_close(cam.mean(), pooled_logit)  # the classifier on the pooled features: the map's mean


def test_network_cam_is_the_classifier_on_the_last_conv():
    torch.manual_seed(0)
    net = MultisensoryNet(MultisensoryConfig(width=4, cam=True, num_frames=8, frame_size=32, num_samples=6400)).eval()
    net.logits.bias.data.fill_(0.3)
    frames, audio = torch.rand(3, 3, 8, 32, 32) * 2 - 1, torch.rand(1, 2, 6400) * 2 - 1
    with torch.no_grad():
        cam = network_cam(net)(frames, audio.expand(3, -1, -1))
        output = net(frames, audio.expand(3, -1, -1))
    assert cam.shape == (3, 1, 2, 2)  # cam=True keeps conv4's 2 x 2 for 32-pixel tiles (1 x 1 without)
    torch.testing.assert_close(cam, net.cam(output["features"]["conv5_2"]))
    torch.testing.assert_close(cam.mean(dim=(1, 2, 3)), output["logit"], rtol=1e-4, atol=1e-5)


def test_without_sound_output_ignores_audio():
    torch.manual_seed(0)
    config = tiny_config()
    frames, audio = tiny_inputs(config)
    other_audio = tiny_inputs(config, seed=1)[1]
    with torch.no_grad():
        silent = MultisensoryNet(MultisensoryConfig(**{**asdict(config), "use_sound": False})).eval()
        torch.testing.assert_close(silent(frames, audio)["logit"], silent(frames, other_audio)["logit"])
        model = MultisensoryNet(config).eval()
        assert not torch.allclose(model(frames, audio)["logit"], model(frames, other_audio)["logit"])


def test_pair_forward_matches_forward():
    torch.manual_seed(0)
    config = tiny_config()
    model = MultisensoryNet(config).eval()
    frames, audio = tiny_inputs(config)
    shifted_audio = audio.roll(1000, dims=2)
    with torch.no_grad():
        aligned_logit, shifted_logit = model(frames, audio, shifted_audio)
        torch.testing.assert_close(aligned_logit, model(frames, audio)["logit"], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(shifted_logit, model(frames, shifted_audio)["logit"], rtol=1e-4, atol=1e-5)


def test_tiny_network_trains():
    torch.manual_seed(0)
    config = tiny_config()
    model = MultisensoryNet(config).train()
    frames, audio = tiny_inputs(config, batch=4)
    shifted_audio = audio.roll(2048, dims=2)
    labels = torch.cat([torch.ones(4), torch.zeros(4)])
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-2, momentum=0.9)
    losses = []
    for _ in range(8):
        logits = torch.cat(model(frames, audio, shifted_audio))
        loss = F.binary_cross_entropy_with_logits(logits, labels)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        losses.append(loss.item())
    assert all(math.isfinite(value) for value in losses)
    assert losses[-1] < 0.5 * losses[0]


def test_he_initialisation():
    model = MultisensoryNet(tiny_config(width=16))
    weight = model.conv5_2.conv_a.conv.weight
    fan_in = weight[0].numel()
    assert weight.std().item() == pytest.approx(math.sqrt(2.0 / fan_in), rel=0.05)
    assert weight.abs().max().item() <= 2 * math.sqrt(1.3 * 2.0 / fan_in)


def test_bad_shapes_raise():
    config = tiny_config()
    model = MultisensoryNet(config)
    frames, audio = tiny_inputs(config)
    with pytest.raises(ValueError, match=r"\(2, 16, 64, 64\)"):
        model(frames[:, 0], audio)
    with pytest.raises(ValueError, match="normalize_frames"):
        model(frames.permute(0, 2, 3, 4, 1), audio)
    with pytest.raises(ValueError, match="uint8"):
        model(frames.to(torch.uint8), audio)
    with pytest.raises(ValueError, match=r"\(2, 1, 4096\)"):
        model(frames, audio[:, :1])
    with pytest.raises(ValueError, match=r"\(2, 4096, 2\)"):
        model(frames, audio.transpose(1, 2))
    with pytest.raises(ValueError, match="batch sizes differ"):
        model(frames, audio[:1])
    with pytest.raises(ValueError, match="too short"):
        model(frames, audio[..., :8])
    with pytest.raises(ValueError, match="fewer than the video's 4 time steps"):
        model(frames, audio[..., :1024])
    with pytest.raises(ValueError, match="shifted audio"):
        model(frames, audio, audio[..., :2048])
    with pytest.raises(ValueError, match=r"\(2, 16, 2, 4, 4\)"):
        model.forward_fused(torch.zeros(2, 16, 2, 4, 4), torch.zeros(2, 32, 4))
    with pytest.raises(ValueError, match=r"\(2, 8, 2, 2, 2\)"):
        model.cam(torch.zeros(2, 8, 2, 2, 2))


def test_train_flops_count():
    """About 1.5 TFLOP per paper video: 86 GMAC visual stream, 2 x 86 GMAC after fusion, times 3 for backward."""
    flops = count_train_flops(MultisensoryConfig())
    assert 1.4e12 < flops < 1.6e12
    assert count_train_flops(MultisensoryConfig(), batch_size=2) == 2 * flops
