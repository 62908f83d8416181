"""Intervals: Wilson, Student-t of a mean and of a paired difference, Welch, the cluster bootstrap, and the
interval over training seeds and examples."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from avlib.stats import (
    cluster_bootstrap_ratio,
    confidence_interval,
    paired_interval,
    seed_interval,
    seed_spread,
    seed_welch_interval,
    welch_interval,
    wilson_interval,
)


def test_wilson_interval():
    low, high = wilson_interval(60, 100)
    assert low == pytest.approx(0.502, abs=1e-3) and high == pytest.approx(0.691, abs=1e-3)
    low, high = wilson_interval(10, 10)
    assert 0.7 < low < 1.0 and high == pytest.approx(1.0)  # never beyond 1, unlike the normal interval
    assert all(math.isnan(bound) for bound in wilson_interval(0, 0))


def test_confidence_interval_agrees_with_scipy_and_ignores_nan():
    values = np.random.default_rng(1).normal(2.0, 1.5, 25)
    mean, low, high = confidence_interval(np.append(values, np.nan))
    reference = scipy_stats.t.interval(0.95, len(values) - 1, loc=values.mean(), scale=scipy_stats.sem(values))
    assert mean == pytest.approx(values.mean()) and (low, high) == pytest.approx(reference)
    mean, low, high = confidence_interval([3.0])
    assert mean == 3.0 and math.isnan(low) and math.isnan(high)


def test_paired_interval_is_the_interval_of_the_differences():
    rng = np.random.default_rng(2)
    first = rng.normal(0.0, 1.0, 40)
    second = first - 0.5 + rng.normal(0.0, 0.1, 40)
    difference, low, high = paired_interval(first, second)
    reference = scipy_stats.ttest_rel(first, second).confidence_interval(0.95)
    assert difference == pytest.approx(0.5, abs=0.05) and (low, high) == pytest.approx((reference.low, reference.high))
    # an unpaired interval of the same data is far wider: pairing removes the shared variation
    _, welch_low, welch_high = welch_interval(first, second)
    assert welch_high - welch_low > 5 * (high - low)


def test_paired_interval_of_correctness():
    right = np.array([True, True, True, False, True, True, True, True])
    wrong = np.array([False, True, False, False, True, False, False, True])
    difference, low, high = paired_interval(right, wrong)
    assert difference == pytest.approx(4 / 8) and low > 0
    with pytest.raises(ValueError, match="same shape"):
        paired_interval(right, wrong[:-1])


def test_welch_interval_agrees_with_scipy():
    rng = np.random.default_rng(0)
    first, second = rng.normal(0, 1, 20), rng.normal(1, 3, 30)
    difference, low, high = welch_interval(first, second)
    reference = scipy_stats.ttest_ind(first, second, equal_var=False).confidence_interval(0.95)
    assert difference == pytest.approx(first.mean() - second.mean())
    assert (low, high) == pytest.approx((reference.low, reference.high))


def test_cluster_bootstrap_resamples_clusters():
    hits, frames = np.array([9, 1, 5, 4, 8, 2]), np.array([10, 7, 12, 9, 11, 8])
    low, high = cluster_bootstrap_ratio(hits, frames, 2000, seed=0)
    assert low < hits.sum() / frames.sum() < high and 0.2 < low and high < 0.8
    assert cluster_bootstrap_ratio(hits, frames, 2000, seed=0) == (low, high)  # seeded
    assert cluster_bootstrap_ratio(hits, frames, 2000, seed=1) != (low, high)
    # the same hits spread evenly over the clips: no clip-to-clip variation, a narrower interval
    even_low, even_high = cluster_bootstrap_ratio(np.full(6, 5), np.full(6, 10), 2000, seed=0)
    assert even_low == even_high == 0.5 and high - low > 0.1
    assert all(math.isnan(bound) for bound in cluster_bootstrap_ratio(hits[:1], frames[:1], 100, seed=0))


def test_seed_interval_without_seed_variance_is_the_paired_interval_over_examples():
    rng = np.random.default_rng(0)
    per_example = rng.normal(1.0, 2.0, size=50)
    mean, low, high = seed_interval(np.tile(per_example, (3, 1)))  # three seeds, identical models
    expected = confidence_interval(per_example)
    assert mean == pytest.approx(expected[0]) and (low, high) == pytest.approx(expected[1:])


def test_seed_interval_widens_with_seed_variance_and_is_a_t_interval_over_seeds_when_it_dominates():
    rng = np.random.default_rng(1)
    noise = rng.normal(0.0, 0.01, size=(3, 400))
    offsets = np.array([[0.2], [1.0], [1.8]])  # training seeds disagree far more than examples do
    mean, low, high = seed_interval(offsets + noise)
    seed_means = (offsets + noise).mean(axis=1)
    over_seeds = confidence_interval(seed_means)
    assert mean == pytest.approx(1.0, abs=0.01)
    assert high - low == pytest.approx(over_seeds[2] - over_seeds[1], rel=0.02)  # 2 degrees of freedom
    assert low < 0 < high  # each seed alone is far above 0; three seeds this spread do not resolve the sign
    _, paired_low, paired_high = confidence_interval((offsets + noise).mean(axis=0))
    assert paired_low > 0.9  # the interval over examples alone would have called it


def test_seed_interval_needs_two_seeds_and_rejects_bad_shapes():
    mean, low, high = seed_interval(np.ones((1, 20)))
    assert mean == 1.0 and math.isnan(low) and math.isnan(high)
    with pytest.raises(ValueError, match="S seeds, N examples"):
        seed_interval(np.ones(20))
    with pytest.raises(ValueError, match="NaN"):
        seed_interval(np.array([[1.0, np.nan], [1.0, 2.0]]))


def test_seed_spread():
    assert seed_spread([1.0, 3.0, 2.0]) == {"mean": 2.0, "sd": 1.0, "min": 1.0, "max": 3.0}
    assert math.isnan(seed_spread([4.0])["sd"])


def test_seed_welch_interval_without_seed_variance_is_welchs_interval():
    rng = np.random.default_rng(2)
    first, second = rng.normal(1.0, 2.0, size=30), rng.normal(0.0, 1.0, size=45)
    found = seed_welch_interval(np.tile(first, (3, 1)), np.tile(second, (3, 1)))  # three identical models
    assert found == pytest.approx(welch_interval(first, second))


def test_seed_welch_interval_counts_the_spread_of_the_per_seed_differences():
    rng = np.random.default_rng(3)
    first, second = rng.normal(1.0, 0.1, size=(3, 200)), rng.normal(0.0, 0.1, size=(3, 300))
    first += np.array([[-1.5], [0.0], [1.5]])  # the seeds disagree on the first kind far more than examples differ
    mean, low, high = seed_welch_interval(first, second)
    assert mean == pytest.approx(1.0, abs=0.05)
    assert low < 0 < high  # 3 seeds this spread do not resolve the sign
    _, welch_low, _ = welch_interval(first.mean(axis=0), second.mean(axis=0))
    assert welch_low > 0.9  # Welch over the seed-averaged examples alone would have called it
    per_seed = first.mean(axis=1) - second.mean(axis=1)
    over_seeds = confidence_interval(per_seed)
    assert high - low == pytest.approx(over_seeds[2] - over_seeds[1], rel=0.05)  # seed term dominant: t on 2 dof


def test_seed_welch_interval_needs_two_seeds_the_same_seeds_and_finite_scores():
    mean, low, high = seed_welch_interval(np.ones((1, 5)), np.zeros((1, 6)))
    assert mean == 1.0 and math.isnan(low) and math.isnan(high)
    with pytest.raises(ValueError, match="same seeds"):
        seed_welch_interval(np.ones((2, 5)), np.ones((3, 5)))
    with pytest.raises(ValueError, match="NaN"):
        seed_welch_interval(np.array([[1.0, np.nan], [1.0, 2.0]]), np.ones((2, 3)))
