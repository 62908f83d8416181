"""The official TensorFlow networks of Owens & Efros in avlib: registry, import, command line (docs/weights.md).

The authors released four trained TF 1.8 networks (``multisensory-nets.zip``, docs/paper.md §9): the
self-supervised features (``shift``), the CAM network (``cam``), the on/off-screen separation model
(``sep-full``) and the audio-only u-net PIT baseline (``unet-pit``). :func:`import_official` reads one
checkpoint without TensorFlow (:mod:`avlib.tfbundle`), maps every variable to our modules, transposes the
kernels to PyTorch's layouts and returns (and optionally writes) an avlib checkpoint that
:func:`avlib.models.multisensory.from_checkpoint`, :func:`avlib.models.unet.from_checkpoint`,
:func:`avlib.localize.localize` and :func:`avlib.separate.separate` take, with the network's input settings.

Exactness: the networks are built with ``MultisensoryConfig(tf_pool=True)`` (TF's test-time fractional
pool), gammas in the separation model's feature network (``bn_scale=True``) and the spectrogram of channel 0
(``SeparationConfig(spectrogram_channel=0)``), as the release runs them.

Every variable of the checkpoint is accounted for: each variable our modules need must be present with the
right shape; besides them only training state is accepted and skipped, by name: ``global_step``, optimiser
slots of a mapped trainable variable (``X/Momentum``, ``X/Adam``, ``X/Adam_1``), ``beta1_power``,
``beta2_power``, and the batch-renormalisation state (``renorm_mean``, ``renorm_mean_weight``,
``renorm_stddev``, ``renorm_stddev_weight``; later TF: ``moving_stddev``) of the batch norms the official code
builds with ``renorm=True``. Anything missing, misshapen or left over is named and the import refuses.

Kernel layouts, TF -> PyTorch: 1-D audio convs (TF conv2d) ``[k, 1, C_in, C_out]`` -> ``[C_out, C_in, k]``;
3-D ``[kt, kh, kw, C_in, C_out]`` -> ``[C_out, C_in, kt, kh, kw]``; 2-D ``[kh, kw, C_in, C_out]`` ->
``[C_out, C_in, kh, kw]``; transposed 2-D ``[kh, kw, C_out, C_in]`` -> ``[C_in, C_out, kh, kw]``; the logits'
1x1x1 conv ``[1, 1, 1, C, 1]`` -> ``nn.Linear`` ``[1, C]``.

Command line::

    python -m avlib.weights import-official nets/sep/full/net.tf-160000 --model sep-full --out sep_full.pt
    python -m avlib.weights list
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from avlib.checkpoint import CheckpointError
from avlib.models.multisensory import ConvBN, MultisensoryConfig, MultisensoryNet, ResidualBlock
from avlib.models.unet import DecoderLayer, EncoderLayer, SeparationConfig, SeparationNet, UNetConfig
from avlib.report.claims import paper_entry

MODELS = ("shift", "cam", "sep-full", "unet-pit")
#: The official code's widths (``shift_net.make_net``, ``sourcesep.make_net``).
OFFICIAL_WIDTH = 64
OPTIMIZER_SLOTS = ("Momentum", "Adam", "Adam_1")
GLOBAL_TRAINING_STATE = ("global_step", "beta1_power", "beta2_power")
#: Batch renormalisation's training state: TF 1.8's names, then later TF's (docs/weights.md).
RENORM_VECTORS = ("renorm_mean", "renorm_stddev", "moving_stddev")
RENORM_SCALARS = ("renorm_mean_weight", "renorm_stddev_weight")
DOWNLOAD = ("multisensory-nets.zip from download_models.sh of github.com/andrewowens/multisensory; the maintainer's "
            "current address: andrewowens.com/multisensory/multisensory-nets.zip (docs/paper.md §9)")


class OfficialImportError(CheckpointError):
    """A TF checkpoint that is not the official network asked for: variables missing, misshapen or unused."""


@dataclass(frozen=True)
class OfficialNetwork:
    """One released network: where it is in ``multisensory-nets.zip``, what it serves, what it takes.

    ``sha256`` maps each file of the checkpoint to its digest; None: unknown (the zip was not available
    when this registry was written; :func:`sha256_of` computes them for a download).
    """

    key: str
    prefix: str
    task: str
    inputs: dict
    paper_keys: tuple[str, ...]
    optimizer: str
    sha256: dict | None = None
    note: str = ""

    @property
    def global_step(self) -> int:
        return int(self.prefix.rsplit("-", 1)[1])

    def paper(self) -> list:
        """The paper's numbers and claims this network goes with (:mod:`avlib.report.claims`)."""
        return [paper_entry(key) for key in self.paper_keys]


