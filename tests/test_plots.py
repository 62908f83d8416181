"""The notebooks' display helpers: the page style, a frame by index, the overlay of a stored map, PNG and WAV bytes,
labelled listening tables, the browser."""

from __future__ import annotations

import base64
import json
import re
from io import BytesIO

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from media import decode_indices, make_video
from scipy.io import wavfile

from avlib.localization import SceneClip, SceneEvaluation
from avlib.localize import heat_overlay, to_frame
from avlib.plots import (
    BODY_TEXT_PX,
    PAGE_STYLE,
    frame_image,
    listening_html,
    png_bytes,
    scene_browser,
    scene_overlay,
    text_px_on_page,
    use_page_style,
    wav_bytes,
)
from avlib.report.results import ResultWriter

FPS = 25.0


@pytest.fixture
def evaluation(tmp_path) -> SceneEvaluation:
    """One 64 x 160 clip with a map for frames 3 and 17 that is hot in the bottom-right quarter only."""
    video = make_video(tmp_path / "clip.mp4", num_frames=30, fps=FPS, sample_rate=16000)
    maps = np.zeros((2, 8, 20), dtype=np.float32)
    maps[:, 4:, 10:] = 1.0
    saved = SceneEvaluation(pd.DataFrame())
    saved.clips = {"clip": SceneClip("clip", video, None)}
    saved.frame_index = {"clip": np.array([3, 17])}
    saved.maps = {"clip": {"hot corner": maps, "flat": np.zeros_like(maps)}}
    saved.scales = {"clip": {"hot corner": 1.0, "flat": 0.0}}
    return saved


def test_frame_image_is_the_indexed_frame_at_full_size(evaluation):
    video = evaluation.clips["clip"].video
    for index in (0, 7, 29):
        image = frame_image(video, index, FPS)
        assert image.shape == (64, 160, 3) and image.dtype == np.uint8
        assert decode_indices(image[None])[0] == index


def test_scene_overlay_draws_the_stored_map_of_that_frame(evaluation):
    drawn = scene_overlay(evaluation, "clip", 1, "hot corner", lo_fraction=0.5, max_alpha=0.35)
    image = frame_image(evaluation.clips["clip"].video, 17, FPS)
    expected = heat_overlay(image, to_frame(evaluation.maps["clip"]["hot corner"][1], 64, 160), 1.0, 0.5, 0.35)
    np.testing.assert_array_equal(drawn, expected)
    assert (drawn[:24, :70] == image[:24, :70]).all()  # cold: untouched
    assert np.abs(drawn[40:, 90:].astype(int) - image[40:, 90:]).max() > 20  # hot: coloured
    np.testing.assert_array_equal(scene_overlay(evaluation, "clip", 1, "flat"), image)  # scale 0 draws nothing


def test_png_bytes_decode_to_the_same_pixels():
    image = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    data = png_bytes(image)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    decoded = plt.imread(BytesIO(data), format="png")
    assert decoded.shape[:2] == (5, 7)
    np.testing.assert_array_equal(np.round(decoded[..., :3] * 255).astype(np.uint8), image)


def test_wav_bytes_are_16_bit_pcm_clipped_to_full_scale():
    audio = np.array([[0.0, 0.5, -0.5, 2.0], [1.0, -1.0, -3.0, 0.25]])
    rate, samples = wavfile.read(BytesIO(wav_bytes(audio, 22050)))
    assert rate == 22050 and samples.dtype == np.int16 and samples.shape == (4, 2)
    np.testing.assert_array_equal(samples.T, [[0, 16384, -16384, 32767], [32767, -32767, -32767, 8192]])


def test_scene_browser_shows_the_chosen_map_and_follows_the_controls(evaluation):
    pytest.importorskip("ipywidgets")
    browser = scene_browser(evaluation, "hot corner")
    _, method_choice = browser.children[0].children
    position, picture, caption, player = browser.children[1:]
    assert method_choice.value == "hot corner" and position.max == 1
    assert picture.value == png_bytes(scene_overlay(evaluation, "clip", 0, "hot corner"))
    assert caption.value == "clip, frame 3 (0.12 s), hot corner"
    position.value = 1
    assert caption.value == "clip, frame 17 (0.68 s), hot corner"
    method_choice.value = "flat"
    assert picture.value == png_bytes(frame_image(evaluation.clips["clip"].video, 17, FPS))
    rate, sound = wavfile.read(BytesIO(player.value))
    assert rate == 22050 and sound.shape[1] == 2 and len(sound) > 0.9 * 22050


