"""Sample RGB frames from a video file with ffmpeg."""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np

from speech2face.processes import run_tool

FFMPEG_TIMEOUT_S = 60.0


class VideoError(ValueError):
    """The video file is missing, has no video stream, or cannot be decoded."""


def _run(command: list[str], path: str, timeout: float) -> bytes:
    try:
        result = run_tool(command, timeout)
    except FileNotFoundError as error:
        raise RuntimeError(
            f"{command[0]} is not installed or not on PATH; install ffmpeg (apt-get install ffmpeg)"
        ) from error
    except subprocess.TimeoutExpired as error:
        raise VideoError(f"{command[0]} took more than {timeout} s on {path}") from error
    if result.returncode != 0:
        lines = result.stderr.decode(errors="replace").strip().splitlines()
        reason = lines[-1] if lines else f"exit code {result.returncode}"
        raise VideoError(f"{command[0]} cannot read {path}: {reason}")
    return result.stdout


def probe_video(path: str, timeout: float = FFMPEG_TIMEOUT_S) -> tuple[int, int, float | None]:
    """(width, height, duration in seconds or None) of the first video stream, as decoded frames will have them."""
    if not os.path.isfile(path):
        raise VideoError(f"video file not found: {path}")
    output = _run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-print_format", "json",
         "-show_entries", "stream=width,height,duration:stream_side_data=rotation:format=duration", path],
        path, timeout,
    )  # fmt: skip
    info = json.loads(output or b"{}")
    streams = info.get("streams") or []
    if not streams or not streams[0].get("width"):
        raise VideoError(f"{path} has no video stream (an audio-only file?)")
    stream = streams[0]
    width, height = int(stream["width"]), int(stream["height"])
    # ffmpeg rotates phone videos upright when decoding, so a 90-degree rotation swaps the sides.
    rotation = next((int(d["rotation"]) for d in stream.get("side_data_list", []) if "rotation" in d), 0)
    if rotation % 180 != 0:
        width, height = height, width
    duration = stream.get("duration") or info.get("format", {}).get("duration")
    return width, height, float(duration) if duration not in (None, "N/A") else None


def read_frame(path: str, time: float, width: int, height: int, timeout: float = FFMPEG_TIMEOUT_S) -> np.ndarray:
    """The uint8 (height, width, 3) RGB frame shown at ``time`` seconds from the file start."""
    raw = _run(
        ["ffmpeg", "-nostdin", "-v", "error", "-ss", f"{time:.6f}", "-i", path,
         "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        path, timeout,
    )  # fmt: skip
    expected = width * height * 3
    if len(raw) != expected:
        raise VideoError(
            f"ffmpeg decoded {len(raw)} bytes at t={time:.3f} s of {path}, expected one {width}x{height} RGB frame "
            f"({expected} bytes); the file may be truncated or the time past its end"
        )
    return np.frombuffer(raw, dtype=np.uint8).reshape(height, width, 3)


def sample_frames(
    path: str | os.PathLike,
    start: float = 0.0,
    duration: float | None = None,
    count: int = 3,
    timeout: float = FFMPEG_TIMEOUT_S,
) -> list[tuple[float, np.ndarray]]:
    """``count`` evenly spaced ``(time, frame)`` samples from ``[start, start + duration)`` of a video file.

    Times are seconds from the start of the file (not from ``start``). Samples sit at the middles of
    ``count`` equal slices, so none falls on the very first or last frame. ``duration=None`` means up to
    the end of the file. Frames are uint8 (height, width, 3) RGB.
    """
    path = os.fspath(path)
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    if start < 0:
        raise ValueError(f"start must be >= 0 seconds, got {start}")
    width, height, file_duration = probe_video(path, timeout)
    if duration is None:
        if file_duration is None:
            raise VideoError(f"{path} does not state its duration; pass duration= explicitly")
        duration = file_duration - start
    if duration <= 0:
        raise VideoError(f"nothing to sample: start={start} s is at or past the end of {path} ({file_duration} s)")
    times = [start + duration * (i + 0.5) / count for i in range(count)]
    return list(zip(times, read_frames(path, times, width, height, timeout), strict=True))


def read_frames(
    path: str, times: list[float], width: int, height: int, timeout: float = FFMPEG_TIMEOUT_S
) -> list[np.ndarray]:
    """The frames shown at each of ``times``, decoded by ONE ffmpeg process (each start costs ~0.06 CPU-s).

    Every time is its own input, seeked like :func:`read_frame`; the first frame of each is kept and
    the frames are concatenated into one raw RGB stream.
    """
    inputs, chains = [], []
    for i, time in enumerate(times):
        inputs += ["-ss", f"{time:.6f}", "-i", path]
        chains.append(f"[{i}:v:0]trim=end_frame=1,setpts=PTS-STARTPTS[f{i}]")
    graph = (
        ";".join(chains) + ";" + "".join(f"[f{i}]" for i in range(len(times))) + f"concat=n={len(times)}:v=1:a=0[out]"
    )
    raw = _run(
        ["ffmpeg", "-nostdin", "-v", "error", *inputs, "-filter_complex", graph, "-map", "[out]",
         "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        path, timeout,
    )  # fmt: skip
    frame_bytes = width * height * 3
    if len(raw) != frame_bytes * len(times):
        raise VideoError(
            f"ffmpeg decoded {len(raw) / frame_bytes:.2f} of {len(times)} {width}x{height} frames at t={times} s of "
            f"{path}; the file may be truncated or a time past its end"
        )
    return list(np.frombuffer(raw, dtype=np.uint8).reshape(len(times), height, width, 3))
