"""Writes the TensorFlow fixtures under tests/fixtures/tf/, which the tests read without TensorFlow.

Run it where TensorFlow is installed (a scratch environment outside the repository is enough)::

    python3 -m venv /tmp/tfenv && /tmp/tfenv/bin/pip install tensorflow-cpu==2.21.0 numpy
    /tmp/tfenv/bin/python scripts/make_tf_fixtures.py [--out tests/fixtures/tf]

What it writes (docs/weights.md describes each file):

- ``checkpoint/net.tf-7.{index,data-00000-of-00001}``: a genuine V2 checkpoint written by
  ``tf.compat.v1.train.Saver`` with variables named as in the official networks (``im/conv1/weights``,
  ``.../BatchNorm/moving_mean``, batch-renorm state, ``global_step``, ``Momentum`` and ``Adam`` slots) at tiny
  shapes, plus one variable of each other dtype; ``checkpoint/values.npz`` holds the same arrays.
- ``object/ckpt-1.*``: an object-based checkpoint of ``tf.train.Checkpoint`` (it holds a string tensor,
  the object graph); ``object/values.npz`` its variables' arrays.
- ``ops.npz``: inputs, weights and outputs of TF's own ops for every layer kind the import relies on.
- ``official/<network>/net.tf-<step>.*`` for shift, cam, sep-full and unet-pit: checkpoints written by TF with
  every official variable name (a port of the official code's variable structure, channels scaled to width 2, the U-Net's to 1;
  optimiser slots made by TF's own optimisers), random values; ``values.npz`` holds them.
  ``official/tables.json``: every variable's name, shape and dtype of the four networks at full width.
  ``official/forward.npz``: TF's test-time forward pass of those checkpoints' values (a TF port of the official
  forward, written from reading it) on random inputs: logits, CAM and last conv of shift and cam; the feature maps,
  channel-0 spectrogram and both heads of sep-full and unet-pit.
- ``fractional_pool.npz``: ``tf.nn.fractional_max_pool`` as the official ``shift_net.merge`` runs it at
  test time, for the (audio steps, video steps) pairs our models produce, with its pooling boundaries.

Every array is drawn from a NumPy generator with a fixed seed, so a rerun writes the same values.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

SEED = 17
#: (audio feature steps L, video steps T) at fusion: the paper's 4.2 s clip (full rate and the 7.49 fps stage),
#: the separation window (2.135 s) and ``sep_video.py``'s 4x window, the synth and smoke profiles' clips.
FRACTIONAL_POOL_LENGTHS = {
    "paper_shift": (86, 32), "paper_shift_lowfps": (86, 8), "paper_separation": (44, 16),
    "paper_separation_x4": (170, 62), "synth_shift": (45, 8), "synth_separation": (23, 4),
    "smoke_shift": (16, 4), "smoke_separation": (17, 4),
}


def official_variables(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Variables named as in the official checkpoints, tiny shapes (docs/paper.md §2, §7.3)."""
    def normal(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    def positive(*shape):
        return rng.uniform(0.5, 2.0, shape).astype(np.float32)

    variables: dict[str, np.ndarray] = {"global_step": np.array(7, dtype=np.int64)}
    # shift net: slim conv + BatchNorm without gamma; a block's conv_b with biases; its renorm post-sum BN
    for scope, shape in (("sf/conv1_1", (5, 1, 2, 4)), ("im/conv1", (3, 3, 3, 3, 4)), ("im/conv2_1_1", (3, 3, 3, 4, 4))):
        variables[f"{scope}/weights"] = normal(*shape)
        variables[f"{scope}/weights/Momentum"] = normal(*shape)
        channels = shape[-1]
        variables[f"{scope}/BatchNorm/beta"] = normal(channels)
        variables[f"{scope}/BatchNorm/moving_mean"] = normal(channels)
        variables[f"{scope}/BatchNorm/moving_variance"] = positive(channels)
    variables["im/conv2_1_2/weights"] = normal(3, 3, 3, 4, 4)
    variables["im/conv2_1_2/biases"] = normal(4)
    for name in ("beta", "moving_mean", "renorm_mean", "renorm_stddev"):
        variables[f"im/conv2_1_bn/{name}"] = normal(4)
    variables["im/conv2_1_bn/moving_variance"] = positive(4)
    for name in ("renorm_mean_weight", "renorm_stddev_weight"):
        variables[f"im/conv2_1_bn/{name}"] = positive()
    variables["joint/logits/weights"] = normal(1, 1, 1, 8, 1)
    variables["joint/logits/biases"] = normal(1)
    # separation U-Net: BatchNorm with gamma, a transposed conv [kh, kw, C_out, C_in], Adam slots
    variables["gen/conv1/weights"] = normal(4, 4, 2, 3)
    variables["gen/conv1/BatchNorm/gamma"] = positive(3)
    variables["gen/deconv1/weights"] = normal(4, 4, 5, 3)
    variables["gen/fg/biases"] = normal(2)
    for slot in ("Adam", "Adam_1"):
        variables[f"gen/deconv1/weights/{slot}"] = normal(4, 4, 5, 3)
    variables["beta1_power"] = np.array(0.9**7, dtype=np.float32)
    variables["beta2_power"] = np.array(0.999**7, dtype=np.float32)
    # one of each other dtype the reader decodes, and an empty tensor
    variables["dtypes/float64"] = rng.standard_normal((2, 3))
    variables["dtypes/float16"] = rng.standard_normal(5).astype(np.float16)
    variables["dtypes/bfloat16"] = (normal(3).view(np.uint32) & np.uint32(0xFFFF0000)).view(np.float32)  # bfloat16-exact
    variables["dtypes/int32"] = rng.integers(-1000, 1000, (3, 2)).astype(np.int32)
    variables["dtypes/int8"] = rng.integers(-100, 100, 4).astype(np.int8)
    variables["dtypes/uint8"] = rng.integers(0, 255, 4).astype(np.uint8)
    variables["dtypes/int16"] = rng.integers(-1000, 1000, 4).astype(np.int16)
    variables["dtypes/bool"] = rng.integers(0, 2, 6).astype(bool)
    variables["dtypes/complex64"] = (rng.standard_normal(3) + 1j * rng.standard_normal(3)).astype(np.complex64)
    variables["dtypes/empty"] = np.zeros((0, 3), dtype=np.float32)
    return variables


def write_checkpoint(out: Path, rng: np.random.Generator) -> None:
    """A V1-style (name-based) V2-format checkpoint, as TF 1.8's ``tf.train.Saver`` wrote the official ones."""
    folder = out / "checkpoint"
    folder.mkdir(parents=True)
    values = official_variables(rng)
    graph = tf.Graph()
    with graph.as_default():
        for name, value in values.items():
            dtype = tf.bfloat16 if name == "dtypes/bfloat16" else None  # the .npz holds its exact float32 values
            tf.compat.v1.get_variable(name, initializer=tf.constant(value, dtype=dtype))
        saver = tf.compat.v1.train.Saver(write_version=tf.compat.v1.train.SaverDef.V2)
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            saver.save(session, str(folder / "net.tf"), global_step=7, write_meta_graph=False, write_state=False)
            stored = {v.op.name: session.run(tf.cast(v, tf.float32) if v.dtype.base_dtype == tf.bfloat16 else v)
                      for v in tf.compat.v1.global_variables()}
    for name, value in values.items():
        np.testing.assert_array_equal(stored[name], value)
    np.savez(folder / "values.npz", **values)
    reader = tf.train.load_checkpoint(str(folder / "net.tf-7"))
    assert set(reader.get_variable_to_shape_map()) == set(values), "TF's reader sees other variables"


def write_object_checkpoint(out: Path, rng: np.random.Generator) -> None:
    """A TF2 object-based checkpoint: its keys are object paths and it stores a DT_STRING object graph."""
    folder = out / "object"
    folder.mkdir(parents=True)
    kernel = rng.standard_normal((3, 2)).astype(np.float32)
    step = np.array(3, dtype=np.int64)
    checkpoint = tf.train.Checkpoint(kernel=tf.Variable(kernel), step=tf.Variable(step))
    prefix = checkpoint.write(str(folder / "ckpt-1"))
    reader = tf.train.load_checkpoint(prefix)
    values = {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
              if reader.get_variable_to_dtype_map()[name] != tf.string}
    np.savez(folder / "values.npz", **values)
    (folder / "string_keys.json").write_text(json.dumps(sorted(
        name for name, dtype in reader.get_variable_to_dtype_map().items() if dtype == tf.string)) + "\n")


def op_fixtures(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """TF's outputs for each layer kind, keyed ``<case>/input``, ``<case>/kernel``, ``<case>/output`` ..."""
    cases: dict[str, np.ndarray] = {}

    def normal(*shape, scale=1.0):
        return (scale * rng.standard_normal(shape)).astype(np.float32)

    # 3-D convs, NDHWC input, kernel [k_t, k_h, k_w, C_in, C_out]: im/conv1, block3 convs, shortcuts, conv5_1
    for name, size, kernel, stride in (
        ("conv3d_k577_s2_odd", (7, 9, 11), (5, 7, 7), (2, 2, 2)),
        ("conv3d_k577_s2_even", (8, 10, 12), (5, 7, 7), (2, 2, 2)),
        ("conv3d_k333_s1", (5, 6, 7), (3, 3, 3), (1, 1, 1)),
        ("conv3d_k333_s2_odd", (5, 7, 9), (3, 3, 3), (2, 2, 2)),
        ("conv3d_k333_s2_even", (6, 8, 10), (3, 3, 3), (2, 2, 2)),
        ("conv3d_k333_s122_odd", (5, 7, 7), (3, 3, 3), (1, 2, 2)),
        ("conv3d_k111_s2_odd", (5, 7, 9), (1, 1, 1), (2, 2, 2)),
    ):
        x = normal(2, *size, 3)
        w = normal(*kernel, 3, 4, scale=1 / math.sqrt(3 * math.prod(kernel)))  # unit-variance outputs, as He init
        cases[f"{name}/input"], cases[f"{name}/kernel"] = x, w
        cases[f"{name}/stride"] = np.array(stride)
        cases[f"{name}/output"] = tf.nn.conv3d(x, w, [1, *stride, 1], "SAME").numpy()

    # 1-D audio convs as slim conv2d on (B, N, 1, C), kernel [k, 1, C_in, C_out]: sf/conv1_1, block2, conv5_1
    for name, length, kernel, stride in (
        ("conv1d_k65_s4_odd", 203, 65, 4), ("conv1d_k65_s4_even", 202, 65, 4),
        ("conv1d_k15_s4_odd", 37, 15, 4), ("conv1d_k15_s4_even", 38, 15, 4),
        ("conv1d_k1_s4_odd", 37, 1, 4), ("conv1d_k3_s1_odd", 33, 3, 1),
    ):
        x = normal(2, length, 1, 3)
        w = normal(kernel, 1, 3, 4, scale=1 / math.sqrt(3 * kernel))
        cases[f"{name}/input"], cases[f"{name}/kernel"] = x, w
        cases[f"{name}/stride"] = np.array(stride)
        cases[f"{name}/output"] = tf.nn.conv2d(x, w, [1, stride, 1, 1], "SAME").numpy()

    # pooling of the streams: video 1x3x3 stride 1,2,2 SAME; audio slim max_pool2d [4, 1] stride 4 (VALID)
    for name, size in (("maxpool3d_k133_s122_odd", (3, 9, 11)), ("maxpool3d_k133_s122_even", (3, 8, 10))):
        x = normal(2, *size, 3)
        cases[f"{name}/input"] = x
        cases[f"{name}/output"] = tf.nn.max_pool3d(x, [1, 1, 3, 3, 1], [1, 1, 2, 2, 1], "SAME").numpy()
    x = normal(2, 23, 1, 3)
    cases["maxpool1d_k4_s4_valid/input"] = x
    cases["maxpool1d_k4_s4_valid/output"] = tf.nn.max_pool2d(x, [1, 4, 1, 1], [1, 4, 1, 1], "VALID").numpy()

    # batch norm in inference: shift net (no gamma, eps 1e-3, 5-D) and U-Net (gamma, eps 1e-5, fused 4-D)
    x = normal(2, 3, 4, 5, 6)
    mean, variance, beta = normal(6), rng.uniform(0.1, 3.0, 6).astype(np.float32), normal(6)
    cases.update({"batchnorm_shift/input": x, "batchnorm_shift/moving_mean": mean,
                  "batchnorm_shift/moving_variance": variance, "batchnorm_shift/beta": beta})
    cases["batchnorm_shift/output"] = tf.nn.batch_normalization(x, mean, variance, beta, None, 1e-3).numpy()
    x = normal(2, 4, 5, 6)
    mean, variance, beta, gamma = normal(6), rng.uniform(0.1, 3.0, 6).astype(np.float32), normal(6), normal(6)
    cases.update({"batchnorm_unet/input": x, "batchnorm_unet/moving_mean": mean, "batchnorm_unet/moving_variance": variance,
                  "batchnorm_unet/beta": beta, "batchnorm_unet/gamma": gamma})
    cases["batchnorm_unet/output"] = tf.compat.v1.nn.fused_batch_norm(
        x, gamma, beta, mean, variance, epsilon=1e-5, is_training=False)[0].numpy()

    # U-Net encoder convs: 4x4 SAME, stride (1, 2) and (2, 2), kernel [4, 4, C_in, C_out]
    for name, size, stride in (("conv2d_k4_s12_odd", (7, 9), (1, 2)), ("conv2d_k4_s12_even", (8, 10), (1, 2)),
                               ("conv2d_k4_s22_odd", (7, 9), (2, 2)), ("conv2d_k4_s22_even", (8, 10), (2, 2))):
        x = normal(2, *size, 3)
        w = normal(4, 4, 3, 5, scale=1 / math.sqrt(3 * 16))
        cases[f"{name}/input"], cases[f"{name}/kernel"] = x, w
        cases[f"{name}/stride"] = np.array(stride)
        cases[f"{name}/output"] = tf.nn.conv2d(x, w, [1, *stride, 1], "SAME").numpy()

    # U-Net decoder: conv2d_transpose SAME, kernel [4, 4, C_out, C_in], output = input x stride; heads with a bias
    for name, size, stride, bias in (("deconv_k4_s22_odd", (3, 5), (2, 2), False), ("deconv_k4_s22_even", (4, 6), (2, 2), False),
                                     ("deconv_k4_s12_odd", (3, 5), (1, 2), False), ("deconv_k4_s12_even_bias", (4, 6), (1, 2), True)):
        x = normal(2, *size, 5)
        w = normal(4, 4, 3, 5, scale=1 / math.sqrt(5 * 16))
        out_shape = [2, size[0] * stride[0], size[1] * stride[1], 3]
        y = tf.nn.conv2d_transpose(x, w, out_shape, [1, *stride, 1], "SAME")
        cases[f"{name}/input"], cases[f"{name}/kernel"] = x, w
        cases[f"{name}/stride"] = np.array(stride)
        if bias:
            b = normal(3)
            cases[f"{name}/bias"] = b
            y = tf.nn.bias_add(y, b)
        cases[f"{name}/output"] = y.numpy()

    # merge_level's resize in time: tf.image.resize_images of TF 1.x, bilinear, no corner alignment or half pixels
    for steps, length in ((16, 64), (16, 32), (8, 16), (5, 13), (7, 3), (4, 4)):
        name = f"resize_bilinear_{steps}_to_{length}"
        x = normal(2, steps, 1, 3)
        cases[f"{name}/input"] = x
        cases[f"{name}/output"] = tf.compat.v1.image.resize_bilinear(
            x, [length, 1], align_corners=False, half_pixel_centers=False).numpy()

    # the separation STFT and its inverse (tf.contrib.signal in TF 1.8 is tf.signal now), at the paper's sizes
    waveform = rng.uniform(-0.3, 0.3, (2, 1344 + 336 * 6 + 101)).astype(np.float32)
    spectrum = tf.signal.stft(waveform, frame_length=1344, frame_step=336, fft_length=2048, pad_end=False)
    cases["stft/input"] = waveform
    cases["stft/output"] = spectrum.numpy()
    cases["inverse_stft/input"] = spectrum.numpy()
    cases["inverse_stft/output"] = tf.signal.inverse_stft(spectrum, frame_length=1344, frame_step=336, fft_length=2048).numpy()
    return cases


def fractional_pool_fixtures(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """``shift_net.merge`` at test time: ratio (L - 1) / T on the time axis of (B, L, 1, C), seeds 1 and 2."""
    cases: dict[str, np.ndarray] = {}
    for name, (steps, video_steps) in FRACTIONAL_POOL_LENGTHS.items():
        x = rng.standard_normal((2, steps, 1, 3)).astype(np.float32)
        ratio = float(steps - 1) / video_steps
        runs = [tf.compat.v1.nn.fractional_max_pool(
            x, [1.0, ratio, 1.0, 1.0], pseudo_random=True, overlapping=False, deterministic=True, seed=1, seed2=2)
            for _ in range(2)]
        output, rows, columns = (t.numpy() for t in runs[0])
        assert np.array_equal(rows, runs[1][1].numpy()), "the deterministic pool changed between calls"
        assert output.shape[1] == video_steps and rows[0] == 0 and rows[-1] == steps, (name, output.shape, rows)
        assert np.array_equal(columns, [0, 1]), columns
        cases[f"{name}/input"] = x
        cases[f"{name}/output"] = output
        cases[f"{name}/row_pooling_sequence"] = rows
        cases[f"{name}/lengths"] = np.array([steps, video_steps])
    return cases


#: Other seeds than the release's, to check a reimplementation of TF's generator beyond one draw.
GRID_SEEDS = ((1, 2), (7, 12345678901))


def fractional_pool_grid() -> dict[str, np.ndarray]:
    """Boundaries for a grid of (L, T) pairs and two seed pairs, as flat arrays: ``lengths`` (n, 4) holds
    L, T, seed, seed2; ``boundaries`` the n sequences of T + 1 boundaries one after another."""
    lengths, boundaries = [], []
    for seed, seed2 in GRID_SEEDS:
        for steps in range(3, 260, 7):
            for video_steps in (1, 2, 3, 4, 5, 7, 8, 11, 16, 23, 32, 47, 62, 64, 100):
                if video_steps >= steps - 1:
                    continue
                x = np.zeros((1, steps, 1, 1), dtype=np.float32)
                _, rows, _ = tf.compat.v1.nn.fractional_max_pool(
                    x, [1.0, float(steps - 1) / video_steps, 1.0, 1.0], pseudo_random=True, overlapping=False,
                    deterministic=True, seed=seed, seed2=seed2)
                rows = rows.numpy()
                lengths.append((steps, len(rows) - 1, seed, seed2))
                boundaries.extend(rows)
    return {"grid/lengths": np.array(lengths, dtype=np.int64), "grid/boundaries": np.array(boundaries, dtype=np.int64)}


# ----------------------------------------------------------------------------------------------- the official networks
# A port of only the variable-creating structure of the official code (src/shift_net.py ``make_net``, ``block2``,
# ``block3``, ``merge``; src/sourcesep.py ``make_net``; slim's conv/batch-norm naming), written from reading it, with
# every channel count scaled by width / 64. Variables are made with tf.compat.v1.get_variable in a graph; the
# optimiser slots and Adam's beta powers are made by TF's own optimisers (Momentum for shift and cam, Adam for the
# separation models), so their names are TF's.

NETWORKS = ("shift", "cam", "sep-full", "unet-pit")
#: Widths of the committed checkpoints (the full ones are 144-455 MB with their slots): every official name, the
#: feature network's channels / 32, the U-Net's / 64.
SMALL_WIDTH = 2
SMALL_UNET_WIDTH = 1
RENORM_STATE = (("renorm_mean", True), ("renorm_mean_weight", False), ("renorm_stddev", True), ("renorm_stddev_weight", False))


class VariableSpec:
    """The official variables in creation order: name -> (shape, kind); kind: weight, moving, renorm."""

    def __init__(self, bn_scale: bool):
        self.bn_scale = bn_scale
        self.variables: dict[str, tuple[tuple[int, ...], str]] = {}

    def add(self, name, shape, kind="weight"):
        assert name not in self.variables, name
        self.variables[name] = (tuple(int(n) for n in shape), kind)

    def batch_norm(self, scope, channels, renorm, scale=None):
        self.add(f"{scope}/beta", [channels])
        if self.bn_scale if scale is None else scale:
            self.add(f"{scope}/gamma", [channels])
        self.add(f"{scope}/moving_mean", [channels], "moving")
        self.add(f"{scope}/moving_variance", [channels], "moving")
        if renorm:  # TF 1.8's BatchNormalization(renorm=True) state
            for name, vector in RENORM_STATE:
                self.add(f"{scope}/{name}", [channels] if vector else [], "renorm")

    def conv(self, scope, kernel, c_in, c_out, normalizer=True, renorm=False, scale=None):
        self.add(f"{scope}/weights", [*kernel, c_in, c_out])
        if normalizer:  # slim: a normaliser replaces the biases
            self.batch_norm(f"{scope}/BatchNorm", c_out, renorm, scale)
        else:
            self.add(f"{scope}/biases", [c_out])


def shift_net_spec(spec: VariableSpec, width: int) -> None:
    """shift_net.make_net: conv normalisers have renorm=False; the post-sum ``_bn`` of blocks and merge have renorm=True."""
    c = lambda n: n * width // 64  # noqa: E731

    def block(scope, c_in, nf, kernel, stride_is_one):
        if not stride_is_one and c_in != nf or len(kernel) == 3 and c_in != nf:  # block2: strided; block3: also channels
            spec.conv(f"{scope}_short", [1] * len(kernel), c_in, nf)
        spec.conv(f"{scope}_1", kernel, c_in, nf)
        spec.conv(f"{scope}_2", kernel, nf, nf, normalizer=False)
        spec.batch_norm(f"{scope}_bn", nf, renorm=True)

    spec.conv("sf/conv1_1", [65, 1], 2, c(64))
    block("sf/conv2_1", c(64), c(128), [15, 1], False)
    block("sf/conv3_1", c(128), c(128), [15, 1], False)
    block("sf/conv4_1", c(128), c(256), [15, 1], False)
    spec.conv("im/conv1", [5, 7, 7], 3, c(64))
    block("im/conv2_1", c(64), c(64), [3, 3, 3], True)
    block("im/conv2_2", c(64), c(64), [3, 3, 3], False)
    spec.conv("sf/conv5_1", [3, 1], c(256), c(128))  # [3, shape(sf_net, 2)] with width 1
    spec.conv("im/merge1", [1, 1, 1], c(64) + c(128), c(512))
    spec.conv("im/merge2", [1, 1, 1], c(512), c(128), normalizer=False)
    spec.batch_norm("im/merge_block_bn", c(128), renorm=True)
    for scope, c_in, nf, stride_is_one in (("im/conv3_1", 128, 128, True), ("im/conv3_2", 128, 128, True),
                                           ("im/conv4_1", 128, 256, False), ("im/conv4_2", 256, 256, True),
                                           ("im/conv5_1", 256, 512, False), ("im/conv5_2", 512, 512, True)):
        block(scope, c(c_in), c(nf), [3, 3, 3], stride_is_one)
    spec.conv("joint/logits", [1, 1, 1], c(512), 1, normalizer=False)


def unet_spec(spec: VariableSpec, width: int, video_channels) -> None:
    """sourcesep.make_net's ``gen/``: unet_arg_scope (gamma, renorm=True) on every conv and deconv but the heads."""
    u = lambda n: n * width // 64  # noqa: E731
    extra = dict(zip(("conv3", "conv4", "conv5"), video_channels or (0, 0, 0)))
    skips, c_in = {}, 2
    for scope, nf in (("conv1", 64), ("conv2", 128), ("conv3", 256), ("conv4", 512), ("conv5", 512), ("conv6", 512),
                      ("conv7", 512), ("conv8", 512), ("conv9", 512)):
        spec.conv(f"gen/{scope}", [4, 4], c_in, u(nf), renorm=True, scale=True)
        c_in = skips[scope] = u(nf) + extra.get(scope, 0)
    previous = 0
    for scope, nf, skip in (("deconv1", 512, None), ("deconv2", 512, "conv8"), ("deconv3", 512, "conv7"),
                            ("deconv4", 512, "conv6"), ("deconv5", 512, "conv5"), ("deconv6", 256, "conv4"),
                            ("deconv7", 128, "conv3"), ("deconv8", 64, "conv2")):
        c_in = skips["conv9"] if skip is None else previous + skips[skip]
        spec.add(f"gen/{scope}/weights", [4, 4, u(nf), c_in])  # conv2d_transpose: [kh, kw, C_out, C_in]
        spec.batch_norm(f"gen/{scope}/BatchNorm", u(nf), renorm=True, scale=True)
        previous = u(nf)
    for head in ("fg", "bg"):
        spec.add(f"gen/{head}/weights", [4, 4, 2, previous + skips["conv1"]])
        spec.add(f"gen/{head}/biases", [2])


def network_spec(network: str, width: int, unet_width: int) -> tuple[VariableSpec, str]:
    """The variables of one official network and its optimiser (shift_params: momentum; sep_params: adam)."""
    if network in ("shift", "cam"):  # cam_v1 changes conv5_1's stride only: the same variables
        spec = VariableSpec(bn_scale=False)
        shift_net_spec(spec, width)
        return spec, "momentum"
    spec = VariableSpec(bn_scale=True)  # sep_params.base: bn_scale=True, for the shift net inside
    video = None
    if network == "sep-full":
        shift_net_spec(spec, width)
        video = (64 * width // 64, 128 * width // 64, 512 * width // 64)  # conv2_2, conv3_2, conv5_2
    unet_spec(spec, unet_width, video)
    return spec, "adam"


def build_network_graph(network: str, width: int, unet_width: int, rng: np.random.Generator | None):
    """A graph with the network's variables (random values from ``rng``, else zeros, not materialised), global_step and
    the optimiser's slots. Returns (graph, values): values holds what each non-optimiser variable is set to."""
    spec, optimizer = network_spec(network, width, unet_width)
    graph = tf.Graph()
    values: dict[str, np.ndarray] = {}
    with graph.as_default():
        step = tf.compat.v1.get_variable("global_step", [], tf.int64, tf.compat.v1.zeros_initializer(), trainable=False)
        trainable = []
        for name, (shape, kind) in spec.variables.items():
            if rng is None:
                initializer = tf.compat.v1.zeros_initializer()
            else:
                if kind == "renorm" and not shape or name.endswith("moving_variance") or name.endswith("gamma"):
                    value = rng.uniform(0.5, 2.0, shape)
                elif name.endswith("/weights"):  # unit-variance outputs (He-like), so a forward pass stays in range
                    fan_in = math.prod(shape[:-1]) if "/deconv" not in name and not name.startswith(("gen/fg", "gen/bg")) \
                        else shape[0] * shape[1] * shape[3]
                    value = rng.standard_normal(shape) * math.sqrt(2.0 / fan_in)
                else:
                    value = rng.standard_normal(shape) * 0.3
                values[name] = value.astype(np.float32)
                initializer = tf.compat.v1.constant_initializer(values[name])
            variable = tf.compat.v1.get_variable(name, shape, tf.float32, initializer, trainable=kind == "weight")
            if kind == "weight":
                trainable.append(variable)
        loss = tf.add_n([tf.reduce_sum(tf.square(v)) for v in trainable])
        opt = (tf.compat.v1.train.MomentumOptimizer(1e-2, 0.9) if optimizer == "momentum"
               else tf.compat.v1.train.AdamOptimizer(1e-4))
        opt.minimize(loss, global_step=step)
    return graph, values


def official_tables() -> dict:
    """Every variable (name, shape, dtype) of the 4 official networks at full width, from graphs built with TF."""
    tables = {}
    for network in NETWORKS:
        graph, _ = build_network_graph(network, 64, 64, None)
        with graph.as_default():
            tables[network] = {v.op.name: {"shape": v.shape.as_list(), "dtype": v.dtype.base_dtype.name}
                               for v in tf.compat.v1.global_variables()}
    return tables


def write_official_checkpoints(out: Path, width: int = SMALL_WIDTH, unet_width: int = SMALL_UNET_WIDTH) -> None:
    """``official/<network>/net.tf-<step>``: TF-written checkpoints with every official variable name at width 2 (and
    U-Net width 1; ``--full-size``: the official 64), random values; ``values.npz`` the values of the mapped and renorm
    variables."""
    steps = {"shift": 650000, "cam": 675000, "sep-full": 160000, "unet-pit": 160000}
    for index, network in enumerate(NETWORKS):
        folder = out / "official" / network
        folder.mkdir(parents=True)
        rng = np.random.default_rng([SEED, 100 + index])
        graph, values = build_network_graph(network, width, unet_width, rng)
        with graph.as_default(), tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            step = [v for v in tf.compat.v1.global_variables() if v.op.name == "global_step"][0]
            step.load(steps[network], session)
            saver = tf.compat.v1.train.Saver(write_version=tf.compat.v1.train.SaverDef.V2)
            saver.save(session, str(folder / "net.tf"), global_step=steps[network], write_meta_graph=False, write_state=False)
        reader = tf.train.load_checkpoint(str(folder / f"net.tf-{steps[network]}"))
        for name, value in values.items():
            np.testing.assert_array_equal(reader.get_tensor(name), value)
        np.savez_compressed(folder / "values.npz", **values)


#: Inputs of the forward-pass fixtures: 16 frames of 48 x 48 and 11 264 stereo samples (11 audio steps pooled to 4);
#: for the separation models one window, 63 frames of 32 x 32 and 44 144 samples (44 steps pooled to 16).
FORWARD_FRAMES, FORWARD_SIZE, FORWARD_SAMPLES, SEPARATION_SIZE = 16, 48, 11264, 32
#: The separation maps (128 x 1024) are stored at every 4th frame and 8th bin.
KEPT_STEP = (4, 8)


def tf_shift_forward(values: dict, frames: np.ndarray, samples: np.ndarray, width: int, cam: bool, eps: float = 1e-3):
    """shift_net.make_net at test time (train=False) in TF ops, over ``values``: (logits, cam, last_conv).

    frames (B, T, H, W, 3) uint8, samples (B, N, 2) float32. Written from reading the official code.
    """
    def bn(x, scope, relu):
        x = tf.nn.batch_normalization(x, values[f"{scope}/moving_mean"], values[f"{scope}/moving_variance"],
                                      values[f"{scope}/beta"], values.get(f"{scope}/gamma"), eps)
        return tf.nn.relu(x) if relu else x

    def conv(x, scope, stride, normalizer=True, relu=True):
        kernel = values[f"{scope}/weights"]
        op = tf.nn.conv3d if kernel.ndim == 5 else tf.nn.conv2d
        y = op(x, kernel, [1, *stride, 1], "SAME")
        if normalizer:
            return bn(y, f"{scope}/BatchNorm", relu)
        y = y + values[f"{scope}/biases"]
        return tf.nn.relu(y) if relu else y

    def block(x, scope, nf, stride):
        dims = x.shape.rank - 2
        if f"{scope}_short/weights" in values:
            short = conv(x, f"{scope}_short", stride, relu=False)
        else:  # a 1 x 1 max-pool with the stride: every s-th element
            short = x[(slice(None), *(slice(None, None, s) for s in stride))] if any(s != 1 for s in stride) else x
        y = conv(x, f"{scope}_1", stride)
        y = conv(y, f"{scope}_2", [1] * dims, normalizer=False, relu=False)
        return bn(short + y, f"{scope}_bn", relu=True)

    c = lambda n: n * width // 64  # noqa: E731
    sf = tf.sign(samples) * (tf.math.log(1 + 255.0 * tf.abs(samples)) / math.log(256.0))
    sf = tf.expand_dims(sf, 2)  # (B, N, 1, 2)
    sf = conv(sf, "sf/conv1_1", [4, 4])
    sf = tf.nn.max_pool2d(sf, [4, 1], [4, 1], "VALID")
    for scope in ("sf/conv2_1", "sf/conv3_1", "sf/conv4_1"):
        sf = block(sf, scope, None, [4, 1])
    im = -1.0 + (2.0 / 255) * tf.cast(frames, tf.float32)
    im = conv(im, "im/conv1", [2, 2, 2])
    im = tf.nn.max_pool3d(im, [1, 1, 3, 3, 1], [1, 1, 2, 2, 1], "SAME")
    im = block(im, "im/conv2_1", None, [1, 1, 1])
    im = block(im, "im/conv2_2", None, [2, 2, 2])
    scales = [im]
    steps, video_steps = sf.shape[1], im.shape[1]
    sf = tf.compat.v1.nn.fractional_max_pool(sf, [1.0, float(steps - 1) / video_steps, 1.0, 1.0], pseudo_random=True,
                                             overlapping=False, deterministic=True, seed=1, seed2=2)[0]
    sf = conv(sf, "sf/conv5_1", [1, 1])[:, :, 0]  # (B, T, C)
    sf = tf.tile(sf[:, :, None, None, :], [1, 1, im.shape[2], im.shape[3], 1])
    net = tf.concat([im, sf], 4)
    short = tf.concat([net[..., :c(64)], net[..., -c(64):]], 4)
    net = conv(net, "im/merge1", [1, 1, 1])
    net = conv(net, "im/merge2", [1, 1, 1], normalizer=False, relu=False)
    net = bn(net + short, "im/merge_block_bn", relu=True)
    for scope, stride in (("im/conv3_1", [1, 1, 1]), ("im/conv3_2", [1, 1, 1]), ("im/conv4_1", [2, 2, 2]),
                          ("im/conv4_2", [1, 1, 1]), ("im/conv5_1", [1, 1, 1] if cam else [1, 2, 2]), ("im/conv5_2", [1, 1, 1])):
        net = block(net, scope, None, stride)
        if scope in ("im/conv3_2", "im/conv5_2"):
            scales.append(net)
    last_conv = net
    pooled = tf.reduce_mean(net, [1, 2, 3], keepdims=True)
    logits = conv(pooled, "joint/logits", [1, 1, 1], normalizer=False, relu=False)[:, 0, 0, 0, :]
    cam_map = conv(last_conv, "joint/logits", [1, 1, 1], normalizer=False, relu=False)
    return logits.numpy(), cam_map.numpy(), last_conv.numpy(), [scale.numpy() for scale in scales]


def tf_separation_forward(values: dict, samples: np.ndarray, scales=None):
    """sourcesep.make_net at test time in TF ops over ``values``: (spectrogram input (B, T, F, 2), fg, bg), the heads
    after tanh (B, T, F, 2) [log-magnitude, phase], normalised. samples (B, N, 2); scales: the shift net's three maps."""
    spectrum = tf.signal.stft(samples[:, :, 0], 1344, 336, pad_end=False)[:, :128]  # channel 0, spec_len 128
    magnitude = 20.0 * tf.math.log(tf.maximum(1e-5, tf.abs(spectrum))) / math.log(10.0)
    net = tf.stack([2.0 * (magnitude + 100.0) / 180.0 - 1.0, tf.math.angle(spectrum) / math.pi], 3)[:, :, :1024]
    spectrogram = net
    acts = []

    def bn(x, scope):
        return tf.nn.batch_normalization(x, values[f"{scope}/moving_mean"], values[f"{scope}/moving_variance"],
                                         values[f"{scope}/beta"], values[f"{scope}/gamma"], 1e-5)

    def merge_level(net, n):
        if scales is None:
            return net
        video = tf.reduce_mean(scales[n], [2, 3], keepdims=True)[:, :, 0]  # (B, T', 1, C)
        if video.shape[1] != net.shape[1]:
            video = tf.compat.v1.image.resize_bilinear(video, [net.shape[1], 1], align_corners=False, half_pixel_centers=False)
        net = tf.concat([net, tf.tile(video, [1, 1, net.shape[2], 1])], 3)
        acts[-1] = net
        return net

    for scope, stride in (("conv1", (1, 2)), ("conv2", (1, 2)), ("conv3", (2, 2)), ("conv4", (2, 2)), ("conv5", (2, 2)),
                          ("conv6", (2, 2)), ("conv7", (2, 2)), ("conv8", (2, 2)), ("conv9", (2, 2))):
        net = bn(tf.nn.conv2d(net, values[f"gen/{scope}/weights"], [1, *stride, 1], "SAME"), f"gen/{scope}/BatchNorm")
        acts.append(net)
        net = 0.6 * net + 0.4 * tf.abs(net)  # lrelu(0.2) as tfutil writes it
        net = merge_level(net, {"conv3": 0, "conv4": 1, "conv5": 2}[scope]) if scope in ("conv3", "conv4", "conv5") else net

    def deconv(x, scope, stride, pop=True, concat=True, head=False):
        skip = acts.pop() if pop else acts[-1]
        if concat:
            x = tf.concat([x, skip], 3)
        x = tf.nn.relu(x)
        kernel = values[f"gen/{scope}/weights"]
        shape = [x.shape[0], x.shape[1] * stride[0], x.shape[2] * stride[1], kernel.shape[2]]
        y = tf.nn.conv2d_transpose(x, kernel, shape, [1, *stride, 1], "SAME")
        return y + values[f"gen/{scope}/biases"] if head else bn(y, f"gen/{scope}/BatchNorm")

    net = deconv(net, "deconv1", (2, 2), concat=False)
    for scope, stride in (("deconv2", (2, 2)), ("deconv3", (2, 2)), ("deconv4", (2, 2)), ("deconv5", (2, 2)),
                          ("deconv6", (2, 2)), ("deconv7", (2, 2)), ("deconv8", (1, 2))):
        net = deconv(net, scope, stride)
    fg = tf.tanh(deconv(net, "fg", (1, 2), pop=False, head=True))
    bg = tf.tanh(deconv(net, "bg", (1, 2), pop=False, head=True))
    return spectrogram.numpy(), fg.numpy(), bg.numpy()


def forward_fixtures(out: Path) -> None:
    """``official/forward.npz``: TF's forward pass of the committed shift and cam checkpoints' values on random
    inputs (logits, CAM, last conv), which the imported networks must reproduce."""
    rng = np.random.default_rng([SEED, 200])
    frames = rng.integers(0, 256, (2, FORWARD_FRAMES, FORWARD_SIZE, FORWARD_SIZE, 3)).astype(np.uint8)
    samples = rng.uniform(-0.5, 0.5, (2, FORWARD_SAMPLES, 2)).astype(np.float32)
    cases = {"frames": frames, "samples": samples}
    for network in ("shift", "cam"):
        with np.load(out / "official" / network / "values.npz") as data:
            values = {key: data[key] for key in data.files}
        logits, cam_map, last_conv, _ = tf_shift_forward(values, frames, samples, SMALL_WIDTH, cam=network == "cam")
        cases.update({f"{network}/logits": logits, f"{network}/cam": cam_map, f"{network}/last_conv": last_conv})
    # the separation models on one 2.135 s window: 63 frames (48 x 48 here), 44 144 samples
    sep_frames = rng.integers(0, 256, (1, 63, SEPARATION_SIZE, SEPARATION_SIZE, 3)).astype(np.uint8)
    sep_samples = rng.uniform(-0.3, 0.3, (1, 44144, 2)).astype(np.float32)
    cases.update({"sep/frames": sep_frames, "sep/samples": sep_samples})
    for network in ("sep-full", "unet-pit"):
        with np.load(out / "official" / network / "values.npz") as data:
            values = {key: data[key] for key in data.files}
        scales = None
        if network == "sep-full":
            _, _, _, scales = tf_shift_forward(values, sep_frames, sep_samples, SMALL_WIDTH, cam=False)
            cases.update({f"{network}/scale{k}": scale for k, scale in enumerate(scales)})
        spectrogram, fg, bg = tf_separation_forward(values, sep_samples, scales)
        grid = (slice(None), slice(None, None, KEPT_STEP[0]), slice(None, None, KEPT_STEP[1]))  # 1/32 of the map: 130 KB
        cases.update({"sep/spectrogram": spectrogram[grid], f"{network}/fg": fg[grid], f"{network}/bg": bg[grid]})
    np.savez_compressed(out / "official" / "forward.npz", **cases)


def extra_op_fixtures(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """1-D convs (TF conv2d k x 1) SAME at stride 2, odd and even lengths (drawn from their own generator)."""
    cases = {}
    for name, length, kernel in (("conv1d_k15_s2_odd", 37, 15), ("conv1d_k15_s2_even", 38, 15),
                                 ("conv1d_k4_s2_odd", 21, 4), ("conv1d_k4_s2_even", 22, 4)):
        x = rng.standard_normal((2, length, 1, 3)).astype(np.float32)
        w = (rng.standard_normal((kernel, 1, 3, 4)) / math.sqrt(3 * kernel)).astype(np.float32)
        cases[f"{name}/input"], cases[f"{name}/kernel"] = x, w
        cases[f"{name}/stride"] = np.array(2)
        cases[f"{name}/output"] = tf.nn.conv2d(x, w, [1, 2, 1, 1], "SAME").numpy()
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "tf")
    parser.add_argument("--full-size", type=Path, metavar="DIR",
                        help="instead: write the four official checkpoints at the official widths (144-455 MB each) under "
                             "DIR/official/, for tests/test_weights.py with AVLIB_TF_FULL=DIR; never committed")
    args = parser.parse_args()
    if args.full_size:
        write_official_checkpoints(args.full_size, width=64, unet_width=64)
        print(f"wrote full-size official checkpoints under {args.full_size / 'official'}")
        return
    if args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)
    rng = np.random.default_rng(SEED)
    write_checkpoint(args.out, rng)
    write_object_checkpoint(args.out, rng)
    np.savez_compressed(args.out / "ops.npz", **op_fixtures(rng), **extra_op_fixtures(np.random.default_rng([SEED, 1])))
    np.savez_compressed(args.out / "fractional_pool.npz", **fractional_pool_fixtures(rng), **fractional_pool_grid())
    write_official_checkpoints(args.out)
    forward_fixtures(args.out)
    (args.out / "official" / "tables.json").write_text(json.dumps(official_tables(), indent=0, sort_keys=True) + "\n")
    (args.out / "VERSION.json").write_text(json.dumps(
        {"tensorflow": tf.__version__, "numpy": np.__version__, "seed": SEED}, indent=1) + "\n")
    total = sum(path.stat().st_size for path in args.out.rglob("*") if path.is_file())
    print(f"wrote {args.out} ({total / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
