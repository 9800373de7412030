"""Download only one segment of a video with yt-dlp: a total deadline, a size cap, retries by error class.

yt-dlp picks a video-only and an audio-only format (none taller than ``max_height``) or one format with
both; ffmpeg reads the section of each by byte ranges and merges them into an mp4, whose edit list keeps
the cut exact. The bytes ffmpeg read and the formats chosen come back with the file (:class:`Download`).

Every failure carries a ``reason``: ``unavailable`` (removed, private, 404/410: never retried),
``throttled`` (429, a bot check: retried after a long backoff with jitter, then recorded so a later run
can retry just those), ``transient`` (5xx, timeouts, resets, a connection dropped mid-range: retried
with a short backoff), ``forbidden`` (a format URL answered 403, as YouTube's expired signed URLs do:
retried, since a new extraction signs new URLs), ``deadline`` (the clip's total time ran out),
``too_large`` (the segment outgrew the size cap), ``no_audio``, ``no_video`` or ``over_max_height``
(nothing the pipeline can use among the video's formats) and ``past_end`` (the segment starts after
the video ends; one that only runs past it gives a shorter clip). The last four are never retried.
"""

from __future__ import annotations

import fcntl
import functools
import os
import random
import signal
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from speech2face import ffmpeg_report
from speech2face.avspeech import YTID_PATTERN

DEFAULT_URL_TEMPLATE = "https://www.youtube.com/watch?v={ytid}"
# Enough picture for a 224x224 face crop, and far less to fetch than full HD.
DEFAULT_MAX_HEIGHT = 720

# missing: a file of media you hold (speech2face.sources) is not where its row says
REASONS = (UNAVAILABLE, THROTTLED, TRANSIENT, FORBIDDEN, DEADLINE, TOO_LARGE, NO_AUDIO, NO_VIDEO, OVER_MAX_HEIGHT,
           PAST_END, MISSING) = ("unavailable", "throttled", "transient", "forbidden", "deadline", "too_large",
                                 "no_audio", "no_video", "over_max_height", "past_end", "missing")  # fmt: skip
RETRIED_NOW = (THROTTLED, TRANSIENT, FORBIDDEN)

# Checked in order: the first class whose marker is in yt-dlp's message wins; anything else is transient.
_MARKERS = (
    (FORBIDDEN, ("Server returned 403", "HTTP error 403")),  # ffmpeg's words for a format URL's 403
    (THROTTLED, ("HTTP Error 429", "Too Many Requests", "confirm you're not a bot", "confirm you’re not a bot",
                 "Sign in to confirm", "rate-limited")),
    (TRANSIENT, ("HTTP Error 408", "HTTP Error 5", "Server returned 5")),
    (UNAVAILABLE, ("HTTP Error 4", "Server returned 4", "Unsupported URL", "is not a valid URL", "Video unavailable",
                   "Private video", "This video is private", "has been removed", "no longer available",
                   "account associated with", "members-only", "This video is not available")),
)  # fmt: skip


def classify(message: str) -> str:
    """The reason class of a yt-dlp error message."""
    for reason, markers in _MARKERS:
        if any(marker in message for marker in markers):
            return reason
    return TRANSIENT


class DownloadError(RuntimeError):
    """The segment could not be fetched; ``reason`` is one of ``REASONS``."""

    def __init__(self, message: str, reason: str = TRANSIENT):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class DownloadConfig:
    url_template: str = DEFAULT_URL_TEMPLATE
    socket_timeout_s: float = 20.0
    retries: int = 2
    backoff_s: float = 1.0  # transient errors: backoff_s * 2**attempt
    throttle_backoff_s: float = 30.0  # throttled: throttle_backoff_s * 2**attempt, with jitter
    deadline_s: float = 120.0  # the whole clip: every attempt and backoff
    max_download_mb: float = 200.0
    max_height: int = DEFAULT_MAX_HEIGHT  # the tallest video format yt-dlp may pick
    cookies: str | None = None  # a local cookies.txt (Netscape format); its values are never logged
    proxy: str | None = None
    max_downloads_per_minute: float | None = None  # per node, shared by every process on it
    sleep_requests_s: float = 0.0  # yt-dlp's sleep_interval_requests, between a video's extraction requests

    @property
    def format(self) -> str:
        """yt-dlp's format: the best video-only and audio-only formats, else the best with both; never taller,
        and never video or audio alone (a format of unknown height or codecs, a plain file's, may be picked)."""
        cap = f"[height<=?{self.max_height}]"
        return f"bv*{cap}+ba/b{cap}[vcodec!=?none][acodec!=?none]"


