"""What the notebooks show: the figures' page style, frames under the CAM overlay, PNG and WAV bytes for widgets,
labelled audio players, and the browser of saved maps (docs/paper.md §5).

Figures themselves are drawn in the notebooks; these are the pieces they call more than once. A figure is read on
the results page at about :data:`PAGE_WIDTH_PX` pixels wide, so :func:`use_page_style` sets a width and font sizes
that keep every text at least :data:`BODY_TEXT_PX` there, and :func:`text_px_on_page` measures it.
"""

from __future__ import annotations

from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

import numpy as np

from avlib import io
from avlib.config import PAPER_LO_FRACTION, PAPER_MAX_ALPHA
from avlib.localize import heat_overlay, to_frame

if TYPE_CHECKING:
    import ipywidgets
    from matplotlib.figure import Figure

    from avlib.localization import SceneEvaluation

#: the width a results page (GitHub's Markdown column) shows a figure at, and the size of its body text
PAGE_WIDTH_PX = 800
BODY_TEXT_PX = 14
#: figures this wide, with text this size, show it at 11 * 800 / (72 * 8) = 15.3 px on the page
FIGURE_WIDTH_IN = 8.0
FONT_PT = 11.0
PAGE_STYLE = {
    "figure.figsize": (FIGURE_WIDTH_IN, 3.6), "figure.constrained_layout.use": True, "font.size": FONT_PT,
    "axes.titlesize": "medium", "axes.labelsize": "medium", "xtick.labelsize": "medium", "ytick.labelsize": "medium",
    "legend.fontsize": "medium", "figure.titlesize": "large", "lines.linewidth": 1.6,
}


def use_page_style() -> None:
    """Set matplotlib's defaults to :data:`PAGE_STYLE` (call after importing pyplot, so that a notebook's inline
    backend does not set its own afterwards)."""
    import matplotlib

    matplotlib.rcParams.update(PAGE_STYLE)


def text_px_on_page(fig: Figure, dpi: float = 110, page_px: int = PAGE_WIDTH_PX) -> float:
    """The height in pixels of the smallest visible text of ``fig`` when its PNG (saved at ``dpi`` with a tight
    bounding box) is shown ``page_px`` wide, or at its own width if narrower; inf without text."""
    import matplotlib

    fig.draw_without_rendering()  # runs the layout engine, so that sizes are those of the saved figure
    renderer = fig.canvas.get_renderer()
    png_px = (fig.get_tightbbox(renderer).width + 2 * matplotlib.rcParams["savefig.pad_inches"]) * dpi
    scale = min(1.0, page_px / png_px)
    sizes = [text.get_fontsize() for text in fig.findobj(lambda artist: hasattr(artist, "get_fontsize")
                                                              and hasattr(artist, "get_text"))
             if text.get_visible() and text.get_text().strip() and text.get_window_extent(renderer).width > 0]
    return min(sizes) / 72 * dpi * scale if sizes else float("inf")


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


def listening_html(title: str, sounds: Mapping[str, np.ndarray], rate: int, normalize: bool = True) -> str:
    """HTML of a labelled listening table: ``title``, then one row per sound, its label beside a player.

    ``sounds`` maps each label to mono (N,) or multichannel (C, N) audio in [-1, 1] at ``rate`` Hz, embedded
    as 16-bit WAV. ``normalize``: each sound is scaled to a peak of 0.99 first (the title says so), as
    ``IPython.display.Audio(normalize=True)`` does; silence stays silent.
    """
    import base64
    import html

    if not sounds:
        raise ValueError(f"listening table {title!r}: no sounds to play")
    rows = []
    for label, audio in sounds.items():
        audio = np.asarray(audio, dtype=np.float64)
        audio = audio[None] if audio.ndim == 1 else audio
        if audio.ndim != 2 or not audio.size:
            raise ValueError(f"listening table {title!r}: {label!r} is not (N,) or (C, N) audio: shape {audio.shape}")
        peak = float(np.abs(audio).max())
        if normalize and peak > 0:
            audio = audio * (0.99 / peak)
        data = base64.b64encode(wav_bytes(audio, rate)).decode("ascii")
        rows.append(f"<tr><td style=\"text-align:left\">{html.escape(label)}</td><td><audio controls preload=\"none\" "
                    f"src=\"data:audio/wav;base64,{data}\"></audio></td></tr>")
    level = " (each scaled to the same peak level)" if normalize else ""
    return (f"<div><p><b>{html.escape(title)}</b>{level}</p><table>"
            + "".join(rows) + "</table></div>")


def play_labelled(title: str, sounds: Mapping[str, np.ndarray], rate: int, normalize: bool = True) -> None:
    """Show :func:`listening_html` in a notebook (one output: every player beside its label)."""
    from IPython.display import HTML, display

    display(HTML(listening_html(title, sounds, rate, normalize)))


def player(path: str | Path, label: str, kind: str = "video"):
    """A labelled HTML5 ``video`` or ``audio`` player with the file embedded, so the notebook stays self-contained."""
    import base64

    from IPython.display import HTML

    mime = {"video": "video/mp4", "audio": "audio/wav"}[kind]
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return HTML(f'<figure style="display:inline-block;margin:4px"><figcaption><b>{label}</b></figcaption>'
                f'<{kind} controls src="data:{mime};base64,{data}" style="max-width:420px"></{kind}></figure>')


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
