"""avlib.io on real containers written at test time (H.264/AAC mp4, MPEG-4 avi with PCM or MP3)."""

from __future__ import annotations

import gc
import warnings
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from media import click_track, decode_indices, index_frames, make_video, onsets, overwrite, packet_spans, textured_frames

from avlib import io
from avlib.writer import write_video

PAPER = dict(fps=io.PAPER_FPS, sample_rate=io.PAPER_SAMPLE_RATE)
CONTAINERS = {  # name -> (suffix, audio codec, known audio delay in seconds)
    "mp4-aac": (".mp4", None, 0.0),
    "avi-pcm": (".avi", "pcm_s16le", 0.0),
    "avi-mp3": (".avi", None, 0.025),  # MP3 encoder delay AVI cannot signal (as in UCF-101)
}


@pytest.mark.parametrize("source_fps", [25.0, 30.0, 30000 / 1001])
@pytest.mark.parametrize("container", CONTAINERS)
def test_frame_index_after_rate_conversion(tmp_path, container, source_fps):
    suffix, audio_codec, _ = CONTAINERS[container]
    path = make_video(tmp_path / f"v{suffix}", num_frames=150, fps=source_fps, audio_codec=audio_codec)
    start = 0.5
    clip = io.read_clip(path, start, 3.0, **PAPER)
    assert clip.frames.shape == (io.num_frames_for(3.0, io.PAPER_FPS), 64, 160, 3)
    targets = start + np.arange(clip.num_frames) / io.PAPER_FPS
    # the source frame on screen at each target time
    expected = np.floor(targets * Fraction(source_fps).limit_denominator(1001).__float__() + 1e-6).astype(int)
    np.testing.assert_array_equal(decode_indices(clip.frames), expected)
    np.testing.assert_allclose(clip.frame_times, expected / source_fps, atol=1e-3)


@pytest.mark.parametrize("container", CONTAINERS)
def test_click_and_frame_in_sync(tmp_path, container):
    suffix, audio_codec, delay = CONTAINERS[container]
    click_frames = (30, 75, 120)
    path = make_video(tmp_path / f"v{suffix}", num_frames=150, fps=25.0, click_frames=click_frames, audio_codec=audio_codec)
    start = 0.4
    clip = io.read_clip(path, start, 5.0, **PAPER)
    indices = decode_indices(clip.frames)
    heard = onsets(clip.audio, clip.sample_rate) + start
    assert len(heard) == len(click_frames)
    for frame, heard_at in zip(click_frames, heard):
        seen_at = start + np.flatnonzero(indices == frame)[0] / clip.fps  # first output frame showing it
        # within one output frame, after removing the container's documented delay
        assert abs(heard_at - delay - seen_at) < 1 / clip.fps, (frame, heard_at, seen_at)
    if delay:
        lag = heard - np.asarray(click_frames) / 25.0
        assert np.all((lag > 0.015) & (lag < 0.035)), f"MP3-in-AVI delay changed: {lag}"


@pytest.mark.parametrize("suffix", [".mp4", ".avi"])
def test_decord_and_pyav_frames_agree(tmp_path, suffix):
    path = make_video(tmp_path / f"v{suffix}", num_frames=90, fps=30.0, height=96, width=160)
    # native size: the same FFmpeg conversion; resized: decord scales in YUV before converting,
    # PyAV converts and scales in one pass, so edges differ by a few levels.
    for size, mean_limit, p99_limit in ((None, 0.5, 4), ((64, 80), 1.5, 24)):
        by_decord = io.read_clip(path, 0.3, 2.0, size=size, frame_backend="decord", **PAPER)
        by_pyav = io.read_clip(path, 0.3, 2.0, size=size, frame_backend="pyav", **PAPER)
        np.testing.assert_array_equal(decode_indices(by_decord.frames), decode_indices(by_pyav.frames))
        difference = np.abs(by_decord.frames.astype(int) - by_pyav.frames.astype(int))
        assert difference.mean() < mean_limit and np.percentile(difference, 99) <= p99_limit, (size, difference.mean())
        np.testing.assert_array_equal(by_decord.audio, by_pyav.audio)


def _tone(frequency: float, num_samples: int, sample_rate: int) -> np.ndarray:
    return 0.3 * np.sin(2 * np.pi * frequency * np.arange(num_samples) / sample_rate).astype(np.float32)


