"""Speakers: the VoxCeleb counterpart, for on/off-screen source separation (paper section 7).

Each clip is a drawn talking head in close-up (as VoxCeleb's face crops) over a textured
background: a face that sways a little, blinks, and opens its mouth with the loudness of its
own speech (wider for open vowels).
The speech is synthetic and needs no system package: a source-filter synthesizer (harmonics
of a glottal source shaped by moving formants, plus aspiration and frication noise) speaks
syllables at 3-6 per second in phrases, with a per-speaker voice: gender, fundamental
frequency (male about 85-155 Hz, female about 165-255 Hz), vocal-tract length (formant scale),
spectral tilt and breathiness.

Like VoxCeleb, the audio is mono (the paper's reader duplicates it to stereo), the metadata
has a speaker table with gender, and train / val / test hold disjoint speakers (both genders in
each). Separation mixes clips of two speakers at training time (the paper's ``mix_sounds``).
Layout: ``<root>/<speaker>/<video>/<nnnnn>.mp4``, ``speakers.csv``, ``clips.csv``,
``truth/<speaker>_<video>_<nnnnn>.npz`` (mouth opening, face and mouth boxes, f0 per frame).

The same generator also writes the ``talkers`` part (:class:`TalkersConfig`): talking heads as
pretraining clips, in the scenes' format, each a new person from that part's own random stream
(AudioSet's on-screen speech; docs/world.md). Layout: ``clips/talker_NNNNN.mp4``, ``talkers.csv``,
``truth/talker_NNNNN.npz`` (mouth opening, face and mouth boxes, loudness per frame).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...writer import write_video
from ._common import (
    SHAPES,
    VIDEO_OPTIONS,
    add_at,
    check_frame_size,
    clip_frames,
    clip_rng,
    coloured_noise,
    frame_rms,
    harmonic_tone,
    impact_sound,
    object_timbre,
    panning_offsets,
    parallel_map,
    random_colour,
    sample_at_frame,
    stereo_gains,
    texture,
    to_uint8,
    write_npz,
    write_table,
)

#: Mean fundamental frequency ranges (Hz) of speakers; the intonation of each stays within
#: x0.88..x1.12 of its mean, so every voiced sound lies in about 85-155 (m) or 165-255 (f) Hz.
F0_MEAN_RANGE = {"m": (97.0, 138.0), "f": (188.0, 227.0)}
F0_SWING = (0.88, 1.12)
#: Vowel formants F1-F3 (Hz) of adult men, Peterson & Barney (1952); women's are ~15-20 % higher.
VOWELS = {
    "i": (270, 2290, 3010), "I": (390, 1990, 2550), "e": (530, 1840, 2480), "ae": (660, 1720, 2410), "a": (730, 1090, 2440),
    "o": (570, 840, 2410), "U": (440, 1020, 2240), "u": (300, 870, 2240), "uh": (640, 1190, 2390), "er": (490, 1350, 1690),
}
BANDWIDTHS = np.array([80.0, 110.0, 160.0, 250.0])
SKIN_TONES = np.array([(255, 224, 196), (241, 194, 167), (224, 172, 138), (198, 134, 103), (160, 104, 74), (110, 70, 50)], dtype=np.float32)
HAIR_COLOURS = np.array([(20, 15, 10), (60, 40, 25), (110, 75, 40), (200, 170, 110), (150, 60, 30), (120, 120, 120)], dtype=np.float32)


@dataclass(frozen=True)
class SpeakersConfig:
    """The speakers part of the world (the paper's VoxCeleb clips for separation, section 7)."""

    num_speakers: int = 48  #: distinct voices, half male and half female
    videos_per_speaker: int = 3  #: a "video" fixes background, framing and lighting
    clips_per_video: int = 2  #: clips cut from each video
    clip_seconds: float = 5.0  #: paper: 5 s records (149 frames), from which 2.135 s windows are drawn
    fps: float = 30000 / 1001
    sample_rate: int = 16000  #: VoxCeleb's audio is 16 kHz mono; the reader resamples to 21 kHz stereo
    size: int = 128  #: frame height and width (paper: 256, cropped to 224)
    head_scale: tuple[float, float] = (1.5, 1.8)  #: head size range, times the frame side (close-ups, as VoxCeleb's)
    mouth_gain: float = 1.6  #: how far a mouth opens at full loudness, relative to the first world's
    val_fraction: float = 0.15  #: share of each gender's speakers held out for validation
    test_fraction: float = 0.15  #: and for testing
    seed: int = 0

    @property
    def num_frames(self) -> int:
        return clip_frames(self.clip_seconds, self.fps)

    def validate(self) -> None:
        if self.num_speakers < 6:
            raise ValueError(f"SpeakersConfig.num_speakers must be >= 6 (3 splits x 2 genders), got {self.num_speakers}")
        check_frame_size("SpeakersConfig", self.size)


@dataclass(frozen=True)
class Voice:
    """A speaker's voice: the parameters of the source-filter synthesizer."""

    gender: str  # "m" or "f"
    f0: float  # mean fundamental frequency, Hz
    intonation: float  # depth of pitch accents, in fractions of f0
    formant_scale: float  # vocal-tract length: formants x this (women's tracts are shorter)
    formant_offsets: tuple[float, float, float]  # individual deviations of F1-F3
    tilt: float  # harmonic amplitudes fall as h^-tilt
    breathiness: float  # aspiration noise relative to the voiced sound
    syllable_rate: float  # syllables per second
    jitter: float  # slow random f0 wobble, fraction of f0


def speaker_voice(rng: np.random.Generator, gender: str) -> Voice:
    return Voice(
        gender=gender,
        f0=float(rng.uniform(*F0_MEAN_RANGE[gender])),
        intonation=float(rng.uniform(0.03, 0.09)),
        formant_scale=float(rng.uniform(0.93, 1.05) if gender == "m" else rng.uniform(1.1, 1.22)),
        formant_offsets=tuple(float(v) for v in rng.uniform(0.95, 1.05, 3)),
        tilt=float(rng.uniform(0.8, 1.4)),
        breathiness=float(rng.uniform(0.02, 0.25) if gender == "m" else rng.uniform(0.08, 0.35)),
        syllable_rate=float(rng.uniform(3.0, 6.0)),
        jitter=float(rng.uniform(0.005, 0.02)),
    )


@dataclass
class Speech:
    """Synthetic speech and its controls, which are sampled every ``hop`` samples (200 per second)."""

    signal: np.ndarray  # N float32, peak 1
    hop: int
    f0: np.ndarray  # per control step, Hz
    voicing: np.ndarray  # amplitude of the voiced source, 0..1
    openness: np.ndarray  # how open the vowel is (from F1), 0..1


def synthesize_speech(voice: Voice, num_samples: int, sample_rate: int, rng: np.random.Generator) -> Speech:
    """Speak random syllables in phrases with ``voice`` (a source-filter synthesizer).

    Each syllable is an optional consonant (fricative, plosive or nasal) and a vowel; phrases
    of 3-9 syllables fall in pitch (declination) and are separated by pauses. The voiced source
    is a sum of harmonics of f0 with a spectral tilt, each weighted by the vocal-tract filter
    (four resonances) at its frequency, which moves with the vowels.
    """
    hop = sample_rate // 200
    steps = num_samples // hop + 2
    f0 = np.full(steps, voice.f0)
    formants = np.tile(np.array([*VOWELS["uh"], 3500.0]) * voice.formant_scale, (steps, 1))
    voicing, openness, nasal = np.zeros(steps), np.zeros(steps), np.zeros(steps)
    hiss, hush, burst = np.zeros(steps), np.zeros(steps), np.zeros(steps)
    step_seconds = hop / sample_rate
    t = rng.uniform(0.0, 0.3)
    total = num_samples / sample_rate
    while t < total:
        syllables = int(rng.integers(3, 10))
        for i in range(syllables):
            length = rng.uniform(0.75, 1.3) / voice.syllable_rate
            stress = rng.uniform(0.55, 1.0)
            declination = 1.06 - 0.12 * i / max(syllables - 1, 1)
            accent = 1 + voice.intonation * rng.uniform(-0.5, 1.0) * stress
            start = min(int(t / step_seconds), steps)
            consonant = rng.choice(["none", "fricative", "plosive", "nasal"], p=[0.3, 0.3, 0.25, 0.15])
            onset = {"none": 0.0, "fricative": 0.07, "plosive": 0.04, "nasal": 0.05}[consonant]
            vowel_start = min(int((t + onset) / step_seconds), steps)
            end = min(int((t + length) / step_seconds), steps)
            if consonant == "fricative":
                (hiss if rng.uniform() < 0.5 else hush)[start:vowel_start] = 0.5 * stress
            elif consonant == "plosive":
                burst[max(vowel_start - 2, start) : vowel_start] = 0.8 * stress  # closure, then release
            elif consonant == "nasal":
                nasal[start:vowel_start] = 0.35 * stress
                formants[start:vowel_start, :3] = np.array([250.0, 1100.0, 2300.0]) * voice.formant_scale
            vowel = str(rng.choice(list(VOWELS)))
            formants[vowel_start:end, :3] = np.array(VOWELS[vowel]) * voice.formant_scale * np.array(voice.formant_offsets)
            span = np.arange(end - vowel_start) * step_seconds
            duration = max((int((t + length) / step_seconds) - vowel_start) * step_seconds, step_seconds)
            envelope = np.minimum(1, span / 0.025) * np.minimum(1, (duration - span) / 0.05).clip(0)
            voicing[vowel_start:end] = stress * envelope
            openness[vowel_start:end] = (VOWELS[vowel][0] - 270) / (730 - 270)
            f0[start:end] = voice.f0 * declination * accent
            t += length
        t += rng.uniform(0.15, 0.6)
    voicing = np.maximum(voicing, nasal)
    # smooth articulation: ~25 ms glides between targets
    kernel = np.ones(5) / 5
    formants = np.stack([np.convolve(np.pad(column, 2, mode="edge"), kernel, mode="valid") for column in formants.T], axis=1)
    wobble = np.convolve(rng.standard_normal(steps), np.ones(10) / 10, mode="same") * voice.jitter * 3
    smoothed = np.convolve(np.pad(f0, 4, mode="edge"), np.ones(9) / 9, mode="valid")
    f0 = np.clip(smoothed * (1 + wobble), voice.f0 * F0_SWING[0], voice.f0 * F0_SWING[1])

    sample_steps = np.arange(num_samples) / hop
    left = np.minimum(sample_steps.astype(np.int64), steps - 2)
    right_weight = (sample_steps - left)[None, :]

    def at_samples(control_curve: np.ndarray) -> np.ndarray:
        """Linear interpolation from control steps to samples (rows of a 2-D array at once)."""
        curve = np.atleast_2d(control_curve)
        out = curve[:, left] * (1 - right_weight) + curve[:, left + 1] * right_weight
        return out if control_curve.ndim == 2 else out[0]

    ceiling = min(4500.0, 0.45 * sample_rate)
    harmonics = np.arange(1, int(ceiling / f0.min()) + 1)[:, None]
    frequency = harmonics * f0[None, :]  # H x steps
    gains = harmonics ** (-voice.tilt) * voicing[None, :] * (frequency < ceiling)
    for centre, bandwidth in zip(formants.T, BANDWIDTHS):  # the vocal tract's resonances
        gains = gains * centre**2 / np.sqrt((centre**2 - frequency**2) ** 2 + (frequency * bandwidth) ** 2)
    phase = 2 * np.pi * np.cumsum(at_samples(f0)) / sample_rate
    rotor = np.exp(1j * phase)
    partial = rotor.copy()
    voiced = np.zeros(num_samples)
    for row in gains:
        voiced += at_samples(row) * partial.imag
        partial *= rotor
    voiced /= max(np.abs(voiced).max(), 1e-9)

    def band(low: float, high: float) -> np.ndarray:
        return coloured_noise(rng, num_samples, sample_rate, low, min(high, 0.48 * sample_rate))

    noise = (
        0.04 * voice.breathiness * at_samples(voicing) * band(400, 3500)
        + 0.12 * at_samples(hiss) * band(3500, 7800)
        + 0.12 * at_samples(hush) * band(1800, 5000)
        + 0.2 * at_samples(burst) * band(300, 7000)
    )
    signal = voiced + noise
    signal = (signal / max(np.abs(signal).max(), 1e-9)).astype(np.float32)
    return Speech(signal, hop, f0.astype(np.float32), voicing.astype(np.float32), openness.astype(np.float32))


# ---------------------------------------------------------------------------------------------
# Faces


def blend_ellipse(canvas: np.ndarray, colour: np.ndarray, cy: float, cx: float, ry: float, rx: float) -> None:
    """Draw an anti-aliased filled ellipse (float centre and radii) on ``canvas`` in place.

    On an RGB canvas this paints; on an RGBA layer with ``colour`` = (r, g, b, 1) it composites
    "over" in premultiplied form, so the layer can later be laid on any background."""
    height, width = canvas.shape[:2]
    y0, y1 = max(int(cy - ry) - 1, 0), min(int(cy + ry) + 2, height)
    x0, x1 = max(int(cx - rx) - 1, 0), min(int(cx + rx) + 2, width)
    if y0 >= y1 or x0 >= x1 or ry <= 0 or rx <= 0:
        return
    dy = ((np.arange(y0, y1, dtype=np.float32) - cy) / ry)[:, None] ** 2
    dx = ((np.arange(x0, x1, dtype=np.float32) - cx) / rx)[None, :] ** 2
    alpha = np.clip(0.5 - (np.sqrt(dy + dx) - 1) * min(rx, ry), 0, 1)[..., None]
    region = canvas[y0:y1, x0:x1]
    region += alpha * (colour - region)


@dataclass(frozen=True)
class Face:
    """How a speaker looks (fixed for the speaker)."""

    skin: np.ndarray
    hair: np.ndarray
    lips: np.ndarray
    shirt: np.ndarray
    width: float  # half-width of the face, fraction of the frame
    height: float  # half-height
    long_hair: bool
    beard: bool
    mouth_width: float  # fraction of the face's half-width
    eye_spacing: float  # fraction of the face's half-width


def speaker_face(rng: np.random.Generator, gender: str) -> Face:
    skin = SKIN_TONES[rng.integers(len(SKIN_TONES))] * rng.uniform(0.92, 1.05)
    return Face(
        skin=np.clip(skin, 0, 255),
        hair=HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))] * rng.uniform(0.85, 1.15),
        lips=np.clip(skin * np.array([0.85, 0.55, 0.55]) + (rng.uniform(0, 40) if gender == "f" else 0), 0, 255).astype(np.float32),
        shirt=random_colour(rng, (0.2, 0.9), (0.2, 0.9)),
        width=float(rng.uniform(0.17, 0.22)),
        height=float(rng.uniform(0.23, 0.28)),
        long_hair=bool(rng.uniform() < (0.8 if gender == "f" else 0.1)),
        beard=bool(gender == "m" and rng.uniform() < 0.4),
        mouth_width=float(rng.uniform(0.35, 0.5)),
        eye_spacing=float(rng.uniform(0.35, 0.48)),
    )


