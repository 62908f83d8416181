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
# # 00 · What the network sees
#
# Owens & Efros feed their network a **4.2 s window**: `int(4.2 × 29.97) = 125` frames,
# squashed to 256 × 256 and cropped to 224 × 224, with **87 588 stereo samples at 21 kHz**
# (`round(125 / 29.97 × 21000)`). The self-supervised task asks whether the audio belongs to
# the frames or was **shifted** by 2.0–5.8 s within the same video.
#
# This notebook reads such windows with `avlib.io.read_clip` from real video files and shows
# the frames, the waveform, the spectrogram, the sound, aligned vs shifted audio, and then the
# three parts of the synthetic world that stand in for AudioSet, UCF-101 and VoxCeleb.

# %% tags=["parameters"]
profile = "synth"
seed = 0
data_root = ""
device = "auto"
results_root = "../results"
overrides = {}  # config keys to change (avlib.config)

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Audio, display
from matplotlib.patches import Rectangle

from avlib import io
from avlib.config import resolve
from avlib.plots import use_page_style
from avlib.report.results import ResultWriter

use_page_style()
settings = resolve(profile, overrides)
out = ResultWriter(profile=profile, seed=seed, device="cpu", notebook="00_data", root=results_root, config=settings.to_dict())
rng = np.random.default_rng(seed)

# %% [markdown]
# ## The data
# `synth`/`smoke` generate the synthetic world on first use (cached under the checkout's
# ignored `data/` folder, re-used afterwards); `paper` reads AudioSet clips under `data_root`
# (`docs/datasets.md`).

# %%
if settings.synthetic:
    from avlib.data.world import generate_world, load_actions, load_scenes, load_speakers, load_truth

    world = generate_world(profile, seed=seed)
    scenes = load_scenes(world["scenes"])
    # the clip with the most sound events caused by visible objects
    row = scenes.sort_values(["num_sounding", "num_events"], ascending=False).iloc[0]
    source = world["scenes"] / row["path"]
    truth = load_truth(world["scenes"] / row["truth"])
else:
    from avlib.data.index import build_index

    if not data_root:
        raise ValueError("the paper profile reads AudioSet clips: pass --data-root (see docs/datasets.md)")
    source = Path(build_index(Path(data_root) / "audioset" / "test", skip_bad=True).with_audio()[0].path)
    truth = None
info = io.probe(source)
print(f"{source.name}: {info.duration:.2f} s at {info.fps:.2f} fps, {info.width}x{info.height}, "
      f"audio {info.sample_rate} Hz x {info.channels} ({info.audio_codec})")

# %% [markdown]
# ## The paper's window
# `read_clip(path, start, 4.2, size=256, crop=224)`: frames chosen by timestamp at 29.97 fps,
# squashed to 256 × 256 (as the official demo's `ffmpeg -vf scale=256:256`) and centre-cropped
# to 224; audio resampled to 21 kHz stereo.

# %%
duration = min(io.PAPER_DURATION, info.usable_duration - 0.1)
start = 0.0
clip = io.read_clip(source, start, duration, size=256, crop=224)
print(f"frames {clip.frames.shape} {clip.frames.dtype}, audio {clip.audio.shape} {clip.audio.dtype} "
      f"at {clip.sample_rate} Hz, {clip.duration:.3f} s")

# %%
# the paper's input (above) and, when this profile's network sees other frames, the same moments as it sees them
network = settings.pretrain.shift
columns = 4
picks = np.linspace(0, clip.num_frames - 1, columns).astype(int)
inputs = [("the paper's network", clip.frames[picks], clip.frames.shape[1:3], clip.fps)]
if (network.size, network.crop, network.fps) != (256, 224, clip.fps):
    seen = io.read_clip(source, start, duration, fps=network.fps, size=network.size, crop=network.crop)
    nearest = np.minimum(np.round(picks / clip.fps * network.fps).astype(int), seen.num_frames - 1)
    inputs.append((f"the {profile} network", seen.frames[nearest], seen.frames.shape[1:3], network.fps))
fig, axes = plt.subplots(len(inputs), columns, figsize=(8, 0.7 + 2.2 * len(inputs)), squeeze=False)
for row_axes, (who, frames, (height, width), rate) in zip(axes, inputs):
    for axis, frame, index in zip(row_axes, frames, picks):
        axis.imshow(frame)
        axis.set_xticks([])
        axis.set_yticks([])
        axis.set_title(f"{start + index / clip.fps:.2f} s")
    row_axes[0].set_ylabel(f"{who}\n{width} x {height} px")
sizes = "; ".join(f"{who}: {width} x {height} px at {rate:.2f} fps" for who, _, (height, width), rate in inputs)
fig.suptitle("Frames of one window as each network sees them")
out.figure(fig, "frames", caption=f"Frames of one window at four moments, as each network sees them ({sizes}; the paper's "
           f"frames are squashed to 256 x 256 and centre-cropped, ours to {network.size} and {network.crop}).")
plt.show()

