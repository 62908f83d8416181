"""The paper's numbers and claims, in one place, each with its source and how far it is verified, and the one
rule that says whether a claim holds in a run (:func:`verdict`).

Tables put these beside ours; nothing else in the project types a paper number. Sources are
the tags of docs/paper.md §0: PAPER-Q (a sentence of the paper quoted verbatim in a GitHub
issue of the official repository), CODE (read in the official code), 2ND (a secondary summary),
SUMMARY (the project's source summary of the paper, section 12), MEM (a recollection,
UNVERIFIED against the PDF).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

#: what :func:`verdict` returns
HOLDS, OPPOSITE, NOT_RESOLVED = "holds", "opposite", "not resolved"
VERDICTS = (HOLDS, OPPOSITE, NOT_RESOLVED)


#: training seeds a row needs before a verdict that compares training regimes can be more than 'not resolved'
MIN_SEEDS = 3


def verdict(low: float, high: float, direction: int) -> str:
    """Whether a claim holds, from the 95 % interval [low, high] of its paired difference (ours minus the
    baseline, or minus chance) and the claim's ``direction`` (+1: the difference is expected above 0, -1: below).

    'holds' when the whole interval lies strictly on the claim's side of 0, 'opposite' when it lies strictly on
    the other side, 'not resolved' otherwise: it contains or touches 0, or a bound is NaN (too few examples).

    Where the claim compares training regimes (``across_seeds``), the interval is
    :func:`avlib.stats.seed_interval` over at least :data:`MIN_SEEDS` training seeds per row, so that seed
    variance is inside it (a verdict holds across seeds, not in one lucky run);
    :meth:`avlib.report.results.ResultWriter.compare` says 'not resolved' for such a row with fewer seeds.
    """
    if direction not in (-1, 1):
        raise ValueError(f"a claim's direction is -1 or +1, got {direction!r}")
    if math.isnan(low) or math.isnan(high):
        return NOT_RESOLVED
    side = -1 if high < 0 else 1 if low > 0 else 0
    if side == 0:
        return NOT_RESOLVED
    return HOLDS if side == direction else OPPOSITE


def combined_verdict(verdicts: Iterable[str]) -> str:
    """The verdict of a claim against several baselines at once ("above every baseline"): 'holds' when it holds
    against each, 'opposite' when it is opposite against any, else 'not resolved'."""
    verdicts = list(verdicts)
    if not verdicts or any(found not in VERDICTS for found in verdicts):
        raise ValueError(f"expected one or more of {VERDICTS}, got {verdicts!r}")
    if OPPOSITE in verdicts:
        return OPPOSITE
    return HOLDS if all(found == HOLDS for found in verdicts) else NOT_RESOLVED


@dataclass(frozen=True)
class PaperNumber:
    key: str
    value: float
    unit: str
    what: str
    dataset: str
    source: str
    verified: bool  # True only where the paper's own sentence was read (PAPER-Q) or the code states it
    #: what the number says beyond its value, which a toy-scale run can check ("" for settings and scale)
    direction: str = ""
    comparable: bool = True  # False where even the paper's own setting is not ours to compare with (other data)
    #: the sign :func:`verdict` expects of ours minus the reference named in ``direction`` (0: nothing to test)
    expected_sign: int = 0
    #: the direction compares training regimes, so its verdict needs :data:`MIN_SEEDS` seeds (see :func:`verdict`)
    across_seeds: bool = False

    @property
    def status(self) -> str:
        return "verified" if self.verified else "UNVERIFIED"


NUMBERS: tuple[PaperNumber, ...] = (
    PaperNumber("alignment_accuracy", 59.9, "%", "alignment (shift) task accuracy on held-out videos, chance 50 %",
                "AudioSet", "PAPER-Q issues #31, #34 of andrewowens/multisensory", True,
                direction="above chance (50 %) on held-out videos", expected_sign=1),
    PaperNumber("human_alignment_accuracy", 66.6, "%", "humans on the same task (15 s clips, 5 s shift, 30 workers)",
                "AudioSet", "SUMMARY section 12; MEM section 4 (66.6 ± 2.4 %)", False,
                direction="humans above the network", expected_sign=1),
    PaperNumber("avts_alignment", 78.4, "%", "an earlier audio-visual sync model with curriculum learning (AVTS, "
                "NeurIPS 2018), on its own data and protocol", "other data and protocol", "SUMMARY section 12", False,
                comparable=False),
    PaperNumber("ucf101_multisensory", 82.1, "%", "UCF-101 split 1, fine-tuned from self-supervised pretraining",
                "UCF-101", "2ND emergentmind; SUMMARY section 12; cited by AVTS and XDC", False,
                direction="pretrained with audio above random initialisation", expected_sign=1, across_seeds=True),
    PaperNumber("ucf101_supervised", 94.5, "%", "UCF-101, fully supervised (labelled pretraining)",
                "UCF-101", "SUMMARY section 12", False, direction="fully supervised above self-supervised pretraining",
                expected_sign=1, across_seeds=True),
    PaperNumber("ucf101_no_audio", 77.1, "%", "UCF-101, audio removed (stated as about 5 points below 82.1)",
                "UCF-101", "SUMMARY section 12 ('about 5 points lower')", False,
                direction="below pretrained with audio", expected_sign=-1, across_seeds=True),
    PaperNumber("ucf101_random_init", 68.1, "%", "UCF-101, random initialisation (stated as about 14 points below 82.1)",
                "UCF-101", "SUMMARY section 12 ('about 14 points lower')", False,
                direction="below pretrained with audio", expected_sign=-1, across_seeds=True),
    PaperNumber("shift_min_s", 2.0, "s", "smallest shift of the negative audio", "AudioSet", "MEM / 3P (paper section 3)", False),
    PaperNumber("shift_max_s", 5.8, "s", "largest shift of the negative audio", "AudioSet", "MEM / 3P (paper section 3)", False),
    # The official code's range (docs/paper.md §3), which the paper profile trains with: 65 and 176 frames at 29.97 fps.
    PaperNumber("shift_min_code_s", 65 / 29.97, "s", "smallest shift the official code allows (65 frames at 29.97 fps; "
                "windows of 125 frames overlapping by at most max_intersection = 60)", "AudioSet",
                "CODE src/shift_dset.py + INF docs/paper.md §3", True),
    PaperNumber("shift_max_code_s", 176 / 29.97, "s", "largest shift the official code allows (176 frames at 29.97 fps "
                "in a 10.1 s clip)", "AudioSet", "CODE src/shift_dset.py + INF docs/paper.md §3", True),
    PaperNumber("pretraining_videos", 750_000, "videos", "AudioSet videos used for pretraining", "AudioSet",
                "PAPER-Q issue #35", True),
    PaperNumber("pretraining_iterations", 650_000, "iterations", "iterations of the released shift model",
                "AudioSet", "ISSUE #17 (maintainer)", True),
)

BY_KEY = {number.key: number for number in NUMBERS}


@dataclass(frozen=True)
class PaperClaim:
    """A direction the paper reports without a number we could verify (e.g. "clearly worse")."""

    key: str
    claim: str
    direction: str
    source: str
    verified: bool = False
    #: the sign :func:`verdict` expects of ours minus the reference (-1: the ablated system or the subset scores
    #: lower, +1: higher); 0: the claim is not tested by a difference
    expected_sign: int = 0
    #: the direction compares training regimes (or a trained model with baselines), so its verdict needs
    #: :data:`MIN_SEEDS` training seeds (see :func:`verdict`)
    across_seeds: bool = True

    @property
    def status(self) -> str:
        return "verified" if self.verified else "UNVERIFIED"


_SUMMARY = "SUMMARY section 12 (the paper's tables could not be read; docs/paper.md §7.8)"
_ABLATION_ROW = "INF docs/paper.md §7.6 (a variant of sep_params.py, very likely an ablation row) + MEM docs/paper.md §7.8 (row recalled)"
CLAIMS: tuple[PaperClaim, ...] = (
    PaperClaim("cam_speech", "CAM on speech videos", "top-ranked regions fall on speakers' faces and mouths", _SUMMARY,
               expected_sign=1),
    PaperClaim("cam_non_speech", "CAM on non-speech videos", "sound sources are still localised reasonably", _SUMMARY,
               expected_sign=1),
    PaperClaim("cam_over_time", "CAM over time",
               "attention follows on-screen motion (unlike single-frame models, which fix on the object)", _SUMMARY),
    PaperClaim("i3d_features", "Separation, multisensory features replaced by I3D features", "clearly worse", _SUMMARY,
               expected_sign=-1),
    PaperClaim("same_gender", "Separation, same-gender mixtures", "clearly worse than mixed-gender", _SUMMARY,
               expected_sign=-1),
    PaperClaim("no_audio_stream", "Separation, audio stream of the multisensory net removed and retrained",
               "worse: fused audio helps even though the U-Net sees the spectrogram", _SUMMARY, expected_sign=-1),
    PaperClaim("single_frame", "Separation, a single frame (the middle frame repeated, official `static`)",
               "worse than the full model (inferred: an ablation row of the paper's table; its number and wording unread)",
               _ABLATION_ROW, expected_sign=-1),
    PaperClaim("no_pretraining", "Separation, no self-supervised initialisation (official `scratch`)",
               "worse than the full model (inferred: an ablation row of the paper's table; its number and wording unread)",
               _ABLATION_ROW, expected_sign=-1),
    PaperClaim("unet_pit_vs_full", "Separation, audio-only u-net PIT against the full audio-visual model",
               "worse than the full model (inferred: a baseline row of the paper's table; its number unread)",
               "INF docs/paper.md §7.6 (sep_params.py unet_pit) + MEM docs/paper.md §7.8 (audio-only baselines in the table)",
               expected_sign=-1),
    PaperClaim("audio_only_pit", "Audio-only separation (PIT loss, no video)",
               "beats the audio-only baselines except u-net PIT on one metric", _SUMMARY),
    PaperClaim("audio_visual_models", "Audio-visual separation vs other audio-visual speech separation models",
               "better than all", _SUMMARY),
)
CLAIMS_BY_KEY = {claim.key: claim for claim in CLAIMS}


def paper_entry(key: str) -> PaperNumber | PaperClaim:
    """The number or claim under ``key``; a KeyError names the known keys, so no notebook records a row the
    paper (or its source summary) does not have."""
    if key in BY_KEY:
        return BY_KEY[key]
    if key in CLAIMS_BY_KEY:
        return CLAIMS_BY_KEY[key]
    raise KeyError(f"no paper number or claim {key!r}; known: {sorted(BY_KEY) + sorted(CLAIMS_BY_KEY)}")


def paper_number(key: str) -> PaperNumber:
    """The number under ``key``; a KeyError names the known keys, so no table invents one."""
    try:
        return BY_KEY[key]
    except KeyError:
        raise KeyError(f"no paper number {key!r}; known: {sorted(BY_KEY)}") from None
