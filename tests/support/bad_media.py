"""Videos that must fail preprocessing at a known stage, made with ffmpeg, espeak-ng and LFW faces."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
from PIL import Image

from demo_corpus.faces import compose_frame, face_rgb, no_face_frame
from demo_corpus.voices import speak

SECONDS = 8


def _encode(path: Path, frame: np.ndarray, audio_args: list[str]) -> None:
    still = path.with_suffix(".png")
    Image.fromarray(frame).save(still)
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-loop", "1", "-framerate", "5", "-i", str(still),
         *audio_args, "-t", str(SECONDS), "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
         "-movflags", "+faststart", str(path)],
        check=True,
    )  # fmt: skip
    still.unlink()


def make_bad_videos(directory: Path) -> dict[str, str]:
    """Writes <ytid>.mp4 files into ``directory``; returns {ytid: stage it must fail at}."""
    speech = directory / "speech.wav"
    speak("This clip has a voice but the picture is not usable for training.", speech)
    face_frame = compose_frame([(face_rgb(0), 0.5, 0.5)])
    with_speech = ["-i", str(speech), "-c:a", "aac", "-shortest"]
    _encode(directory / "noaudio0001.mp4", face_frame, [])
    _encode(directory / "silence0001.mp4", face_frame,
            ["-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-c:a", "aac"])  # fmt: skip
    _encode(directory / "nofacevid01.mp4", no_face_frame(), with_speech)
    (directory / "corrupt0001.mp4").write_bytes(np.random.default_rng(0).bytes(50_000))
    return {"noaudio0001": "decode", "silence0001": "decode", "nofacevid01": "face", "corrupt0001": "download"}
