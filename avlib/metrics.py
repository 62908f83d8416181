"""Scores: the held-out alignment accuracy of pretraining (docs/paper.md §3) and the separation metrics.

Separation metrics: BSS-Eval SDR / SIR / SAR, PESQ and STOI, per pair, with summaries (docs/paper.md §7.7).

The paper's evaluation script (``sep_eval``) was never released, so which BSS-Eval implementation, channel and
length it scored is unknown (docs/paper.md §7.7). Ours, which anyone can rerun:

- **SDR, SIR, SAR**: BSS-Eval v3 ``bss_eval_sources`` (512-tap distortion filter, as mir_eval) computed with
  fast-bss-eval, which agrees with mir_eval to about 3 decimals and is 4-5x faster (DESIGN.md). Each estimate
  is scored against both references [on-screen, off-screen] in the given order (no permutation), so SIR
  measures leakage of the other source. Its torch path is used: the numpy path without permutation crashes
  on NumPy 2.
- **PESQ**: ITU-T P.862.2 wide-band, which is defined at 16 kHz only: reference and estimate are resampled to
  16 kHz with soxr (the synth profile works at 11 025 Hz, the paper at 21 000 Hz).
- **STOI**: pystoi (it resamples to 10 kHz internally), at the signals' own rate.

The mixture itself, scored as the estimate of both sources, is the lower bound every model must beat.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from avlib.data.shift import EvaluationSet
from avlib.data.ucf101 import VideoSource, evaluation_batches
from avlib.models.multisensory import normalize_frames
from avlib.models.unet import mono_mix, predict_phases
from avlib.stats import confidence_interval, wilson_interval

#: PESQ wide-band is defined at 16 kHz.
PESQ_RATE = 16_000
BSS_FILTER_LENGTH = 512


def _held_out_batches(held_out: EvaluationSet | Mapping[str, Tensor], batch_size: int) -> Iterator[Mapping[str, Tensor]]:
    """Batches of a held-out set: an :class:`~avlib.data.shift.EvaluationSet` decodes them one at a time,
    a dict of whole tensors is sliced."""
    if isinstance(held_out, EvaluationSet):
        yield from held_out.batches(batch_size)
        return
    for first in range(0, len(held_out["label"]), batch_size):
        yield {key: value[first : first + batch_size] for key, value in held_out.items()}


@torch.no_grad()
def alignment_accuracy(model: nn.Module, held_out: EvaluationSet | Mapping[str, Tensor], batch_size: int = 16,
                       device: torch.device | str = "cpu") -> dict[str, float]:
    """Held-out accuracy of the official protocol (docs/paper.md §3): each clip is scored once, with its aligned
    audio (label 1) or its shifted audio (label 0), 50/50; correct when (logit > 0) == label.

    model: a :class:`~avlib.models.multisensory.MultisensoryNet` or a wrapper of it, called in its pair mode;
    held_out: an :class:`~avlib.data.shift.EvaluationSet` (:func:`avlib.data.shift.evaluation_set`), decoded
    ``batch_size`` examples at a time, or a dict of ``frames``, ``audio``, ``shifted_audio`` and ``label``.
    Also the pairwise accuracy (aligned logit > shifted logit, ties counted half), a lower-variance view of
    the same skill. Returns accuracy, its 95 % Wilson interval, n, and pair_accuracy.
    """
    was_training = model.training
    model.eval()
    aligned_logits, shifted_logits, label_parts = [], [], []
    for part in _held_out_batches(held_out, batch_size):
        aligned, shifted = model(normalize_frames(part["frames"].to(device)), part["audio"].to(device),
                                 part["shifted_audio"].to(device))
        aligned_logits.append(aligned.float().cpu())
        shifted_logits.append(shifted.float().cpu())
        label_parts.append(part["label"])
    model.train(was_training)
    aligned, shifted, labels = torch.cat(aligned_logits), torch.cat(shifted_logits), torch.cat(label_parts)
    scored = torch.where(labels > 0, aligned, shifted)
    correct = int(((scored > 0).float() == labels).sum())
    low, high = wilson_interval(correct, len(labels))
    return {"accuracy": correct / len(labels), "ci_low": low, "ci_high": high, "n": len(labels),
            "pair_accuracy": float(((aligned > shifted).float() + 0.5 * (aligned == shifted).float()).mean())}


def _as_2d(signals: np.ndarray | torch.Tensor, name: str) -> np.ndarray:
    array = signals.detach().cpu().numpy() if isinstance(signals, torch.Tensor) else np.asarray(signals)
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2:
        raise ValueError(f"{name} must be (sources, samples), got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} holds NaN or infinite samples")
    return array.astype(np.float64)


def bss_eval(references: np.ndarray | torch.Tensor, estimates: np.ndarray | torch.Tensor,
             filter_length: int = BSS_FILTER_LENGTH) -> dict[str, np.ndarray]:
    """SDR, SIR and SAR (dB) of each estimate against the references in the same order.

    references, estimates: (S, N), estimate k is scored as the estimate of reference k. Returns arrays (S,).
    """
    references = _as_2d(references, "references")
    estimates = _as_2d(estimates, "estimates")
    if references.shape != estimates.shape:
        raise ValueError(f"references {references.shape} and estimates {estimates.shape} differ in shape")
    if references.shape[1] <= filter_length:
        raise ValueError(f"signals of {references.shape[1]} samples are too short for a {filter_length}-tap BSS-Eval")
    import fast_bss_eval

    sdr, sir, sar = fast_bss_eval.bss_eval_sources(
        torch.from_numpy(references), torch.from_numpy(estimates), filter_length=filter_length, compute_permutation=False,
    )
    return {"sdr": sdr.numpy(), "sir": sir.numpy(), "sar": sar.numpy()}


def resample(signal: np.ndarray, sample_rate: int, target_rate: int) -> np.ndarray:
    """(N,) float at ``sample_rate`` -> float64 at ``target_rate`` (soxr, high quality)."""
    import soxr

    signal = np.asarray(signal, dtype=np.float64)
    return signal if sample_rate == target_rate else soxr.resample(signal, sample_rate, target_rate, quality="HQ")


def pesq_score(reference: np.ndarray, estimate: np.ndarray, sample_rate: int) -> float:
    """Wide-band PESQ (MOS-LQO, about 1.0-4.6) after resampling both to 16 kHz; NaN if PESQ finds no speech."""
    from pesq import PesqError, pesq

    reference = resample(reference, sample_rate, PESQ_RATE)
    estimate = resample(estimate, sample_rate, PESQ_RATE)
    if not np.any(reference) or not np.any(estimate):
        return float("nan")  # PESQ divides by the peak: silence has no score
    try:
        return float(pesq(PESQ_RATE, reference, estimate, "wb"))
    except PesqError as error:  # e.g. no utterance detected in a silent reference
        warnings.warn(f"PESQ failed ({error}); scored NaN", stacklevel=2)
        return float("nan")


def stoi_score(reference: np.ndarray, estimate: np.ndarray, sample_rate: int) -> float:
    """Short-time objective intelligibility in [0, 1] (pystoi, not extended)."""
    from pystoi import stoi

    return float(stoi(np.asarray(reference, np.float64), np.asarray(estimate, np.float64), sample_rate, extended=False))


def score_pair(on_screen: np.ndarray, off_screen: np.ndarray, estimates: Mapping[str, tuple[np.ndarray, np.ndarray]],
               sample_rate: int, speech_metrics: bool = True, stoi: bool = True) -> list[dict[str, float | str]]:
    """Every metric for one mixture: rows (system, source, sdr, sir, sar, pesq, stoi).

    on_screen, off_screen: (N,) references; estimates: system name -> (on-screen estimate, off-screen
    estimate), each (N,). Add ``"mixture": (mixture, mixture)`` for the lower bound. ``stoi=False`` leaves
    STOI out of the speech metrics (the slowest of them).
    """
    references = np.stack([on_screen, off_screen])
    rows = []
    for system, (on_estimate, off_estimate) in estimates.items():
        scores = bss_eval(references, np.stack([on_estimate, off_estimate]))
        for k, (source, reference, estimate) in enumerate(
                (("on_screen", on_screen, on_estimate), ("off_screen", off_screen, off_estimate))):
            row = {"system": system, "source": source, "sdr": float(scores["sdr"][k]), "sir": float(scores["sir"][k]),
                   "sar": float(scores["sar"][k])}
            if speech_metrics:
                row["pesq"] = pesq_score(reference, estimate, sample_rate)
                if stoi:
                    row["stoi"] = stoi_score(reference, estimate, sample_rate)
            rows.append(row)
    return rows


def best_permutation(on_screen: np.ndarray, off_screen: np.ndarray, first: np.ndarray, second: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The two outputs of an order-free (PIT) model, ordered as [on-screen, off-screen] by the higher mean SDR."""
    references = np.stack([on_screen, off_screen])
    straight = bss_eval(references, np.stack([first, second]))["sdr"].mean()
    swapped = bss_eval(references, np.stack([second, first]))["sdr"].mean()
    return (first, second) if straight >= swapped else (second, first)


