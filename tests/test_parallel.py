"""Independent jobs in worker processes (avlib.parallel): results in order, each worker's thread count, failures
named, data shared through mapped files; and the UCF-101 task trained with two worker processes gives the
checkpoints and tables of the same task trained in one process at the same thread count."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from avlib import determinism
from avlib.checkpoint import save_checkpoint
from avlib.config import ConfigError, resolve
from avlib.parallel import Job, JobError, MappedArrays, run_jobs, shared_copy, worker_threads
from tests.test_ucf101 import _net, ucf_tree  # noqa: F401 (the miniature UCF-101 tree fixture)

REPO = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).resolve().parent / "parallel_worker.py"


@pytest.fixture(autouse=True)
def fresh_worker_record(monkeypatch):
    """This process's note of worker runs (in every later provenance record) starts empty and is put back after."""
    monkeypatch.setattr(determinism, "_WORKERS", {})


def test_workers_return_in_job_order_with_their_share_of_the_threads():
    jobs = [Job(f"square {n}", pow, (n, 2)) for n in range(5)]
    assert run_jobs(jobs, 2) == [0, 1, 4, 9, 16]
    assert run_jobs(jobs, 1) == [0, 1, 4, 9, 16]
    # each worker starts with its threads in the environment, so torch (imported there first) runs that many
    assert run_jobs([Job("threads", torch.get_num_threads), Job("variable", os.getenv, (determinism.THREADS_VARIABLE,))],
                    2, threads=2) == [1, "1"]
    assert run_jobs([Job("threads", torch.get_num_threads)], 2, threads=4) == [2]
    assert determinism.record()["seed_processes"] == 2 and determinism.record()["threads_per_process"] == 2
    assert worker_threads(3, threads=2) == 1 and worker_threads(1, threads=2) == 2
    with pytest.raises(ValueError, match="at least 1"):
        run_jobs(jobs, 0)


def test_a_failing_job_is_named_in_the_parent():
    jobs = [Job("fine", pow, (2, 3)), Job("ucf101 no_audio, training seed 4", int, ("not a number",))]
    with pytest.raises(JobError, match=r"'ucf101 no_audio, training seed 4'.*ValueError.*not a number"):
        run_jobs(jobs, 2, threads=2)
    with pytest.raises(ValueError, match="not a number") as raised:  # in this process: the job's own error, named
        run_jobs(jobs, 1)
    assert "in job 'ucf101 no_audio, training seed 4'" in raised.value.__notes__


def test_mapped_arrays_pickle_as_their_file_and_read_the_same_values(tmp_path):
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (count, 4, 5, 3), dtype=np.uint8) for count in (3, 1, 7)]
    mapped = MappedArrays.write(frames, tmp_path / "frames.npy")
    again = pickle.loads(pickle.dumps(mapped))
    assert len(pickle.dumps(mapped)) < 1000 and len(again) == 3
    for original, read in zip(frames, again):
        np.testing.assert_array_equal(read, original)
        assert not read.flags.writeable
    np.testing.assert_array_equal(again[-1], frames[-1])
    with pytest.raises(IndexError, match="frames.npy"):
        again[3]
    with pytest.raises(ValueError, match="one dtype"):
        MappedArrays.write([np.zeros(2, np.uint8), np.zeros(2, np.float32)], tmp_path / "mixed.npy")

    class Source:
        def __init__(self):
            self.frames, self.audio, self.name = frames, [np.ones((2, n), np.float32) for n in (4, 2, 9)], "videos"

    source = Source()
    shared = shared_copy(source, tmp_path / "shared", ("frames", "audio"), "train-")
    assert source.frames is frames and shared.name == "videos"  # the source itself is untouched
    assert sorted(path.name for path in (tmp_path / "shared").iterdir()) == ["train-audio.npy", "train-frames.npy"]
    np.testing.assert_array_equal(shared.audio[2], source.audio[2])


def test_the_knob_is_one_top_level_setting_validated():
    # synth trains its seeds side by side on its 2 cores; smoke and paper one after the other
    assert resolve("smoke").seed_processes == resolve("paper").seed_processes == 1
    assert resolve("synth").seed_processes == 2
    assert resolve("smoke", {"seed_processes": 2}).seed_processes == 2
    for bad in (0, -1):
        with pytest.raises(ConfigError, match="seed_processes must be at least 1"):
            resolve("smoke", {"seed_processes": bad})
    from avlib.tasks.cli import experiment_from

    assert experiment_from("smoke", "ucf101", ["seed_processes=2"]).seed_processes == 2


