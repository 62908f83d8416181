"""The separation task: metrics and losses on sources with known answers, mixtures and the test list, settings.

There is no real recording on this machine: the "real speech" here is the synthetic world's talking heads
(source-filter speech) and its synthesizer, mixed with another speaker's voice.
"""

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from avlib.config import resolve
from avlib.data.mixtures import (
    MixtureBatches,
    MixtureConfig,
    SpeakerClips,
    load_speaker_table,
    load_test_mixtures,
    make_test_list,
    normalize_rms,
    read_test_list,
    write_test_list,
)
from avlib.data.world.speakers import speaker_voice, synthesize_speech
from avlib.losses import PHASE_WEIGHT, pit_loss, separation_loss
from avlib.metrics import bss_eval, improvement_over_mixture, on_screen_gains, pesq_score, stoi_score, summarize
from avlib.metrics import score_separation as evaluate
from avlib.models.multisensory import MultisensoryConfig
from avlib.models.unet import SeparationConfig, SeparationNet, UNetConfig
from avlib.spectral import SpectralConfig
from avlib.tasks.separation import mixture_config, pit_config

RATE = 8000


def speech(gender: str, seconds: float, seed: int, rate: int = RATE) -> np.ndarray:
    rng = np.random.default_rng(seed)
    signal = synthesize_speech(speaker_voice(rng, gender), int(seconds * rate), rate, rng).signal
    return (0.1 * signal / np.sqrt(np.mean(signal**2))).astype(np.float64)


def tiny_config(**overrides) -> SeparationConfig:
    settings = dict(
        spectral=SpectralConfig.for_sample_rate(RATE, fft_size=1024), unet=UNetConfig(width=2, bn_momentum=0.1),
        multisensory=MultisensoryConfig(width=4, bn_momentum=0.1), fps=29.97 / 4, size=40, crop=32,
    )
    settings.update(overrides)
    return SeparationConfig(**settings)


# ------------------------------------------------------------------------------------------- metrics


@pytest.mark.filterwarnings("ignore:mir_eval.separation.bss_eval_sources:FutureWarning")
def test_bss_eval_agrees_with_mir_eval():
    import mir_eval

    rng = np.random.default_rng(0)
    references = np.stack([speech("m", 1.0, 1), speech("f", 1.0, 2)])
    estimates = np.stack([references[0] + 0.3 * references[1] + 0.01 * rng.standard_normal(RATE),
                          0.8 * references[1] + 0.1 * references[0] + 0.02 * rng.standard_normal(RATE)])
    ours = bss_eval(references, estimates)
    sdr, sir, sar, _ = mir_eval.separation.bss_eval_sources(references, estimates, compute_permutation=False)
    np.testing.assert_allclose(ours["sdr"], sdr, atol=0.01)
    np.testing.assert_allclose(ours["sir"], sir, atol=0.01)
    np.testing.assert_allclose(ours["sar"], sar, atol=0.01)


def test_metrics_give_the_known_answers():
    rng = np.random.default_rng(1)
    first, second = speech("m", 2.0, 3), speech("f", 2.0, 4)  # equal RMS
    references = np.stack([first, second])
    noise = rng.standard_normal(first.size)
    noise *= np.sqrt(np.mean(first**2) / np.mean(noise**2)) / math.sqrt(10)  # 10 dB below the source

    def scores(estimate):
        return {key: value[0] for key, value in bss_eval(references, np.stack([estimate, second])).items()}

    leaked = scores(first + 0.1 * second)  # the other source at -20 dB
    assert leaked["sir"] == pytest.approx(20, abs=1) and leaked["sdr"] == pytest.approx(20, abs=1)
    noisy = scores(first + noise)  # artefacts at -10 dB
    assert noisy["sar"] == pytest.approx(10, abs=1) and noisy["sdr"] == pytest.approx(10, abs=1)
    mixture = scores(first + second)
    assert mixture["sdr"] == pytest.approx(0, abs=1) and mixture["sir"] == pytest.approx(0, abs=1)
    assert scores(first)["sdr"] > 50

    assert pesq_score(first, first, RATE) > 4.0
    assert pesq_score(first, first + noise, RATE) < pesq_score(first, first + 0.3 * noise, RATE) < 4.0
    assert stoi_score(first, first, RATE) > 0.99
    assert stoi_score(first, first + second, RATE) < stoi_score(first, first + 0.3 * second, RATE) < 0.99
    assert math.isnan(pesq_score(np.zeros(RATE), first[:RATE], RATE))


