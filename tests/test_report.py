"""avlib.report.runs and avlib.report.index: incremental runs, the comparison with the paper, and the results index."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import pandas as pd
import pytest

from avlib.notebooks import NOTEBOOK_DIR, discover, main, missing_data, run_all
from avlib.report import claims, index, runs
from avlib.report.results import ResultWriter

PARAMETERS = {"profile": "smoke", "seed": 0, "data_root": "", "device": "cpu"}


# -- which notebooks are up to date --------------------------------------------------------------

def _copy_checkout(tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the notebooks and of avlib, to touch files without touching the checkout."""
    notebooks, package = tmp_path / "notebooks", tmp_path / "avlib"
    shutil.copytree(NOTEBOOK_DIR, notebooks, ignore=shutil.ignore_patterns("*.ipynb"))
    shutil.copytree(runs.PACKAGE_DIR, package, ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "requirements.txt").write_text((runs.CHECKOUT / "requirements.txt").read_text())
    return notebooks, package


def _records(notebooks: Path, package: Path, inputs=lambda source: {}) -> dict[str, dict]:
    """Run records as if every notebook had just finished."""
    records = {}
    for source in discover(directory=notebooks):
        components = runs.fingerprint(source, PARAMETERS, inputs=inputs(source), package_dir=package)
        records[source.stem] = {"status": "ran", "fingerprint": runs.digest(components), "components": components}
    return records


def _to_run(notebooks: Path, package: Path, records: dict[str, dict], inputs=lambda source: {}, **options) -> dict[str, str]:
    decisions = {}
    for source in discover(directory=notebooks):
        components = runs.fingerprint(source, PARAMETERS, inputs=inputs(source), package_dir=package)
        decision = runs.decide(records.get(source.stem), components, **options)
        if decision.run:
            decisions[source.stem] = decision.reason
    return decisions


def test_nothing_changed_runs_nothing_and_force_runs_all(tmp_path):
    notebooks, package = _copy_checkout(tmp_path)
    records = _records(notebooks, package)
    assert _to_run(notebooks, package, records) == {}
    assert set(_to_run(notebooks, package, records, force=True)) == {path.stem for path in discover(directory=notebooks)}


def test_touching_notebook_03_reruns_03_alone(tmp_path):
    notebooks, package = _copy_checkout(tmp_path)
    records = _records(notebooks, package)
    source = notebooks / "03_ucf101.py"
    source.write_text(source.read_text() + "\n# touched\n")
    assert _to_run(notebooks, package, records) == {"03_ucf101": "notebook source changed"}


def test_changed_avlib_module_reruns_the_notebooks_that_import_it(tmp_path):
    notebooks, package = _copy_checkout(tmp_path)
    records = _records(notebooks, package)
    task = package / "tasks" / "ucf101.py"
    task.write_text(task.read_text() + "\n# touched\n")
    importers = {"03_ucf101"}
    assert _to_run(notebooks, package, records) == {name: "avlib changed: avlib.tasks.ucf101" for name in importers}
    results = package / "report" / "results.py"  # every notebook writes through it
    results.write_text(results.read_text() + "\n# touched\n")
    assert set(_to_run(notebooks, package, records)) == {path.stem for path in discover(directory=notebooks)}


def test_changed_parameters_and_pretrained_checkpoint(tmp_path, monkeypatch):
    notebooks, package = _copy_checkout(tmp_path)
    checkpoint = tmp_path / "checkpoint.pt"
    checkpoint.write_bytes(b"weights 1")
    keys = next(keys for keys, (label, _) in runs.INPUTS.items() if label == "pretrained checkpoint")
    monkeypatch.setattr(runs, "INPUTS", {keys: ("pretrained checkpoint", lambda parameters: checkpoint)})

    def inputs(source):
        return runs.input_digests(source, PARAMETERS)

    records = _records(notebooks, package, inputs)
    readers = {path.stem for path in discover(directory=notebooks) if any(key in path.read_text() for key in keys)}
    assert "03_ucf101" in readers and "00_data" not in readers and "01_pretrain" not in readers
    assert _to_run(notebooks, package, records, inputs) == {}
    checkpoint.write_bytes(b"weights 2")  # notebook 01 retrained the network
    assert _to_run(notebooks, package, records, inputs) == {name: "inputs changed: pretrained checkpoint" for name in readers}

    changed = dict(PARAMETERS, seed=1)
    source = notebooks / "00_data.py"
    decision = runs.decide(records["00_data"], runs.fingerprint(source, changed, inputs={}, package_dir=package))
    assert decision.run and decision.reason == "parameters changed: seed"