def _energy_at(signal: np.ndarray, frequency: float, sample_rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(signal * np.hanning(len(signal))))
    bin_ = int(round(frequency * len(signal) / sample_rate))
    return float(spectrum[bin_ - 2 : bin_ + 3].max() / spectrum.max())


def test_channel_mapping_mono_stereo_surround(tmp_path):
    sample_rate, seconds = 48000, 3.0
    n = int(sample_rate * seconds)
    # 5.1 in FFmpeg order: FL FR FC LFE BL BR, each with its own tone
    tones = {"FL": 300, "FR": 500, "FC": 700, "LFE": 60, "BL": 1100, "BR": 1300}
    surround = np.stack([_tone(f, n, sample_rate) for f in tones.values()])
    path = make_video(tmp_path / "surround.mp4", num_frames=75, fps=25.0, channels=6, sample_rate=sample_rate, audio=surround)
    clip = io.read_clip(path, 0.5, 2.0, **PAPER)
    left, right = clip.audio
    for name, frequency in tones.items():
        expect_left = name in ("FL", "FC", "BL")
        expect_right = name in ("FR", "FC", "BR")
        assert (_energy_at(left, frequency, clip.sample_rate) > 0.1) == expect_left, name
        assert (_energy_at(right, frequency, clip.sample_rate) > 0.1) == expect_right, name

    stereo = np.stack([_tone(300, n, sample_rate), _tone(900, n, sample_rate)])
    path = make_video(tmp_path / "stereo.mp4", num_frames=75, fps=25.0, channels=2, sample_rate=sample_rate, audio=stereo)
    left, right = io.read_clip(path, 0.5, 2.0, **PAPER).audio
    assert _energy_at(left, 300, 21000) > 0.5 and _energy_at(left, 900, 21000) < 0.05
    assert _energy_at(right, 900, 21000) > 0.5 and _energy_at(right, 300, 21000) < 0.05
    mono_mix = io.read_clip(path, 0.5, 2.0, channels=1, **PAPER).audio
    assert mono_mix.shape[0] == 1 and _energy_at(mono_mix[0], 300, 21000) > 0.5 and _energy_at(mono_mix[0], 900, 21000) > 0.5

    path = make_video(tmp_path / "mono.mp4", num_frames=75, fps=25.0, channels=1, sample_rate=sample_rate,
                      audio=_tone(440, n, sample_rate)[None])
    clip = io.read_clip(path, 0.5, 2.0, **PAPER)
    np.testing.assert_array_equal(clip.audio[0], clip.audio[1])
    assert np.abs(clip.audio).max() > 0.2


def test_paper_window_from_720p_25fps_surround(tmp_path):
    """The issue's acceptance: 1280x720, 25 fps, H.264, 5.1 AAC -> 125 frames and 87 588 stereo samples."""
    sample_rate, fps, frames = 48000, 25.0, 150
    n = int(frames / fps * sample_rate)
    surround = np.stack([_tone(200 + 150 * channel, n, sample_rate) for channel in range(6)])
    path = make_video(tmp_path / "hd.mp4", num_frames=frames, fps=fps, height=720, width=1280, channels=6,
                      sample_rate=sample_rate, audio=surround)
    info = io.probe(path)
    assert (info.width, info.height, info.channels, info.has_audio) == (1280, 720, 6, True)
    clip = io.read_clip(path, 1.0, 4.2, size=256, crop=224)
    assert clip.frames.shape == (125, 224, 224, 3) and clip.frames.dtype == np.uint8
    assert clip.audio.shape == (2, 87588) and clip.audio.dtype == np.float32
    assert np.isfinite(clip.audio).all()
    assert np.sqrt((clip.audio**2).mean(axis=1)).min() > 0.05  # both channels carry the signal


def test_no_audio_raises_or_returns_silence(tmp_path):
    path = make_video(tmp_path / "silent.avi", num_frames=100, fps=25.0, channels=None)
    assert not io.probe(path).has_audio
    with pytest.raises(io.NoAudioError, match="silent.avi"):
        io.read_clip(path, 0.0, 2.0)
    clip = io.read_clip(path, 0.0, 2.0, missing_audio="silence")
    assert clip.has_audio is False and clip.audio.shape == (2, io.num_samples_for(59, io.PAPER_FPS, 21000))
    assert not clip.audio.any()


