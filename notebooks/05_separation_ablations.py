# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: avlib
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 05 · Separation ablations: what makes the features work
#
# The paper argues that its on/off-screen separation (notebook 04) works *because of the multisensory
# features*: replaced by I3D action features it is clearly worse; with the audio stream of the
# multisensory network removed it is worse, although the U-Net still hears the spectrogram; and
# same-gender mixtures are much harder than different-gender ones (docs/paper.md §7.6, §7.8, §12). The official
# code names the variants (`static`, `scratch`, an unreleased I3D module) but its evaluation was never
# released. Here each argument is one row, trained with the same budget and scored on notebook 04's
# fixed test list:
#
# | row | what changes against `full` |
# |---|---|
# | full | nothing: the self-supervised multisensory net plus a U-Net, fine-tuned end to end |
# | I3D features | an I3D network trained *supervised* on action classes replaces the multisensory net |
# | no audio stream | the multisensory net with its audio stream removed (fused audio features zero) |
# | single frame | the middle frame repeated over the clip (official `static`) |
# | no self-supervised init | the multisensory net from random initialisation (official `scratch`) |
# | audio-only u-net PIT | no video, permutation-invariant loss: notebook 04's baseline, reused |
#
# Every row is scored on all test mixtures, and on the same-gender and different-gender ones apart.
# Every row, the I3D included, trains with `ablations.seeds` training seeds (`synth`: 3, `smoke`: 2,
# `paper`: 1, as the paper reports one number per row): seed `seed + k` changes each row's
# initialisation and batch order, while the speakers, the test list and the pretrained network stay
# `seed`'s. Each row is compared with `full` trained with the same seed, and every number is a mean
# over seeds with an interval that counts seed and test-pair variance.
# Checkpoints and per-pair scores are cached: running this notebook again re-plots without training
# or scoring again, unless `retrain = True`.

# %% tags=["parameters"]
profile = "synth"
seed = 0
data_root = ""
device = "auto"
results_root = "../results"
checkpoint_root = ""  # default: the checkout's ignored checkpoints/ folder
overrides = {}  # config keys to change, e.g. {"ablations.steps": 40} (avlib.config)
retrain = False  # True: train every row again (except notebook 04's u-net PIT) and score again

# %%
import textwrap

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from avlib.config import resolve
from avlib.data.mixtures import load_test_mixtures
from avlib.data.sources import speaker_sources
from avlib.losses import loss_label
from avlib.metrics import best_permutation
from avlib.models.i3d import ENDPOINTS, I3D, PUBLISHED_PARAMETERS, SEPARATION_SCALES
from avlib.models.unet import mono_mix, predict
from avlib.plots import play_labelled, use_page_style
from avlib.report.results import ResultWriter
from avlib.tasks.ablations import SUBSETS, VARIANTS, budget_table, direction_rows, readable_table, run, summary_table
from avlib.tasks.separation import mixture_config

use_page_style()
experiment = resolve(profile, overrides)
settings, ablation = experiment.separation, experiment.ablations
device_name = "cuda" if device in ("cuda", "auto") and torch.cuda.is_available() else "cpu"
out = ResultWriter(profile=profile, seed=seed, device=device_name, notebook="05_separation_ablations", root=results_root,
                   config=experiment.to_dict())
phase = settings.phase
print(f"rows with video: {ablation.steps} steps of {settings.batch_size} clips each (notebook 04's full model: "
      f"{settings.train.steps}); u-net PIT: notebook 04's {settings.pit_steps} steps of {settings.pit_batch_size} mixtures; "
      f"estimates synthesised with the {phase} phase; {ablation.seeds} training seed(s) per row")

# %% [markdown]
# ## Every row, trained and scored
# `run` loads the speakers' clips and notebook 04's fixed test list (made here the same way if 04 has not
# run), trains or loads the I3D, builds every row's model, trains each row (same batches from the same
# seed, notebook 04's optimiser: Adam, clipping, weight decay on the U-Net; the same number of steps for
# every row with video; the u-net PIT row is notebook 04's checkpoint, retrained only if it is missing)
# and scores it on the test list. Checkpoints and scores are cached: a second run only reads them.

# %%
result = run(experiment, seed=seed, data_root=data_root, checkpoint_root=checkpoint_root or None, device=device,
             resume=not retrain, results=out)
test_list, i3d, titles, rows = result.test_list, result.i3d, result.titles, result.rows

