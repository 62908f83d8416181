"""The CAM of any video: tiling and windows, the overlay, localize and its command line on real containers
(720p 5.1, QCIF mono, no audio)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from av.video.reformatter import Colorspace, VideoReformatter
from matplotlib import colormaps
from media import click_track, frame_stamps, make_video, onsets

from avlib import io
from avlib.checkpoint import save_checkpoint
from avlib.config import CamSettings
from avlib.data.shift import ShiftConfig
from avlib.localize import (
    MapTrack,
    PlaneBlend,
    TiledCam,
    heat_overlay,
    localize,
    main,
    map_video,
    overlay_scale,
    pick_device,
    step_times,
    tile_offsets,
    to_frame,
    window_starts,
    write_overlay,
    yuv_planes,
)
from avlib.models.multisensory import MultisensoryConfig, MultisensoryNet
from avlib.writer import VideoSink, write_video

#: A small network input: 1.0 s windows at 10 fps, frames resized to a 40-pixel short side, 32-pixel tiles.
SHIFT = ShiftConfig(window=1.0, fps=10.0, sample_rate=8000, min_shift=0.4, max_shift=0.9, size=40, crop=32)
SETTINGS = CamSettings(fine_tune_steps=0, fine_tune_batch=1, map_stride=4)


def test_tile_offsets_and_windows_cover_everything():
    assert tile_offsets(32, 32) == [0]
    assert tile_offsets(40, 32) == [0, 8]
    offsets = tile_offsets(71, 32)
    assert offsets[0] == 0 and offsets[-1] == 71 - 32 and all(b - a <= 32 for a, b in zip(offsets, offsets[1:]))
    with pytest.raises(ValueError):
        tile_offsets(20, 32)
    assert window_starts(7, 10, 0.5) == [0]
    assert window_starts(25, 10, 0.5) == [0, 5, 10, 15]
    assert window_starts(26, 10, 0.5) == [0, 5, 10, 15, 16]
    np.testing.assert_allclose(step_times(8, 2, 4.0), [(2 - 0.5) / 4, (6 - 0.5) / 4])


def test_map_track_interpolates_in_time_and_averages_windows():
    ones = np.ones((1, 2, 2), dtype=np.float32)
    track = MapTrack(spans=[(0.0, 1.0), (0.5, 1.5)],
                     times=[np.array([0.25, 0.75]), np.array([1.0])],
                     maps=[np.concatenate([0 * ones, 4 * ones]), 10 * ones])
    assert track.at(0.0)[0, 0] == 0.0  # before the first step: held
    assert track.at(0.375)[0, 0] == pytest.approx(1.0)  # a quarter of the way between the steps of window 0
    assert track.at(0.9)[0, 0] == pytest.approx((4.0 + 10.0) / 2)  # two windows cover it
    assert track.at(3.0)[0, 0] == 10.0  # past every window: the nearest one
    assert track.at_times([0.0, 0.5]).shape == (2, 2, 2)


def red_cam(frames: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
    """A stand-in network whose CAM is the redness of the picture, pooled by 8 in space and time."""
    redness = (frames[:, 0] - frames[:, 1:].mean(dim=1))[:, None]  # (B, 1, T, S, S)
    return F.avg_pool3d(redness, (min(8, frames.shape[2]), 8, 8), ceil_mode=True)[:, 0]


@pytest.mark.parametrize("height, width", [(96, 240), (240, 96), (64, 64)])
def test_tiled_map_lands_on_the_red_square_in_any_aspect_ratio(tmp_path, height, width):
    # a red square near the far corner: a map stuck to one side, or mis-scaled, misses it
    frames = np.full((20, height, width, 3), 110, dtype=np.uint8)
    top, left, side = height - 34, width - 38, 24
    frames[:, top : top + side, left : left + side] = (230, 20, 20)
    audio = 0.1 * np.random.default_rng(0).standard_normal((2, 16000)).astype(np.float32)
    video = write_video(tmp_path / "square.mp4", frames, 10.0, audio, 8000)
    sources = [TiledCam(red_cam, SHIFT.crop, "tiles"), TiledCam(red_cam, SHIFT.crop, "whole", whole_frame=True)]
    tracks = map_video(video, sources, SHIFT, SETTINGS)
    for name in ("tiles", "whole"):
        score_map = to_frame(tracks[name].at(0.95), height, width)
        y, x = np.unravel_index(np.argmax(score_map), score_map.shape)
        assert top <= y < top + side and left <= x < left + side, name


def test_heat_overlay_is_the_official_blend():
    frame = np.full((4, 4, 3), 100, dtype=np.uint8)
    cam = np.zeros((4, 4), dtype=np.float32)
    cam[0, 0] = 10.0  # at max_val: alpha 0.35, the top jet colour (dark red)
    cam[1, 1] = 4.0  # below lo = 5: untouched
    out = heat_overlay(frame, cam, max_val=10.0)
    assert (out[1, 1] == 100).all() and (out[3, 3] == 100).all()
    np.testing.assert_allclose(out[0, 0], np.round(100 * 0.65 + np.array([127.5, 0, 0]) * 0.35), atol=1)
    assert overlay_scale(np.full(50, 3.0)) == 0.0  # a video whose map is flat draws nothing
    assert (heat_overlay(frame, cam, max_val=0.0) == frame).all()
    assert overlay_scale(np.arange(101.0)) == pytest.approx(97.0)


def tiny_checkpoint(path: Path) -> Path:
    torch.manual_seed(0)
    model = MultisensoryNet(MultisensoryConfig(width=4, num_frames=SHIFT.num_frames, frame_size=SHIFT.crop,
                                               num_samples=SHIFT.num_samples))
    save_checkpoint(path, model=model, step=0,
                    config={"run": {"pretrain": {"shift": asdict(SHIFT)}, "profile": "smoke"}})
    return path


@pytest.mark.parametrize("height, width, channels, sample_rate, fps, num_frames", [
    (720, 1280, 6, 48000, 25.0, 25),  # HD, H.264, 5.1
    (144, 176, 1, 16000, 30.0, 50),  # QCIF, mono
])
def test_localize_writes_overlay_with_duration_and_sound(tmp_path, height, width, channels, sample_rate, fps, num_frames):
    source = make_video(tmp_path / "in.mp4", num_frames=num_frames, fps=fps, height=height, width=width,
                        channels=channels, sample_rate=sample_rate, click_frames=(5, 20))
    result = localize(source, tiny_checkpoint(tmp_path / "net.pt"), tmp_path / "out.mp4")
    before, after = io.probe(source), io.probe(tmp_path / "out.mp4")
    assert abs(after.duration - before.duration) <= 1 / before.fps
    assert (after.width, after.height) == (width, height) and after.fps == pytest.approx(before.fps)
    assert after.has_audio and after.channels == channels and after.sample_rate == sample_rate
    assert result.maps.shape[0] == before.num_frames and np.isfinite(result.maps).all()
    assert result.frame_map(0).shape == (height, width)
    # the clicks are where they were
    heard = onsets(io.read_audio(tmp_path / "out.mp4", 0.0, int(0.9 * num_frames / fps * 8000), sample_rate=8000), 8000)
    np.testing.assert_allclose(heard, [5 / fps, 20 / fps], atol=0.005)


def test_short_clip_and_command_line(tmp_path, capsys):
    source = make_video(tmp_path / "short.mp4", num_frames=8, fps=25.0, height=48, width=64, channels=2,
                        sample_rate=16000)  # 0.32 s: shorter than one 1 s window
    code = main([str(source), "--checkpoint", str(tiny_checkpoint(tmp_path / "net.pt")), "--out",
                 str(tmp_path / "short_cam.mp4"), "--maps", str(tmp_path / "maps.npz"), "--device", "cpu"])
    assert code == 0 and "wrote" in capsys.readouterr().out
    assert abs(io.probe(tmp_path / "short_cam.mp4").duration - io.probe(source).duration) <= 1 / 25
    with np.load(tmp_path / "maps.npz") as saved:
        assert saved["maps"].shape[0] == 8 and np.isfinite(saved["maps"]).all()
        without_video = localize(source, tmp_path / "net.pt")  # maps only, at every frame's time
        np.testing.assert_allclose(without_video.maps, saved["maps"], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(without_video.times, np.arange(8) / 25, atol=1e-6)
        # maps already made (notebook 02's evaluation) are drawn as they are, the same as mapping again
        reused = localize(source, tmp_path / "net.pt", tmp_path / "reused.mp4", track=without_video.track)
        assert reused.track is without_video.track and reused.scale == without_video.scale
        np.testing.assert_array_equal(reused.maps, without_video.maps)
        assert io.probe(tmp_path / "reused.mp4").num_frames == 8
    # the maps alone, without paying for the video; a missing folder is named, and made only with --mkdir
    maps_only = tmp_path / "new" / "maps.npz"
    assert main([str(source), "--checkpoint", str(tmp_path / "net.pt"), "--maps", str(maps_only)]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and str(tmp_path / "new") in error[0] and "--mkdir" in error[0]
    assert main([str(source), "--checkpoint", str(tmp_path / "net.pt"), "--maps", str(maps_only), "--mkdir"]) == 0
    assert sorted(path.name for path in (tmp_path / "new").iterdir()) == ["maps.npz"]
    with np.load(maps_only) as saved:
        np.testing.assert_array_equal(saved["maps"], without_video.maps)
    with pytest.raises(SystemExit):  # nothing to write
        main([str(source), "--checkpoint", str(tmp_path / "net.pt")])


def test_overlay_keeps_every_frame_and_its_time(tmp_path):
    # 29.97 fps with frame 20 dropped: every frame keeps its own timestamp, so the gap stays
    times = np.delete(np.arange(40), 20) * 1001 / 30000
    source = tmp_path / "in.mp4"
    with VideoSink(source, 64, 48, 30000 / 1001, sample_rate=16000) as sink:
        sink.sound(0.1 * np.random.default_rng(1).standard_normal((2, 16000 * 2)).astype(np.float32))
        for time in times:
            sink.picture(np.full((48, 64, 3), 90, dtype=np.uint8), time)
    np.testing.assert_allclose(frame_stamps(source), times, atol=1e-4)
    result = localize(source, tiny_checkpoint(tmp_path / "net.pt"), tmp_path / "out.mp4")
    np.testing.assert_allclose(frame_stamps(tmp_path / "out.mp4"), times, atol=1e-4)
    np.testing.assert_allclose(result.times, times, atol=1e-4)


def test_a_constant_map_through_the_tiles_gives_a_constant_overlay(tmp_path):
    """Tiling, overlap averaging, resizing and the blend add no pattern of their own (no band at a tile seam)."""

    def flat_cam(frames: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        # the same value everywhere in a step, rising over time (so the overlay's scale is not 0)
        steps = max(1, frames.shape[2] // 4)
        level = torch.arange(steps, dtype=torch.float32) + 1.0 + audio.abs().mean()
        return level[None, :, None, None].expand(frames.shape[0], steps, 5, 5)

    for height, width in ((96, 240), (240, 96), (60, 130)):  # 2 to 7 tiles across, uneven overlaps
        frames = np.full((30, height, width, 3), 110, dtype=np.uint8)
        audio = 0.1 * np.random.default_rng(0).standard_normal((2, 24000)).astype(np.float32)
        video = write_video(tmp_path / f"flat{height}.mp4", frames, 10.0, audio, 8000)
        track = map_video(video, [TiledCam(flat_cam, SHIFT.crop, "flat", tile_batch=3)], SHIFT, SETTINGS)["flat"]
        scale = overlay_scale(track.values())
        assert scale > 0
        for time in (0.0, 1.2, 2.9):
            cam = to_frame(track.at(time), height, width)
            assert np.ptp(cam) < 1e-5 * np.abs(cam).max(), (height, width, time)
            drawn = heat_overlay(frames[0], cam, scale)
            assert (drawn == drawn[0, 0]).all(), (height, width, time)
            planes = [np.full((height // k, width // k), value, dtype=np.uint8) for k, value in ((1, 120), (2, 100), (2, 160))]
            PlaneBlend(scale)(*planes, track.at(time))  # the overlay writer's blend
            assert all((plane == plane[0, 0]).all() for plane in planes), (height, width, time)


def as_yuv420p(image: np.ndarray) -> list[np.ndarray]:
    """An RGB frame converted to yuv420p planes as x264 is handed it (PyAV's default conversion, BT.601)."""
    import av

    stacked = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p").to_ndarray().astype(int)
    height, width = image.shape[:2]
    chroma = stacked[height:].ravel()
    return [stacked[:height], chroma[: chroma.size // 2].reshape(height // 2, width // 2),
            chroma[chroma.size // 2 :].reshape(height // 2, width // 2)]


#: BT.601 studio swing, R'G'B' in 0..255 -> Y', Cb, Cr (ITU-R BT.601), written out here to check the writer's own table
BT601 = np.array([[65.481, 128.553, 24.966], [-37.797, -74.203, 112.0], [112.0, -93.786, -18.214]]) / 255


@pytest.mark.parametrize("height, width, cells", [(360, 640, (45, 80)), (96, 130, (13, 17))])
def test_the_writers_plane_blend_is_the_official_blend_within_its_tolerance(tmp_path, height, width, cells):
    """The writer blends the decoder's yuv420p planes; the official blend draws on RGB, which the writer before then
    converted to yuv420p for x264. Against the official blend exactly (unrounded, BT.601, Cb and Cr the mean of 2 x 2
    pixels) the change drawn is within 1.5 in 255; against the writer before's planes (swscale's conversion), within 2
    for Y' and 10 for Cb and Cr (swscale filters chroma over more than 2 x 2 pixels: this map's sharp steps show it),
    beside what that writer's round trip through RGB alone changed."""
    import av

    rng = np.random.default_rng(3)
    texture = F.interpolate(torch.from_numpy(rng.random((4, 3, height // 8, width // 8), dtype=np.float32)), size=(height, width),
                            mode="bilinear", align_corners=False)  # smooth colours, and every frame a different picture
    frames = (texture.permute(0, 2, 3, 1).numpy() * 255).astype(np.uint8)
    video = write_video(tmp_path / "texture.mp4", frames, 10.0)
    cam = np.zeros(cells, dtype=np.float32)
    cam[2:10, 3:12] = rng.random((8, 9)) * 4  # a hot patch of sharp steps: the rest of the frame must stay untouched
    scale = float(cam.max())
    blend, scaler = PlaneBlend(scale), VideoReformatter()
    with av.open(str(video)) as source:
        decoded = list(source.decode(video=0))
    assert len(decoded) == len(frames)
    level = np.clip((to_frame(cam, height, width) - 0.5 * scale) / (scale + 1e-3 - 0.5 * scale), 0, 1)[..., None]
    colour = (colormaps["jet"](np.arange(256) / 255)[:, :3] * 255)[(level[..., 0] * 255 + 0.5).astype(int)]
    change, exact, trip = [[], [], []], [], []
    for frame in decoded:
        image = frame.to_ndarray(format="rgb24")
        planes = [plane.astype(int) for plane in yuv_planes(frame, scaler)]
        written = [plane.copy().astype(np.uint8) for plane in planes]
        blend(*written, cam)
        official = as_yuv420p(heat_overlay(image, to_frame(cam, height, width), scale))
        round_trip = as_yuv420p(image)
        ideal = (np.minimum(level, 0.35) * (colour - image)) @ BT601.T  # the change the official blend makes, in Y'CbCr
        ideal = [ideal[..., 0]] + [ideal[..., k].reshape(height // 2, 2, width // 2, 2).mean(axis=(1, 3)) for k in (1, 2)]
        for k, (mine, before, theirs, through_rgb) in enumerate(zip(written, planes, official, round_trip)):
            change[k].append(np.abs((mine - before) - (theirs - through_rgb)).ravel())
            exact.append(np.abs((mine - before) - ideal[k]).ravel())
            trip.append(np.abs(through_rgb - before).ravel())
            drawn = mine != before
            rows, cols = np.flatnonzero(drawn.any(axis=1)), np.flatnonzero(drawn.any(axis=0))
            # nothing beyond the patch's reach (cells 2..9 down, 3..11 across, and the cell either side)
            assert rows[0] >= mine.shape[0] * 1 // cells[0] and rows[-1] < mine.shape[0] * 11 // cells[0] + 1
            assert cols[0] >= mine.shape[1] * 2 // cells[1] and cols[-1] < mine.shape[1] * 13 // cells[1] + 1
    luma, chroma, exact = np.concatenate(change[0]), np.concatenate(change[1] + change[2]), np.concatenate(exact)
    assert (luma > 0).sum() > 0 and luma.max() <= 2 and (luma > 1).mean() < 0.001
    assert chroma.max() <= 10 and (chroma > 2).mean() < 0.05
    assert exact.max() <= 1.5 and (exact > 0.5).mean() < 0.05
    cold = np.full(cells, 0.1 * scale, dtype=np.float32)  # below lo everywhere: nothing drawn
    planes = [plane.copy() for plane in yuv_planes(decoded[0], scaler)]
    blend(*planes, cold)
    assert all(np.array_equal(plane, stored) for plane, stored in zip(planes, yuv_planes(decoded[0], scaler)))


def write_h264(path: Path, frames: np.ndarray, fps: float, pix_fmt: str, colorspace: str | None = None) -> Path:
    """RGB frames as H.264 in ``pix_fmt`` (tagged ``colorspace``, converted with its matrix), with a second of AAC noise."""
    import av

    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=int(fps))
        video.width, video.height, video.pix_fmt = frames.shape[2], frames.shape[1], pix_fmt
        video.codec_context.options = {"crf": "12"}
        if colorspace:
            video.codec_context.colorspace = int(Colorspace[colorspace])  # tagged, so the decoder reports it
        sound = container.add_stream("aac", rate=16000, layout="stereo")
        for index, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format=pix_fmt, dst_colorspace=colorspace)
            frame.pts = index
            container.mux(video.encode(frame))
        container.mux(video.encode())
        noise = 0.1 * np.random.default_rng(5).standard_normal((2, 16000)).astype(np.float32)
        for first in range(0, 16000, 1024):
            chunk = av.AudioFrame.from_ndarray(np.ascontiguousarray(noise[:, first : first + 1024]), format="fltp", layout="stereo")
            chunk.sample_rate, chunk.pts = 16000, first
            container.mux(sound.encode(chunk))
        container.mux(sound.encode())
    return path


@pytest.mark.parametrize("pix_fmt, colorspace, loss", [
    ("yuv420p", None, 3), ("yuv420p", "ITU709", 3),
    ("yuv444p", None, 7),  # full-resolution colour to yuv420p's quarter: more lost (the writer before lost as much, 5.0 against 5.7)
])
def test_the_written_overlay_decodes_to_the_official_blend(tmp_path, pix_fmt, colorspace, loss):
    """End to end: the overlay video, decoded, against the official blend drawn on the decoded input; every frame kept;
    frames in another pixel format or colour matrix than BT.601 yuv420p converted first."""
    height, width, times = 96, 128, np.arange(12) / 12.0
    rng = np.random.default_rng(4)
    texture = F.interpolate(torch.from_numpy(rng.random((1, 3, 12, 16), dtype=np.float32)), size=(height, width),
                            mode="bilinear", align_corners=False)[0].permute(1, 2, 0).numpy()
    frames = np.stack([np.roll(texture, 4 * index, axis=1) for index in range(len(times))]) * 255
    video = write_h264(tmp_path / "in.mp4", frames.astype(np.uint8), 12.0, pix_fmt, colorspace)
    rows, cols = np.mgrid[0:12, 0:16].astype(np.float32)
    maps = np.stack([np.exp(-((rows - 6) ** 2 + (cols - 3 - index) ** 2) / 8) for index in range(len(times))])
    track = MapTrack(spans=[(0.0, times[-1])], times=[times], maps=[maps])
    scale = overlay_scale(track.values())
    out = tmp_path / "out.mp4"
    written = write_overlay(video, track, out, scale, SETTINGS)
    np.testing.assert_allclose(written, times, atol=1e-4)  # every frame, at its time
    np.testing.assert_allclose(frame_stamps(out), times, atol=1e-4)
    source, drawn = io.read_clip(video, 0.0, 1.0, fps=12.0).frames, io.read_clip(out, 0.0, 1.0, fps=12.0).frames
    official = np.stack([heat_overlay(image, to_frame(track.at(time), height, width), scale) for image, time in zip(source, times)])
    blob = (official != source).any(axis=-1)
    assert blob.mean() > 0.05  # the blob is drawn
    difference, effect = np.abs(drawn.astype(int) - official), np.abs(official.astype(int) - source)[blob].mean()
    # x264's loss and yuv420p's shared colour of 2 x 2 pixels (the official blend is RGB per pixel) aside: the blob's colours
    # differ from the official ones by a fifth of the overlay's own effect on average (6 against 27 here)
    assert difference[~blob].mean() < loss and difference[blob].mean() < 0.3 * effect


def test_video_without_sound_is_a_clear_error(tmp_path, capsys):
    silent = make_video(tmp_path / "silent.mp4", num_frames=20, channels=None)
    with pytest.raises(io.NoAudioError, match="silent.mp4.*without sound"):
        localize(silent, tiny_checkpoint(tmp_path / "net.pt"), tmp_path / "out.mp4")
    assert not (tmp_path / "out.mp4").exists()
    assert main([str(silent), "--checkpoint", str(tmp_path / "net.pt"), "--out", str(tmp_path / "o.mp4")]) == 2
    assert "no audio track" in capsys.readouterr().err


def test_device_choices_mean_what_reproduce_sh_means(tmp_path, capsys):
    assert pick_device("cpu") == "cpu"
    assert pick_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(SystemExit):
        main(["video.mp4", "--checkpoint", "net.pt", "--out", "o.mp4", "--device", "gpu"])
    assert "invalid choice" in capsys.readouterr().err
    if not torch.cuda.is_available():  # the CPU build: one line, exit 2, no traceback
        source = make_video(tmp_path / "in.mp4", num_frames=10, fps=25.0, height=48, width=64, sample_rate=16000)
        code = main([str(source), "--checkpoint", str(tiny_checkpoint(tmp_path / "net.pt")), "--out",
                     str(tmp_path / "o.mp4"), "--device", "cuda"])
        lines = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and "CUDA" in lines[0] and not (tmp_path / "o.mp4").exists()


def test_overlay_re_encodes_a_sound_it_does_not_copy(tmp_path):
    """PCM sound (not in COPIED_SOUND) goes through the AAC encoder, at its own rate and channels, clicks in place."""
    import av

    source, fps, rate = tmp_path / "pcm.mkv", 25, 16000
    clicks = click_track(2 * rate, rate, [0.4, 1.4])
    with av.open(str(source), "w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        sound = container.add_stream("pcm_s16le", rate=rate, layout="stereo")
        for index in range(2 * fps):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 100, dtype=np.uint8), format="rgb24")
            frame.pts = index
            container.mux(video.encode(frame))
            chunk = av.AudioFrame.from_ndarray((clicks[:, index * 640 : (index + 1) * 640] * 32767).astype(np.int16).reshape(1, -1),
                                               format="s16", layout="stereo")
            chunk.sample_rate, chunk.pts = rate, index * 640
            container.mux(sound.encode(chunk))
        container.mux(video.encode())
        container.mux(sound.encode())
    localize(source, tiny_checkpoint(tmp_path / "net.pt"), tmp_path / "out.mp4")
    written = io.probe(tmp_path / "out.mp4")
    assert (written.audio_codec, written.channels, written.sample_rate) == ("aac", 2, rate)
    heard = onsets(io.read_audio(tmp_path / "out.mp4", 0.0, int(1.8 * 8000), sample_rate=8000), 8000)
    np.testing.assert_allclose(heard, [0.4, 1.4], atol=0.005)


def test_a_rotated_phone_video_gives_upright_maps_and_an_upright_overlay(tmp_path):
    """A portrait phone video stores landscape frames and a display matrix: maps and overlay are of the picture
    as displayed (portrait, the red square where the person filming saw it), written upright."""
    height, width = 96, 64  # as displayed
    upright = np.full((20, height, width, 3), 110, dtype=np.uint8)
    upright[:, 8:32, 6:30] = (230, 20, 20)  # a red square at the top left of the displayed picture
    stored = np.ascontiguousarray(np.rot90(upright, 1, axes=(1, 2)))  # the sensor's landscape frames
    audio = 0.1 * np.random.default_rng(0).standard_normal((2, 16000)).astype(np.float32)
    video = write_video(tmp_path / "phone.mp4", stored, 10.0, audio, 8000, rotation=270)
    assert (io.probe(video).width, io.probe(video).height) == (width, height)
    track = map_video(video, [TiledCam(red_cam, SHIFT.crop, "tiles")], SHIFT, SETTINGS)["tiles"]
    score_map = to_frame(track.at(0.95), height, width)
    y, x = np.unravel_index(np.argmax(score_map), score_map.shape)
    assert 8 <= y < 32 and 6 <= x < 30
    out = tmp_path / "overlay.mp4"
    write_overlay(video, track, out, overlay_scale(np.concatenate([m.ravel() for m in track.maps])), SETTINGS)
    written = io.probe(out)
    assert (written.rotation, written.width, written.height) == (0, width, height)
    frames = io.read_clip(out, 0.5, 0.5, fps=10.0).frames.astype(int)
    redness = frames[..., 0] - frames[..., 1:].mean(-1)
    assert redness[:, 8:32, 6:30].mean() > redness[:, 50:, 30:].mean() + 60  # the square stayed at the top left
