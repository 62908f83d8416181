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


# ----------------------------------------------------------------------------- sync-only clips


@pytest.fixture(scope="module")
def sync_only(tmp_path_factory):
    """Ten small sync-only clips (64 px, 4 s) built by the real generator."""
    from avlib.data.world import world_config
    from avlib.data.world.scenes import SyncOnlyConfig, generate_sync_only

    root = tmp_path_factory.mktemp("sync_only")
    config = SyncOnlyConfig(world_config("scenes", "smoke", 0, clip_seconds=4.0), num_clips=10)
    return generate_sync_only(config, root, workers=1)


def _object_brightness_change(truth, video) -> np.ndarray:
    """(T - 1, 2) mean |grey frame difference| inside each object's mask, measured on the decoded frames."""
    from avlib import io

    frames = io.read_clip(video, 0.0, fps=truth.fps, num_frames=len(truth.boxes) - 1, size=(truth.height, truth.width),
                          sample_rate=8000).frames.astype(np.float32).mean(axis=-1)
    change = np.abs(np.diff(frames, axis=0))
    return np.array([[change[t][truth.masks(t + 1)[k]].mean() if truth.masks(t + 1)[k].any() else np.nan for k in range(2)]
                     for t in range(len(change))])


def test_sync_only_distractor_moves_and_glows_like_the_source_but_out_of_step(sync_only):
    import pandas as pd

    from avlib.data.world import load_truth

    objects = pd.read_csv(sync_only / "objects.csv")
    assert list(objects.groupby("clip")["sounding"].apply(list)) == [[True, False]] * 10
    assert (objects.groupby("clip")["motion"].nunique() == 1).all()  # the same kind of motion in each clip
    glow_source, glow_distractor, in_step, out_of_step, change = [], [], [], [], []
    for clip in sorted((sync_only / "clips").glob("*.mp4")):
        truth = load_truth(sync_only / "truth" / f"{clip.stem}.npz")
        assert truth.sounding.tolist() == [True, False] and truth.loudness[:, 1].max() == 0.0  # the distractor is silent
        glow_source.append(truth.glow[:, 0])
        glow_distractor.append(truth.glow[:, 1])
        heard = truth.loudness[:, 0]
        in_step.append(np.corrcoef(truth.glow[:, 0], heard)[0, 1])
        out_of_step.append(np.corrcoef(truth.glow[:, 1], heard)[0, 1])
        change.append(np.nanmean(_object_brightness_change(truth, clip), axis=0))
    # the same glow process: pooled mean glow and share of glowing frames agree within a third
    source, distractor = np.concatenate(glow_source), np.concatenate(glow_distractor)
    assert 0.67 < distractor.mean() / source.mean() < 1.5
    assert 0.67 < (distractor > 0.1).mean() / (source > 0.1).mean() < 1.5
    # the same brightness change on screen (motion and glow, measured on the decoded frames)
    change = np.array(change)
    assert 0.67 < change[:, 1].mean() / change[:, 0].mean() < 1.5
    # out of step: the source's glow follows its sound, the distractor's does not
    assert np.nanmean(in_step) > 0.5 and abs(np.nanmean(out_of_step)) < 0.2


def test_motion_energy_cannot_tell_source_from_distractor_on_sync_only_clips(sync_only):
    from avlib.localization import MotionEnergy

    clips = [SceneClip(path.stem, path, sync_only / "truth" / f"{path.stem}.npz")
             for path in sorted((sync_only / "clips").glob("*.mp4"))]
    shift = ShiftConfig(window=2.1, fps=7.5, sample_rate=8000, min_shift=1.0, max_shift=1.5, size=64, crop=64)
    evaluation = evaluate_scenes(clips, [MotionEnergy(sigma=4)], shift, CamSettings(0, 1, map_stride=4, eval_frame_stride=3),
                                 progress=False)
    share = summarise(evaluation.frames, resamples=20).set_index("method").loc["motion energy", "sounding > silent %"]
    assert 30.0 < share < 70.0  # on the world's ordinary scenes, where distractors never glow, it was 75 %


# ----------------------------------------------------------------------------- verdicts over training seeds


def test_seed_rows_and_differences_pair_seeds_and_count_their_spread():
    import pandas as pd

    from avlib.stats import seed_interval
    from avlib.tasks.cam import difference_rows, seed_rows

    rng = np.random.default_rng(0)
    rows = []
    for clip in range(6):
        for frame in range(4):
            for seed, level in ((0, 0.9), (1, 0.6)):  # seed 1 is a worse training run
                rows.append({"clip": f"c{clip}", "frame": frame, "method": f"cam, seed {seed}", "score": float(rng.random() < level)})
                rows.append({"clip": f"c{clip}", "frame": frame, "method": f"random, seed {seed}", "score": float(rng.random() < 0.5)})
            rows.append({"clip": f"c{clip}", "frame": frame, "method": "chance", "score": float(rng.random() < 0.5)})
    frames = pd.DataFrame(rows)
    roles = {"cam": ["cam, seed 0", "cam, seed 1"], "random": ["random, seed 0", "random, seed 1"], "chance": ["chance"]}
    by_role = pd.DataFrame(seed_rows(frames, roles, "score", "m")).set_index("method")
    per_seed = frames.pivot_table(index="clip", columns="method", values="score")
    assert by_role.loc["cam", "seeds"] == 2 and by_role.loc["chance", "seeds"] == 1
    assert by_role.loc["cam", "seed min"] == pytest.approx(100 * per_seed["cam, seed 1"].mean())
    assert by_role.loc["cam", "seed max"] == pytest.approx(100 * per_seed["cam, seed 0"].mean())
    differences = pd.DataFrame(difference_rows(frames, roles, ["cam"], ["random", "chance"], "score", "m")).set_index("baseline")
    paired = 100 * np.stack([per_seed[f"cam, seed {s}"] - per_seed[f"random, seed {s}"] for s in (0, 1)])
    assert differences.loc["random", "difference (points)"] == pytest.approx(seed_interval(paired)[0])
    assert differences.loc["random", "95 % low"] == pytest.approx(seed_interval(paired)[1])
    against_chance = 100 * np.stack([per_seed[f"cam, seed {s}"] - per_seed["chance"] for s in (0, 1)])
    assert differences.loc["chance", "95 % high"] == pytest.approx(seed_interval(against_chance)[2])
    assert set(differences["verdict"]) <= {"holds", "opposite", "not resolved"}


def test_cam_settings_check_seeds_and_sizes():
    with pytest.raises(ValueError, match="seeds"):
        CamSettings(seeds=(0, 0))
    with pytest.raises(ValueError, match="16 pixels"):
        CamSettings(size=8)
    from avlib.config import ConfigError, resolve

    assert (resolve("synth", {"cam.size": 40, "cam.crop": 32}).cam.crop, resolve("synth").cam.crop) == (32, 64)
    with pytest.raises(ConfigError, match="cam.crop"):
        resolve("synth", {"cam.size": 48})
