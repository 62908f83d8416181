"""Separation ablations: each row's model, where it trains, cached scores, the verdicts on the paper's
directions, and the task's command line end to end."""

import json
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Sequence

import numpy as np
import pandas as pd
import pytest
import torch

import avlib.tasks.ablations as ablations
from avlib.checkpoint import save_checkpoint
from avlib.config import AblationSettings, SeparationSettings, resolve, run_settings
from avlib.data.mixtures import make_test_list
from avlib.data.world import world_config
from avlib.data.world.speakers import speaker_gender, speaker_id, speaker_splits
from avlib.models.i3d import I3D, I3DConfig
from avlib.models.multisensory import MultisensoryNet
from avlib.tasks.ablations import (
    VARIANT_BY_NAME,
    build_variant,
    cached_scores,
    checkpoint_folder,
    direction_rows,
    mixture_config,
    readable_table,
    summary_table,
)
from tests.test_unet import tiny_config, tiny_inputs

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def separation():
    return SeparationSettings(model=tiny_config(), train=replace(SeparationSettings().train, steps=5), batch_size=2,
                              pit_steps=3, pit_batch_size=2)


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
    same_budget = AblationSettings(steps=separation.train.steps)
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
    # further training seeds: notebook 04's folder of that seed, or a folder keyed by the seed too
    assert checkpoint_folder(full, separation, same_budget, tmp_path, [pretrained], seed=0, training_seed=1) == \
        tmp_path / "train-seed1" / "full"
    assert checkpoint_folder(full, separation, smaller, tmp_path, [pretrained], seed=0, training_seed=0) == own
    assert checkpoint_folder(full, separation, smaller, tmp_path, [pretrained], seed=0, training_seed=1) not in (
        own, checkpoint_folder(full, separation, smaller, tmp_path, [pretrained], seed=1, training_seed=1))


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
    assert (table.xs("same - different gender (Welch, paired by seed)", level="compared") == "holds").all()
    no_penalty = direction_rows(fake_scores(rows, {}, same_gender_penalty=-3.0, pairs=20), rows, titles)
    assert set(no_penalty[no_penalty.compared.str.startswith("same")]["direction held?"]) == {"opposite"}


def seeded_scores(systems, shift: dict[str, float], seed_offsets: dict[str, Sequence[float]], pairs: int = 20):
    """``fake_scores`` for several training seeds: seed k's scores of a system move by ``seed_offsets[system][k]``
    (training noise shared by every pair); the test pairs, their genders and the mixture stay the same."""
    seeds = len(next(iter(seed_offsets.values())))
    base = fake_scores(systems, shift, same_gender_penalty=1.0, pairs=pairs)
    parts = []
    for k in range(seeds):
        part = base.assign(seed=10 + k)
        for system, offsets in seed_offsets.items():
            moved = part.system == system
            part.loc[moved, ["sdr", "sir", "sar"]] += offsets[k]
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def test_directions_over_seeds_pair_each_row_with_full_of_the_same_seed_and_count_seed_variance():
    rows = ["full", "i3d", "scratch"]
    titles = {name: name for name in rows}
    # full and i3d move together from seed to seed: paired by seed, i3d stays 1 dB below full with every seed
    together = seeded_scores(rows, {"i3d": -1.0, "scratch": -1.0}, {"full": [-3.0, 0.0, 3.0], "i3d": [-3.0, 0.0, 3.0],
                                                                     "scratch": [2.0, -4.0, 2.5]})
    table = direction_rows(together, rows, titles).set_index(["row", "compared"])
    assert table.loc[("i3d", "i3d - full, per pair"), "direction held?"] == "holds"
    assert table.loc[("i3d", "i3d - full, per pair"), "seeds"] == 3
    assert table.loc[("i3d", "i3d - full, per pair"), "difference dB"] == pytest.approx(-1.0, abs=0.05)
    # scratch is also 1 dB below on average, but its seeds disagree by more than that: not resolved
    assert table.loc[("scratch", "scratch - full, per pair"), "direction held?"] == "not resolved"
    assert table.loc[("scratch", "scratch - full, per pair"), "per seed, min to max"].startswith("-")
    summary = summary_table(together, rows, titles)
    full_all = summary[(summary.system == "full") & (summary.source == "on_screen") & (summary.mixtures == "all")].iloc[0]
    assert full_all["seeds"] == 3 and full_all["pairs"] == 20
    assert full_all["sdr_seed_max"] - full_all["sdr_seed_min"] == pytest.approx(6.0, abs=0.01)
    assert full_all["sdr_high"] - full_all["sdr_low"] > 6.0  # the seeds' spread is inside the interval
    mixture = summary[(summary.system == "mixture") & (summary.mixtures == "all")].iloc[0]
    assert mixture["sdr_seed_sd"] == 0.0  # the mixture is the same for every seed


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


