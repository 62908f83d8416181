"""Every notebook executes headless in the smoke profile; a failure names the notebook and cell."""

from __future__ import annotations

import json

import pytest

from avlib.notebooks import NotebookFailed, discover, run_notebook

NOTEBOOKS = discover()


def test_notebooks_exist():
    assert [path.name[:2] for path in NOTEBOOKS][:1] == ["00"]


@pytest.mark.parametrize("source", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_notebook_runs_in_smoke_profile(source, tmp_path):
    source_before = source.stat().st_mtime_ns, source.read_bytes()
    run = run_notebook(source, profile="smoke", seed=0, results_root=tmp_path / "results", device="cpu")
    assert run.output == tmp_path / "results" / "smoke" / "notebooks" / f"{source.stem}.ipynb"
    executed = json.loads(run.output.read_text())
    assert any(cell.get("outputs") for cell in executed["cells"] if cell["cell_type"] == "code")
    written = list((tmp_path / "results" / "smoke").glob("*/*.provenance.json"))
    assert written, "a notebook writes at least one table or figure with provenance"
    assert (source.stat().st_mtime_ns, source.read_bytes()) == source_before  # never executed in place
    assert not source.with_suffix(".ipynb").exists()


def test_failure_names_notebook_and_cell_and_keeps_finished_results(tmp_path):
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    (notebooks / "00_good.py").write_text(
        '# %% tags=["parameters"]\nprofile = "synth"\nseed = 0\ndata_root = ""\ndevice = "auto"\nresults_root = "."\n'
        "# %%\nfrom pathlib import Path\nPath(results_root, 'good.txt').write_text('kept')\n")
    (notebooks / "01_bad.py").write_text(
        '# %% tags=["parameters"]\nprofile = "synth"\nseed = 0\ndata_root = ""\ndevice = "auto"\nresults_root = "."\n'
        "# %%\nx = 1\n# %%\nraise ValueError('broken on purpose')\n")
    results = tmp_path / "results"
    for source in discover(directory=notebooks)[:1]:
        run_notebook(source, profile="smoke", results_root=results)
    with pytest.raises(NotebookFailed) as failure:
        run_notebook(notebooks / "01_bad.py", profile="smoke", results_root=results)
    message = str(failure.value)
    assert "01_bad" in message and "broken on purpose" in message and "cell" in message
    assert (results / "good.txt").read_text() == "kept"
    assert (results / "smoke" / "notebooks" / "00_good.ipynb").exists()
    assert not (results / "smoke" / "notebooks" / "01_bad.ipynb").exists()
    assert (results / "smoke" / "notebooks" / "01_bad.failed.ipynb").exists()


def test_only_selects_by_number():
    assert [path.name[:2] for path in discover("00")] == ["00"]
    with pytest.raises(SystemExit, match="99"):
        discover("99")
