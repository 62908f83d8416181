# ---
# jupyter:
#   jupytext:
#     formats: py:percent
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
# This notebook reads such a window with `avlib.io.read_clip` from a real video file and shows
# the frames, the waveform, the spectrogram, the sound, and the aligned vs shifted audio.

# %% tags=["parameters"]
profile = "synth"
seed = 0
data_root = ""
device = "auto"
results_root = "../results"

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Audio, display

from avlib import io
from avlib.data.demo import bouncing_ball_video
from avlib.results import ResultWriter

out = ResultWriter(profile=profile, seed=seed, device="cpu", notebook="00_data", root=results_root)
work = Path(results_root).parent / "data" / profile / "00_data"  # ignored by git
rng = np.random.default_rng(seed)

# %% [markdown]
# ## A video to read
# A ball bounces in a box; every bounce makes a click (the sound is caused by what is seen).
# The file is a real H.264 + AAC mp4 at 25 fps and 44.1 kHz, so the reader must convert the
# frame rate (25 → 29.97) by timestamp and resample the audio (44.1 → 21 kHz).

# %%
video_seconds = 10.1 if profile != "smoke" else 6.0
source, bounce_times = bouncing_ball_video(work / "bouncing_ball.mp4", seconds=video_seconds, seed=seed)
info = io.probe(source)
info

# %% [markdown]
# ## The paper's window
# `read_clip(path, start, 4.2, size=256, crop=224)`: squash to 256 × 256 (as the official
# demo's `ffmpeg -vf scale=256:256`), centre crop 224, 29.97 fps, 21 kHz stereo.

# %%
duration = io.PAPER_DURATION if profile != "smoke" else 2.0
start = 0.5
clip = io.read_clip(source, start, duration, size=256, crop=224)
print(f"frames {clip.frames.shape} {clip.frames.dtype}, audio {clip.audio.shape} {clip.audio.dtype} "
      f"at {clip.sample_rate} Hz, {clip.duration:.3f} s")

# %%
columns = 8
picks = np.linspace(0, clip.num_frames - 1, columns).astype(int)
fig, axes = plt.subplots(1, columns, figsize=(2 * columns, 2.3))
for axis, index in zip(axes, picks):
    axis.imshow(clip.frames[index])
    axis.set_title(f"frame {index}\n{start + index / clip.fps:.2f} s", fontsize=8)
    axis.axis("off")
fig.suptitle("Frames the network sees (every ~0.5 s of the window)")
out.figure(fig, "frames", caption="Frames of one window, squashed to 256 and centre-cropped to 224.")
plt.show()

# %%
time_axis = start + np.arange(clip.audio.shape[1]) / clip.sample_rate
window_bounces = [t for t in bounce_times if start <= t < start + clip.duration]
fig, (wave_axis, spec_axis) = plt.subplots(2, 1, figsize=(12, 5), sharex=True)
wave_axis.plot(time_axis, clip.audio[0], lw=0.5, label="left")
wave_axis.plot(time_axis, clip.audio[1], lw=0.5, alpha=0.7, label="right")
for bounce in window_bounces:
    wave_axis.axvline(bounce, color="k", ls=":", lw=0.8)
wave_axis.set_ylabel("amplitude")
wave_axis.legend(loc="upper right")
wave_axis.set_title("Waveform (dotted: the bounces seen in the frames)")
spec_axis.specgram(clip.audio.mean(axis=0), NFFT=1344, Fs=clip.sample_rate, noverlap=1344 - 336, cmap="magma",
                   xextent=(start, start + clip.duration))
spec_axis.set_ylabel("Hz")
spec_axis.set_xlabel("seconds into the video")
spec_axis.set_title("Spectrogram (64 ms Hann frames, 16 ms hop: the separation model's STFT)")
out.figure(fig, "waveform_spectrogram", caption="Waveform and spectrogram of the window; bounces marked.")
plt.show()
display(Audio(clip.audio, rate=clip.sample_rate))

# %% [markdown]
# ## Aligned vs shifted audio
# The negative example pairs these frames with audio from **another window of the same
# video**, shifted by 2.0–5.8 s in the paper (smaller here if the video is short). Its clicks no
# longer fall on the bounces.

# %%
latest_start = info.usable_duration - clip.duration
shifts = [s for s in np.arange(-5.8, 5.81, 0.1) if abs(s) >= 2.0 and 0 <= start + s <= latest_start]
shift = float(rng.choice(shifts)) if shifts else clip.duration
shifted = io.read_clip(source, start + shift, duration)
fig, axes = plt.subplots(2, 1, figsize=(12, 4), sharex=True)
for axis, audio, title in ((axes[0], clip.audio, "aligned"), (axes[1], shifted.audio, f"shifted by {shift:+.1f} s")):
    axis.plot(time_axis, audio.mean(axis=0), lw=0.5)
    for bounce in window_bounces:
        axis.axvline(bounce, color="r", ls=":", lw=0.8)
    axis.set_title(f"{title} audio with the frames' bounces (red)")
axes[1].set_xlabel("seconds (frames' clock)")
out.figure(fig, "aligned_vs_shifted", caption="The alignment task: the same frames with their own and with shifted audio.")
plt.show()
display(Audio(shifted.audio, rate=shifted.sample_rate))
