"""The paper's claims and the one rule that says whether a claim holds; compare() records its verdict."""

from __future__ import annotations

import itertools
import json
import re

import pandas as pd
import pytest

from avlib.notebooks import discover
from avlib.report import claims, index
from avlib.report.claims import HOLDS, NOT_RESOLVED, OPPOSITE, combined_verdict, verdict
from avlib.report.results import ResultWriter

NAN = float("nan")


@pytest.mark.parametrize("low, high, direction, expected", [
    (0.5, 2.0, 1, HOLDS), (-2.0, -0.5, -1, HOLDS),
    (-2.0, -0.5, 1, OPPOSITE), (0.5, 2.0, -1, OPPOSITE),
    (-0.5, 0.5, 1, NOT_RESOLVED), (-0.5, 0.5, -1, NOT_RESOLVED),
    # an interval that touches 0 does not lie on either side
    (0.0, 2.0, 1, NOT_RESOLVED), (-2.0, 0.0, -1, NOT_RESOLVED), (0.0, 2.0, -1, NOT_RESOLVED), (0.0, 0.0, 1, NOT_RESOLVED),
    (1e-12, 2.0, 1, HOLDS), (-2.0, -1e-12, -1, HOLDS), (-2.0, -1e-12, 1, OPPOSITE),
    (NAN, NAN, 1, NOT_RESOLVED), (NAN, 2.0, 1, NOT_RESOLVED), (-2.0, NAN, -1, NOT_RESOLVED),
])
def test_verdict_follows_the_interval(low, high, direction, expected):
    assert verdict(low, high, direction) == expected


def test_verdict_needs_a_direction():
    for direction in (0, 2, None):
        with pytest.raises(ValueError, match="direction"):
            verdict(-1.0, 1.0, direction)


def test_combined_verdict():
    assert combined_verdict([HOLDS, HOLDS]) == HOLDS
    assert combined_verdict([HOLDS, NOT_RESOLVED]) == NOT_RESOLVED
    assert combined_verdict([HOLDS, NOT_RESOLVED, OPPOSITE]) == OPPOSITE
    with pytest.raises(ValueError):
        combined_verdict([])
    with pytest.raises(ValueError):
        combined_verdict(["held"])


def test_every_direction_has_a_sign():
    for number in claims.NUMBERS:
        assert number.expected_sign in ((-1, 1) if number.direction else (0,)), number.key
    for claim in claims.CLAIMS:
        assert claim.expected_sign in (-1, 0, 1), claim.key


def _writer(tmp_path) -> ResultWriter:
    return ResultWriter(profile="synth", seed=0, notebook="03_ucf101", root=tmp_path)


@pytest.mark.parametrize("key", ["ucf101_multisensory", "ucf101_no_audio"])  # directions +1 and -1
def test_compare_never_writes_holds_unless_the_verdict_holds(tmp_path, key):
    writer = _writer(tmp_path)
    sign = claims.BY_KEY[key].expected_sign
    bounds = (-2.0, -0.0, 0.0, 1.0, NAN)
    for low, high in itertools.product(bounds, bounds):
        if low > high:
            continue
        row = writer.compare(key, 40.0, n=90, against={"the reference": (low, high)}, measure="video accuracy %",
                             note="context", seeds=[0, 1, 2])
        expected = verdict(low, high, sign)
        assert row["verdict"] == expected
        assert row["note"].startswith(f"{expected}: ") and row["note"].endswith("; context")
        assert ("holds" in row["note"]) == (expected == HOLDS), row["note"]
        stored = json.loads((tmp_path / "synth" / "comparisons" / "03_ucf101.json").read_text())
        assert [entry["verdict"] for entry in stored] == [expected]
        table = pd.read_csv(index.write_comparison(tmp_path, "synth")["csv"], keep_default_na=False, dtype=str)
        line = table.set_index("row").loc[key]
        assert line["holds here"] == expected and line["note"] == row["note"]


def test_compare_combines_several_references(tmp_path):
    writer = ResultWriter(profile="synth", seed=0, notebook="02_cam", root=tmp_path)
    against = {"random": (1.0, 3.0), "centre": (0.5, 2.0)}
    assert writer.compare("cam_non_speech", 60.0, against=against, measure="pointing %", seeds=[0, 1, 2])["verdict"] == HOLDS
    row = writer.compare("cam_non_speech", 60.0, against={**against, "motion": (-1.0, 2.0)}, measure="pointing %", seeds=[0, 1, 2])
    assert row["verdict"] == NOT_RESOLVED and "to motion -1 to +2" in row["note"]
    assert writer.compare("cam_non_speech", 60.0, against={**against, "motion": (-3.0, -1.0)},
                          measure="pointing %", seeds=[0, 1, 2])["verdict"] == OPPOSITE