_SHIFT_INPUTS = {"frames": 125, "fps": 29.97, "seconds": 4.2, "samples": 87588, "sample_rate": 21000, "channels": 2,
                 "size": 256, "crop": 224}
_SEP_INPUTS = {"frames": 63, "fps": 29.97, "seconds": 2.135, "samples": 44144, "sample_rate": 21000, "channels": 2,
               "size": 256, "crop": 224, "stft": "1344 / 336 / 2048, 128 x 1024 of channel 0",
               "rms": "each channel normalised to RMS 0.1 * sqrt(2) before the graph (sep_video.py)"}

REGISTRY: dict[str, OfficialNetwork] = {
    "shift": OfficialNetwork(
        "shift", "nets/shift/net.tf-650000", "self-supervised audio-visual features (alignment task, shift_v1)",
        _SHIFT_INPUTS, ("alignment_accuracy", "pretraining_iterations"), "momentum"),
    "cam": OfficialNetwork(
        "cam", "nets/cam/net.tf-675000", "sound-source localisation by class activation map (cam_v1)",
        _SHIFT_INPUTS, ("cam_speech", "cam_non_speech", "cam_over_time"), "momentum"),
    "sep-full": OfficialNetwork(
        "sep-full", "nets/sep/full/net.tf-160000", "on/off-screen source separation (sep_params.full)",
        _SEP_INPUTS, ("audio_visual_models", "unet_pit_vs_full"), "adam"),
    "unet-pit": OfficialNetwork(
        "unet-pit", "nets/sep/unet-pit/net.tf-160000", "audio-only separation baseline, u-net with PIT loss",
        {key: value for key, value in _SEP_INPUTS.items() if key not in ("frames", "fps", "size", "crop")},
        ("audio_only_pit", "unet_pit_vs_full"), "adam",
        note="path from sep_video.py and a user's log loading it (docs/paper.md §9); its two outputs come in an "
             "arbitrary order (PIT)"),
}