def test_summary_means_and_intervals():
    scores = pd.DataFrame({"system": ["a"] * 4 + ["b"] * 2, "source": ["on_screen"] * 6, "sdr": [1.0, 2, 3, 4, 5, 5]})
    summary = summarize(scores, metrics=("sdr",))
    a, b = summary.iloc[0], summary.iloc[1]
    assert (a["sdr"], a["n"], b["sdr"], b["n"]) == (2.5, 4, 5.0, 2)
    assert a["sdr_low"] < 2.5 < a["sdr_high"]
    half = 3.182446305 * np.std([1, 2, 3, 4], ddof=1) / 2  # t(0.975, 3) s / sqrt(n)
    assert a["sdr_high"] - 2.5 == pytest.approx(half)
    assert b["sdr_low"] == b["sdr_high"] == 5.0


# ------------------------------------------------------------------------------------------- losses


def maps(seed: int, batch: int = 3) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {"magnitude": torch.rand(batch, 128, 16, generator=generator) * 2 - 1,
            "phase": torch.rand(batch, 128, 16, generator=generator) * 2 - 1}


def as_output(on_screen, off_screen):
    return {"on_screen_magnitude": on_screen["magnitude"], "on_screen_phase": on_screen["phase"],
            "off_screen_magnitude": off_screen["magnitude"], "off_screen_phase": off_screen["phase"]}


def test_loss_weights_magnitude_and_phase_as_the_paper():
    on, off = maps(0), maps(1)
    shifted = {key: value + 0.5 for key, value in on.items()}
    loss, terms = separation_loss(as_output(shifted, off), on, off)
    assert loss.item() == pytest.approx(0.5 + PHASE_WEIGHT * 0.5)
    assert terms["on_magnitude"] == pytest.approx(0.5) and terms["off_magnitude"] == 0
    assert separation_loss(as_output(on, off), on, off)[0].item() == 0


def test_pit_loss_ignores_the_order_of_the_outputs_and_the_plain_loss_does_not():
    on, off = maps(2), maps(3)
    guess_on, guess_off = maps(4), maps(5)
    straight, swapped = as_output(guess_on, guess_off), as_output(guess_off, guess_on)
    assert pit_loss(straight, on, off)[0].item() == pytest.approx(pit_loss(swapped, on, off)[0].item())
    assert separation_loss(straight, on, off)[0].item() != pytest.approx(separation_loss(swapped, on, off)[0].item())
    # the right answer in the wrong order: PIT sees a perfect separation, the on/off loss a wrong one
    assert pit_loss(as_output(off, on), on, off)[0].item() == 0
    assert pit_loss(as_output(off, on), on, off)[1]["swapped"] == 1.0
    assert separation_loss(as_output(off, on), on, off)[0].item() > 0.1


def test_linear_magnitude_loss_weighs_bins_by_their_energy():
    spectral = SpectralConfig()
    target = torch.full((1, 4, 8), -0.2)  # -28 dB everywhere ...
    target[..., 0] = 0.2  # ... but the loudest bin, +8 dB
    loud_off, quiet_off = target.clone(), target.clone()
    loud_off[..., 0] -= 0.1  # the same 9 dB error in a loud bin, or in a quiet one
    quiet_off[..., 1] -= 0.1
    def output(magnitude):
        return {"on_screen_magnitude": magnitude, "on_screen_phase": torch.zeros_like(target),
                "off_screen_magnitude": target, "off_screen_phase": torch.zeros_like(target)}
    sources = ({"magnitude": target, "phase": torch.zeros_like(target)},) * 2
    log = [separation_loss(output(m), *sources)[0].item() for m in (loud_off, quiet_off)]
    linear = [separation_loss(output(m), *sources, magnitude="linear", spectral=spectral)[0].item() for m in (loud_off, quiet_off)]
    assert log[0] == pytest.approx(log[1])
    assert linear[0] > 20 * linear[1]
    assert separation_loss(output(target), *sources, magnitude="linear")[0].item() == 0
    # scale-free: the same relative error costs the same at any level
    louder = {key: value + 20 / 90 if "magnitude" in key else value for key, value in output(loud_off).items()}
    shifted = ({"magnitude": target + 20 / 90, "phase": torch.zeros_like(target)},) * 2
    assert separation_loss(louder, *shifted, magnitude="linear")[0].item() == pytest.approx(linear[0], rel=1e-4)
    straight = separation_loss(output(loud_off), *sources, magnitude="linear")[0]
    assert pit_loss(output(loud_off), *sources, magnitude="linear")[0].item() == pytest.approx(straight.item())
    with pytest.raises(ValueError, match="magnitude"):
        separation_loss(output(target), *sources, magnitude="cubic")


