"""The TF checkpoint reader and our layers against TensorFlow's own outputs, without TensorFlow.

The fixtures under tests/fixtures/tf/ were written by TensorFlow with ``scripts/make_tf_fixtures.py``
(its version in VERSION.json). Layouts: TF activations are channels last, ours channels first; kernels
are transposed as the import will (3-D ``[kt, kh, kw, C_in, C_out]`` -> ``[C_out, C_in, kt, kh, kw]``,
1-D audio conv2d ``[k, 1, C_in, C_out]`` -> ``[C_out, C_in, k]``, conv2d ``[kh, kw, C_in, C_out]`` ->
``[C_out, C_in, kh, kw]``, transposed conv ``[kh, kw, C_out, C_in]`` -> ``[C_in, C_out, kh, kw]``).
The official networks: TF-written checkpoints of every official variable name at small widths, the full-size
name and shape tables, and TF's forward passes (docs/weights.md), against :mod:`avlib.weights`.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from avlib.checkpoint import CheckpointError
from avlib.models.multisensory import BatchNormNoScale, MultisensoryConfig, SameConv1d, SameConv3d, pad_same
from avlib.models.tf_pooling import fractional_max_pool_tf, tf_output_steps, tf_pool_boundaries
from avlib.models.unet import EncoderLayer, UNetConfig, resize_time_tf1, transposed_conv_same
from avlib.spectral import SpectralConfig, overlap_add, stft
from avlib.tfbundle import TFCheckpoint, TFCheckpointError, crc32c, read_tf_checkpoint

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "tf"
CHECKPOINT = FIXTURES / "checkpoint" / "net.tf-7"
TOLERANCE = 1e-5


def ops() -> dict[str, np.ndarray]:
    with np.load(FIXTURES / "ops.npz") as data:
        return {key: data[key] for key in data.files}


OPS = ops()


def cases(prefix: str) -> list[str]:
    return sorted({key.split("/")[0] for key in OPS if key.startswith(prefix)})


def tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array))


def channels_first(array: np.ndarray) -> torch.Tensor:
    """TF's (B, *S, C) -> our (B, C, *S)."""
    return tensor(np.moveaxis(array, -1, 1))


def max_error(ours: torch.Tensor, theirs: np.ndarray) -> float:
    assert tuple(ours.shape) == theirs.shape, (tuple(ours.shape), theirs.shape)
    return float(np.max(np.abs(ours.detach().numpy().astype(np.complex128) - theirs), initial=0.0))


# ------------------------------------------------------------------------------------------------- reader

def copy_checkpoint(tmp_path: Path) -> Path:
    for path in CHECKPOINT.parent.glob(CHECKPOINT.name + ".*"):
        shutil.copy(path, tmp_path / path.name)
    return tmp_path / CHECKPOINT.name


def test_crc32c_known_values():
    assert crc32c(b"") == 0
    assert crc32c(b"123456789") == 0xE3069283  # the standard check value of CRC-32C
    data = np.random.default_rng(0).integers(0, 256, 300_001, dtype=np.uint8)
    halves = crc32c(data[:150_000]), crc32c(data)
    assert halves[1] != halves[0]
    assert crc32c(data.tobytes()) == halves[1]


def test_reader_returns_exactly_what_tensorflow_saved():
    with np.load(CHECKPOINT.parent / "values.npz") as saved:
        expected = {key: saved[key] for key in saved.files}
    bundle = TFCheckpoint(CHECKPOINT)
    assert set(bundle.keys()) == set(expected)
    assert bundle.shapes()["im/conv1/weights"] == (3, 3, 3, 3, 4)
    assert bundle.dtypes()["global_step"] == "int64" and bundle.dtypes()["dtypes/bfloat16"] == "bfloat16"
    values = read_tf_checkpoint(str(CHECKPOINT) + ".index")
    for name, value in expected.items():
        assert values[name].dtype == value.dtype, name
        assert values[name].shape == value.shape, name
        np.testing.assert_array_equal(values[name], value, err_msg=name)
    assert values["global_step"] == 7


