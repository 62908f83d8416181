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
# # 02 · Where the network hears the sound: class activation maps
#
# The alignment network (notebook 01) ends in a global average pool and one linear classifier, so
# applying that classifier at every position of its last conv gives a **class activation map** (CAM):
# $M(t, y, x) = \sum_c w_c F_c(t, y, x) + b$, whose mean is the "aligned" logit (paper section 5,
# `avlib.localize`, `avlib.tasks.cam`). The paper's maps light up speakers' faces and mouths and moving sound sources
# (UNVERIFIED: known from a secondary summary, not from the paper's text). The official code uses
# the `cam` network (conv5_1's spatial stride removed, 16 × 14 × 14 maps for a 4.2 s clip,
# fine-tuned 25 k iterations) and draws them with its `heatmap()` overlay (97th-percentile scale,
# jet, alpha ≤ 0.35).
#
# Beyond the paper, which scored no map as far as we know (UNVERIFIED against its text):
# the synthetic scenes know which pixels make sound, so the maps are **measured** here (pointing
# game, cIoU) against baselines that need no sound (a centre prior, motion energy, the same network
# with random weights), with **silent distractors** (objects that move the same ways but make no
# sound) reported separately. The headline is measured on **sync-only clips**: a sounding object
# beside a silent distractor that moves and glows with the same statistics, out of step with the
# sound, so that only audio-visual correspondence can tell them apart (motion energy sits near
# 50 % there). The CAM network is fine-tuned with several training seeds and the verdicts count
# their spread.
#
# Any video works (`python -m avlib.localize VIDEO --checkpoint CKPT --out OUT.mp4`): frames keep their
# aspect ratio, are tiled into the network's crops and mapped back, and long videos are covered by
# sliding windows.

# %% tags=["parameters"]
profile = "synth"
seed = 0
data_root = ""
device = "auto"
results_root = "../results"
checkpoint_root = ""  # default: the checkout's ignored checkpoints/ folder
overrides = {}  # config keys to change, e.g. {"cam.eval_clips": 4} (avlib.config)

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import display

from avlib import io
from avlib.config import resolve
from avlib.data.world import load_truth
from avlib.localization import SceneEvaluation, mask_means, on_screen_events, top_responses
from avlib.localize import localize
from avlib.plots import frame_image, scene_browser, scene_overlay, use_page_style
from avlib.report.claims import combined_verdict
from avlib.report.index import notebook_comparison
from avlib.report.results import ResultWriter
from avlib.tasks.cam import cam_shift, run, scores

use_page_style()
experiment = resolve(profile, overrides)
settings = experiment.cam
shift = cam_shift(experiment)  # the frames the CAM network is fine-tuned and mapped at (cam.size)
device_name = "cuda" if device in ("cuda", "auto") and torch.cuda.is_available() else "cpu"
out = ResultWriter(profile=profile, seed=seed, device=device_name, notebook="02_cam", root=results_root, config=experiment.to_dict())
work = Path(results_root).parent / "data" / profile / "02_cam"  # ignored by git
settings

# %% [markdown]
# ## The CAM network, its maps on held-out clips, and the baselines
# The pretrained network (notebook 01) is loaded with `cam=True`: the weights have the same shapes,
# only conv5_1 no longer halves the picture, so the map doubles in resolution. The paper then
# fine-tuned 25 k iterations (3.8 % of its 650 k); the profile's `fine_tune_steps` does the same share
# of our pretraining on the same alignment task, at `cam.size`-pixel frames: the network is fully
# convolutional, and at the pretraining's 32 pixels each conv5 cell sees the whole frame. It is
# fine-tuned once per training seed (`cam.seeds`); random weights are drawn once per seed too. Both
# the fine-tuned networks and the pretrained weights without fine-tuning are scored below.
#
# Every method sees the same windows, at the network's frame rate, with frames resized to the
# profile's scale (short side = the training frames' side) and covered by the network's crops.
# `|CAM|` is the official overlay's map (the magnitude, averaged over tiles); the signed map is
# where the picture speaks *for* alignment with the sound. The "whole frame" rows run the same
# network once over the whole resized frame (it is fully convolutional) instead of tiling it.
# `avlib.tasks.cam.run` does all of it (`python -m avlib.tasks.cam` from a shell).

