"""The task command lines run end to end, alone and under torchrun with 2 processes (gloo, CPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from avlib.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parent.parent


def _run(args: list[str], tmp_path: Path, processes: int = 1) -> dict:
    out, checkpoints = tmp_path / "out", tmp_path / "checkpoints"
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]
                if processes > 1 else [sys.executable])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "AVLIB_THREADS": "1"}  # 2 ranks on 2 cores
    result = subprocess.run([*launcher, "-m", *args, "--out", str(out), "--checkpoints", str(checkpoints)],
                            capture_output=True, text=True, cwd=ROOT, timeout=900, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads((out / "summary.json").read_text())


@pytest.mark.slow
def test_pretraining_under_torchrun_ends_with_the_resolved_config_stored(tmp_path: Path) -> None:
    summary = _run(["avlib.tasks.pretrain", "--profile", "smoke", "train.lr=0.02"], tmp_path, processes=2)
    assert summary["task"] == "pretrain" and summary["config"]["train"]["lr"] == 0.02
    checkpoint = load_checkpoint(summary["summary"]["checkpoint"])
    *_, before, last_stage = summary["config"]["stages"]  # the smoke schedule: scenes, then talking heads
    # a stage's checkpoint counts that stage's own steps (Stage.steps are global ends)
    assert checkpoint["step"] == last_stage["steps"] - before["steps"] and checkpoint["config"]["run"]["stage"] == last_stage["name"]
    assert checkpoint["config"]["run"]["pretrain"]["train"]["lr"] == 0.02
    assert len(checkpoint["extra"]["rng"]) == 2  # both ranks' random streams, for an exact resume
    assert 0.0 <= summary["summary"]["held_out"]["accuracy"] <= 1.0


@pytest.mark.slow
def test_cam_fine_tuning_under_torchrun_and_its_scores(tmp_path: Path) -> None:
    summary = _run(["avlib.tasks.cam", "--profile", "smoke"], tmp_path, processes=2)["summary"]
    checkpoint = load_checkpoint(summary["checkpoint"])
    assert checkpoint["step"] == 2 and checkpoint["config"]["run"]["cam"]["fine_tune_steps"] == 2
    assert len(checkpoint["extra"]["rng"]) == 2 and checkpoint["config"]["run"]["train_seed"] == 0
    assert sorted(summary["checkpoints"]) == ["0", "1"]  # the smoke profile's two training seeds
    assert set(summary["tables"]) == {"localization.csv", "peaks.csv", "vs_baselines.csv", "seeds.csv", "sync_only.csv"}
    assert 0.0 <= summary["pointing %"] <= 100.0 and summary["frames"] > 0 and 0.0 <= summary["sync-only %"] <= 100.0


@pytest.mark.slow
def test_a_resume_with_another_config_is_refused_by_key(tmp_path: Path) -> None:
    _run(["avlib.tasks.pretrain", "--profile", "smoke"], tmp_path)
    result = subprocess.run([sys.executable, "-m", "avlib.tasks.pretrain", "--profile", "smoke", "pretrain.eval_every=1",
                             "pretrain.eval_pairs_per_video=3", "--out", str(tmp_path / "out"),
                             "--checkpoints", str(tmp_path / "checkpoints")],
                            capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "differing keys: run.pretrain.eval_every, run.pretrain.eval_pairs_per_video" in result.stderr
    assert torch.load(tmp_path / "checkpoints" / "smoke" / "pretrain" / "shift_lowfps" / "checkpoint.pt",
                      weights_only=True)["step"] == 4  # nothing already written is lost