def _run_in_child(processes: int, data_root: Path, pretrained: Path, base: Path, task: str = "ucf101") -> tuple[Path, dict]:
    """The task run by tests/parallel_worker.py in a process started with 1 thread: (checkpoint root, what it wrote)."""
    out, checkpoints = base / f"out{processes}", base / f"checkpoints{processes}"
    env = {**os.environ, "PYTHONPATH": str(REPO), **determinism.child_environment(threads=1)}
    child = subprocess.run([sys.executable, str(WORKER), "--task", task, "--data-root", str(data_root), "--pretrained",
                            str(pretrained), "--checkpoints", str(checkpoints), "--out", str(out), "--processes", str(processes)],
                           env=env, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert child.returncode == 0, child.stderr[-3000:]
    return checkpoints, {**json.loads((out / "run.json").read_text()), "out": out}


def assert_same_checkpoints(one_root: Path, two_root: Path, checkpoints: list[Path]) -> None:
    """Every tensor of each checkpoint (relative paths) equal under both roots, both trained at 1 thread."""
    for relative in checkpoints:
        first = torch.load(one_root / relative, weights_only=True)
        second = torch.load(two_root / relative, weights_only=True)
        assert first["step"] == second["step"] and first["extra"]["threads"] == second["extra"]["threads"]
        assert first["extra"]["threads"]["torch_threads"] == 1
        assert first["model"].keys() == second["model"].keys()
        for name, tensor in first["model"].items():
            assert torch.equal(tensor, second["model"][name]), f"{relative}: {name}"


@pytest.mark.slow
def test_ucf101_in_two_worker_processes_equals_one_process_at_the_same_thread_count(ucf_tree, tmp_path):  # noqa: F811
    pretrained = tmp_path / "pretrained.pt"
    save_checkpoint(pretrained, model=_net(), step=1, config={})
    one_root, one = _run_in_child(1, ucf_tree, pretrained, tmp_path)
    two_root, two = _run_in_child(2, ucf_tree, pretrained, tmp_path)
    assert "seed_processes" not in one["determinism"] and one["determinism"]["torch_threads"] == 1
    assert two["determinism"]["seed_processes"] == 2 and two["determinism"]["threads_per_process"] == 1
    checkpoints = sorted(path.relative_to(one_root) for path in one_root.rglob("checkpoint.pt") if "ucf101" in path.parts)
    assert len(checkpoints) == 7  # three rows x two training seeds, and the linear probe once
    assert checkpoints == sorted(path.relative_to(two_root) for path in two_root.rglob("checkpoint.pt") if "ucf101" in path.parts)
    assert_same_checkpoints(one_root, two_root, checkpoints)
    assert (one["out"] / "accuracy.csv").read_bytes() == (two["out"] / "accuracy.csv").read_bytes()
    with np.load(one["out"] / "probs.npz") as first, np.load(two["out"] / "probs.npz") as second:
        assert sorted(first.files) == sorted(second.files) and len(first.files) == 7
        for name in first.files:
            np.testing.assert_array_equal(first[name], second[name])
    assert one["histories"] == two["histories"]  # losses, metrics and curve points, step by step
    assert one["histories"]["with_audio"][1]["eval"]  # the curve points were computed (in the workers)
    assert not (Path(two["run_dir"]) / ".worker-data").exists()  # the mapped videos are removed after training
    assert pd.read_csv(two["out"] / "accuracy.csv")["seeds"].iloc[0] == 2


def _one_process_then_two(tmp_path: Path, task: str) -> tuple[Path, dict, Path, dict]:
    """``task`` at smoke scale in one process, then in two workers from the same pretrained network (1 thread each)."""
    one_root, one = _run_in_child(1, Path(""), Path(""), tmp_path, task)
    shutil.copytree(one_root / "smoke" / "pretrain", tmp_path / "checkpoints2" / "smoke" / "pretrain")  # the same start
    two_root, two = _run_in_child(2, Path(""), Path(""), tmp_path, task)
    assert two["determinism"]["seed_processes"] == 2 and two["determinism"]["threads_per_process"] == 1
    return one_root, one, two_root, two


@pytest.mark.slow
def test_separation_in_two_worker_processes_equals_one_process_at_the_same_thread_count(tmp_path):
    """The smoke profile's separation (full and u-net PIT, two training seeds) from one pretrained network."""
    one_root, one, two_root, two = _one_process_then_two(tmp_path, "separation")
    checkpoints = sorted(path.relative_to(one_root) for path in (one_root / "smoke" / "separation").rglob("checkpoint.pt"))
    assert [str(path.parent.relative_to("smoke/separation")) for path in checkpoints] == [
        "full", "train-seed1/full", "train-seed1/unet_pit", "unet_pit"]
    assert_same_checkpoints(one_root, two_root, checkpoints)
    assert (one["out"] / "scores.csv").read_bytes() == (two["out"] / "scores.csv").read_bytes()
    assert one["histories"] == two["histories"]
    assert not (two_root / "smoke" / "separation" / ".worker-data").exists()


@pytest.mark.slow
def test_ablations_in_two_worker_processes_equal_one_process_at_the_same_thread_count(tmp_path):
    """The smoke profile's ablations (every row and the I3D, two training seeds) from one pretrained network."""
    one_root, one, two_root, two = _one_process_then_two(tmp_path, "ablations")
    # folders of rows that start from a checkpoint carry a key of its file's time: pair them by name and training seed
    def trained(root: Path) -> dict[tuple[str, int], Path]:
        return {(path.parent.name.rsplit("-", 1)[0], torch.load(path, weights_only=True)["config"]["run"]["seed"]): path
                for path in (root / "smoke" / "separation").rglob("checkpoint.pt")}

    first, second = trained(one_root), trained(two_root)
    assert sorted(first) == sorted(second) and len(first) == 2 * 7  # six rows and the I3D, two training seeds
    for name, path in first.items():
        left, right = torch.load(path, weights_only=True), torch.load(second[name], weights_only=True)
        assert left["extra"]["threads"]["torch_threads"] == right["extra"]["threads"]["torch_threads"] == 1
        for key, tensor in left["model"].items():
            assert torch.equal(tensor, right["model"][key]), f"{name}: {key}"
    assert (one["out"] / "scores.csv").read_bytes() == (two["out"] / "scores.csv").read_bytes()
    assert one["histories"] == two["histories"] and one["i3d"] == two["i3d"] and len(one["i3d"]) == 2
    # one process scores every row of both seeds itself; with workers each worker scored its own row
    assert len(one["scored_here"]) == 2 * 6 and two["scored_here"] == []
    assert not (two_root / "smoke" / "separation" / "ablations" / ".worker-data").exists()