def test_reader_reads_an_object_based_checkpoint_with_its_string_tensor():
    folder = FIXTURES / "object"
    with np.load(folder / "values.npz") as saved:
        expected = {key: saved[key] for key in saved.files}
    values = read_tf_checkpoint(folder / "ckpt-1")
    for name, value in expected.items():
        np.testing.assert_array_equal(values[name], value)
    graph = values["_CHECKPOINTABLE_OBJECT_GRAPH"]
    assert graph.shape == () and isinstance(graph.item(), bytes) and b"kernel" in graph.item()


def test_missing_index_is_named(tmp_path):
    with pytest.raises(TFCheckpointError, match=r"net\.tf-9\.index: no such checkpoint index"):
        TFCheckpoint(tmp_path / "net.tf-9")


def test_missing_data_shard_is_refused_as_partial(tmp_path):
    prefix = copy_checkpoint(tmp_path)
    (tmp_path / "net.tf-7.data-00000-of-00001").unlink()
    with pytest.raises(CheckpointError, match=r"missing data shard.*net\.tf-7\.data-00000-of-00001.*partial"):
        TFCheckpoint(prefix)


@pytest.mark.parametrize("keep", [0, 30, 1000])
def test_truncated_index_is_refused(tmp_path, keep):
    prefix = copy_checkpoint(tmp_path)
    index = tmp_path / "net.tf-7.index"
    index.write_bytes(index.read_bytes()[:keep])
    with pytest.raises(TFCheckpointError, match=r"net\.tf-7\.index: .*(truncated|foreign)"):
        TFCheckpoint(prefix)


def test_truncated_data_is_refused_naming_the_tensor(tmp_path):
    prefix = copy_checkpoint(tmp_path)
    data = tmp_path / "net.tf-7.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[:-10])
    with pytest.raises(TFCheckpointError, match=r"data-00000-of-00001: tensor '.+' needs bytes .* \(truncated\)"):
        TFCheckpoint(prefix)


def test_corrupt_tensor_fails_its_checksum(tmp_path):
    prefix = copy_checkpoint(tmp_path)
    entry = TFCheckpoint(prefix).entries["im/conv1/weights"]
    data = tmp_path / "net.tf-7.data-00000-of-00001"
    raw = bytearray(data.read_bytes())
    raw[entry.offset + 5] ^= 0x40
    data.write_bytes(bytes(raw))
    bundle = TFCheckpoint(prefix)
    bundle.read("im/conv1/BatchNorm/beta")  # other tensors still read
    with pytest.raises(TFCheckpointError, match=r"tensor 'im/conv1/weights' fails its CRC-32C check"):
        bundle.read("im/conv1/weights")


def test_corrupt_index_block_fails_its_checksum(tmp_path):
    prefix = copy_checkpoint(tmp_path)
    index = tmp_path / "net.tf-7.index"
    raw = bytearray(index.read_bytes())
    raw[raw.index(b"im/conv1")] ^= 0x01
    index.write_bytes(bytes(raw))
    with pytest.raises(TFCheckpointError, match=r"net\.tf-7\.index: the data block .* CRC-32C"):
        TFCheckpoint(prefix)


def test_foreign_files_are_refused(tmp_path):
    torch.save({"model": {"w": torch.zeros(3)}}, tmp_path / "net.pt.index")
    with pytest.raises(TFCheckpointError, match=r"net\.pt\.index: not a TensorFlow checkpoint index"):
        TFCheckpoint(tmp_path / "net.pt")
    (tmp_path / "empty.index").write_bytes(b"")
    with pytest.raises(TFCheckpointError, match=r"empty\.index: 0 bytes"):
        TFCheckpoint(tmp_path / "empty")


def test_unknown_tensor_name_is_a_key_error():
    with pytest.raises(KeyError, match="no tensor 'im/conv9/weights'"):
        TFCheckpoint(CHECKPOINT).read("im/conv9/weights")


# ------------------------------------------------------------------------------------- layers against TF

