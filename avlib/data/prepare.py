"""A prepared copy of a data root: videos re-encoded small with short keyframe intervals, for fast window reads.

Training reads a random 4.2 s window of every clip (:class:`avlib.data.shift.FileClips`), and decoding
it dominates the input pipeline (``bench/input_pipeline.py``). Two properties of raw files cost time
that the network never sees: frames larger than the 256-pixel frames it is fed (every pixel is decoded,
then thrown away by the resize), and long keyframe intervals (a window is decoded from the keyframe
before it, up to a whole 10 s clip of frames that are not shown). ``prepare`` writes a tree of the same
layout in which each video is re-encoded with

- frames of the network's size: by default squashed to ``size`` x ``size`` = 256 x 256, the paper's
  stored frames (``ffmpeg -vf scale=256:256``, aspect ratio not kept, docs/paper.md §1), so that reading
  at the paper's ``size=256`` only converts colours instead of resizing every frame (swscale's bicubic
  resize costs more per frame than decoding it); or, with ``resize="short_side"``, the short side at
  most ``size`` with the aspect ratio kept, for settings that need the frames' shape. A side already
  smaller than ``size`` is never enlarged;
- a keyframe at least every ``keyint`` frames (15: half a second at 29.97 fps), encoded with x264's
  ``fastdecode`` tune at ``crf`` 18;
- the same frame timestamps (variable frame rates stay as they are) and the display rotation;
- the first audio stream (other streams, which avlib does not read, are left out) decoded whole, down-mixed
  to stereo and resampled **once** to the network's 21 kHz (``audio_rate``, soxr as in :mod:`avlib.io`), on
  the 21 kHz grid of the clip clock, and stored as 16-bit FLAC in the same container and file name (mp4,
  mov and mkv hold FLAC; 21 kHz is no AAC sample rate). Reading a window then neither decodes AAC nor
  resamples (:func:`avlib.io.read_clip` skips soxr at equal rates), which was over a quarter of an alignment
  example's reading time (two audio windows per example). The samples are the raw track resampled once, to
  16-bit rounding; a window starts on the 21 kHz grid, up to one sample (48 us) from where the raw read's
  starts. FLAC costs bytes: about 0.7 Mb/s for this bench's white noise, less for real sound (AAC: 0.13).
  AVI files (UCF-101) keep their audio packets as they are; ``audio_rate=0`` keeps them everywhere.

Other files (``ucfTrainTestlist/*.txt``, ``clips.csv``, ``speakers.csv``, ``i3d/*.npz``) are copied, so
``--data-root`` can point at the prepared tree (docs/datasets.md). A video that is already small with
short keyframe intervals (and prepared audio), that cannot be read, or whose container has no re-encoder here (``.webm``) is
copied unchanged: the prepared tree holds the same clips as the raw one, and the index skips unreadable
files in both. ``<dst>/.avlib-prepared.json`` records the settings and what was done to each file, and
makes a second run continue where the first stopped (unchanged sources are not prepared again).

:func:`avlib.data.index.find_prepared` tells whether a folder lies in a prepared tree (``ClipIndex.prepared``).

Command line: ``python -m avlib.data.prepare SRC DST [--size 256] [--resize squash] [--keyint 15] [--audio-rate 21000]
[--workers N]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import sys
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import soxr

from avlib.data.index import PREPARED_MANIFEST, VIDEO_SUFFIXES
from avlib.files import write_text
from avlib.io import _SAMPLE_FORMATS, PAPER_SAMPLE_RATE, MediaError, _frame_channels, map_channels, probe

log = logging.getLogger(__name__)

#: The manifest written at the root of a prepared tree.
MANIFEST = PREPARED_MANIFEST
_MANIFEST_VERSION = 1
#: Re-encoders by container: H.264 where the container has timestamps, MPEG-4 Part 2 without B-frames (UCF-101's
#: own codec) in AVI, which has none (H.264 in AVI came out one frame late).
_ENCODERS = {".mp4": "libx264", ".m4v": "libx264", ".mov": "libx264", ".mkv": "libx264", ".avi": "mpeg4"}
#: Samples per FLAC frame: 0.39 s at 21 kHz, a dozen frames per window read (reading costs per frame; FFmpeg's default is 0.1 s).
_FLAC_BLOCK = 8192
#: Files of the raw tree that are not copied: the index cache (its paths and signatures are the raw tree's).
_SKIPPED_NAMES = (".avlib-index.json", MANIFEST)


@dataclass(frozen=True)
class PrepareSettings:
    """How videos are re-encoded.

    size:       frame size in pixels (even): see ``resize``.
    resize:     'squash': each side at most ``size`` (256 x 256 from any larger frame, the paper's stored
                frames); 'short_side': the short side at most ``size``, aspect ratio kept. Sizes are even.
    keyint:     the longest run of frames between keyframes.
    crf:        H.264 quality (x264's constant rate factor; 18 is visually lossless); MPEG-4 (AVI) gets one bit per pixel.
    preset:     x264's speed preset (encoding time only; decoding speed is about the same).
    tune:       x264's tune ('' for none); 'fastdecode' (no CABAC, no deblocking filter) decodes about a third
                faster for about a fifth more bytes (bench/input_pipeline.py).
    audio_rate: the audio's sample rate in Hz, stored as 16-bit stereo FLAC (21 000: the network's, so reading
                neither decodes AAC nor resamples); 0 copies the audio packets as they are. AVI files keep
                their audio (UCF-101's own).
    """

    size: int = 256
    resize: str = "squash"
    keyint: int = 15
    crf: int = 18
    preset: str = "veryfast"
    tune: str = "fastdecode"
    audio_rate: int = PAPER_SAMPLE_RATE

    def __post_init__(self) -> None:
        if self.size < 16 or self.size % 2:
            raise ValueError(f"size must be an even number of at least 16, got {self.size}")
        if self.resize not in ("squash", "short_side"):
            raise ValueError(f"resize must be 'squash' or 'short_side', got {self.resize!r}")
        if self.keyint < 1:
            raise ValueError(f"keyint must be at least 1, got {self.keyint}")
        if self.audio_rate < 0:
            raise ValueError(f"audio_rate must be a sample rate in Hz, or 0 to copy the audio, got {self.audio_rate}")


def prepared_size(width: int, height: int, settings: PrepareSettings) -> tuple[int, int]:
    """(width, height) of the prepared frames: ``size`` x ``size`` (squash), or the short side at most
    ``size`` with the aspect ratio kept (short_side); even, never enlarged."""
    short, short_side = min(width, height), settings.size
    if settings.resize == "squash":
        return (min(width, short_side) // 2 * 2, min(height, short_side) // 2 * 2)
    if short <= short_side:
        return width - width % 2, height - height % 2
    scale = short_side / short

    def even(value: float) -> int:
        return max(2, 2 * int(round(value / 2)))

    return (short_side, even(height * scale)) if width == short else (even(width * scale), short_side)


def longest_gop(path: str | os.PathLike) -> int:
    """The most video packets from one keyframe to the next (or to the end), read by demuxing only."""
    with av.open(str(path), metadata_errors="ignore") as container:
        stream = container.streams.video[0]
        longest = run = 0
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            run = 1 if packet.is_keyframe else run + 1
            longest = max(longest, run)
    return longest


def _plan(path: Path, settings: PrepareSettings) -> tuple[str, str]:
    """('reencode' or 'copy', why) for one video file."""
    encoder = _ENCODERS.get(path.suffix.lower())
    if encoder is None:
        return "copy", f"no re-encoder for {path.suffix} files"
    try:
        info = probe(path)
        gop = longest_gop(path)
    except (MediaError, av.error.FFmpegError, IndexError) as error:
        return "copy", f"unreadable: {getattr(error, 'problem', error)}"
    audio_ready = (not info.has_audio or not settings.audio_rate or path.suffix.lower() == ".avi"
                   or (info.audio_codec, info.sample_rate, info.channels) == ("flac", settings.audio_rate, 2))
    audio = f", audio {info.audio_codec} {info.sample_rate} Hz" if info.has_audio else ""
    if prepared_size(info.width, info.height, settings) == (info.width, info.height) and gop <= settings.keyint and audio_ready:
        return "copy", f"already {info.width}x{info.height} with keyframes every {gop} frames or fewer{audio}"
    return "reencode", f"{info.width}x{info.height}, longest keyframe interval {gop} frames{audio}"


def _video_encoder(container, encoder: str, source, first, size: tuple[int, int], settings: PrepareSettings, threads: int):
    """The output video stream: ``size``, the source's time base, colour tags and rotation."""
    stream = container.add_stream(encoder, rate=source.average_rate or source.guessed_rate or 30)
    context = stream.codec_context
    stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
    context.time_base = source.time_base
    stream.time_base = source.time_base
    context.gop_size = settings.keyint
    context.thread_count = threads
    for tag in ("colorspace", "color_range", "color_primaries", "color_trc"):
        setattr(context, tag, getattr(first, tag))
    if encoder == "libx264":
        options = {"crf": str(settings.crf), "preset": settings.preset}
        if settings.tune:
            options["tune"] = settings.tune
    else:  # MPEG-4 Part 2 without B-frames, at one bit per pixel (its rate control has no constant quality here)
        options = {}
        context.max_b_frames = 0
        context.bit_rate = int(size[0] * size[1] * float(stream.codec_context.framerate or 30))
    context.options = options
    if first.rotation:
        stream.set_display_rotation(first.rotation)
    return stream


def prepare_file(src: str | os.PathLike, dst: str | os.PathLike, settings: PrepareSettings = PrepareSettings(),
                 threads: int = 1) -> dict:
    """Write the prepared copy of one video; returns what was done (``action``, ``reason``, sizes).

    Re-encodes the video stream as the module says and copies every audio packet; copies the file
    unchanged when re-encoding would change nothing or cannot be done. Written to a temporary name and
    renamed, so an interrupted run leaves no half file under the final name. ``threads``: the encoder's
    threads (0: FFmpeg's choice).
    """
    src, dst = Path(src), Path(dst)
    action, reason = _plan(src, settings)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.stem}.partial{dst.suffix}")
    if action == "copy":
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
        return {"action": action, "reason": reason}
    try:
        size = _reencode(src, tmp, settings, threads)
    except (av.error.FFmpegError, ValueError) as error:
        tmp.unlink(missing_ok=True)
        raise MediaError(src, f"cannot be re-encoded ({error})") from error
    os.replace(tmp, dst)
    return {"action": action, "reason": reason, "size": list(size)}