# ----------------------------------------------------------------------------------- mixtures and lists


def test_normalize_rms_per_channel():
    audio = np.stack([np.linspace(-1, 1, 1000), 0.01 * np.sin(np.arange(1000))]).astype(np.float32)
    normalized = normalize_rms(audio)
    np.testing.assert_allclose(np.sqrt(np.mean(normalized.astype(np.float64) ** 2, axis=1)), [0.1, 0.1], rtol=1e-5)
    torch.testing.assert_close(normalize_rms(torch.from_numpy(audio)), torch.from_numpy(normalized))
    assert not normalize_rms(np.zeros((2, 10), np.float32)).any()  # silence stays silent


def clip_table(per_gender: int = 4, clips: int = 3) -> pd.DataFrame:
    rows = [dict(path=f"{g}{s}/{c}.mp4", speaker_id=f"{g}{s}", gender=g, split="test", duration=5.0)
            for g in "mf" for s in range(per_gender) for c in range(clips)]
    return pd.DataFrame(rows)


def test_test_list_balances_genders_and_round_trips(tmp_path):
    table = make_test_list(clip_table(), 50, window=2.1, seed=0)
    again = make_test_list(clip_table(), 50, window=2.1, seed=0)
    pd.testing.assert_frame_equal(table, again)
    assert len(table) == 50 and (table["on_speaker"] != table["off_speaker"]).all()
    assert 0.4 <= table["same_gender"].mean() <= 0.6
    assert (table["same_gender"] == (table["on_gender"] == table["off_gender"])).all()
    assert table["on_start"].between(0, 5.0 - 2.1).all()
    path = write_test_list(table, tmp_path / "list.csv")
    pd.testing.assert_frame_equal(read_test_list(path), table)
    (tmp_path / "bad.csv").write_text("pair,on_path\n0,a.mp4\n")
    with pytest.raises(ValueError, match="bad.csv"):
        read_test_list(tmp_path / "bad.csv")
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        read_test_list(tmp_path / "missing.csv")


def test_mixture_batches_pair_two_speakers_in_both_orders(speakers):
    clips = load_speaker_table(speakers)
    config = MixtureConfig(num_frames=16, fps=29.97 / 4, sample_rate=RATE, size=40, crop=32)
    source = SpeakerClips(speakers, clips, config, split=None)
    batches = MixtureBatches(source, batch_size=4, seed=0)
    batch = batches(3)
    assert batch["frames"].shape == (4, 16, 32, 32, 3) and batch["frames"].dtype == torch.uint8
    assert batch["mixture"].shape == (4, 2, config.num_samples)
    torch.testing.assert_close(batches(3)["mixture"], batch["mixture"])  # a function of the step
    assert not torch.equal(batches(4)["mixture"], batch["mixture"])
    for first in (0, 2):
        torch.testing.assert_close(batch["mixture"][first], batch["mixture"][first + 1])
        torch.testing.assert_close(batch["on_screen"][first], batch["off_screen"][first + 1])
        assert not torch.allclose(batch["on_screen"][first], batch["off_screen"][first])
    rms = batch["on_screen"].double().pow(2).mean(-1).sqrt()
    torch.testing.assert_close(rms, torch.full_like(rms, 0.1), rtol=1e-4, atol=0)
    single = MixtureBatches(source, batch_size=3, seed=0, both_orders=False)(0)
    assert single["mixture"].shape[0] == 3


