"""Every experiment's configuration, resolved in one place from a profile and ``key=value`` overrides.

A profile is data (:data:`PROFILES`): for each section (``pretrain``, ``cam``, ``ucf101``,
``separation``, ``ablations``) the fields that differ from the paper's, which are the dataclass
defaults. :func:`resolve` applies a profile, then overrides, then the few derived fields (the
network's clip sizes follow its input clips; CAM fine-tuning's share of the pretraining; the
separation's feature network and rates follow the pretrained network's), and returns one frozen
:class:`Experiment`. Task modules read their section of it and never a profile's name.

Overrides are dotted keys into the experiment, e.g. ``ucf101.train.lr=3e-4`` or
``pretrain.stages.0.steps=10``; a task's command line also takes keys relative to its own section
(``train.lr=3e-4``). Values are parsed as Python literals and checked against the field's type.

Every training run stores :meth:`Experiment.to_dict` in its checkpoint, and a resume with another
config is refused with the keys that differ (:func:`avlib.train.fit`).
"""

from __future__ import annotations

import ast
import dataclasses
import types
import typing
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, Mapping

from avlib.data.shift import OFFICIAL_SHIFT, ShiftConfig
from avlib.models.multisensory import MultisensoryConfig
from avlib.models.unet import SeparationConfig
from avlib.spectral import SpectralConfig
from avlib.train import TrainConfig

#: The checkout; generated data and checkpoints go to its ignored folders by default.
CHECKOUT = Path(__file__).resolve().parent.parent

#: The low-frame-rate stage keeps every 4th frame of 29.97 fps video (``subsample_frames = 4``).
LOW_FPS = 29.97 / 4
#: Blocks the official code re-initialises when the full-rate stage starts from the low-fps one.
PAPER_REINIT = ("conv2_2", "conv3_2", "conv4_2", "conv5_2")
#: ``cam_v1`` = ``shift_v1`` at 650 k iterations, stride removed, fine-tuned to 675 k (``src/shift_params.py``).
PAPER_CAM_STEPS = 25_000
PAPER_PRETRAIN_STEPS = 650_000
#: The official overlay (``heatmap()`` in ``src/sep_video.py``): 97th percentile scale, jet from half of it, alpha <= 0.35.
PAPER_PERCENTILE = 97.0
PAPER_LO_FRACTION = 0.5
PAPER_MAX_ALPHA = 0.35

SECTIONS = ("pretrain", "cam", "ucf101", "separation", "ablations")


# ------------------------------------------------------------------------------------ sections


@dataclass(frozen=True)
class Stage:
    """One stage of the pretraining schedule: its frame rate, batch (videos per step), last step, and the
    share of its training clips that are talking heads (None: the section's ``pretrain.talking_heads``)."""

    name: str
    fps: float
    batch_size: int
    steps: int  # the stage ends at this global step (the paper's counts include earlier stages)
    reinit: tuple[str, ...] = ()  # blocks re-initialised when this stage starts from the last
    talking_heads: float | None = None

    def __post_init__(self) -> None:
        if self.talking_heads is not None and not 0 <= self.talking_heads < 1:
            raise ValueError(f"Stage {self.name!r}: talking_heads must be in [0, 1) or None, got {self.talking_heads}")


