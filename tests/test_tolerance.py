"""The tolerance rule for runs that cannot be bit-exact (a CUDA run against the CPU run), applied to the committed
synth run's comparisons: the run agrees with itself, and a number moved out of its interval, a changed verdict, a
changed budget or a missing row each make it disagree."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from avlib.report.results import COMPARISONS, RESULTS_ROOT
from avlib.report.tolerance import compare_runs, main

COMMITTED = RESULTS_ROOT / "synth"
pytestmark = pytest.mark.skipif(not (COMMITTED / COMPARISONS).is_dir(), reason="no committed synth comparisons")


@pytest.fixture
def other(tmp_path) -> Path:
    """A copy of the committed synth run's comparisons, to edit."""
    shutil.copytree(COMMITTED / COMPARISONS, tmp_path / COMPARISONS)
    return tmp_path


def edit(run: Path, key: str, **changes) -> None:
    """Change the row ``key`` of ``run``'s comparisons."""
    for path in sorted((run / COMPARISONS).glob("*.json")):
        rows = json.loads(path.read_text())
        for row in rows:
            if row["key"] == key:
                row.update(changes)
                path.write_text(json.dumps(rows))
                return
    raise KeyError(key)


def row_with_interval(run: Path) -> dict:
    rows = [row for path in sorted((run / COMPARISONS).glob("*.json")) for row in json.loads(path.read_text())]
    return next(row for row in rows if isinstance(row["ours"], float) and row["low"] is not None
                and row["high"] is not None and row["low"] < row["ours"] < row["high"] and row["verdict"])


def disagreeing(other: Path) -> dict[str, str]:
    return {check.key: check.problem for check in compare_runs(COMMITTED, other) if not check.agrees}


def test_a_run_agrees_with_itself(other, capsys):
    checks = compare_runs(COMMITTED, other)
    assert len(checks) >= 10 and all(check.agrees for check in checks)
    assert main([str(COMMITTED), str(other)]) == 0
    assert f"{len(checks)} of {len(checks)} rows agree" in capsys.readouterr().out


def test_a_number_inside_its_interval_agrees_and_one_outside_does_not(other, capsys):
    row = row_with_interval(other)
    edit(other, row["key"], ours=(row["ours"] + row["high"]) / 2)
    assert disagreeing(other) == {}
    edit(other, row["key"], ours=row["high"] + 0.01 * (row["high"] - row["low"]))
    assert list(disagreeing(other)) == [row["key"]] and "outside" in disagreeing(other)[row["key"]]
    assert main([str(COMMITTED), str(other)]) == 1
    assert f"| {row['key']} |" in capsys.readouterr().out


def test_a_changed_verdict_disagrees_even_inside_the_interval(other):
    row = row_with_interval(other)
    edit(other, row["key"], verdict="not resolved" if row["verdict"] != "not resolved" else "holds")
    assert list(disagreeing(other)) == [row["key"]] and "verdict" in disagreeing(other)[row["key"]]


def test_a_number_without_an_interval_must_be_equal(other):
    edit(other, "pretraining_iterations", ours=1.0)
    assert "must be equal" in disagreeing(other)["pretraining_iterations"]


def test_a_missing_or_extra_row_disagrees(other):
    row = row_with_interval(other)
    path = next(path for path in sorted((other / COMPARISONS).glob("*.json"))
                if any(kept["key"] == row["key"] for kept in json.loads(path.read_text())))
    path.write_text(json.dumps([kept for kept in json.loads(path.read_text()) if kept["key"] != row["key"]]))
    assert disagreeing(other) == {row["key"]: "missing from the other run"}
    checks = compare_runs(other, COMMITTED)  # the other way round the row is one the reference lacks
    assert [check.problem for check in checks if not check.agrees] == ["not in the reference run"]


def test_a_folder_without_comparisons_is_named(tmp_path, capsys):
    assert main([str(COMMITTED), str(tmp_path)]) == 2
    assert str(tmp_path / COMPARISONS) in capsys.readouterr().err