@pytest.mark.parametrize("case", cases("conv3d_"))
def test_same_conv3d_matches_tensorflow(case):
    kernel, stride = OPS[f"{case}/kernel"], tuple(int(s) for s in OPS[f"{case}/stride"])
    conv = SameConv3d(kernel.shape[3], kernel.shape[4], kernel.shape[:3], stride)
    with torch.no_grad():
        conv.weight.copy_(tensor(kernel.transpose(4, 3, 0, 1, 2)))
    output = conv(channels_first(OPS[f"{case}/input"]))
    assert max_error(output, np.moveaxis(OPS[f"{case}/output"], -1, 1)) < TOLERANCE


@pytest.mark.parametrize("case", cases("conv1d_"))
def test_same_conv1d_matches_tensorflow_conv2d_k_by_1(case):
    kernel, stride = OPS[f"{case}/kernel"], int(OPS[f"{case}/stride"])
    conv = SameConv1d(kernel.shape[2], kernel.shape[3], kernel.shape[0], stride)
    with torch.no_grad():
        conv.weight.copy_(tensor(kernel[:, 0].transpose(2, 1, 0)))
    output = conv(channels_first(OPS[f"{case}/input"][:, :, 0]))
    assert max_error(output, np.moveaxis(OPS[f"{case}/output"][:, :, 0], -1, 1)) < TOLERANCE


@pytest.mark.parametrize("case", cases("maxpool3d_"))
def test_video_stream_max_pool_matches_tensorflow(case):
    # VideoStream.forward's pooling: SAME padding with -inf, then a 1x3x3 max-pool of stride 1x2x2
    x = pad_same(channels_first(OPS[f"{case}/input"]), (1, 3, 3), (1, 2, 2), value=-math.inf)
    output = F.max_pool3d(x, (1, 3, 3), (1, 2, 2))
    assert max_error(output, np.moveaxis(OPS[f"{case}/output"], -1, 1)) == 0.0


def test_audio_stream_max_pool_matches_tensorflow_valid_pool():
    output = F.max_pool1d(channels_first(OPS["maxpool1d_k4_s4_valid/input"][:, :, 0]), 4, 4)
    assert max_error(output, np.moveaxis(OPS["maxpool1d_k4_s4_valid/output"][:, :, 0], -1, 1)) == 0.0


def test_shift_net_batch_norm_matches_tensorflow_inference():
    case = "batchnorm_shift"
    bn = BatchNormNoScale(OPS[f"{case}/beta"].size, MultisensoryConfig()).eval()
    bn.running_mean.copy_(tensor(OPS[f"{case}/moving_mean"]))
    bn.running_var.copy_(tensor(OPS[f"{case}/moving_variance"]))
    with torch.no_grad():
        bn.bias.copy_(tensor(OPS[f"{case}/beta"]))
    output = bn(channels_first(OPS[f"{case}/input"]))
    assert bn.eps == 1e-3
    assert max_error(output, np.moveaxis(OPS[f"{case}/output"], -1, 1)) < TOLERANCE


def test_unet_batch_norm_matches_tensorflow_fused_inference():
    case = "batchnorm_unet"
    channels = OPS[f"{case}/beta"].size
    bn = EncoderLayer(3, channels, (1, 2), UNetConfig()).bn.eval()
    bn.running_mean.copy_(tensor(OPS[f"{case}/moving_mean"]))
    bn.running_var.copy_(tensor(OPS[f"{case}/moving_variance"]))
    with torch.no_grad():
        bn.weight.copy_(tensor(OPS[f"{case}/gamma"]))
        bn.bias.copy_(tensor(OPS[f"{case}/beta"]))
    output = bn(channels_first(OPS[f"{case}/input"]))
    assert bn.eps == 1e-5
    assert max_error(output, np.moveaxis(OPS[f"{case}/output"], -1, 1)) < TOLERANCE


