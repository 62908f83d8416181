"""Bit-identical training whatever the load: processes start with a fixed torch thread count
(avlib.determinism), because CPU reductions, hence trained weights, change with it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from avlib import determinism
from avlib.report.results import ResultWriter

REPO = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).resolve().parent / "determinism_worker.py"


def train_in_child(out: Path, variables: dict[str, str]) -> dict:
    env = {name: value for name, value in os.environ.items()
           if name not in (determinism.THREADS_VARIABLE, "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env.update(PYTHONPATH=str(REPO), **variables)
    child = subprocess.run([sys.executable, str(WORKER), "--out", str(out)], env=env, cwd=REPO,
                           capture_output=True, text=True, timeout=300)
    assert child.returncode == 0, child.stderr[-3000:]
    return {**torch.load(out, weights_only=True), "stderr": child.stderr}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """The same short training started as the runner starts kernels; again with the other core kept busy;
    with AVLIB_THREADS=1 (a deliberately different count); and with 1 OpenMP thread (not the fixed count)."""
    base = tmp_path_factory.mktemp("determinism")
    one = train_in_child(base / "one.pt", determinism.child_environment())
    busy_loop = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        busy = train_in_child(base / "busy.pt", determinism.child_environment())
    finally:
        busy_loop.kill()
        busy_loop.wait()
    single = train_in_child(base / "single.pt", {"OMP_NUM_THREADS": "2", determinism.THREADS_VARIABLE: "1"})
    other = train_in_child(base / "other.pt", {"OMP_NUM_THREADS": "1"})
    return SimpleNamespace(one=one, busy=busy, single=single, other=other)


def test_training_gives_the_same_weights_whatever_the_load(runs) -> None:
    assert runs.one["threads"] == runs.busy["threads"] == determinism.DEFAULT_THREADS
    assert runs.one["state"].keys() == runs.busy["state"].keys()
    for name, value in runs.one["state"].items():
        assert torch.equal(value, runs.busy["state"][name]), name
    assert runs.one["solved"] and runs.busy["solved"]


def test_a_process_started_with_another_count_is_warned_and_still_solves(runs) -> None:
    # raising the count at run time would break oneMKL's LU solver, so fit warns and leaves it
    assert runs.other["threads"] == 1 and runs.other["solved"]
    assert f"start the process with OMP_NUM_THREADS={determinism.DEFAULT_THREADS}" in runs.other["stderr"]


def test_another_thread_count_changes_the_weights(runs) -> None:
    # what the fixed count guards against (and why the equality above is not vacuous)
    assert runs.single["threads"] == 1
    differing = [name for name, value in runs.one["state"].items() if not torch.equal(value, runs.single["state"][name])]
    assert differing


def test_thread_count_comes_from_the_environment(monkeypatch) -> None:
    monkeypatch.delenv(determinism.THREADS_VARIABLE, raising=False)
    assert determinism.thread_count() == determinism.DEFAULT_THREADS
    monkeypatch.setenv(determinism.THREADS_VARIABLE, "3")
    assert determinism.thread_count() == 3
    assert determinism.child_environment()["OMP_NUM_THREADS"] == "3"
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv(determinism.THREADS_VARIABLE, bad)
        with pytest.raises(ValueError, match=determinism.THREADS_VARIABLE):
            determinism.thread_count()


def test_configure_checks_the_count_and_provenance_records_it(monkeypatch, tmp_path) -> None:
    current = torch.get_num_threads()
    monkeypatch.setenv(determinism.THREADS_VARIABLE, str(current))
    assert determinism.configure()["torch_threads"] == current
    monkeypatch.setenv(determinism.THREADS_VARIABLE, str(current + 1))
    with pytest.warns(UserWarning, match=f"torch runs {current} threads, not the {current + 1}"):
        assert determinism.configure()["torch_threads"] == torch.get_num_threads() == current
    record = ResultWriter(profile="smoke", seed=0, root=tmp_path).provenance()
    assert record["threads"] == current
    line = ResultWriter(profile="smoke", seed=0, root=tmp_path).provenance_line(record)
    assert f"{current} torch threads" in line


def test_every_table_records_the_settings_that_decide_bit_exactness(monkeypatch, tmp_path) -> None:
    import pandas as pd

    monkeypatch.setenv("PYTHONHASHSEED", "0")
    monkeypatch.setenv("OMP_NUM_THREADS", str(torch.get_num_threads()))
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    written = ResultWriter(profile="smoke", seed=0, root=tmp_path, notebook="00_x").table(pd.DataFrame({"a": [1.5]}), "t")
    record = json.loads(written["csv"].with_name("t.provenance.json").read_text())["determinism"]
    assert record == {"torch_threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads(),
                      "AVLIB_THREADS": os.environ.get("AVLIB_THREADS", ""), "OMP_NUM_THREADS": str(torch.get_num_threads()),
                      "MKL_NUM_THREADS": "", "PYTHONHASHSEED": "0", "deterministic_algorithms": False,
                      "cudnn_deterministic": False, "cudnn_benchmark": False}


def test_notebook_kernels_start_with_the_fixed_thread_count(tmp_path, monkeypatch) -> None:
    from avlib.notebooks import run_notebook

    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # what the kernel would otherwise inherit
    monkeypatch.delenv(determinism.THREADS_VARIABLE, raising=False)
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    (notebooks / "00_threads.py").write_text(
        '# %% tags=["parameters"]\nprofile = "synth"\nseed = 0\ndata_root = ""\ndevice = "auto"\nresults_root = "."\n'
        "# %%\nimport os\nimport torch\nfrom pathlib import Path\n"
        "Path(results_root, 'threads.txt').write_text(f\"{torch.get_num_threads()} {os.environ['PYTHONHASHSEED']}\")\n")
    results = tmp_path / "results"
    run_notebook(notebooks / "00_threads.py", profile="smoke", results_root=results)
    assert (results / "threads.txt").read_text() == f"{determinism.DEFAULT_THREADS} {os.environ.get('PYTHONHASHSEED', '0')}"
    assert os.environ["OMP_NUM_THREADS"] == "1"  # the runner's own environment is left as it was