def test_failed_interrupted_or_incomplete_runs_are_never_up_to_date(tmp_path):
    notebooks, package = _copy_checkout(tmp_path)
    source = notebooks / "00_data.py"
    components = runs.fingerprint(source, PARAMETERS, inputs={}, package_dir=package)
    done = {"status": "ran", "fingerprint": runs.digest(components), "components": components, "outputs": ["tables/a.csv"]}
    assert not runs.decide(done, components).run
    assert runs.decide({**done, "status": "running"}, components).reason == "the previous run was interrupted"
    assert runs.decide({**done, "status": "failed"}, components).reason == "the previous run failed"
    assert runs.decide(None, components).reason == "no previous run"
    missing = runs.decide(done, components, outputs_exist=lambda outputs: outputs)
    assert missing.run and "tables/a.csv" in missing.reason


def test_closure_follows_relative_imports():
    modules = runs.avlib_closure(NOTEBOOK_DIR / "00_data.py")
    assert {"avlib.data.world", "avlib.data.world._common", "avlib.writer", "avlib.report",
            "avlib.report.results"} <= set(modules)
    assert "avlib.tasks.ucf101" not in modules and "avlib.notebooks" not in modules


# -- the comparison with the paper ---------------------------------------------------------------

def test_compare_refuses_a_row_the_paper_does_not_have(tmp_path):
    writer = ResultWriter(profile="synth", seed=0, notebook="01_pretrain", root=tmp_path)
    with pytest.raises(KeyError, match="no paper number or claim 'made_up'"):
        writer.compare("made_up", 1.0, measure="anything")
    assert not (tmp_path / "synth" / "comparisons").exists()


def test_report_refuses_a_recorded_row_the_paper_does_not_have(tmp_path):
    folder = tmp_path / "synth" / "comparisons"
    folder.mkdir(parents=True)
    (folder / "09_rogue.json").write_text(json.dumps([{"key": "made_up", "notebook": "09_rogue"}]))
    with pytest.raises(index.UnknownComparison, match="09_rogue.*made_up"):
        index.write_comparison(tmp_path, "synth")


def test_every_row_a_notebook_records_is_known_to_the_claims():
    keys = {path.name: re.findall(r"\.compare\(\s*[\"']([^\"']+)[\"']", path.read_text()) for path in discover()}
    recorded = {key for found in keys.values() for key in found}
    assert recorded, "the notebooks record rows beside the paper"
    unknown = {name: [key for key in found if key not in claims.BY_KEY and key not in claims.CLAIMS_BY_KEY]
               for name, found in keys.items()}
    assert not any(unknown.values()), unknown


def test_comparison_has_a_row_for_every_paper_number_and_claim(tmp_path):
    writer = ResultWriter(profile="synth", seed=0, notebook="03_ucf101", root=tmp_path)
    writer.compare("ucf101_multisensory", 40.0, low=30.0, high=50.0, n=90, against={"random init": (2.0, 9.0)},
                   measure="video accuracy %", seeds=[0, 1, 2])
    writer.compare("ucf101_no_audio", 45.0, n=90, against={"with audio": (1.0, 3.0)}, measure="video accuracy %", seeds=[0, 1, 2])
    writer.compare("ucf101_no_audio", 35.0, n=90, against={"with audio": (-3.0, -1.0)},  # replaces the first
                   measure="video accuracy %", seeds=[0, 1, 2])
    writer.compare("ucf101_random_init", 38.0, n=90, against={"with audio": (-3.0, 1.0)}, measure="video accuracy %", seeds=[0, 1, 2])
    writer.compare("shift_min_s", 1.0, measure="the profile's smallest shift, s")
    paths = index.write_comparison(tmp_path, "synth")
    table = pd.read_csv(paths["csv"], keep_default_na=False, dtype=str)
    assert list(table["row"]) == [entry.key for entry in (*claims.NUMBERS, *claims.CLAIMS)]
    rows = table.set_index("row")
    for entry in claims.NUMBERS:
        assert rows.loc[entry.key, "paper"] == f"{entry.value:g} {entry.unit}"
        assert rows.loc[entry.key, "source"] == entry.source and rows.loc[entry.key, "status"] == entry.status
    assert rows.loc["ucf101_multisensory", "ours"] == "40" and rows.loc["ucf101_multisensory", "ours 95 % CI"] == "30 to 50"
    assert rows.loc["ucf101_multisensory", "holds here"] == "holds" and rows.loc["ucf101_no_audio", "holds here"] == "holds"
    assert rows.loc["ucf101_random_init", "holds here"] == "not resolved"
    assert rows.loc["ucf101_random_init", "note"].startswith("not resolved: ")
    assert rows.loc["shift_min_s", "holds here"] == "" and rows.loc["shift_min_s", "ours"] == "1"
    assert rows.loc["ucf101_no_audio", "ours"] == "35"
    assert rows.loc["ucf101_supervised", "holds here"] == "not measured"
    assert rows.loc["avts_alignment", "holds here"] == "not comparable"
    assert f"| {claims.BY_KEY['ucf101_multisensory'].what} " in paths["md"].read_text()  # the reader's columns


# -- end to end on tiny notebooks: skips, failures, the index ------------------------------------