def summarize(scores: pd.DataFrame, by: Sequence[str] = ("system", "source"),
              metrics: Sequence[str] = ("sdr", "sir", "sar", "pesq", "stoi")) -> pd.DataFrame:
    """Mean and 95 % interval of each metric per group: columns ``<metric>``, ``<metric>_low``,
    ``<metric>_high`` and ``n`` (pairs), one row per group in order of first appearance."""
    rows = []
    for key, group in scores.groupby(list(by), sort=False):
        row = dict(zip(by, key if isinstance(key, tuple) else (key,)))
        for metric in metrics:
            if metric in group:
                row[metric], row[f"{metric}_low"], row[f"{metric}_high"] = confidence_interval(group[metric])
        row["n"] = len(group)
        rows.append(row)
    return pd.DataFrame(rows)


def score_separation(systems: Mapping[str, tuple], test_batch: Mapping[str, Tensor] | Callable[[pd.DataFrame], Mapping[str, Tensor]],
                     test_list: pd.DataFrame, batch_size: int = 8, speech_metrics: bool | Sequence[str] = True,
                     progress: bool = False, score_mixture: bool = True, stoi: bool = True) -> pd.DataFrame:
    """Score each system and the mixture on every test pair: one row per (pair, system, source) (docs/paper.md §7.7).

    systems: name -> (model, order_free) or (model, order_free, phase) with ``phase`` as in
    :func:`avlib.models.unet.predict` (default ``"predicted"``). An order-free (PIT) model's outputs are assigned
    to on- and off-screen by the better mean SDR (an oracle assignment: it has no way to know which is on screen).
    test_batch: the test list's pairs as one batch (:func:`avlib.data.mixtures.load_test_mixtures`), or a function
    that loads that batch for some rows of the test list: the pairs are then decoded ``batch_size`` at a time, so
    memory does not grow with the test list (same scores either way).
    All systems are scored on the same span: the samples every frame fully covers, leaving out the first and last
    ``frame_length - hop`` samples, where the inverse STFT tapers. References are the mono sources.
    ``speech_metrics``: PESQ and STOI for every system (True), none (False), or the named systems and the
    mixture (they take most of the time); the others get NaN. ``score_mixture=False`` leaves the mixture's rows out
    (a caller that has them already); ``stoi=False`` leaves STOI out (NaN), PESQ stays.
    """
    from tqdm.auto import tqdm

    if isinstance(speech_metrics, bool):
        speech_systems = set(systems) | {"mixture"} if speech_metrics else set()
    else:
        speech_systems = set(speech_metrics) | {"mixture"}
    spectral = next(iter(systems.values()))[0].config.spectral
    pairs = list(test_list.itertuples())
    rows = []
    bar = tqdm(total=len(pairs), disable=not progress, desc="scoring")
    for first in range(0, len(pairs), batch_size):
        chosen = slice(first, first + batch_size)
        part = (test_batch(test_list.iloc[chosen]) if callable(test_batch) else
                {key: value[chosen] for key, value in test_batch.items()})
        order_free = {name: free for name, (model, free, *phase) in systems.items()}
        predictions = {}
        for model in {id(model): model for model, *_ in systems.values()}.values():  # one pass per model, every phase
            named = {name: (phase or ["predicted"])[0] for name, (other, free, *phase) in systems.items() if other is model}
            by_phase = predict_phases(model, part["frames"], part["mixture"], batch_size, sorted(set(named.values())))
            predictions.update({name: by_phase[phase] for name, phase in named.items()})
        predictions = {name: predictions[name] for name in systems}
        for index, pair in enumerate(pairs[chosen]):
            rows.extend(_score_test_pair(pair, index, part, predictions, order_free, spectral, speech_systems,
                                         score_mixture, stoi))
            bar.update()
    bar.close()
    return pd.DataFrame(rows)