def _reencode(src: Path, out: Path, settings: PrepareSettings, threads: int) -> tuple[int, int]:
    kind = src.suffix.lower()
    encoder = _ENCODERS[kind]
    # AVI cannot signal an audio encoder's priming delay: keep every timestamp as it is (avlib.writer does the same).
    options = {"avoid_negative_ts": "disabled"} if kind == ".avi" else {}
    flac = settings.audio_rate > 0 and kind != ".avi"
    track = _audio_track(src, settings.audio_rate) if flac else None
    with av.open(str(src), metadata_errors="ignore") as source:
        vin = source.streams.video[0]
        vin.thread_type = "AUTO"
        ain = source.streams.audio[0] if source.streams.audio and not flac else None
        for stream in source.streams:
            if stream not in (vin, ain):
                stream.discard = av.stream.Discard.all
        with av.open(str(out), mode="w", format="matroska" if kind == ".mkv" else None, container_options=options) as target:
            aout = target.add_stream_from_template(ain) if ain is not None else None
            # the resampled track, encoded up front and muxed in time order with the video packets
            pending = _flac_packets(target, *track) if track is not None else deque()
            vout, size = None, (0, 0)
            # demux ends each stream with an empty packet, whose decode() flushes the decoder
            for packet in source.demux(*(s for s in (vin, ain) if s is not None)):
                if packet.stream is ain:
                    if packet.dts is None:
                        continue
                    packet.stream = aout
                    if vout is None:
                        pending.append(packet)
                    else:
                        target.mux(packet)
                    continue
                for frame in packet.decode():
                    if vout is None:
                        size = prepared_size(frame.width, frame.height, settings)
                        vout = _video_encoder(target, encoder, vin, frame, size, settings, threads)
                        if ain is not None:  # copied packets met before the first video frame
                            for held in pending:
                                target.mux(held)
                            pending = deque()
                    pending = _encode(target, vout, frame, size, pending)
            if vout is None:
                raise ValueError("the video stream holds no decodable frame")
            for packet in vout.encode(None):
                target.mux(packet)
            for packet in pending:
                target.mux(packet)
    return size