def test_bad_inputs_raise_named_errors(tmp_path):
    with pytest.raises(io.MissingFileError, match="nothing.mp4"):
        io.read_clip(tmp_path / "nothing.mp4")
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"this is not a video" * 100)
    with pytest.raises(io.CorruptFileError, match="garbage.mp4"):
        io.probe(garbage)

    audio_only = tmp_path / "audio_only.m4a"
    with av.open(str(audio_only), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=44100, layout="stereo")
        tone = np.zeros((2, 44100), dtype=np.float32)
        for offset in range(0, 44100, 1024):
            frame = av.AudioFrame.from_ndarray(tone[:, offset : offset + 1024].copy(), format="fltp", layout="stereo")
            frame.sample_rate, frame.pts = 44100, offset
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with pytest.raises(io.NoVideoStreamError, match="audio_only.m4a"):
        io.read_clip(audio_only, 0.0, 0.5)

    short = make_video(tmp_path / "short.mp4", num_frames=50, fps=25.0)  # 2 s
    with pytest.raises(io.WindowError, match="short.mp4"):
        io.read_clip(short, 0.0, 4.2)
    with pytest.raises(io.WindowError, match="short.mp4"):
        io.read_clip(short, 1.5, 1.0)
    with pytest.raises(io.WindowError):
        io.read_clip(short, -0.5, 1.0)


@pytest.mark.parametrize("faststart", [False, True])
@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_truncated_file_raises(tmp_path, faststart, backend):
    options = {"video_options": {}} if not faststart else {}
    path = make_video(tmp_path / "full.mp4", num_frames=200, fps=25.0, height=128, width=320, **options)
    if faststart:  # move the index to the front, as web-ready files have it, then cut the tail off
        moved = tmp_path / "fast.mp4"
        with av.open(str(path)) as source, av.open(str(moved), "w", options={"movflags": "faststart"}) as target:
            streams = {s.index: target.add_stream_from_template(s) for s in source.streams}
            for packet in source.demux():
                if packet.dts is not None:
                    packet.stream = streams[packet.stream.index]
                    target.mux(packet)
        path = moved
    data = path.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises((io.CorruptFileError, io.WindowError), match="cut.mp4"):
        io.read_clip(cut, 5.0, 2.5, frame_backend=backend)


class _ClipDataset(torch.utils.data.Dataset):
    def __init__(self, paths: list[Path]):
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, item: int):
        clip = io.read_clip(self.paths[item], 0.2, 1.0, size=64, crop=48)
        return torch.from_numpy(clip.frames), torch.from_numpy(clip.audio)


def test_dataloader_with_two_workers(tmp_path):
    paths = [make_video(tmp_path / f"v{index}.mp4", num_frames=40, fps=25.0, click_frames=(10,)) for index in range(4)]
    loader = torch.utils.data.DataLoader(_ClipDataset(paths), batch_size=2, num_workers=2)
    batches = list(loader)
    assert len(batches) == 2
    frames, audio = batches[0]
    assert frames.shape == (2, 29, 48, 48, 3) and audio.shape == (2, 2, io.num_samples_for(29, io.PAPER_FPS, 21000))


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def test_memory_flat_over_300_opens(tmp_path):
    path = make_video(tmp_path / "v.mp4", num_frames=40, fps=25.0, click_frames=(10,))
    for _ in range(30):
        io.read_clip(path, 0.0, 1.0)
    gc.collect()
    before = _rss_mb()
    for _ in range(300):
        io.read_clip(path, 0.0, 1.0)
    gc.collect()
    grown = _rss_mb() - before
    assert grown < 15, f"resident memory grew {grown:.1f} MB over 300 reads"


def test_resize_policies_and_crop(tmp_path):
    path = make_video(tmp_path / "wide.mp4", num_frames=30, fps=25.0, height=90, width=160, channels=None)
    squashed = io.read_clip(path, 0, 0.5, size=256, crop=224, missing_audio="silence")
    assert squashed.frames.shape[1:] == (224, 224, 3)
    kept = io.read_clip(path, 0, 0.5, size=64, resize="short_side", missing_audio="silence")
    assert kept.frames.shape[1:3] == (64, 114)
    offset = io.read_clip(path, 0, 0.5, size=64, resize="short_side", crop=64, crop_offset=(0, 50), missing_audio="silence")
    np.testing.assert_array_equal(offset.frames, kept.frames[:, :, 50:114])
    with pytest.raises(ValueError, match="outside"):
        io.crop_frames(kept.frames, 64, (0, 60))


