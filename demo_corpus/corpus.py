"""The offline demo corpus: AVSpeech-format CSVs over synthetic videos of real faces that speak.

Each speaker is one real LFW face (scikit-image's subset, only faces dlib HOG finds) and one
espeak-ng voice. **The pairing is synthetic**: the voice (variant, pitch, speed) is a fixed function
of the face's dlib descriptor (:func:`voice_for_face`), so a model can learn voice -> face and the
link carries over to speakers it never saw. Nothing here says anything about real people's voices.

Each speaker gets one "video" ``<ytid>.mp4`` (640x360, H.264 5 fps + AAC) holding ``clips`` segments
separated by silent gaps; the CSVs give each segment's start/end in the video and the face centre. It is
also published as YouTube serves it (``demo_corpus.dash``): ``<ytid>.mpd`` listing a video-only and an
audio-only format (its own streams, not re-encoded), which the demo downloads.
Everything that defines the corpus (speakers, ytids, times, positions, voices) comes from SHA-256 of
the seed, never from a random generator whose stream could change between library versions.
"""

from __future__ import annotations

import base64
import csv
import functools
import hashlib
import json
import multiprocessing
import os
import shutil
import subprocess
import tempfile
import time
import wave
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from demo_corpus import dash
from demo_corpus.faces import FRAME_HEIGHT, FRAME_WIDTH, compose_frame, face_rgb
from speech2face import flags
from speech2face.flags import flag

GENERATOR_VERSION = 3  # 3: DASH formats beside each video; 2: voices from the principal axes of the descriptors
MANIFEST_NAME = "corpus_manifest.json"
TRAIN_CSV, TEST_CSV = "avspeech_train.csv", "avspeech_test.csv"

FACE_SIZE = 150  # pixels; the size detectable_faces() checked
FPS = 5  # the picture is static within a segment, so few frames are needed
AUDIO_RATE = 22050  # espeak-ng's native rate
SAMPLES_PER_FRAME = AUDIO_RATE // FPS
GAP_FRAMES = 5  # 1 s of silence and an empty frame before, between and after segments
LONG_FRAMES = range(30, 36)  # 6.0-7.0 s segments
SHORT_FRAMES = range(10, 21)  # 2.0-4.0 s segments, which the pipeline must loop to 6 s
SHORT_EVERY, DISTRACTOR_EVERY = 4, 3  # corpus-wide segment number n: short if n % 4 == 3, distractor if n % 3 == 1
POSITION_TRIES = 8
POSITION_TOLERANCE = 0.06  # detected face centre vs the pasted centre, in fractions of the frame
MAX_CLIPS_PER_SPEAKER = 10

# A fixed, sorted list of espeak-ng variants (never list_variants(), whose content depends on the install).
VOICE_VARIANTS = (
    "Alicia", "Andrea", "Annie", "aunty", "belinda", "f1", "f2", "f3",
    "f4", "f5", "m1", "m2", "m3", "m4", "m5", "m7",
)  # fmt: skip
PITCH_LEVELS = tuple(range(15, 91, 5))  # espeak-ng -p, 16 levels
SPEED_LEVELS = tuple(range(120, 211, 10))  # espeak-ng -s, words per minute, 10 levels
DESCRIPTOR_DIM = 128
VOICE_AXES = 4  # variant (2 axes, 4 x 4 variants), pitch, speed
# written by write_voice_axes(): the axes, and the LFW faces dlib detects that they were fitted on
VOICE_AXES_FILE = Path(__file__).with_name("voice_axes.json")