def test_summary_leaves_out_a_pair_whose_metric_is_infinite():
    """BSS-Eval gives the mixture SAR = +inf on a pair where the mixture is exactly the references' sum."""
    rows = ["full"]
    scores = fake_scores(rows, {}, pairs=10)
    scores.loc[(scores.system == "mixture") & (scores.pair == 3), "sar"] = np.inf
    summary = summary_table(scores, rows, {"full": "Full"}).set_index(["system", "source", "mixtures"])
    finite = scores[(scores.system == "mixture") & (scores.source == "on_screen") & (scores.pair != 3)].sar
    assert summary.loc[("mixture", "on_screen", "all"), "sar"] == pytest.approx(finite.mean())
    assert np.isfinite(summary.loc[("mixture", "on_screen", "all"), ["sar_low", "sar_high"]].to_numpy(dtype=float)).all()
    assert summary.loc[("mixture", "on_screen", "all"), "sdr"] == pytest.approx(
        scores[(scores.system == "mixture") & (scores.source == "on_screen")].sdr.mean())  # the pair's other metrics stay


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
    settings = resolve("synth").separation
    test_list = make_test_list(clips, settings.test_pairs, mixture_config(settings).duration, seed=0)
    assert test_list.same_gender.mean() >= 0.4 and (~test_list.same_gender).mean() >= 0.4


def test_every_row_but_pit_trains_with_the_same_budget():
    for profile in ("smoke", "synth", "paper"):
        assert resolve(profile).ablations.steps > 0
    paper = resolve("paper")
    assert paper.ablations.i3d_train is None  # Kinetics weights from a converted checkpoint
    assert paper.ablations.steps == paper.separation.train.steps  # so full is notebook 04's model
    with pytest.raises(ValueError, match="no synthetic actions"):
        ablations.ensure_i3d(resolve("paper", {"ablations.i3d_train.steps": "2"}), "unused")


def test_rows_train_with_the_separations_optimiser_and_04s_runs_store_its_run_config(separation, tmp_path, monkeypatch):
    calls = []
    import avlib.tasks.separation as separation_task

    monkeypatch.setattr(separation_task, "fit", lambda model, loss, batches, config, resume, run_config, other_budgets:
                        calls.append((loss, batches, config, run_config)) or {"train": []})
    clips = SimpleNamespace(speakers=np.array(["a", "b"]))
    model = build_variant("unet_pit", separation)
    for name, steps in (("static", 4), ("unet_pit", 4), ("full", separation.train.steps)):
        ablations.train_variant(model, VARIANT_BY_NAME[name], clips, separation, AblationSettings(steps=steps),
                                tmp_path / name, seed=3, device="cpu", run_config={"profile": "test", "seed": 3})
    (static_loss, static_batches, static_config, static_run), (pit_loss, pit_batches, pit_config, pit_run), \
        (_, _, full_config, full_run) = calls
    assert static_config == replace(separation.train, steps=4, seed=3, device="cpu", out_dir=str(tmp_path / "static"))
    assert not static_loss.pit and (static_batches.batch_size, static_batches.seed) == (separation.batch_size, 3)
    assert static_run == {"separation": run_settings(separation), "pit": False, "variant": asdict(VARIANT_BY_NAME["static"]),
                          "profile": "test", "seed": 3}
    # notebook 04's runs: its budget and its run config, so either notebook resumes the other's checkpoint
    assert pit_loss.pit and pit_config.steps == separation.pit_steps
    assert (pit_batches.batch_size, pit_batches.seed, pit_batches.both_orders) == (separation.pit_batch_size, 4, False)
    assert pit_run == {"separation": run_settings(separation), "pit": True, "profile": "test", "seed": 3}
    assert full_config.steps == separation.train.steps
    assert full_run == {"separation": run_settings(separation), "pit": False, "profile": "test", "seed": 3}


@pytest.mark.slow
def test_the_command_line_runs_every_row_end_to_end(tmp_path):
    out, checkpoints = tmp_path / "out", tmp_path / "checkpoints"
    result = subprocess.run([sys.executable, "-m", "avlib.tasks.ablations", "--profile", "smoke", "--device", "cpu",
                             "--out", str(out), "--checkpoints", str(checkpoints)],
                            capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    written = json.loads((out / "summary.json").read_text())
    summary = written["summary"]
    assert written["task"] == "ablations" and written["config"]["steps"] == resolve("smoke").ablations.steps
    assert summary["test_pairs"] == resolve("smoke").separation.test_pairs
    assert set(summary["on_screen_sdr"]) == {*VARIANT_BY_NAME, "mixture"}
    assert set(summary["against_full"]) == {name for name, variant in VARIANT_BY_NAME.items() if variant.claim}
    assert all(row["verdict"] in ("holds", "opposite", "not resolved") for row in summary["against_full"].values())
    budget = pd.read_csv(out / "separation_ablation_budget.csv")
    assert budget.set_index("features").loc["i3d", "steps"] == resolve("smoke").ablations.steps
    seeds = resolve("smoke").ablations.seeds  # one flatness label per training seed, from the row's own log
    for label in budget["loss over the last tenth, per training seed"]:
        parts = label.split("; ")
        assert len(parts) == seeds and all(part.split(":")[0] in (
            "flat", "falling", "rising", "not resolved", "too few logged steps to judge") for part in parts), label
    assert (checkpoints / "smoke" / "separation" / "unet_pit" / "checkpoint.pt").exists()