# %% [markdown]
# ## The test list and its genders
# Notebook 04's list (made here the same way if 04 has not run). Each pair records both speakers'
# genders; the list draws half of its pairs from speakers of the same gender wherever the test split has
# two speakers of a gender, so both kinds are well represented.

# %%
shares = {kind: float((test_list.same_gender == same).mean()) for kind, same in SUBSETS.items() if same is not None}
print(f"{len(test_list)} test mixtures: " + ", ".join(f"{kind} {share:.0%}" for kind, share in shares.items())
      + f"; both kinds at least 40 % of the pairs: {min(shares.values()) >= 0.4}")
print(test_list.groupby(["on_gender", "off_gender"]).size().rename("pairs").to_string())

# %% [markdown]
# ## I3D: the supervised feature network
# Carreira & Zisserman's I3D (Inception-v1 inflated to 3-D), layer for layer as DeepMind's RGB stream
# (`avlib/models/i3d.py`). The separation taps one block per resolution, as it taps the multisensory
# net: `Mixed_3c`, `Mixed_4f` and `Mixed_5c`. First the published network's shapes and size, computed
# on the meta device (no memory, no arithmetic):

# %%
with torch.device("meta"):
    published = I3D()
    stages = published(torch.empty(1, 3, 64, 224, 224))
shapes = pd.DataFrame([{"endpoint": name, "T x H x W x C": " x ".join(map(str, (*stages[name].shape[2:], stages[name].shape[1])))
                        if stages[name].dim() == 5 else f"{stages[name].shape[1]} logits", "U-Net scale": name in SEPARATION_SCALES}
                       for name in ENDPOINTS])
parameters = published.num_parameters()
trunk = published.num_parameters(logits=False)
batchnorm = sum(p.numel() for name, p in published.named_parameters() if ".bn." in name)
print(f"published I3D (RGB, 400 Kinetics classes): {parameters / 1e6:.2f} M parameters; without the logits "
      f"{trunk / 1e6:.2f} M (of which {batchnorm / 1e3:.1f} k BatchNorm offsets), {round(trunk / 1e6)} M rounded to millions; "
      f"Carreira & Zisserman report {PUBLISHED_PARAMETERS / 1e6:.0f} M for the RGB stream")
shapes

# %% [markdown]
# Our network is DeepMind's: every convolution of Inception-v1 inflated (k x k -> k x k x k, the stem
# 7 x 7 x 7), no biases before BatchNorm, BatchNorm with an offset and no scale (sonnet's default), and a
# 1x1x1 logits layer with a bias. Carreira & Zisserman's "12M" is a figure rounded to millions: it matches
# the network without its logits; the 1024 x 400 logits (which depend on the dataset's classes) add the
# rest. A BatchNorm with a scale (PyTorch's default) would add as many parameters again as the offsets
# count. Kinetics weights cannot be downloaded on our machines:
# in `synth` the network is trained, supervised, on the synthetic world's action classes (the Kinetics
# counterpart), at the multisensory net's share of the paper's width; in `paper` a converted kinetics-i3d
# checkpoint is loaded (`ablations.i3d_checkpoint`, with `ablations.i3d_train = None`).

# %%
print(f"I3D for separation: {i3d['net'].num_parameters() / 1e6:.2f} M parameters (width {i3d['net'].config.width}), "
      f"trained on {i3d['source']}")
if result.i3d_accuracies:
    print(f"clip accuracy on the {i3d['test_videos']} held-out action videos, per training seed "
          f"{', '.join(f'{seed_k}: {accuracy:.1%}' for seed_k, accuracy in zip(result.seeds, result.i3d_accuracies))} "
          f"(chance {1 / i3d['classes']:.1%}; {i3d['sound_only_classes']} of the {i3d['classes']} classes differ from "
          "another only by their sound, which frames cannot tell apart)")

# %% [markdown]
# ## How each row trained
# Same batches (same seed), same optimiser (notebook 04's: Adam, clipping, weight decay on the U-Net),
# the same number of steps for every row with video. The u-net PIT row is notebook 04's checkpoint
# (trained there with its own budget of mixtures), retrained only if it is missing.

# %%
budget = budget_table(result, settings)
out.table(budget, "separation_ablation_budget", caption=f"Training of each row ({profile} profile).")
budget

