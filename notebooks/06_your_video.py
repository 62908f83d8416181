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
# # 06 · Your own video: where the sound comes from, and what is said on and off screen
#
# Two uses of the multisensory network on any video with sound: the **class activation map** overlay
# (paper section 5, `avlib.localize`) and the **on/off-screen separation** (paper section 7, `avlib.separate`).
#
# Which networks: the authors' own trained TensorFlow networks, imported into avlib (docs/weights.md:
# `download_models.sh` of andrewowens/multisensory, then
# `python -m avlib.weights import-official nets/cam/net.tf-675000 --model cam --out weights/cam.pt` and
# `... nets/sep/full/net.tf-160000 --model sep-full --out weights/sep-full.pt`), when the `weights` folder holds
# them. Otherwise this profile's own networks (notebooks 02 and 04), which have only seen the synthetic world
# in the smoke and synth profiles and mean little on a real video. The table below says which were used.
#
# The video: the `video` parameter, or (interactively, with ipywidgets) a file you upload below; by default a
# held-out synthetic scene clip (synthetic profiles) or the first AudioSet test video under `data_root` (paper).

# %% tags=["parameters"]
profile = "synth"
seed = 0
data_root = ""
device = "auto"
results_root = "../results"
checkpoint_root = ""  # default: the checkout's ignored checkpoints/ folder
overrides = {}  # config keys to change (avlib.config)
video = ""  # path of your video; empty: a held-out clip (see above)
weights = ""  # folder with imported official networks (cam.pt or shift.pt, sep-full.pt); default: the checkout's weights/

# %%
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from IPython.display import Audio, display

from avlib import io
from avlib.config import resolve
from avlib.localize import localize
from avlib.plots import player
from avlib.report.results import ResultWriter
from avlib.separate import separate
from avlib.weights import REGISTRY, find_imported

experiment = resolve(profile, overrides)
device_name = "cuda" if device in ("cuda", "auto") and torch.cuda.is_available() else "cpu"
out = ResultWriter(profile=profile, seed=seed, device=device_name, notebook="06_your_video", root=results_root,
                   config=experiment.to_dict())
work = Path(results_root).parent / "data" / profile / "06_your_video"  # ignored by git, kept between runs
work.mkdir(parents=True, exist_ok=True)
weights_dir = Path(weights) if weights else Path(results_root).resolve().parent / "weights"

# %% [markdown]
# ## The networks
# The official CAM network (`cam.pt`, else the features network `shift.pt` with conv5_1's stride removed) and the
# official separation model (`sep-full.pt`) are used when imported; each missing one is replaced by this profile's
# (the CAM network of notebook 02, `avlib.tasks.cam.cam_checkpoint`; the full separation model of notebook 04,
# `<checkpoints>/<profile>/separation/full/checkpoint.pt`), trained here if it is not there yet.

# %%
official_cam = find_imported(weights_dir, "cam") or find_imported(weights_dir, "shift")
official_sep = find_imported(weights_dir, "sep-full")
if official_cam is not None:
    cam_checkpoint_path, cam_source = official_cam, f"official {official_cam.stem} network ({REGISTRY[official_cam.stem].prefix})"
    cam_inputs = {}  # the input settings stored with the imported network (the paper's)
else:
    from avlib.tasks.cam import cam_checkpoint, cam_shift

    cam_checkpoint_path = cam_checkpoint(experiment, seed, data_root=data_root, checkpoint_root=checkpoint_root or None,
                                         device=device)
    cam_source = f"the {profile} profile's CAM network (notebook 02), not the official one"
    cam_inputs = {"shift": cam_shift(experiment), "settings": experiment.cam}  # the frame size it was fine-tuned at
if official_sep is not None:
    sep_checkpoint_path, sep_source = official_sep, f"official sep-full network ({REGISTRY['sep-full'].prefix})"
else:
    sep_checkpoint_path = experiment.checkpoint_dir(checkpoint_root or None) / "separation" / "full" / "checkpoint.pt"
    if not sep_checkpoint_path.exists():
        from avlib.tasks.separation import run as run_separation

        sep_checkpoint_path = run_separation(experiment, seed=seed, data_root=data_root,
                                             checkpoint_root=checkpoint_root or None, device=device,
                                             progress=False).full_checkpoint
    sep_source = f"the {profile} profile's full separation model (notebook 04), not the official one"
