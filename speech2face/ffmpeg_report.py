"""What a section download's ffmpeg did, read from the report it writes beside its output.

Under yt-dlp ffmpeg runs with ``-loglevel quiet`` and yt-dlp keeps only its exit code. yt-dlp's
``ffmpeg_location`` is :func:`reporting_ffmpeg`'s folder, whose ``ffmpeg`` wraps the real one: a run
whose inputs are URLs writes ``ffmpeg-report-<pid>.log`` (ffmpeg's ``FFREPORT``, level verbose) in its
output's folder. :func:`read` gives what it says: the bytes ffmpeg read from the network (its own count,
the client side), its errors, whether a stream ended before its range did, and how much it wrote.
"""

from __future__ import annotations

import atexit
import functools
import os
import re
import shlex
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

_WRAPPER = """#!/bin/sh
# speech2face.ffmpeg_report: when the inputs are URLs, a verbose report in the output's folder
for last; do :; done
case " $* " in
  *" -i http://"* | *" -i https://"*)
    out=${last#file:}
    cd "${out%/*}" && export FFREPORT="file=ffmpeg-report-$$.log:level=40" ;;
esac
exec FFMPEG "$@"
"""
_PATTERN = "ffmpeg-report-*.log"
_HEADER_LINES = 5  # started on, written to, log level, "Command line:", the command
_BYTES_READ = re.compile(r"Statistics: (\d+) bytes read")
_PROGRESS_TIME = re.compile(r"time=(-?)(\d+):(\d+):([\d.]+)")
_ERROR = re.compile(r"error|Server returned|prematurely|Connection reset|Invalid data", re.IGNORECASE)
# A connection closed mid-range, or a server that ignores Range under a seek: ffmpeg says so, writes
# what it had and exits 0 (a clip with a hole, or without its video)
_CUT_SHORT = re.compile(r"Stream ends prematurely|partial file|corrupt input packet|Invalid data found when processing")


@functools.cache
def reporting_ffmpeg() -> str | None:
    """A folder holding ``ffmpeg`` (the wrapper) and ``ffprobe``, made once per process; None without
    ffmpeg on PATH (yt-dlp then says it is missing)."""
    ffmpeg, ffprobe = shutil.which("ffmpeg"), shutil.which("ffprobe")
    if not (ffmpeg and ffprobe):
        return None
    folder = tempfile.mkdtemp(prefix="s2f-ffmpeg-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    script = os.path.join(folder, "ffmpeg")
    with open(script, "w") as file:
        file.write(_WRAPPER.replace("FFMPEG", shlex.quote(ffmpeg)))
    os.chmod(script, 0o755)
    os.symlink(ffprobe, os.path.join(folder, "ffprobe"))
    return folder


@dataclass(frozen=True)
class Report:
    """The log lines of every ffmpeg report in one download's folder, their headers left out."""

    lines: tuple[str, ...]

    @property
    def bytes_read(self) -> int:
        return sum(int(count) for line in self.lines for count in _BYTES_READ.findall(line))

    def errors(self) -> list[str]:
        """A URL's HTTP status, a stream cut short: what yt-dlp's "ffmpeg exited with code 1" leaves out."""
        return [line for line in self.lines if _ERROR.search(line)]

    def cut_short(self) -> list[str]:
        return [line for line in self.lines if _CUT_SHORT.search(line)]

    def seconds_written(self) -> float:
        """The end time of what ffmpeg wrote, by its last progress line (at or below 0: only frames before the
        cut, which the edit list hides: what a seek past the end finds); infinite without a report."""
        times = [match for line in self.lines for match in _PROGRESS_TIME.findall(line)]
        if not times:
            return float("inf")
        sign, hours, minutes, seconds = times[-1]
        return (-1 if sign else 1) * (int(hours) * 3600 + int(minutes) * 60 + float(seconds))


def read(folder: Path) -> Report:
    texts = [path.read_text(errors="replace") for path in sorted(folder.glob(_PATTERN))]
    return Report(tuple(line.strip() for text in texts for line in text.splitlines()[_HEADER_LINES:]))


def remove(folder: Path) -> None:
    for path in folder.glob(_PATTERN):
        path.unlink()
