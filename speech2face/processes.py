"""Running a media tool (ffmpeg, ffprobe) as a subprocess, telling a bad input from a stopped process.

A tool that exits with an error code read a file it could not decode: that clip is bad. A tool ended by
a signal was stopped from outside (the job shutting down, the kernel's out-of-memory killer): the clip
may be fine. When a preprocessing job dies, Ray kills its workers' children while a stage's thread is
still running, so without this distinction the clip in flight would be recorded as a failure, and a
resumed run would skip it for good.
"""

from __future__ import annotations

import signal
import subprocess


class ProcessKilled(BaseException):
    """A tool ended by a signal. A BaseException, like KeyboardInterrupt: per-clip error handling
    (``except Exception``) lets it through, so the clip is not recorded as bad and the task fails."""


def run_tool(command: list[str], timeout: float) -> subprocess.CompletedProcess:
    """``command`` with captured output; raises ProcessKilled if a signal ended it, and the usual
    FileNotFoundError / subprocess.TimeoutExpired. Any exit code is left to the caller to judge."""
    result = subprocess.run(command, capture_output=True, timeout=timeout, check=False)
    if result.returncode < 0:
        name = signal.Signals(-result.returncode).name if -result.returncode in signal.valid_signals() else "?"
        raise ProcessKilled(f"{command[0]} was killed by signal {-result.returncode} ({name}), not by its input")
    return result