# %%
fig, (axis, pit_axis) = plt.subplots(2, 1, figsize=(8, 8.4), height_ratios=(3, 1.3))
# rows whose curves nearly coincide stay visible: each its own line style, drawn thinner on top, and its own hollow
# marker, smaller on top, so that markers at the same point nest instead of hiding each other
styles = [("-", "o"), ("--", "s"), ("-.", "^"), (":", "D"), ((0, (5, 1, 1, 1)), "v"), ((0, (1, 1)), "x")]
for order, variant in enumerate(VARIANTS):
    for index, history in enumerate(result.seed_runs[variant.name]):  # every training seed; the first marked and labelled
        log = pd.DataFrame(history["train"])
        if log.empty:
            continue
        line, marker = ("-", "x") if variant.pit else styles[order % len(styles)]
        target = pit_axis if variant.pit else axis  # the audio-only row trained elsewhere, with other batches and steps
        target.plot(log["step"], log["loss"], linestyle=line, marker=marker if index == 0 else None,
                    markevery=max(1, len(log) // 12), markersize=6 if variant.pit else 12 - 1.8 * order,
                    markerfacecolor="none", linewidth=1.6 if variant.pit else 2.4 - 0.3 * order, zorder=2 + order,
                    label=titles[variant.name] if index == 0 else None, color=f"C{order}", alpha=1 if index == 0 else 0.45)
axis.set_xlabel("step")
axis.set_ylabel(loss_label(settings))
axis.legend(loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=1, frameon=False)
axis.set_title(f"Separation ablations, training loss ({profile} profile)")
pit_axis.set_xlabel("step")
pit_axis.set_ylabel("loss")
pit_axis.set_title(f"{titles['unet_pit']}:\nits own run, with its own batches and steps", fontsize="medium")
out.figure(fig, "separation_ablation_training", caption=(
    "Training loss of each row, every training seed (the first with markers, the others fainter)."))
plt.show()

# %% [markdown]
# ## Scores
# Every row on every test pair: SDR, SIR, SAR (BSS-Eval) and PESQ (wide-band, at 16 kHz; STOI, the
# slowest metric, is left to notebook 04), against the mono sources, on the same samples of each window,
# with the phase notebook 04's headline uses. The mixture is scored once. The
# u-net PIT row's outputs are assigned to on- and off-screen by the better SDR, an oracle it does not
# have. Scores are cached per row, keyed by the checkpoint's content, the test list and the phase.

# %%
scores = result.scores
out.table(scores, "separation_ablation_scores_per_pair", caption="Every metric of every test pair, per row and source.")
summary = summary_table(scores, rows, titles)
out.table(summary, "separation_ablations_long", caption=(
    f"Every row on all, same-gender and different-gender test mixtures ({profile} profile): means over the training "
    f"seeds {result.seeds} and 95 % intervals over seeds and test pairs of SDR / SIR / SAR (dB) and PESQ, on-screen and "
    "off-screen, and the seed spread (sd, min, max) of the per-seed mean SDR."))
directions = direction_rows(scores, rows, titles)
table = readable_table(summary, directions=directions)
out.table(table, "separation_ablations", caption=(
    f"Separation ablations on the fixed test list ({len(test_list)} mixtures, {profile} profile, {phase} phase): mean "
    f"over the training seeds {result.seeds} [95 % interval over seeds and test pairs] per row and kind of mixture; "
    "pairs = test mixtures scored. Beside each row: the paper's direction "
    "(against full on all mixtures; same- against different-gender on the same-gender line) and ours, on-screen SDR "
    "(see separation_ablation_directions). The mixture's SAR is unbounded and shows a numerical ceiling. No number of "
    "the paper's separation tables could be verified (docs/paper.md §7.8)."))
table

# %% [markdown]
# ## The paper's directions, row by row
# Each row against `full` trained with the same seed, pair by pair: the mean difference of on-screen SDR
# over seeds and pairs, its range over seeds, and its 95 % interval over both (`avlib.stats.seed_interval`);
# and every row's same-gender mixtures against its different-gender ones: different pairs, so unpaired by
# pair but paired by seed (`avlib.stats.seed_welch_interval`: Welch's variance over the two kinds of
# pairs plus the variance of the per-seed differences). *holds*: the interval lies on the paper's side of
# zero; *opposite*: on the other side; *not resolved*: it contains zero (and, in `paper_comparison`, any
# row with fewer than 3 seeds in a result profile). The paper's directions are the project's source
# summary's (UNVERIFIED), or inferred where it states none.

# %%
out.table(directions, "separation_ablation_directions", caption=(
    f"The paper's direction of each effect beside ours ({profile} profile, on-screen SDR, {phase} phase)."))
for _, record in directions.iterrows():
    paper_direction = record["paper's direction"]
    print(f"{record['row']} [{record['compared']}]: paper: {paper_direction}; ours: "
          f"{record['difference dB']:+.2f} dB ({record['95 % interval']}, {record['pairs']} pairs, {record['seeds']} seeds, "
          f"per seed {record['per seed, min to max']}): {record['direction held?']}")
# each row's claim goes to the paper comparison too (the gender claim is notebook 04's row)
for row in result.comparisons:
    out.compare(row.claim.key, row.mean, low=row.low, high=row.high, n=row.pairs, against={"full": (row.low, row.high)},
                measure=f"on-screen SDR of '{titles[row.name]}' minus full trained with the same seed, per test pair "
                        f"(dB, {phase} phase), mean of {len(row.per_seed)} training seeds",
                seeds=result.seeds, seed_scores=row.per_seed)
directions

# %%
on_screen = summary[(summary.source == "on_screen") & (summary.system != "mixture")]
kinds = list(SUBSETS)
fig, axis = plt.subplots(figsize=(8, 5))
width = 0.8 / len(kinds)
positions = np.arange(len(rows))
for k, kind in enumerate(kinds):
    part = on_screen[on_screen.mixtures == kind].set_index("system").reindex(rows)
    errors = np.vstack([part["sdr"] - part["sdr_low"], part["sdr_high"] - part["sdr"]])
    pairs = len(test_list) if SUBSETS[kind] is None else int((test_list.same_gender == SUBSETS[kind]).sum())
    axis.bar(positions + (k - 1) * width, part["sdr"], width, yerr=np.nan_to_num(errors), capsize=2,
             label=f"{kind} ({pairs} pairs)")
mixture = summary[(summary.source == "on_screen") & (summary.system == "mixture") & (summary.mixtures == "all")]
axis.axhline(float(mixture["sdr"].iloc[0]), color="grey", linestyle="--", linewidth=1, label="mixture (all)")
axis.set_xticks(positions, [textwrap.fill(titles[name], 13, break_long_words=False) for name in rows])
axis.set_ylabel("on-screen SDR (dB)")
axis.set_title(f"Separation ablations by kind of mixture ({profile} profile, 95 % intervals)")
axis.legend(loc="upper center", bbox_to_anchor=(0.5, -0.42), ncol=2, frameon=False)
out.figure(fig, "separation_ablations_sdr", caption="On-screen SDR of every row, on all, same-gender and different-gender mixtures.")
plt.show()

# %% [markdown]
# ## Listening: every row on a few test pairs
# The first pairs of the fixed test list (the ones notebook 04 plays): the mixture, both ground-truth
# sources, and each row's on-screen output (the u-net PIT row's by the oracle assignment), each labelled.
# These are played after every number above is computed, so listening changes none of them.

# %%
listened = test_list.iloc[: settings.examples_shown]
speakers = speaker_sources(experiment.synthetic, experiment.profile, seed, data_root, mixture_config(settings))
batch = load_test_mixtures(listened, speakers.test)
outputs = {name: predict(result.models[name], batch["frames"], batch["mixture"], settings.eval_batch, phase) for name in rows}
length = outputs[rows[0]]["on_screen"].shape[1]
order_free = {variant.name for variant in VARIANTS if variant.pit}  # outputs assigned by the oracle, as in the scores
for row, pair in enumerate(listened.itertuples()):
    on_truth = mono_mix(batch["on_screen"][row : row + 1])[0, :length].numpy()
    off_truth = mono_mix(batch["off_screen"][row : row + 1])[0, :length].numpy()
    sounds = {"mixture (the input)": outputs[rows[0]]["mixture"][row].numpy(),
              "ground truth, on-screen speaker": on_truth, "ground truth, off-screen speaker": off_truth}
    for name in rows:
        first, second = outputs[name]["on_screen"][row].numpy(), outputs[name]["off_screen"][row].numpy()
        on_output = best_permutation(on_truth, off_truth, first, second)[0] if name in order_free else first
        sounds[f"{titles[name]}: on-screen output"] = on_output
    play_labelled(f"Test pair {pair.pair}: on screen {pair.on_speaker} ({pair.on_gender}), off screen {pair.off_speaker} "
                  f"({pair.off_gender}); {phase} phase", sounds, settings.model.spectral.sample_rate)