def test_evaluation_scores_every_pair_for_every_system(speakers, tiny_checkpoint):
    from avlib.models.unet import from_checkpoint

    clips = load_speaker_table(speakers)
    config = tiny_config()
    mixture = MixtureConfig(num_frames=config.num_video_frames, fps=config.fps, sample_rate=RATE, size=40, crop=32)
    source = SpeakerClips(speakers, clips, mixture, split=None)
    clips = clips.assign(split="test")
    test_list = make_test_list(clips, 4, window=mixture.duration, seed=1)
    batch = load_test_mixtures(test_list, source)
    model = from_checkpoint(tiny_checkpoint)
    blind = SeparationNet(tiny_config(video="none")).eval()
    scores = evaluate({"full": (model, False), "pit": (blind, True)}, batch, test_list, speech_metrics=False)
    assert len(scores) == 4 * 3 * 2
    assert set(scores["system"]) == {"mixture", "full", "pit"}
    mixture_scores = scores[scores["system"] == "mixture"]
    assert mixture_scores["sdr"].abs().max() < 3  # two equal-RMS voices: about 0 dB
    assert np.isfinite(scores[["sdr", "sir", "sar"]].to_numpy()).all()
    # one pass of a model serves both phases: the same scores as scoring each phase on its own
    both = evaluate({"full": (model, False), "full_mixture_phase": (model, False, "mixture")}, batch, test_list,
                    speech_metrics=False, score_mixture=False)
    alone = pd.concat([evaluate({"full": (model, False)}, batch, test_list, speech_metrics=False, score_mixture=False),
                       evaluate({"full_mixture_phase": (model, False, "mixture")}, batch, test_list, speech_metrics=False,
                                score_mixture=False)])
    key = ["system", "pair", "source"]
    pd.testing.assert_frame_equal(both.sort_values(key).reset_index(drop=True), alone.sort_values(key).reset_index(drop=True))
    assert not np.allclose(*(both[both["system"] == name]["sdr"].to_numpy() for name in ("full", "full_mixture_phase")))


def test_profile_settings():
    paper = resolve("paper").separation
    # the paper's model, with the official code's batch renorm in the U-Net and the multisensory net
    renormed = SeparationConfig(unet=UNetConfig(renorm=True), multisensory=MultisensoryConfig(renorm=True))
    assert paper.model == renormed and paper.train.lr == 1e-4 and paper.train.lr_milestones == [120_000]
    assert (paper.train.steps, paper.batch_size, paper.pit_batch_size, paper.train.grad_clip) == (160_000, 6, 12, 10.0)
    assert (paper.train.optimizer, paper.train.weight_decay_prefixes) == ("adam", ["unet."])
    assert (paper.model.output, paper.magnitude_loss) == ("direct", "log")
    synth = resolve("synth").separation
    assert synth.model.spectral.sample_rate == mixture_config(synth).sample_rate == 11025
    assert pit_config(synth).output == synth.model.output and pit_config(synth).video == "none"
    assert mixture_config(synth).num_frames == synth.model.num_video_frames


def test_training_stores_the_inference_settings_and_separate_defaults_to_them(speakers, tmp_path):
    """A checkpoint of the task carries its resolved ``separation`` section; ``separate`` synthesises with its
    window and phase unless told otherwise."""
    from avlib.separate import inference_settings, separate
    from avlib.tasks.separation import train

    experiment = resolve("smoke", {"separation.window_multiple": 2, "separation.phase": "mixture"})
    settings = replace(experiment.separation, model=tiny_config(video="none"))
    clips = load_speaker_table(speakers).assign(split="train")
    config = settings.model
    mixture = MixtureConfig(num_frames=config.num_video_frames, fps=config.fps, sample_rate=RATE, size=40, crop=32)
    source = SpeakerClips(speakers, clips, mixture, split="train")
    model = SeparationNet(config)
    train(model, MixtureBatches(source, 2, seed=0, both_orders=False), settings, tmp_path / "pit", pit=True, steps=1,
          device="cpu", run_config={"profile": "smoke", "seed": 0})
    checkpoint = tmp_path / "pit" / "checkpoint.pt"
    assert inference_settings(checkpoint) == {"window_multiple": 2, "phase": "mixture"}
    video = speakers / clips.iloc[0]["path"]
    stored = separate(video, checkpoint, tmp_path / "out", write_videos=False)
    assert (stored.window_multiple, stored.phase) == (2, "mixture")
    given = separate(video, checkpoint, tmp_path / "out2", write_videos=False, window_multiple=1, phase="predicted")
    assert (given.window_multiple, given.phase) == (1, "predicted")
    assert given.windows > stored.windows  # shorter windows: more of them
    assert not np.allclose(given.on_screen, stored.on_screen)