def test_read_audio_matches_read_clip(tmp_path):
    path = make_video(tmp_path / "v.mp4", num_frames=150, fps=25.0, click_frames=(40, 90))
    clip = io.read_clip(path, 1.3, 2.0)
    alone = io.read_audio(path, 1.3, clip.audio.shape[1])
    np.testing.assert_array_equal(alone, clip.audio)
    with pytest.raises(io.WindowError, match="v.mp4"):
        io.read_audio(path, 5.0, 2 * 21000)
    silent = make_video(tmp_path / "silent.mp4", num_frames=50, fps=25.0, channels=None)
    with pytest.raises(io.NoAudioError, match="silent.mp4"):
        io.read_audio(silent, 0.0, 100)


def test_window_up_to_the_end_of_a_16k_aac_track(tmp_path):
    """AAC tracks decode slightly short of their header; a window ending at the end must still read."""
    path = make_video(tmp_path / "v.mp4", num_frames=125, fps=25.0, sample_rate=16000, channels=1, click_frames=(100,))
    info = io.probe(path)
    last = io.num_frames_for(info.usable_duration, 29.97)
    clip = io.read_clip(path, 0.0, num_frames=last)
    assert clip.audio.shape == (2, io.num_samples_for(last, 29.97, 21000))
    assert len(onsets(clip.audio, clip.sample_rate)) == 1


def _sine_fit(signal: np.ndarray, frequency: float, sample_rate: int, start: float) -> tuple[float, float]:
    """Amplitude and time offset (s) of a sine of known ``frequency`` in ``signal``, by least squares.

    ``signal[n]`` is expected to be ``A sin(2 pi f (start + n / sample_rate))``; the offset is how
    much later the signal is than that (phase difference over 2 pi f).
    """
    phase = 2 * np.pi * frequency * (start + np.arange(len(signal)) / sample_rate)
    (a, b), *_ = np.linalg.lstsq(np.stack([np.sin(phase), np.cos(phase)], axis=1), signal.astype(np.float64), rcond=None)
    return float(np.hypot(a, b)), float(-np.arctan2(b, a) / (2 * np.pi * frequency))


@pytest.mark.parametrize("container", ["mp4-aac", "avi-pcm"])
def test_resampled_sine_keeps_its_frequency_amplitude_and_phase(tmp_path, container):
    """Placement by timestamp and resampling to 21 kHz keep a tone where the clock says it is."""
    suffix, audio_codec, _ = CONTAINERS[container]
    sample_rate, fps, frames = 44100, 25.0, 150
    n = int(frames / fps * sample_rate)
    tones = (440.0, 1000.0)  # left, right
    audio = np.stack([_tone(frequency, n, sample_rate) for frequency in tones])
    path = make_video(tmp_path / f"sine{suffix}", num_frames=frames, fps=fps, sample_rate=sample_rate, audio=audio,
                      audio_codec=audio_codec)
    for start in (0.0, 1.234, 2.0):
        clip = io.read_clip(path, start, 3.0, **PAPER)
        for channel, frequency in zip(clip.audio, tones):
            assert _energy_at(channel, frequency, clip.sample_rate) > 0.9
            amplitude, offset = _sine_fit(channel, frequency, clip.sample_rate, start)
            assert abs(amplitude - 0.3) < 0.01, (start, frequency, amplitude)
            # On the true clock within one source sample (the window starts on the source sample
            # at or before it), which is under half an output sample; AAC included, its priming
            # delay being signalled by the mp4 edit list and undone by the decoder.
            assert abs(offset) < 1 / sample_rate, (start, frequency, offset * 1e6)


# ----------------------------------------------------------------------------- rotation

#: The display matrix a phone writes for a portrait video held upright: the stored landscape frames
#: are turned 90 degrees clockwise for display (QuickTime tkhd a=0, b=1, c=-1, d=0 in 16.16; w=1 in 2.30).
PORTRAIT_MATRIX = (0, 65536, 0, -65536, 0, 0, 0, 0, 1 << 30)