def draw_head(layer: np.ndarray, face: Face, cx: float, cy: float, size: float) -> None:
    """Draw the parts of a head that do not move with speech (shoulders, hair, face, brows,
    nose) centred at (cx, cy) on an RGBA ``layer`` (premultiplied)."""
    a, b = face.width * size, face.height * size

    def paint(colour: np.ndarray, *ellipse: float) -> None:
        blend_ellipse(layer, np.append(colour, 1.0).astype(np.float32), *ellipse)

    paint(face.shirt, cy + 1.95 * b, cx, 0.85 * b, 2.0 * a)
    if face.long_hair:
        paint(face.hair, cy + 0.25 * b, cx, 1.2 * b, 1.3 * a)
    paint(face.skin * 0.85, cy + 0.95 * b, cx, 0.5 * b, 0.45 * a)  # neck
    paint(face.skin, cy, cx, b, a)
    paint(face.hair, cy - 0.72 * b, cx, 0.42 * b, 1.02 * a)
    if face.beard:
        paint(face.hair, cy + 0.6 * b, cx, 0.4 * b, 0.75 * a)
    for side in (-1, 1):
        paint(face.hair * 0.8, cy - 0.29 * b, cx + side * face.eye_spacing * a, 0.035 * b, 0.22 * a)  # brow
    paint(face.skin * 0.82, cy + 0.15 * b, cx, 0.14 * b, 0.09 * a)  # nose