def _score_test_pair(pair, index: int, part: Mapping[str, Tensor], predictions: Mapping[str, Mapping[str, Tensor]],
                     order_free: Mapping[str, bool], spectral, speech_systems: set[str], score_mixture: bool,
                     stoi: bool) -> list[dict]:
    """The rows of :func:`score_separation` for the test pair at position ``index`` of a decoded part."""
    some = next(iter(predictions.values()))
    length = some["on_screen"].shape[1]
    span = slice(spectral.frame_length - spectral.hop, length - (spectral.frame_length - spectral.hop))
    on_reference = mono_mix(part["on_screen"][index : index + 1])[0, :length][span].numpy()
    off_reference = mono_mix(part["off_screen"][index : index + 1])[0, :length][span].numpy()
    mixture = some["mixture"][index][span].numpy()
    estimates = {"mixture": (mixture, mixture)} if score_mixture else {}
    for name, prediction in predictions.items():
        first, second = prediction["on_screen"][index][span].numpy(), prediction["off_screen"][index][span].numpy()
        estimates[name] = best_permutation(on_reference, off_reference, first, second) if order_free[name] else (first, second)
    rows = []
    for with_speech in (True, False):
        chosen = {name: value for name, value in estimates.items() if (name in speech_systems) == with_speech}
        if not chosen:
            continue
        for row in score_pair(on_reference, off_reference, chosen, spectral.sample_rate, with_speech, stoi):
            rows.append({"pair": pair.pair, "same_gender": pair.same_gender, "on_gender": pair.on_gender,
                         "off_gender": pair.off_gender, "pesq": float("nan"), "stoi": float("nan"), **row})
    return rows