def _audio_track(path: Path, rate: int) -> tuple[np.ndarray, int, int] | None:
    """The first audio track whole, placed by its timestamps, down-mixed to stereo as avlib.io reads it and resampled
    once to ``rate`` (soxr, as avlib.io resamples a window): (2 x N int16 samples, the first one's time in 1/``rate``
    ticks of the file's clock, ``rate``); None without audio. Its first sample is put on a tick that both rates share
    (zeros before the track's start), so the resampled samples lie exactly on the 1/``rate`` grid."""
    with av.open(str(path), metadata_errors="ignore") as container:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        native = int(stream.codec_context.sample_rate)
        if native <= 0:
            raise ValueError(f"the audio track states an invalid sample rate ({native})")
        pieces, names, samples_per_tick = [], None, float(stream.time_base) * native
        for frame in container.decode(stream):
            if frame.pts is None or not frame.samples:
                continue
            if names is None:
                names = [channel.name for channel in frame.layout.channels]
                if frame.format.name not in _SAMPLE_FORMATS:
                    raise ValueError(f"audio sample format {frame.format.name!r} is not supported")
                sample_format = _SAMPLE_FORMATS[frame.format.name]
            pieces.append((int(round(frame.pts * samples_per_tick)), np.stack(_frame_channels(frame, *sample_format))))
    if not pieces:
        raise ValueError("the audio track holds no decodable samples")
    step = native // math.gcd(native, rate)  # native samples per tick shared by both rates
    first = min(at for at, _ in pieces) // step * step
    buffer = np.zeros((len(names), max(at + piece.shape[1] for at, piece in pieces) - first), dtype=np.float32)
    for at, piece in pieces:  # in timestamp order; a gap stays silent
        buffer[:, at - first : at - first + piece.shape[1]] = piece
    stereo = map_channels(buffer, names, 2)
    resampled = stereo if native == rate else soxr.resample(stereo.T, native, rate, quality="HQ").T
    quantised = np.clip(np.round(resampled * 32768.0), -32768, 32767).astype(np.int16)
    return quantised, first // step * (rate // math.gcd(native, rate)), rate


