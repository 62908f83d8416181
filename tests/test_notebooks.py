"""Every notebook executes headless in the smoke profile; a failure names the notebook and cell; a run shows its
progress; a fresh clone's first run makes what the clone lacks (the world, the pretrained checkpoint) and says so."""

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


def _stamp(path):
    return (path.stat().st_mtime_ns, path.stat().st_size) if path.exists() else None


def test_notebooks_exist():
    assert [path.name[:2] for path in NOTEBOOKS][:1] == ["00"]


@pytest.mark.parametrize("source", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_notebook_runs_in_smoke_profile(source, smoke_results):
    source_before = source.stat().st_mtime_ns, source.read_bytes()
    paired_before = _stamp(source.with_suffix(".ipynb"))
    run = run_notebook(source, profile="smoke", seed=0, results_root=smoke_results, device="cpu",
                       checkpoint_root=str(smoke_results.parent / "checkpoints"))
    assert run.output == smoke_results / "smoke" / "notebooks" / f"{source.stem}.ipynb"
    executed = json.loads(run.output.read_text())
    assert any(cell.get("outputs") for cell in executed["cells"] if cell["cell_type"] == "code")
    written = [path for path in (smoke_results / "smoke").glob("*/*.provenance.json")
               if json.loads(path.read_text())["notebook"] == source.stem]
    assert written, "a notebook writes at least one table or figure with provenance"
    assert (source.stat().st_mtime_ns, source.read_bytes()) == source_before  # never executed in place
    assert paired_before == _stamp(source.with_suffix(".ipynb"))  # nor into the .ipynb Jupyter pairs with it


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


TINY = ('# %% tags=["parameters"]\nprofile = "synth"\nseed = 0\ndata_root = ""\ndevice = "auto"\nresults_root = "."\n'
        "# %%\nimport time\nfrom tqdm.auto import tqdm\nfor step in tqdm(range(20), desc='training'):\n    time.sleep(0.15)\n"
        "# %%\nprint('done')\n")


def test_a_headless_run_shows_its_cell_step_and_time_left_without_kernel_warnings(tmp_path, monkeypatch, capfd):
    import avlib.report.progress

    monkeypatch.setattr(avlib.report.progress, "INTERVAL", 0.5)
    source = tmp_path / "00_tiny.py"
    source.write_text(TINY)
    lines = []
    # the last run's seconds per code cell: parameters, injected parameters, the loop, the print
    run_notebook(source, profile="smoke", results_root=tmp_path / "results", progress=lines.append,
                 last_cells=[0.5, 0.5, 40.0, 1.0])
    assert [line.split(" · ")[0].strip() for line in lines][:1] == ["00_tiny: cell 1/4"]
    assert any("cell 3/4" in line and "training" in line and "/20 [" in line for line in lines), lines
    assert any("about" in line and "left (by its last run, 42 s)" in line for line in lines), lines
    assert "without encryption" not in capfd.readouterr().err


def test_progress_estimates_the_time_left_from_the_last_run():
    from avlib.report.progress import Progress

    progress = Progress("x", [10.0, 20.0, 30.0], log=lambda line: None)
    progress.begin(3)
    progress.cell_start("a = 1")
    progress.cell_started -= 4  # four seconds into the first cell
    assert round(progress.left()) == 56
    progress.cell_start("b = 2")
    progress.cell_started -= 25  # longer than last time: the rest of the cell counts as 0
    assert round(progress.left()) == 30
    mismatched = Progress("x", [10.0], log=lambda line: None)
    mismatched.begin(3)  # the notebook changed: no estimate rather than a wrong one
    mismatched.cell_start("a = 1")
    assert mismatched.left() is None and "left" not in mismatched.line()


def test_a_run_is_not_up_to_date_when_a_product_outside_results_is_missing_or_changed(tmp_path):
    from avlib.report import runs

    source = tmp_path / "01_make.py"
    source.write_text("run = pretrain(config)\n")
    components = {"source": "s", "modules": {}, "parameters": {}, "inputs": {}, "environment": "e"}
    record = {"status": "ran", "fingerprint": runs.digest(components), "outputs": [],
              "products": {"checkpoints/x.pt": {"label": "pretrained checkpoint", "digest": "abc"}}}
    present = {"checkpoints/x.pt": {"label": "pretrained checkpoint", "digest": "abc"}}
    assert not runs.decide(record, components, products_now=present).run
    missing = runs.decide(record, components, products_now={"checkpoints/x.pt": {"label": "pretrained checkpoint",
                                                                               "digest": "missing"}})
    assert missing.run and "pretrained checkpoint missing (checkpoints/x.pt)" in missing.reason
    changed = runs.decide(record, components, products_now={"checkpoints/x.pt": {"label": "pretrained checkpoint",
                                                                               "digest": "def"}})
    assert changed.run and "changed since that run" in changed.reason
    # a record from before products were recorded: presence still counts
    legacy = {key: value for key, value in record.items() if key != "products"}
    assert not runs.decide(legacy, components, products_now=present).run
    assert runs.decide(legacy, components, products_now={"checkpoints/x.pt": {"label": "pretrained checkpoint",
                                                                            "digest": "missing"}}).run
    # what the runner records: the real paths of the profile, relative to the checkout
    made = runs.products(source, {"profile": "smoke", "seed": 0})
    assert [entry["label"] for entry in made.values()] == ["pretrained checkpoint"]
    assert next(iter(made)).startswith("checkpoints/smoke/")


def _fresh_copy(destination):
    """The checkout as a clone of its working tree would be: tracked and not-ignored files only (no data/, no
    checkpoints/, no smoke results)."""
    import shutil
    import subprocess

    root = NOTEBOOKS[0].parents[1]
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        if (root / name).is_file() and not name.startswith(".venv"):
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / name, destination / name)
    return destination