def _display_matrix(path: Path) -> tuple[int, ...]:
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        for side_data in frame.side_data:
            if side_data.type == av.sidedata.sidedata.Type.DISPLAYMATRIX:
                return tuple(np.frombuffer(bytes(side_data), np.int32).tolist())
    return ()


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_phone_portrait_video_reads_upright(tmp_path, suffix):
    """A portrait phone video stores landscape frames and a display matrix; frames come out upright."""
    upright = index_frames(60, 160, 96)  # what the person filming saw: portrait, index blocks along the top
    stored = np.ascontiguousarray(np.rot90(upright, 1, axes=(1, 2)))  # the sensor's landscape frames
    audio = click_track(int(60 / 25 * 44100), 44100, [1.0])
    path = write_video(tmp_path / f"phone{suffix}", stored, 25.0, audio, 44100, rotation=270)
    assert _display_matrix(path)[:4] == PORTRAIT_MATRIX[:4] and _display_matrix(path)[8] == PORTRAIT_MATRIX[8]

    info = io.probe(path)
    assert (info.rotation, info.width, info.height) == (270, 96, 160)
    clip = io.read_clip(path, 0.4, 1.0, fps=25.0)
    assert clip.frames.shape == (25, 160, 96, 3)
    np.testing.assert_array_equal(decode_indices(clip.frames), np.arange(10, 35))
    assert np.abs(clip.frames.astype(int) - upright[10:35]).mean() < 2  # the picture itself, not only its index
    # sizes and crops apply to the picture as displayed
    small = io.read_clip(path, 0.4, 1.0, fps=25.0, size=(80, 48), crop=(40, 48), crop_offset=(0, 0))
    assert small.frames.shape == (25, 40, 48, 3)
    np.testing.assert_array_equal(decode_indices(small.frames), np.arange(10, 35))
    # decord (its own FFmpeg build) turns an mp4 by its rotate tag; rotated files are read by PyAV either way
    np.testing.assert_array_equal(io.read_clip(path, 0.4, 1.0, fps=25.0, frame_backend="decord").frames, clip.frames)
    if suffix == ".mp4" and io.decord is not None:
        by_decord = io.decord.VideoReader(str(path)).get_batch(list(range(10, 35))).asnumpy()
        assert by_decord.shape == clip.frames.shape and np.abs(by_decord.astype(int) - clip.frames).mean() < 0.5