def _flac_packets(target, samples: np.ndarray, first_tick: int, rate: int) -> deque:
    """A stereo FLAC stream of ``samples`` (2 x N int16) from ``first_tick`` (1/``rate`` s) in ``target``, encoded:
    its packets, to mux."""
    stream = target.add_stream("flac", rate=rate, layout="stereo")
    stream.codec_context.format = "s16"
    stream.codec_context.time_base = Fraction(1, rate)
    stream.codec_context.options = {"frame_size": str(_FLAC_BLOCK)}
    packets, block = [], _FLAC_BLOCK
    for at in range(0, samples.shape[1], block):
        chunk = np.ascontiguousarray(samples[:, at : at + block].T).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout="stereo")
        frame.sample_rate, frame.pts, frame.time_base = rate, first_tick + at, Fraction(1, rate)
        packets.extend(stream.encode(frame))
    packets.extend(stream.encode(None))
    return deque(packets)


def _encode(target, vout, frame, size: tuple[int, int], audio: deque) -> deque:
    """Encode one video frame and mux its packets, each after the ``audio`` packets that come before it; returns the
    audio packets left."""
    if frame.pts is None:
        return audio
    image = frame.reformat(width=size[0], height=size[1], format="yuv420p", interpolation="BICUBIC",
                           dst_color_range=frame.color_range)
    image.pts, image.time_base = frame.pts, frame.time_base
    for packet in vout.encode(image):
        if packet.dts is not None and audio:
            due = float(packet.dts * packet.time_base)
            while audio and audio[0].pts is not None and float(audio[0].pts * audio[0].time_base) <= due:
                target.mux(audio.popleft())
        target.mux(packet)
    return audio


# ----------------------------------------------------------------------------- trees


def _signature(path: Path) -> list[int]:
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


def read_manifest(root: str | os.PathLike) -> dict | None:
    """The manifest of the prepared tree at ``root``, or None when ``root`` is no prepared tree."""
    path = Path(root) / MANIFEST
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except ValueError as error:
        raise ValueError(f"{path}: not a readable prepare manifest ({error})") from error
    if data.get("version") != _MANIFEST_VERSION:
        raise ValueError(f"{path}: manifest version {data.get('version')!r}, this avlib reads {_MANIFEST_VERSION}")
    return data


def _prepare_one(job: tuple[str, str, dict, int]) -> tuple[str, dict]:
    src, dst, settings, threads = job
    try:
        return src, prepare_file(src, dst, PrepareSettings(**settings), threads)
    except MediaError as error:  # the raw file stands in for it, so the tree still holds every clip
        shutil.copyfile(src, dst)
        return src, {"action": "failed", "reason": f"{error.problem}; copied unchanged"}