def draw_features(canvas: np.ndarray, face: Face, cx: float, cy: float, size: float, mouth_open: float, eyes_open: float,
                  mouth_gain: float = 1.0) -> tuple[tuple, tuple]:
    """Draw the eyes (``eyes_open`` 0..1) and the mouth (``mouth_open`` 0..1) of a head centred
    at (cx, cy) on an RGB ``canvas``; returns the face box and mouth box (x0, y0, x1, y1)."""
    a, b = face.width * size, face.height * size
    dark = np.array([35.0, 12.0, 12.0], dtype=np.float32)
    white = np.array([245.0, 245.0, 245.0], dtype=np.float32)
    for side in (-1, 1):
        ex, ey = cx + side * face.eye_spacing * a, cy - 0.12 * b
        blend_ellipse(canvas, white, ey, ex, 0.09 * b * eyes_open + 0.01, 0.16 * a)
        blend_ellipse(canvas, dark, ey, ex, 0.07 * b * eyes_open + 0.005, 0.07 * a)
    mouth_y, mouth_rx = cy + 0.48 * b, face.mouth_width * a
    lip_ry = 0.05 * b + 0.2 * b * mouth_open * mouth_gain
    blend_ellipse(canvas, face.lips, mouth_y, cx, lip_ry, mouth_rx)
    blend_ellipse(canvas, dark, mouth_y, cx, 0.18 * b * mouth_open * mouth_gain, 0.8 * mouth_rx)
    return (cx - a, cy - b, cx + a, cy + b), (cx - mouth_rx, mouth_y - lip_ry, cx + mouth_rx, mouth_y + lip_ry)


