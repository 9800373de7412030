"""Uploads as they really come, made with ffmpeg at test time, and published as YouTube serves them.

Every upload is ``LENGTH`` s long. A face (at ``x, y`` of the displayed frame) shows only during
``SEGMENT``; before it, the frame holds no face. The audio is a quiet hum but for two tone bursts: one at
``MARKER_AT`` (1 s into the segment), which a clip must hold exactly there, and one at ``EARLY_AT``
(before the segment), which it must not hold at all. Each :class:`Upload` is one oddity of real video:
a codec, a channel layout, rotation metadata, a variable frame rate, a frame shape, late audio.
"""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from demo_corpus import dash
from demo_corpus.faces import compose_frame, face_rgb

LENGTH = 11.0
SEGMENT = (3.0, 9.0)
MARKER_AT = SEGMENT[0] + 1.0  # seconds into the upload: a 1 kHz burst of 50 ms
EARLY_AT = SEGMENT[0] - 0.5  # a 2 kHz burst the clip must not hold
FACE_INDEX, FACE_SIZE = 0, 150
FPS = 5


@dataclass(frozen=True)
class Upload:
    ytid: str
    formats: tuple[dash.Format, ...]  # what the origin offers of it
    size: tuple[int, int] = (640, 360)  # the displayed frame (width, height)
    x: float = 0.5
    y: float = 0.5
    channels: str = "mono"  # mono, stereo or 5.1
    rate: int = 44100
    rotated: bool = False  # stored sideways, with rotation metadata saying how to show it
    letterbox: bool = False  # a 16:9 picture inside the 4:3 frame, black bars above and below
    variable_frame_rate: bool = False
    audio_delay: float = 0.0  # the audio stream starts this much after the video
    audio: bool = True


def _frame_images(upload: Upload, folder: Path) -> tuple[Path, Path]:
    width, height = upload.size
    face = face_rgb(FACE_INDEX, FACE_SIZE)
    background = np.full((height, width, 3), 128, np.uint8)
    if upload.letterbox:
        bar = (height - width * 9 // 16) // 2
        background[:bar], background[height - bar :] = 0, 0
    paths = folder / f"{upload.ytid}-face.png", folder / f"{upload.ytid}-empty.png"
    Image.fromarray(compose_frame([(face, upload.x, upload.y)], width, height, background)).save(paths[0])
    Image.fromarray(background).save(paths[1])
    return paths


def _tones(channels: str, delay: float) -> str:
    """aevalsrc's expressions: the two bursts, at their times in the video for a stream that starts ``delay``
    late, over a quiet hum (so no stretch of the upload is digital silence)."""
    burst = "if(between(t,{at},{at}+0.05),0.5*sin(2*PI*{hz}*t),0)"
    bursts = (burst.format(at=at - delay, hz=hz) for at, hz in ((MARKER_AT, 1000), (EARLY_AT, 2000)))
    tone = "+".join(["0.01*sin(2*PI*150*t)", *bursts])
    return "|".join({"mono": [tone], "stereo": [tone] * 2, "5.1": [tone] * 3 + ["0"] * 3}[channels])


def make_upload(upload: Upload, folder: Path) -> Path:
    """The upload as one muxed mp4, as its owner made it."""
    face_png, empty_png = _frame_images(upload, folder)
    start, end = SEGMENT
    picture = f"[0:v][1:v]overlay=enable='between(t,{start},{end})',format=yuv420p"
    if upload.variable_frame_rate:  # 10 fps with irregular gaps: keep 5 frames of every 10, unevenly
        picture += ",select='lt(mod(n\\,10)\\,3)+eq(mod(n\\,10)\\,7)+eq(mod(n\\,10)\\,8)'"
    if upload.rotated:  # stored turned a quarter clockwise; the metadata turns it back
        picture += ",transpose=clock"
    fps = 10 if upload.variable_frame_rate else FPS
    inputs = ["-loop", "1", "-framerate", str(fps), "-t", str(LENGTH), "-i", str(empty_png),
              "-loop", "1", "-framerate", str(fps), "-t", str(LENGTH), "-i", str(face_png)]  # fmt: skip
    audio = []
    if upload.audio:
        tones = _tones(upload.channels, upload.audio_delay)
        source = f"aevalsrc='{tones}':s={upload.rate}:c={upload.channels}:d={LENGTH - upload.audio_delay}"
        inputs += ["-itsoffset", str(upload.audio_delay), "-f", "lavfi", "-i", source]
        audio = ["-map", "2:a", "-c:a", "aac", "-b:a", "192k"]
    path = folder / f"{upload.ytid}.upload.mp4"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", *inputs, "-filter_complex", f"{picture}[v]", "-map", "[v]",
         "-c:v", "libx264", "-preset", "ultrafast", "-g", str(2 * fps),
         *(["-fps_mode", "vfr"] if upload.variable_frame_rate else []), *audio, "-t", str(LENGTH), str(path)],
        check=True, capture_output=True,
    )  # fmt: skip
    if upload.rotated:  # a phone's display matrix; ffmpeg 5.1 writes it only when copying the stream
        turned = path.with_suffix(".turned.mp4")
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(path), "-map", "0", "-c", "copy",
                        "-metadata:s:v:0", "rotate=90", str(turned)], check=True, capture_output=True)  # fmt: skip
        turned.replace(path)
    return path


def publish(uploads: list[Upload], folder: Path) -> None:
    """Each upload made and published as DASH formats in ``folder`` (what ``demo_corpus.server`` serves),
    two at a time (ffmpeg's work)."""

    def one(upload: Upload) -> None:
        dash.publish(make_upload(upload, folder), folder, upload.ytid, list(upload.formats))

    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(one, uploads))


def onset_s(wave: np.ndarray, rate: int = 16000, threshold: float = 0.1) -> float | None:
    """Seconds into ``wave`` (float in [-1, 1]) of its first sample louder than ``threshold``; None if silent."""
    loud = np.flatnonzero(np.abs(wave) > threshold)
    return loud[0] / rate if len(loud) else None