@dataclass(frozen=True)
class PretrainConfig:
    """Alignment pretraining (docs/paper.md §3): clips, network, stages, optimiser.

    ``train`` is the optimiser and schedule of every stage (SGD, momentum 0.9, lr 1e-2, clip 5,
    L2 1e-5); each stage sets its own ``steps``. ``held_out_scenes`` is the share of the synthetic
    world's scene clips held out for alignment accuracy (real data has its own test folder).
    ``talking_heads`` is the share of the synthetic training clips that are talking heads, AudioSet's
    on-screen speech (docs/world.md); real data has its own, and must keep 0. A stage may set its own share
    (``Stage.talking_heads``); the world must hold talkers for the largest (:meth:`stage_talking_heads`).
    """

    shift: ShiftConfig = field(default_factory=ShiftConfig)
    model: MultisensoryConfig = field(default_factory=MultisensoryConfig)
    stages: tuple[Stage, ...] = (Stage("shift_lowfps", LOW_FPS, 15, 30_000),
                                 Stage("shift_v1", 29.97, 5, PAPER_PRETRAIN_STEPS, reinit=PAPER_REINIT))
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        steps=PAPER_PRETRAIN_STEPS, checkpoint_every=5_000, amp="bf16", channels_last=True, workers=8))
    eval_every: int = 10_000
    eval_pairs_per_video: int = 4
    held_out_scenes: float = 0.0
    talking_heads: float = 0.0
    # The first stage's restart rule (avlib.tasks.pretrain.pretrain): at step ``restart_at`` (None: never; at most the
    # stage's last step), a mean *training* loss over the last ``restart_window`` steps above ``restart_loss`` means
    # the network is still on the plateau at chance; the stage starts again from new initial weights, at most
    # ``restarts`` times.
    restart_at: int | None = None
    restart_loss: float = 0.67
    restart_window: int = 100
    restarts: int = 3

    def stage_talking_heads(self, index: int) -> float:
        """The share of talking heads among stage ``index``'s training clips: its own, else the section's."""
        share = self.stages[index].talking_heads
        return self.talking_heads if share is None else share

    @property
    def largest_talking_heads(self) -> float:
        """The largest share of talking heads of any stage: the world's talkers beyond it are held out."""
        return max(self.stage_talking_heads(index) for index in range(len(self.stages)))

    def __post_init__(self) -> None:
        if self.restart_at is not None and not 0 < self.restart_at <= self.stages[0].steps:
            raise ValueError(f"PretrainConfig.restart_at must lie inside the first stage (1-{self.stages[0].steps}), "
                             f"got {self.restart_at}")
        if self.restart_window < 1 or self.restarts < 0:
            raise ValueError(f"PretrainConfig: restart_window must be >= 1 and restarts >= 0, "
                             f"got {self.restart_window} and {self.restarts}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class CamSettings:
    """CAM localisation (docs/paper.md §5): fine-tuning of the ``cam=True`` network and the maps.

    Args:
        fine_tune_steps: alignment training of the ``cam=True`` network from the pretrained weights
            (paper: 25 k, ``cam_v1``); 0 uses the pretrained weights; None: the paper's share of the
            pretraining (25 k of 650 k), resolved by :func:`resolve`.
        fine_tune_batch: videos per fine-tuning step (paper: 5 per GPU); None: the last stage's batch.
        fine_tune_lr: learning rate of the fine-tuning; None: the pretraining's. The optimiser and
            the rest of the schedule are the pretraining's (``pretrain.train``).
        hop: hop between sliding windows, as a fraction of the window (official: 0.5).
        map_stride: pixels of the resized frame per pixel of the stored maps.
        absolute: overlay |CAM| (the official ``find_cam``) rather than the signed logit map.
        percentile, lo_fraction, max_alpha: the official overlay (97, 0.5, 0.35).
        tile_batch: tiles per forward pass.
        eval_clips: held-out scene clips scored (None: all of them).
        eval_frame_stride: score every k-th written frame of a clip.
        bootstrap: resamples of clips for the 95 % intervals.
        top_frames: frames in the paper-style figure of top responses.
        size, crop: frame side the CAM network is fine-tuned and mapped at, and its input crop; None: the
            pretraining's (``pretrain.shift``). The network is fully convolutional, so a larger size than the
            pretraining's makes each conv5 cell see a part of the frame rather than all of it.
        seeds: training seeds of the fine-tuning; each is fine-tuned and scored, and verdicts against the
            baselines count the seeds' spread (:func:`avlib.stats.seed_interval`). One by default (the paper reports one run, as
            the other sections' `seeds`); synth 3, smoke 2.
        sync_only_clips: held-out sync-only clips scored (:class:`avlib.data.world.scenes.SyncOnlyConfig`:
            a silent distractor that moves and glows like the source, out of step with the sound); 0: none.
        speaker_clips: test clips of the speakers part scored for ``cam_speech`` (is the peak on the mouth?); 0: none.
    """

    fine_tune_steps: int | None = PAPER_CAM_STEPS
    fine_tune_batch: int | None = 5
    fine_tune_lr: float | None = None
    hop: float = 0.5
    map_stride: int = 8
    absolute: bool = True
    percentile: float = PAPER_PERCENTILE
    lo_fraction: float = PAPER_LO_FRACTION
    max_alpha: float = PAPER_MAX_ALPHA
    tile_batch: int = 16
    eval_clips: int | None = 200
    eval_frame_stride: int = 4
    bootstrap: int = 1000
    top_frames: int = 6
    size: int | None = None
    crop: int | None = None
    seeds: tuple[int, ...] = (0,)
    sync_only_clips: int = 60
    speaker_clips: int = 20

    def __post_init__(self) -> None:
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"CamSettings.seeds must name at least one seed, none twice, got {self.seeds}")
        if any(value is not None and value < 16 for value in (self.size, self.crop)):
            raise ValueError(f"CamSettings: size and crop must be >= 16 pixels, got size {self.size}, crop {self.crop}")
        if self.sync_only_clips < 0 or self.speaker_clips < 0:
            raise ValueError(f"CamSettings: clip counts must be >= 0, got {self.sync_only_clips}, {self.speaker_clips}")
        if self.fine_tune_steps is not None and self.fine_tune_steps < 0:
            raise ValueError(f"CamSettings.fine_tune_steps must be >= 0, got {self.fine_tune_steps}")
        if self.fine_tune_batch is not None and self.fine_tune_batch < 1:
            raise ValueError(f"CamSettings.fine_tune_batch must be >= 1, got {self.fine_tune_batch}")
        if not 0 < self.hop <= 1:
            raise ValueError(f"CamSettings.hop must be in (0, 1], got {self.hop}")
        if self.map_stride < 1 or self.eval_frame_stride < 1 or self.tile_batch < 1:
            raise ValueError(f"CamSettings: strides and batch must be positive, got {self}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class UCF101Settings:
    """UCF-101 fine-tuning (docs/paper.md §6); :data:`avlib.tasks.ucf101.SETTING_STATUS` says where each
    value comes from.

    ``train`` is the fine-tuning's optimiser and schedule (its ``workers`` decode in DataLoader processes
    in training and in threads at test); the linear probe uses the same with ``probe_steps``,
    ``probe_lr`` and ``probe_milestones``. ``fps``, ``sample_rate``, ``size`` and
    ``crop`` of None are the pretrained network's. ``seeds``: training seeds of every row that enters a
    verdict (:func:`training_seeds`; the linear probe trains with the first only).
    """

    split: int = 1
    window: float = 4.2
    batch_size: int = 8
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        steps=30_000, lr=1e-2, lr_milestones=[20_000], grad_clip=None, log_every=50, checkpoint_every=2_000,
        amp="bf16", channels_last=True, workers=8))
    dropout: float = 0.5
    label_smoothing: float = 0.0
    audio_jitter: float = 0.1
    flip: bool = True
    test_clips: int = 10
    eval_every: int = 5_000
    curve_videos: int = 500
    eval_batch: int = 20
    probe_steps: int = 10_000
    probe_lr: float = 1e-2
    probe_milestones: tuple[int, ...] = (7_000,)
    in_memory: bool = False
    fps: float | None = None
    sample_rate: int | None = None
    size: int | None = None
    crop: int | None = None
    seeds: int = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SeparationSettings:
    """On/off-screen separation (docs/paper.md §7).

    model: the full model's :class:`SeparationConfig` (the audio-only baseline is the same with
        ``video="none"``); its ``spectral.num_frames`` and the feature net's rate fix the window.
    features_from_pretrain: the feature network, its frame rate and sizes and the STFT's rate are the
        pretrained network's (``fft_size`` may widen the FFT); the paper's defaults already agree.
    train, batch_size: the full model's optimiser and schedule (Adam 1e-4, x0.1 at 120 k, clip 10, L2
        1e-5 on the U-Net only, docs/paper.md §7.5) and clips per batch (paper: 6 per GPU).
    pit_steps, pit_batch_size: the u-net PIT baseline's steps (same optimiser) and mixtures per batch.
    test_pairs: mixtures in the fixed test list; eval_batch: windows per forward pass at evaluation.
    window_multiple: :func:`separate`'s windows in training windows (paper's ``sep_video``: 4, 8.3 s).
    examples_shown: test pairs shown with spectrograms and players.
    phase: ``"predicted"`` (the paper's) or ``"mixture"`` (official ``phase_type = 'orig'``).
    magnitude_loss: ``"log"`` (the paper's L1 on normalised log-magnitude) or ``"linear"``.
    seeds: training seeds of the full model and of u-net PIT (:func:`training_seeds`).
    """

    model: SeparationConfig = field(default_factory=SeparationConfig)
    features_from_pretrain: bool = False
    fft_size: int | None = None
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        steps=160_000, lr=1e-4, optimizer="adam", weight_decay=1e-5, weight_decay_prefixes=["unet."],
        grad_clip=10.0, lr_milestones=[120_000], checkpoint_every=10_000, log_every=10, amp="bf16", workers=8))
    batch_size: int = 6
    pit_steps: int = 160_000
    pit_batch_size: int = 12
    test_pairs: int = 1000
    eval_batch: int = 16
    window_multiple: int = 4
    examples_shown: int = 3
    phase: str = "predicted"
    magnitude_loss: str = "log"
    seeds: int = 1

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class AblationSettings:
    """Separation ablations (docs/paper.md §7.6): training of each row and of the I3D features.

    steps: separation training steps of every row with video (optimiser: ``separation.train``).
    i3d_width: I3D channels as a fraction of the published network's.
    i3d_train, i3d_batch_size: supervised I3D training on the action classes; None: load
        ``i3d_checkpoint`` instead (the paper profile's converted Kinetics weights).
    i3d_checkpoint: a converted kinetics-i3d ``.npz``; empty: ``<data_root>/i3d/rgb_imagenet.npz``.
    i3d_test_clips: clips per action test video scored for the I3D's accuracy.
    seeds: training seeds of every row, the I3D included (:func:`training_seeds`).
    """

    steps: int = 160_000
    i3d_width: float = 1.0
    i3d_train: TrainConfig | None = None
    i3d_batch_size: int = 8
    i3d_checkpoint: str = ""
    i3d_test_clips: int = 2
    seeds: int = 1

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Experiment:
    """One profile resolved: what every task reads."""

    profile: str
    description: str
    is_result: bool  # False for smoke: its numbers are never presented as results
    synthetic: bool  # data from the generated world (True) or real datasets under data_root
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    cam: CamSettings = field(default_factory=CamSettings)
    ucf101: UCF101Settings = field(default_factory=UCF101Settings)
    separation: SeparationSettings = field(default_factory=SeparationSettings)
    ablations: AblationSettings = field(default_factory=AblationSettings)
    # worker processes that train a section's independent runs (training seeds, rows) side by side, each with
    # thread_count() // seed_processes torch threads (avlib.parallel); 1: one after the other in the task's own
    # process, as always. The weights' bits follow the threads per process (docs/determinism.md)
    seed_processes: int = 1

    @property
    def name(self) -> str:
        return self.profile

    def to_dict(self) -> dict:
        return asdict(self)

    def checkpoint_dir(self, root: str | Path | None = None) -> Path:
        """Where this profile's checkpoints go: ``<root>/<profile>`` (default: the checkout's ``checkpoints/``)."""
        return Path(root or CHECKOUT / "checkpoints") / self.profile

    def pretrained_checkpoint(self, root: str | Path | None = None) -> Path:
        """The checkpoint of the last pretraining stage, which the other tasks start from."""
        return self.checkpoint_dir(root) / "pretrain" / self.pretrain.stages[-1].name / "checkpoint.pt"


