"""The CAM task: its per-profile settings and maps scored on a scene with known sounding and silent objects."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from media import write_scene

from avlib.config import CamSettings
from avlib.data.shift import ShiftConfig
from avlib.localization import SceneClip, pointing_difference, summarise
from avlib.tasks.cam import evaluate_scenes


class Brightness:
    """Map sources that light up what is brighter (sign 1) or darker (sign -1) than the grey background."""

    def __init__(self, sign: float, name: str):
        self.sign, self.name = sign, name

    def __call__(self, frames, audio, fps, size):
        grey = torch.from_numpy(np.maximum(self.sign * (frames.astype(np.float32).mean(axis=-1) - 128), 0))
        return np.arange(len(frames)) / fps, {self.name: F.adaptive_avg_pool2d(grey[:, None], size)[:, 0].numpy()}


def test_scene_evaluation_knows_right_from_wrong(tmp_path):
    scene = SceneClip("scene_00000", *write_scene(tmp_path))
    shift = ShiftConfig(window=1.0, fps=10.0, sample_rate=8000, min_shift=0.4, max_shift=0.9, size=64, crop=32)
    sources = [Brightness(1.0, "bright"), Brightness(-1.0, "dark")]
    evaluation = evaluate_scenes([scene], sources, shift, CamSettings(0, 1, map_stride=2, eval_frame_stride=5),
                                 progress=False)
    table = summarise(evaluation.frames, resamples=20).set_index("method")
    assert table.loc["bright", "pointing %"] == 100.0 and table.loc["bright", "peak on silent object %"] == 0.0
    assert table.loc["bright", "sounding > silent %"] == 100.0 and table.loc["bright", "cIoU"] > 0.3
    assert table.loc["dark", "pointing %"] == 0.0 and table.loc["dark", "peak on silent object %"] == 100.0
    assert table.loc["bright", "clips"] == 1 and table.loc["bright", "frames"] == 8
    assert pointing_difference(evaluation.frames, "bright", "dark", resamples=20)["difference"] == 100.0
    saved = type(evaluation).load(evaluation.save(tmp_path / "saved"))
    np.testing.assert_array_equal(saved.maps["scene_00000"]["dark"], evaluation.maps["scene_00000"]["dark"])
    assert saved.scales == evaluation.scales and len(saved.frames) == len(evaluation.frames)


def test_settings_are_checked():
    with pytest.raises(ValueError, match="hop"):
        CamSettings(fine_tune_steps=0, fine_tune_batch=1, hop=0.0)
    with pytest.raises(ValueError, match="fine_tune_batch"):
        CamSettings(fine_tune_batch=0)