# %%
cam = run(experiment, seed=seed, data_root=data_root, checkpoint_root=checkpoint_root or None, device=device,
          work_dir=work)
evaluation, names, shown = cam.evaluation, cam.names, cam.shown
if cam.fine_tuned_first != cam.pretrained:
    fine_tune_log = pd.concat([pd.read_csv(path.parent / "eval.csv").tail(1).assign(seed=train_seed)
                               for train_seed, path in cam.fine_tuned.items()])
    print(f"fine-tuned {settings.fine_tune_steps} steps with cam=True at {settings.size}-pixel frames "
          f"({settings.crop}-pixel crops), seeds {list(cam.seeds)}; held-out alignment accuracy after it:")
    display(fine_tune_log)
print(f"{len(cam.clips)} clips mapped; {evaluation.frames['clip'].nunique()} have a visible sounding object; "
      f"{0 if cam.sync_only is None else len(cam.sync_only.clips)} sync-only clips; "
      f"{0 if cam.speakers is None else cam.speakers['clip'].nunique()} speakers' clips")

# %% [markdown]
# ## The headline: which object does the map prefer when only the sound can tell?
# On the sync-only clips, the share of frames in which the map's mean over the sounding object
# exceeds its mean over the silent distractor (50 % = cannot tell them apart), for each map over
# its training seeds: the mean over seeds and clips, its 95 % interval (`avlib.stats.seed_interval`
# on per-clip scores: seeds and clips both count; one map without seeds: the t interval over clips)
# and the seeds' spread. Motion energy, the centre prior, chance and random weights sit beside it;
# the same for pointing on the held-out scenes and, on the speakers' talking heads, for the peak on
# the mouth and on the face.

# %%
scored = scores(cam, settings, seed)
if scored is not None:
    by_seed = scored["seeds"]
    out.table(by_seed, "localization_seeds", caption=(
        f"Each map over its training seeds ({profile} profile, seeds {list(cam.seeds)}): sync-only clips (a silent "
        "distractor that moves and glows like the source, out of step with the sound), pointing on the held-out "
        "scenes, and the speakers' mouth and face. Mean % over seeds and clips, 95 % interval over seeds and clips, "
        "seed spread of each seed's mean."))
    display(by_seed)

# %% [markdown]
# ## Localisation scores
# **Pointing**: the map's peak lies on an object that makes sound (chance: the random map).
# **cIoU**: the map, min-max normalised per frame and cut at 0.5, against the sounding objects'
# pixels; its AUC over thresholds 0–1. **Silent distractors**, on frames that show one: how often
# the peak lands on the silent object, and how often the map is higher on the sounding object
# than on the silent one (50 % = cannot tell them apart); the last column is the same on the
# sync-only clips. Intervals: 95 %, resampling clips; one row per map and training seed.

# %%
if scored is not None:
    table = scored["localization"]
    table.insert(1, "data", f"{profile} held-out scenes")
    if "sync_only" in scored:
        sync_share = scored["sync_only"].set_index("method")["sounding > silent %"]
        table["sync-only: sounding > silent %"] = table["method"].map(sync_share)
    out.table(table, "localization", caption=(
        f"Sound-source localisation on the {profile} profile's held-out scenes (every "
        f"{settings.eval_frame_stride}th frame showing a sounding object), and on its sync-only clips (last "
        "column). The paper reports no localisation score as far as we know (UNVERIFIED against its text), so "
        "there is no paper row."))
    display(table)
else:
    table = None
    print("no ground truth in this profile: the maps are shown, not scored")

# %% [markdown]
# ### Does the network beat every baseline?
# The fine-tuned CAM minus each baseline, per clip (frames of a clip are not independent), paired
# seed by seed against random weights (drawn once per seed) and against the one map of the other
# baselines; 95 % intervals over seeds and clips (`avlib.stats.seed_interval`).