@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
def test_rotation_written_is_read_back(tmp_path, rotation):
    stored = index_frames(40, 64, 160)
    path = write_video(tmp_path / "r.mp4", stored, 25.0, rotation=rotation)
    info = io.probe(path)
    assert info.rotation == rotation
    assert (info.width, info.height) == ((64, 160) if rotation in (90, 270) else (160, 64))
    clip = io.read_clip(path, 0.0, 1.0, fps=25.0, missing_audio="silence")
    assert clip.frames.shape[1:3] == (info.height, info.width)
    back = np.rot90(clip.frames, -rotation // 90, axes=(1, 2))  # undo the counter-clockwise turn
    np.testing.assert_array_equal(decode_indices(back), np.arange(25))
    # the writer refuses what it cannot carry
    with pytest.raises(ValueError, match="AVI"):
        write_video(tmp_path / "r.avi", stored, 25.0, rotation=rotation or 90)
    with pytest.raises(ValueError, match="rotation"):
        write_video(tmp_path / "r.mp4", stored, 25.0, rotation=45)


# ----------------------------------------------------------------------------- damaged packets

def _textured_video(path: Path, num_frames: int = 250, gop: int = 25) -> Path:
    audio = click_track(int(num_frames / 25 * 44100), 44100, [2.0, 6.0])
    return write_video(path, textured_frames(num_frames, 128, 320), 25.0, audio, 44100, gop=gop)


def test_damaged_packets_are_concealed_not_fatal(tmp_path):
    """64 KB of garbage in the middle of an H.264 mp4 (the issue's case): the window is kept, the damage named."""
    source = _textured_video(tmp_path / "clean.mp4")
    spans = packet_spans(source)
    offset, _, damage_at, _ = spans[len(spans) // 2]  # a video packet in the middle (5 s)
    damaged = overwrite(source, tmp_path / "damaged.mp4", offset, 64 * 1024)
    clean = io.read_clip(source, 3.0, 6.0, fps=25.0)
    with pytest.warns(io.ConcealedDamageWarning, match=r"damaged\.mp4: concealed \d+ damaged video frame\(s\) at 5\.\d{3}"):
        clip = io.read_clip(damaged, 3.0, 6.0, fps=25.0)
    assert clip.frames.shape == clean.frames.shape and clip.audio.shape == clean.audio.shape
    frames_hit = [item.time for item in clip.concealed if item.stream == "video"]
    assert frames_hit and all(damage_at - 0.05 <= time < 9.0 for time in frames_hit), frames_hit
    # before the damage the window is untouched; from the next keyframe after it, too
    before = int(round((damage_at - 3.0) * 25)) - 1
    np.testing.assert_array_equal(clip.frames[:before], clean.frames[:before])
    keyframe = min(time for _, _, time, key in spans if key and time > max(frames_hit))
    after = int(round((keyframe - 3.0) * 25))  # output frame i shows the source frame at 3 + i / 25 s
    assert after < clip.num_frames - 25
    np.testing.assert_array_equal(clip.frames[after:], clean.frames[after:])
    assert np.isfinite(clip.audio).all()
    # a window elsewhere in the file is read exactly, with nothing to report
    with warnings.catch_warnings():
        warnings.simplefilter("error", io.ConcealedDamageWarning)
        far = io.read_clip(damaged, 0.0, 2.0, fps=25.0)
    np.testing.assert_array_equal(far.frames, io.read_clip(source, 0.0, 2.0, fps=25.0).frames)
    assert far.concealed == []


def test_damaged_keyframe_names_its_group_of_pictures(tmp_path):
    """A lost keyframe: the frames predicted from it (up to the next keyframe) show FFmpeg's concealment; all are named."""
    source = _textured_video(tmp_path / "clean.mp4", num_frames=150)
    offset, size, time, _ = [span for span in packet_spans(source) if span[3] and span[2] > 1.5][0]  # the keyframe at 2 s
    damaged = overwrite(source, tmp_path / "damaged.mp4", offset, size)
    clean = io.read_clip(source, 1.0, 3.0, fps=25.0)
    with pytest.warns(io.ConcealedDamageWarning, match="concealed 25 damaged video frame"):
        clip = io.read_clip(damaged, 1.0, 3.0, fps=25.0)
    np.testing.assert_allclose([item.time for item in clip.concealed if item.stream == "video"], time + np.arange(25) / 25)
    np.testing.assert_array_equal(clip.frames[:25], clean.frames[:25])  # 1 s to 2 s
    np.testing.assert_array_equal(clip.frames[50:], clean.frames[50:])  # from the next keyframe, 3 s
    assert not np.array_equal(clip.frames[25:50], clean.frames[25:50])


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_b_frames_and_open_gops_report_no_damage(tmp_path, suffix):
    """Frames leave the decoder reordered, and after a seek an open GOP's leading frames are dropped: neither is damage."""
    options = {"bf": "3", "x264-params": "open-gop=1:keyint=20:min-keyint=20"}
    path = write_video(tmp_path / f"b{suffix}", textured_frames(120, 96, 128), 25.0, video_options=options, gop=20)
    with warnings.catch_warnings():
        warnings.simplefilter("error", io.ConcealedDamageWarning)
        for start in (0.0, 0.7, 1.5, 3.1, 3.7):
            clip = io.read_clip(path, start, 1.0, fps=25.0, missing_audio="silence")
            assert clip.concealed == []
            np.testing.assert_array_equal(decode_indices(clip.frames), np.floor(start * 25 + 1e-6) + np.arange(25))


def test_upright_turns_stored_frames_as_read_clip_does(tmp_path):
    stored = index_frames(30, 64, 160)
    path = write_video(tmp_path / "r.mp4", stored, 25.0, rotation=90)
    with av.open(str(path)) as container:
        raw = np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])
    shown = io.read_clip(path, 0.0, 1.0, fps=25.0, missing_audio="silence").frames
    np.testing.assert_array_equal(io.upright(raw[:25], io.probe(path).rotation), shown)
    np.testing.assert_array_equal(io.upright(raw[3], 90), shown[3])
    with pytest.raises(ValueError, match="rotation"):
        io.upright(raw, -90)