def training_seeds(seed: int, count: int) -> list[int]:
    """The training seeds of a section with ``seeds = count``: ``seed``, ``seed + 1``, ... Training seed ``seed + k``
    changes a row's initialisation and batch order; its data and test set stay those of ``seed``."""
    if count < 1:
        raise ConfigError(f"a section trains with at least one seed, got seeds = {count}")
    return [seed + k for k in range(count)]


def seed_folder(folder: str | Path, seed: int, training_seed: int) -> Path:
    """Where training seed ``training_seed`` of a notebook run with ``seed`` trains: ``folder`` itself for the first
    (the folder a run always had), ``folder/train-seed<t>`` for each further one."""
    return Path(folder) if training_seed == seed else Path(folder) / f"train-seed{training_seed}"


def run_settings(section: Any) -> dict[str, Any]:
    """A section as its training runs store and key it: every field but ``seeds`` (how many seeds a notebook
    trains changes no one seed's run, so raising ``seeds`` resumes the runs already trained)."""
    return {key: value for key, value in asdict(section).items() if key != "seeds"}


# ------------------------------------------------------------------------------------ profiles

_SMOKE_SHIFT = {"fps": LOW_FPS, "sample_rate": 8000, "size": 40, "crop": 32,
                "window": 2.1, "min_shift": 1.0, "max_shift": 2.9}  # the paper's task at half the window