networks = pd.DataFrame([{"task": "sound-source map (CAM)", "network": cam_source, "file": cam_checkpoint_path.name},
                         {"task": "on/off-screen separation", "network": sep_source, "file": sep_checkpoint_path.name}])
out.table(networks, "networks_used", caption=f"The networks this run of notebook 06 used (weights folder: "
          f"{'found' if official_cam or official_sep else 'no imported official networks'}).")
print("Networks used:")
for row in networks.itertuples():
    print(f"  {row.task}: {row.network}")

# %% [markdown]
# ## The video
# Interactively, upload a video with the chooser below (ipywidgets) and run on from the next cell; headless runs
# (`./reproduce.sh`) use the `video` parameter or the default clip.

# %%
if video:
    video_path = Path(video)
elif experiment.synthetic:
    from avlib.tasks.cam import held_out_scenes

    video_path = held_out_scenes(experiment, seed, limit=1)[0].video
else:
    candidates = sorted((Path(data_root) / "audioset" / "test").rglob("*.mp4"))
    if not candidates:
        raise FileNotFoundError(f"no video: set the video parameter (no AudioSet test videos under {data_root!r})")
    video_path = candidates[0]
try:
    import ipywidgets as widgets
except ImportError:
    widgets = None
chooser = None
if widgets is not None:
    chooser = widgets.FileUpload(accept="video/*", multiple=False, description="your video")
    display(widgets.VBox([widgets.Label(f"Upload a video to use it instead of {video_path.name}:"), chooser]))
else:
    print(f"ipywidgets is not installed: set the video parameter to choose a video (now {video_path.name})")

# %%
uploaded = chooser.value if chooser is not None else ()
if uploaded:  # ipywidgets 8: a tuple of dicts; 7: a dict by file name
    item = uploaded[0] if isinstance(uploaded, (list, tuple)) else [{"name": k, **v} for k, v in uploaded.items()][0]
    video_path = work / Path(item["name"]).name
    video_path.write_bytes(bytes(item["content"]))
info = io.probe(video_path)
print(f"{video_path.name}: {info.width} x {info.height}, {info.fps:.2f} fps, {info.usable_duration:.2f} s, "
      f"sound: {'yes' if info.has_audio else 'no'}")


display(player(video_path, f"input: {video_path.name}"))

# %% [markdown]
# ## Where the sound comes from: the CAM overlay
# `localize` slides the network's window over the video, tiles each frame into its crops and maps back; the
# overlay is the official one (|CAM|, 97th-percentile scale, jet, alpha at most 0.35).

# %%
localized = localize(video_path, cam_checkpoint_path, work / "cam_overlay.mp4", device=device_name, **cam_inputs)
overlay = out.media(localized.out, "your_video_cam_overlay.mp4", caption=f"CAM overlay of {video_path.name} by {cam_source}")
display(player(overlay, f"CAM overlay ({cam_source})"))
print(f"maps: {localized.maps.shape[0]} frames of {localized.maps.shape[1]} x {localized.maps.shape[2]}, "
      f"overlay scale {localized.scale:.3g}")

# %% [markdown]
# ## What is said on and off screen: the separation
# `separate` splits the sound into the on-screen and the off-screen part, in windows of half overlap over the
# whole video, and writes each with the video's frames.

# %%
separated = separate(video_path, sep_checkpoint_path, work / "separated", device=device_name)
players = []
for name, label in (("on_screen", "on-screen sound"), ("off_screen", "off-screen sound")):
    kept = out.media(separated.files[f"{name}.mp4"], f"your_video_{name}.mp4",
                     caption=f"{label} of {video_path.name} by {sep_source}")
    players.append(player(kept, f"{label} ({sep_source})"))
display(*players)
for sound, label in ((separated.mixture, "mixture"), (separated.on_screen, "on-screen"), (separated.off_screen, "off-screen")):
    print(label)
    display(Audio(sound, rate=separated.sample_rate, normalize=True))
summary = pd.DataFrame([{"video": video_path.name, "seconds": info.usable_duration, "sample rate": separated.sample_rate,
                         "windows": separated.windows, "NaN": bool(np.isnan(separated.on_screen).any()
                                                                    or np.isnan(separated.off_screen).any()),
                         "residual ||on+off-mix|| / ||mix||": separated.residual}])
out.table(summary, "your_video_separation", caption=f"separate() on {video_path.name} with {sep_source}.")
summary