def _labelled_figure(**subplots):
    fig, axis = plt.subplots(**subplots)
    axis.plot([0, 1], [1, 0], label="a curve")
    axis.set_title("a title")
    axis.set_xlabel("step")
    axis.legend()
    return fig, axis


def test_page_style_keeps_every_text_at_body_size_and_the_writer_records_it(tmp_path):
    with matplotlib.rc_context():
        use_page_style()
        assert matplotlib.rcParams["font.size"] == PAGE_STYLE["font.size"]
        fig, _ = _labelled_figure()
        assert BODY_TEXT_PX <= text_px_on_page(fig) < 2 * BODY_TEXT_PX
        writer = ResultWriter(profile="smoke", seed=0, notebook="00_data", root=tmp_path)
        path = writer.figure(fig, "readable")
        sidecar = json.loads(path.with_name("readable.provenance.json").read_text())
        assert sidecar["text_px_on_page"] >= BODY_TEXT_PX
        plt.close(fig)

        wide, axis = _labelled_figure(figsize=(16, 3))  # the old world_actions: 16 in wide, 6 pt titles
        axis.set_title("tiny", fontsize=6)
        assert text_px_on_page(wide) < 0.5 * BODY_TEXT_PX
        with pytest.warns(UserWarning, match="figure 'tiny'.*under the page's 14 px"):
            writer.figure(wide, "tiny")
        assert json.loads((tmp_path / "smoke" / "figures" / "tiny.provenance.json").read_text())["text_px_on_page"] < 7
        plt.close(wide)


def _players(html: str) -> list[tuple[str, int, np.ndarray]]:
    found = re.findall(r'<td style="text-align:left">(.*?)</td><td><audio controls preload="none" '
                       r'src="data:audio/wav;base64,([A-Za-z0-9+/=]+)"></audio></td>', html)
    players = []
    for label, data in found:
        rate, samples = wavfile.read(BytesIO(base64.b64decode(data)))
        players.append((label, rate, samples))
    return players


def test_listening_html_labels_every_player_and_normalises_each_sound():
    ramp = np.linspace(-0.25, 0.5, 1000)
    html = listening_html("Test pair 3: <m> & <f>", {"mixture (the input)": ramp, "u-net PIT | on-screen": 0.0 * ramp,
                                                       "stereo truth": np.stack([ramp, -ramp])}, 8000)
    assert "<b>Test pair 3: &lt;m&gt; &amp; &lt;f&gt;</b> (each scaled to the same peak level)" in html
    players = _players(html)
    assert [label for label, _, _ in players] == ["mixture (the input)", "u-net PIT | on-screen", "stereo truth"]
    assert all(rate == 8000 for _, rate, _ in players)
    mixture, silent, stereo = (samples for _, _, samples in players)
    assert mixture.shape == (1000,) and mixture.max() == round(0.99 * 32767) and mixture.min() == round(-0.495 * 32767)
    assert not silent.any()  # silence stays silent
    assert stereo.shape == (1000, 2) and stereo[:, 0].max() == round(0.99 * 32767)
    raw = _players(listening_html("as recorded", {"quiet": 0.1 * ramp}, 8000, normalize=False))
    assert raw[0][2].max() == round(0.05 * 32767)
    with pytest.raises(ValueError, match="'broken'.*shape"):
        listening_html("pair", {"broken": np.zeros((1, 2, 3))}, 8000)
    with pytest.raises(ValueError, match="no sounds"):
        listening_html("pair", {}, 8000)


def test_player_embeds_the_file_under_its_label(tmp_path):
    import base64

    from avlib.plots import player

    path = tmp_path / "clip.wav"
    path.write_bytes(b"RIFF-not-really-a-wav")
    html = player(path, "on-screen <b>", kind="audio").data
    assert "<figcaption><b>on-screen <b></b></figcaption>" in html
    assert f'src="data:audio/wav;base64,{base64.b64encode(path.read_bytes()).decode()}"' in html
    assert html.count("<audio controls") == 1
    with pytest.raises(KeyError):
        player(path, "x", kind="image")
