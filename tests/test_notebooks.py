"""Every notebook executes headless in the smoke profile; a failure names the notebook and cell."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from avlib.notebooks import NotebookFailed, discover, export_html, run_notebook
from avlib.report.index import index_links, recorded_rows, write_comparison, write_index

NOTEBOOKS = discover()


@pytest.fixture(scope="module")
def smoke_results(tmp_path_factory):
    """One results folder for the whole smoke run, as ``./reproduce.sh --profile smoke`` writes it, with its own
    checkpoints (never the checkout's, which an older version of the code may have written)."""
    return tmp_path_factory.mktemp("smoke") / "results"


def test_notebooks_exist():
    assert [path.name[:2] for path in NOTEBOOKS][:1] == ["00"]


@pytest.mark.parametrize("source", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_notebook_runs_in_smoke_profile(source, smoke_results):
    source_before = source.stat().st_mtime_ns, source.read_bytes()
    run = run_notebook(source, profile="smoke", seed=0, results_root=smoke_results, device="cpu",
                       checkpoint_root=str(smoke_results.parent / "checkpoints"))
    assert run.output == smoke_results / "smoke" / "notebooks" / f"{source.stem}.ipynb"
    executed = json.loads(run.output.read_text())
    assert any(cell.get("outputs") for cell in executed["cells"] if cell["cell_type"] == "code")
    written = [path for path in (smoke_results / "smoke").glob("*/*.provenance.json")
               if json.loads(path.read_text())["notebook"] == source.stem]
    assert written, "a notebook writes at least one table or figure with provenance"
    assert (source.stat().st_mtime_ns, source.read_bytes()) == source_before  # never executed in place
    assert not source.with_suffix(".ipynb").exists()


def test_index_lists_every_file_of_the_smoke_run_and_nothing_else(smoke_results):
    profile = smoke_results / "smoke"
    executed = sorted((profile / "notebooks").glob("*.ipynb"))
    if len(executed) < len(NOTEBOOKS):
        pytest.skip("needs the smoke run of every notebook above (run the whole module)")
    for notebook in executed:
        assert export_html(notebook).stat().st_size > notebook.stat().st_size / 2
    table = write_comparison(smoke_results, "smoke")["csv"]
    recorded = {row["key"] for row in recorded_rows(profile)}
    rows = pd.read_csv(table, keep_default_na=False, dtype=str)
    assert recorded and recorded <= set(rows.loc[rows["notebook"] != "", "row"])  # every recorded row is in the table
    readmes = write_index(smoke_results)
    index = profile / "README.md"
    assert index in readmes
    files = {path.resolve() for kind in ("tables", "figures", "media", "notebooks") for path in (profile / kind).iterdir()
             if not path.name.endswith(".provenance.json")}
    links = {(index.parent / target).resolve() for target in index_links(index)}
    assert files - links == set(), "every table, figure, media file and notebook is listed"
    assert {link for link in links if not link.exists()} == set(), "every listed entry exists"
    assert "smoke/" not in "".join(index_links(smoke_results / "README.md"))  # never in the committed index


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