def improvement_over_mixture(scores: pd.DataFrame, metric: str = "sdr") -> pd.DataFrame:
    """Per pair and source, each system's ``metric`` minus the mixture's (e.g. SDR improvement)."""
    table = scores.pivot_table(index=["pair", "source"], columns="system", values=metric)
    gains = table.drop(columns="mixture").sub(table["mixture"], axis=0)
    return gains.reset_index().melt(id_vars=["pair", "source"], var_name="system", value_name=f"{metric}_gain")


def on_screen_gains(gains: pd.DataFrame, system: str, test_list: pd.DataFrame | None = None,
                    same_gender: bool | None = None) -> pd.Series:
    """On-screen SDR gains over the mixture (:func:`improvement_over_mixture`) of ``system``; with
    ``same_gender`` True or False, only of the ``test_list`` pairs of same- or different-gender speakers."""
    rows = gains[(gains.system == system) & (gains.source == "on_screen")]
    if same_gender is not None:
        rows = rows[rows.pair.isin(test_list.pair[test_list.same_gender == same_gender])]
    return rows["sdr_gain"]


# ----------------------------------------------------------------------------- action classification


@dataclass
class Evaluation:
    """Softmax probabilities of every test clip, and the accuracies derived from them.

    clip_probs: (V, K, C) for V videos, K clips each, C classes; labels: (V,) 0-based.
    """

    classes: list[str]
    names: list[str]
    labels: np.ndarray
    has_audio: np.ndarray
    clip_probs: np.ndarray

    @property
    def video_probs(self) -> np.ndarray:
        """(V, C): the K clips' softmax probabilities averaged."""
        return self.clip_probs.mean(axis=1)

    @property
    def video_predictions(self) -> np.ndarray:
        return self.video_probs.argmax(axis=1)

    @property
    def clip_correct(self) -> np.ndarray:
        """(V, K) bool: each clip's own prediction is right."""
        return self.clip_probs.argmax(axis=2) == self.labels[:, None]

    @property
    def video_correct(self) -> np.ndarray:
        return self.video_predictions == self.labels

    @property
    def clip_accuracy(self) -> float:
        return float(self.clip_correct.mean())

    @property
    def video_accuracy(self) -> float:
        return float(self.video_correct.mean())

    def accuracy_where(self, mask: np.ndarray) -> tuple[float, float]:
        """(clip, video) accuracy over the videos selected by ``mask`` (NaN when none)."""
        if not mask.any():
            return float("nan"), float("nan")
        return float(self.clip_correct[mask].mean()), float(self.video_correct[mask].mean())

    def confusion(self) -> np.ndarray:
        """(C, C) video counts: row = true class, column = predicted class."""
        size = len(self.classes)
        return np.bincount(self.labels * size + self.video_predictions, minlength=size * size).reshape(size, size)

    def per_class(self, mask: np.ndarray | None = None) -> pd.DataFrame:
        """Videos, clip and video accuracy of each class (over the videos of ``mask``, default all)."""
        mask = np.ones(len(self.labels), dtype=bool) if mask is None else mask
        rows = []
        for label, name in enumerate(self.classes):
            chosen = mask & (self.labels == label)
            clip, video = self.accuracy_where(chosen)
            rows.append({"class": name, "videos": int(chosen.sum()), "clip accuracy": clip, "video accuracy": video})
        return pd.DataFrame(rows)

    def selection(self, classes: Sequence[str] | None = None, with_audio_only: bool = False) -> np.ndarray:
        """(V,) bool mask of the videos of ``classes`` (names; default all), optionally only those with audio."""
        if classes is None:
            mask = np.ones_like(self.has_audio)
        else:
            mask = np.isin(self.labels, [self.classes.index(c) for c in classes])
        return mask & self.has_audio if with_audio_only else mask