@pytest.mark.parametrize("case", cases("conv2d_k4_"))
def test_unet_encoder_conv_matches_tensorflow(case):
    kernel, stride = OPS[f"{case}/kernel"], tuple(int(s) for s in OPS[f"{case}/stride"])
    layer = EncoderLayer(kernel.shape[2], kernel.shape[3], stride, UNetConfig())
    layer.bn = nn.Identity()  # the conv alone; the BN is compared above
    with torch.no_grad():
        layer.conv.weight.copy_(tensor(kernel.transpose(3, 2, 0, 1)))
    output = layer(channels_first(OPS[f"{case}/input"]))
    assert max_error(output, np.moveaxis(OPS[f"{case}/output"], -1, 1)) < TOLERANCE


@pytest.mark.parametrize("case", cases("deconv_k4_"))
def test_unet_transposed_conv_matches_tensorflow(case):
    kernel, stride = OPS[f"{case}/kernel"], tuple(int(s) for s in OPS[f"{case}/stride"])
    bias = tensor(OPS[f"{case}/bias"]) if f"{case}/bias" in OPS else None
    output = transposed_conv_same(channels_first(OPS[f"{case}/input"]), tensor(kernel.transpose(3, 2, 0, 1)), bias, stride)
    assert max_error(output, np.moveaxis(OPS[f"{case}/output"], -1, 1)) < TOLERANCE


@pytest.mark.parametrize("case", cases("resize_bilinear_"))
def test_time_resize_matches_tensorflow_1_bilinear(case):
    x = OPS[f"{case}/input"][:, :, 0]  # (B, T', C)
    expected = OPS[f"{case}/output"][:, :, 0]
    output = resize_time_tf1(channels_first(x), expected.shape[1])
    assert max_error(output, np.moveaxis(expected, -1, 1)) < TOLERANCE


def test_stft_matches_tensorflow():
    spectrum = stft(tensor(OPS["stft/input"]), SpectralConfig())
    assert max_error(spectrum, OPS["stft/output"]) < TOLERANCE


def test_inverse_stft_matches_tensorflow():
    waveform = overlap_add(tensor(OPS["inverse_stft/input"]), SpectralConfig())
    assert max_error(waveform, OPS["inverse_stft/output"]) < TOLERANCE


# ---------------------------------------------------------------------------------- the fractional pool

def fractional_cases() -> tuple[dict[str, dict[str, np.ndarray]], np.ndarray, np.ndarray]:
    with np.load(FIXTURES / "fractional_pool.npz") as data:
        grouped: dict[str, dict[str, np.ndarray]] = {}
        for key in data.files:
            case, _, field = key.partition("/")
            if case != "grid":
                grouped.setdefault(case, {})[field] = data[key]
        return grouped, data["grid/lengths"], data["grid/boundaries"]


FRACTIONAL, GRID_LENGTHS, GRID_BOUNDARIES = fractional_cases()


@pytest.mark.parametrize("case", sorted(FRACTIONAL))
def test_fractional_pool_matches_tensorflow_on_our_models_lengths(case):
    fixture = FRACTIONAL[case]
    steps, video_steps = (int(n) for n in fixture["lengths"])
    assert tf_pool_boundaries(steps, video_steps) == tuple(int(b) for b in fixture["row_pooling_sequence"])
    output = fractional_max_pool_tf(channels_first(fixture["input"][:, :, 0]), video_steps)
    assert max_error(output, np.moveaxis(fixture["output"][:, :, 0], -1, 1)) == 0.0


def test_the_models_lengths_are_covered():
    lengths = {tuple(int(n) for n in case["lengths"]) for case in FRACTIONAL.values()}
    assert {(86, 32), (86, 8), (44, 16), (45, 8)} <= lengths  # paper clip, its low-fps stage, separation, synth


def test_pool_boundaries_match_tensorflow_on_a_grid_of_lengths_and_seeds():
    position = 0
    mismatches = []
    for steps, out_steps, seed, seed2 in GRID_LENGTHS.tolist():
        expected = tuple(GRID_BOUNDARIES[position : position + out_steps + 1].tolist())
        position += out_steps + 1
        if seed == 1 and seed2 == 2:
            assert tf_output_steps(steps, out_steps) == out_steps
        if tf_pool_boundaries(steps, out_steps, seed, seed2) != expected:
            mismatches.append((steps, out_steps, seed, seed2))
    assert position == len(GRID_BOUNDARIES) and len(GRID_LENGTHS) > 900
    assert mismatches == []