# Harvard sentences (IEEE 1969, public domain); a segment speaks three consecutive ones.
SENTENCES = (
    "The birch canoe slid on the smooth planks.", "Glue the sheet to the dark blue background.",
    "It's easy to tell the depth of a well.", "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.", "The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck.", "The hogs were fed chopped corn and garbage.",
    "Four hours of steady work faced us.", "A large size in stockings is hard to sell.",
    "The boy was there when the sun rose.", "A rod is used to catch pink salmon.",
    "The source of the huge river is the clear spring.", "Kick the ball straight and follow through.",
    "Help the woman get back to her feet.", "A pot of tea helps to pass the evening.",
    "Smoky fires lack flame and heat.", "The soft cushion broke the man's fall.",
    "The salt breeze came across from the sea.", "The girl at the booth sold fifty bonds.",
    "The small pup gnawed a hole in the sock.", "The fish twisted and turned on the bent hook.",
    "Press the pants and sew a button on the vest.", "The swan dive was far short of perfect.",
    "The beauty of the view stunned the young boy.", "Two blue fish swam in the tank.",
    "Her purse was full of useless trash.", "The colt reared and threw the tall rider.",
    "It snowed, rained, and hailed the same morning.", "Read verse out loud for pleasure.",
    "Hoist the load to your left shoulder.", "Take the winding path to reach the lake.",
)  # fmt: skip
SENTENCES_PER_SEGMENT = 3


class CorpusError(RuntimeError):
    """The demo corpus cannot be generated as asked (bad size, missing tool, undetectable face)."""


@dataclass(frozen=True)
class CorpusConfig:
    """What defines a corpus; the same config always gives the same ytids, CSVs and voices."""

    # of the 93 LFW faces dlib detects: more speakers, a better-learnt voice->face link
    speakers: int = flag(90, help="number of speakers, at most the ~93 LFW faces dlib detects", minimum=2)
    clips_per_speaker: int = flag(3, help="segments per speaker's video", minimum=1, maximum=MAX_CLIPS_PER_SPEAKER)
    test_speakers: int = flag(24, help="speakers held out in avspeech_test.csv", minimum=1)
    seed: int = flag(0, help="seed for which faces speak, ytids, positions and texts", minimum=0)

    def problems(self) -> list[str]:
        if self.test_speakers >= self.speakers:
            return [f"--test-speakers must be in 1..speakers-1 = 1..{self.speakers - 1} so both CSVs have speakers, "
                    f"got {self.test_speakers}"]  # fmt: skip
        return []

    def validate(self) -> None:
        flags.validate(self)


@dataclass(frozen=True)
class VoiceParams:
    """An espeak-ng voice: ``-v en+<variant> -p <pitch> -s <speed>``."""

    variant: str
    pitch: int
    speed: int