@torch.no_grad()
def evaluate_classifier(model: nn.Module, source: VideoSource, clips_per_video: int, classes: Sequence[str], *,
             videos: Sequence[int] | None = None, batch_size: int = 20, device: str | torch.device = "cpu",
             amp: str = "none", workers: int = 0) -> Evaluation:
    """Score ``clips_per_video`` evenly spaced, centre-cropped clips of each test video (default all) with an
    action classifier ``model(frames, audio, has_audio) -> logits`` (UCF-101 fine-tuning, the I3D of the ablations)."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    chosen = list(range(len(source))) if videos is None else list(videos)
    probs = np.zeros((len(chosen), clips_per_video, len(classes)), dtype=np.float32)
    position = {video: row for row, video in enumerate(chosen)}
    filled = np.zeros(len(chosen), dtype=np.int64)
    for owners, batch in evaluation_batches(source, clips_per_video, batch_size, chosen, workers=workers):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp == "bf16" and device.type == "cuda"):
            logits = model(normalize_frames(batch["frames"].to(device)), batch["audio"].to(device),
                           batch["has_audio"].to(device))
        batch_probs = torch.softmax(logits.float(), dim=1).cpu().numpy()
        for owner, clip_probs in zip(owners, batch_probs):
            row = position[owner]
            probs[row, filled[row]] = clip_probs
            filled[row] += 1
    model.train(was_training)
    entries = [source.videos[video] for video in chosen]
    return Evaluation(list(classes), [entry.name for entry in entries], np.array([entry.label for entry in entries]),
                      np.array([entry.has_audio for entry in entries]), probs)