def test_compare_computes_the_verdict_itself(tmp_path):
    writer = _writer(tmp_path)
    with pytest.raises(ValueError, match="states a verdict"):
        writer.compare("ucf101_multisensory", 40.0, against={"random init": (-1.0, 1.0)}, measure="%",
                       note="holds: above random initialisation", seeds=[0, 1, 2])
    with pytest.raises(ValueError, match="no direction"):
        writer.compare("audio_only_pit", 1.0, against={"full": (1.0, 2.0)}, measure="dB", seeds=[0, 1, 2])
    with pytest.raises(TypeError):
        writer.compare("ucf101_multisensory", 40.0, holds=True, measure="%")
    untested = writer.compare("audio_only_pit", 1.0, measure="dB", note="baselines not run")
    assert untested["verdict"] is None and untested["note"] == "baselines not run"
    table = pd.read_csv(index.write_comparison(tmp_path, "synth")["csv"], keep_default_na=False, dtype=str)
    assert table.set_index("row").loc["audio_only_pit", "holds here"] == "not tested"


def test_no_notebook_decides_a_verdict_itself():
    for path in discover():
        text = path.read_text()
        assert not re.search(r"\bholds\s*=", text), f"{path.name} passes its own `holds`"
        assert not re.search(r"note\s*=\s*f?[\"'](holds|held)", text), f"{path.name} writes a verdict into a note"


def test_a_verdict_between_training_regimes_needs_three_seeds_in_a_result_profile(tmp_path):
    holding = {"random init": (2.0, 9.0)}
    with pytest.raises(ValueError, match="seeds"):
        _writer(tmp_path).compare("ucf101_multisensory", 40.0, against=holding, measure="%")
    two = _writer(tmp_path).compare("ucf101_multisensory", 40.0, against=holding, measure="%", seeds=[0, 1])
    assert two["verdict"] == NOT_RESOLVED and "only 2 training seed(s)" in two["note"]
    three = _writer(tmp_path).compare("ucf101_multisensory", 40.0, against=holding, measure="%", seeds=[0, 1, 2],
                                      seed_scores=[38.0, 40.0, 42.0])
    assert three["verdict"] == HOLDS and three["seeds"] == [0, 1, 2]
    line = pd.read_csv(index.write_comparison(tmp_path, "synth")["csv"], keep_default_na=False, dtype=str).set_index("row")
    assert line.loc["ucf101_multisensory", "seeds"] == "0, 1, 2"
    assert line.loc["ucf101_multisensory", "seed spread"] == "38 to 42 (sd 2)"
    # a smoke run proves the code path; one seed there is not forced to 'not resolved'
    smoke = ResultWriter(profile="smoke", seed=0, notebook="03_ucf101", root=tmp_path)
    assert smoke.compare("ucf101_multisensory", 40.0, against=holding, measure="%", seeds=[0])["verdict"] == HOLDS
    # one model against chance is not a comparison of training regimes
    alignment = ResultWriter(profile="synth", seed=0, notebook="01_pretrain", root=tmp_path)
    assert alignment.compare("alignment_accuracy", 80.0, against={"chance": (20.0, 40.0)}, measure="%",
                             seeds=[0], seed_scores=[80.0])["verdict"] == HOLDS
    with pytest.raises(ValueError, match="one score per seed"):
        _writer(tmp_path).compare("ucf101_multisensory", 40.0, against=holding, measure="%", seeds=[0, 1, 2],
                                  seed_scores=[1.0])
    with pytest.raises(ValueError, match="repeat"):
        _writer(tmp_path).compare("ucf101_multisensory", 40.0, against=holding, measure="%", seeds=[0, 0, 1])


def test_every_direction_that_compares_training_regimes_is_marked_so():
    regimes = {entry.key for entry in (*claims.NUMBERS, *claims.CLAIMS) if entry.expected_sign and entry.across_seeds}
    assert {"ucf101_multisensory", "ucf101_no_audio", "ucf101_random_init", "cam_non_speech", "i3d_features",
            "no_audio_stream", "single_frame", "no_pretraining", "unet_pit_vs_full", "same_gender"} <= regimes
    assert "alignment_accuracy" not in regimes