# %%
visible_events = [] if truth is None else [t for t, k in zip(truth.event_time, truth.event_object)
                                           if k >= 0 and start <= t < start + clip.duration]
time_axis = start + np.arange(clip.audio.shape[1]) / clip.sample_rate
fig, (wave_axis, spec_axis) = plt.subplots(2, 1, figsize=(8, 5.5), sharex=True)
wave_axis.plot(time_axis, clip.audio[0], lw=0.5, label="left")
wave_axis.plot(time_axis, clip.audio[1], lw=0.5, alpha=0.7, label="right")
for event in visible_events:
    wave_axis.axvline(event, color="k", ls=":", lw=0.8)
wave_axis.set_ylabel("amplitude")
wave_axis.legend(loc="upper right")
wave_axis.set_title("Waveform (dotted: impacts of visible objects, ground truth)")
spec_axis.specgram(clip.audio.mean(axis=0), NFFT=1344, Fs=clip.sample_rate, noverlap=1344 - 336, cmap="magma",
                   xextent=(start, start + clip.duration))
spec_axis.set_ylabel("Hz")
spec_axis.set_xlabel("seconds into the video")
spec_axis.set_title("Spectrogram (64 ms Hann frames, 16 ms hop: the separation's STFT)")
out.figure(fig, "waveform_spectrogram", caption="Waveform and spectrogram of the window; visible impacts marked.")
plt.show()
display(Audio(clip.audio, rate=clip.sample_rate))

# %% [markdown]
# ## Aligned vs shifted audio
# The negative example pairs these frames with audio from **another window of the same
# video**, shifted by 2.0–5.8 s in the paper (`avlib.data.shift`). Its sounds no longer fall
# on the frames' events.

# %%
latest_start = info.usable_duration - clip.duration
shifts = [s for s in np.arange(-5.8, 5.81, 0.1) if abs(s) >= 2.0 and 0 <= start + s <= latest_start]
shift = float(rng.choice(shifts)) if shifts else latest_start - start
shifted = io.read_audio(source, start + shift, clip.audio.shape[1])
fig, axes = plt.subplots(2, 1, figsize=(8, 4.6), sharex=True)
for axis, audio, title in ((axes[0], clip.audio, "aligned"), (axes[1], shifted, f"shifted by {shift:+.1f} s")):
    axis.plot(time_axis, audio.mean(axis=0), lw=0.5)
    for event in visible_events:
        axis.axvline(event, color="r", ls=":", lw=0.8)
    axis.set_title(f"{title} audio; red: the frames' visible impacts")
axes[1].set_xlabel("seconds (frames' clock)")
out.figure(fig, "aligned_vs_shifted", caption="The alignment task: the same frames with their own and with shifted audio.")
plt.show()
display(Audio(shifted, rate=clip.sample_rate))

# %% [markdown]
# ## Scenes: sounding objects and silent distractors
# The AudioSet counterpart. Every object moves; only some make sound (green boxes, from the
# ground truth), the others are silent distractors that move the same ways (grey). Sound is
# caused by what is seen: an impact's onset is the sample at which its frame is shown.

# %%
if truth is not None:
    frames_at = np.linspace(0, truth.boxes.shape[0] - 1, 6).astype(int)
    written = io.read_clip(source, 0.0, fps=info.fps, num_frames=truth.boxes.shape[0] - 1)
    fig, axes = plt.subplots(2, len(frames_at) // 2, figsize=(8, 6))
    for axis, frame in zip(axes.flat, frames_at):
        frame = min(frame, written.num_frames - 1)
        axis.imshow(written.frames[frame])
        for box, sounding in zip(truth.boxes[frame], truth.sounding):
            x0, y0, x1, y1 = box
            axis.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, lw=1.5,
                                     ec="lime" if sounding else "0.6", ls="-" if sounding else "--"))
        axis.set_title(f"{frame / info.fps:.2f} s")
        axis.axis("off")
    fig.suptitle("Ground truth: sounding objects (green)\nand silent distractors (grey, dashed)")
    out.figure(fig, "scenes_ground_truth", caption="A scenes clip with its ground-truth sounding and silent objects.")
    plt.show()
    summary = pd.DataFrame({
        "clips": [len(scenes)], "seconds each": [scenes["duration"].median()],
        "objects per clip": [scenes["num_objects"].mean()], "sounding per clip": [scenes["num_sounding"].mean()],
        "events per clip": [scenes["num_events"].mean()], "clips with off-screen sound %": [100 * (scenes["offscreen"] != "none").mean()],
    })
    out.table(summary, "world_scenes", caption="The scenes part of the synthetic world.")
    display(summary)

# %% [markdown]
# ## Actions: the UCF-101 counterpart
# Classes of motion × sound, in UCF-101's exact layout (`<Class>/v_<Class>_gNN_cMM.avi`, MPEG-4
# + MP3, split lists in `ucfTrainTestlist/`). Some pairs of classes move the same way and
# differ **only in their sound**; about half of the videos have no audio track, as in UCF-101.

