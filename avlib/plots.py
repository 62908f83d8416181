"""What the notebooks show: frames under the CAM overlay, PNG and WAV bytes for widgets, and the browser
of saved maps (docs/paper.md §5).

Figures themselves are drawn in the notebooks; these are the pieces they call more than once.
"""

from __future__ import annotations

from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from avlib import io
from avlib.config import PAPER_LO_FRACTION, PAPER_MAX_ALPHA
from avlib.localize import heat_overlay, to_frame

if TYPE_CHECKING:
    import ipywidgets

    from avlib.localization import SceneEvaluation


def frame_image(video: str | Path, index: int, fps: float) -> np.ndarray:
    """Frame ``index`` (at ``fps``) of a video at its own resolution: (H, W, 3) uint8."""
    return io.read_clip(video, index / fps, fps=fps, num_frames=1, missing_audio="silence").frames[0]


def scene_overlay(evaluation: SceneEvaluation, clip: str, position: int, method: str,
                  lo_fraction: float = PAPER_LO_FRACTION, max_alpha: float = PAPER_MAX_ALPHA) -> np.ndarray:
    """The ``position``-th scored frame of ``clip`` under ``method``'s stored map, drawn with the official
    overlay at the clip's own scale: (H, W, 3) uint8 at the video's resolution."""
    scene = evaluation.clips[clip]
    fps = io.probe(scene.video).fps
    image = frame_image(scene.video, int(evaluation.frame_index[clip][position]), fps)
    score_map = to_frame(evaluation.maps[clip][method][position], *image.shape[:2])
    return heat_overlay(image, score_map, evaluation.scales[clip][method], lo_fraction, max_alpha)


def png_bytes(image: np.ndarray) -> bytes:
    """An (H, W, 3) uint8 image as PNG bytes (for an image widget)."""
    import matplotlib.pyplot as plt

    buffer = BytesIO()
    plt.imsave(buffer, image, format="png")
    return buffer.getvalue()


def wav_bytes(audio: np.ndarray, rate: int) -> bytes:
    """Audio (C, N) in [-1, 1] as 16-bit PCM WAV bytes at ``rate`` Hz; values outside [-1, 1] are clipped."""
    from scipy.io import wavfile

    buffer = BytesIO()
    wavfile.write(buffer, rate, np.round(np.clip(audio, -1, 1).T * 32767).astype(np.int16))
    return buffer.getvalue()


def scene_browser(saved: SceneEvaluation, method: str, lo_fraction: float = PAPER_LO_FRACTION,
                  max_alpha: float = PAPER_MAX_ALPHA) -> ipywidgets.Widget:
    """Clip, map and frame pickers over saved maps, the chosen frame under its overlay, and the clip's
    sound in a player; ``method`` is the map shown first.

    Image and Audio widgets only: an Output widget's capture can hang a headless run.
    """
    import ipywidgets as widgets

    clip_choice = widgets.Dropdown(options=sorted(saved.clips), description="clip")
    method_choice = widgets.Dropdown(options=saved.methods, value=method, description="map")
    position = widgets.IntSlider(min=0, max=len(saved.frame_index[clip_choice.value]) - 1, description="frame")
    picture, caption = widgets.Image(format="png", width=320), widgets.Label()
    player = widgets.Audio(format="wav", autoplay=False, loop=False)

    def draw(*_):
        clip, shown = clip_choice.value, method_choice.value
        scene = saved.clips[clip]
        position.max = len(saved.frame_index[clip]) - 1
        fps = io.probe(scene.video).fps
        frame = int(saved.frame_index[clip][position.value])
        picture.value = png_bytes(scene_overlay(saved, clip, position.value, shown, lo_fraction, max_alpha))
        caption.value = f"{clip}, frame {frame} ({frame / fps:.2f} s), {shown}"

    def load_sound(*_):
        scene = saved.clips[clip_choice.value]
        seconds = io.probe(scene.video).usable_duration - 0.05
        player.value = wav_bytes(io.read_audio(scene.video, 0.0, int(seconds * 22050), sample_rate=22050), 22050)

    for control in (clip_choice, method_choice, position):
        control.observe(draw, names="value")
    clip_choice.observe(load_sound, names="value")
    draw()
    load_sound()
    return widgets.VBox([widgets.HBox([clip_choice, method_choice]), position, picture, caption, player])
