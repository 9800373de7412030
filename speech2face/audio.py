"""Audio I/O and the Speech2Face input spectrogram.

A clip becomes up to 6 s of 16 kHz mono audio (shorter clips are repeated to 6 s), and then a
598 x 257 x 2 power-law-compressed STFT, exactly ``tf.signal.stft(x, 400, 160, 512)`` followed by
``sign(x) * |x|**0.3`` on the real and imaginary parts separately (Oh et al., CVPR 2019).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from speech2face.errors import InputError
from speech2face.processes import run_tool

if TYPE_CHECKING:  # torch is imported where the spectrogram is made: a process that only decodes audio (the
    import torch  # preprocessing's download and decode actors) never loads it, ~1 s of CPU and ~0.3 GB each

SAMPLE_RATE = 16000
CLIP_SECONDS = 6.0
NUM_SAMPLES = 96000
FRAME_LENGTH = 400  # 25 ms
FRAME_STEP = 160  # 10 ms
FFT_LENGTH = 512
NUM_FRAMES = 598  # 1 + (96000 - 400) // 160, no centring or padding
NUM_BINS = 257  # FFT_LENGTH // 2 + 1
COMPRESSION_POWER = 0.3

MIN_SECONDS = 1.0
SILENCE_PEAK = 1e-4  # peak |sample| below this is digital silence, not a voice
INT16_SCALE = 32767.0


class AudioError(InputError):
    """A clip's audio cannot be used: missing file, no audio stream, corrupt, too short or silent."""

    prefix = "cannot use this audio: "


class UnusableAudioError(AudioError):
    """The file decodes, but its audio is no usable voice: under 1 s, or digital silence."""


def _require_ffmpeg() -> str:
    path = shutil.which("ffmpeg")
    if path is None:
        raise RuntimeError("ffmpeg was not found on PATH; install it (Debian/Ubuntu: apt-get install ffmpeg)")
    return path


def decode_audio(
    path: str | Path, start: float = 0.0, max_seconds: float = CLIP_SECONDS, timeout_s: float = 120.0
) -> np.ndarray:
    """Decode up to ``max_seconds`` of audio from ``start`` seconds, as 16 kHz mono float32.

    Any container or codec ffmpeg reads works (wav, mp3, mp4/AAC, webm/opus, ...). The result is
    not padded or looped: a 2.5 s file gives 40,000 samples.
    """
    path = Path(path)
    if start < 0 or max_seconds <= 0:
        raise ValueError(f"need start >= 0 and max_seconds > 0, got start={start}, max_seconds={max_seconds}")
    if not path.is_file():
        raise AudioError(f"{path}: no such file")
    command = [
        _require_ffmpeg(), "-nostdin", "-hide_banner", "-loglevel", "error",
        "-ss", f"{start:.6f}", "-t", f"{max_seconds:.6f}", "-i", str(path),
        "-vn", "-ac", "1", "-ar", str(SAMPLE_RATE), "-f", "f32le", "-",
    ]  # fmt: skip
    try:
        result = run_tool(command, timeout_s)
    except subprocess.TimeoutExpired as error:
        raise AudioError(f"{path}: ffmpeg did not finish decoding within {timeout_s:.0f} s") from error
    stderr = result.stderr.decode(errors="replace").strip()
    if result.returncode != 0:
        if "does not contain any stream" in stderr or "matches no streams" in stderr:
            raise AudioError(f"{path}: the file has no audio stream")
        raise AudioError(f"{path}: ffmpeg could not decode the file (corrupt or unsupported format): {stderr[-500:]}")
    samples = np.frombuffer(result.stdout, dtype="<f4").astype(np.float32)
    return samples[: int(round(max_seconds * SAMPLE_RATE))]


def load_audio(path: str | Path, start: float = 0.0) -> np.ndarray:
    """The model's input waveform: float32 shape (96000,), 6 s at 16 kHz in [-1, 1].

    Raises AudioError for less than 1 s of audio or digital silence. Clips shorter than 6 s are
    repeated (tiled) to exactly 96,000 samples, as in the paper.
    """
    return load_audio_with_duration(path, start)[0]


