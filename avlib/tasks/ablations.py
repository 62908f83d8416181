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

**I3D.** Synthetic profiles: the I3D of :mod:`avlib.models.i3d` at the multisensory net's share of the
paper's width, trained supervised on the synthetic world's action classes (split 1 of the UCF-style
``actions`` part: the Kinetics counterpart) with ``ablations.i3d_train``. ``i3d_train = None`` (the paper
profile): a converted kinetics-i3d RGB checkpoint (``ablations.i3d_checkpoint``, default
``<data_root>/i3d/rgb_imagenet.npz``).

**Same budget.** Every row with video trains ``ablations.steps`` steps of ``separation.batch_size`` clips
from the same batches (same seed) with the separation's optimiser (``separation.train``). ``full`` and
``unet_pit`` are notebook 04's checkpoints when their settings match: ``unet_pit`` always is (04's own
budget, its mixtures per batch), ``full`` only when ``steps`` equals 04's; otherwise ``full`` is retrained
at the ablation budget.

**Seeds.** Every row, the I3D included, trains ``ablations.seeds`` times (training seeds ``seed``, ``seed + 1``,
...: initialisation and batch order); the data, the test list and the pretrained network stay ``seed``'s.

**Directions.** Each row's on-screen SDR is compared with ``full``'s trained with the same seed, pair by pair:
the (seeds x pairs) differences give an interval that counts seed and pair variance
(:func:`avlib.stats.seed_interval`; Student-t over pairs for one seed); the gender claim compares same- with
different-gender pairs, unpaired by pair but paired by seed (:func:`avlib.stats.seed_welch_interval`).
The verdict is the project's one rule (:func:`avlib.report.claims.verdict`): *holds* when the interval lies
on the paper's side of zero, *opposite* when it lies on the other side, *not resolved* when it contains zero.