def sha256_of(prefix: str | Path) -> dict[str, str]:
    """SHA-256 of every file of a checkpoint (``PREFIX.index``, ``PREFIX.data-*``), by file name."""
    import hashlib

    prefix = Path(prefix)
    digests = {}
    for path in sorted(prefix.parent.glob(prefix.name + ".*")):
        if path.suffix == ".meta" or not path.is_file():
            continue
        digests[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


# ----------------------------------------------------------------------------------------------- the networks


def official_model(model: str, width: int = OFFICIAL_WIDTH, unet_width: int = OFFICIAL_WIDTH) -> nn.Module:
    """Our network in the official configuration of ``model`` (one of :data:`MODELS`), freshly initialised.

    ``width`` and ``unet_width`` scale the channels (64 in the release; the tests use small TF checkpoints).
    """
    _check_model(model)
    if model in ("shift", "cam"):
        return MultisensoryNet(MultisensoryConfig(width=width, cam=model == "cam", tf_pool=True))
    inputs = REGISTRY["sep-full"].inputs
    unet = UNetConfig(width=unet_width)
    if model == "unet-pit":
        return SeparationNet(SeparationConfig(unet=unet, video="none", spectrogram_channel=0))
    features = MultisensoryConfig(num_frames=inputs["frames"], num_samples=inputs["samples"], width=width,
                                  bn_scale=True, tf_pool=True)
    return SeparationNet(SeparationConfig(unet=unet, multisensory=features, spectrogram_channel=0))


def _check_model(model: str) -> None:
    if model not in MODELS:
        raise ValueError(f"unknown official network {model!r}; choose one of {', '.join(MODELS)}")


@dataclass(frozen=True)
class Target:
    """Where one TF variable goes: our state-dict key and its layout (see the module docstring)."""

    key: str
    layout: str
    trainable: bool


def _conv1d(value: np.ndarray) -> np.ndarray:
    return value[:, 0].transpose(2, 1, 0)


def _conv3d(value: np.ndarray) -> np.ndarray:
    return value.transpose(4, 3, 0, 1, 2)


def _conv2d(value: np.ndarray) -> np.ndarray:  # also the transposed conv: [kh, kw, C_out, C_in] -> [C_in, C_out, kh, kw]
    return value.transpose(3, 2, 0, 1)


def _linear(value: np.ndarray) -> np.ndarray:
    return value.reshape(-1, 1).T


#: layout -> (TF array to ours, our shape to TF's)
LAYOUTS: dict[str, tuple[Callable[[np.ndarray], np.ndarray], Callable[[tuple], tuple]]] = {
    "conv1d": (_conv1d, lambda s: (s[2], 1, s[1], s[0])),
    "conv3d": (_conv3d, lambda s: (*s[2:], s[1], s[0])),
    "conv2d": (_conv2d, lambda s: (s[2], s[3], s[1], s[0])),
    "deconv2d": (_conv2d, lambda s: (s[2], s[3], s[1], s[0])),
    "linear": (_linear, lambda s: (1, 1, 1, s[1], s[0])),
    "vector": (lambda value: value, lambda s: tuple(s)),
}


class _Names:
    """Collects the TF name -> :class:`Target` map and the batch norms built with ``renorm=True``."""

    def __init__(self) -> None:
        self.targets: dict[str, Target] = {}
        self.renorm: dict[str, int] = {}  # scope -> channels
        self.expected_shapes: dict[str, tuple[int, ...]] = {}  # TF name -> TF shape, filled by expect

    def expect(self, state: dict[str, torch.Tensor]) -> None:
        """The TF shape of every target, from our state's shapes."""
        self.expected_shapes = {name: LAYOUTS[t.layout][1](tuple(state[t.key].shape)) for name, t in self.targets.items()}

    def add(self, name: str, key: str, layout: str, trainable: bool = True) -> None:
        self.targets[name] = Target(key, layout, trainable)

    def batch_norm(self, scope: str, key: str, module: nn.Module, renorm: bool = False) -> None:
        """slim's batch norm: ``beta`` (bias), ``gamma`` (weight) when scaled, the moving averages."""
        self.add(f"{scope}/beta", f"{key}.bias", "vector")
        if getattr(module, "weight", None) is not None:
            self.add(f"{scope}/gamma", f"{key}.weight", "vector")
        self.add(f"{scope}/moving_mean", f"{key}.running_mean", "vector", trainable=False)
        self.add(f"{scope}/moving_variance", f"{key}.running_var", "vector", trainable=False)
        if renorm:
            self.renorm[scope] = module.running_mean.numel()

    def conv_bn(self, scope: str, key: str, module: ConvBN, layout: str) -> None:
        """A slim conv with a normaliser: ``weights`` without biases, then ``BatchNorm`` (plain, renorm=False)."""
        self.add(f"{scope}/weights", f"{key}.conv.weight", layout)
        self.batch_norm(f"{scope}/BatchNorm", f"{key}.bn", module.bn)

    def block(self, scope: str, key: str, module: ResidualBlock, layout: str) -> None:
        """``block2`` / ``block3``: ``_1`` conv + BN, ``_2`` conv with biases, ``_short`` projection, renorm ``_bn``."""
        self.conv_bn(f"{scope}_1", f"{key}.conv_a", module.conv_a, layout)
        self.add(f"{scope}_2/weights", f"{key}.conv_b.weight", layout)
        self.add(f"{scope}_2/biases", f"{key}.conv_b.bias", "vector")
        if module.projection is not None:
            self.conv_bn(f"{scope}_short", f"{key}.projection", module.projection, layout)
        self.batch_norm(f"{scope}_bn", f"{key}.bn", module.bn, renorm=True)


def _multisensory_names(names: _Names, net: MultisensoryNet, key: str) -> None:
    """``shift_net.make_net``: ``sf/`` audio stream, ``im/`` video stream, fusion and trunk, ``joint/logits``."""
    audio = net.audio
    names.conv_bn("sf/conv1_1", f"{key}audio.conv1_1", audio.conv1_1, "conv1d")
    for name in ("conv2_1", "conv3_1", "conv4_1"):
        names.block(f"sf/{name}", f"{key}audio.{name}", getattr(audio, name), "conv1d")
    names.conv_bn("im/conv1", f"{key}video.conv1", net.video.conv1, "conv3d")
    for name in ("conv2_1", "conv2_2"):
        names.block(f"im/{name}", f"{key}video.{name}", getattr(net.video, name), "conv3d")
    fusion = net.fusion
    names.conv_bn("sf/conv5_1", f"{key}fusion.audio_conv5_1", fusion.audio_conv5_1, "conv1d")  # a [3, 1] conv2d
    names.conv_bn("im/merge1", f"{key}fusion.merge1", fusion.merge1, "conv3d")
    names.add("im/merge2/weights", f"{key}fusion.merge2.weight", "conv3d")
    names.add("im/merge2/biases", f"{key}fusion.merge2.bias", "vector")
    names.batch_norm("im/merge_block_bn", f"{key}fusion.bn", fusion.bn, renorm=True)
    for name in ("conv3_1", "conv3_2", "conv4_1", "conv4_2", "conv5_1", "conv5_2"):
        names.block(f"im/{name}", f"{key}{name}", getattr(net, name), "conv3d")
    names.add("joint/logits/weights", f"{key}logits.weight", "linear")
    names.add("joint/logits/biases", f"{key}logits.bias", "vector")


def _unet_names(names: _Names, model: SeparationNet) -> None:
    """``sourcesep.make_net``'s generator ``gen/``: every conv and deconv with a renorm ``BatchNorm`` (gamma), heads with biases."""
    unet = model.unet
    for name, module in unet.named_children():
        tf_name = {"on_screen": "fg", "off_screen": "bg"}.get(name, name)
        if isinstance(module, EncoderLayer):
            names.add(f"gen/{tf_name}/weights", f"unet.{name}.conv.weight", "conv2d")
        elif isinstance(module, DecoderLayer):
            names.add(f"gen/{tf_name}/weights", f"unet.{name}.deconv.weight", "deconv2d")
            if module.bn is None:
                names.add(f"gen/{tf_name}/biases", f"unet.{name}.deconv.bias", "vector")
                continue
        else:
            raise TypeError(f"the U-Net has a {type(module).__name__} ({name}) the official mapping does not know")
        bn = module.bn
        names.batch_norm(f"gen/{tf_name}/BatchNorm", f"unet.{name}.bn", bn, renorm=True)


def official_names(model: str, net: nn.Module) -> _Names:
    """The official TF variables of ``model`` and where each goes in ``net`` (built by :func:`official_model`)."""
    _check_model(model)
    names = _Names()
    if model in ("shift", "cam"):
        _multisensory_names(names, net, "")
    else:
        if model == "sep-full":
            _multisensory_names(names, net.features.net, "features.net.")
        _unet_names(names, net)
    return names


def official_variable_table(model: str, width: int = OFFICIAL_WIDTH, unet_width: int = OFFICIAL_WIDTH) -> dict:
    """TF name -> TF shape of every variable inference needs, and the renorm scopes' channels (built on the meta device)."""
    with torch.device("meta"):
        net = official_model(model, width, unet_width)
    names = official_names(model, net)
    names.expect(net.state_dict())
    return {"variables": {name: list(shape) for name, shape in names.expected_shapes.items()}, "renorm": dict(names.renorm)}


# ----------------------------------------------------------------------------------------------- import


@dataclass
class ImportedNetwork:
    """What :func:`import_official` returns: the network (eval mode), where it was written, what was skipped."""

    model: nn.Module
    network: str
    path: Path | None
    global_step: int | None
    training_state: list[str]  # the checkpoint's variables skipped as training-only state, by name


def _listed(items: list[str], shown: int = 6) -> str:
    more = f", ... ({len(items) - shown} more)" if len(items) > shown else ""
    return f"{len(items)}: " + ", ".join(items[:shown]) + more


def _classify(shapes: dict[str, tuple], dtypes: dict[str, str], names: _Names) -> tuple[list, list, list, list]:
    """(missing, misshapen, unused, training_state) of a checkpoint's variables against ``names``."""
    targets = names.targets
    missing = sorted(name for name in targets if name not in shapes)
    misshapen, unused, training = [], [], []
    for name in sorted(shapes):
        shape = tuple(shapes[name])
        expected: tuple | None = None
        if name in targets:
            expected = tuple(names.expected_shapes[name])
            if dtypes[name] != "float32":
                misshapen.append(f"{name} is {dtypes[name]}, not float32")
                continue
        elif name in GLOBAL_TRAINING_STATE:
            training.append(name)
            continue
        else:
            scope, _, leaf = name.rpartition("/")
            if leaf in OPTIMIZER_SLOTS and scope in targets and targets[scope].trainable:
                expected = tuple(names.expected_shapes[scope])
                training.append(name)
            elif scope in names.renorm and leaf in RENORM_VECTORS + RENORM_SCALARS:
                expected = (names.renorm[scope],) if leaf in RENORM_VECTORS else ()
                training.append(name)
            else:
                unused.append(f"{name} {list(shape)}")
                continue
        if shape != expected:
            misshapen.append(f"{name} {list(shape)}, expected {list(expected)}")
    return missing, misshapen, unused, training


def import_official(prefix: str | Path, model: str, out: str | Path | None = None, *, width: int = OFFICIAL_WIDTH,
                    unet_width: int = OFFICIAL_WIDTH) -> ImportedNetwork:
    """Import the official TF checkpoint ``prefix`` (``PREFIX.index`` + data shards) as ``model``.

    Returns the network, in eval mode, with every parameter and moving average from the checkpoint; with
    ``out``, also writes an avlib checkpoint there that the loaders and tasks take (with its input settings:
    ``run.shift`` and ``run.cam`` for shift and cam, ``run.separation`` for the separation models). Raises
    :class:`avlib.tfbundle.TFCheckpointError` for a missing, truncated, foreign or corrupt checkpoint and
    :class:`OfficialImportError` naming each variable missing, misshapen or unused. Needs no TensorFlow.
    """
    from avlib.checkpoint import load_model_state, save_checkpoint
    from avlib.tfbundle import TFCheckpoint

    _check_model(model)
    reader = TFCheckpoint(prefix)
    net = official_model(model, width, unet_width)
    names = official_names(model, net)
    state = net.state_dict()
    names.expect(state)
    unmapped = sorted(key for key in state if key not in {t.key for t in names.targets.values()}
                      and not key.endswith("num_batches_tracked"))
    if unmapped:  # our model grew state the official networks do not have
        raise RuntimeError(f"avlib's {model} network has state no official variable fills: {_listed(unmapped)}")
    missing, misshapen, unused, training = _classify(reader.shapes(), reader.dtypes(), names)
    problems = [f"{what} {_listed(items)}" for what, items in
                (("missing", missing), ("misshapen", misshapen), ("unused", unused)) if items]
    if problems:
        raise OfficialImportError(f"TF checkpoint {prefix} is not the official {model} network at width {width}"
                                  + (f" / U-Net width {unet_width}" if model.startswith(("sep", "unet")) else "")
                                  + ": " + "; ".join(problems))
    for name, target in names.targets.items():
        state[target.key] = torch.from_numpy(np.ascontiguousarray(LAYOUTS[target.layout][0](reader.read(name))))
    load_model_state(net, state, prefix)
    net.eval()
    step = int(reader.read("global_step")) if "global_step" in reader else None
    path = None
    if out is not None:
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_checkpoint(path, model=net, step=step or 0, config={"run": _run_config(model, prefix, step, training)})
    return ImportedNetwork(net, model, path, step, training)


def _run_config(model: str, prefix: str | Path, step: int | None, training: list[str]) -> dict:
    """The input settings the loaders read (``shift``/``cam`` or ``separation``) and where the weights came from."""
    official = {"network": model, "prefix": Path(prefix).name, "registry": REGISTRY[model].prefix, "global_step": step,
                "skipped_training_state": len(training), "source": DOWNLOAD}
    if model in ("shift", "cam"):
        from avlib.config import resolve
        from avlib.data.shift import ShiftConfig

        return {"shift": dataclasses.asdict(ShiftConfig()), "cam": dataclasses.asdict(resolve("paper").cam),
                "official": official}
    from avlib.separate import PAPER_PHASE, PAPER_WINDOW_MULTIPLE

    return {"separation": {"window_multiple": PAPER_WINDOW_MULTIPLE, "phase": PAPER_PHASE}, "official": official}


def find_imported(folder: str | Path, model: str) -> Path | None:
    """``FOLDER/<model>.pt`` when it exists (the file name :func:`main` suggests), else None."""
    _check_model(model)
    path = Path(folder) / f"{model}.pt"
    return path if path.is_file() else None


# ----------------------------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m avlib.weights", description="The official TF networks in avlib "
                                     "(docs/weights.md).")
    commands = parser.add_subparsers(dest="command", required=True)
    importer = commands.add_parser("import-official", help="convert an official TF checkpoint to an avlib checkpoint",
                                   description="Reads PREFIX.index and PREFIX.data-* (no TensorFlow needed), maps and "
                                   "transposes every variable, refuses with the names of any missing, misshapen or "
                                   "unused one, and writes an avlib checkpoint.")
    importer.add_argument("prefix", help="checkpoint prefix, e.g. nets/cam/net.tf-675000")
    importer.add_argument("--model", required=True, choices=MODELS, help="which official network it is")
    importer.add_argument("--out", required=True, help="avlib checkpoint to write (.pt), e.g. weights/cam.pt")
    importer.add_argument("--width", type=int, default=OFFICIAL_WIDTH, help="base width of the feature network (64)")
    importer.add_argument("--unet-width", type=int, default=OFFICIAL_WIDTH, help="base width of the U-Net (64)")
    commands.add_parser("list", help="the registry of official networks")
    args = parser.parse_args(argv)
    if args.command == "list":
        for network in REGISTRY.values():
            digest = "sha256 unknown" if network.sha256 is None else "sha256 known"
            print(f"{network.key:9s} {network.prefix:30s} {network.task}; {digest}")
        return 0
    try:
        result = import_official(args.prefix, args.model, args.out, width=args.width, unet_width=args.unet_width)
    except (CheckpointError, OSError, ValueError) as error:
        print(f"error: {error}".replace("\n", " "), file=sys.stderr)
        return 2
    print(f"wrote {result.path}: official {args.model} network, step {result.global_step}, "
          f"{len(result.training_state)} training-only variables skipped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