@pytest.mark.slow
def test_the_task_runs_from_the_command_line(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    completed = subprocess.run([sys.executable, "-m", "avlib.tasks.separation", "--profile", "smoke", "--device", "cpu",
                                "--out", str(tmp_path / "out"), "--checkpoints", str(tmp_path / "checkpoints")],
                               cwd=root, capture_output=True, text=True, timeout=900)
    assert completed.returncode == 0, completed.stderr[-3000:]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["task"] == "separation" and summary["config"]["test_pairs"] == 4
    assert summary["summary"]["test_pairs"] == 4 and summary["summary"]["phase"] == "predicted"
    assert Path(summary["summary"]["checkpoint"]).exists()
    assert "full on-screen SDR gain dB" in summary["summary"]
    scores = pd.read_csv(tmp_path / "out" / "separation_scores_per_pair.csv")
    assert set(scores.system) == {"mixture", "full", "full_mixture_phase", "unet_pit", "unet_pit_mixture_phase"}
    assert len(scores) == 4 * 5 * 2 * 2  # two training seeds in smoke
    assert sorted(scores.seed.unique()) == [0, 1] and summary["summary"]["seeds"] == [0, 1]
    assert (tmp_path / "checkpoints" / "smoke" / "separation" / "train-seed1" / "full" / "checkpoint.pt").exists()
    per_seed = summary["summary"]["full on-screen SDR dB per seed"]
    assert len(per_seed) == 2 and per_seed[0] != per_seed[1]  # another initialisation and batch order
    mixture = scores[scores.system == "mixture"]
    np.testing.assert_array_equal(mixture[mixture.seed == 0].sdr, mixture[mixture.seed == 1].sdr)  # scored once


def fake_seed_scores(offsets: list[float], pairs: int = 10) -> list:
    """One SeparationScores per training seed: 'full' = mixture + 2 dB + the seed's offset + per-pair noise."""
    from avlib.tasks.separation import SeparationScores

    rng = np.random.default_rng(0)
    mixture = rng.normal(0.0, 1.0, size=pairs)
    noise = rng.normal(0.0, 0.1, size=pairs)
    evaluations = []
    for offset in offsets:
        rows = [{"pair": pair, "system": system, "source": source, "sdr": value, "sir": value, "sar": value}
                for pair in range(pairs) for source in ("on_screen", "off_screen")
                for system, value in (("full", mixture[pair] + 2.0 + offset + noise[pair]), ("mixture", mixture[pair]))]
        evaluations.append(SeparationScores(pd.DataFrame(rows), pd.DataFrame(), pd.DataFrame(), {"full": "full"}))
    return evaluations


def test_summary_over_seeds_gives_means_seed_spread_and_intervals_over_seeds_and_pairs():
    from avlib.tasks.separation import seed_gains, seed_summary

    evaluations = fake_seed_scores([-1.0, 0.0, 1.0])
    gains = seed_gains(evaluations, "full")
    assert gains.shape == (3, 10) and gains.mean() == pytest.approx(2.0, abs=0.1)
    summary = seed_summary(evaluations, metrics=("sdr", "sir")).set_index(["system", "source"])
    full = summary.loc[("full", "on_screen")]
    assert full["seeds"] == 3 and full["n"] == 10
    assert (full["sdr_seed_min"], full["sdr_seed_max"]) == pytest.approx((full["sdr"] - 1.0, full["sdr"] + 1.0))
    assert full["sdr_gain"] == pytest.approx(gains.mean())
    assert full["sdr_gain_low"] < 2.0 - 1.0 and full["sdr_gain_high"] > 2.0 + 1.0  # the seeds' spread is inside
    assert np.isnan(summary.loc[("mixture", "on_screen"), "sdr_gain"])
    one = seed_summary(evaluations[:1], metrics=("sdr",)).set_index(["system", "source"]).loc[("full", "on_screen")]
    assert one["seeds"] == 1 and one["sdr_gain_high"] - one["sdr_gain_low"] < 0.5  # over pairs only
    chosen = seed_summary(evaluations, metrics=("sdr",), pairs=[0, 1, 2]).set_index(["system", "source"])
    assert chosen.loc[("full", "on_screen"), "n"] == 3
    shifted = fake_seed_scores([0.0, 0.0])
    shifted[1].scores["pair"] += 1  # another test list: no paired comparison
    with pytest.raises(ValueError, match="different test pairs"):
        seed_gains(shifted, "full")


def test_on_screen_gains_pick_a_system_and_the_pairs_genders():
    scores = pd.DataFrame([
        {"pair": pair, "source": source, "system": system, "sdr": sdr}
        for pair, base in ((0, 1.0), (1, 2.0), (2, 3.0))
        for source in ("on_screen", "off_screen")
        for system, sdr in (("mixture", base), ("full", base + 10 * (pair + 1) + (source == "off_screen")),
                            ("pit", base - 1))
    ])
    gains = improvement_over_mixture(scores)
    test_list = pd.DataFrame({"pair": [0, 1, 2], "same_gender": [True, False, True]})
    assert on_screen_gains(gains, "full").tolist() == [10.0, 20.0, 30.0]
    assert on_screen_gains(gains, "full", test_list, same_gender=True).tolist() == [10.0, 30.0]
    assert on_screen_gains(gains, "full", test_list, same_gender=False).tolist() == [20.0]
    assert on_screen_gains(gains, "pit").tolist() == [-1.0, -1.0, -1.0]


def test_a_finished_run_extends_to_more_steps_bit_for_bit(speakers, tmp_path):
    """The task's full model trained 2 steps, then run again asking 4 (``separation.train.steps``, which its stored
    section holds), continues from its checkpoint and ends with every tensor of a run asked 4 steps from the start;
    u-net PIT's finished run resumes with the full model's budget changed, and a shorter budget is refused."""
    from avlib.checkpoint import CheckpointError, load_checkpoint
    from avlib.tasks.separation import train

    experiment = resolve("smoke", {"separation.train.checkpoint_every": 2, "separation.train.log_every": 1})
    clips = load_speaker_table(speakers).assign(split="train")
    config = tiny_config()
    mixture = MixtureConfig(num_frames=config.num_video_frames, fps=config.fps, sample_rate=RATE, size=40, crop=32)
    source = SpeakerClips(speakers, clips, mixture, split="train")

    def settings(steps: int):
        base = experiment.separation
        return replace(base, model=config, train=replace(base.train, steps=steps), pit_steps=1)

    def full_run(folder: str, steps: int, init_seed: int) -> dict:
        torch.manual_seed(init_seed)
        return train(SeparationNet(config), MixtureBatches(source, 2, seed=0), settings(steps), tmp_path / folder,
                     device="cpu", run_config={"profile": "smoke", "seed": 0})

    straight = full_run("straight", 4, init_seed=0)
    full_run("extended", 2, init_seed=0)
    extended = full_run("extended", 4, init_seed=5)  # other initial weights: all must come from the checkpoint
    one, other = (load_checkpoint(tmp_path / folder / "checkpoint.pt") for folder in ("straight", "extended"))
    assert one["step"] == other["step"] == 4
    assert one["config"]["run"]["separation"]["train"]["steps"] == 4 == other["config"]["run"]["separation"]["train"]["steps"]
    for name, tensor in one["model"].items():
        assert torch.equal(tensor, other["model"][name]), name
    for index, state in one["optimizer"]["state"].items():
        for key, value in state.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(other["optimizer"]["state"][index][key])), (index, key)
    drop_time = [{k: v for k, v in row.items() if k != "elapsed_s"} for row in straight["train"]]
    assert drop_time == [{k: v for k, v in row.items() if k != "elapsed_s"} for row in extended["train"]]

    with pytest.raises(CheckpointError, match=r"extended.checkpoint\.pt has done 4 steps.*train\.steps = 3"):
        full_run("extended", 3, init_seed=0)

    pit_model = SeparationNet(pit_config(settings(2)))
    pit_batches = MixtureBatches(source, 2, seed=1, both_orders=False)
    train(pit_model, pit_batches, settings(2), tmp_path / "pit", pit=True, device="cpu", run_config={"seed": 0})
    history = train(SeparationNet(pit_config(settings(4))), pit_batches, settings(4), tmp_path / "pit", pit=True,
                    device="cpu", run_config={"seed": 0})  # the full model's budget changed, not PIT's: restored
    assert [row["step"] for row in history["train"]] == [1]