:func:`run` does all of it (data, I3D, every row's training and scores); ``python -m avlib.tasks.ablations
--profile smoke`` runs it from a shell and writes the tables beside ``summary.json``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avlib.config import AblationSettings, Experiment, SeparationSettings, run_settings, seed_folder, training_seeds
from avlib.data.mixtures import make_test_list
from avlib.hashing import file_digest, file_stamp, json_key
from avlib.metrics import score_separation as evaluate
from avlib.models.i3d import I3D, I3DConfig, I3DFeatures, load_converted
from avlib.models.multisensory import MultisensoryNet, normalize_frames
from avlib.models.unet import MultisensoryFeatures, SeparationConfig, SeparationNet
from avlib.report.claims import CLAIMS_BY_KEY, PaperClaim, verdict
from avlib.stats import interval_over_seeds, seed_spread, seed_welch_interval, welch_interval
from avlib.tasks.separation import ensure_test_list, mixture_config, pit_config, train
from avlib.train import fit, loss_end_label, resolve_device

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
#: The I3D row's title when its network is the converted Kinetics checkpoint (``i3d_train = None``).
KINETICS_I3D_TITLE = "I3D features (supervised on Kinetics)"


def run_key(*parts: object) -> str:
    """A short key of settings and input checkpoints: other settings or inputs train into another folder."""
    return json_key(parts)


def seed_part(seed: int, training_seed: int) -> tuple[int, ...]:
    """What a run key adds for a training seed: nothing for the first (``seed`` itself, the key a run always had),
    the training seed for each further one."""
    return () if training_seed == seed else (training_seed,)


# ------------------------------------------------------------------------------------------ separation pieces


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


def ensure_i3d(experiment: Experiment, checkpoints: str | Path, *, seed: int = 0, data_root: str | Path = "",
               device: str = "auto", resume: bool = True, training_seed: int | None = None, actions=None,
               score: bool = True) -> dict:
    """The experiment's I3D feature network: trained on the action classes (``ablations.i3d_train``) with
    ``training_seed`` (default ``seed``; the actions are ``seed``'s world), or loaded from the converted
    checkpoint when ``i3d_train`` is None. ``actions``: the action sources already loaded for these clips
    (:func:`avlib.data.sources.action_sources`), shared by every training seed.

    Returns ``net`` (an :class:`I3D`), ``checkpoint`` (its file), ``source`` (what it was trained on),
    ``history`` and, when trained here, ``accuracy`` (clip accuracy on the actions' test split of split 1),
    ``test_videos``, ``classes`` and ``sound_only_classes`` (classes only their sound tells apart). ``score=False``
    only trains (a worker process's job): ``net``, ``checkpoint`` and ``history``.
    """
    ablation, separation = experiment.ablations, experiment.separation
    if ablation.i3d_train is None:
        path = Path(ablation.i3d_checkpoint or Path(data_root or ".") / "i3d" / "rgb_imagenet.npz")
        return {"net": load_converted(path), "checkpoint": path, "history": {},
                "source": f"converted kinetics-i3d checkpoint {path.name} (Kinetics-400, supervised)"}
    from avlib.data.sources import action_sources
    from avlib.data.ucf101 import ClipBatches
    from avlib.metrics import evaluate_classifier

    if not experiment.synthetic:
        raise ValueError(f"the {experiment.profile} profile has no synthetic actions to train I3D on; "
                         "set ablations.i3d_train=None and ablations.i3d_checkpoint")
    clips = action_clips(separation)
    if actions is None:
        actions = action_sources(synthetic=True, world=experiment.profile, seed=seed, data_root=data_root,
                                 clip_format=clips, split=1)
    training_seed = seed if training_seed is None else training_seed
    split, train_source, test_source = actions.split, actions.train, actions.test
    config = I3DConfig(num_classes=split.num_classes, width=ablation.i3d_width, bn_momentum=0.1)
    key = run_key(asdict(config), asdict(clips), run_settings(ablation), seed, *seed_part(seed, training_seed))
    out_dir = Path(checkpoints) / f"i3d-actions-{key}"
    torch.manual_seed(training_seed)
    net = I3D(config)
    train = replace(ablation.i3d_train, seed=training_seed, device=device, out_dir=str(out_dir))
    batches = ClipBatches(train_source, ablation.i3d_batch_size, seed=training_seed)
    history = fit(net, VideoClassifierLoss(), batches, train, resume=resume,
                  run_config={"ablations": run_settings(ablation), "clips": asdict(clips), "profile": experiment.profile,
                              "seed": training_seed})
    if not score:
        return {"net": net.eval(), "checkpoint": out_dir / "checkpoint.pt", "history": history}
    run_device = next(net.parameters()).device
    evaluation = evaluate_classifier(_VideoOnly(net), test_source, ablation.i3d_test_clips, split.classes, device=run_device)
    pairs = actions.sound_only_pairs
    return {"net": net.eval(), "checkpoint": out_dir / "checkpoint.pt", "history": history, "actions": actions,
            "source": f"synthetic actions, split 1 ({len(split.train)} training videos, {split.num_classes} classes), "
                      f"{train.steps} steps of {ablation.i3d_batch_size} clips",
            "accuracy": evaluation.clip_accuracy, "test_videos": len(split.test), "classes": split.num_classes,
            "sound_only_classes": len({name for pair in pairs for name in pair} & set(split.classes))}


# ------------------------------------------------------------------------------------------ models


def variant_config(variant: Variant, separation: SeparationSettings, i3d: I3D | None = None) -> SeparationConfig:
    """The :class:`~avlib.models.unet.SeparationConfig` of a row."""
    model = separation.model
    if variant.features == "none":
        return pit_config(separation)
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


def is_notebook_04s(variant: Variant, separation: SeparationSettings, ablation: AblationSettings) -> bool:
    """Whether a row is notebook 04's own run: ``unet_pit`` always, ``full`` at 04's budget."""
    return variant.name == "unet_pit" or (variant.name == "full" and ablation.steps == separation.train.steps)


def checkpoint_folder(variant: Variant, separation: SeparationSettings, ablation: AblationSettings, checkpoints: str | Path,
                      inputs: Sequence[str | Path] = (), seed: int = 0, training_seed: int | None = None) -> Path:
    """Where a row trains with ``training_seed`` (default ``seed``): notebook 04's folder of that training seed
    for its own runs (:func:`is_notebook_04s`, :func:`avlib.config.seed_folder`), else a keyed folder.

    ``inputs``: checkpoints the row starts from (pretrained net, I3D); a new one starts a new run.
    """
    checkpoints = Path(checkpoints)
    training_seed = seed if training_seed is None else training_seed
    if is_notebook_04s(variant, separation, ablation):
        return seed_folder(checkpoints, seed, training_seed) / variant.name
    key = run_key(run_settings(separation), ablation.steps, asdict(variant), [file_stamp(path) for path in inputs], seed,
                  *seed_part(seed, training_seed))
    return checkpoints / "ablations" / f"{variant.name}-{key}"


def train_variant(model: SeparationNet, variant: Variant, train_clips, separation: SeparationSettings,
                  ablation: AblationSettings, out_dir: str | Path, *, seed: int = 0, device: str = "auto",
                  resume: bool = True, run_config: dict | None = None) -> dict:
    """Train a row (or restore its finished run): ``unet_pit`` exactly as notebook 04, the others for ``steps``.

    Notebook 04's own runs (:func:`is_notebook_04s`) store 04's run config (``run_config`` alone), so either
    notebook resumes the other's checkpoint; the other rows also store their variant."""
    from avlib.data.mixtures import MixtureBatches

    if variant.pit:
        batches = MixtureBatches(train_clips, separation.pit_batch_size, seed=seed + 1, both_orders=False)
        return train(model, batches, separation, out_dir, pit=True, seed=seed, device=device, resume=resume,
                                run_config=run_config)
    own = {} if is_notebook_04s(variant, separation, ablation) else {"variant": asdict(variant)}
    return train(model, MixtureBatches(train_clips, separation.batch_size, seed=seed), separation, out_dir,
                            steps=ablation.steps, seed=seed, device=device, resume=resume,
                            run_config={**own, **(run_config or {})})


# ------------------------------------------------------------------------------------------ scores


def cached_scores(name: str, model: SeparationNet, checkpoint: str | Path,
                  test_batch: Mapping[str, Tensor] | Callable[[pd.DataFrame], Mapping[str, Tensor]],
                  test_list: pd.DataFrame, cache_dir: str | Path, *, phase: str, order_free: bool = False,
                  batch_size: int = 8, with_mixture: bool = True, recompute: bool = False) -> pd.DataFrame:
    """Per-pair scores of one row (and, ``with_mixture``, of the mixture), read from ``cache_dir`` when the
    same checkpoint (by content), test list and phase were scored before; otherwise
    :func:`avlib.metrics.score_separation` with PESQ (STOI, the slowest metric, is not needed), written there;
    ``test_batch`` is the test list's batch or a function loading some rows' (streamed, as :func:`run` does).
    The row's system is called ``name``. The mixture's scores are the same for every row: score them with one
    row only. A cached table holding more (the mixture, STOI) serves a call that asks for less."""
    from avlib.files import atomic_path

    key = _scores_key(checkpoint, test_list, phase, order_free)
    cache_dir = Path(cache_dir)
    table_path, key_path = cache_dir / f"{name}.csv", cache_dir / f"{name}.json"
    cached = None if recompute else _read_cached_scores(name, cache_dir, key, with_mixture)
    if cached is not None:
        return cached
    scores = evaluate({name: (model, order_free, phase)}, test_batch, test_list, batch_size, speech_metrics=True,
                      score_mixture=with_mixture, stoi=False)
    cache_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(table_path) as tmp:
        scores.to_csv(tmp, index=False)
    with atomic_path(key_path) as tmp:
        tmp.write_text(json.dumps(key, indent=1) + "\n")
    return scores


def _scores_key(checkpoint: str | Path, test_list: pd.DataFrame, phase: str, order_free: bool) -> dict:
    """What a cached score table must have been computed from: the checkpoint (by content), test list and phase."""
    return {"checkpoint": file_digest(checkpoint, "sha1"), "test_list": hashlib.sha1(test_list.to_csv(index=False).encode()).hexdigest(),
            "phase": phase, "order_free": order_free, "format": 1}


def _read_cached_scores(name: str, cache_dir: Path, key: dict, with_mixture: bool) -> pd.DataFrame | None:
    """The cached scores of ``name`` under ``cache_dir`` when they were computed from ``key`` (and hold the mixture's
    rows if ``with_mixture``), else None."""
    table_path, key_path = cache_dir / f"{name}.csv", cache_dir / f"{name}.json"
    if not (table_path.exists() and key_path.exists()):
        return None
    try:
        if json.loads(key_path.read_text()) != key:
            return None
    except json.JSONDecodeError:
        return None  # a damaged key: score again
    cached = pd.read_csv(table_path)
    return cached if not with_mixture or (cached.system == "mixture").any() else None


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


def seed_matrix(scores: pd.DataFrame, system: str, metric: str = "sdr", source: str = "on_screen") -> pd.DataFrame:
    """``system``'s ``metric`` on ``source`` as a (training seed x test pair) table; scores without a ``seed`` column
    are one seed's."""
    chosen = scores[(scores.system == system) & (scores.source == source)]
    if "seed" not in chosen:
        chosen = chosen.assign(seed=0)
    return chosen.pivot(index="seed", columns="pair", values=metric).sort_index().sort_index(axis=1)


def paired_difference(scores: pd.DataFrame, system: str, reference: str = "full", metric: str = "sdr",
                      source: str = "on_screen") -> np.ndarray:
    """(S, N): per training seed and test pair, ``system``'s ``metric`` minus ``reference``'s trained with the same
    seed (pairs both scored by every seed)."""
    difference = (seed_matrix(scores, system, metric, source) - seed_matrix(scores, reference, metric, source)).dropna(axis=1)
    return difference.to_numpy(dtype=np.float64)


@dataclass(frozen=True)
class ClaimDifference:
    """One row's paper claim against ``full``: the per-pair difference's mean over seeds and pairs, its 95 % interval
    over both, the pairs, and each training seed's mean difference; and the verdict."""

    name: str
    claim: PaperClaim
    mean: float
    low: float
    high: float
    pairs: int
    per_seed: tuple[float, ...] = ()

    @property
    def verdict(self) -> str:
        return verdict(self.low, self.high, self.claim.expected_sign)


def against_full(scores: pd.DataFrame, rows: Sequence[str], metric: str = "sdr", source: str = "on_screen") -> list[ClaimDifference]:
    """Every row that has a paper claim, compared with ``full`` trained with the same seed, pair by pair
    (:func:`interval_over_seeds` of the (seeds x pairs) differences)."""
    out = []
    for name in rows:
        variant = VARIANT_BY_NAME[name]
        if variant.claim is None:
            continue
        differences = paired_difference(scores, name, "full", metric, source)
        mean, low, high = interval_over_seeds(differences)
        out.append(ClaimDifference(name, CLAIMS_BY_KEY[variant.claim], mean, low, high, differences.shape[1],
                                   tuple(float(value) for value in differences.mean(axis=1))))
    return out


def direction_rows(scores: pd.DataFrame, rows: Sequence[str], titles: Mapping[str, str], metric: str = "sdr",
                   source: str = "on_screen") -> pd.DataFrame:
    """Each row's paper claim against ``full`` (paired by pair and training seed, :func:`against_full`), then the
    gender claim for every row (same- against different-gender pairs, paired by seed only:
    :func:`avlib.stats.seed_welch_interval`, Welch's interval with one seed).

    Columns: row, claim, paper's direction, its source and status, compared, seeds, difference (dB), its range over
    seeds, its 95 % interval, pairs and the verdict (:func:`avlib.report.claims.verdict`)."""
    out = [_direction_row(titles[row.name], row.claim, f"{row.name} - full, per pair", row.mean, row.low, row.high,
                          row.pairs, row.per_seed)
           for row in against_full(scores, rows, metric, source)]
    gender = CLAIMS_BY_KEY["same_gender"]
    for name in rows:
        chosen = scores[(scores.system == name) & (scores.source == source)]
        same, different = (seed_matrix(subset(chosen, kind), name, metric, source).to_numpy(dtype=np.float64)
                           for kind in ("same gender", "different gender"))
        if len(same) > 1:
            difference, low, high = seed_welch_interval(same, different)
        else:
            difference, low, high = welch_interval(same.ravel(), different.ravel())
        out.append(_direction_row(titles[name], gender, "same - different gender (Welch, paired by seed)", difference,
                                  low, high, f"{same.shape[1]} + {different.shape[1]}",
                                  tuple(float(value) for value in same.mean(axis=1) - different.mean(axis=1))
                                  if same.size and different.size else ()))
    return pd.DataFrame(out)


def _direction_row(title: str, claim: PaperClaim, compared: str, difference: float, low: float, high: float, pairs,
                   per_seed: Sequence[float] = ()) -> dict:
    return {"row": title, "claim": claim.claim, "paper's direction": claim.direction,
            "paper source": f"{claim.source} ({claim.status})", "compared": compared, "seeds": len(per_seed),
            "difference dB": difference,
            "per seed, min to max": f"{min(per_seed):+.2f} to {max(per_seed):+.2f}" if per_seed else "",
            "95 % interval": f"{low:.2f} to {high:.2f}", "pairs": pairs,
            "direction held?": verdict(low, high, claim.expected_sign)}


def summary_table(scores: pd.DataFrame, rows: Sequence[str], titles: Mapping[str, str],
                  metrics: Sequence[str] = ("sdr", "sir", "sar", "pesq")) -> pd.DataFrame:
    """Mean and 95 % interval of each metric, per row, source and subset of the test pairs (long form), over the
    training seeds and test pairs (:func:`interval_over_seeds`; pairs where a metric is NaN or infinite for some seed
    left out).

    Columns: row, system, source, mixtures (all / same gender / different gender), seeds, pairs, per metric
    ``<metric>``, ``<metric>_low``, ``<metric>_high``, and SDR's seed spread ``sdr_seed_sd``, ``sdr_seed_min``,
    ``sdr_seed_max`` (of the per-seed means)."""
    records = []
    for kind in SUBSETS:
        chosen = subset(scores, kind)
        if chosen.empty:  # e.g. no same-gender pair where a split has one speaker of each gender
            continue
        for system, source in chosen[["system", "source"]].drop_duplicates().itertuples(index=False):
            record = {"system": system, "source": source, "mixtures": kind}
            for metric in metrics:
                if metric not in chosen:
                    continue
                # the mixture is a sum of the references, so its SAR can come out +inf (no artifact at all): left out as NaN
                values = seed_matrix(chosen, system, metric, source).replace([np.inf, -np.inf], np.nan).dropna(axis=1)
                values = values.to_numpy(dtype=np.float64)
                record["seeds"] = values.shape[0]
                record["pairs"] = int(chosen[(chosen.system == system) & (chosen.source == source)].pair.nunique())
                mean, low, high = interval_over_seeds(values) if values.size else (float("nan"),) * 3
                record.update({metric: mean, f"{metric}_low": low, f"{metric}_high": high})
                if metric == "sdr" and values.size:
                    spread = seed_spread(values.mean(axis=1))
                    record.update(sdr_seed_sd=spread["sd"], sdr_seed_min=spread["min"], sdr_seed_max=spread["max"])
            records.append(record)
    table = pd.DataFrame(records)
    order = {name: i for i, name in enumerate([*rows, "mixture"])}
    table = table[table.system.isin(order)]
    table["row"] = table.system.map({**titles, "mixture": "mixture (input, lower bound)"})
    table = table.sort_values(["system", "source", "mixtures"], key=lambda column: column.map(
        order if column.name == "system" else {value: i for i, value in enumerate(
            ["on_screen", "off_screen"] if column.name == "source" else list(SUBSETS))}))
    return table[["row", "system", "source", "mixtures", "seeds", "pairs",
                  *[c for c in table.columns if c.split("_")[0] in metrics]]].reset_index(drop=True)


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


# ------------------------------------------------------------------------------------------ the experiment


@dataclass
class AblationRun:
    """What :func:`run` returns: the test list, the I3D, every row's model, training and scores, per training seed.

    ``scores`` holds every row's per-pair scores for every training seed (column ``seed``) and the mixture's,
    repeated for each seed (it depends on no model; :func:`combine_scores`, STOI left out); ``titles`` names each
    row in the tables; ``comparisons`` is :func:`against_full` of on-screen SDR. ``i3d``, ``models``, ``runs``
    and ``folders`` are the first training seed's; ``seed_runs`` and ``seed_folders`` every seed's (in ``seeds``
    order) and ``i3d_accuracies`` each seed's I3D clip accuracy (when trained here).
    """

    test_list: pd.DataFrame
    i3d: dict
    pretrained: Path
    models: dict[str, SeparationNet]
    runs: dict[str, dict]
    folders: dict[str, Path]
    titles: dict[str, str]
    scores: pd.DataFrame
    comparisons: list[ClaimDifference]
    seeds: list[int]
    seed_runs: dict[str, list[dict]]
    seed_folders: dict[str, list[Path]]
    i3d_accuracies: list[float]

    @property
    def rows(self) -> list[str]:
        return list(self.models)


def run(experiment: Experiment, *, seed: int = 0, data_root: str | Path = "", checkpoint_root: str | Path | None = None,
        device: str = "auto", resume: bool = True, results=None) -> AblationRun:
    """Every row of the ablations, once per training seed: the speakers' clips and the fixed test list, the I3D
    (:func:`ensure_i3d`), the pretrained network, each row built, trained (:func:`train_variant`) and scored on the
    test list with the separation's headline phase (:func:`cached_scores`), and each row's claim against ``full``
    trained with the same seed.

    Training seeds (``ablations.seeds``, :func:`avlib.config.training_seeds`: ``seed``, ``seed + 1``, ...) set each
    row's initialisation (the I3D's too) and batch order; the speakers, the action clips, the test list and the
    pretrained network are ``seed``'s for all, loaded once, and the mixture is scored once. ``full`` and
    ``unet_pit`` are notebook 04's runs of the same training seed where :func:`is_notebook_04s` says so (04 must
    then train as many seeds: ``separation.seeds`` >= ``ablations.seeds``, or the missing ones are trained here).

    With ``experiment.seed_processes`` > 1 the training and scoring run side by side in that many worker processes
    first (:func:`train_in_workers`); this process then reloads each row and reads its scores from the cache.

    Checkpoints go to ``<checkpoint dir>/separation`` (notebook 04's rows are its folders there).
    ``resume=False`` trains every row again (except notebook 04's u-net PIT), and the I3D, and scores again.
    ``results``: the notebook's :class:`avlib.report.results.ResultWriter`, whose tables hold the fixed test
    list (:func:`avlib.tasks.separation.ensure_test_list`).
    """
    from avlib.data.mixtures import load_test_mixtures
    from avlib.data.sources import speaker_sources
    from avlib.tasks.pretrain import ensure_pretrained

    separation, ablation = experiment.separation, experiment.ablations
    device_name = resolve_device(device)
    checkpoints = experiment.checkpoint_dir(checkpoint_root) / "separation"
    speakers = speaker_sources(experiment.synthetic, experiment.profile, seed, data_root, mixture_config(separation))
    test_list = (ensure_test_list(results, speakers.table, separation, seed) if results is not None else
                 make_test_list(speakers.table, separation.test_pairs, mixture_config(separation).duration, seed=seed))
    pretrained = ensure_pretrained(experiment, seed, data_root=data_root, checkpoint_root=checkpoint_root, device=device)
    titles = {variant.name: variant.title for variant in VARIANTS}
    if ablation.i3d_train is None:
        titles["i3d"] = KINETICS_I3D_TITLE

    def test_batch(rows: pd.DataFrame) -> dict[str, Tensor]:  # the test pairs decoded a batch at a time
        return load_test_mixtures(rows, speakers.test)

    seeds = training_seeds(seed, ablation.seeds)
    prepared: dict[int, dict] = {}  # training seed -> its I3D, once trained in worker processes
    if experiment.seed_processes > 1:
        prepared = train_in_workers(experiment, checkpoints, seed, seeds, pretrained, speakers.train, data_root=data_root,
                                    device=device, resume=resume, test_list=test_list, test_clips=speakers.test)
    first: dict = {}
    seed_runs: dict[str, list] = {variant.name: [] for variant in VARIANTS}
    seed_folders: dict[str, list] = {variant.name: [] for variant in VARIANTS}
    accuracies, parts, mixture = [], [], None
    actions = None
    for training_seed in seeds:
        i3d = prepared[training_seed] if prepared else ensure_i3d(
            experiment, checkpoints, seed=seed, data_root=data_root, device=device, resume=resume, training_seed=training_seed,
            actions=actions)
        actions = i3d.get("actions")  # the action clips, decoded once for every seed's I3D
        if "accuracy" in i3d:
            accuracies.append(float(i3d["accuracy"]))
        models, per_row = {}, {}
        for variant in VARIANTS:
            inputs = [i3d["checkpoint"]] if variant.features == "i3d" else [pretrained] if variant.initialisation != "random" else []
            folder = checkpoint_folder(variant, separation, ablation, checkpoints, inputs, seed, training_seed)
            models[variant.name] = build_variant(variant, separation, pretrained, i3d["net"], seed=training_seed)
            seed_runs[variant.name].append(train_variant(
                models[variant.name], variant, speakers.train, separation, ablation, folder, seed=training_seed,
                device=device, resume=resume or variant.pit or bool(prepared),  # runs trained by workers are reloaded
                run_config={"profile": experiment.profile, "seed": training_seed}))
            seed_folders[variant.name].append(folder)
            per_row[variant.name] = cached_scores(
                variant.name, models[variant.name].to(device_name), folder / "checkpoint.pt", test_batch, test_list,
                seed_folder(checkpoints / "ablations" / "scores", seed, training_seed), phase=separation.phase,
                order_free=variant.pit, batch_size=separation.eval_batch, with_mixture=mixture is None and not per_row,
                recompute=not resume and not prepared)  # workers scored every row of this call
            if mixture is None and (per_row[variant.name].system == "mixture").any():
                mixture = per_row[variant.name][per_row[variant.name].system == "mixture"]
        rows_only = [table[table.system == name] for name, table in per_row.items()]
        parts.append(pd.concat([*rows_only, mixture], ignore_index=True).assign(seed=training_seed))
        if not first:
            first = {"i3d": i3d, "models": models}
    scores = pd.concat(parts, ignore_index=True).drop(columns="stoi")
    return AblationRun(test_list, first["i3d"], pretrained, first["models"],
                       {name: runs[0] for name, runs in seed_runs.items()},
                       {name: folders[0] for name, folders in seed_folders.items()}, titles, scores,
                       against_full(scores, list(first["models"])), seeds, seed_runs, seed_folders, accuracies)


def _train_i3d(experiment: Experiment, checkpoints: Path, seed: int, data_root: str | Path, device: str, resume: bool,
               training_seed: int, actions) -> None:
    """A worker's job: train (or finish) one training seed's I3D; the parent reloads and scores it."""
    ensure_i3d(experiment, checkpoints, seed=seed, data_root=data_root, device=device, resume=resume,
               training_seed=training_seed, actions=actions, score=False)


def _train_row(variant: Variant, separation: SeparationSettings, ablation: AblationSettings, pretrained: Path,
               i3d: I3D | None, train_clips, folder: Path, training_seed: int, device: str, resume: bool,
               run_config: dict, scoring: dict | None = None) -> None:
    """A worker's job: build one row as :func:`run` does and train it into ``folder`` (a finished run is restored);
    with ``scoring`` (:func:`cached_scores`' arguments but the model's) also score it into the cache that :func:`run`
    then reads. The parent reloads both."""
    model = build_variant(variant, separation, pretrained, i3d, seed=training_seed)
    train_variant(model, variant, train_clips, separation, ablation, folder, seed=training_seed, device=device, resume=resume,
                  run_config=run_config)
    if scoring is not None:
        from avlib.data.mixtures import load_test_mixtures

        test_clips = scoring["test_clips"]
        device_name = resolve_device(device)
        cached_scores(variant.name, model.to(device_name), folder / "checkpoint.pt",
                      lambda rows: load_test_mixtures(rows, test_clips),
                      **{key: value for key, value in scoring.items() if key != "test_clips"})


def _finished(folder: Path, steps: int) -> bool:
    """Whether ``folder`` holds a checkpoint of ``steps`` steps or more (notebook 04's rows, a finished earlier run)."""
    from avlib.checkpoint import load_checkpoint

    path = folder / "checkpoint.pt"
    return path.exists() and load_checkpoint(path)["step"] >= steps


def train_in_workers(experiment: Experiment, checkpoints: Path, seed: int, seeds: Sequence[int], pretrained: Path,
                     train_clips, *, data_root: str | Path = "", device: str = "auto", resume: bool = True,
                     test_list: pd.DataFrame | None = None, test_clips=None) -> dict[int, dict]:
    """Train what :func:`run` trains, in ``experiment.seed_processes`` worker processes (:func:`avlib.parallel.run_jobs`):
    first every training seed's I3D (when trained here), then every (training seed, row) not already finished, each
    into the folder :func:`run` uses. Returns each training seed's I3D (:func:`ensure_i3d`, reloaded and scored here).

    With ``test_list`` and ``test_clips`` (the speakers' test clips) each worker also scores its row on the test list
    into the cache :func:`run` reads (:func:`cached_scores`, as :func:`run` would call it), and rows that are trained
    but not yet scored (notebook 04's u-net PIT) get a job that only scores; those short jobs come last.

    Data decoded into memory reaches the workers through ``.npy`` files in ``<checkpoints>/ablations/.worker-data``
    that each maps read-only (:func:`avlib.parallel.shared_copy`): the speakers' training and test clips and the
    action videos; the folder is removed afterwards.
    """
    import shutil

    from avlib.data.sources import action_sources
    from avlib.data.ucf101 import DecodedVideos
    from avlib.parallel import Job, run_jobs, shared_copy
    from avlib.tasks.separation import shared_speaker_clips

    separation, ablation, processes = experiment.separation, experiment.ablations, experiment.seed_processes
    shared_dir = checkpoints / "ablations" / ".worker-data"
    try:
        actions = None
        if ablation.i3d_train is not None and experiment.synthetic:
            actions = action_sources(synthetic=True, world=experiment.profile, seed=seed, data_root=data_root,
                                     clip_format=action_clips(separation), split=1)
            mapped = {part: shared_copy(source, shared_dir, ("frames", "audio"), f"actions-{part}-")
                      if isinstance(source, DecodedVideos) else source for part, source in (("train", actions.train),
                                                                                            ("test", actions.test))}
            run_jobs([Job(f"ablations I3D, training seed {training_seed}", _train_i3d,
                          (experiment, checkpoints, seed, data_root, device, resume, training_seed, replace(actions, **mapped)))
                      for training_seed in seeds], processes)
        i3ds = {}
        for training_seed in seeds:  # reloaded (trained above), or converted
            i3ds[training_seed] = ensure_i3d(experiment, checkpoints, seed=seed, data_root=data_root, device=device,
                                             resume=True, training_seed=training_seed, actions=actions)
            actions = i3ds[training_seed].get("actions")
        clips = shared_speaker_clips(train_clips, shared_dir, "speakers-train-")
        scored = test_list is not None and test_clips is not None
        shared_test = shared_speaker_clips(test_clips, shared_dir, "speakers-test-") if scored else None
        training, scoring_only = [], []
        for training_seed in seeds:
            i3d = i3ds[training_seed]
            for variant in VARIANTS:
                inputs = [i3d["checkpoint"]] if variant.features == "i3d" else [pretrained] if variant.initialisation != "random" else []
                folder = checkpoint_folder(variant, separation, ablation, checkpoints, inputs, seed, training_seed)
                row_resume = resume or variant.pit
                finished = row_resume and _finished(folder, separation.pit_steps if variant.pit else ablation.steps)
                scoring = None
                if scored:  # the arguments run() gives cached_scores; the mixture is scored with its first row
                    with_mixture = training_seed == seeds[0] and variant is VARIANTS[0]
                    cache_dir = seed_folder(checkpoints / "ablations" / "scores", seed, training_seed)
                    if not (finished and resume and _read_cached_scores(
                            variant.name, cache_dir, _scores_key(folder / "checkpoint.pt", test_list, separation.phase,
                                                                 variant.pit), with_mixture) is not None):
                        scoring = {"test_clips": shared_test, "test_list": test_list, "cache_dir": cache_dir,
                                   "phase": separation.phase, "order_free": variant.pit,
                                   "batch_size": separation.eval_batch, "with_mixture": with_mixture,
                                   "recompute": not resume}
                if finished and scoring is None:
                    continue
                (scoring_only if finished else training).append(Job(
                    f"ablations {variant.name}, training seed {training_seed}", _train_row, (
                        variant, separation, ablation, pretrained, i3d["net"] if variant.features == "i3d" else None, clips,
                        folder, training_seed, device, row_resume, {"profile": experiment.profile, "seed": training_seed},
                        scoring)))
        run_jobs(training + scoring_only, processes)
    finally:
        shutil.rmtree(shared_dir, ignore_errors=True)
    return i3ds


def budget_table(result: AblationRun, separation: SeparationSettings) -> pd.DataFrame:
    """How each row trained: features, initialisation, training seeds, steps done, examples per step, trainable
    parameters and its first seed's checkpoint folder (relative to the separation's checkpoints, without the run
    key of :func:`checkpoint_folder`, so that the table is the same for every run of one commit)."""
    return pd.DataFrame([{
        "row": result.titles[variant.name], "features": variant.features,
        "initialisation": f"supervised: {result.i3d['source']}" if variant.features == "i3d" else variant.initialisation,
        "training seeds": ", ".join(str(training_seed) for training_seed in result.seeds),
        "steps": int(result.runs[variant.name]["train"][-1]["step"]) if result.runs[variant.name]["train"] else None,
        "examples per step": separation.pit_batch_size if variant.pit else separation.batch_size,
        "trainable parameters (M)": sum(p.numel() for p in result.models[variant.name].parameters() if p.requires_grad) / 1e6,
        # has the loss flattened? the last tenth of the steps against the tenth before (docs/training.md), each seed
        "loss over the last tenth, per training seed": "; ".join(
            loss_end_label(run["train"]) if run["train"] else "not trained here" for run in result.seed_runs[variant.name]),
        # the folder without its run key: the key hashes input files' modification times, so it changes with every run
        "checkpoint": f"{result.folders[variant.name].parent.name}/{variant.name}",
    } for variant in VARIANTS])


def _run(experiment: Experiment, args) -> dict:
    result = run(experiment, seed=args.seed, data_root=args.data_root, checkpoint_root=args.checkpoints,
                 device=args.device)
    summary = summary_table(result.scores, result.rows, result.titles)
    directions = direction_rows(result.scores, result.rows, result.titles)
    tables = {"separation_ablation_scores_per_pair": result.scores, "separation_ablations_long": summary,
              "separation_ablation_directions": directions,
              "separation_ablation_budget": budget_table(result, experiment.separation)}
    args.out.mkdir(parents=True, exist_ok=True)
    for name, table in tables.items():
        table.to_csv(args.out / f"{name}.csv", index=False)
    on_screen = summary[(summary.source == "on_screen") & (summary.mixtures == "all")].set_index("system")
    return {
        "test_pairs": len(result.test_list), "phase": experiment.separation.phase, "i3d": result.i3d["source"],
        "seeds": result.seeds, "i3d_accuracy": result.i3d_accuracies or None,
        "on_screen_sdr": {name: float(on_screen.loc[name, "sdr"]) for name in [*result.rows, "mixture"]},
        "against_full": {row.name: {"claim": row.claim.key, "difference_db": row.mean, "low": row.low, "high": row.high,
                                    "pairs": row.pairs, "per_seed": list(row.per_seed), "verdict": row.verdict}
                         for row in result.comparisons},
        "tables": sorted(f"{name}.csv" for name in tables),
    }


def main(argv: Sequence[str] | None = None) -> int:
    from avlib.tasks.cli import run_task

    return run_task("ablations", "ablations", "Separation ablations (docs/paper.md §7.6, §7.8): every row trained "
                    "with the same budget and scored on the fixed test list against the full model.", _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