# %%
if table is not None:
    comparisons = scored["vs_baselines"]
    out.table(comparisons, "localization_vs_baselines", caption=(
        f"The CAM network minus each baseline, {profile} profile, per clip on the same frames, over training seeds "
        f"{list(cam.seeds)} (intervals count the seeds' spread and the clips')."))
    display(comparisons)
    for (measure, method), rows in comparisons.groupby(["measure", "network map"], sort=False):
        print(f"{method} on {measure}, above every baseline: {combined_verdict(rows['verdict'])} ("
              + ", ".join(f"{baseline}: {found}" for baseline, found in zip(rows["baseline"], rows["verdict"]))
              + f"); {rows['clips'].iloc[0]} clips, {rows['seeds'].iloc[0]} seeds.")
    if (comparisons["verdict"] != "holds").any():
        print("Where the network does not beat a baseline, the alignment pretraining has not (yet) tied the sound "
              "to the object that makes it at this scale: the classifier decides from cues spread over the frame "
              "(or from motion alone), so its map says little about where the source is.")

# %% [markdown]
# ### Where do the peaks land?
# A map that follows the sound source puts its peaks wherever the objects go; a map stuck to one
# place (the official heat map's failure on other resolutions) puts most of them in one cell,
# whatever the clip. For each map: the cell of the stored map grid that holds the most peaks (as
# fractions of the frame from the top left), its share of all peaks, and the share that a peak
# placed at random would give that cell. Every stored map of every clip counts, scored or not.

# %%
peaks = scored["peaks"] if table is not None else None
if peaks is not None:
    out.table(peaks, "localization_peaks", caption=(
        f"Where each map's peak lands on the {profile} profile's held-out scenes: the most common cell of the "
        "stored map grid (row and col as fractions of the frame from the top left) and its share of the peaks, "
        "against the share of a peak placed uniformly at random."))
    display(peaks)

# %% [markdown]
# ### Beside the paper
# The paper's CAM claims are qualitative (`avlib.report.claims`). "Sound sources are still localised
# reasonably" on non-speech videos is taken to hold when, on the sync-only clips, the CAM prefers the
# sounding object more often than every baseline does, each 95 % interval over seeds and clips above 0
# (on clips where motion cannot tell, only hearing can). "Top-ranked regions fall on speakers' faces and
# mouths" is taken to hold when the CAM's peak falls on the speaker's mouth more often than chance and the
# centre prior (the talking heads are close-ups, so the face fills most of the frame and says little).
# The CAM over time is shown in the figure below, not scored.

# %%
if table is not None:
    from avlib.tasks.cam import MOUTH_MEASURE, SYNC_MEASURE, claim_inputs

    non_speech = claim_inputs(cam, scored, SYNC_MEASURE)
    if non_speech is not None:
        out.compare("cam_non_speech", measure=f"% of frames of {non_speech['n']} sync-only synthetic clips (non-speech) "
                    "in which the CAM is higher on the sounding object than on a silent distractor that moves and "
                    "glows alike", note="differences in points per clip, intervals over training seeds and clips",
                    **non_speech)
    speech = claim_inputs(cam, scored, MOUTH_MEASURE, baselines=["random map (chance)", "centre prior"])
    if speech is not None:
        out.compare("cam_speech", measure=f"% of frames of {speech['n']} synthetic talking-head clips with the CAM's "
                    "peak on the speaker's mouth", note="differences in points per clip, intervals over training seeds "
                    "and clips", **speech)
out.compare("cam_over_time", "figure cam_over_time: the map over the sounding object, the silent objects and the "
            "background of one clip, frame by frame", measure="shown, not scored")
notebook_comparison(out)

# %% [markdown]
# ## Top-responding frames (the paper's figure)
# The held-out frames whose map peaks highest, one per clip, with the official overlay.

# %%
top = top_responses(evaluation, shown, settings.top_frames)
fig, axes = plt.subplots(2, len(top), figsize=(8, 1.4 + 8 / max(len(top), 3) * 2), squeeze=False)
for column, row in top.iterrows():
    scene = evaluation.clips[row["clip"]]
    image = frame_image(scene.video, row["frame"], io.probe(scene.video).fps)
    axes[0, column].imshow(image)
    axes[0, column].set_title(f"{row['clip']}\nframe {row['frame']}")
    axes[1, column].imshow(scene_overlay(evaluation, row["clip"], row["position"], shown, settings.lo_fraction,
                                         settings.max_alpha))
    if scene.truth is not None:
        truth = load_truth(scene.truth)
        for box, sounding in zip(truth.boxes[row["frame"]], truth.sounding):
            axes[1, column].add_patch(plt.Rectangle(box[:2], box[2] - box[0], box[3] - box[1], fill=False, lw=1,
                                                    ls="-" if sounding else ":", color="w" if sounding else "k"))
    for axis in axes[:, column]:
        axis.axis("off")