#: The profiles as data: what differs from the paper's settings (the dataclass defaults).
PROFILES: dict[str, dict[str, Any]] = {
    "paper": {
        "description": "real datasets at the paper's settings",
        "is_result": True, "synthetic": False,
        # The official code's shift range (the text's 2.0-5.8 s is UNVERIFIED) and its batch renormalisation
        # after every residual sum and in every U-Net layer (docs/paper.md §2.7, §3, §7.3).
        "pretrain": {"shift": {"min_shift": OFFICIAL_SHIFT[0], "max_shift": OFFICIAL_SHIFT[1]}, "model": {"renorm": True}},
        "separation": {"model": {"unet": {"renorm": True}, "multisensory": {"renorm": True}}},
    },
    "synth": {
        "description": "the synthetic world at toy scale, on a 2-core CPU",
        "is_result": True, "synthetic": True,
        # two training runs side by side at 1 thread each: a quarter off UCF-101's and u-net PIT's training
        # on 2 cores, measured (results/bench/seed_processes.md)
        "seed_processes": 2,
        # The paper's 4.2 s window and 2.0-5.8 s shifts at its low-fps stage's 7.49 fps; 11.025 kHz audio
        # and a quarter of the width so it trains on 2 cores; 40 -> 32 pixel frames and Adam at 1e-3,
        # both measured on the synth world (docs/world.md).
        "pretrain": {
            "shift": {"fps": LOW_FPS, "sample_rate": 11025, "size": 40, "crop": 32},
            "model": {"width": 16, "bn_momentum": 0.1},
            # Scenes only, then talking heads from the second stage (same rate and batch, no reinit): from step 0
            # the talkers kept the network at chance; once it has learnt the scenes it learns them (docs/world.md).
            "stages": [{"name": "shift_lowfps", "fps": LOW_FPS, "batch_size": 16, "steps": 600, "talking_heads": 0.0},
                       {"name": "shift_talkers", "fps": LOW_FPS, "batch_size": 16, "steps": 900, "talking_heads": 0.25}],
            "train": {"optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0, "checkpoint_every": 50,
                      "amp": "none", "channels_last": False, "workers": 0},
            "eval_every": 50, "eval_pairs_per_video": 4, "held_out_scenes": 0.1,
            # a quarter of the clips show a talking head: AudioSet's on-screen speech (docs/world.md)
            "talking_heads": 0.25,
            # the first stage leaves the plateau at chance by step 200-550 on some seeds and not by 1200 on others: an
            # attempt whose training loss is still near ln 2 at the stage's end starts again from other weights; a check
            # at 400 set aside attempts that were leaving it (docs/world.md)
            "restart_at": 600, "restart_loss": 0.67, "restart_window": 100, "restarts": 3,
        },
        # The paper's share of the pretraining (25 k of 650 k) at the last stage's batch; fine-tuned and mapped
        # at 64-pixel frames (4 x 4 conv5 cells; at 32 pixels each of the 2 x 2 cells saw the whole frame and
        # 41 % of the peaks fell in one corner cell; at 64, 16-25 %, docs/world.md), 3 training seeds; 120 sync-only
        # clips: at 60 the interval against the centre prior was +-7 points wide, the difference 7-9 (docs/world.md).
        "cam": {"fine_tune_steps": None, "fine_tune_batch": None, "map_stride": 4, "tile_batch": 8,
                "eval_clips": None, "size": 64, "crop": 64, "seeds": [0, 1, 2], "sync_only_clips": 120,
                "speaker_clips": 20},
        # Adam at 3e-4, batches of 16, 1500 steps: the paper-like SGD at 1e-2 stayed at chance on the
        # world's actions (docs/world.md).
        "ucf101": {
            "window": 2.1, "batch_size": 16,
            "train": {"steps": 1500, "optimizer": "adam", "lr": 3e-4, "lr_milestones": [], "log_every": 10,
                      "checkpoint_every": 250, "amp": "none", "channels_last": False, "workers": 0},
            "test_clips": 5, "eval_every": 250, "curve_videos": 0, "probe_steps": 300, "probe_lr": 1e-2,
            "probe_milestones": [], "in_memory": True, "seeds": 3,
        },
        # Ratio masks, L1 on amplitudes and the mixture's phase: the paper's direct log-magnitude
        # regression learns nothing in a few hundred CPU steps (measured; avlib.tasks.separation). Batches of 8 clips,
        # u-net PIT's: at 4 the full model gained +1.2 dB on-screen in 1000 steps, at 8 +5.7 (one seed, docs/world.md).
        "separation": {
            "model": {"unet": {"width": 8, "bn_momentum": 0.1}, "output": "mask"},
            "features_from_pretrain": True,
            "train": {"steps": 1000, "lr": 2e-3, "lr_milestones": [], "checkpoint_every": 50, "amp": "none", "workers": 0},
            "batch_size": 8, "pit_steps": 250, "pit_batch_size": 8, "test_pairs": 48, "eval_batch": 16,
            "window_multiple": 2, "phase": "mixture", "magnitude_loss": "linear", "seeds": 3,
        },
        "ablations": {
            "steps": 80, "i3d_width": 0.25, "i3d_batch_size": 8, "seeds": 3,
            "i3d_train": {"steps": 150, "lr": 2e-3, "optimizer": "adam", "weight_decay": 1e-5, "grad_clip": 10.0,
                          "checkpoint_every": 50, "log_every": 10},
        },
    },
    "smoke": {
        "description": "a tiny slice of the synthetic world; proves the code runs",
        "is_result": False, "synthetic": True,
        "pretrain": {
            "shift": _SMOKE_SHIFT,
            "model": {"width": 8, "bn_momentum": 0.1},
            "stages": [{"name": "shift_lowfps", "fps": LOW_FPS, "batch_size": 4, "steps": 4, "talking_heads": 0.0},
                       {"name": "shift_talkers", "fps": LOW_FPS, "batch_size": 4, "steps": 6, "talking_heads": 0.25}],
            "train": {"checkpoint_every": 2, "log_every": 2, "device": "cpu", "amp": "none", "channels_last": False,
                      "workers": 0},
            "eval_every": 2, "eval_pairs_per_video": 2, "held_out_scenes": 0.34, "talking_heads": 0.25,
        },
        "cam": {"fine_tune_steps": 2, "fine_tune_batch": 2, "map_stride": 4, "tile_batch": 8, "eval_clips": 2,
                "eval_frame_stride": 30, "bootstrap": 50, "top_frames": 2, "seeds": [0, 1], "sync_only_clips": 2,
                "speaker_clips": 2},
        "ucf101": {
            "window": 1.1, "batch_size": 4,
            "train": {"steps": 3, "lr": 1e-2, "lr_milestones": [2], "log_every": 1, "checkpoint_every": 3,
                      "amp": "none", "channels_last": False, "workers": 0},
            "test_clips": 2, "eval_every": 3, "curve_videos": 4, "probe_steps": 2, "probe_milestones": [],
            "in_memory": True, "seeds": 2,
        },
        # An FFT of 1024 at 8 kHz gives the 512 bins the U-Net's nine halvings need.
        "separation": {
            "model": {"unet": {"width": 4, "bn_momentum": 0.1}},
            "features_from_pretrain": True, "fft_size": 1024,
            "train": {"steps": 2, "lr": 1e-3, "lr_milestones": [], "checkpoint_every": 2, "log_every": 1,
                      "amp": "none", "workers": 0},
            "batch_size": 4, "pit_steps": 2, "pit_batch_size": 2, "test_pairs": 4, "eval_batch": 4,
            "window_multiple": 1, "examples_shown": 1, "seeds": 2,
        },
        "ablations": {
            "steps": 2, "i3d_width": 0.125, "i3d_batch_size": 4, "i3d_test_clips": 1, "seeds": 2,
            "i3d_train": {"steps": 2, "lr": 2e-3, "optimizer": "adam", "weight_decay": 1e-5, "grad_clip": 10.0,
                          "checkpoint_every": 1, "log_every": 2},
        },
    },
}