# %%
if settings.synthetic:
    actions = load_actions(world["actions"])
    classes = actions.attrs["classes"]
    first_frames = [io.read_clip(world["actions"] / actions[actions["class_name"] == name].iloc[0]["path"], 1.0, 0.1,
                                 num_frames=1, missing_audio="silence").frames[0] for name in classes]
    grid = min(5, len(classes))
    grid_rows = -(-len(classes) // grid)
    aspect = first_frames[0].shape[0] / first_frames[0].shape[1]
    fig, axes = plt.subplots(grid_rows, grid, figsize=(8, 0.6 + grid_rows * (8 / grid * aspect + 0.45)), squeeze=False)
    for axis in axes.flat[len(classes):]:
        axis.axis("off")
    for axis, name, frame in zip(axes.flat, classes, first_frames):
        axis.imshow(frame)
        axis.set_title(name)
        axis.axis("off")
    fig.suptitle("One frame of each action class")
    out.figure(fig, "world_actions", caption="Action classes of the synthetic world (UCF-101 counterpart).")
    plt.show()
    per_class = actions.groupby("class_name").agg(clips=("path", "size"), with_audio=("has_audio", "sum")).reset_index()
    per_class["sound-only partner"] = per_class["class_name"].map(
        {a: b for pair in actions.attrs["sound_only_pairs"] for a, b in (pair, pair[::-1])}).fillna("")
    out.table(per_class, "world_actions", caption="Clips per action class, how many have audio, and classes that only sound separates.")
    display(per_class)

# %% [markdown]
# ## Speakers: the VoxCeleb counterpart
# Talking heads whose mouths open with the loudness of their own synthetic speech; male voices
# at about 85-155 Hz, female at about 165-255 Hz; speaker-disjoint train/val/test splits.

# %%
if settings.synthetic:
    speakers, speaker_clips = load_speakers(world["speakers"])
    counts = speakers.groupby(["split", "gender"]).size().unstack(fill_value=0).reset_index()
    out.table(counts, "world_speakers", caption="Speakers per split and gender (speaker-disjoint splits).")
    display(counts)
    fig, axes = plt.subplots(2, 2, figsize=(8, 5.5), gridspec_kw={"width_ratios": [1, 2.4]})
    for row_axes, gender in zip(axes, ("m", "f")):
        speaker = speakers[speakers["gender"] == gender].iloc[0]
        example = speaker_clips[speaker_clips["speaker_id"] == speaker["speaker_id"]].iloc[0]
        talk = io.read_clip(world["speakers"] / example["path"], 0.0, 3.0)
        row_axes[0].imshow(talk.frames[talk.num_frames // 2])
        row_axes[0].axis("off")
        row_axes[0].set_title(f"{speaker['speaker_id']}\n{'male' if gender == 'm' else 'female'}, f0 {speaker['f0_hz']:.0f} Hz")
        row_axes[1].specgram(talk.audio.mean(axis=0), NFFT=1344, Fs=talk.sample_rate, noverlap=1344 - 336, cmap="magma")
        row_axes[1].set_ylim(0, 4000)
        row_axes[1].set_ylabel("Hz")
        display(Audio(talk.audio, rate=talk.sample_rate))
    axes[1, 1].set_xlabel("seconds")
    fig.suptitle("A male and a female speaker: face and spectrogram\n(harmonics of f0, moving formants)")
    out.figure(fig, "world_speakers", caption="Two speakers of the synthetic world, one of each gender.")
    plt.show()

# %% [markdown]
# ## Talking heads among the pretraining clips
# AudioSet is full of speech, so a quarter of the `synth` pretraining clips of its second stage are
# talking heads (the first stage sees scenes only; `docs/world.md` gives the share's reasoning and the
# curriculum's): each a person of their own, never a speaker of the separation sets, written as the
# scenes are (same size, rates and length, off-screen sound and noise). The table counts the
# pretraining clips by kind at the largest share of any stage.

# %%
if settings.synthetic:
    from avlib.data.world import load_talkers
    from avlib.tasks.pretrain import scene_files_of

    pretraining = scene_files_of(settings, seed, data_root).counts()
    out.table(pretraining, "pretraining_clips", caption=(
        "Pretraining clips by kind: scenes and talking heads, for training (at the largest share of talking heads of any "
        "stage) and held out."))
    display(pretraining)
    if settings.pretrain.largest_talking_heads > 0:
        talkers = load_talkers(world["talkers"])
        talk = io.read_clip(world["talkers"] / talkers.iloc[0]["path"], 0.0, 3.0)
        fig, axes = plt.subplots(1, 4, figsize=(8, 2.4))
        for axis, index in zip(axes, np.linspace(0, talk.num_frames - 1, 4).astype(int)):
            axis.imshow(talk.frames[index])
            axis.set_title(f"{index / talk.fps:.2f} s")
            axis.axis("off")
        fig.suptitle("A talking head among the pretraining clips")
        out.figure(fig, "world_talkers", caption="A talking-head pretraining clip: its mouth opens with its own voice.")
        plt.show()
        display(Audio(talk.audio, rate=talk.sample_rate))
