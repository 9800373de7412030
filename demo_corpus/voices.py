"""Offline speech from espeak-ng, for tests and the demo corpus.

espeak-ng "variants" (Alicia, aunty, m3, ...) change pitch, formants and timbre, which gives many
distinguishable synthetic speakers. espeak-ng silently falls back to the default voice for an unknown
variant, so :func:`speak` checks the name against :func:`list_variants` first.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

ESPEAK_TIMEOUT_S = 60.0


class SpeechSynthesisError(RuntimeError):
    """espeak-ng or ffmpeg is missing, or failed to synthesise the requested speech."""


@dataclass(frozen=True)
class Variant:
    """An espeak-ng voice variant: ``name`` is what goes after ``+`` in ``-v en+name``."""

    name: str
    gender: str  # "F", "M" or "-" (unknown)
    age: int | None


def _require(binary: str, package: str) -> str:
    path = shutil.which(binary)
    if path is None:
        raise SpeechSynthesisError(f"{binary} was not found on PATH; install it: apt-get install {package}")
    return path


def _run(command: list[str], what: str, stdin: str | None = None) -> None:
    result = subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=ESPEAK_TIMEOUT_S, check=False)
    if result.returncode != 0:
        details = result.stderr.strip()[-500:]
        raise SpeechSynthesisError(f"{what} failed (exit {result.returncode}): {details}")


@functools.cache
def list_variants() -> tuple[Variant, ...]:
    """Variants installed with espeak-ng (``espeak-ng --voices=variant``), excluding names with spaces."""
    espeak = _require("espeak-ng", "espeak-ng")
    listing = subprocess.run(
        [espeak, "--voices=variant"], capture_output=True, text=True, timeout=ESPEAK_TIMEOUT_S, check=True
    ).stdout
    variants = []
    for line in listing.splitlines()[1:]:  # first line is the column header
        if "!v/" not in line:
            continue
        name = line[line.index("!v/") + 3 :].strip()
        age_gender = line.split()[2]  # e.g. "--/M" or "70/F"
        age, _, gender = age_gender.partition("/")
        if name and " " not in name:
            variants.append(Variant(name=name, gender=gender or "-", age=int(age) if age.isdigit() else None))
    return tuple(variants)


def speak(
    text: str,
    path: str | Path,
    voice: str = "en",
    variant: str | None = None,
    pitch: int = 50,
    speed: int = 160,
    sample_rate: int | None = None,
) -> Path:
    """Synthesise ``text`` into a mono 16-bit wav at ``path`` and return the path.

    ``voice`` is an espeak-ng language ("en", "en-us", "de", ...), ``variant`` a name from
    :func:`list_variants`, ``pitch`` 0-99, ``speed`` in words per minute (80-450). espeak-ng writes
    22,050 Hz; ``sample_rate`` resamples with ffmpeg.
    """
    espeak = _require("espeak-ng", "espeak-ng")
    if not text.strip():
        raise ValueError("text to speak is empty")
    if not 0 <= pitch <= 99:
        raise ValueError(f"pitch must be 0-99, got {pitch}")
    if not 80 <= speed <= 450:
        raise ValueError(f"speed must be 80-450 words per minute, got {speed}")
    if variant is not None and variant not in {v.name for v in list_variants()}:
        raise ValueError(f"unknown espeak-ng variant {variant!r}; choose one of list_variants()")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    voice_arg = voice if variant is None else f"{voice}+{variant}"
    espeak_command = [espeak, "-v", voice_arg, "-p", str(pitch), "-s", str(speed), "--stdin", "-w"]
    if sample_rate is None:
        _run([*espeak_command, str(path)], f"espeak-ng -v {voice_arg}", stdin=text)
        return path
    ffmpeg = _require("ffmpeg", "ffmpeg")
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "espeak.wav"
        _run([*espeak_command, str(raw)], f"espeak-ng -v {voice_arg}", stdin=text)
        _run(
            [ffmpeg, "-nostdin", "-y", "-loglevel", "error", "-i", str(raw), "-ar", str(sample_rate),
             "-c:a", "pcm_s16le", str(path)],
            f"ffmpeg resampling to {sample_rate} Hz",
        )  # fmt: skip
    return path