@pytest.mark.slow
def test_a_fresh_clone_runs_00_and_01_and_reports_what_happened(tmp_path):
    import os
    import subprocess
    import sys

    clone = _fresh_copy(tmp_path / "clone")
    environment = {**os.environ, "AVLIB_PYTHON": sys.executable, "PYTHONPATH": str(clone)}
    environment.pop("AVLIB_DATA", None)

    def reproduce():
        done = subprocess.run(["./reproduce.sh", "--profile", "smoke", "--only", "00,01", "--device", "cpu"], cwd=clone,
                              env=environment, capture_output=True, text=True, timeout=1500)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert "without encryption" not in done.stdout + done.stderr
        return done.stdout

    first = reproduce()
    assert "-- 00_data.py (no previous run)" in first and "-- 01_pretrain.py (no previous run)" in first
    assert "cell 1/" in first  # progress lines
    records = {name: json.loads((clone / "results" / "smoke" / "runs" / f"{name}.json").read_text())
               for name in ("00_data", "01_pretrain")}
    assert [entry["label"] for entry in records["01_pretrain"]["products"].values()] == ["pretrained checkpoint"]
    assert {entry["label"] for entry in records["00_data"]["products"].values()} == {"synthetic world"}
    assert len(records["01_pretrain"]["cell_seconds"]) >= 5
    # a clone whose records were committed but whose data/ and checkpoints/ are not there
    import shutil

    shutil.rmtree(clone / "data")
    shutil.rmtree(clone / "checkpoints")
    second = reproduce()
    assert "-- 00_data.py (products outside results/: synthetic world missing" in second, second
    assert "-- 01_pretrain.py (products outside results/: pretrained checkpoint missing" in second, second
    assert "== 2 ran, 0 skipped" in second
    third = reproduce()
    assert "00_data.py: skipped, up to date" in third and "01_pretrain.py: skipped, up to date" in third
    invocation = json.loads((clone / "results" / "smoke" / "runs" / "invocation.json").read_text())
    assert {name: entry["action"] for name, entry in invocation["notebooks"].items()} == {"00_data": "skipped",
                                                                                         "01_pretrain": "skipped"}


def test_a_notebook_that_must_make_another_notebooks_input_says_why(tmp_path):
    from avlib.config import resolve
    from avlib.notebooks import _inputs_explained

    if resolve("paper").pretrained_checkpoint().exists():
        pytest.skip("this checkout has a paper-profile pretrained checkpoint")
    (tmp_path / "01_make.py").write_text("run = pretrain(config)\n")
    (tmp_path / "02_use.py").write_text("checkpoint = ensure_pretrained(experiment)\n")
    parameters = {"profile": "paper", "seed": 0, "data_root": "", "device": "cpu"}
    lines = []

    def log(*parts, file=None, flush=False):
        lines.append(" ".join(parts))

    assert _inputs_explained(tmp_path / "02_use.py", parameters, {}, "02", tmp_path / "results", "paper", log)
    assert lines == [f"   pretrained checkpoint missing (checkpoints/paper/pretrain/{resolve('paper').pretrain.stages[-1].name}"
                     "/checkpoint.pt): 01_make was not run in this invocation (--only 02 left it out), so 02_use makes it "
                     "first, as 01_make would"]
    lines.clear()
    assert not _inputs_explained(tmp_path / "02_use.py", parameters, {"01_make": {"action": "ran"}}, None,
                                 tmp_path / "results", "paper", log)
    assert lines[0].startswith("!! 01_make ran in this run but left no pretrained checkpoint")