def prepare_tree(src: str | os.PathLike, dst: str | os.PathLike, settings: PrepareSettings = PrepareSettings(),
                 workers: int = 1, progress: bool = False) -> dict:
    """Prepare every video under ``src`` into ``dst`` (same relative paths) and copy the other files.

    Files already prepared from the same source (size, modification time) with the same settings are
    kept. Returns the manifest, which is also written to ``dst/.avlib-prepared.json`` (atomically, after
    each file, so an interrupted run continues). A video that fails to re-encode is copied unchanged,
    listed as ``failed`` with its problem, logged, and tried again by the next run; the others go on.
    """
    from tqdm.auto import tqdm

    src, dst = Path(src).resolve(), Path(dst).resolve()
    if not src.is_dir():
        raise FileNotFoundError(f"{src}: no such folder to prepare")
    if dst == src or src in dst.parents:
        raise ValueError(f"{dst}: the prepared tree must lie outside the source tree {src}")
    old = read_manifest(dst) if (dst / MANIFEST).is_file() else None
    settings_dict = asdict(settings)
    done = old["files"] if old and old["settings"] == settings_dict else {}
    manifest = {"version": _MANIFEST_VERSION, "settings": settings_dict, "source": src.name, "files": {}}
    jobs = []
    for path in sorted(src.rglob("*")):
        relative = path.relative_to(src).as_posix()
        if path.is_dir() or path.name in _SKIPPED_NAMES or path.name.startswith(".") and ".partial" in path.name:
            continue
        signature = _signature(path)
        entry = done.get(relative)
        if entry and entry["action"] != "failed" and entry["signature"] == signature and (dst / relative).exists():
            manifest["files"][relative] = entry
        elif path.suffix.lower() in VIDEO_SUFFIXES:
            jobs.append((str(path), str(dst / relative), settings_dict, 1 if workers > 1 else 0))
        else:  # copied with its modification time: an unchanged source leaves the tree unchanged
            (dst / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dst / relative)
            manifest["files"][relative] = {"signature": signature, "action": "copy", "reason": "not a video"}
    dst.mkdir(parents=True, exist_ok=True)

    def record(source: str, outcome: dict) -> None:
        relative = Path(source).relative_to(src).as_posix()
        manifest["files"][relative] = {"signature": _signature(Path(source)), **outcome}
        if outcome["action"] == "failed":
            log.warning("%s: %s", source, outcome["reason"])
        write_text(dst / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))

    bar = tqdm(total=len(jobs), desc="preparing videos", disable=not progress)
    if workers <= 1:
        outcomes = map(_prepare_one, jobs)
        for source, outcome in outcomes:
            record(source, outcome)
            bar.update()
    else:
        with ProcessPoolExecutor(workers) as pool:
            for source, outcome in pool.map(_prepare_one, jobs):
                record(source, outcome)
                bar.update()
    bar.close()
    text = json.dumps(manifest, indent=1, sort_keys=True)
    if not (dst / MANIFEST).is_file() or (dst / MANIFEST).read_text() != text:  # unchanged: keep its time (data digests)
        write_text(dst / MANIFEST, text)
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m avlib.data.prepare", description=__doc__.splitlines()[0])
    parser.add_argument("src", type=Path, help="the raw data root (or one dataset folder of it)")
    parser.add_argument("dst", type=Path, help="where the prepared tree goes (same layout)")
    defaults = PrepareSettings()
    parser.add_argument("--size", type=int, default=defaults.size, help="frame size in pixels (default 256)")
    parser.add_argument("--resize", choices=("squash", "short_side"), default=defaults.resize,
                        help="squash to size x size (default, the paper's frames) or keep the aspect ratio")
    parser.add_argument("--keyint", type=int, default=defaults.keyint)
    parser.add_argument("--crf", type=int, default=defaults.crf)
    parser.add_argument("--preset", default=defaults.preset)
    parser.add_argument("--tune", default=defaults.tune)
    parser.add_argument("--audio-rate", type=int, default=defaults.audio_rate,
                        help="audio stored as 16-bit stereo FLAC at this rate (default 21000); 0 copies the audio")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="files prepared at once")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    settings = PrepareSettings(size=args.size, resize=args.resize, keyint=args.keyint, crf=args.crf, preset=args.preset,
                               tune=args.tune, audio_rate=args.audio_rate)
    manifest = prepare_tree(args.src, args.dst, settings, workers=args.workers, progress=True)
    counts: dict[str, int] = {}
    for entry in manifest["files"].values():
        counts[entry["action"]] = counts.get(entry["action"], 0) + 1
    print(f"{args.dst}: " + ", ".join(f"{count} {action}" for action, count in sorted(counts.items())))
    failed = [name for name, entry in manifest["files"].items() if entry["action"] == "failed"]
    for name in failed:
        print(f"failed: {name}: {manifest['files'][name]['reason']}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
