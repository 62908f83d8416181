"""95 % intervals used across the project: of a proportion, of a mean, of a paired or unpaired difference,
of a ratio resampled by clusters, and of a difference (paired or not) over training seeds and test examples together.

Every verdict on a claim of the paper (docs/paper.md §4-§7, §12) reads one of these intervals
(:func:`avlib.report.claims.verdict`); each interval has one implementation here, so two notebooks never
compute the same one two ways.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def wilson_interval(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion (sound at small n and near 0 or 1); NaN for no trials."""
    if trials == 0:
        return float("nan"), float("nan")
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return centre - half, centre + half


def confidence_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): Student-t interval of the mean of ``values`` (NaN ignored; NaN bounds below 2 values)."""
    from scipy import stats

    array = np.asarray(values, dtype=np.float64)
    array = array[np.isfinite(array)]
    if array.size == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(array.mean())
    if array.size == 1:
        return mean, float("nan"), float("nan")
    half = float(stats.t.ppf(0.5 + level / 2, array.size - 1) * array.std(ddof=1) / math.sqrt(array.size))
    return mean, mean - half, mean + half


def paired_interval(first: Sequence[float], second: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high) of ``first - second`` measured on the same examples (Student-t interval of the mean
    difference); booleans count as 0/1, so two classifiers' per-example correctness compare directly."""
    a, b = (np.asarray(values, dtype=np.float64) for values in (first, second))
    if a.shape != b.shape:
        raise ValueError(f"paired values need the same shape, got {a.shape} and {b.shape}")
    return confidence_interval(a - b, level)