@dataclass(frozen=True)
class Download:
    """A downloaded segment: the file, the bytes ffmpeg read for it (every attempt's), the formats chosen."""

    path: Path
    bytes_read: int
    video_format: str | None  # "<format id> <codec> <height>p"
    audio_format: str | None  # "<format id> <codec> <rate> Hz"


def segment_url(ytid: str, url_template: str) -> str:
    if not YTID_PATTERN.fullmatch(ytid):
        raise DownloadError(f"refusing ytid {ytid!r}: not an 11-character YouTube id", UNAVAILABLE)
    return url_template.format(ytid=ytid)


class _QuietLogger:
    """yt-dlp prints errors to stderr even when quiet; ours carry the message instead."""

    def debug(self, message: str) -> None: ...
    def info(self, message: str) -> None: ...
    def warning(self, message: str) -> None: ...
    def error(self, message: str) -> None: ...


def _kill_processes_writing_to(out_dir: Path) -> None:
    """SIGKILL the processes (yt-dlp's ffmpeg) whose command line names ``out_dir``, a unique temp dir."""
    marker = str(out_dir).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker in (entry / "cmdline").read_bytes():
                os.kill(int(entry.name), signal.SIGKILL)
        except (OSError, ProcessLookupError):  # it ended meanwhile, or is not ours to read
            continue


class _Deadline:
    """Kills the attempt's ffmpeg when the clip's time is up; ffmpeg does the network reads of a segment."""

    def __init__(self, out_dir: Path, ends_at: float):
        self.out_dir, self.ends_at, self.fired = out_dir, ends_at, False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.wait(0.2):
            if time.monotonic() >= self.ends_at:
                self.fired = True
                _kill_processes_writing_to(self.out_dir)

    def __enter__(self) -> _Deadline:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _options(out_dir: Path, start: float, end: float, config: DownloadConfig) -> dict:
    import yt_dlp  # heavy import, only where downloads happen

    timeout_us = str(int(config.socket_timeout_s * 1e6))
    max_bytes = str(int(config.max_download_mb * 2**20))
    options = {
        "quiet": True,
        "logger": _QuietLogger(),
        "no_warnings": True,
        "noprogress": True,
        "noplaylist": True,
        "format": config.format,
        # mp4, whatever the codecs: its edit list hides the frames before the cut that a stream copy keeps
        # from the keyframe before the start; WebM and Matroska have none, so they would play them.
        "merge_output_format": "mp4",
        "ffmpeg_location": ffmpeg_report.reporting_ffmpeg(),  # so ffmpeg says what it read
        "outtmpl": str(out_dir / "segment.%(ext)s"),
        "download_ranges": yt_dlp.utils.download_range_func(None, [(start, end)]),
        # Stream copy, no re-encode: ffmpeg's edit list keeps the cut exact for decoders (tested at a
        # non-keyframe start), the audio keeps its original samples, and it saves ~0.15 CPU s a clip.
        "force_keyframes_at_cuts": False,
        "socket_timeout": config.socket_timeout_s,
        "retries": 0,  # retries are ours, by error class, so a failing server costs a bounded time
        "fragment_retries": 0,
        # ffmpeg fetches the section: -rw_timeout stops it waiting forever on a stalled server, -fs stops it
        # writing past the size cap (the file then reaches the cap: too_large), and -seek_timestamp cuts
        # every format at the same time on the player's clock (a separate audio format that starts 0.5 s
        # late is otherwise cut 0.5 s late: -ss counts from each file's own start).
        "external_downloader_args": {
            "ffmpeg_i": ["-rw_timeout", timeout_us, "-seek_timestamp", "1"],
            "ffmpeg_o": ["-fs", max_bytes],
        },
        "sleep_interval_requests": config.sleep_requests_s,
    }
    if config.cookies:
        options["cookiefile"] = config.cookies
    if config.proxy:
        options["proxy"] = config.proxy
    return options


def _take_bytes_read(out_dir: Path) -> int:
    """The bytes ffmpeg read from the network for this attempt; its reports are then removed."""
    bytes_read = ffmpeg_report.read(out_dir).bytes_read
    ffmpeg_report.remove(out_dir)
    return bytes_read