fig.suptitle(f"Top-responding held-out frames, {profile} profile\n({shown}; boxes: solid = sounding, dotted = silent)")
out.figure(fig, "cam_top_frames", caption=(
    "Held-out frames with the strongest CAM peak, one per clip, under the official overlay (97th percentile of the "
    "clip's map, jet, alpha up to 0.35)."))
plt.show()

# %% [markdown]
# ## The CAM over time, around sound events
# A held-out clip with impacts from a visible object: the map's mean over the sounding object, the
# silent one and the rest of the frame, frame by frame, against the sound's envelope. A network that
# ties sound to its source responds on the object, and most around its impacts.

# %%
example = max(evaluation.clips.values(), key=on_screen_events)
example_info = io.probe(example.video)
curves = mask_means(evaluation.maps[example.name][shown], evaluation.frame_index[example.name],
                    load_truth(example.truth)) if example.truth is not None else None
sound = io.read_audio(example.video, 0.0, int((example_info.usable_duration - 0.05) * 8000), sample_rate=8000,
                      channels=1)[0]
fig, (map_axis, sound_axis) = plt.subplots(2, 1, figsize=(8, 6), sharex=True, height_ratios=(2, 1))
if curves is not None:
    for column, style, label in (("sounding", "-", "sounding object"), ("silent", "--", "silent objects"),
                                 ("background", ":", "background")):
        if curves[column].notna().any():  # no line, no legend entry (a clip without a silent object in view)
            map_axis.plot(curves["time"], curves[column], style, label=label)
    truth = load_truth(example.truth)
    for time, owner in zip(truth.event_time, truth.event_object):
        map_axis.axvline(time, color="r" if owner >= 0 else "0.7", lw=0.6)
map_axis.set_ylabel("mean of the map")
map_axis.legend()
map_axis.set_title(f"{example.name}, {shown}\non-screen impacts in red, off-screen sounds in grey")
sound_axis.plot(np.arange(len(sound)) / 8000, np.abs(sound), lw=0.4)
sound_axis.set_xlabel("time (s)")
sound_axis.set_ylabel("|audio|")
out.figure(fig, "cam_over_time", caption="Mean CAM over the sounding object, the silent objects and the background "
                                          "of one held-out clip, with its sound events and waveform.")
plt.show()

strip = np.linspace(0, len(evaluation.frame_index[example.name]) - 1, 6).astype(int)
fig, axes = plt.subplots(2, len(strip) // 2, figsize=(8, 6))
for axis, position in zip(axes.flat, strip):
    axis.imshow(scene_overlay(evaluation, example.name, int(position), shown, settings.lo_fraction, settings.max_alpha))
    axis.set_title(f"{evaluation.frame_index[example.name][position] / example_info.fps:.1f} s")
    axis.axis("off")
out.figure(fig, "cam_strip", caption=f"The overlay over time on {example.name}.")
plt.show()

# %% [markdown]
# ## An overlay video
# `avlib.localize.localize` on the same clip: every frame of the input with its map, and the input's sound.
# The same call works on any video with sound (`python -m avlib.localize VIDEO --checkpoint CKPT --out OUT.mp4`).

# %%
result = localize(example.video, cam.fine_tuned_first, work / "cam_overlay.mp4", shift=shift, settings=settings,
                  device=device_name, track=evaluation.tracks[example.name][shown])  # the maps made above, not made again
media = out.media(result.out, "cam_overlay.mp4", caption=(
    f"{example.name} with the {shown} overlay and its original sound, {profile} profile."))
written = io.probe(media)
print(f"{media.name}: {written.num_frames} frames, {written.duration:.2f} s (input {example_info.duration:.2f} s), "
      f"{written.channels}-channel sound; maps {result.maps.shape}, overlay scale {result.scale:.3g}")

# %% [markdown]
# ## Browse the saved maps
# Clip, map and frame, read back from the maps saved above; the clip's sound plays in the player.
# Widgets need a live kernel: in a headless run this cell only builds them.

# %%
scene_browser(SceneEvaluation.load(work / "evaluation"), shown, settings.lo_fraction, settings.max_alpha)
