"""Publish a video as YouTube does: separate video-only and audio-only formats, listed in a DASH manifest.

    <dir>/<ytid>.mpd             the manifest: one Representation per format, its file as BaseURL
    <dir>/<ytid>/<itag>.<ext>    one format: fragmented MP4 with a global sidx, or WebM with Cues in front
                                 (AAC: an MP4 with its index in front, see ``_container_args``)

Format ids are YouTube's itags (134: H.264 360p, 243: VP9 360p, 396: AV1 360p, 140: AAC, 251: Opus),
so yt-dlp's generic extractor reads the manifest and its real format selection picks a video-only and
an audio-only format which ffmpeg fetches by byte ranges and merges, as for a YouTube video. Served by
``demo_corpus.server``; its ``url_template`` points at ``{ytid}.mpd``.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import quoteattr

# itag by height, as YouTube numbers its video-only formats
_ITAGS = {
    "h264": {144: "160", 240: "133", 360: "134", 480: "135", 720: "136", 1080: "137"},
    "vp9": {144: "278", 240: "242", 360: "243", 480: "244", 720: "247", 1080: "248"},
    "vp9.2": {144: "330", 240: "331", 360: "332", 480: "333", 720: "334", 1080: "335"},  # 10-bit HDR
    "av1": {144: "394", 240: "395", 360: "396", 480: "397", 720: "398", 1080: "399"},
}


@dataclass(frozen=True)
class Format:
    itag: str
    codecs: str  # the manifest's codecs string (RFC 6381), what yt-dlp reads as vcodec/acodec
    container: str  # "mp4" or "webm"
    encode: tuple[str, ...]  # ffmpeg's codec arguments (``-c copy``: the source's stream as it is)
    height: int | None = None  # video: scaled to this height; None: audio, or a copy

    @property
    def is_video(self) -> bool:
        return self.codecs.split(".")[0] in ("avc1", "vp9", "vp09", "av01")

    @property
    def ext(self) -> str:
        return "webm" if self.container == "webm" else "mp4" if self.is_video else "m4a"


def h264(height: int) -> Format:
    encode = ("-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", "25")
    return Format(_ITAGS["h264"][height], "avc1.4d401f", "mp4", encode, height)


def vp9(height: int, ten_bit: bool = False) -> Format:
    kind, pixels, codecs = ("vp9.2", "yuv420p10le", "vp09.02.30.10") if ten_bit else ("vp9", "yuv420p", "vp9")
    encode = ("-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "400k", "-pix_fmt", pixels,
              "-g", "25")  # fmt: skip
    return Format(_ITAGS[kind][height], codecs, "webm", encode, height)


def av1(height: int) -> Format:
    encode = ("-c:v", "libsvtav1", "-preset", "12", "-pix_fmt", "yuv420p", "-g", "25")
    return Format(_ITAGS["av1"][height], "av01.0.05M.08", "mp4", encode, height)


AAC = Format("140", "mp4a.40.2", "mp4", ("-c:a", "aac", "-b:a", "128k"))
OPUS = Format("251", "opus", "webm", ("-c:a", "libopus", "-b:a", "128k", "-ar", "48000"))
# The source's own streams, without re-encoding (the demo corpus: H.264 360p and AAC)
COPY_H264 = Format(_ITAGS["h264"][360], "avc1.4d401f", "mp4", ("-c", "copy"))
COPY_AAC = Format("140", "mp4a.40.2", "mp4", ("-c", "copy"))


def _probe(path: Path) -> dict:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-print_format", "json", "-show_entries",
         "stream=codec_type,width,height,r_frame_rate,sample_rate:format=duration,size", str(path)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return json.loads(out)


def _container_args(fmt: Format) -> tuple[str, ...]:
    if fmt.container == "webm":
        return "-dash", "1", "-cues_to_front", "1", "-f", "webm"
    if fmt.is_video:  # fragments at keyframes, one index (sidx) in front
        return "-movflags", "+dash+global_sidx", "-f", "mp4"
    # ffmpeg's fragmented MP4 drops the edit list that hides AAC's encoder delay (1024 samples, 23 ms at
    # 44.1 kHz): every cut would hear the audio that late. Its plain MP4 keeps it, with the index in front.
    return "-movflags", "+faststart", "-f", "mp4"


def _make(source: Path, fmt: Format, path: Path) -> None:
    stream = "0:v:0" if fmt.is_video else "0:a:0"
    scale = ("-vf", f"scale=-2:{fmt.height}") if fmt.height else ()
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(source), "-map", stream, *scale, *fmt.encode,
         *_container_args(fmt), str(path)],
        check=True, capture_output=True,
    )  # fmt: skip


def _representation(fmt: Format, href: str, info: dict) -> str:
    stream = info["streams"][0]
    size, seconds = int(info["format"]["size"]), float(info["format"]["duration"])
    attributes = {"id": fmt.itag, "codecs": fmt.codecs, "bandwidth": str(int(size * 8 / seconds))}
    if fmt.is_video:
        num, den = (int(v) for v in stream["r_frame_rate"].split("/"))
        attributes |= {"width": str(stream["width"]), "height": str(stream["height"]), "frameRate": str(num // den)}
    else:
        attributes |= {"audioSamplingRate": stream["sample_rate"]}
    attrs = " ".join(f"{key}={quoteattr(value)}" for key, value in attributes.items())
    return f'<Representation {attrs}><BaseURL yt:contentLength="{size}">{href}</BaseURL></Representation>'


def publish(source: str | Path, out_dir: str | Path, ytid: str, formats: list[Format]) -> Path:
    """Write ``formats`` of ``source`` (those its streams allow: no audio-only format of a silent video)
    and the manifest listing them; returns the manifest's path."""
    source, out_dir = Path(source), Path(out_dir)
    (out_dir / ytid).mkdir(parents=True, exist_ok=True)
    has = {stream["codec_type"] for stream in _probe(source)["streams"]}
    sets: dict[str, list[str]] = {}
    duration = 0.0
    for fmt in formats:
        if ("video" if fmt.is_video else "audio") not in has:
            continue
        path = out_dir / ytid / f"{fmt.itag}.{fmt.ext}"
        _make(source, fmt, path)
        info = _probe(path)
        duration = max(duration, float(info["format"]["duration"]))
        mime = f"{'video' if fmt.is_video else 'audio'}/{fmt.container}"
        sets.setdefault(mime, []).append(_representation(fmt, f"{ytid}/{path.name}", info))
    adaptation_sets = "".join(
        f'<AdaptationSet mimeType="{mime}" subsegmentAlignment="true">{"".join(reps)}</AdaptationSet>'
        for mime, reps in sets.items()
    )
    manifest = out_dir / f"{ytid}.mpd"
    manifest.write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" xmlns:yt="http://youtube.com/yt/2012/10/10" '
        'profiles="urn:mpeg:dash:profile:isoff-on-demand:2011" type="static" '
        f'mediaPresentationDuration="PT{duration:.3f}S" minBufferTime="PT1.500S">'
        f"<Period>{adaptation_sets}</Period></MPD>\n"
    )
    return manifest
