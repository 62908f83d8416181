"""Tables and figures land with provenance; writes are atomic; smoke tables say they are smoke."""

from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import pytest
from PIL import Image

from avlib.files import atomic_path
from avlib.report.results import SMOKE_BANNER, ResultWriter


def test_table_and_figure_with_provenance(tmp_path):
    writer = ResultWriter(profile="synth", seed=3, device="cpu", notebook="00_data", root=tmp_path)
    frame = pd.DataFrame({"row": ["ours"], "accuracy": [0.75]})
    paths = writer.table(frame, "alignment", caption="Alignment accuracy")
    assert pd.read_csv(paths["csv"]).equals(frame)
    markdown = paths["md"].read_text()
    assert "| ours" in markdown and "profile `synth`, seed 3" in markdown and SMOKE_BANNER not in markdown
    record = json.loads((tmp_path / "synth/tables/alignment.provenance.json").read_text())
    assert record["seed"] == 3 and record["notebook"] == "00_data" and record["device"] == "cpu"
    assert set(record["versions"]) == {"python", "torch", "decord", "av", "numpy"}
    assert record["git_commit"] and "git_dirty" in record and record["wall_time_s"] >= 0

    fig, axis = plt.subplots()
    axis.plot([0, 1], [1, 0])
    png = writer.figure(fig, "curve")
    assert "profile `synth`" in Image.open(png).info["Description"]
    assert json.loads((tmp_path / "synth/figures/curve.provenance.json").read_text())["kind"] == "figure"


def test_smoke_tables_are_marked(tmp_path):
    writer = ResultWriter(profile="smoke", seed=0, root=tmp_path)
    paths = writer.table(pd.DataFrame({"x": [1]}), "t")
    assert paths["md"].read_text().startswith(f"> **{SMOKE_BANNER}**")


def test_unknown_profile_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown profile"):
        ResultWriter(profile="big", seed=0, root=tmp_path)


def test_atomic_write_keeps_old_file_on_crash(tmp_path):
    target = tmp_path / "table.csv"
    target.write_text("old\n")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "old\n"
    assert [path.name for path in tmp_path.iterdir()] == ["table.csv"]
