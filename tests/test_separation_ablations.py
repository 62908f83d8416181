"""Separation ablations: each row's model, where it trains, cached scores, and the verdicts on the paper's directions."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

import avlib.separation_ablations as ablations
from avlib.checkpoint import save_checkpoint
from avlib.data.mixtures import make_test_list
from avlib.data.world import world_config
from avlib.data.world.speakers import speaker_gender, speaker_id, speaker_splits
from avlib.models.i3d import I3D, I3DConfig
from avlib.models.multisensory import MultisensoryNet
from avlib.config import SeparationSettings
from avlib.separation_ablations import (
    VARIANT_BY_NAME,
    AblationSettings,
    build_variant,
    cached_scores,
    checkpoint_folder,
    direction_rows,
    readable_table,
    summary_table,
)
from tests.test_unet import tiny_config, tiny_inputs


@pytest.fixture(scope="module")
def separation():
    return SeparationSettings(model=tiny_config(), steps=5, batch_size=2, pit_steps=3, pit_batch_size=2)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory, separation):
    torch.manual_seed(3)
    net = MultisensoryNet(separation.model.multisensory)
    path = tmp_path_factory.mktemp("pretrain") / "checkpoint.pt"
    save_checkpoint(path, model=net, step=10, config={})
    return path


def features(model, frames, audio):
    return model.video_features(frames, audio)


def test_rows_start_as_they_say(separation, pretrained):
    pretrained_state = torch.load(pretrained, weights_only=True)["model"]
    frames, audio = tiny_inputs(separation.model)
    other_audio = torch.flip(audio, dims=[-1])

    full = build_variant("full", separation, pretrained).eval()
    assert torch.equal(full.features.net.conv5_2.conv_a.conv.weight, pretrained_state["conv5_2.conv_a.conv.weight"])
    assert not torch.allclose(features(full, frames, audio)[1], features(full, frames, other_audio)[1])

    no_audio = build_variant("no_audio", separation, pretrained).eval()
    assert torch.equal(no_audio.features.net.conv5_2.conv_a.conv.weight, pretrained_state["conv5_2.conv_a.conv.weight"])
    for heard, other in zip(features(no_audio, frames, audio), features(no_audio, frames, other_audio)):
        assert torch.equal(heard, other)  # the audio stream is gone: the features do not depend on the sound
    assert not any(p.requires_grad for p in no_audio.features.net.audio.parameters())
    assert no_audio.config.multisensory.use_sound is False

    static = build_variant("static", separation, pretrained).eval()
    changed = frames.clone()
    changed[:, :, 0] = -frames[:, :, 0]  # another first frame, the same middle frame
    for seen, other in zip(features(static, frames, audio), features(static, changed, audio)):
        assert torch.equal(seen, other)

    scratch = build_variant("scratch", separation, pretrained)
    assert not torch.equal(scratch.features.net.conv5_2.conv_a.conv.weight, pretrained_state["conv5_2.conv_a.conv.weight"])

    i3d = I3D(I3DConfig(num_classes=3, width=0.0625, bn_momentum=0.1))
    with_i3d = build_variant("i3d", separation, pretrained, i3d)
    assert with_i3d.features.net is i3d and with_i3d.config.custom_channels == i3d.config.feature_channels
    assert with_i3d(frames, audio)["on_screen_magnitude"].shape[0] == 2

    pit = build_variant("unet_pit", separation)
    assert pit.features is None
    with pytest.raises(ValueError, match="pretrained"):
        build_variant("static", separation)
    with pytest.raises(ValueError, match="I3D"):
        build_variant("i3d", separation, pretrained)


def test_rows_train_in_notebook_04s_folders_only_at_its_budget(separation, pretrained, tmp_path):
    same_budget = AblationSettings(steps=separation.steps)
    smaller = AblationSettings(steps=2)
    full, pit, static = (VARIANT_BY_NAME[name] for name in ("full", "unet_pit", "static"))
    assert checkpoint_folder(full, separation, same_budget, tmp_path, [pretrained]) == tmp_path / "full"
    assert checkpoint_folder(pit, separation, smaller, tmp_path) == tmp_path / "unet_pit"
    own = checkpoint_folder(full, separation, smaller, tmp_path, [pretrained])
    assert own.parent == tmp_path / "ablations" and own.name.startswith("full-")
    assert checkpoint_folder(static, separation, smaller, tmp_path, [pretrained]) != own
    other_input = tmp_path / "other.pt"
    other_input.write_bytes(b"another pretrained network")
    assert checkpoint_folder(full, separation, smaller, tmp_path, [other_input]) != own


def fake_scores(systems, shift: dict[str, float], same_gender_penalty: float = 0.0, pairs: int = 12, seed: int = 0):
    """Per-pair scores where each system is ``full`` + shift (+ noise), same-gender pairs lower by a penalty."""
    rng = np.random.default_rng(seed)
    rows = []
    for pair in range(pairs):
        same = pair % 2 == 0
        base = rng.normal(5.0, 2.0)
        for system in (*systems, "mixture"):
            for source in ("on_screen", "off_screen"):
                sdr = base + shift.get(system, 0.0) + rng.normal(0, 0.05) - (same_gender_penalty if same else 0.0)
                rows.append({"pair": pair, "same_gender": same, "system": system, "source": source, "sdr": sdr,
                             "sir": sdr + 3, "sar": sdr + 1, "pesq": 2.0, "stoi": 0.8})
    return pd.DataFrame(rows)


def test_directions_are_computed_from_the_scores():
    rows = ["full", "i3d", "no_audio", "static", "scratch", "unet_pit"]
    titles = {name: name for name in rows}
    scores = fake_scores(rows, {"i3d": -1.0, "no_audio": +1.0, "static": 0.0, "scratch": -0.5, "unet_pit": -2.0},
                         same_gender_penalty=3.0, pairs=20)
    table = direction_rows(scores, rows, titles).set_index(["row", "compared"])["direction held?"]
    assert table[("i3d", "i3d - full, per pair")] == "holds"
    assert table[("no_audio", "no_audio - full, per pair")] == "opposite"
    assert table[("static", "static - full, per pair")] == "not resolved"
    assert table[("unet_pit", "unet_pit - full, per pair")] == "holds"
    assert (table.xs("same - different gender (Welch)", level="compared") == "holds").all()
    no_penalty = direction_rows(fake_scores(rows, {}, same_gender_penalty=-3.0, pairs=20), rows, titles)
    assert set(no_penalty[no_penalty.compared.str.startswith("same")]["direction held?"]) == {"opposite"}


def test_summary_has_every_row_source_and_kind_of_mixture():
    rows = ["full", "i3d"]
    scores = fake_scores(rows, {"i3d": -1.0}, pairs=10)
    summary = summary_table(scores, rows, {"full": "Full", "i3d": "I3D"})
    assert len(summary) == 3 * 2 * 3  # (2 rows + mixture) x 2 sources x 3 kinds
    assert summary.groupby("mixtures")["pairs"].first().to_dict() == {"all": 10, "different gender": 5, "same gender": 5}
    assert list(summary.row.unique()) == ["Full", "I3D", "mixture (input, lower bound)"]
    full_all = summary[(summary.system == "full") & (summary.source == "on_screen") & (summary.mixtures == "all")]
    assert full_all["sdr"].item() == pytest.approx(scores.query("system == 'full' and source == 'on_screen'").sdr.mean())
    readable = readable_table(summary)
    assert len(readable) == 9 and readable["on-screen SDR"].str.match(r"-?\d+\.\d\d \[").all()
    directions = direction_rows(scores, rows, {"full": "Full", "i3d": "I3D"})
    beside = readable_table(summary, directions=directions).set_index(["row", "mixtures"])
    assert beside.loc[("I3D", "all"), "ours"].endswith(": holds")
    assert beside.loc[("I3D", "all"), "paper's direction"].endswith("clearly worse")
    assert "mixed-gender" in beside.loc[("Full", "same gender"), "paper's direction"]
    assert (beside["ours"] == "").sum() == 6  # the different-gender lines, the mixture's, full's on all
    only_different = summary_table(scores[~scores.same_gender], rows, {"full": "Full", "i3d": "I3D"})
    assert set(only_different.mixtures) == {"all", "different gender"}


def test_scores_are_cached_by_checkpoint_content(tmp_path, monkeypatch):
    calls = []

    def evaluate(systems, test_batch, test_list, batch_size, speech_metrics, score_mixture, stoi):
        assert speech_metrics and not stoi  # PESQ for every row; STOI is not in the table
        calls.append(list(systems))
        scores = fake_scores(list(systems), {}, pairs=len(test_list))
        return scores if score_mixture else scores[scores.system != "mixture"]

    monkeypatch.setattr(ablations, "evaluate", evaluate)
    checkpoint = tmp_path / "checkpoint.pt"
    checkpoint.write_bytes(b"weights one")
    test_list = pd.DataFrame({"pair": range(4), "same_gender": [True, False] * 2})
    first = cached_scores("static", None, checkpoint, {}, test_list, tmp_path / "scores", phase="mixture")
    again = cached_scores("static", None, checkpoint, {}, test_list, tmp_path / "scores", phase="mixture")
    pd.testing.assert_frame_equal(first, again, check_dtype=False)
    assert len(calls) == 1
    cached_scores("static", None, checkpoint, {}, test_list, tmp_path / "scores", phase="predicted")
    checkpoint.write_bytes(b"weights two")
    cached_scores("static", None, checkpoint, {}, test_list, tmp_path / "scores", phase="predicted")
    cached_scores("static", None, checkpoint, {}, test_list, tmp_path / "scores", phase="predicted", recompute=True)
    assert len(calls) == 4
    without = cached_scores("scratch", None, checkpoint, {}, test_list, tmp_path / "scores", phase="mixture", with_mixture=False)
    assert "mixture" not in set(without.system) and len(calls) == 5
    with_mixture = cached_scores("scratch", None, checkpoint, {}, test_list, tmp_path / "scores", phase="mixture")
    assert "mixture" in set(with_mixture.system) and len(calls) == 6  # asked for the mixture: scored again
    combined = ablations.combine_scores({"scratch": without, "static": first})
    assert (combined.system == "mixture").sum() == (first.system == "mixture").sum()
    with pytest.raises(ValueError, match="with_mixture"):
        ablations.combine_scores({"scratch": without})


def test_synth_test_list_holds_both_kinds_of_mixture():
    config = world_config("speakers", "synth")
    splits = speaker_splits(config)
    clips = pd.DataFrame([dict(path=f"{speaker_id(i)}/{c}.mp4", speaker_id=speaker_id(i), gender=speaker_gender(i),
                               split=split, duration=config.clip_seconds)
                          for i, split in splits.items() for c in range(config.videos_per_speaker * config.clips_per_video)])
    from avlib.separation import settings_for

    settings = settings_for("synth")
    test_list = make_test_list(clips, settings.test_pairs, settings.mixture.duration, seed=0)
    assert test_list.same_gender.mean() >= 0.4 and (~test_list.same_gender).mean() >= 0.4


def test_every_row_but_pit_trains_with_the_same_budget():
    for profile in ("smoke", "synth", "paper"):
        settings = ablations.settings_for(profile)
        assert settings.steps > 0
    assert ablations.settings_for("paper").i3d_steps == 0  # Kinetics weights from a converted checkpoint
    with pytest.raises(ValueError, match="unknown profile"):
        ablations.settings_for("tiny")
