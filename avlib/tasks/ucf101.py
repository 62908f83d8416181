"""Action recognition by fine-tuning the multisensory network on UCF-101 (docs/paper.md §6).

The classifier is the official ``src/videocls.py`` head on the pretrained trunk: the last
conv (``conv5_2``) -> dropout -> global average pool -> a 1x1x1 conv to the class logits
(``lb/logits``), trained with softmax cross-entropy and SGD with step decay (``synth``: Adam). Everything but the
head is restored from the self-supervised checkpoint.

The rows of the paper's table are :data:`VARIANTS`: the pretrained network with audio, the same
with the audio removed at fine-tuning and test (zero samples and ``use_sound = False``, the
code's no-audio switch), the same network from random initialisation, and a linear probe of
the frozen pretrained features.

Evaluation scores ``K`` evenly spaced clips per test video (:mod:`avlib.data.ucf101`): **clip
accuracy** counts each clip on its own, **video accuracy** averages the K clips' softmax
probabilities first. Values the paper and the code leave unknown (clip length, learning rate,
iterations, test-time averaging) are our choices, listed with their status by
:func:`settings_table`. Settings: :class:`avlib.config.UCF101Settings` (``experiment.ucf101``).

:func:`run` does the whole experiment (data, pretrained network, every row trained and scored);
``python -m avlib.tasks.ucf101 --profile smoke`` runs it from a shell and prints each row's accuracy.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avlib.config import Experiment, UCF101Settings, flatten, run_settings, seed_folder, training_seeds
from avlib.data.sources import action_sources
from avlib.data.ucf101 import ActionClipFormat, ClipBatches, DecodedVideos, UCF101Split, VideoSource
from avlib.hashing import file_stamp, json_key
from avlib.metrics import Evaluation, evaluate_classifier
from avlib.models.multisensory import MultisensoryConfig, MultisensoryNet, _init_weights, from_checkpoint, normalize_frames
from avlib.parallel import Job, run_jobs, shared_copy
from avlib.tasks.pretrain import ensure_pretrained
from avlib.train import TrainConfig, fit, resolve_device

# ---------------------------------------------------------------------------------------------
# Settings


#: Where each setting comes from (docs/paper.md §6): CODE = ``src/videocls.py`` of the official
#: code, UNKNOWN = undefined in the released code and not stated in what we could read of the
#: paper, so the value is our choice; OURS = a choice of this companion.
SETTING_STATUS: dict[str, str] = {
    "split": "CODE: split 1 (test_size = 3783, ucf-test-files-1)",
    "window": "UNKNOWN (sampled_frames = VidDur * fps, VidDur undefined): ours",
    "batch_size": "CODE: 8 per GPU (number of GPUs unknown)",
    "train.steps": "UNKNOWN (train_iters undefined): ours",
    "train.lr": "UNKNOWN (base_lr undefined): ours",
    "train.momentum": "CODE: 0.9 (SGD only)",
    "train.weight_decay": "CODE: 1e-5",
    "train.weight_decay_prefixes": "OURS: empty, the L2 term applies to every conv and linear weight",
    "train.optimizer": "UNKNOWN (opt_method undefined): SGD with momentum is ours for paper; synth uses Adam, as its "
                       "pretraining does, because SGD at lr 1e-2 did not leave chance on the synthetic actions",
    "train.grad_clip": "CODE: grad_clip = None",
    "train.lr_milestones": "UNKNOWN (step_size undefined): ours",
    "train.lr_gamma": "CODE: gamma = 0.1 step decay",
    "train.checkpoint_every": "OURS",
    "train.log_every": "OURS",
    "train.seed": "OURS: replaced by the run's seed",
    "train.device": "OURS: replaced by the run's device",
    "train.amp": "OURS: bf16 autocast on CUDA",
    "train.channels_last": "OURS: channels_last_3d on CUDA",
    "train.compile": "OURS: torch.compile",
    "train.workers": "OURS: decoding workers (DataLoader processes in training, threads at test)",
    "train.prefetch": "OURS: batches each training worker decodes ahead",
    "train.out_dir": "OURS: replaced by the run's folder (one per row)",
    "dropout": "CODE: optional dropout before pooling, rate not given: ours",
    "label_smoothing": "CODE: optional 0.05; off here (ours)",
    "audio_jitter": "UNVERIFIED: augment_audio = True; the released sep reader moves audio by up to 3 frames (0.1 s); "
                    "the UCF reader is unreleased",
    "flip": "CODE: augment_ims = True (random crop and horizontal flip)",
    "test_clips": "UNKNOWN (test-time averaging unspecified): ours, evenly spaced clips, softmax averaged",
    "eval_every": "OURS: test points of the training curves",
    "curve_videos": "OURS: test videos scored at each curve point (0 = all), centre clip",
    "eval_batch": "OURS: clips per evaluation batch",
    "probe_steps": "OURS: linear probe of frozen features (not in the paper); 0 leaves the row out",
    "probe_lr": "OURS",
    "probe_milestones": "OURS",
    "in_memory": "OURS: decode every video once into memory (small datasets)",
    "seeds": "OURS: training seeds of each row that enters a verdict (the paper reports one number per row, no "
             "spread; paper profile 1); seed k is the notebook's seed + k, the test set stays the notebook seed's",
    "fps": "the pretrained network's (29.97 fps in the paper's final stage)",
    "sample_rate": "the pretrained network's (21 kHz in the paper)",
    "size": "the pretrained network's (CODE: frames squashed to 256)",
    "crop": "the pretrained network's (CODE: 224, random in training, centre at test)",
}


def settings_table(settings: UCF101Settings, clip_format: ActionClipFormat | None = None) -> pd.DataFrame:
    """One row per setting (the dotted keys of :func:`avlib.config.flatten`): its value and its status
    (:data:`SETTING_STATUS`).

    With ``clip_format``, the input-format settings show the values in use.
    """
    rows = []
    for key, value in flatten(settings).items():
        if value is None and clip_format is not None and hasattr(clip_format, key):
            value = getattr(clip_format, key)
        rows.append({"setting": key, "value": str(value), "status": SETTING_STATUS.get(key, "")})
    return pd.DataFrame(rows)


def clip_format(experiment: Experiment) -> ActionClipFormat:
    """The clips fine-tuning sees: the pretrained network's rates and frame size (its last stage's frame
    rate), ``ucf101.window`` long; ``ucf101.fps``, ``sample_rate``, ``size`` and ``crop`` replace them when set."""
    settings, shift = experiment.ucf101, experiment.pretrain.shift
    return ActionClipFormat(
        window=settings.window,
        fps=settings.fps if settings.fps is not None else experiment.pretrain.stages[-1].fps,
        sample_rate=settings.sample_rate if settings.sample_rate is not None else shift.sample_rate,
        size=settings.size if settings.size is not None else shift.size,
        crop=settings.crop if settings.crop is not None else shift.crop,
        flip=settings.flip,
        audio_jitter=settings.audio_jitter,
    )


# ---------------------------------------------------------------------------------------------
# The classifier


@dataclass
class ClassifierConfig:
    """:class:`ActionClassifier`'s configuration (stored in its checkpoints).

    trunk: the multisensory network's config (``use_sound = False`` for the no-audio variant).
    num_classes: K, 101 for UCF-101.
    dropout: rate of the dropout on the last conv (the code's dropout is optional, its rate unknown).
    frozen: the linear probe: the trunk is neither trained nor takes batch statistics.
    """

    trunk: MultisensoryConfig = field(default_factory=MultisensoryConfig)
    num_classes: int = 101
    dropout: float = 0.5
    frozen: bool = False


class ActionClassifier(nn.Module):
    """The multisensory trunk with the fine-tuning head of ``src/videocls.py``.

    conv5_2 (B, 8w, T', H', W') -> dropout -> global average pool (B, 8w, 1, 1, 1) -> 1x1x1 conv
    ``lb/logits`` -> (B, K) logits. ``w`` is the trunk's width (512 channels at the paper's 64).

    Videos without an audio track come with silent audio and ``has_audio = False``; their
    fused audio features (the output of ``sf/conv5_1``) are zeroed, which is what the code's
    ``use_sound = False`` does to every video. With ``use_sound = False`` in the trunk's config,
    the audio input is zeroed too (the paper's no-audio variant) and the audio stream is not
    trained.
    """

    def __init__(self, config: ClassifierConfig, trunk: MultisensoryNet | None = None):
        super().__init__()
        if config.num_classes < 2:
            raise ValueError(f"a classifier needs at least 2 classes, got {config.num_classes}")
        self.config = config
        self.trunk = trunk if trunk is not None else MultisensoryNet(config.trunk)
        if asdict(self.trunk.config) != asdict(config.trunk):
            raise ValueError(f"trunk config {self.trunk.config} differs from the classifier's {config.trunk}")
        channels = self.trunk.logits.in_features
        self.dropout = nn.Dropout(config.dropout)
        self.logits = nn.Conv3d(channels, config.num_classes, kernel_size=1)  # lb/logits
        _init_weights(self.logits)
        # The alignment classifier is not used, and parameters without gradients would stall DDP.
        self.trunk.logits.requires_grad_(False)
        if not config.trunk.use_sound:
            self.trunk.audio.requires_grad_(False)
            self.trunk.fusion.audio_conv5_1.requires_grad_(False)
        if config.frozen:
            self.trunk.requires_grad_(False)
        self._audio_mask: Tensor | None = None
        self.trunk.fusion.audio_conv5_1.register_forward_hook(self._mask_missing_audio)

    def _mask_missing_audio(self, module: nn.Module, inputs: Any, output: Tensor) -> Tensor:
        """Zero the fused audio features (B, 2w, T') of videos without an audio track."""
        if self._audio_mask is None:
            return output
        return output * self._audio_mask[:, None, None].to(output.dtype)

    def train(self, mode: bool = True) -> "ActionClassifier":
        super().train(mode)
        if self.config.frozen:
            self.trunk.eval()  # a linear probe keeps the pretrained BatchNorm statistics
        return self

    def forward(self, frames: Tensor, audio: Tensor, has_audio: Tensor | None = None) -> Tensor:
        """frames (B, 3, T, H, W) in [-1, 1], audio (B, 2, N) in [-1, 1], has_audio (B,) bool -> (B, K) logits."""
        if not self.config.trunk.use_sound:
            audio = torch.zeros_like(audio)
        self._audio_mask = has_audio
        try:
            last_conv = self.trunk(frames, audio)["features"]["conv5_2"]  # (B, 8w, T', H', W')
        finally:
            self._audio_mask = None
        pooled = self.dropout(last_conv).mean(dim=(2, 3, 4), keepdim=True)  # (B, 8w, 1, 1, 1)
        return self.logits(pooled).flatten(1)  # (B, K)


@dataclass(frozen=True)
class Variant:
    """One row of the table: how the classifier starts and what it hears."""

    name: str
    title: str
    pretrained: bool  # trunk from the self-supervised checkpoint (else random initialisation)
    use_sound: bool
    frozen: bool = False
    paper_key: str | None = None  # avlib.report.claims key of the paper's number for this row


VARIANTS: tuple[Variant, ...] = (
    Variant("with_audio", "pretrained, with audio", True, True, paper_key="ucf101_multisensory"),
    Variant("no_audio", "pretrained, audio removed (fine-tuning and test)", True, False, paper_key="ucf101_no_audio"),
    Variant("random_init", "random initialisation, with audio", False, True, paper_key="ucf101_random_init"),
    Variant("linear_probe", "pretrained, frozen, linear classifier (ours)", True, True, frozen=True),
)
VARIANT_BY_NAME = {variant.name: variant for variant in VARIANTS}


def build_classifier(variant: Variant | str, checkpoint: str | Path, num_classes: int, *, dropout: float = 0.5,
                     seed: int = 0) -> ActionClassifier:
    """The classifier of a table row on the pretrained ``checkpoint`` (its config, and its weights
    unless the row starts from random initialisation); the head is initialised from ``seed``."""
    variant = VARIANT_BY_NAME[variant] if isinstance(variant, str) else variant
    torch.manual_seed(seed)
    trunk = from_checkpoint(checkpoint, use_sound=variant.use_sound)
    if not variant.pretrained:
        trunk = MultisensoryNet(trunk.config)
    return ActionClassifier(ClassifierConfig(trunk.config, num_classes, dropout, variant.frozen), trunk)


# ---------------------------------------------------------------------------------------------
# Training


@dataclass(frozen=True)
class ClassificationLoss:
    """Softmax cross-entropy of the clip logits (optionally label-smoothed), and batch accuracy."""

    label_smoothing: float = 0.0

    def __call__(self, model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        logits = model(normalize_frames(batch["frames"]), batch["audio"], batch["has_audio"]).float()
        loss = F.cross_entropy(logits, batch["label"], label_smoothing=self.label_smoothing)
        accuracy = (logits.argmax(1) == batch["label"]).float().mean().item()
        return loss, {"accuracy": accuracy}


def train_config(settings: UCF101Settings, variant: Variant, out_dir: str | Path, *, seed: int = 0,
                 device: str = "auto") -> TrainConfig:
    """The :class:`TrainConfig` of a row: ``settings.train``, with the probe's steps, learning rate and
    milestones for the linear probe, decoding in ``settings.train.workers`` processes."""
    train = settings.train
    if variant.frozen:
        train = replace(train, steps=settings.probe_steps, lr=settings.probe_lr,
                        lr_milestones=list(settings.probe_milestones))
    return replace(train, seed=seed, device=device, out_dir=str(out_dir))


def run_key(settings: UCF101Settings, checkpoint: str | Path, clips: ActionClipFormat) -> str:
    """A short key of the settings, clip format and pretrained checkpoint (its size and time): runs
    with other settings or from another checkpoint go to another folder instead of resuming."""
    return json_key(dict(settings=run_settings(settings), clips=asdict(clips), checkpoint=file_stamp(checkpoint)))


def finetune(model: ActionClassifier, train_source: VideoSource, settings: UCF101Settings, variant: Variant,
             out_dir: str | Path, *, seed: int = 0, device: str = "auto", resume: bool = True, eval_fn=None,
             run_config: dict | None = None) -> dict[str, list[dict[str, float]]]:
    """Train one row's classifier with :func:`avlib.train.fit`; returns its logged history.

    Batches are random clips of the training videos (:class:`~avlib.data.ucf101.ClipBatches`),
    a function of the step, so an interrupted run resumes exactly.
    """
    batches = ClipBatches(train_source, settings.batch_size, seed=seed)
    config = train_config(settings, variant, out_dir, seed=seed, device=device)
    # the section holds the fine-tuning's and the probe's schedules: the other row's may change on resume
    other = ("ucf101.train.steps", "ucf101.train.lr_milestones") if variant.frozen else ("ucf101.probe_steps", "ucf101.probe_milestones")
    return fit(model, ClassificationLoss(settings.label_smoothing), batches, config, resume=resume,
               eval_fn=eval_fn, eval_every=settings.eval_every,
               run_config={"ucf101": run_settings(settings), "variant": asdict(variant), **(run_config or {})},
               other_budgets=other)


# ---------------------------------------------------------------------------------------------
# Evaluation


def curve_accuracy(source: VideoSource, classes: Sequence[str], videos: Sequence[int], settings: UCF101Settings,
                   device: str | torch.device = "cpu") -> Callable[[nn.Module], dict[str, float]]:
    """An ``eval_fn`` for :func:`finetune`'s training curves: the clip accuracy of the centre clip of each of
    ``videos`` of ``source``, as ``{"test_clip_accuracy": ...}``."""

    def curve_point(net: nn.Module) -> dict[str, float]:
        scored = evaluate_classifier(net, source, 1, classes, videos=videos, batch_size=settings.eval_batch, device=device,
                          amp=settings.train.amp, workers=settings.train.workers)
        return {"test_clip_accuracy": scored.clip_accuracy}

    return curve_point


def correct_by_seed(evaluations: Sequence[Evaluation], mask: np.ndarray | None = None) -> np.ndarray:
    """(S, N) video correctness (0/1) of a row's S training seeds on the same N test videos (``mask`` selects them)."""
    rows = np.stack([evaluation.video_correct for evaluation in evaluations]).astype(np.float64)
    return rows if mask is None else rows[:, mask]


def seed_differences(evaluations: Mapping[str, Sequence[Evaluation]], first: str, second: str,
                     mask: np.ndarray | None = None) -> np.ndarray:
    """(S, N): per training seed s and test video i, row ``first``'s video correctness minus row ``second``'s, both
    trained with seed s (the input of :func:`avlib.stats.seed_interval`)."""
    one, other = evaluations[first], evaluations[second]
    if len(one) != len(other):
        raise ValueError(f"rows {first!r} and {second!r} trained with {len(one)} and {len(other)} seeds; a paired "
                         "difference needs the same seeds")
    return correct_by_seed(one, mask) - correct_by_seed(other, mask)


def accuracy_table(evaluations: Mapping[str, Sequence[Evaluation]], histories: Mapping[str, Sequence[dict]],
                   profile: str) -> pd.DataFrame:
    """The notebook's table: one row per variant (ours, each a mean over its training seeds), then the paper's
    numbers beside them.

    Ours: the training seeds; clip and video accuracy in % (mean over seeds); the video accuracy's spread over
    seeds (sample sd, min-max) and its 95 % interval over seeds and test videos (:func:`avlib.stats.seed_interval`
    of the correctness; the Wilson interval for one seed); video accuracy on test videos with and without an
    audio track. The paper's: its number for the row, with source and status (all UNVERIFIED).
    """
    from avlib.report.claims import paper_number
    from avlib.stats import seed_interval, seed_spread, wilson_interval

    rows = []
    for name, scored in evaluations.items():
        variant = VARIANT_BY_NAME[name]
        spread = seed_spread([100 * evaluation.video_accuracy for evaluation in scored])
        correct = correct_by_seed(scored)
        if len(scored) > 1:
            _, low, high = seed_interval(correct)
        else:
            low, high = wilson_interval(int(correct.sum()), correct.shape[1])
        paper = paper_number(variant.paper_key) if variant.paper_key else None
        train_rows = histories.get(name, [{}])[0].get("train", [])
        rows.append({
            "model": variant.title, "profile": profile, "seeds": len(scored),
            "clip accuracy %": float(np.mean([100 * evaluation.clip_accuracy for evaluation in scored])),
            "video accuracy %": spread["mean"], "video acc. seed sd": spread["sd"],
            "video acc. seed min-max": f"{spread['min']:.1f}-{spread['max']:.1f}",
            "video acc. 95 % interval": f"{100 * low:.1f} to {100 * high:.1f}",
            "video acc., test videos with audio %": float(np.mean([100 * evaluation.accuracy_where(evaluation.has_audio)[1]
                                                                   for evaluation in scored])),
            "video acc., test videos without audio %": float(np.mean(
                [100 * evaluation.accuracy_where(~evaluation.has_audio)[1] for evaluation in scored])),
            "steps": int(train_rows[-1]["step"]) if train_rows else None,
            "paper %": paper.value if paper else None,
            "paper source": f"{paper.source} ({paper.status})" if paper else "",
        })
    supervised = paper_number("ucf101_supervised")
    rows.append({"model": "fully supervised (paper only)", "profile": "", "seeds": None, "clip accuracy %": None,
                 "video accuracy %": None, "video acc. seed sd": None, "video acc. seed min-max": "",
                 "video acc. 95 % interval": "",
                 "video acc., test videos with audio %": None, "video acc., test videos without audio %": None,
                 "steps": None, "paper %": supervised.value, "paper source": f"{supervised.source} ({supervised.status})"})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# The experiment


@dataclass
class UCF101Run:
    """What :func:`run` returns: the split, each row's training histories and test scores per training seed, and
    where they live."""

    split: UCF101Split
    sound_only_pairs: list[tuple[str, str]]  # classes that differ only in sound (synthetic world only)
    evaluations: dict[str, list[Evaluation]]  # variant name -> per training seed, every test video's clip probabilities
    histories: dict[str, list[dict[str, list[dict[str, float]]]]]  # variant name -> per seed, fit's "train" and "eval" rows
    variants: list[Variant]  # the rows run, in table order
    run_dir: Path  # one folder per row below it (further training seeds in train-seed<t>/)
    checkpoint: Path  # the pretrained network every row starts from
    clips: ActionClipFormat
    seeds: list[int]  # the training seeds of the rows that enter a verdict (the linear probe trains the first only)

    def seeds_of(self, name: str) -> list[int]:
        """The training seeds of row ``name``, in the order of its evaluations and histories."""
        return self.seeds[: len(self.evaluations[name])]


def curve_video_indices(count: int, curve_videos: int) -> list[int]:
    """The test videos scored at each point of the training curves: all of ``count`` for 0, else
    ``curve_videos`` evenly spaced ones."""
    if curve_videos <= 0:
        return list(range(count))
    return sorted({int(i) for i in np.linspace(0, count - 1, curve_videos)})


@dataclass(frozen=True)
class RowRun:
    """One row trained with one training seed into its folder: all it needs, picklable, so that a worker
    process (:func:`avlib.parallel.run_jobs`) can train it as well as :func:`run` itself."""

    variant: Variant
    training_seed: int
    folder: Path
    checkpoint: Path  # the pretrained network
    num_classes: int
    settings: UCF101Settings
    train: VideoSource
    test: VideoSource  # the curve points' videos
    classes: list[str]
    curve_videos: list[int]
    device: str
    run_config: dict

    @property
    def name(self) -> str:
        return f"ucf101 {self.variant.name}, training seed {self.training_seed}"

    def fit(self, resume: bool) -> tuple[ActionClassifier, dict[str, list[dict[str, float]]]]:
        """Build the row's classifier from its training seed and fine-tune it (a finished run is reloaded)."""
        model = build_classifier(self.variant, self.checkpoint, self.num_classes, dropout=self.settings.dropout,
                                 seed=self.training_seed)
        curve_point = curve_accuracy(self.test, self.classes, self.curve_videos, self.settings, resolve_device(self.device))
        history = finetune(model, self.train, self.settings, self.variant, self.folder, seed=self.training_seed,
                           device=self.device, resume=resume, eval_fn=curve_point, run_config=self.run_config)
        return model, history


def _train_row(row: RowRun, resume: bool) -> None:
    """A worker's job: train ``row`` into its folder (the parent reloads the finished run)."""
    row.fit(resume)


def train_in_workers(rows: Sequence[RowRun], processes: int, shared_dir: Path, resume: bool) -> None:
    """Train ``rows`` in ``processes`` worker processes (:func:`avlib.parallel.run_jobs`), each into its own folder.

    Videos decoded into memory (:class:`~avlib.data.ucf101.DecodedVideos`) reach the workers through ``.npy``
    files in ``shared_dir`` that each maps read-only (:func:`avlib.parallel.shared_copy`), not as a pickled copy
    per worker; the folder is removed afterwards.
    """
    shared: dict[int, VideoSource] = {}

    def mapped(source: VideoSource, prefix: str) -> VideoSource:
        if not isinstance(source, DecodedVideos):
            return source  # files: each worker reads its windows itself
        if id(source) not in shared:
            shared[id(source)] = shared_copy(source, shared_dir, ("frames", "audio"), prefix)
        return shared[id(source)]

    try:
        jobs = [Job(row.name, _train_row, (replace(row, train=mapped(row.train, "train-"), test=mapped(row.test, "test-")),
                                           resume)) for row in rows]
        run_jobs(jobs, processes)
    finally:
        shutil.rmtree(shared_dir, ignore_errors=True)


def run(experiment: Experiment, *, seed: int = 0, data_root: str | Path = "", checkpoint_root: str | Path | None = None,
        device: str = "auto", resume: bool = True, pretrained_checkpoint: str | Path | None = None) -> UCF101Run:
    """The whole experiment of ``experiment.ucf101``: load the split's videos (:func:`avlib.data.sources.action_sources`),
    ensure the pretrained network (:func:`avlib.tasks.pretrain.ensure_pretrained`, or ``pretrained_checkpoint``),
    fine-tune every row of :data:`VARIANTS` (the linear probe only with ``probe_steps`` > 0) and score it on every
    test video.

    Every row but the linear probe trains once per training seed (``ucf101.seeds``, :func:`avlib.config.training_seeds`:
    ``seed``, ``seed + 1``, ...), which sets its head's (and a randomly initialised trunk's) initialisation, its batch
    order and its dropout; the data, the split and the test videos are ``seed``'s for every training seed, decoded
    once and scored by every model. The linear probe, which no verdict reads, trains with the first seed only.
    With ``experiment.seed_processes`` > 1 the (row, training seed) runs train side by side in that many worker
    processes first (:func:`train_in_workers`); this process then reloads and scores them in the same order.

    Runs live in ``<checkpoints>/<profile>/ucf101/split<k>-seed<s>-<key>/<row>/`` (further training seeds ``t`` in
    ``.../train-seed<t>/<row>/``), the key a digest of the settings (all but ``seeds``), the clip format and the
    pretrained file: other settings or a new pretraining start a new folder; an interrupted run resumes exactly
    (``resume``), a finished one is reloaded, not repeated, and raising ``seeds`` trains only the new seeds.
    """
    settings = experiment.ucf101
    clips = clip_format(experiment)
    device_name = resolve_device(device)
    torch.manual_seed(seed)
    actions = action_sources(experiment.synthetic, experiment.profile, seed, data_root, clips, split=settings.split,
                             in_memory=settings.in_memory)
    split = actions.split
    checkpoint = Path(pretrained_checkpoint) if pretrained_checkpoint else ensure_pretrained(
        experiment, seed, data_root=data_root, checkpoint_root=checkpoint_root, device=device)
    run_dir = (experiment.checkpoint_dir(checkpoint_root) / "ucf101"
               / f"split{settings.split}-seed{seed}-{run_key(settings, checkpoint, clips)}")
    variants = [variant for variant in VARIANTS if not variant.frozen or settings.probe_steps > 0]
    curve_videos = curve_video_indices(len(actions.test), settings.curve_videos)
    seeds = training_seeds(seed, settings.seeds)
    rows = [RowRun(variant, training_seed, seed_folder(run_dir, seed, training_seed) / variant.name, checkpoint,
                   split.num_classes, settings, actions.train, actions.test, split.classes, curve_videos, device,
                   {"profile": experiment.profile, "seed": training_seed, "pretrained": checkpoint.name})
            for training_seed in seeds for variant in variants if not variant.frozen or training_seed == seeds[0]]
    if experiment.seed_processes > 1:
        train_in_workers(rows, experiment.seed_processes, run_dir / ".worker-data", resume)
        resume = True  # every run is finished: the loop below reloads them
    histories: dict[str, list] = {variant.name: [] for variant in variants}
    evaluations: dict[str, list] = {variant.name: [] for variant in variants}
    for row in rows:
        model, history = row.fit(resume)
        histories[row.variant.name].append(history)
        evaluations[row.variant.name].append(evaluate_classifier(
            model, actions.test, settings.test_clips, split.classes, batch_size=settings.eval_batch, device=device_name,
            amp=settings.train.amp, workers=settings.train.workers))
    return UCF101Run(split, actions.sound_only_pairs, evaluations, histories, variants, run_dir, checkpoint, clips, seeds)


def _run(experiment: Experiment, args) -> dict:
    result = run(experiment, seed=args.seed, data_root=args.data_root, checkpoint_root=args.checkpoints,
                 device=args.device)
    table = accuracy_table(result.evaluations, result.histories, experiment.profile)
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "accuracy.csv", index=False)
    rows = {}
    for variant in result.variants:
        scored, histories = result.evaluations[variant.name], result.histories[variant.name]
        rows[variant.name] = {
            "seeds": result.seeds_of(variant.name),
            "clip accuracy %": [100 * evaluation.clip_accuracy for evaluation in scored],
            "video accuracy %": [100 * evaluation.video_accuracy for evaluation in scored],
            "steps": [int(history["train"][-1]["step"]) if history["train"] else 0 for history in histories]}
    return {"checkpoint": str(result.checkpoint), "runs": str(result.run_dir), "split": result.split.split,
            "classes": result.split.num_classes, "train videos": len(result.split.train),
            "test videos": len(result.split.test), "rows": rows, "tables": ["accuracy.csv"]}


def main(argv: Sequence[str] | None = None) -> int:
    from avlib.tasks.cli import run_task

    return run_task("ucf101", "ucf101", "UCF-101 action recognition (docs/paper.md §6): fine-tune the pretrained "
                    "network with and without audio, from random initialisation and as a linear probe; score "
                    "every test video.", _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