# ------------------------------------------------------------------------------------ resolving


class ConfigError(ValueError):
    """A profile, key or value that does not fit the config; the message names it."""


def resolve(profile: str, overrides: Mapping[str, Any] | None = None) -> Experiment:
    """The experiment of ``profile`` with ``overrides`` (dotted keys -> values or literal strings)."""
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; use one of {sorted(PROFILES)}")
    experiment = _apply(Experiment(profile=profile, description="", is_result=True, synthetic=False),
                        PROFILES[profile], "")
    for key, value in (overrides or {}).items():
        experiment = set_key(experiment, key, value)
    return _derive(experiment)


def _derive(experiment: Experiment) -> Experiment:
    """Fill the fields that follow from others (one rule each)."""
    pretrain = experiment.pretrain
    shift = pretrain.shift
    model = replace(pretrain.model, num_frames=shift.num_frames, frame_size=shift.crop, num_samples=shift.num_samples)
    pretrain = replace(pretrain, model=model)
    ends = [stage.steps for stage in pretrain.stages]
    if any(later <= earlier for earlier, later in zip([0, *ends], ends)):  # Stage.steps are global ends
        raise ConfigError(f"pretrain.stages: each stage must end after the one before (at a global step > 0), got steps {ends}")
    last = pretrain.stages[-1]
    cam = experiment.cam
    if cam.fine_tune_steps is None:
        cam = replace(cam, fine_tune_steps=round(last.steps * PAPER_CAM_STEPS / PAPER_PRETRAIN_STEPS))
    if cam.fine_tune_batch is None:
        cam = replace(cam, fine_tune_batch=last.batch_size)
    if cam.size is None or cam.crop is None:  # the pretraining's frames, or its crop's share of a larger size
        size = cam.size or shift.size
        cam = replace(cam, size=size, crop=cam.crop or min(size, round(size * shift.crop / shift.size)))
    if cam.crop > cam.size:  # checked once every override is in, so size and crop may be changed in either order
        raise ConfigError(f"cam.crop ({cam.crop}) must be <= cam.size ({cam.size})")
    separation = experiment.separation
    if separation.features_from_pretrain:
        separation = replace(separation, model=replace(
            separation.model, multisensory=model, fps=shift.fps, size=shift.size, crop=shift.crop,
            spectral=SpectralConfig.for_sample_rate(shift.sample_rate, fft_size=separation.fft_size,
                                                    num_frames=separation.model.spectral.num_frames)))
    if experiment.seed_processes < 1:
        raise ConfigError(f"seed_processes must be at least 1, got {experiment.seed_processes}")
    for name in ("ucf101", "separation", "ablations"):
        if getattr(experiment, name).seeds < 1:
            raise ConfigError(f"{name}.seeds must be at least 1, got {getattr(experiment, name).seeds}")
    return replace(experiment, pretrain=pretrain, cam=cam, separation=separation)