def test_impossible_pools_are_refused():
    with pytest.raises(ValueError, match=r"cannot be pooled to 32 steps"):
        fractional_max_pool_tf(torch.zeros(1, 2, 32), 32)


# ------------------------------------------------------------------------------------------------- the official networks

OFFICIAL = FIXTURES / "official"
#: Widths of the TF-written checkpoints of every official name (scripts/make_tf_fixtures.py SMALL_WIDTH / SMALL_UNET_WIDTH).
SMALL = {"width": 2, "unet_width": 1}


def official_prefix(network: str) -> Path:
    [index] = (OFFICIAL / network).glob("net.tf-*.index")
    return index.with_suffix("")


def official_values(network: str) -> dict[str, np.ndarray]:
    with np.load(OFFICIAL / network / "values.npz") as data:
        return {key: data[key] for key in data.files}


def tf_to_torch(array: np.ndarray, ours: torch.Tensor) -> np.ndarray:
    """The documented transposes, written here apart from avlib.weights: by our tensor's rank."""
    if ours.dim() == 5:
        return array.transpose(4, 3, 0, 1, 2)
    if ours.dim() == 3:
        return array[:, 0].transpose(2, 1, 0)
    if ours.dim() == 4:  # conv2d [kh, kw, C_in, C_out] and conv2d_transpose [kh, kw, C_out, C_in] alike
        return array.transpose(3, 2, 0, 1)
    if ours.dim() == 2:  # joint/logits [1, 1, 1, C, 1] -> Linear [1, C]
        return array.reshape(-1, 1).T
    return array


@pytest.fixture(scope="module")
def tables() -> dict:
    import json

    return json.loads((OFFICIAL / "tables.json").read_text())


@pytest.mark.parametrize("network", ["shift", "cam", "sep-full", "unet-pit"])
def test_full_size_variable_table_from_tensorflow_fits_our_models(network, tables):
    from avlib.weights import _classify, official_model, official_names, official_variable_table

    table = tables[network]
    ours = official_variable_table(network)["variables"]
    assert set(ours) <= set(table)
    wrong = {name: (table[name]["shape"], shape) for name, shape in ours.items() if table[name]["shape"] != shape}
    assert not wrong
    with torch.device("meta"):
        net = official_model(network)
    names = official_names(network, net)
    names.expect(net.state_dict())
    missing, misshapen, unused, training = _classify(
        {name: tuple(v["shape"]) for name, v in table.items()}, {name: v["dtype"] for name, v in table.items()}, names)
    assert (missing, misshapen, unused) == ([], [], [])
    assert set(training) == set(table) - set(ours)
    slot = "Momentum" if network in ("shift", "cam") else "Adam"
    assert any(name.endswith(f"/{slot}") for name in training) and any("renorm_stddev_weight" in n for n in training)
    expected_parameters = {"shift": 36_058_433, "cam": 36_058_433, "sep-full": 113_696_325, "unet-pit": 67_014_148}
    assert sum(math.prod(shape) for shape in ours.values()) == expected_parameters[network]


@pytest.mark.parametrize("network", ["shift", "cam", "sep-full", "unet-pit"])
def test_import_of_a_tf_written_checkpoint_gives_the_tf_arrays(network):
    from avlib.weights import import_official, official_names

    values = official_values(network)
    result = import_official(official_prefix(network), network, **SMALL)
    state = result.model.state_dict()
    names = official_names(network, result.model)
    compared = set()
    for name, target in names.targets.items():
        ours = state[target.key]
        np.testing.assert_array_equal(ours.numpy(), tf_to_torch(values[name], ours), err_msg=name)
        compared.add(target.key)
    assert {key for key in state if not key.endswith("num_batches_tracked")} == compared
    reader = TFCheckpoint(official_prefix(network))
    assert set(result.training_state) == set(reader.keys()) - set(names.targets)
    assert result.global_step == int(official_prefix(network).name.rsplit("-", 1)[1])
    assert not result.model.training