def load_audio_with_duration(path: str | Path, start: float = 0.0) -> tuple[np.ndarray, float]:
    """:func:`load_audio` plus the seconds of real audio before any repetition (at most 6)."""
    wave = decode_audio(path, start=start, max_seconds=CLIP_SECONDS)
    seconds = wave.size / SAMPLE_RATE
    if seconds < MIN_SECONDS:
        raise UnusableAudioError(f"{path}: {seconds:.2f} s of audio from start={start:g} s, need >= {MIN_SECONDS:g} s")
    peak = float(np.max(np.abs(wave)))
    if not np.isfinite(peak):
        raise AudioError(f"{path}: decoded audio contains NaN or infinite samples")
    if peak < SILENCE_PEAK:
        raise UnusableAudioError(f"{path}: the audio is digital silence (peak {peak:.1e}); silence is not a voice")
    repeats = -(-NUM_SAMPLES // wave.size)
    looped = np.tile(wave, repeats)[:NUM_SAMPLES]
    return np.clip(looped, -1.0, 1.0).astype(np.float32, copy=False), seconds


def first_seconds_looped(waveforms: np.ndarray, seconds: float) -> np.ndarray:
    """The first ``seconds`` of each (count, NUM_SAMPLES) waveform, looped back to NUM_SAMPLES as
    preprocessing loops a clip shorter than 6 s: the same model on less audio."""
    kept = max(1, min(NUM_SAMPLES, int(round(seconds * SAMPLE_RATE))))
    return np.tile(waveforms[:, :kept], (1, -(-NUM_SAMPLES // kept)))[:, :NUM_SAMPLES]


def waveform_to_int16(wave: np.ndarray) -> np.ndarray:
    """Float waveform in [-1, 1] to int16 for compact storage (values outside are clipped)."""
    scaled = np.clip(np.asarray(wave, dtype=np.float32), -1.0, 1.0) * INT16_SCALE
    return np.round(scaled).astype(np.int16)


def int16_to_waveform(samples: np.ndarray) -> np.ndarray:
    """Inverse of :func:`waveform_to_int16`: int16 to float32 in [-1, 1]."""
    return np.asarray(samples, dtype=np.float32) / INT16_SCALE


def int16_tensor_to_waveform(samples: torch.Tensor) -> torch.Tensor:
    """:func:`int16_to_waveform` for a tensor, on its device (stored waveforms become model input on the GPU)."""
    import torch

    return samples.to(torch.float32) / INT16_SCALE


def samples_for_frames(frames: int) -> int:
    """The fewest samples that :func:`stft` turns into ``frames`` frames: 598 -> 95,920."""
    return (frames - 1) * FRAME_STEP + FRAME_LENGTH


def num_frames(n_samples: int) -> int:
    """STFT frames for ``n_samples`` samples (no padding): 96,000 -> 598."""
    if n_samples < FRAME_LENGTH:
        raise ValueError(f"need at least {FRAME_LENGTH} samples for one STFT frame, got {n_samples}")
    return 1 + (n_samples - FRAME_LENGTH) // FRAME_STEP


def _as_float32_tensor(wave: torch.Tensor | np.ndarray) -> torch.Tensor:
    import torch

    tensor = wave if isinstance(wave, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(wave))
    if not tensor.is_floating_point():
        raise TypeError(
            f"expected a real float waveform in [-1, 1], got dtype {tensor.dtype} "
            "(convert int16 samples with int16_to_waveform)"
        )
    # float32 throughout: what the model consumes, and it matches TF's float32 STFT to ~2e-7 relative.
    return tensor.to(torch.float32)


def stft(wave: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Complex64 STFT (..., T, 257), equal to ``tf.signal.stft(x, 400, 160, 512)``.

    Periodic Hann window, no centring or padding, so 96,000 samples give 598 frames. Batched over
    leading dimensions; runs on the input tensor's device (numpy input runs on CPU).
    """
    import torch

    x = _as_float32_tensor(wave)
    num_frames(x.shape[-1])  # validates the length
    window = torch.hann_window(FRAME_LENGTH, periodic=True, dtype=x.dtype, device=x.device)
    frames = x.unfold(-1, FRAME_LENGTH, FRAME_STEP) * window
    return torch.fft.rfft(frames, n=FFT_LENGTH)


def compress(x: torch.Tensor) -> torch.Tensor:
    """Power-law compression ``sign(x) * |x|**0.3``, elementwise."""
    import torch

    return torch.sign(x) * torch.abs(x).pow(COMPRESSION_POWER)


def spectrogram(wave: torch.Tensor | np.ndarray) -> torch.Tensor:
    """The model input: float32 (..., T, 257, 2) = compressed [real, imag] of :func:`stft`.

    A 6 s clip gives (598, 257, 2).
    """
    import torch

    return compress(torch.view_as_real(stft(wave))).contiguous()


def model_input(samples: torch.Tensor, crop_frames: int | None = None, generator=None) -> torch.Tensor:
    """The model's input from stored int16 samples (or a float waveform), on the tensor's device.

    This is how training and inference read ``clips/``: the waveform is stored, the spectrogram is
    computed where the model runs. A random crop of ``crop_frames`` frames (drawn with ``generator``)
    cuts the waveform first: the same frames as cropping the full spectrogram, with fewer FFTs.
    """
    import torch

    wave = samples if samples.is_floating_point() else int16_tensor_to_waveform(samples)
    frames = num_frames(wave.shape[-1])
    if crop_frames and frames > crop_frames:
        offset = int(torch.randint(0, frames - crop_frames + 1, (1,), generator=generator)) * FRAME_STEP
        wave = wave[..., offset : offset + samples_for_frames(crop_frames)]
    return spectrogram(wave)