def test_damaged_audio_packets_are_silent_and_named(tmp_path):
    source = _textured_video(tmp_path / "clean.mp4", num_frames=150)
    spans = packet_spans(source, "audio")
    offset, _, damage_at, _ = spans[len(spans) // 2]
    damaged = overwrite(source, tmp_path / "damaged.mp4", offset, 2000)
    with pytest.warns(io.ConcealedDamageWarning, match="damaged audio"):
        clip = io.read_clip(damaged, 1.0, 4.0, fps=25.0)
    audio_hit = [item.time for item in clip.concealed if item.stream == "audio"]
    assert audio_hit and min(abs(time - damage_at) for time in audio_hit) < 0.05
    assert clip.audio.shape == (2, io.num_samples_for(100, 25.0, io.PAPER_SAMPLE_RATE))
    with pytest.warns(io.ConcealedDamageWarning, match="damaged audio"):
        alone = io.read_audio(damaged, 1.0, clip.audio.shape[1])
    np.testing.assert_array_equal(alone, clip.audio)


def test_matroska_resync_gap_is_concealed(tmp_path):
    """Garbage in a Matroska cluster: the demuxer skips to the next one; the audio gap is silent and named."""
    tone = np.stack([_tone(440.0, 6 * 44100, 44100)] * 2)
    source = write_video(tmp_path / "clean.mkv", textured_frames(150, 128, 320), 25.0, tone, 44100, gop=25)
    offset, _, damage_at, _ = packet_spans(source)[75]  # the video packet at 3 s
    damaged = overwrite(source, tmp_path / "damaged.mkv", offset, 20_000)
    clean = io.read_clip(source, 1.0, 4.0, fps=25.0)
    with pytest.warns(io.ConcealedDamageWarning, match=r"damaged\.mkv: concealed 1 stretch\(es\) of damaged audio at 2\.\d{3} s"):
        clip = io.read_clip(damaged, 1.0, 4.0, fps=25.0)
    assert [item.stream for item in clip.concealed] == ["audio"] and damage_at - 0.2 < clip.concealed[0].time <= damage_at
    before = int(round((clip.concealed[0].time - 1.0) * 25)) - 1
    np.testing.assert_array_equal(clip.frames[:before], clean.frames[:before])
    gap = np.flatnonzero(np.abs(clip.audio - clean.audio).max(axis=0) > 1e-3)  # where the two differ: silence
    assert gap.size > 0.2 * clip.sample_rate and np.abs(clip.audio[:, gap[0] + 500 : gap[-1] - 500]).max() < 0.01


def test_undecodable_video_still_raises(tmp_path):
    source = _textured_video(tmp_path / "clean.mp4", num_frames=100)
    spans = packet_spans(source)
    first, end = spans[0][0], spans[-1][0] + spans[-1][1]
    ruined = overwrite(source, tmp_path / "ruined.mp4", first, end - first)  # every packet, the index kept
    with pytest.raises(io.CorruptFileError, match="ruined.mp4"):
        io.read_clip(ruined, 1.0, 2.0, fps=25.0)


# ----------------------------------------------------------------------------- down-mix level

def _tone_levels(signal: np.ndarray, frequencies: list[float], sample_rate: int) -> np.ndarray:
    """Amplitude of each tone in ``signal``, by least squares on sines and cosines of all of them at once."""
    t = np.arange(len(signal)) / sample_rate
    basis = np.concatenate([[np.sin(2 * np.pi * f * t), np.cos(2 * np.pi * f * t)] for f in frequencies]).T
    coefficients, *_ = np.linalg.lstsq(basis, signal.astype(np.float64), rcond=None)
    return np.hypot(coefficients[0::2], coefficients[1::2])


def _ffmpeg_downmix(path: Path, layout: str, sample_format: str) -> np.ndarray:
    """The whole audio track down-mixed by FFmpeg's libswresample (PyAV's AudioResampler), as float C x N."""
    resampler = None
    chunks = []
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            resampler = resampler or av.AudioResampler(format=sample_format, layout=layout, rate=frame.sample_rate)
            chunks += [out.to_ndarray() for out in resampler.resample(frame)]
    chunks += [out.to_ndarray() for out in resampler.resample(None)]
    samples = np.concatenate(chunks, axis=1).astype(np.float64)
    channels = 1 if layout == "mono" else 2
    if sample_format == "s16":  # packed: one row of interleaved samples
        samples = samples.reshape(-1, channels).T / 32768.0
    return samples


def test_surround_downmix_matches_ffmpeg_level(tmp_path):
    """5.1 -> stereo and mono at the level of FFmpeg's own down-mix into 16-bit audio (``ffmpeg -ac 2 x.wav``,
    the official demo's command), tone by tone within 0.1 dB. FFmpeg's float output skips the scaling that keeps
    16-bit output from clipping: 7.66 dB louder in stereo (1 + sqrt 2), 10.67 dB in mono (2 + sqrt 2)."""
    sample_rate = 48000
    frequencies = [300.0, 500.0, 700.0, 60.0, 1100.0, 1300.0]  # FL FR FC LFE BL BR, one tone each
    n = 3 * sample_rate
    surround = np.stack([_tone(frequency, n, sample_rate) for frequency in frequencies])
    path = make_video(tmp_path / "surround.mp4", num_frames=75, fps=25.0, channels=6, sample_rate=sample_rate, audio=surround)
    heard = [f for f in frequencies if f != 60.0]  # FFmpeg leaves the LFE out of a down-mix, as we do
    for layout, channels, scaling in (("stereo", 2, 1 + np.sqrt(2)), ("mono", 1, 2 + np.sqrt(2))):
        ours = io.read_clip(path, 0.5, 2.0, fps=25.0, sample_rate=sample_rate, channels=channels).audio
        reference = _ffmpeg_downmix(path, layout, "s16")[:, int(0.5 * sample_rate) : int(2.5 * sample_rate)]
        loud = _ffmpeg_downmix(path, layout, "fltp")[:, int(0.5 * sample_rate) : int(2.5 * sample_rate)]
        for mine, theirs, float_theirs in zip(ours, reference, loud):
            mine_levels, their_levels = _tone_levels(mine, heard, sample_rate), _tone_levels(theirs, heard, sample_rate)
            present = their_levels > 0.01
            np.testing.assert_array_equal(mine_levels > 0.01, present)
            difference_db = 20 * np.log10(mine_levels[present] / their_levels[present])
            assert np.abs(difference_db).max() < 0.1, (layout, difference_db)
            rms_db = 20 * np.log10(np.sqrt((float_theirs**2).mean() / (theirs**2).mean()))
            assert abs(rms_db - 20 * np.log10(scaling)) < 0.1, (layout, rms_db)


def _libswresample_matrix(layout: str) -> tuple[list[str], np.ndarray]:
    """FFmpeg's 2 x C down-mix of ``layout`` into 16-bit stereo, measured with one impulse per channel."""
    names = [channel.name for channel in av.AudioLayout(layout).channels]
    spacing = 64
    impulses = np.zeros((len(names) * spacing + 2048, len(names)), np.float32)
    for channel in range(len(names)):
        impulses[channel * spacing, channel] = 0.5
    frame = av.AudioFrame.from_ndarray(impulses.reshape(1, -1), format="flt", layout=layout)
    frame.sample_rate, frame.pts = 8000, 0
    resampler = av.AudioResampler(format="s32", layout="stereo", rate=8000)
    out = np.concatenate([part.to_ndarray() for part in resampler.resample(frame) + resampler.resample(None)], axis=1)
    stereo = out.reshape(-1, 2).T.astype(np.float64) / 2**31
    return names, stereo[:, ::spacing][:, : len(names)] / 0.5


@pytest.mark.parametrize("layout", ["2.1", "3.0", "3.0(back)", "4.0", "quad", "quad(side)", "3.1", "5.0", "5.0(side)", "4.1",
                                    "5.1", "5.1(side)", "6.0", "6.1", "6.1(back)", "6.1(front)", "7.0", "7.0(front)", "7.1",
                                    "7.1(wide)", "7.1(wide-side)", "hexagonal", "octagonal"])
def test_downmix_matrix_is_libswresamples(layout):
    names, theirs = _libswresample_matrix(layout)
    np.testing.assert_allclose(io.downmix_matrix(names), theirs, atol=1e-6)