@pytest.mark.slow
@pytest.mark.parametrize("network", ["shift", "cam", "sep-full", "unet-pit"])
def test_import_of_a_full_size_tf_written_checkpoint_gives_the_tf_arrays(network):
    """The same at the official shapes, on checkpoints of 144-455 MB that TF wrote with
    ``scripts/make_tf_fixtures.py --full-size DIR`` (too large to commit): runs where AVLIB_TF_FULL=DIR is set."""
    import os

    from avlib.weights import import_official, official_names

    root = os.environ.get("AVLIB_TF_FULL")
    if not root:
        pytest.skip("set AVLIB_TF_FULL to a folder written by scripts/make_tf_fixtures.py --full-size")
    folder = Path(root) / "official" / network
    [index] = folder.glob("net.tf-*.index")
    with np.load(folder / "values.npz") as data:
        values = {key: data[key] for key in data.files}
    result = import_official(index.with_suffix(""), network)
    state = result.model.state_dict()
    names = official_names(network, result.model)
    for name, target in names.targets.items():
        np.testing.assert_array_equal(state[target.key].numpy(), tf_to_torch(values[name], state[target.key]), err_msg=name)
    assert {key for key in state if not key.endswith("num_batches_tracked")} == {t.key for t in names.targets.values()}
    assert set(result.training_state) == set(TFCheckpoint(index.with_suffix("")).keys()) - set(names.targets)


def test_the_imported_networks_run_as_the_release_does():
    from avlib.weights import import_official

    cam = import_official(official_prefix("cam"), "cam", **SMALL).model
    sep = import_official(official_prefix("sep-full"), "sep-full", **SMALL).model
    assert cam.config.tf_pool and cam.config.cam and not cam.config.bn_scale
    assert sep.config.spectrogram_channel == 0 and sep.config.multisensory.bn_scale and sep.config.multisensory.tf_pool
    assert sep.features.net.fusion.bn.weight is not None and cam.fusion.bn.weight is None
    with torch.no_grad():
        frames, audio = torch.rand(1, 3, 8, 32, 32) * 2 - 1, torch.rand(1, 2, 4096) * 0.2 - 0.1
        assert torch.isfinite(cam(frames, audio)["logit"]).all()
        pit = import_official(official_prefix("unet-pit"), "unet-pit", **SMALL).model
        audio = torch.rand(1, 2, 44144) * 0.2 - 0.1
        changed = audio.clone()
        changed[:, 1] = torch.rand(44144) * 0.2 - 0.1
        first, second = pit(None, audio), pit(None, changed)
    for key in first:  # the spectrogram is channel 0's, as in the official graph
        assert torch.equal(first[key], second[key]), key


def test_tf_pool_fuses_over_tensorflows_boundaries():
    from avlib.models.multisensory import Fusion

    torch.manual_seed(0)
    config = MultisensoryConfig(width=4, tf_pool=True)
    fusion_tf = Fusion(config).eval()
    fusion_adaptive = Fusion(MultisensoryConfig(width=4)).eval()
    fusion_adaptive.load_state_dict(fusion_tf.state_dict())
    visual, features = torch.randn(2, 4, 16, 3, 3), torch.randn(2, 16, 44)  # the separation window: 44 -> 16
    with torch.no_grad():
        expected = fusion_adaptive(visual, fractional_max_pool_tf(features, 16))
        assert torch.equal(fusion_tf(visual, features), expected)
        assert not torch.equal(fusion_adaptive(visual, features), expected)