def _hash_unit(*key) -> float:
    """A uniform number in [0, 1) from SHA-256 of ``key``: the same on every machine and version."""
    digest = hashlib.sha256(repr(key).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@functools.cache
def voice_axes() -> tuple[np.ndarray, np.ndarray]:
    """The 4 descriptor axes voices are made from (4, 128) and each projection's deciles (4, 11).

    They are the top principal axes of the detectable LFW faces' dlib descriptors (see
    :func:`fit_voice_axes`), stored rounded in ``voice_axes.json`` so every machine quantises alike.
    Principal axes carry a third of the between-face variance; random directions carried about 3 %,
    too little for a model to learn faces from voices.
    """
    stored = json.loads(VOICE_AXES_FILE.read_text())
    return np.asarray(stored["axes"], np.float64), np.asarray(stored["deciles"], np.float64)


def stored_detectable_faces() -> list[int]:
    """The LFW faces dlib detects at ``FACE_SIZE`` (``demo_corpus.faces.detectable_faces``), as stored beside
    the axes: finding them again costs ~10 s of HOG detection; the corpus's tests check the stored answer."""
    return json.loads(VOICE_AXES_FILE.read_text())["detectable_faces"]


def fit_voice_axes(face_indices: list[int]) -> dict:
    """Principal axes of these faces' descriptors, each signed so its largest component is positive
    (SVD signs are arbitrary), and the deciles of the faces' projections on them."""
    descriptors = np.stack([face_descriptor(index) for index in face_indices])
    _, singular, rows = np.linalg.svd(descriptors - descriptors.mean(axis=0), full_matrices=False)
    axes = rows[:VOICE_AXES]
    axes *= np.sign(axes[np.arange(VOICE_AXES), np.abs(axes).argmax(axis=1)])[:, None]
    deciles = np.quantile(descriptors @ axes.T, np.linspace(0.0, 1.0, 11), axis=0).T
    return {
        "faces": len(face_indices),
        "variance_share": round(float((singular[:VOICE_AXES] ** 2).sum() / (singular**2).sum()), 4),
        "axes": np.round(axes, 6).tolist(),
        "deciles": np.round(deciles, 4).tolist(),
    }


def write_voice_axes() -> dict:
    """Refit ``voice_axes.json`` from the detectable LFW faces (only if dlib or the faces change)."""
    from demo_corpus.faces import detectable_faces

    faces = detectable_faces(FACE_SIZE)
    fitted = fit_voice_axes(faces) | {"detectable_faces": faces}
    VOICE_AXES_FILE.write_text(json.dumps(fitted) + "\n")
    voice_axes.cache_clear()
    return fitted


def _level(projection: float, deciles: np.ndarray, levels: int) -> int:
    """Quantise a projection into ``levels`` bins, about equally common over the LFW faces.

    Its share of LFW faces below it (the deciles, interpolated; 0 or 1 outside) picks the bin.
    """
    share = float(np.interp(projection, deciles, np.linspace(0.0, 1.0, 11)))
    return min(int(share * levels), levels - 1)


def voice_for_face(descriptor) -> VoiceParams:
    """The synthetic voice of the face with this 128-D dlib descriptor: a pure, fixed function.

    The descriptor is projected onto four fixed axes (:func:`voice_axes`); projections 0
    and 1 pick one of 4 x 4 variants of :data:`VOICE_VARIANTS`, projection 2 the pitch and 3 the speed,
    each quantised by :func:`_level`.
    Similar faces get similar voices, which is what makes the link learnable for unseen speakers.
    """
    vector = np.asarray(descriptor, dtype=np.float64)
    if vector.shape != (DESCRIPTOR_DIM,) or not np.all(np.isfinite(vector)):
        raise ValueError(f"descriptor must be a finite {DESCRIPTOR_DIM}-vector (dlib), got shape {vector.shape}")
    axes, deciles = voice_axes()
    projections = axes @ vector
    variant = _level(projections[0], deciles[0], 4) * 4 + _level(projections[1], deciles[1], 4)
    return VoiceParams(
        variant=VOICE_VARIANTS[variant],
        pitch=PITCH_LEVELS[_level(projections[2], deciles[2], len(PITCH_LEVELS))],
        speed=SPEED_LEVELS[_level(projections[3], deciles[3], len(SPEED_LEVELS))],
    )


@functools.cache
def _dlib_embedder():
    from speech2face.embedders.dlib import DlibFace

    return DlibFace()


def face_descriptor(face_index: int) -> np.ndarray:
    """The canonical dlib descriptor of LFW face ``face_index``: alone at the centre of a 640x360 frame,
    found by HOG, cropped by ``crop_face`` and embedded by ``DlibFace`` (float64, shape (128,))."""
    from speech2face.faces import crop_face, detect_faces

    frame = compose_frame([(face_rgb(face_index, FACE_SIZE), 0.5, 0.5)])
    boxes = detect_faces(frame)
    if len(boxes) != 1:
        raise CorpusError(f"LFW face {face_index}: dlib found {len(boxes)} faces at the centre, expected 1")
    return _dlib_embedder().embed(crop_face(frame, boxes[0])[None])[0].astype(np.float64)


def make_ytid(seed: int, face_index: int) -> str:
    """An 11-character YouTube-like id ([A-Za-z0-9_-]) for this seed and speaker."""
    digest = hashlib.sha256(f"speech2face demo ytid {seed} {face_index}".encode()).digest()
    return base64.urlsafe_b64encode(digest[:9]).decode()[:11]


@dataclass
class SegmentPlan:
    number: int  # corpus-wide, decides short/distractor
    frames: int
    text: str
    distractor_face: int | None
    # Filled in by the renderer:
    start: float = 0.0
    end: float = 0.0
    distractor_xy: tuple[float, float] | None = None


@dataclass
class SpeakerPlan:
    rank: int
    face_index: int
    ytid: str
    split: str
    segments: list[SegmentPlan]
    # Filled in by the renderer:
    x: float = 0.0
    y: float = 0.0
    voice: dict = field(default_factory=dict)
    video_bytes: int = 0


def plan_corpus(config: CorpusConfig, detectable: list[int]) -> list[SpeakerPlan]:
    """Which faces speak, their ytids, splits and segments (texts, lengths, distractors)."""
    config.validate()
    if config.speakers > len(detectable):
        raise CorpusError(
            f"asked for {config.speakers} speakers but dlib detects only {len(detectable)} of the LFW faces; "
            f"use --speakers {len(detectable)} or fewer"
        )
    ordered = sorted(detectable, key=lambda index: _hash_unit(config.seed, "speaker", index))
    chosen, spare = ordered[: config.speakers], ordered[config.speakers :]
    test = set(sorted(chosen, key=lambda index: _hash_unit(config.seed, "split", index))[: config.test_speakers])
    plans = []
    for rank, face_index in enumerate(chosen):
        # Distractors are faces outside the corpus when there are any, so no speaker's face leaks into another's clips.
        pool = spare or [other for other in chosen if other != face_index]
        first_sentence = int(_hash_unit(config.seed, "text", face_index) * len(SENTENCES))
        segments = []
        for clip in range(config.clips_per_speaker):
            number = rank * config.clips_per_speaker + clip
            lengths = SHORT_FRAMES if number % SHORT_EVERY == SHORT_EVERY - 1 else LONG_FRAMES
            frames = lengths[int(_hash_unit(config.seed, "length", number) * len(lengths))]
            start = first_sentence + clip * SENTENCES_PER_SEGMENT
            text = " ".join(SENTENCES[(start + j) % len(SENTENCES)] for j in range(SENTENCES_PER_SEGMENT))
            distractor = None
            if number % DISTRACTOR_EVERY == 1:
                distractor = pool[int(_hash_unit(config.seed, "distractor", number) * len(pool))]
            segments.append(SegmentPlan(number=number, frames=frames, text=text, distractor_face=distractor))
        split = "test" if face_index in test else "train"
        plans.append(SpeakerPlan(rank, face_index, make_ytid(config.seed, face_index), split, segments))
    return plans


# --- Rendering one speaker's video (runs in a worker process) ---------------------------------------


def _faces_match(frame: np.ndarray, x: float, y: float, count: int) -> bool:
    """dlib finds exactly ``count`` faces and the nearest is centred within tolerance of (x, y)."""
    from speech2face.faces import detect_faces, face_distance

    boxes = detect_faces(frame)
    return len(boxes) == count and min(face_distance(b, frame.shape, x, y) for b in boxes) <= POSITION_TOLERANCE


def _place_speaker(seed: int, plan: SpeakerPlan, face: np.ndarray) -> tuple[float, float, np.ndarray]:
    """The first of a few seeded positions where dlib finds the face where we put it."""
    for attempt in range(POSITION_TRIES):
        x = round(0.2 + 0.6 * _hash_unit(seed, "x", plan.face_index, attempt), 4)
        y = round(0.3 + 0.4 * _hash_unit(seed, "y", plan.face_index, attempt), 4)
        frame = compose_frame([(face, x, y)])
        if _faces_match(frame, x, y, 1):
            return x, y, frame
    raise CorpusError(f"LFW face {plan.face_index} was not detected at any of {POSITION_TRIES} positions")


def _with_distractor(seed: int, segment: SegmentPlan, face: np.ndarray, x: float, y: float) -> np.ndarray | None:
    """A frame with a second face on the far side of the frame, both detected; None if no position works."""
    other = face_rgb(segment.distractor_face, FACE_SIZE)
    other_x = min(max(x - 0.45 if x >= 0.5 else x + 0.45, 0.15), 0.85)
    for attempt in range(POSITION_TRIES // 2):
        other_y = round(0.3 + 0.4 * _hash_unit(seed, "distractor y", segment.number, attempt), 4)
        frame = compose_frame([(face, x, y), (other, other_x, other_y)])
        if _faces_match(frame, x, y, 2):
            segment.distractor_xy = (round(other_x, 4), other_y)
            return frame
    return None


def _speech(text: str, voice: VoiceParams, frames: int, work_dir: Path) -> np.ndarray:
    """int16 speech exactly ``frames`` video frames long: cut (with a 20 ms fade) or padded with silence."""
    from demo_corpus.voices import speak

    path = speak(text, work_dir / "speech.wav", variant=voice.variant, pitch=voice.pitch, speed=voice.speed)
    with wave.open(str(path)) as reader:
        if reader.getframerate() != AUDIO_RATE or reader.getnchannels() != 1 or reader.getsampwidth() != 2:
            raise CorpusError(
                f"espeak-ng wrote {reader.getframerate()} Hz x{reader.getnchannels()} channels, "
                f"expected {AUDIO_RATE} Hz mono 16-bit"
            )
        samples = np.frombuffer(reader.readframes(reader.getnframes()), dtype="<i2").astype(np.float32)
    length = frames * SAMPLES_PER_FRAME
    if samples.size >= length:
        samples = samples[:length].copy()
        fade = AUDIO_RATE // 50
        samples[-fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    else:
        samples = np.pad(samples, (0, length - samples.size))
    return samples.astype(np.int16)


def _encode(path: Path, runs: list[tuple[int, np.ndarray]], audio: np.ndarray, keyframes: list[float]) -> None:
    """H.264 (5 fps, yuv420p) + AAC mp4 from ``(frame count, RGB frame)`` runs and int16 audio."""
    with tempfile.TemporaryDirectory() as tmp:
        audio_path = Path(tmp) / "audio.wav"
        with wave.open(str(audio_path), "wb") as writer:
            writer.setnchannels(1)
            writer.setsampwidth(2)
            writer.setframerate(AUDIO_RATE)
            writer.writeframes(audio.astype("<i2").tobytes())
        command = [
            "ffmpeg", "-nostdin", "-y", "-loglevel", "error",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{FRAME_WIDTH}x{FRAME_HEIGHT}", "-r", str(FPS), "-i", "-",
            "-i", str(audio_path),
            "-c:v", "libx264", "-preset", "ultrafast", "-tune", "stillimage", "-pix_fmt", "yuv420p",
            "-force_key_frames", ",".join(f"{t:.1f}" for t in keyframes),
            "-c:a", "aac", "-aac_coder", "fast", "-b:a", "48k", "-ac", "1",
            "-movflags", "+faststart", "-f", "mp4", str(path),
        ]  # fmt: skip
        with open(Path(tmp) / "ffmpeg.log", "w+b") as log:
            process = subprocess.Popen(command, stdin=subprocess.PIPE, stderr=log)
            try:
                for count, frame in runs:
                    process.stdin.write(frame.tobytes() * count)
            except BrokenPipeError:
                pass  # ffmpeg exited early; its log says why
            finally:
                process.stdin.close()
            returncode = process.wait()
            log.seek(0)
            if returncode != 0:
                raise CorpusError(f"ffmpeg failed to encode {path.name}: {log.read().decode(errors='replace')[-500:]}")


def render_speaker(plan: SpeakerPlan, seed: int, out_dir: str) -> SpeakerPlan:
    """Write ``<ytid>.mp4`` (and its DASH formats) for one speaker; returns the plan with positions, times
    and voice filled in."""
    voice = voice_for_face(face_descriptor(plan.face_index))
    face = face_rgb(plan.face_index, FACE_SIZE)
    plan.x, plan.y, speaker_frame = _place_speaker(seed, plan, face)
    empty_frame = compose_frame([])
    runs, audio_parts, keyframes = [(GAP_FRAMES, empty_frame)], [np.zeros(GAP_FRAMES * SAMPLES_PER_FRAME, np.int16)], []
    position = GAP_FRAMES
    with tempfile.TemporaryDirectory() as work_dir:
        for segment in plan.segments:
            frame = speaker_frame
            if segment.distractor_face is not None:
                frame = _with_distractor(seed, segment, face, plan.x, plan.y)
                if frame is None:
                    segment.distractor_face, frame = None, speaker_frame
            segment.start, segment.end = position / FPS, (position + segment.frames) / FPS
            keyframes += [segment.start, segment.end]
            runs += [(segment.frames, frame), (GAP_FRAMES, empty_frame)]
            audio_parts += [_speech(segment.text, voice, segment.frames, Path(work_dir)),
                            np.zeros(GAP_FRAMES * SAMPLES_PER_FRAME, np.int16)]  # fmt: skip
            position += segment.frames + GAP_FRAMES
        video = Path(out_dir) / f"{plan.ytid}.mp4"
        partial = video.with_suffix(".mp4.partial")
        _encode(partial, runs, np.concatenate(audio_parts), keyframes)
        os.replace(partial, video)
    dash.publish(video, out_dir, plan.ytid, [dash.COPY_H264, dash.COPY_AAC])  # the manifest last: complete
    plan.voice, plan.video_bytes = asdict(voice), video.stat().st_size
    return plan


# --- The whole corpus -------------------------------------------------------------------------------


def _check_tools() -> None:
    from demo_corpus.voices import list_variants

    for binary, package in (("ffmpeg", "ffmpeg"), ("espeak-ng", "espeak-ng")):
        if shutil.which(binary) is None:
            raise CorpusError(f"{binary} was not found on PATH; install it: apt-get install {package}")
    missing = sorted(set(VOICE_VARIANTS) - {variant.name for variant in list_variants()})
    if missing:
        raise CorpusError(f"espeak-ng lacks the voice variants {missing}; install the full espeak-ng-data package")


def read_manifest(out_dir: str | Path) -> dict | None:
    path = Path(out_dir) / MANIFEST_NAME
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def existing_corpus(out_dir: str | Path, config: CorpusConfig) -> dict | None:
    """The manifest of a complete corpus for ``config`` already in ``out_dir`` (all files present), else None."""
    manifest = read_manifest(out_dir)
    wanted = (GENERATOR_VERSION, asdict(config))
    if not manifest or (manifest.get("generator_version"), manifest.get("config")) != wanted:
        return None
    out_dir = Path(out_dir)
    sizes = {speaker["video"]: speaker["video_bytes"] for speaker in manifest["speakers"]}
    videos_ok = all(
        (out_dir / name).is_file()
        and (out_dir / name).stat().st_size == n
        and (out_dir / name).with_suffix(".mpd").is_file()
        for name, n in sizes.items()
    )
    return manifest if videos_ok and all((out_dir / name).is_file() for name in (TRAIN_CSV, TEST_CSV)) else None


def _remove_previous(out_dir: Path) -> None:
    """Delete what an earlier corpus in ``out_dir`` wrote, as its manifest lists it (nothing else)."""
    manifest = read_manifest(out_dir)
    if manifest is None:
        return
    (out_dir / MANIFEST_NAME).unlink(missing_ok=True)
    for name in [TRAIN_CSV, TEST_CSV, *(speaker.get("video", "") for speaker in manifest.get("speakers", []))]:
        if name and "/" not in name:
            (out_dir / name).unlink(missing_ok=True)
            (out_dir / name).with_suffix(".mpd").unlink(missing_ok=True)
            shutil.rmtree(out_dir / Path(name).stem, ignore_errors=True)  # its DASH formats


def _write_csv(path: Path, plans: list[SpeakerPlan]) -> None:
    with open(path, "w", newline="") as file:
        writer = csv.writer(file, lineterminator="\n")
        for plan in plans:
            for segment in plan.segments:
                times = [f"{segment.start:.6f}", f"{segment.end:.6f}"]
                writer.writerow([plan.ytid, *times, f"{plan.x:.6f}", f"{plan.y:.6f}"])


def _manifest(config: CorpusConfig, plans: list[SpeakerPlan], wall_s: float) -> dict:
    return {
        "description": (
            "SYNTHETIC demo corpus for Speech2Face. The faces are real LFW crops shipped with scikit-image; the "
            "voices are espeak-ng speech. The pairing of voice and face is synthetic: each speaker's voice "
            "(variant, pitch, speed) is a fixed function of the face's dlib descriptor "
            "(demo_corpus.corpus.voice_for_face). It says nothing about how real people sound."
        ),
        "synthetic_pairing": True,
        "generator_version": GENERATOR_VERSION,
        "config": asdict(config),
        "csv": {"train": TRAIN_CSV, "test": TEST_CSV, "format": "ytid,start,end,x,y (no header, AVSpeech)"},
        "url_template_hint": "http://127.0.0.1:PORT/{ytid}.mpd (from: python -m demo_corpus --serve PORT)",
        "video": {
            "width": FRAME_WIDTH,
            "height": FRAME_HEIGHT,
            "fps": FPS,
            "face_size": FACE_SIZE,
            "codecs": "h264 yuv420p + aac mono",
            "audio_rate": AUDIO_RATE,
        },  # fmt: skip
        "voice_mapping": {
            "variants": list(VOICE_VARIANTS),
            "pitch_levels": list(PITCH_LEVELS),
            "speed_levels_wpm": list(SPEED_LEVELS),
        },  # fmt: skip
        "generation_wall_s": round(wall_s, 1),
        "speakers": [
            {
                "ytid": plan.ytid,
                "face_index": plan.face_index,
                "split": plan.split,
                "voice": plan.voice,
                "x": plan.x,
                "y": plan.y,
                "video": f"{plan.ytid}.mp4",
                "video_bytes": plan.video_bytes,
                "segments": [
                    {
                        "start": s.start,
                        "end": s.end,
                        "text": s.text,
                        "distractor_face": s.distractor_face,
                        "distractor_xy": list(s.distractor_xy) if s.distractor_xy else None,
                    }
                    for s in plan.segments
                ],
            }
            for plan in plans
        ],  # fmt: skip
    }


def summarize(manifest: dict) -> dict:
    """Counts a person wants to see: speakers, clips, the split, short and distractor segments."""
    speakers = manifest["speakers"]
    segments = [(speaker["split"], s) for speaker in speakers for s in speaker["segments"]]
    return {
        "speakers": len(speakers),
        "clips": len(segments),
        "train_speakers": sum(speaker["split"] == "train" for speaker in speakers),
        "test_speakers": sum(speaker["split"] == "test" for speaker in speakers),
        "train_clips": sum(split == "train" for split, _ in segments),
        "test_clips": sum(split == "test" for split, _ in segments),
        "short_clips": sum(s["end"] - s["start"] < 6.0 for _, s in segments),
        "distractor_clips": sum(s["distractor_face"] is not None for _, s in segments),
        "distinct_voices": len({tuple(sorted(speaker["voice"].items())) for speaker in speakers}),
        "megabytes": round(sum(speaker["video_bytes"] for speaker in speakers) / 1e6, 1),
    }


def generate_corpus(
    out_dir: str | Path, config: CorpusConfig = CorpusConfig(), workers: int = 2, log: Callable[[str], None] = print
) -> dict:
    """Write the corpus (videos, two CSVs, corpus_manifest.json) into ``out_dir`` and return its manifest.

    If ``out_dir`` already holds a complete corpus for the same config, nothing is regenerated.
    ``workers`` processes render speakers in parallel (espeak-ng, dlib checks, ffmpeg). They are
    spawned, so a script calling this needs the ``if __name__ == "__main__":`` guard.
    """
    config.validate()
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    existing = existing_corpus(out_dir, config)
    if existing is not None:
        log(f"{out_dir} already holds a complete corpus for {asdict(config)}; not regenerating")
        return existing
    _check_tools()
    if read_manifest(out_dir) is not None:
        log(f"{out_dir} holds an incomplete corpus or one for other arguments; replacing it")
    _remove_previous(out_dir)
    began = time.monotonic()
    plans = plan_corpus(config, stored_detectable_faces())
    rendered: dict[int, SpeakerPlan] = {}
    if workers == 1:
        for plan in plans:
            rendered[plan.rank] = render_speaker(plan, config.seed, str(out_dir))
            log(f"speaker {len(rendered)}/{len(plans)} {plan.ytid}")
    else:
        context = multiprocessing.get_context("spawn")  # no fork: the caller may run threads (servers, tests)
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            futures = [pool.submit(render_speaker, plan, config.seed, str(out_dir)) for plan in plans]
            for future in as_completed(futures):
                plan = future.result()
                rendered[plan.rank] = plan
                log(f"speaker {len(rendered)}/{len(plans)} {plan.ytid}")
    plans = [rendered[rank] for rank in range(len(plans))]
    _write_csv(out_dir / TRAIN_CSV, [plan for plan in plans if plan.split == "train"])
    _write_csv(out_dir / TEST_CSV, [plan for plan in plans if plan.split == "test"])
    manifest = _manifest(config, plans, time.monotonic() - began)
    partial = out_dir / (MANIFEST_NAME + ".partial")
    partial.write_text(json.dumps(manifest, indent=1))
    os.replace(partial, out_dir / MANIFEST_NAME)  # written last: its presence means the corpus is complete
    return manifest