def lay_over(canvas: np.ndarray, layer: np.ndarray, dy: int, dx: int) -> None:
    """Composite a premultiplied RGBA ``layer`` shifted by (dy, dx) pixels over ``canvas``."""
    height, width = canvas.shape[:2]
    src = layer[max(-dy, 0) : height - max(dy, 0), max(-dx, 0) : width - max(dx, 0)]
    dst = canvas[max(dy, 0) : height + min(dy, 0), max(dx, 0) : width + min(dx, 0)]
    dst *= 1 - src[..., 3:]
    dst += src[..., :3]


# ---------------------------------------------------------------------------------------------
# Speakers, splits and clips


def speaker_id(index: int) -> str:
    """VoxCeleb1-style ids: id10001, id10002, ..."""
    return f"id{10001 + index}"


def speaker_gender(index: int) -> str:
    return "m" if index % 2 == 0 else "f"


def speaker_splits(config: SpeakersConfig) -> dict[int, str]:
    """Speaker index -> "train" / "val" / "test": disjoint speakers, each gender split alike."""
    rng = clip_rng(config.seed, "speakers", 999_999_999)  # the split draw, apart from any speaker's
    splits = {}
    for gender in ("m", "f"):
        members = [i for i in range(config.num_speakers) if speaker_gender(i) == gender]
        members = [members[j] for j in rng.permutation(len(members))]
        n_val = max(1, round(config.val_fraction * len(members)))
        n_test = max(1, round(config.test_fraction * len(members)))
        if len(members) - n_val - n_test < 1:
            raise ValueError(f"{len(members)} speakers of gender {gender!r} cannot fill train, val and test")
        for j, index in enumerate(members):
            splits[index] = "val" if j < n_val else "test" if j < n_val + n_test else "train"
    return splits


