"""The separation ablations of notebook 05: one row per variant, the same test list, the same budget.

The paper argues that its separation works because of the multisensory features (docs/paper.md §7.6, §7.8, §12).
Each argument is a row here, trained like the full model of notebook 04 and scored on its test list:

=========== ================================================================ =====================
row         what changes against ``full``                                      official name
=========== ================================================================ =====================
full        nothing: the self-supervised multisensory net, fine-tuned          ``full``
i3d         I3D features, supervised on action classes, replace it             ``net_style = 'i3d'``
no_audio    the multisensory net with its audio stream removed                 (summary, docs/paper.md §12)
static      the middle frame repeated over the whole clip                      ``static``
scratch     the multisensory net from random initialisation                    ``scratch``
unet_pit    no video; permutation-invariant loss (notebook 04's baseline)      ``unet_pit``
=========== ================================================================ =====================

**No audio stream.** The shift task cannot be learned without audio (its labels only say whether the
sound is aligned, and each video appears with both labels), so "pretrained without the audio stream"
can only mean: the pretrained network with its audio stream removed (``use_sound = False``: the fused
audio features are zero, the audio stream is not trained), then trained for separation like ``full``. The
U-Net still hears the spectrogram; what goes is the audio inside the multisensory features.

**I3D.** ``synth``/``smoke``: the I3D of :mod:`avlib.models.i3d` at the multisensory net's share of the
paper's width, trained supervised on the synthetic world's action classes (split 1 of the UCF-style
``actions`` part: the Kinetics counterpart) for ``i3d_steps``. ``paper``: a converted kinetics-i3d RGB
checkpoint (``AblationSettings.i3d_checkpoint``, default ``<data_root>/i3d/rgb_imagenet.npz``).

**Same budget.** Every row with video trains ``steps`` steps of ``SeparationSettings.batch_size`` clips
from the same batches (same seed) and the same optimiser. ``full`` and ``unet_pit`` are notebook 04's
checkpoints when their settings match: ``unet_pit`` always is (04's own budget, its mixtures per batch),
``full`` only when ``steps`` equals 04's; otherwise ``full`` is retrained at the ablation budget.

**Directions.** Each row's on-screen SDR is compared with ``full``'s pair by pair (Student-t interval of
the mean difference); the gender claim compares same- with different-gender pairs (Welch interval).
The verdict is the project's one rule (:func:`avlib.report.claims.verdict`): *holds* when the interval lies
on the paper's side of zero, *opposite* when it lies on the other side, *not resolved* when it contains zero.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avlib.hashing import file_digest, file_stamp, json_key
from avlib.models.i3d import I3D, I3DConfig, I3DFeatures, load_converted
from avlib.models.multisensory import MultisensoryNet, normalize_frames
from avlib.models.unet import MultisensoryFeatures, SeparationNet
from avlib.report.claims import CLAIMS_BY_KEY, PaperClaim, verdict
from avlib.separation import SeparationSettings, evaluate
from avlib.stats import confidence_interval, welch_interval

# ------------------------------------------------------------------------------------------ rows


@dataclass(frozen=True)
class Variant:
    """One row: the feature network, how it starts, and what it sees and hears."""

    name: str
    title: str
    features: str  # "multisensory", "i3d" or "none"
    initialisation: str  # "self-supervised (shift)", "supervised (actions)" (paper profile: Kinetics), "random"
    use_sound: bool = True  # the multisensory net's audio stream (False: removed)
    static_frames: bool = False  # the middle frame repeated (official ``static``)
    pit: bool = False  # permutation-invariant loss and oracle assignment (audio only)
    claim: str | None = None  # the avlib.report.claims claim this row tests against ``full``


VARIANTS: tuple[Variant, ...] = (
    Variant("full", "full: multisensory features, self-supervised init", "multisensory", "self-supervised (shift)"),
    Variant("i3d", "I3D features (supervised on actions)", "i3d", "supervised (actions)", claim="i3d_features"),
    Variant("no_audio", "multisensory net without its audio stream", "multisensory", "self-supervised (shift)",
            use_sound=False, claim="no_audio_stream"),
    Variant("static", "single frame (middle frame repeated)", "multisensory", "self-supervised (shift)",
            static_frames=True, claim="single_frame"),
    Variant("scratch", "no self-supervised initialisation", "multisensory", "random", claim="no_pretraining"),
    Variant("unet_pit", "audio-only u-net PIT (notebook 04), oracle assignment", "none", "random", pit=True,
            claim="unet_pit_vs_full"),
)
VARIANT_BY_NAME = {variant.name: variant for variant in VARIANTS}


@dataclass(frozen=True)
class AblationSettings:
    """Notebook 05's settings for one profile (the separation's own are :func:`avlib.separation.settings_for`'s).

    steps: separation training steps of every row with video (batch: ``SeparationSettings.batch_size``).
    i3d_width: I3D channels as a fraction of the published network's (the multisensory net's share).
    i3d_steps, i3d_batch_size, i3d_lr: supervised I3D training on the action classes (Adam); 0 steps: load
        ``i3d_checkpoint`` instead (the paper profile's converted Kinetics weights).
    i3d_checkpoint: a converted kinetics-i3d ``.npz`` (:func:`avlib.models.i3d.load_converted`); empty:
        ``<data_root>/i3d/rgb_imagenet.npz``.
    i3d_test_clips: clips per action test video scored for the I3D's accuracy.
    """

    steps: int
    i3d_width: float = 1.0
    i3d_steps: int = 0
    i3d_batch_size: int = 8
    i3d_lr: float = 2e-3
    i3d_checkpoint: str = ""
    i3d_test_clips: int = 2

    def to_dict(self) -> dict:
        return asdict(self)


def settings_for(profile: str) -> AblationSettings:
    """``synth``: 80 steps per row (about 0.7 s a step of 4 clips on a quiet 2-core CPU: 5 rows with video in
    about 5 minutes), I3D at a quarter of the width (as the multisensory net: 0.79 M parameters against its
    2.3 M, the paper's 12 M against 36 M), 150 steps of 8 action clips (about 0.35 s each). ``paper``: 04's
    160 k steps, so ``full`` is 04's model; Kinetics I3D from a converted checkpoint."""
    if profile == "paper":
        return AblationSettings(steps=160_000)
    if profile == "synth":
        return AblationSettings(steps=80, i3d_width=0.25, i3d_steps=150, i3d_batch_size=8, i3d_lr=2e-3)
    if profile == "smoke":
        return AblationSettings(steps=2, i3d_width=0.125, i3d_steps=2, i3d_batch_size=4, i3d_test_clips=1)
    raise ValueError(f"unknown profile {profile!r}; use smoke, synth or paper")


def run_key(*parts: object) -> str:
    """A short key of settings and input checkpoints: other settings or inputs train into another folder."""
    return json_key(parts)


# ------------------------------------------------------------------------------------------ I3D


class VideoClassifierLoss:
    """Softmax cross-entropy of the I3D's logits on a clip batch (``frames``, ``label``), and its accuracy."""

    def __call__(self, model: nn.Module, batch: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        logits = model(normalize_frames(batch["frames"]))["Logits"].float()
        loss = F.cross_entropy(logits, batch["label"])
        return loss, {"accuracy": (logits.argmax(1) == batch["label"]).float().mean().item()}


class _VideoOnly(nn.Module):
    """The I3D with :func:`avlib.tasks.ucf101.evaluate`'s call signature (audio ignored)."""

    def __init__(self, net: I3D):
        super().__init__()
        self.net = net

    def forward(self, frames: Tensor, audio: Tensor, has_audio: Tensor | None = None) -> Tensor:
        return self.net(frames)["Logits"]


def action_clips(separation: SeparationSettings):
    """The action clips the I3D learns from: the separation's frames (rate, size, crop, frame count)."""
    from avlib.data.ucf101 import ActionClipFormat

    model = separation.model
    return ActionClipFormat(window=(model.num_video_frames + 0.5) / model.fps, fps=model.fps,
                      sample_rate=model.spectral.sample_rate, size=model.size, crop=model.crop, flip=True)


def ensure_i3d(profile: str, ablation: AblationSettings, separation: SeparationSettings, checkpoints: str | Path, *,
               seed: int = 0, data_root: str | Path = "", device: str = "auto", resume: bool = True) -> dict:
    """The I3D feature network of the profile: trained on the action classes, or loaded (paper).

    Returns ``net`` (an :class:`I3D`), ``checkpoint`` (its file), ``source`` (what it was trained on),
    ``history`` and, when trained here, ``accuracy`` (clip accuracy on the actions' test split of split 1),
    ``test_videos``, ``classes`` and ``sound_only_classes`` (classes only their sound tells apart).
    """
    from avlib.profiles import get_profile

    if ablation.i3d_steps <= 0:
        path = Path(ablation.i3d_checkpoint or Path(data_root or ".") / "i3d" / "rgb_imagenet.npz")
        return {"net": load_converted(path), "checkpoint": path, "history": {},
                "source": f"converted kinetics-i3d checkpoint {path.name} (Kinetics-400, supervised)"}
    from avlib.data.sources import action_sources
    from avlib.data.ucf101 import ClipBatches
    from avlib.tasks.ucf101 import evaluate as evaluate_classifier
    from avlib.train import TrainConfig, fit

    if not get_profile(profile).synthetic:
        raise ValueError(f"the {profile} profile has no synthetic actions to train I3D on; set i3d_steps = 0 and i3d_checkpoint")
    clips = action_clips(separation)
    actions = action_sources(synthetic=True, world=profile, seed=seed, data_root=data_root, clip_format=clips, split=1)
    split, train_source, test_source = actions.split, actions.train, actions.test
    config = I3DConfig(num_classes=split.num_classes, width=ablation.i3d_width, bn_momentum=0.1)
    key = run_key(asdict(config), asdict(clips), ablation.to_dict(), seed)
    out_dir = Path(checkpoints) / f"i3d-actions-{key}"
    torch.manual_seed(seed)
    net = I3D(config)
    train = TrainConfig(steps=ablation.i3d_steps, lr=ablation.i3d_lr, optimizer="adam", weight_decay=1e-5, grad_clip=10.0,
                        checkpoint_every=max(1, ablation.i3d_steps // 3), log_every=max(1, min(10, ablation.i3d_steps)),
                        seed=seed, device=device, out_dir=str(out_dir))
    batches = ClipBatches(train_source, ablation.i3d_batch_size, seed=seed)
    history = fit(net, VideoClassifierLoss(), batches, train, resume=resume,
                  run_config={"i3d": ablation.to_dict(), "clips": asdict(clips), "profile": profile})
    run_device = next(net.parameters()).device
    evaluation = evaluate_classifier(_VideoOnly(net), test_source, ablation.i3d_test_clips, split.classes, device=run_device)
    pairs = actions.sound_only_pairs
    return {"net": net.eval(), "checkpoint": out_dir / "checkpoint.pt", "history": history,
            "source": f"synthetic actions, split 1 ({len(split.train)} training videos, {split.num_classes} classes), "
                      f"{ablation.i3d_steps} steps of {ablation.i3d_batch_size} clips",
            "accuracy": evaluation.clip_accuracy, "test_videos": len(split.test), "classes": split.num_classes,
            "sound_only_classes": len({name for pair in pairs for name in pair} & set(split.classes))}


# ------------------------------------------------------------------------------------------ models


def variant_config(variant: Variant, separation: SeparationSettings, i3d: I3D | None = None):
    """The :class:`~avlib.models.unet.SeparationConfig` of a row."""
    model = separation.model
    if variant.features == "none":
        return separation.pit_model
    if variant.features == "i3d":
        if i3d is None:
            raise ValueError("the i3d row needs the I3D network (ensure_i3d)")
        return replace(model, video="custom", custom_channels=i3d.config.feature_channels)
    return replace(model, multisensory=replace(model.multisensory, use_sound=variant.use_sound),
                   static_frames=variant.static_frames)


def build_variant(variant: Variant | str, separation: SeparationSettings, pretrained: str | Path | None = None,
                  i3d: I3D | None = None, seed: int = 0) -> SeparationNet:
    """A row's separation model, its feature network initialised as the row says; the U-Net from ``seed``."""
    from avlib.models.multisensory import from_checkpoint as multisensory_from_checkpoint

    variant = VARIANT_BY_NAME[variant] if isinstance(variant, str) else variant
    config = variant_config(variant, separation, i3d)
    torch.manual_seed(seed)
    if variant.features == "none":
        return SeparationNet(config)
    if variant.features == "i3d":
        return SeparationNet(config, I3DFeatures(i3d)).train()
    if variant.initialisation == "random":
        net = MultisensoryNet(config.multisensory)
    else:
        if pretrained is None:
            raise ValueError(f"the {variant.name} row starts from the pretrained multisensory checkpoint; pass pretrained")
        net = multisensory_from_checkpoint(pretrained, use_sound=variant.use_sound)
        if net.config.width != config.multisensory.width:
            raise ValueError(f"{pretrained} holds a multisensory net of width {net.config.width}, the separation config "
                             f"asks for width {config.multisensory.width}")
    if not variant.use_sound:  # removed: it feeds nothing, so it is not trained either
        net.audio.requires_grad_(False)
        net.fusion.audio_conv5_1.requires_grad_(False)
    return SeparationNet(config, MultisensoryFeatures(net)).train()


def checkpoint_folder(variant: Variant, separation: SeparationSettings, ablation: AblationSettings, checkpoints: str | Path,
                      inputs: Sequence[str | Path] = (), seed: int = 0) -> Path:
    """Where a row trains: notebook 04's ``unet_pit`` and (at 04's budget) ``full``, else a keyed folder.

    ``inputs``: checkpoints the row starts from (pretrained net, I3D); a new one starts a new run.
    """
    checkpoints = Path(checkpoints)
    if variant.name == "unet_pit" or (variant.name == "full" and ablation.steps == separation.steps):
        return checkpoints / variant.name
    key = run_key(separation.to_dict(), ablation.steps, asdict(variant), [file_stamp(path) for path in inputs], seed)
    return checkpoints / "ablations" / f"{variant.name}-{key}"


def train_variant(model: SeparationNet, variant: Variant, train_clips, separation: SeparationSettings,
                  ablation: AblationSettings, out_dir: str | Path, *, seed: int = 0, device: str = "auto",
                  resume: bool = True, run_config: dict | None = None) -> dict:
    """Train a row (or restore its finished run): ``unet_pit`` exactly as notebook 04, the others for ``steps``."""
    from avlib.data.mixtures import MixtureBatches
    from avlib.separation import train

    if variant.pit:
        batches = MixtureBatches(train_clips, separation.pit_batch_size, seed=seed + 1, both_orders=False)
        return train(model, batches, separation, out_dir, pit=True, seed=seed, device=device, resume=resume,
                     run_config=run_config)
    return train(model, MixtureBatches(train_clips, separation.batch_size, seed=seed), separation, out_dir, steps=ablation.steps,
                 seed=seed, device=device, resume=resume, run_config={"variant": asdict(variant), **(run_config or {})})


# ------------------------------------------------------------------------------------------ scores


def cached_scores(name: str, model: SeparationNet, checkpoint: str | Path, test_batch: Mapping[str, Tensor],
                  test_list: pd.DataFrame, cache_dir: str | Path, *, phase: str, order_free: bool = False,
                  batch_size: int = 8, with_mixture: bool = True, recompute: bool = False) -> pd.DataFrame:
    """Per-pair scores of one row (and, ``with_mixture``, of the mixture), read from ``cache_dir`` when the
    same checkpoint (by content), test list and phase were scored before; otherwise
    :func:`avlib.separation.evaluate` with PESQ (STOI, the slowest metric, is not needed), written there.
    The row's system is called ``name``. The mixture's scores are the same for every row: score them with one
    row only. A cached table holding more (the mixture, STOI) serves a call that asks for less."""
    from avlib.files import atomic_path

    key = {"checkpoint": file_digest(checkpoint, "sha1"), "test_list": hashlib.sha1(test_list.to_csv(index=False).encode()).hexdigest(),
           "phase": phase, "order_free": order_free, "format": 1}
    cache_dir = Path(cache_dir)
    table_path, key_path = cache_dir / f"{name}.csv", cache_dir / f"{name}.json"
    if not recompute and table_path.exists() and key_path.exists():
        try:
            if json.loads(key_path.read_text()) == key:
                cached = pd.read_csv(table_path)
                if not with_mixture or (cached.system == "mixture").any():
                    return cached
        except json.JSONDecodeError:
            pass  # a damaged key: score again
    scores = evaluate({name: (model, order_free, phase)}, test_batch, test_list, batch_size, speech_metrics=True,
                      score_mixture=with_mixture, stoi=False)
    cache_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(table_path) as tmp:
        scores.to_csv(tmp, index=False)
    with atomic_path(key_path) as tmp:
        tmp.write_text(json.dumps(key, indent=1) + "\n")
    return scores


def combine_scores(per_row: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """One table of every row's per-pair scores, with the mixture's once (from the first row that has them)."""
    parts = [scores[scores.system == name] for name, scores in per_row.items()]
    mixtures = [scores[scores.system == "mixture"] for scores in per_row.values() if (scores.system == "mixture").any()]
    if not mixtures:
        raise ValueError("no row's scores hold the mixture's; score one row with_mixture")
    return pd.concat([*parts, mixtures[0]], ignore_index=True)


# ------------------------------------------------------------------------------------------ directions

SUBSETS = {"all": None, "same gender": True, "different gender": False}


def subset(scores: pd.DataFrame, name: str) -> pd.DataFrame:
    """The scores of ``all``, ``same gender`` or ``different gender`` test pairs."""
    same = SUBSETS[name]
    return scores if same is None else scores[scores["same_gender"].astype(bool) == same]


def paired_difference(scores: pd.DataFrame, system: str, reference: str = "full", metric: str = "sdr",
                      source: str = "on_screen") -> pd.Series:
    """Per test pair, ``system``'s ``metric`` minus ``reference``'s (pairs both scored)."""
    rows = scores[scores.source == source].pivot_table(index="pair", columns="system", values=metric)
    return (rows[system] - rows[reference]).dropna()


@dataclass(frozen=True)
class ClaimDifference:
    """One row's paper claim against ``full``: the per-pair difference's mean, 95 % interval and pairs, and the verdict."""

    name: str
    claim: PaperClaim
    mean: float
    low: float
    high: float
    pairs: int

    @property
    def verdict(self) -> str:
        return verdict(self.low, self.high, self.claim.expected_sign)


def against_full(scores: pd.DataFrame, rows: Sequence[str], metric: str = "sdr", source: str = "on_screen") -> list[ClaimDifference]:
    """Every row that has a paper claim, compared with ``full`` pair by pair (Student-t interval of the mean)."""
    out = []
    for name in rows:
        variant = VARIANT_BY_NAME[name]
        if variant.claim is None:
            continue
        differences = paired_difference(scores, name, "full", metric, source)
        mean, low, high = confidence_interval(differences)
        out.append(ClaimDifference(name, CLAIMS_BY_KEY[variant.claim], mean, low, high, len(differences)))
    return out


def direction_rows(scores: pd.DataFrame, rows: Sequence[str], titles: Mapping[str, str], metric: str = "sdr",
                   source: str = "on_screen") -> pd.DataFrame:
    """Each row's paper claim against ``full`` (paired, :func:`against_full`), then the gender claim for every
    row (Welch).

    Columns: row, claim, paper's direction, its source and status, compared, difference (dB), its 95 %
    interval, pairs and the verdict (:func:`avlib.report.claims.verdict`)."""
    out = [_direction_row(titles[row.name], row.claim, f"{row.name} - full, per pair", row.mean, row.low, row.high, row.pairs)
           for row in against_full(scores, rows, metric, source)]
    gender = CLAIMS_BY_KEY["same_gender"]
    for name in rows:
        chosen = scores[(scores.system == name) & (scores.source == source)]
        same, different = (subset(chosen, kind)[metric] for kind in ("same gender", "different gender"))
        difference, low, high = welch_interval(same, different)
        out.append(_direction_row(titles[name], gender, "same - different gender (Welch)", difference, low, high,
                                  f"{len(same)} + {len(different)}"))
    return pd.DataFrame(out)


def _direction_row(title: str, claim: PaperClaim, compared: str, difference: float, low: float, high: float, pairs) -> dict:
    return {"row": title, "claim": claim.claim, "paper's direction": claim.direction,
            "paper source": f"{claim.source} ({claim.status})", "compared": compared, "difference dB": difference,
            "95 % interval": f"{low:.2f} to {high:.2f}", "pairs": pairs,
            "direction held?": verdict(low, high, claim.expected_sign)}


def summary_table(scores: pd.DataFrame, rows: Sequence[str], titles: Mapping[str, str],
                  metrics: Sequence[str] = ("sdr", "sir", "sar", "pesq")) -> pd.DataFrame:
    """Mean and 95 % interval of each metric, per row, source and subset of the test pairs (long form).

    Columns: row, system, source, mixtures (all / same gender / different gender), pairs, and per metric
    ``<metric>``, ``<metric>_low``, ``<metric>_high``."""
    from avlib.metrics import summarize

    parts = []
    for kind in SUBSETS:
        chosen = subset(scores, kind)
        if chosen.empty:  # e.g. no same-gender pair where a split has one speaker of each gender
            continue
        part = summarize(chosen, metrics=metrics)
        part.insert(2, "mixtures", kind)
        parts.append(part)
    table = pd.concat(parts, ignore_index=True).rename(columns={"n": "pairs"})
    order = {name: i for i, name in enumerate([*rows, "mixture"])}
    table = table[table.system.isin(order)]
    table["row"] = table.system.map({**titles, "mixture": "mixture (input, lower bound)"})
    table = table.sort_values(["system", "source", "mixtures"], key=lambda column: column.map(
        order if column.name == "system" else {value: i for i, value in enumerate(
            ["on_screen", "off_screen"] if column.name == "source" else list(SUBSETS))}))
    return table[["row", "system", "source", "mixtures", "pairs", *[c for c in table.columns
                                                                     if c.split("_")[0] in metrics]]].reset_index(drop=True)


def readable_table(summary: pd.DataFrame, metrics: Sequence[str] = ("sdr", "sir", "sar", "pesq"),
                   directions: pd.DataFrame | None = None) -> pd.DataFrame:
    """The summary with each metric as "mean [low, high]", one column per (source, metric).

    With ``directions`` (:func:`direction_rows`), each row's line on all mixtures gets its claim against
    ``full`` and the verdict, its same-gender line the gender claim's."""
    rows = []
    for (row, mixtures), group in summary.groupby(["row", "mixtures"], sort=False):
        record = {"row": row, "mixtures": mixtures, "pairs": int(group["pairs"].iloc[0])}
        for source in ("on_screen", "off_screen"):
            line = group[group.source == source]
            for metric in metrics:
                if line.empty or metric not in line:
                    continue
                mean, low, high = (float(line[f"{metric}{suffix}"].iloc[0]) for suffix in ("", "_low", "_high"))
                record[f"{source.replace('_', '-')} {metric.upper()}"] = (
                    f"{mean:.2f} [{low:.2f}, {high:.2f}]" if np.isfinite(low) else f"{mean:.2f}")
        if directions is not None and mixtures in ("all", "same gender"):
            gender = directions.compared.str.startswith("same - different")
            chosen = directions[(directions.row == row) & (gender if mixtures == "same gender" else ~gender)]
            if len(chosen):
                line = chosen.iloc[0]
                record["paper's direction"] = line["claim"] + ": " + line["paper's direction"]
                record["ours"] = f"{line['difference dB']:+.2f} dB [{line['95 % interval']}]: {line['direction held?']}"
        rows.append(record)
    table = pd.DataFrame(rows)
    for column in ("paper's direction", "ours"):
        if column in table:
            table[column] = table[column].fillna("")
    return table