def _described(info: dict) -> tuple[str | None, str | None]:
    """The chosen video and audio formats, as "<format id> <codec> <height>p" and "<format id> <codec> <rate> Hz"
    (what yt-dlp knows of them: a plain file's URL tells neither codec nor height)."""
    formats = info.get("requested_formats") or [info]
    video = next((f for f in formats if f.get("vcodec") != "none"), None)
    audio = next((f for f in formats if f.get("acodec") != "none"), None)

    def text(fmt: dict | None, codec: str, size: str | None) -> str | None:
        return fmt and " ".join(str(part) for part in (fmt.get("format_id"), fmt.get(codec), size) if part)

    return (
        text(video, "vcodec", video and video.get("height") and f"{video['height']}p"),
        text(audio, "acodec", audio and audio.get("asr") and f"{audio['asr']} Hz"),
    )


def _no_usable_format(formats: list[dict], max_height: int) -> DownloadError:
    """Why yt-dlp found no format to pick, as a reason: no audio at all, no video at all, or all too tall."""
    heights = sorted({f["height"] for f in formats if f.get("vcodec") != "none" and f.get("height")})
    if all(f.get("acodec") == "none" for f in formats):
        return DownloadError("the video has no format with audio", NO_AUDIO)
    if all(f.get("vcodec") == "none" for f in formats):
        return DownloadError("the video has no format with video (audio only)", NO_VIDEO)
    offered = ", ".join(f"{height}p" for height in heights)
    return DownloadError(f"no video format at or under --max-height {max_height} (the video has {offered})",
                         OVER_MAX_HEIGHT)  # fmt: skip


def _largest_file_bytes(out_dir: Path) -> int:
    return max((path.stat().st_size for path in out_dir.iterdir() if path.is_file()), default=0)


def _extractor_key(url_template: str, url: str) -> str:
    """The extractor yt-dlp picks for a template's URLs (the first suitable one, Generic last), found once."""
    import yt_dlp

    if url_template not in _EXTRACTOR_KEYS:
        _EXTRACTOR_KEYS[url_template] = next(
            ie.ie_key() for ie in yt_dlp.extractor.gen_extractor_classes() if ie.suitable(url)
        )
    return _EXTRACTOR_KEYS[url_template]


_EXTRACTOR_KEYS: dict[str, str] = {}


def _share_ssl_contexts() -> None:
    """One SSL context per process and settings for every YoutubeDL: yt-dlp builds one per request
    handler, and loading certifi's CA bundle into it cost ~24 ms of CPU per download. An SSLContext
    is safe to share between threads; yt-dlp's handlers only read theirs."""
    from yt_dlp.networking import common

    if not hasattr(common.make_ssl_context, "cache_info"):
        common.make_ssl_context = functools.lru_cache(maxsize=16)(common.make_ssl_context)


def _youtube_dl(ie_key: str, options: dict):
    """A YoutubeDL holding one extractor: building all ~1,800 of them cost ~70 ms of CPU per download."""
    import yt_dlp

    _share_ssl_contexts()
    ydl = yt_dlp.YoutubeDL(options, auto_init=False)
    ydl.get_info_extractor(ie_key)
    return ydl