def video_id(rng: np.random.Generator) -> str:
    """A YouTube-like 11-character id, as VoxCeleb's folders have."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_"
    return alphabet[rng.integers(52)] + "".join(alphabet[i] for i in rng.integers(len(alphabet), size=10))


@dataclass(frozen=True)
class SpeakerJob:
    config: SpeakersConfig
    index: int
    split: str
    root: str


def render_speaker(job: SpeakerJob) -> dict:
    """Write every clip of one speaker; returns the speaker's row and its clips' rows."""
    config, index = job.config, job.index
    gender, sid = speaker_gender(index), speaker_id(index)
    speaker_rng = clip_rng(config.seed, "speakers", index)
    voice, face = speaker_voice(speaker_rng, gender), speaker_face(speaker_rng, gender)
    side, fps, sr, num_frames = config.size, config.fps, config.sample_rate, config.num_frames
    num_samples = int(round(num_frames * sr / fps))
    clip_rows = []
    for video in range(config.videos_per_speaker):
        look = clip_rng(config.seed, "speakers", index, video)
        vid = video_id(look)
        margin = side // 8
        background = texture(look, side + margin, side + margin)
        head_scale = look.uniform(*config.head_scale) * side
        home = np.array([0.5, 0.5]) * side + look.uniform(-0.06, 0.06, 2) * side
        lighting = look.uniform(0.8, 1.15)
        room_noise = float(look.uniform(0.001, 0.01))
        head = np.zeros((side, side, 4), dtype=np.float32)
        draw_head(head, face, home[0], home[1], head_scale)
        for clip in range(1, config.clips_per_video + 1):
            rng = clip_rng(config.seed, "speakers", index, video, clip)
            speech = synthesize_speech(voice, num_samples, sr, rng)
            loudness = frame_rms(speech.signal, num_frames, fps, sr)
            reference = max(float(np.percentile(loudness, 95)), 1e-6)
            control_per_frame = np.clip((np.arange(num_frames) / fps * sr / speech.hop).astype(int), 0, speech.openness.size - 1)
            mouth_open = np.clip(loudness / reference, 0, 1) ** 0.8 * (0.7 + 0.3 * speech.openness[control_per_frame])
            f0_per_frame = np.where(speech.voicing[control_per_frame] > 0.05, speech.f0[control_per_frame], 0.0)

            times = np.arange(num_frames) / fps
            sway = side * np.stack(
                [rng.uniform(0.01, 0.025) * np.sin(2 * np.pi * rng.uniform(0.15, 0.5) * times + rng.uniform(0, 6.3)),
                 rng.uniform(0.005, 0.015) * np.sin(2 * np.pi * rng.uniform(0.2, 0.6) * times + rng.uniform(0, 6.3))], axis=1)
            sway = np.round(sway).astype(np.int64)  # the head moves by whole pixels: drawn once, then shifted
            blinks = np.ones(num_frames)
            for start in np.flatnonzero(rng.uniform(size=num_frames) < 0.25 / fps):
                blinks[start : start + 3] = 0.1
            pan = panning_offsets(rng, num_frames, margin)
            frames = np.empty((num_frames, side, side, 3), dtype=np.uint8)
            face_boxes = np.zeros((num_frames, 4), dtype=np.float32)
            mouth_boxes = np.zeros((num_frames, 4), dtype=np.float32)
            for t in range(num_frames):
                dy, dx = pan[t]
                canvas = background[dy : dy + side, dx : dx + side].copy()
                lay_over(canvas, head, int(sway[t, 1]), int(sway[t, 0]))
                cx, cy = home + sway[t]
                face_boxes[t], mouth_boxes[t] = draw_features(canvas, face, cx, cy, head_scale, float(mouth_open[t]), float(blinks[t]),
                                                               config.mouth_gain)
                frames[t] = to_uint8(canvas * lighting)

            level = rng.uniform(0.05, 0.15)  # RMS, as loud as speech in the wild varies
            audio = level * speech.signal / max(float(np.sqrt(np.mean(speech.signal**2))), 1e-9)
            audio = audio + room_noise * coloured_noise(rng, num_samples, sr, 40, None, -1.0)
            audio = (audio * min(1.0, 0.95 / max(float(np.abs(audio).max()), 1e-9)))[None]
            relative = Path(sid) / vid / f"{clip:05d}.mp4"
            write_video(Path(job.root) / relative, frames, fps, audio, sr, audio_bitrate=64_000, video_options=VIDEO_OPTIONS)
            truth = Path("truth") / f"{sid}_{vid}_{clip:05d}.npz"
            write_npz(
                Path(job.root) / truth, mouth_open=mouth_open.astype(np.float32), face_box=face_boxes, mouth_box=mouth_boxes,
                f0=f0_per_frame.astype(np.float32), loudness=loudness, fps=np.float64(fps), sample_rate=np.int64(sr),
            )
            clip_rows.append(
                dict(
                    path=relative.as_posix(), speaker_id=sid, gender=gender, split=job.split, video_id=vid, clip=clip,
                    num_frames=num_frames, duration=num_frames / fps, fps=fps, sample_rate=sr, width=side, height=side,
                    truth=truth.as_posix(),
                )
            )
    speaker_row = dict(
        speaker_id=sid, gender=gender, split=job.split, f0_hz=voice.f0, formant_scale=voice.formant_scale,
        syllable_rate_hz=voice.syllable_rate, tilt=voice.tilt, breathiness=voice.breathiness, num_clips=len(clip_rows),
    )
    return dict(speaker=speaker_row, clips=clip_rows)


SPEAKER_COLUMNS = ("speaker_id", "gender", "split", "f0_hz", "formant_scale", "syllable_rate_hz", "tilt", "breathiness", "num_clips")
CLIP_COLUMNS = ("path", "speaker_id", "gender", "split", "video_id", "clip", "num_frames", "duration", "fps", "sample_rate", "width",
                "height", "truth")


def build_speakers(config: SpeakersConfig, root: Path, workers: int, progress: bool) -> None:
    """Write every speaker's clips and the tables ``speakers.csv`` and ``clips.csv``."""
    config.validate()
    splits = speaker_splits(config)
    jobs = [SpeakerJob(config, index, splits[index], str(root)) for index in range(config.num_speakers)]
    results = parallel_map(render_speaker, jobs, workers, "speakers" if progress else None)
    write_table(root / "speakers.csv", [r["speaker"] for r in results], SPEAKER_COLUMNS)
    write_table(root / "clips.csv", [row for r in results for row in r["clips"]], CLIP_COLUMNS)