def set_key(config: Any, key: str, value: Any) -> Any:
    """``config`` with the dotted ``key`` set to ``value`` (a string is parsed as a Python literal)."""
    head, _, rest = key.partition(".")
    if isinstance(config, tuple) and not is_dataclass(config):
        if not head.isdigit() or int(head) >= len(config):
            raise ConfigError(f"{key!r}: index {head!r} is not in a tuple of {len(config)}")
        items = list(config)
        items[int(head)] = set_key(items[int(head)], rest, value) if rest else _coerce(value, type(items[int(head)]), key)
        return tuple(items)
    if not is_dataclass(config):
        raise ConfigError(f"{key!r}: {type(config).__name__} has no fields")
    hints = _hints(type(config))
    if head not in hints:
        raise ConfigError(f"unknown key {head!r} in {type(config).__name__}; keys: {', '.join(hints)}")
    current = getattr(config, head)
    if rest:
        if current is None:
            current = _default_of(hints[head])
        return replace(config, **{head: set_key(current, rest, value)})
    return replace(config, **{head: _coerce(value, hints[head], head)})


def flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    """Every leaf of ``config`` as a dotted key (the keys that :func:`set_key` takes)."""
    if is_dataclass(config):
        items = [(item.name, getattr(config, item.name)) for item in fields(config)]
    elif isinstance(config, tuple) and config and is_dataclass(config[0]):
        items = [(str(index), value) for index, value in enumerate(config)]
    else:
        return {prefix: config}
    out: dict[str, Any] = {}
    for name, value in items:
        out.update(flatten(value, f"{prefix}.{name}" if prefix else name))
    return out


