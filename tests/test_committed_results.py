"""The committed results are one run: every run record of a committed profile lists outputs that are there and
unchanged (by the SHA-256 the runner recorded), all records name one commit, and results/README.md names it."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from avlib.provenance import git_commit
from avlib.report import runs
from avlib.report.index import INVOCATION, UNCOMMITTED
from avlib.report.results import PROFILES, RESULTS_ROOT

COMMITTED = [profile for profile in PROFILES if profile not in UNCOMMITTED and (RESULTS_ROOT / profile / runs.RUNS).is_dir()]


def run_records(profile_dir: Path) -> dict[str, dict]:
    """The notebooks' run records of a profile (not the invocation's), by notebook; a record that cannot be read fails."""
    records = {}
    for path in sorted((profile_dir / runs.RUNS).glob("*.json")):
        if path.name == INVOCATION:
            continue
        record = runs.read_record(path)
        assert record is not None, f"{path}: not a readable JSON run record"
        records[path.stem] = record
    return records


def record_commits(profile_dir: Path, record: dict) -> set[str]:
    """The commit a run record names; a record written before run records held one: the commits of its outputs'
    provenance sidecars."""
    if record.get("commit"):
        return {record["commit"]}
    return {json.loads((profile_dir / output).read_text())["git_commit"] for output in record.get("outputs", [])
            if output.endswith(".provenance.json") and (profile_dir / output).is_file()}


def claimed_commit(readme: Path, profile: str) -> str:
    """The commit results/README.md says the profile's last ``./reproduce.sh`` ran at (its first ten digits)."""
    text = readme.read_text()
    section = text.split(f"## `{profile}` profile", 1)
    assert len(section) == 2, f"{readme}: no section for the {profile} profile"
    found = re.search(r"Last `\./reproduce\.sh`: \S+, commit ([0-9a-f]{7,40})", section[1])
    assert found, f"{readme}: the {profile} section names no commit of its last run"
    return found.group(1)


def check_profile(profile_dir: Path, readme: Path) -> list[str]:
    """Assert that the profile's committed files are one run; return the notebooks whose records hold no hashes."""
    records = run_records(profile_dir)
    assert records, f"{profile_dir / runs.RUNS}: no run record"
    unhashed = []
    for name, record in records.items():
        assert record.get("status") == "ran", f"{profile_dir.name}/{name}: the committed record says {record.get('status')!r}"
        missing = [output for output in record.get("outputs", []) if not (profile_dir / output).is_file()]
        assert not missing, f"{profile_dir.name}/{name}: outputs of its run record are not committed: {missing}"
        if "hashes" not in record:
            unhashed.append(name)
            continue
        assert sorted(record["hashes"]) == sorted(record["outputs"]), f"{profile_dir.name}/{name}: outputs without a hash"
        changed = [output for output, digest in record["hashes"].items() if runs.file_digest(profile_dir / output) != digest]
        assert not changed, f"{profile_dir.name}/{name}: committed files differ from what its run wrote: {changed}"
        assert record.get("dirty") is False, f"{profile_dir.name}/{name}: ran in a checkout with local changes"
    commits = {name: record_commits(profile_dir, record) for name, record in records.items()}
    named = set().union(*commits.values())
    assert len(named) == 1, f"{profile_dir.name}: the run records name more than one commit (not one run): {commits}"
    commit = named.pop()
    claimed = claimed_commit(readme, profile_dir.name)
    assert commit.startswith(claimed), f"{readme} says {profile_dir.name} ran at {claimed}, its run records at {commit[:10]}"
    return unhashed


@pytest.mark.parametrize("profile", COMMITTED)
def test_committed_results_are_one_run(profile):
    unhashed = check_profile(RESULTS_ROOT / profile, RESULTS_ROOT / "README.md")
    if unhashed:
        pytest.skip(f"results/{profile}: run records of {', '.join(unhashed)} predate output hashes (written from the next "
                    "regeneration on); their outputs exist and they name one commit, the README's, but their content is unchecked")


@pytest.fixture(scope="module")
def one_run(tmp_path_factory) -> Path:
    """A committed profile as the runner writes it: a tiny notebook run by ``run_all`` (tables, a figure, a comparison
    row, the run record, the README)."""
    from avlib.notebooks import discover, run_all
    from avlib.report.results import source_dirty
    from tests.test_report import _tiny

    root = tmp_path_factory.mktemp("one_run")
    (root / "notebooks").mkdir()
    _tiny(root / "notebooks", "00_first", "alignment_accuracy")
    assert run_all(discover(directory=root / "notebooks"), profile="synth", results_root=root / "results", device="cpu",
                   log=lambda *parts, **_: None) == 0
    path = runs.record_path(root / "results", "synth", "00_first")
    record = runs.read_record(path)
    assert record["commit"] == git_commit() and record["dirty"] == source_dirty()
    assert sorted(record["hashes"]) == record["outputs"] and "comparisons/00_first.json" in record["outputs"]
    # as from a clean checkout (this one may have local changes): every other fact is the runner's
    runs.write_record(path, {**record, "dirty": False})
    return root / "results"


def _copy(results: Path, destination: Path) -> Path:
    shutil.copytree(results, destination)
    return destination / "synth"


@pytest.mark.slow  # a notebook kernel starts in the fixture: 15-70 s on the busy 2-core machine
def test_the_runner_s_record_passes_the_check(one_run, tmp_path):
    assert check_profile(_copy(one_run, tmp_path / "ok"), tmp_path / "ok" / "README.md") == []


@pytest.mark.slow  # a notebook kernel starts in the fixture: 15-70 s on the busy 2-core machine
def test_the_check_fails_on_a_changed_file_a_second_commit_or_another_claimed_commit(one_run, tmp_path):
    edited = _copy(one_run, tmp_path / "edited")
    table = edited / "tables" / "00_first_table.csv"
    table.write_text(table.read_text().replace("3", "4"))
    with pytest.raises(AssertionError, match="differ from what its run wrote.*tables/00_first_table.csv"):
        check_profile(edited, tmp_path / "edited" / "README.md")

    mixed = _copy(one_run, tmp_path / "mixed")
    record = runs.read_record(runs.record_path(tmp_path / "mixed", "synth", "00_first"))
    runs.write_record(runs.record_path(tmp_path / "mixed", "synth", "01_second"), {**record, "commit": "b" * 40})
    with pytest.raises(AssertionError, match="more than one commit"):
        check_profile(mixed, tmp_path / "mixed" / "README.md")

    claimed = _copy(one_run, tmp_path / "claimed")
    readme = tmp_path / "claimed" / "README.md"
    readme.write_text(readme.read_text().replace(f"commit {git_commit()[:10]}", "commit cccccccccc"))
    with pytest.raises(AssertionError, match="says synth ran at cccccccccc"):
        check_profile(claimed, readme)

    gone = _copy(one_run, tmp_path / "gone")
    (gone / "tables" / "00_first_table.csv").unlink()
    with pytest.raises(AssertionError, match="not committed"):
        check_profile(gone, tmp_path / "gone" / "README.md")


@pytest.mark.slow  # a notebook kernel starts in the fixture: 15-70 s on the busy 2-core machine
def test_a_record_without_hashes_is_reported_not_checked(one_run, tmp_path):
    profile_dir = _copy(one_run, tmp_path / "old")
    path = runs.record_path(tmp_path / "old", "synth", "00_first")
    record = runs.read_record(path)
    runs.write_record(path, {key: value for key, value in record.items() if key not in ("hashes", "commit", "dirty")})
    assert check_profile(profile_dir, tmp_path / "old" / "README.md") == ["00_first"]  # commit taken from the sidecars