def load_speakers(root: str | Path):
    """``(speakers, clips)``: the speaker table and the clip table (pandas), as VoxCeleb's
    metadata: one row per speaker with gender and split, one row per clip."""
    import pandas as pd

    root = Path(root)
    return pd.read_csv(root / "speakers.csv"), pd.read_csv(root / "clips.csv")


# ---------------------------------------------------------------------------------------------
# Talking heads among the pretraining clips (AudioSet's speech)


@dataclass(frozen=True)
class TalkersConfig:
    """Talking heads written as pretraining clips: the scenes' size, length, frame and audio rates and
    container, with off-screen sound and noise as the scenes have (docs/world.md, "Why pretraining
    sees talking heads"). Every clip is a new person drawn from this part's own random stream, so no
    talker is a speaker of the ``speakers`` part (whose test speakers score separation)."""

    num_clips: int = 200  #: talking-head clips written; :class:`avlib.config.PretrainConfig` sets how many train
    clip_seconds: float = 10.1  #: as the scenes (paper: 10.1 s AudioSet clips)
    fps: float = 30000 / 1001
    sample_rate: int = 22050  #: as the scenes; stereo, the voice in the middle
    size: int = 128  #: as the scenes: square frames
    head_scale: tuple[float, float] = (1.2, 1.8)  #: head size, times the frame side: from half-length shots to close-ups
    mouth_gain: float = 1.6  #: as the speakers part
    offscreen_probability: float = 0.2  #: as the scenes: sound with no visible source
    noise_probability: float = 0.3  #: as the scenes
    seed: int = 0

    @property
    def num_frames(self) -> int:
        return clip_frames(self.clip_seconds, self.fps)

    def validate(self) -> None:
        if self.num_clips < 1:
            raise ValueError(f"TalkersConfig.num_clips must be >= 1, got {self.num_clips}")
        check_frame_size("TalkersConfig", self.size)