def _fetch_once(url: str, start: float, end: float, out_dir: Path, config: DownloadConfig, ends_at: float,
                ) -> tuple[Path, dict]:  # fmt: skip
    """The segment's file and yt-dlp's info of the formats it chose."""
    import yt_dlp

    ie_key = _extractor_key(config.url_template, url)  # cached: a template's first URL decides
    too_large = DownloadError(f"the segment reached --max-download-mb {config.max_download_mb:g}", TOO_LARGE)
    try:
        with _Deadline(out_dir, ends_at) as deadline, _youtube_dl(ie_key, _options(out_dir, start, end, config)) as ydl:
            extracted = ydl.extract_info(url, download=False, process=False, ie_key=ie_key)
            if extracted.get("duration") and start >= extracted["duration"]:
                raise DownloadError(f"the segment starts at {start:g} s, after the video's end at "
                                    f"{extracted['duration']:g} s", PAST_END)  # fmt: skip
            try:
                info = ydl.process_ie_result(extracted, download=True)  # format selection, then the download
            except yt_dlp.utils.YoutubeDLError as error:
                if "Requested format is not available" in str(error):
                    raise _no_usable_format(extracted.get("formats") or [extracted], config.max_height) from None
                raise
            path = Path(ydl.prepare_filename(info))
    except yt_dlp.utils.YoutubeDLError as error:
        if deadline.fired:
            raise DownloadError(f"the clip's deadline of {config.deadline_s:g} s passed", DEADLINE) from None
        if _largest_file_bytes(out_dir) >= config.max_download_mb * 2**20:
            raise too_large from None
        message = "; ".join([str(error).removeprefix("ERROR: "), *ffmpeg_report.read(out_dir).errors()[-2:]])
        raise DownloadError(message, classify(message)) from None
    report = ffmpeg_report.read(out_dir)
    if cut_short := report.cut_short():
        raise DownloadError(f"a stream ended before its range did: {'; '.join(cut_short[:2])}", TRANSIENT)
    if report.seconds_written() <= 0:  # where the extractor does not know the duration
        raise DownloadError(f"nothing to cut from {start:g} s: the segment starts after the video's end", PAST_END)
    if not path.is_file():  # after merging, the extension may differ from the template's
        candidates = sorted(out_dir.glob("segment.*"))
        if not candidates:
            raise DownloadError(f"yt-dlp reported success but wrote no file for {url}")
        path = candidates[0]
    if deadline.fired:
        raise DownloadError(f"the clip's deadline of {config.deadline_s:g} s passed", DEADLINE)
    if path.stat().st_size >= config.max_download_mb * 2**20:
        raise too_large
    return path, info


class NodeRateLimiter:
    """At most ``per_minute`` download starts per minute on this machine, across all its processes.

    The next free start time lives in a file under the node's temp dir, updated under an exclusive lock.
    """

    def __init__(self, per_minute: float, path: str | Path | None = None):
        self.interval_s = 60.0 / per_minute
        self.path = Path(path or Path(tempfile.gettempdir()) / "speech2face-download-slots")

    def wait(self) -> float:
        """Sleep until this process's next start slot; returns the slot (a ``time.time()``)."""
        with open(self.path, "a+") as file:
            fcntl.flock(file, fcntl.LOCK_EX)
            file.seek(0)
            text = file.read().strip()
            now = time.time()
            slot = max(now, float(text) if text else 0.0)
            file.seek(0)
            file.truncate()
            file.write(f"{slot + self.interval_s:.6f}")
        time.sleep(max(0.0, slot - now))
        return slot


def _backoff_s(reason: str, attempt: int, config: DownloadConfig) -> float:
    if reason == THROTTLED:  # jitter spreads the retries of many workers throttled at the same moment
        return config.throttle_backoff_s * 2**attempt * random.uniform(0.5, 1.5)
    return config.backoff_s * 2**attempt


def download_segment(
    ytid: str, start: float, end: float, out_dir: str | Path, config: DownloadConfig = DownloadConfig()
) -> Download:
    """Fetch ``[start, end]`` seconds of video ``ytid`` into ``out_dir``."""
    url = segment_url(ytid, config.url_template)
    out_dir = Path(out_dir).absolute()  # ffmpeg runs in it (its report goes there), and writes to this path
    out_dir.mkdir(parents=True, exist_ok=True)
    limiter = NodeRateLimiter(config.max_downloads_per_minute) if config.max_downloads_per_minute else None
    ends_at, bytes_read = None, 0
    for attempt in range(config.retries + 1):
        if limiter:
            limiter.wait()
        ends_at = ends_at or time.monotonic() + config.deadline_s  # waiting for a slot is not the clip's time
        try:
            path, info = _fetch_once(url, start, end, out_dir, config, ends_at)
            return Download(path, bytes_read + _take_bytes_read(out_dir), *_described(info))
        except DownloadError as error:
            bytes_read += _take_bytes_read(out_dir)
            delay = _backoff_s(error.reason, attempt, config)
            final = error.reason not in RETRIED_NOW or attempt == config.retries
            if not final and time.monotonic() + delay >= ends_at:
                error, final = DownloadError(f"{error}; no time left to retry", DEADLINE), True
            if final:
                raise DownloadError(f"{url} [{start}-{end}s] after {attempt + 1} attempt(s): {error}",
                                    error.reason) from None  # fmt: skip
            for leftover in out_dir.iterdir():  # a partial file must not pass for the next attempt's
                leftover.unlink()
            time.sleep(delay)
    raise AssertionError("unreachable")
