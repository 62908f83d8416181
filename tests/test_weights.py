"""The TF checkpoint reader and our layers against TensorFlow's own outputs, without TensorFlow.

The fixtures under tests/fixtures/tf/ were written by TensorFlow with ``scripts/make_tf_fixtures.py``
(its version in VERSION.json). Layouts: TF activations are channels last, ours channels first; kernels
are transposed as the import will (3-D ``[kt, kh, kw, C_in, C_out]`` -> ``[C_out, C_in, kt, kh, kw]``,
1-D audio conv2d ``[k, 1, C_in, C_out]`` -> ``[C_out, C_in, k]``, conv2d ``[kh, kw, C_in, C_out]`` ->
``[C_out, C_in, kh, kw]``, transposed conv ``[kh, kw, C_out, C_in]`` -> ``[C_in, C_out, kh, kw]``).
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
