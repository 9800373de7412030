"""Where a run's clips come from: the rows of each kind of media source, and how a row's file is fetched.

    youtube    an AVSpeech CSV (ytid,start,end,x,y); yt-dlp fetches each segment (speech2face.download)
    files      an AVSpeech CSV and the videos you already hold, at --media-root: '{ytid}.mp4' names a
               whole video, cut here to the segment as yt-dlp cuts it; a pattern with {start} or {end}
               names the segment's own clip, used as it is
    voxceleb2  a VoxCeleb2 tree ROOT/<speaker>/<video>/<utterance>.mp4: one clip per file, the speaker
               from the path, the face at the frame centre (VoxCeleb2's clips are face tracks)
    media CSV  your own list, header row ``path,start,end,x,y`` and an optional ``speaker``

A row of a file source carries its file in ``media`` (a local path or s3:// URI); where the source knows
who speaks, ``speaker`` too, and then the splits are by speaker. Torch and Ray are not imported here.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import dataclasses
import hashlib
import io
import math
import os
import string
import subprocess
from collections.abc import Iterator
from pathlib import Path

from speech2face import ranges, storage
from speech2face.avspeech import Segment, clip_id, failure_row, split_of
from speech2face.dataset import CLIP_ID, END, PARSE, REASON, SPEAKER, START, TEST, TRAIN, VAL, YTID, X, Y
from speech2face.download import MISSING, DownloadError
from speech2face.errors import InputError

PATTERN_FIELDS = (YTID, START, END, CLIP_ID)  # a pattern names a file by its row's values
PATH = "path"
MEDIA_CSV_COLUMNS, MEDIA_CSV_OPTIONAL = (PATH, START, END, X, Y), (SPEAKER,)
# Files without a picture: there is no face to find in them
AUDIO_ONLY = (".wav", ".flac", ".mp3", ".m4a", ".aac", ".ogg", ".opus")
# VoxCeleb2's skipped entries, counted by reason
STRAY_FILE, EMPTY_SPEAKER = "stray_file", "empty_speaker"
CENTRE = 0.5


# --- files you hold: --media-root and --media-pattern


def pattern_fields(pattern: str) -> set[str]:
    """The fields a --media-pattern names; InputError for any other field."""
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(pattern) if name is not None}
    except ValueError as error:
        raise InputError(f"--media-pattern {pattern!r}: {error}") from None
    unknown = fields - set(PATTERN_FIELDS)
    if unknown or not fields:
        raise InputError(
            f"--media-pattern {pattern!r} must name the file by some of {{{'}, {'.join(PATTERN_FIELDS)}}} "
            f"(e.g. '{{ytid}}.mp4' or '{{ytid}}_{{start:.3f}}_{{end:.3f}}.mp4'){'; unknown: ' if unknown else ''}"
            f"{', '.join(sorted(unknown))}"
        )
    return fields


def cuts_segment(pattern: str) -> bool:
    """A pattern without {start}, {end} or {clip_id} names a whole video: the segment is cut out of it."""
    return not pattern_fields(pattern) & {START, END, CLIP_ID}


def require_folder(flag: str, root: str) -> None:
    """InputError unless ``root`` is a folder (an S3 prefix with objects below it)."""
    if not storage.exists(root):
        raise InputError(f"{flag} {root}: nothing there (no such folder, or no such S3 bucket or prefix)")


def with_media(segments: list[Segment], media_root: str, pattern: str) -> list[Segment]:
    """Each AVSpeech segment with the file that holds it (whether it exists is found out when it is fetched)."""

    def file_of(s: Segment) -> str:
        return storage.join(media_root, pattern.format(ytid=s.ytid, start=s.start, end=s.end, clip_id=s.clip_id))

    return [dataclasses.replace(segment, media=file_of(segment)) for segment in segments]


# --- VoxCeleb2: ROOT/<speaker>/<video>/<utterance>.mp4


def voxceleb2_segments(root: str, val_fraction: float, test_fraction: float) -> tuple[list[Segment], list[dict]]:
    """One segment per clip of the tree, split by speaker; stray files and empty speakers as parse failures."""
    segments, failures = [], []
    for uri in storage.list_files(root):
        parts = uri[len(root.rstrip("/")) + 1 :].split("/")
        if len(parts) != 3 or not parts[2].endswith(".mp4") or not all(parts):
            failures.append(_skipped(uri, STRAY_FILE, "not <speaker>/<video>/<utterance>.mp4"))
            continue
        speaker, video, utterance = parts[0], parts[1], parts[2].removesuffix(".mp4")
        split = speaker_split(speaker, val_fraction, test_fraction)
        segments.append(
            Segment(f"{speaker}_{video}_{utterance}", video, 0.0, math.nan, CENTRE, CENTRE, split, speaker, uri)
        )
    if not storage.is_remote(root):  # S3 has no empty folders
        for entry in sorted(Path(root).iterdir()) if Path(root).is_dir() else []:
            if entry.is_dir() and not any(path.is_file() for path in entry.rglob("*")):
                failures.append(_skipped(str(entry), EMPTY_SPEAKER, "a speaker folder without clips"))
    if not segments and not failures:
        raise InputError(f"--voxceleb2 {root}: no files there; give the folder that holds the id*/ speaker folders")
    return segments, failures


def _skipped(uri: str, reason: str, why: str) -> dict:
    return failure_row(uri, "", math.nan, math.nan, PARSE, f"{uri}: skipped, {why}") | {REASON: reason}


# --- your own list: a media CSV


def media_csv_segments(
    text: str, source: str, val_fraction: float, test_fraction: float
) -> tuple[list[Segment], list[dict]]:
    """The rows of a media CSV (header ``path,start,end,x,y[,speaker]``); relative paths are below the CSV's
    folder. Split by speaker when the CSV names speakers, else by file."""
    reader = csv.reader(io.StringIO(text))
    header = [name.strip() for name in next(reader, [])]
    missing = [name for name in MEDIA_CSV_COLUMNS if name not in header]
    unknown = [name for name in header if name not in MEDIA_CSV_COLUMNS + MEDIA_CSV_OPTIONAL]
    if missing or unknown or len(set(header)) != len(header):
        problem = f"unknown column(s) {', '.join(unknown)}" if unknown else f"no {', '.join(missing)} column"
        if len(missing) == len(MEDIA_CSV_COLUMNS):
            problem = "it has no header row"
        raise InputError(
            f"--media-csv {source}: the first row must be the header {','.join(MEDIA_CSV_COLUMNS)}"
            f"[,speaker] ({problem if missing or unknown else 'a repeated column'}; got {','.join(header)[:200]!r})"
        )
    folder = source.rsplit("/", 1)[0] if "/" in source else ""
    segments, failures, seen = [], [], set()
    for line_number, fields in enumerate(reader, start=2):
        if not any(field.strip() for field in fields):
            continue
        row = dict(zip(header, (field.strip() for field in fields), strict=False))
        path = row.get(PATH, "")
        if path and folder and not storage.is_remote(path) and not os.path.isabs(path):
            path = storage.join(folder, path)
        try:
            segment = _media_segment(row, path, line_number, val_fraction, test_fraction)
        except ValueError as error:
            failures.append(failure_row(f"line{line_number}", "", math.nan, math.nan, PARSE,
                                        f"line {line_number}: {error} (row: {','.join(fields)[:200]!r})"))  # fmt: skip
            continue
        if segment.clip_id in seen:
            failures.append(failure_row(segment.clip_id, segment.ytid, segment.start, segment.end, PARSE,
                                        f"line {line_number}: duplicate of an earlier row"))  # fmt: skip
            continue
        seen.add(segment.clip_id)
        segments.append(segment)
    return segments, failures


def _media_segment(row: dict, path: str, line: int, val_fraction: float, test_fraction: float) -> Segment:
    if len(row) < len(MEDIA_CSV_COLUMNS) or not path:
        raise ValueError(f"expected the columns of the header, got {len(row)}")
    if path.lower().endswith(AUDIO_ONLY):
        raise ValueError(f"{path} holds no picture: give a video (audio and frames), there is no face to find")
    try:
        start, end, x, y = (float(row[name]) for name in MEDIA_CSV_COLUMNS[1:])
    except ValueError as error:
        raise ValueError(f"start, end, x, y must be numbers: {error}") from None
    if not all(math.isfinite(v) for v in (start, end, x, y)) or start < 0 or end <= start:
        raise ValueError(f"need finite 0 <= start < end, got start={start} end={end}")
    if not (0 <= x <= 1 and 0 <= y <= 1):
        raise ValueError(f"x and y are fractions of the frame and must lie in [0, 1], got x={x} y={y}")
    video = media_id(path)
    speaker = row.get(SPEAKER) or None
    split = speaker_split(speaker, val_fraction, test_fraction) if speaker else split_of(video, val_fraction)
    return Segment(clip_id(video, start, end), video, start, end, x, y, split, speaker, path)


def media_id(path: str) -> str:
    """An 11-character id of a file (as a YouTube id is of a video): what a media CSV's rows are split by."""
    digest = hashlib.sha256(path.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()[:11]


def speaker_split(speaker: str, val_fraction: float, test_fraction: float) -> str:
    """test for a stable ``test_fraction`` of speakers, val for the next ``val_fraction``, else train."""
    unit = int.from_bytes(hashlib.sha256(f"speaker:{speaker}".encode()).digest()[:8], "big") / 2**64
    return TEST if unit < test_fraction else VAL if unit < test_fraction + val_fraction else TRAIN


# --- fetching a row's file


def fetch_media(uri: str, start: float, end: float, cut: bool, out_dir: str | Path) -> Path:
    """The clip's media as a local file in ``out_dir``: the file itself, or [start, end] cut out of it with
    ffmpeg's stream copy, the command yt-dlp runs for a segment (so both paths decode the same samples).
    A cut out of an s3:// video reads only the bytes ffmpeg asks for (ranged reads, ``speech2face.ranges``)."""
    out_dir = Path(out_dir)
    try:
        if not cut:
            target = out_dir / f"clip{Path(uri).suffix}"
            target.write_bytes(storage.read_bytes(uri))
            return target
        with _readable(uri) as source:
            target = out_dir / "segment.mp4"  # mp4 for any input: its edit list keeps a copied cut exact
            command = ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-ss", str(start), "-t", str(end - start),
                       "-i", source, "-c", "copy", str(target)]  # fmt: skip
            result = subprocess.run(command, capture_output=True, text=True)
    except FileNotFoundError:
        raise DownloadError(f"{uri}: no such file", MISSING) from None
    if result.returncode != 0 or not target.is_file():
        raise RuntimeError(f"ffmpeg could not cut {uri} [{start}-{end}s]: {result.stderr.strip()[-500:]}")
    return target


@contextlib.contextmanager
def _readable(uri: str) -> Iterator[str]:
    """What ffmpeg opens: a local file's path, or a loopback URL that reads an s3:// object by ranges."""
    if storage.is_remote(uri):
        with ranges.serve(uri) as served:
            yield served.url
        return
    path = storage.resolve(uri)[1]
    if not os.path.isfile(path):
        raise FileNotFoundError(uri)
    yield path