def parse_assignments(items: list[str]) -> dict[str, str]:
    """``["a.b=1", "c=x"]`` -> ``{"a.b": "1", "c": "x"}``; a malformed item raises :class:`ConfigError`."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not key=value")
        out[key.strip()] = value.strip()
    return out


def _apply(config: Any, data: Mapping[str, Any], where: str) -> Any:
    """``config`` with the nested ``data`` applied (a list of dicts replaces a tuple of dataclasses)."""
    hints = _hints(type(config))
    changes = {}
    for name, value in data.items():
        if name not in hints:
            raise ConfigError(f"{where or 'profile'}: unknown key {name!r} in {type(config).__name__}")
        current = getattr(config, name)
        kind = hints[name]
        if isinstance(value, Mapping):
            base = current if current is not None else _default_of(kind)
            changes[name] = _apply(base, value, f"{where}.{name}" if where else name)
        elif isinstance(value, list) and value and isinstance(value[0], Mapping):
            element = _tuple_element(kind)
            changes[name] = tuple(_apply(_bare(element), item, f"{where}.{name}") for item in value)
        else:
            changes[name] = _coerce(value, kind, name)
    return replace(config, **changes)


def _bare(cls: type) -> Any:
    """An instance of ``cls`` with required fields filled by zero values (every one is then set by data)."""
    return _construct(cls, {})


def _construct(cls: type, values: dict) -> Any:
    """An instance of ``cls`` from ``values`` and its defaults, required fields left at zero values
    (no validation: :func:`_apply` validates once every value is set)."""
    instance = object.__new__(cls)
    for item in fields(cls):
        if item.name in values:
            value = values[item.name]
        elif item.default is not dataclasses.MISSING:
            value = item.default
        elif item.default_factory is not dataclasses.MISSING:
            value = item.default_factory()
        else:
            value = _zero(item.type)
        object.__setattr__(instance, item.name, value)
    return instance


def _zero(kind: Any) -> Any:
    return {"str": "", "int": 0, "float": 0.0}.get(kind if isinstance(kind, str) else getattr(kind, "__name__", ""), None)


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _default_of(kind: Any) -> Any:
    """A default instance of the dataclass inside ``kind`` (e.g. ``TrainConfig | None``)."""
    for candidate in typing.get_args(kind) or (kind,):
        if is_dataclass(candidate):
            return _bare(candidate)
    raise ConfigError(f"no dataclass in {kind}")


def _tuple_element(kind: Any) -> type:
    for arg in typing.get_args(kind):
        if is_dataclass(arg):
            return arg
    raise ConfigError(f"{kind} is not a tuple of dataclasses")


def _coerce(value: Any, kind: Any, key: str) -> Any:
    """``value`` (a literal string from the command line, or data) as the type ``kind`` asks for."""
    if isinstance(value, str) and not _accepts(kind, str):
        text = value.strip()
        if text.lower() in ("none", "null"):
            value = None
        elif text.lower() in ("true", "false"):
            value = text.lower() == "true"
        else:
            try:
                value = ast.literal_eval(text)
            except (ValueError, SyntaxError) as error:
                raise ConfigError(f"{key}={value!r} is not a Python literal") from error
    options = typing.get_args(kind) if _is_union(kind) else (kind,)
    if value is None:
        if type(None) in options:
            return None
        raise ConfigError(f"{key} cannot be None")
    for option in options:
        origin = typing.get_origin(option) or option
        if option is type(None):
            continue
        if origin is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if origin is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if origin is bool and isinstance(value, bool):
            return value
        if origin is str and isinstance(value, str):
            return value
        if origin in (tuple, list) and isinstance(value, (list, tuple)):
            element = (typing.get_args(option) or (Any,))[0]
            items = [item if element is Any else _coerce(item, element, key) for item in value]
            return tuple(items) if origin is tuple else items
    raise ConfigError(f"{key}={value!r} is not a {_type_name(kind)}")


def _accepts(kind: Any, cls: type) -> bool:
    options = typing.get_args(kind) if _is_union(kind) else (kind,)
    return any((typing.get_origin(option) or option) is cls for option in options)


def _is_union(kind: Any) -> bool:
    return typing.get_origin(kind) in (typing.Union, types.UnionType)


def _type_name(kind: Any) -> str:
    return getattr(kind, "__name__", str(kind))