@dataclass(frozen=True)
class TalkerJob:
    config: TalkersConfig
    index: int
    root: str


def talker_name(index: int) -> str:
    return f"talker_{index:05d}"


def offscreen_sound(rng: np.random.Generator, num_frames: int, num_samples: int, fps: float, sample_rate: int) -> np.ndarray:
    """Sound with no visible source (2 x N): irregular impacts or a hum from one side, as the scenes' off-screen sound."""
    out = np.zeros((2, num_samples), dtype=np.float32)
    timbre = object_timbre(rng, str(rng.choice(SHAPES)), rng.uniform())
    side_gain = stereo_gains(rng.uniform())
    if rng.uniform() < 0.6:
        strike = impact_sound(timbre, sample_rate, rng)
        frame = int(rng.integers(1, 30))
        while frame <= num_frames - 2:
            add_at(out, strike, sample_at_frame(frame, fps, sample_rate), 0.6 * float(rng.uniform(0.4, 1.0)) * side_gain)
            frame += int(rng.integers(8, 45))
    else:
        level = np.clip(np.convolve(rng.uniform(-0.5, 1, num_frames // 15 + 2), np.ones(2) / 2, "same"), 0, 1)
        envelope = np.interp(np.arange(num_samples), np.linspace(0, num_samples, level.size), level).astype(np.float32)
        out += 0.25 * envelope * harmonic_tone(0.5 * timbre.frequencies[0], num_samples, sample_rate, 0.6, rng) * side_gain[:, None]
    return out


def render_talker(job: TalkerJob) -> dict:
    """Write one talking-head pretraining clip (a new person, speaking in phrases) and its truth; returns its row."""
    config, index = job.config, job.index
    rng = clip_rng(config.seed, "talkers", index)
    gender = "m" if rng.uniform() < 0.5 else "f"
    voice, face = speaker_voice(rng, gender), speaker_face(rng, gender)
    side, fps, sr, num_frames = config.size, config.fps, config.sample_rate, config.num_frames
    num_samples = int(round(num_frames * sr / fps))
    margin = side // 8
    background = texture(rng, side + margin, side + margin)
    head_scale = rng.uniform(*config.head_scale) * side
    home = np.array([0.5, 0.5]) * side + rng.uniform(-0.08, 0.08, 2) * side
    lighting = rng.uniform(0.8, 1.15)
    head = np.zeros((side, side, 4), dtype=np.float32)
    draw_head(head, face, home[0], home[1], head_scale)

    speech = synthesize_speech(voice, num_samples, sr, rng)
    loudness = frame_rms(speech.signal, num_frames, fps, sr)
    reference = max(float(np.percentile(loudness, 95)), 1e-6)
    control_per_frame = np.clip((np.arange(num_frames) / fps * sr / speech.hop).astype(int), 0, speech.openness.size - 1)
    mouth_open = np.clip(loudness / reference, 0, 1) ** 0.8 * (0.7 + 0.3 * speech.openness[control_per_frame])
    times = np.arange(num_frames) / fps
    sway = side * np.stack(
        [rng.uniform(0.01, 0.025) * np.sin(2 * np.pi * rng.uniform(0.15, 0.5) * times + rng.uniform(0, 6.3)),
         rng.uniform(0.005, 0.015) * np.sin(2 * np.pi * rng.uniform(0.2, 0.6) * times + rng.uniform(0, 6.3))], axis=1)
    sway = np.round(sway).astype(np.int64)
    blinks = np.ones(num_frames)
    for start in np.flatnonzero(rng.uniform(size=num_frames) < 0.25 / fps):
        blinks[start : start + 3] = 0.1
    pan = panning_offsets(rng, num_frames, margin)
    frames = np.empty((num_frames, side, side, 3), dtype=np.uint8)
    mouth_boxes = np.zeros((num_frames, 4), dtype=np.float32)
    face_boxes = np.zeros((num_frames, 4), dtype=np.float32)
    for t in range(num_frames):
        dy, dx = pan[t]
        canvas = background[dy : dy + side, dx : dx + side].copy()
        lay_over(canvas, head, int(sway[t, 1]), int(sway[t, 0]))
        cx, cy = home + sway[t]
        face_boxes[t], mouth_boxes[t] = draw_features(canvas, face, cx, cy, head_scale, float(mouth_open[t]), float(blinks[t]),
                                                       config.mouth_gain)
        frames[t] = to_uint8(canvas * lighting)

    level = rng.uniform(0.05, 0.15)
    voice_track = level * speech.signal / max(float(np.sqrt(np.mean(speech.signal**2))), 1e-9)
    mix = np.stack([voice_track, voice_track]).astype(np.float32)  # the talker is in the middle of the picture
    offscreen = "none"
    if rng.uniform() < config.offscreen_probability:
        mix += offscreen_sound(rng, num_frames, num_samples, fps, sr)
        offscreen = "yes"
    noise_rms = float(rng.uniform(0.003, 0.02)) if rng.uniform() < config.noise_probability else 0.0
    mix += noise_rms * np.stack([coloured_noise(rng, num_samples, sr, 30, None, -1.0) for _ in range(2)])
    gain = min(1.0, 0.95 / max(float(np.abs(mix).max()), 1e-6))
    mix *= gain

    name = talker_name(index)
    relative = Path("clips") / f"{name}.mp4"
    write_video(Path(job.root) / relative, frames, fps, mix, sr, video_options=VIDEO_OPTIONS)
    truth = Path("truth") / f"{name}.npz"
    write_npz(Path(job.root) / truth, mouth_open=mouth_open.astype(np.float32), face_box=face_boxes, mouth_box=mouth_boxes,
              loudness=(gain * level / max(float(np.sqrt(np.mean(speech.signal**2))), 1e-9) * loudness).astype(np.float32),
              fps=np.float64(fps), sample_rate=np.int64(sr))
    return dict(clip=name, path=relative.as_posix(), truth=truth.as_posix(), gender=gender, f0_hz=voice.f0,
                head_scale=head_scale / side, num_frames=num_frames, duration=num_frames / fps, fps=fps, sample_rate=sr,
                width=side, height=side, offscreen=offscreen, noise_rms=noise_rms * gain)


TALKER_COLUMNS = ("clip", "path", "truth", "gender", "f0_hz", "head_scale", "num_frames", "duration", "fps", "sample_rate", "width",
                  "height", "offscreen", "noise_rms")


def build_talkers(config: TalkersConfig, root: Path, workers: int, progress: bool) -> None:
    """Write every talking-head clip and the table ``talkers.csv``."""
    config.validate()
    jobs = [TalkerJob(config, index, str(root)) for index in range(config.num_clips)]
    rows = parallel_map(render_talker, jobs, workers, "talkers" if progress else None)
    write_table(root / "talkers.csv", rows, TALKER_COLUMNS)


def load_talkers(root: str | Path):
    """The talking-head clips' table (pandas, one row per clip; ``path`` and ``truth`` relative to ``root``)."""
    import pandas as pd

    return pd.read_csv(Path(root) / "talkers.csv")