def welch_interval(first: Sequence[float], second: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """(difference of means, low, high) of ``mean(first) - mean(second)`` on different examples, Welch's t interval."""
    from scipy import stats

    a, b = (np.asarray(values, dtype=np.float64) for values in (first, second))
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if a.size < 2 or b.size < 2:
        return (float(a.mean() - b.mean()) if a.size and b.size else float("nan")), float("nan"), float("nan")
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    difference, error = float(a.mean() - b.mean()), math.sqrt(va + vb)
    if error == 0:
        return difference, difference, difference
    dof = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    half = float(stats.t.ppf(0.5 + level / 2, dof) * error)
    return difference, difference - half, difference + half


def cluster_bootstrap_ratio(values: Sequence[float], counts: Sequence[float], resamples: int,
                            seed: int) -> tuple[float, float]:
    """95 % percentile interval of ``sum(values) / sum(counts)`` over clusters drawn with replacement.

    One entry per cluster (e.g. a clip's hits and its frames): frames of one clip are not independent, so the
    clusters are resampled, not the frames. NaN with fewer than 2 clusters or no resamples.
    """
    values, counts = np.asarray(values), np.asarray(counts)
    if len(values) < 2 or resamples < 1:
        return float("nan"), float("nan")
    rng = np.random.default_rng([seed, 31337])
    draws = rng.integers(len(values), size=(resamples, len(values)))
    totals = values[draws].sum(axis=1) / np.maximum(counts[draws].sum(axis=1), 1)
    low, high = np.percentile(totals, [2.5, 97.5])
    return float(low), float(high)


def seed_interval(differences, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high) of a paired difference measured by several training seeds on the same examples.

    ``differences`` is an (S, N) array: for training seed s and test example i, ours minus the reference
    (another training regime trained with the same S seeds, a baseline, or chance). The interval counts both
    sources of doubt: which seeds were trained (the variance of the S per-seed means, over S) and which
    examples were tested (the variance over examples of the seed-averaged differences, over N), added as
    independent terms; degrees of freedom by Welch-Satterthwaite, so with training noise dominant it is a
    t interval on S - 1 degrees of freedom and without it the paired interval over examples. The
    seed-by-example term enters both estimates, so the interval errs wide. NaN bounds with fewer than 2 seeds
    (seed variance unknown) or fewer than 2 examples: a verdict read from them is 'not resolved'.
    """
    array = np.asarray(differences, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"seed_interval needs an (S seeds, N examples) array, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError("seed_interval: differences hold NaN or inf; drop the example for every seed first")
    seeds, examples = array.shape
    if seeds == 0 or examples == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(array.mean())
    if seeds < 2 or examples < 2:
        return mean, float("nan"), float("nan")
    return _components_interval(mean, [(float(array.mean(axis=1).var(ddof=1)) / seeds, seeds - 1),
                                       (float(array.mean(axis=0).var(ddof=1)) / examples, examples - 1)], level)


def interval_over_seeds(values) -> tuple[float, float, float]:
    """(mean, low, high) of an (S seeds, N examples) array: :func:`seed_interval` with several seeds, the Student-t
    interval over the N examples with one (its seed variance unknown, so a verdict between training regimes stays
    'not resolved' in a result profile: :meth:`avlib.report.results.ResultWriter.compare`)."""
    array = np.asarray(values, dtype=np.float64)
    return seed_interval(array) if len(array) > 1 else confidence_interval(array[0])


def _components_interval(mean: float, terms: Sequence[tuple[float, int]], level: float) -> tuple[float, float, float]:
    """(mean, low, high): a t interval whose variance is the sum of independent ``(variance, degrees of freedom)``
    terms, its degrees of freedom by Welch-Satterthwaite (the seed intervals' one rule for adding doubts)."""
    from scipy import stats

    variance = sum(term for term, _ in terms)
    if variance == 0:
        return mean, mean, mean
    dof = variance**2 / sum(term**2 / df for term, df in terms if term > 0)
    half = float(stats.t.ppf(0.5 + level / 2, dof) * math.sqrt(variance))
    return mean, mean - half, mean + half


def seed_spread(scores) -> dict[str, float]:
    """A row's score over its training seeds: mean, sample standard deviation (NaN for one seed), min and max."""
    array = np.asarray(scores, dtype=np.float64).ravel()
    if array.size == 0:
        raise ValueError("seed_spread needs at least one seed's score")
    return {"mean": float(array.mean()), "sd": float(array.std(ddof=1)) if array.size > 1 else float("nan"),
            "min": float(array.min()), "max": float(array.max())}


def seed_welch_interval(first, second, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high) of ``mean(first) - mean(second)`` on different examples, measured by the same training seeds.

    ``first`` is (S, N1), ``second`` (S, N2), row s from training seed s (e.g. one model's same-gender and
    different-gender test pairs). The Welch interval over examples (of the seed-averaged scores) plus the variance
    of the S per-seed differences of means, over S, as in :func:`seed_interval`; degrees of freedom by
    Welch-Satterthwaite over the three terms. NaN bounds with fewer than 2 seeds or fewer than 2 examples a side.
    """
    a, b = (np.asarray(values, dtype=np.float64) for values in (first, second))
    if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[0]:
        raise ValueError(f"seed_welch_interval needs (S, N1) and (S, N2) arrays of the same seeds, got {a.shape} and {b.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("seed_welch_interval: scores hold NaN or inf; drop the example for every seed first")
    seeds = a.shape[0]
    if seeds == 0 or a.shape[1] == 0 or b.shape[1] == 0:
        return float("nan"), float("nan"), float("nan")
    per_seed = a.mean(axis=1) - b.mean(axis=1)
    mean = float(per_seed.mean())
    if seeds < 2 or a.shape[1] < 2 or b.shape[1] < 2:
        return mean, float("nan"), float("nan")
    return _components_interval(mean, [(float(per_seed.var(ddof=1)) / seeds, seeds - 1),
                                       (float(a.mean(axis=0).var(ddof=1)) / a.shape[1], a.shape[1] - 1),
                                       (float(b.mean(axis=0).var(ddof=1)) / b.shape[1], b.shape[1] - 1)], level)