TINY = '''# %% tags=["parameters"]
profile = "synth"
seed = 0
data_root = ""
device = "auto"
results_root = "."

# %%
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
from avlib.report.results import ResultWriter

out = ResultWriter(profile=profile, seed=seed, device="cpu", notebook=NAME, root=results_root)
out.table(pd.DataFrame({"x": [1, 2], "y": [seed, 3]}), NAME + "_table", caption="a table")
fig, axis = plt.subplots()
axis.plot([0, 1])
out.figure(fig, NAME + "_figure", caption="a figure")
out.compare(KEY, 50.0 + seed, low=40.0, high=60.0, n=10, against={"chance": (-10.0 + seed, 10.0 + seed)},
            measure="a measurement", seeds=[0, 1, 2])
'''


def _tiny(notebooks: Path, name: str, key: str, extra: str = "") -> Path:
    path = notebooks / f"{name}.py"
    path.write_text(TINY.replace("NAME", repr(name)).replace("KEY", repr(key)) + extra)
    return path


def _listed(results: Path, readme: Path) -> tuple[set[Path], set[Path]]:
    """(files under the profile's folders, files the index links to)."""
    base = readme.parent
    files = {path for kind in ("tables", "figures", "media", "notebooks") for path in (results / kind).glob("*")
             if not path.name.endswith(".provenance.json")}
    links = {(base / target).resolve() for target in index.index_links(readme)}
    return {path.resolve() for path in files}, links


def test_incremental_runs_failures_and_index_end_to_end(tmp_path):
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    _tiny(notebooks, "00_first", "alignment_accuracy")
    second = _tiny(notebooks, "01_second", "ucf101_multisensory")
    results = tmp_path / "results"
    messages = []

    def run(**options):
        messages.clear()
        return run_all(discover(directory=notebooks), profile="synth", results_root=results, device="cpu",
                       log=lambda *parts, **_: messages.append(" ".join(map(str, parts))), **options)

    assert run() == 0
    profile = results / "synth"
    assert (profile / "notebooks" / "00_first.html").read_text().lstrip().lower().startswith("<!doctype html")
    first_record = json.loads((profile / "runs" / "00_first.json").read_text())
    assert first_record["status"] == "ran" and first_record["wall_time_s"] > 0
    assert "tables/00_first_table.csv" in first_record["outputs"]
    comparison = pd.read_csv(profile / "tables" / "paper_comparison.csv", keep_default_na=False, dtype=str).set_index("row")
    assert comparison.loc["alignment_accuracy", "notebook"] == "00_first"
    assert comparison.loc["ucf101_multisensory", "ours"] == "50"

    readme = results / "README.md"
    files, links = _listed(profile, readme)
    assert files and files <= links, files - links  # every table, figure and notebook is listed
    assert all(link.exists() for link in links), [link for link in links if not link.exists()]
    text = readme.read_text()
    assert "| 00_first | ran | no previous run |" in text and "every notebook ran" in text
    assert "|   x |   y |" in text  # tables inline
    assert "![a figure](synth/figures/00_first_figure.png)" in text

    assert run() == 0  # nothing changed
    assert sum("skipped, up to date" in message for message in messages) == 2
    text = readme.read_text()
    assert "| 01_second | skipped as up to date | up to date |" in text
    assert re.search(r"\| `synth` \| nothing changed \| \d+ s \| 2 \|", text)

    second.write_text(second.read_text() + "\n# touched\n")
    assert run() == 0
    started = [message for message in messages if message.startswith("-- ")]
    assert started[0].startswith("-- 00_first.py: skipped, up to date")
    assert started[1] == "-- 01_second.py (notebook source changed) ..."

    second.write_text(second.read_text() + "raise ValueError('broken on purpose')\n")
    assert run() == 1
    assert json.loads((profile / "runs" / "01_second.json").read_text())["status"] == "failed"
    assert "| 01_second | failed |" in readme.read_text()
    second.write_text(second.read_text().replace("raise ValueError('broken on purpose')\n", ""))
    assert run() == 0  # same fingerprint as the last success, but the failure in between forces a run
    assert any(message.startswith("-- 01_second.py (the previous run failed)") for message in messages)


def test_paper_profile_without_data_root_says_what_is_missing(capsys):
    assert main(["--profile", "paper"]) == 2
    error = capsys.readouterr().err
    for dataset in ("AudioSet", "UCF-101", "VoxCeleb"):
        assert dataset in error
    assert "docs/datasets.md" in error and "--data-root" in error
    assert missing_data("", discover("03")) == [line for line in missing_data("", discover()) if "UCF-101" in line]


def test_datasets_doc_covers_every_layout_the_check_names():
    doc = (runs.CHECKOUT / "docs" / "datasets.md").read_text()
    for folder in ("audioset/", "ucf101/", "voxceleb/", "speakers.csv", "clips.csv", "classInd.txt", "ffmpeg"):
        assert folder in doc
