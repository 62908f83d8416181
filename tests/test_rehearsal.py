"""The paper profile's dress rehearsal: the miniature data root, the notebooks' overrides and the whole run."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from avlib import io
from avlib.data.index import build_index
from avlib.data.rehearsal import MARKER, TEST_SCENES, TRAIN_SCENES, i3d_arrays, is_rehearsal_root, write_root
from avlib.data.ucf101 import load_split
from avlib.models.i3d import I3DConfig, load_converted
from avlib.notebooks import discover
from avlib.notebooks import main as notebooks_main
from avlib.report import runs
from avlib.report.results import REHEARSAL_BANNER, REHEARSAL_ENV, SMOKE_BANNER, ResultWriter

CHECKOUT = Path(__file__).resolve().parents[1]
#: The whole rehearsal's limit: about twice its time on an idle 2-core machine (docs/datasets.md, Dress rehearsal).
REHEARSAL_TIMEOUT = 75 * 60
NOTEBOOKS = discover()


def test_i3d_arrays_are_the_published_networks_variables_in_tf_names_and_shapes(tmp_path):
    arrays = i3d_arrays(seed=3)
    np.savez(tmp_path / "rgb_imagenet.npz", **arrays)
    model = load_converted(tmp_path / "rgb_imagenet.npz")  # raises on a missing or misshapen variable
    assert model.num_parameters() > 11e6
    assert arrays["RGB/inception_i3d/Conv3d_1a_7x7/conv_3d/w"].shape == (7, 7, 7, 3, 64)  # T, H, W, C_in, C_out
    assert arrays["RGB/inception_i3d/Mixed_4f/Branch_1/Conv3d_0b_3x3/batch_norm/beta"].shape == (1, 1, 1, 1, 320)
    assert arrays["RGB/inception_i3d/Logits/Conv3d_0c_1x1/conv_3d/b"].shape == (I3DConfig().num_classes,)
    assert min(value.min() for name, value in arrays.items() if name.endswith("moving_variance")) > 0
    again = i3d_arrays(seed=3)
    assert all(np.array_equal(value, again[name]) for name, value in arrays.items())  # seeded


def test_overrides_enter_the_fingerprint_only_when_given():
    source = NOTEBOOKS[0]
    plain = runs.fingerprint(source, {"profile": "paper", "seed": 0, "data_root": "", "device": "cpu"}, inputs={})
    empty = runs.fingerprint(source, {"profile": "paper", "seed": 0, "data_root": "", "device": "cpu",
                                      "overrides": {}}, inputs={})
    given = runs.fingerprint(source, {"profile": "paper", "seed": 0, "data_root": "", "device": "cpu",
                                      "overrides": {"cam.eval_clips": "2"}}, inputs={})
    assert "overrides" not in plain["parameters"] and runs.digest(plain) == runs.digest(empty)
    assert runs.digest(given) != runs.digest(plain) and "cam.eval_clips" in given["parameters"]["overrides"]


def test_a_bad_override_stops_the_runner_before_any_notebook(tmp_path, capsys):
    for bad in ("cam.no_such_key=1", "cam.eval_clips", "cam.eval_clips=many"):
        with pytest.raises(SystemExit) as stop:
            notebooks_main(["--profile", "smoke", "--only", "00", "--results-root", str(tmp_path), "--set", bad])
        assert stop.value.code == 2
        assert "--set" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_rehearsal_tables_and_figures_are_marked(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    monkeypatch.setenv(REHEARSAL_ENV, "1")
    out = ResultWriter(profile="paper", seed=0, notebook="00_data", root=tmp_path)
    paths = out.table(pd.DataFrame({"x": [1]}), "numbers")
    assert paths["md"].read_text().startswith(f"> **{REHEARSAL_BANNER}**")
    assert json.loads((paths["csv"].with_name("numbers.provenance.json")).read_text())["rehearsal"] is True
    fig, _ = plt.subplots()
    from PIL import Image

    assert "REHEARSAL" in Image.open(out.figure(fig, "picture")).info["Title"]
    monkeypatch.delenv(REHEARSAL_ENV)
    plain = ResultWriter(profile="paper", seed=0, notebook="00_data", root=tmp_path / "plain").table(pd.DataFrame({"x": [1]}), "n")
    assert not plain["md"].read_text().startswith("> **")
    smoke = ResultWriter(profile="smoke", seed=0, notebook="00_data", root=tmp_path / "smoke").table(pd.DataFrame({"x": [1]}), "n")
    assert smoke["md"].read_text().startswith(f"> **{SMOKE_BANNER}**")


# -- slow: the miniature data root, then the whole rehearsal ------------------------------------------


@pytest.fixture(scope="module")
def rehearsal_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("rehearsal")


@pytest.fixture(scope="module")
def data_root(rehearsal_dir):
    return write_root(rehearsal_dir / "root", seed=0)


@pytest.mark.slow
def test_data_root_has_the_layouts_of_docs_datasets(data_root, tmp_path):
    assert is_rehearsal_root(data_root) and not is_rehearsal_root(tmp_path)
    for split, count in (("train", TRAIN_SCENES), ("test", TEST_SCENES)):
        index = build_index(data_root / "audioset" / split, cache=False)
        assert len(index.with_audio()) == count
        for video in index:
            assert (video.video_codec, video.audio_codec, round(video.duration)) == ("h264", "aac", 10)
            assert video.fps == pytest.approx(29.97, abs=0.01)

    ucf = data_root / "ucf101"
    split = load_split(ucf, 1)
    classes = (ucf / "ucfTrainTestlist" / "classInd.txt").read_text().split()[1::2]
    assert split.train and split.test and {Path(video.path).parent.name for video in split.train} == set(classes)
    videos = [io.probe(path) for path in sorted(ucf.glob("*/v_*_g*_c*.avi"))]
    assert {video.video_codec for video in videos} == {"mpeg4"}
    with_audio = [video for video in videos if video.has_audio]
    assert 0 < len(with_audio) < len(videos) and {video.audio_codec for video in with_audio} <= {"mp3", "mp3float"}

    vox = data_root / "voxceleb"
    speakers, clips = pd.read_csv(vox / "speakers.csv"), pd.read_csv(vox / "clips.csv")
    assert list(speakers.columns) == ["speaker", "gender", "split"] and list(clips.columns) == ["path", "speaker", "split"]
    assert set(speakers["split"]) == {"train", "val", "test"} and set(speakers["gender"]) == {"m", "f"}
    for path in clips["path"]:
        assert len(Path(path).parts) == 3 and io.probe(vox / path).has_audio  # <speaker>/<video>/<clip>.mp4
    load_converted(data_root / "i3d" / "rgb_imagenet.npz")

    marker = (data_root / MARKER).stat().st_mtime_ns
    assert write_root(data_root) == data_root and (data_root / MARKER).stat().st_mtime_ns == marker  # re-used
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("not the rehearsal's")
    with pytest.raises(FileExistsError, match="not overwriting"):
        write_root(tmp_path / "other")


@pytest.mark.slow
@pytest.mark.timeout(REHEARSAL_TIMEOUT)
def test_the_rehearsal_runs_every_notebook_on_the_paper_path(rehearsal_dir, data_root):
    """``scripts/rehearse.sh DIR``: pretraining under 2-process torchrun, then every notebook at the paper's sizes."""
    environment = {**os.environ, "PYTHONPATH": str(CHECKOUT)}
    for name in ("REHEARSAL_SET", "REHEARSAL_ONLY", "REHEARSAL_DEVICE"):
        environment.pop(name, None)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(["bash", str(CHECKOUT / "scripts" / "rehearse.sh"), str(rehearsal_dir)], cwd=CHECKOUT,
                          env=environment, capture_output=True, text=True, timeout=REHEARSAL_TIMEOUT - 60)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # the numbers docs/datasets.md records (shown with pytest -s or -rP, and in a failure's report)
    print(f"rehearsal: {after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime:.0f} CPU s, "
          f"largest process {after.ru_maxrss / 2**20:.1f} GB")
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]

    summary = json.loads((rehearsal_dir / "runs" / "pretrain" / "summary.json").read_text())
    assert summary["profile"] == "paper" and summary["summary"]["training_clips"] == TRAIN_SCENES
    checkpoints = rehearsal_dir / "checkpoints" / "paper" / "pretrain"
    assert (checkpoints / "shift_lowfps" / "checkpoint.pt").exists() and (checkpoints / "shift_v1" / "checkpoint.pt").exists()

    profile = rehearsal_dir / "results" / "paper"
    for source in NOTEBOOKS:
        record = json.loads((profile / "runs" / f"{source.stem}.json").read_text())
        assert record["status"] == "ran", record
        assert record["components"]["parameters"]["overrides"]  # the rehearsal's steps and sizes
        outputs = [profile / output for output in record["outputs"]]
        assert any(path.suffix in (".csv", ".png", ".mp4", ".wav") for path in outputs), record["outputs"]
        assert all(path.exists() for path in outputs), [path for path in outputs if not path.exists()]
        for sidecar in (path for path in outputs if path.name.endswith(".provenance.json")):
            record = json.loads(sidecar.read_text())
            assert record["rehearsal"] is True and record["profile"] == "paper", sidecar
            # the paper's clip: 125 frames of 224 x 224 and 4.2 s of 21 kHz audio, the full-width network
            assert record["config"]["pretrain"]["model"]["num_frames"] == 125
            assert record["config"]["pretrain"]["model"]["frame_size"] == 224
            assert record["config"]["pretrain"]["model"]["width"] == 64
    for table in profile.glob("tables/*.md"):
        assert table.read_text().startswith(f"> **{REHEARSAL_BANNER}**"), table
    shutil.rmtree(rehearsal_dir / "checkpoints")  # gigabytes of full-size weights: not kept in the test's temporary folders
