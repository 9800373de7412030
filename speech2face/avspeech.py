"""AVSpeech CSV rows: parsing, validation, deterministic clip ids and train/val/test splits.

An AVSpeech CSV has no header and the columns ``ytid,start,end,x,y``: a YouTube video id, the
segment's start and end in seconds, and the speaker's face centre as fractions of the frame.
Bad rows are never dropped silently: they come back as failure rows with stage ``parse``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import re
import sys
from dataclasses import asdict, dataclass

from speech2face.dataset import CLIP_ID, END, ERROR, PARSE, STAGE, START, TRAIN, VAL, YTID

# YouTube ids are 11 characters of the URL-safe base64 alphabet; checking this before a ytid
# reaches a URL or a file name rules out path traversal ("../x") and shell tricks ("$(id)").
YTID_PATTERN = re.compile(r"[A-Za-z0-9_-]{11}")


@dataclass(frozen=True, slots=True)  # slots: millions of rows of an AVSpeech CSV stay small
class Segment:
    clip_id: str
    ytid: str
    start: float
    end: float
    x: float
    y: float
    split: str
    speaker: str | None = None  # where the source knows it (speech2face.sources)
    media: str | None = None  # the file holding the clip, for media you hold; None: download it

    def as_row(self) -> dict:
        return asdict(self)


def clip_id(ytid: str, start: float, end: float) -> str:
    """Deterministic, readable id of one segment: the same on every run and machine."""
    return f"{ytid}_{start:.3f}_{end:.3f}"


def split_of(key: str, val_fraction: float) -> str:
    """'val' for a stable ``val_fraction`` of keys, else 'train' (SHA-256, not Python's salted hash)."""
    unit = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2**64
    return VAL if unit < val_fraction else TRAIN


def failure_row(clip: str, ytid: str, start: float, end: float, stage: str, error: str) -> dict:
    return {CLIP_ID: clip, YTID: ytid, START: start, END: end, STAGE: stage, ERROR: error}


def _parse_one(fields: list[str]) -> tuple[str, float, float, float, float]:
    if len(fields) != 5:
        raise ValueError(f"expected 5 columns ytid,start,end,x,y, got {len(fields)}")
    ytid = sys.intern(fields[0].strip())  # one string per video, shared by its segments
    if not YTID_PATTERN.fullmatch(ytid):
        raise ValueError(f"ytid {ytid!r} is not an 11-character YouTube id ([A-Za-z0-9_-])")
    try:
        start, end, x, y = (float(value) for value in fields[1:])
    except ValueError as error:
        raise ValueError(f"start, end, x, y must be numbers: {error}") from None
    if not all(math.isfinite(v) for v in (start, end, x, y)):
        raise ValueError("start, end, x, y must be finite")
    if start < 0 or end <= start:
        raise ValueError(f"need 0 <= start < end, got start={start} end={end}")
    if not (0 <= x <= 1 and 0 <= y <= 1):
        raise ValueError(f"x and y are fractions of the frame and must lie in [0, 1], got x={x} y={y}")
    return ytid, start, end, x, y


def parse_csv(
    text: str, val_fraction: float = 0.1, split_name: str | None = None, split_by: str = YTID
) -> tuple[list[Segment], list[dict]]:
    """Parse an AVSpeech CSV into (segments, parse failures), keeping the input order.

    ``split_name`` puts every row in that split (e.g. "test" for AVSpeech's test CSV); otherwise a
    hash of the ytid (``split_by="ytid"``: all segments of a video share a split) or of the clip id
    (``split_by="clip"``) puts ``val_fraction`` of them in "val". A repeated segment is a failure.
    """
    if split_by not in (YTID, "clip"):
        raise ValueError(f"split_by must be 'ytid' or 'clip', got {split_by!r}")
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    segments: list[Segment] = []
    failures: list[dict] = []
    seen: set[str] = set()
    for line_number, fields in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not fields or all(not f.strip() for f in fields):
            continue
        try:
            ytid, start, end, x, y = _parse_one(fields)
        except ValueError as error:
            raw = ",".join(fields)[:200]
            failures.append(failure_row(f"line{line_number}", fields[0][:64], math.nan, math.nan, PARSE,
                                        f"line {line_number}: {error} (row: {raw!r})"))  # fmt: skip
            continue
        cid = clip_id(ytid, start, end)
        if cid in seen:
            failures.append(failure_row(cid, ytid, start, end, PARSE,
                                        f"line {line_number}: duplicate of an earlier row"))  # fmt: skip
            continue
        seen.add(cid)
        split = split_name or split_of(ytid if split_by == YTID else cid, val_fraction)
        segments.append(Segment(cid, ytid, start, end, x, y, split))
    return segments, failures
