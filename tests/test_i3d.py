"""I3D: the published network's stage shapes and size on the meta device, a small one for real, TF name mapping."""

import numpy as np
import pytest
import torch

from avlib.models.i3d import (
    ENDPOINTS,
    I3D,
    SEPARATION_SCALES,
    I3DConfig,
    I3DFeatures,
    MaxPool3dSame,
    from_tf_arrays,
    load_converted,
    tf_variable_name,
    to_tf_arrays,
)
from avlib.models.unet import SeparationNet

# Carreira & Zisserman, figure 3 / DeepMind's i3d.py, for a 64-frame 224 x 224 clip: (C, T, H, W) per endpoint.
PUBLISHED_STAGES = {
    "Conv3d_1a_7x7": (64, 32, 112, 112), "MaxPool3d_2a_3x3": (64, 32, 56, 56), "Conv3d_2b_1x1": (64, 32, 56, 56),
    "Conv3d_2c_3x3": (192, 32, 56, 56), "MaxPool3d_3a_3x3": (192, 32, 28, 28), "Mixed_3b": (256, 32, 28, 28),
    "Mixed_3c": (480, 32, 28, 28), "MaxPool3d_4a_3x3": (480, 16, 14, 14), "Mixed_4b": (512, 16, 14, 14),
    "Mixed_4c": (512, 16, 14, 14), "Mixed_4d": (512, 16, 14, 14), "Mixed_4e": (528, 16, 14, 14),
    "Mixed_4f": (832, 16, 14, 14), "MaxPool3d_5a_2x2": (832, 8, 7, 7), "Mixed_5b": (832, 8, 7, 7),
    "Mixed_5c": (1024, 8, 7, 7),
}


def test_published_network_stage_shapes_for_a_64_frame_224_clip():
    # The meta device runs the real network's shape logic without arithmetic (a real forward takes ~10 s on one core).
    with torch.device("meta"):
        outputs = I3D()(torch.empty(2, 3, 64, 224, 224))
    assert list(outputs) == list(ENDPOINTS)
    for name, (channels, frames, height, width) in PUBLISHED_STAGES.items():
        assert tuple(outputs[name].shape) == (2, channels, frames, height, width), name
    assert tuple(outputs["Logits"].shape) == (2, 400)


def test_parameter_count_is_the_published_twelve_million():
    with torch.device("meta"):
        net = I3D()
    total, trunk = net.num_parameters(), net.num_parameters(logits=False)
    assert total - trunk == 1024 * 400 + 400  # the 1x1x1 logits conv with a bias
    assert round(total / 1e6) == 13 and round(trunk / 1e6) == 12  # Carreira & Zisserman: "12M"
    stem = net.Conv3d_1a_7x7.conv.weight
    assert tuple(stem.shape) == (64, 3, 7, 7, 7) and net.Conv3d_1a_7x7.conv.bias is None
    assert not any(name.endswith("bn.weight") for name, _ in net.named_parameters())  # no BatchNorm scale


def test_width_scales_every_channel_and_a_small_clip_runs_for_real():
    config = I3DConfig(num_classes=5, width=0.25, bn_momentum=0.1)
    assert config.feature_channels == (120, 208, 256)
    net = I3D(config)
    frames = torch.rand(2, 3, 16, 64, 64) * 2 - 1
    outputs = net(frames)
    assert tuple(outputs["Mixed_3c"].shape) == (2, 120, 8, 8, 8)
    assert tuple(outputs["Mixed_4f"].shape) == (2, 208, 4, 4, 4)
    assert tuple(outputs["Mixed_5c"].shape) == (2, 256, 2, 2, 2)
    assert tuple(outputs["Logits"].shape) == (2, 5) and torch.isfinite(outputs["Logits"]).all()
    outputs["Logits"].sum().backward()
    assert net.Conv3d_1a_7x7.conv.weight.grad.abs().sum() > 0
    assert list(net(frames, final_endpoint="Mixed_4f"))[-1] == "Mixed_4f"
    with pytest.raises(ValueError, match=r"\(2, 16, 64, 64, 3\)"):
        net(torch.zeros(2, 16, 64, 64, 3))
    with pytest.raises(ValueError, match="Mixed_9z"):
        net(frames, final_endpoint="Mixed_9z")


def test_same_max_pool_never_takes_the_padding():
    pooled = MaxPool3dSame((3, 3, 3), (2, 2, 2))(-torch.ones(1, 1, 5, 5, 5))
    assert tuple(pooled.shape) == (1, 1, 3, 3, 3) and (pooled == -1).all()


def test_i3d_feeds_the_separation_unet():
    from tests.test_unet import tiny_config, tiny_inputs

    net = I3D(I3DConfig(num_classes=3, width=0.0625, bn_momentum=0.1))
    features = I3DFeatures(net)
    assert features.feature_names == SEPARATION_SCALES
    config = tiny_config(video="custom", custom_channels=net.config.feature_channels)
    model = SeparationNet(config, features)
    frames, audio = tiny_inputs(config)
    output = model(frames, audio)
    assert output["on_screen_magnitude"].shape[0] == 2 and torch.isfinite(output["on_screen_magnitude"]).all()


def test_tf_names_and_layouts_round_trip(tmp_path):
    assert tf_variable_name("Mixed_4f.Branch_1.Conv3d_0b_3x3.conv.weight") == \
        "RGB/inception_i3d/Mixed_4f/Branch_1/Conv3d_0b_3x3/conv_3d/w"
    assert tf_variable_name("Conv3d_1a_7x7.bn.running_var") == "RGB/inception_i3d/Conv3d_1a_7x7/batch_norm/moving_variance"
    assert tf_variable_name("Logits.Conv3d_0c_1x1.conv.bias") == "RGB/inception_i3d/Logits/Conv3d_0c_1x1/conv_3d/b"
    config = I3DConfig(num_classes=4, width=0.125)
    torch.manual_seed(1)
    original = I3D(config)
    arrays = to_tf_arrays(original)
    assert arrays["RGB/inception_i3d/Conv3d_1a_7x7/conv_3d/w"].shape == (7, 7, 7, 3, 8)  # TF: T, H, W, in, out
    arrays["global_step"] = np.array(5)  # extra TF variables are ignored
    arrays["RGB/inception_i3d/Mixed_3b/Branch_0/Conv3d_0a_1x1/batch_norm/beta"] = \
        arrays["RGB/inception_i3d/Mixed_3b/Branch_0/Conv3d_0a_1x1/batch_norm/beta"].reshape(1, 1, 1, 1, -1)  # sonnet's shape
    loaded = from_tf_arrays(arrays, config)
    for name, value in original.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
    path = tmp_path / "rgb.npz"
    np.savez(path, **arrays)
    frames = torch.rand(1, 3, 8, 32, 32) * 2 - 1
    assert torch.allclose(load_converted(path, config).eval()(frames)["Logits"], original.eval()(frames)["Logits"])
    del arrays["RGB/inception_i3d/Mixed_5c/Branch_3/Conv3d_0b_1x1/conv_3d/w"]
    with pytest.raises(ValueError, match="Mixed_5c/Branch_3"):
        from_tf_arrays(arrays, config, source="converted.npz")
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        load_converted(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"not an archive")
    with pytest.raises(ValueError, match="junk.npz"):
        load_converted(tmp_path / "junk.npz")
