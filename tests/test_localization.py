"""Localisation scores on known maps: pointing, cIoU, silent distractors, where peaks land, and the
scene helpers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from media import write_scene

from avlib.localization import (
    SceneClip,
    SceneEvaluation,
    ciou,
    on_screen_events,
    peak_concentration,
    peak_in,
    sounding_over_silent,
    success_auc,
)


def test_frame_scores_on_known_maps():
    mask = np.zeros((10, 10), dtype=bool)
    mask[2:5, 2:5] = True
    assert peak_in(mask.astype(float), mask) and not peak_in(~mask * 1.0, mask)
    assert ciou(mask.astype(float), mask) == 1.0
    shifted = np.roll(mask, 1, axis=1).astype(float)  # 6 of 9 pixels overlap, 3 false positives
    assert ciou(shifted, mask) == pytest.approx(6 / (9 + 3))
    assert ciou(np.ones((10, 10)), mask) == 0.0  # a flat map predicts nothing
    assert success_auc([1.0, 1.0]) == pytest.approx(1.0)
    assert success_auc([0.5]) == pytest.approx(0.5 + 0.025, abs=1e-9)  # share 1 up to 0.5, then a half trapezoid
    silent = np.zeros_like(mask)
    silent[7:9, 7:9] = True
    assert sounding_over_silent(mask * 1.0, mask, silent) == 1.0
    assert sounding_over_silent(silent * 1.0, mask, silent) == 0.0


def test_peak_concentration_finds_a_map_stuck_to_one_place():
    rng = np.random.default_rng(0)
    stuck = rng.random((2, 30, 4, 5)) * 0.5
    stuck[:, :, 0, 4] = 1.0  # always the top-right cell
    wandering = rng.random((2, 30, 4, 5))
    evaluation = SceneEvaluation(pd.DataFrame())
    evaluation.maps = {f"clip{i}": {"stuck": stuck[i], "wandering": wandering[i]} for i in range(2)}
    corner = peak_concentration(evaluation, "stuck")
    assert corner["share %"] == 100.0 and corner["maps"] == 60 and corner["uniform share %"] == 5.0
    assert (corner["row"], corner["col"]) == (0.125, 0.9)
    assert peak_concentration(evaluation, "wandering")["share %"] < 25.0


def test_on_screen_events_counts_the_visible_objects_sounds(tmp_path):
    video, truth = write_scene(tmp_path, event_object=(0, -1, 1, 0, -1))
    assert on_screen_events(SceneClip("scene_00000", video, truth)) == 3  # the two off-screen sounds do not count
    assert on_screen_events(SceneClip("real", video, None)) == 0