def test_scaled_batch_norm_matches_tensorflow_inference_with_gamma():
    config = MultisensoryConfig(bn_scale=True, bn_eps=1e-5)
    bn = BatchNormNoScale(6, config).eval()
    with torch.no_grad():
        for ours, theirs in ((bn.weight, "gamma"), (bn.bias, "beta"), (bn.running_mean, "moving_mean"),
                             (bn.running_var, "moving_variance")):
            ours.copy_(tensor(OPS[f"batchnorm_unet/{theirs}"]))
        output = bn(channels_first(OPS["batchnorm_unet/input"]))
    assert max_error(output, np.moveaxis(OPS["batchnorm_unet/output"], -1, 1)) < TOLERANCE
    assert "weight" not in dict(BatchNormNoScale(6, MultisensoryConfig()).named_parameters())


def test_wrong_width_is_refused_naming_the_misshapen_variables():
    from avlib.weights import OfficialImportError, import_official

    with pytest.raises(OfficialImportError, match=r"misshapen \d+: .*im/conv1/weights \[5, 7, 7, 3, 2\], expected \[5, 7, 7, 3, 4\]"):
        import_official(official_prefix("shift"), "shift", width=4)


def test_another_network_is_refused_naming_what_is_missing_and_unused():
    from avlib.weights import OfficialImportError, import_official

    with pytest.raises(OfficialImportError, match=r"missing \d+: .*im/conv1/BatchNorm/gamma"):
        import_official(official_prefix("unet-pit"), "sep-full", **SMALL)
    with pytest.raises(OfficialImportError, match=r"unused \d+: .*im/conv1/BatchNorm/beta"):
        import_official(official_prefix("sep-full"), "unet-pit", **SMALL)
    with pytest.raises(OfficialImportError, match=r"missing \d+: .*gamma"):
        import_official(official_prefix("shift"), "sep-full", **SMALL)
    with pytest.raises(OfficialImportError, match=r"missing \d+: .*; unused \d+: .*kernel"):
        import_official(FIXTURES / "object" / "ckpt-1", "shift", **SMALL)


def test_truncated_or_absent_official_checkpoint_is_refused(tmp_path):
    from avlib.weights import import_official

    prefix = official_prefix("cam")
    for path in prefix.parent.glob(prefix.name + ".*"):
        shutil.copy(path, tmp_path / path.name)
    data = tmp_path / f"{prefix.name}.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    with pytest.raises(TFCheckpointError, match=prefix.name):
        import_official(tmp_path / prefix.name, "cam", **SMALL)
    with pytest.raises(TFCheckpointError, match="nothing"):
        import_official(tmp_path / "nothing", "cam")
    with pytest.raises(ValueError, match="unknown official network 'sep'"):
        import_official(prefix, "sep")


def test_command_line_writes_a_checkpoint_the_loaders_take(tmp_path, capsys):
    from avlib.localize import shift_config_of
    from avlib.models import multisensory, unet
    from avlib.separate import inference_settings
    from avlib.weights import main

    out = tmp_path / "weights" / "sep-full.pt"
    assert main(["import-official", str(official_prefix("sep-full")), "--model", "sep-full", "--out", str(out),
                 "--width", "2", "--unet-width", "1"]) == 0
    assert "wrote" in capsys.readouterr().out
    model = unet.from_checkpoint(out)
    assert model.config.spectrogram_channel == 0 and model.config.multisensory.tf_pool
    assert inference_settings(out) == {"window_multiple": 4, "phase": "predicted"}
    cam_out = tmp_path / "cam.pt"
    assert main(["import-official", str(official_prefix("cam")), "--model", "cam", "--out", str(cam_out), "--width", "2"]) == 0
    net = multisensory.cam_network(cam_out)
    assert net.config.tf_pool and net.config.cam
    shift = shift_config_of(cam_out)
    assert (shift.num_frames, shift.num_samples, shift.crop) == (125, 87588, 224)
    with pytest.raises(SystemExit) as helped:
        main(["import-official", "--help"])
    assert helped.value.code == 0 and "--model" in capsys.readouterr().out


@pytest.mark.slow  # a fresh interpreter importing torch: about 25 s on a loaded 2-core machine
def test_command_line_refuses_in_one_line_with_status_2(tmp_path):
    import subprocess
    import sys

    bad = subprocess.run([sys.executable, "-m", "avlib.weights", "import-official", str(official_prefix("shift")), "--model",
                          "unet-pit", "--out", str(tmp_path / "x.pt")], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1, bad.stderr
    assert "missing" in bad.stderr and "unused" in bad.stderr and "gen/bg/biases" in bad.stderr
    assert not (tmp_path / "x.pt").exists()


def test_registry_names_each_network_its_paper_numbers_and_inputs():
    from avlib.weights import MODELS, REGISTRY

    assert tuple(REGISTRY) == MODELS
    for key, network in REGISTRY.items():
        assert network.paper() and network.global_step in (650000, 675000, 160000)
        assert network.sha256 is None or all(len(d) == 64 for d in network.sha256.values())
        assert network.inputs["sample_rate"] == 21000
    assert REGISTRY["cam"].prefix == "nets/cam/net.tf-675000"


# ------------------------------------------------------------------------------------------------- forward passes against TF

@pytest.fixture(scope="module")
def forward() -> dict[str, np.ndarray]:
    with np.load(OFFICIAL / "forward.npz") as data:
        return {key: data[key] for key in data.files}


def relative_error(ours: torch.Tensor, theirs: np.ndarray) -> float:
    """max |ours - theirs| / max(1, max |theirs|): absolute for outputs of order 1, relative above."""
    return max_error(ours, theirs) / max(1.0, float(np.abs(theirs).max()))


@pytest.mark.parametrize("network", ["shift", "cam"])
def test_imported_network_computes_what_tensorflow_computes(network, forward):
    from avlib.models.multisensory import normalize_frames
    from avlib.weights import import_official

    net = import_official(official_prefix(network), network, **SMALL).model
    frames = normalize_frames(tensor(forward["frames"]))
    audio = tensor(forward["samples"]).transpose(1, 2)
    with torch.no_grad():
        output = net(frames, audio)
        cam = net.cam(output["features"]["conv5_2"])
    assert relative_error(output["logit"], forward[f"{network}/logits"][:, 0]) < TOLERANCE
    assert relative_error(output["features"]["conv5_2"], np.moveaxis(forward[f"{network}/last_conv"], -1, 1)) < TOLERANCE
    assert relative_error(cam, forward[f"{network}/cam"][..., 0]) < TOLERANCE


@pytest.mark.parametrize("network", ["sep-full", "unet-pit"])
def test_imported_separation_model_computes_what_tensorflow_computes(network, forward):
    """The whole model from the waveform: TF's STFT of channel 0 and the U-Net's heads (stored at every 4th frame
    and 8th bin); the STFT's own float32 differences (docs/weights.md) carry into the heads at about 2e-5."""
    from avlib.models.multisensory import normalize_frames
    from avlib.spectral import analyze
    from avlib.weights import import_official

    model = import_official(official_prefix(network), network, **SMALL).model
    audio = tensor(forward["sep/samples"]).transpose(1, 2)
    frames = normalize_frames(tensor(forward["sep/frames"])) if network == "sep-full" else None
    grid = (slice(None), slice(None, None, 4), slice(None, None, 8))
    tf_input = forward["sep/spectrogram"]  # (B, T, F, 2): normalised log-magnitude, phase / pi, of channel 0
    ours = analyze(audio[:, 0], model.config.spectral, num_frames=128)
    assert relative_error(ours.magnitude[grid], tf_input[..., 0]) < TOLERANCE
    assert relative_error(ours.phase[grid], tf_input[..., 1]) < 1e-4  # phase / pi of bins down to -100 dB
    with torch.no_grad():
        if network == "sep-full":
            for k, scale in enumerate(model.video_features(frames, audio)):
                assert relative_error(scale, np.moveaxis(forward[f"{network}/scale{k}"], -1, 1)) < TOLERANCE, k
        output = model(frames, audio)
    for source, head in (("on_screen", "fg"), ("off_screen", "bg")):
        for index, part in enumerate(("magnitude", "phase")):
            theirs = forward[f"{network}/{head}"][..., index]
            assert relative_error(output[f"{source}_{part}"][grid], theirs) < 1e-4, (source, part)
