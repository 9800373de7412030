"""yt-dlp segment downloads against real loopback HTTP servers, well-behaved and not."""

import shutil
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest

from speech2face.audio import decode_audio
from speech2face.download import DownloadConfig, DownloadError, download_segment
from speech2face.video import probe_video, read_frame
from tests.support import loopback_server as loopback

YTID = "vidABCDEF01"
NOISY = "noiseABCD01"  # white noise (no period to mistake a shift for a match), a keyframe every 2 s


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("site")
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=10",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=16000", "-t", "12",
         "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac",
         "-movflags", "+faststart", str(root / f"{YTID}.mp4")],
        check=True,
    )  # fmt: skip
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=10",
         "-f", "lavfi", "-i", "anoisesrc=sample_rate=16000:seed=7", "-t", "12", "-g", "20",
         "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac",
         "-movflags", "+faststart", str(root / f"{NOISY}.mp4")],
        check=True,
    )  # fmt: skip
    for name in ("throttle2x1", "redirected1", "withcookie1"):
        shutil.copy(root / f"{YTID}.mp4", root / f"{name}.mp4")

    def scripts(site, release):
        return {
            "stalled0001.mp4": loopback.stall(release),
            "throttle2x1.mp4": loopback.status(429, times=2),
            "throttled01.mp4": loopback.status(429),
            "error500001.mp4": loopback.status(500),
            "gone0000001.mp4": loopback.status(410),
            "removed0001.mp4": loopback.page("Video unavailable"),
            "redirect001.mp4": loopback.redirect("redirected1.mp4"),
            "trickle0001.mp4": loopback.trickle((root / f"{YTID}.mp4").read_bytes(), 1024, site, release),
            "hugevideo01.mkv": loopback.generated_video(300 << 20, site),
        }

    with loopback.serve_site(root, scripts) as site:
        yield site


def duration(path) -> float:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(path)],
                         capture_output=True, text=True, check=True)  # fmt: skip
    return float(out.stdout)


def config(site, **kw):
    kw = {"url_template": site.url + "/{ytid}.mp4", "socket_timeout_s": 2, "backoff_s": 0.1,
          "throttle_backoff_s": 0.2} | kw  # fmt: skip
    return DownloadConfig(**kw)


def fails(ytid, tmp_path, site_config) -> tuple[DownloadError, float]:
    started = time.monotonic()
    with pytest.raises(DownloadError) as caught:
        download_segment(ytid, 0, 5, tmp_path, site_config)
    return caught.value, time.monotonic() - started


def test_downloads_only_the_segment(site, tmp_path):
    path = download_segment(YTID, 3.0, 7.5, tmp_path, config(site)).path
    assert duration(path) == pytest.approx(4.5, abs=0.3)


def test_downloads_share_one_ssl_context_per_process(site, tmp_path):
    from yt_dlp.networking import common

    for attempt in range(2):
        download_segment(YTID, 3.0, 4.0, tmp_path / str(attempt), config(site))
    before = common.make_ssl_context.cache_info()
    path = download_segment(YTID, 3.0, 4.0, tmp_path / "again", config(site)).path
    after = common.make_ssl_context.cache_info()
    assert path.stat().st_size > 0 and after.hits > before.hits and after.misses == before.misses


def test_a_cut_between_keyframes_decodes_exactly_the_segment(site, tmp_path):
    path = download_segment(NOISY, 3.3, 7.5, tmp_path, config(site)).path  # keyframes at 2 and 4 s, not at 3.3
    original, _ = urllib.request.urlretrieve(f"{site.url}/{NOISY}.mp4", tmp_path / "original.mp4")
    segment, reference = decode_audio(path, 0.0, 4.0), decode_audio(original, 3.3, 4.0)
    assert (
        abs(segment.size - reference.size) <= 16
        and np.corrcoef(segment[: 16000 * 4], reference[: 16000 * 4])[0, 1] > 0.99
    )
    width, height, seconds = probe_video(str(path))
    assert seconds == pytest.approx(4.2, abs=0.05)
    frame, expected = read_frame(str(path), 1.0, width, height), read_frame(str(original), 4.3, width, height)
    assert np.abs(frame.astype(int) - expected.astype(int)).mean() < 3  # testsrc moves: a shifted cut would differ


@pytest.mark.parametrize("ytid", ["nosuchvideo", "gone0000001", "removed0001"])  # 404, 410, an HTML page
def test_an_unavailable_video_is_tried_exactly_once(ytid, site, tmp_path):
    error, seconds = fails(ytid, tmp_path, config(site, retries=3))
    assert error.reason == "unavailable", error
    assert "after 1 attempt(s)" in str(error) and site.hits[f"{ytid}.mp4"] == 1
    assert seconds < 5


def test_stalled_server_times_out_after_bounded_retries(site, tmp_path):
    error, seconds = fails("stalled0001", tmp_path, config(site, retries=1))
    assert error.reason == "transient" and "timed out" in str(error)
    assert "after 2 attempt(s)" in str(error)
    assert seconds < 20  # 2 attempts x 2 s timeout + backoff, not forever


def test_server_errors_are_transient_and_retried_as_configured(site, tmp_path):
    error, _ = fails("error500001", tmp_path, config(site, retries=2))
    assert error.reason == "transient" and "500" in str(error)
    assert "after 3 attempt(s)" in str(error) and site.hits["error500001.mp4"] == 3


def test_429_twice_then_200_is_downloaded(site, tmp_path):
    path = download_segment("throttle2x1", 3.0, 7.5, tmp_path, config(site, retries=2)).path
    assert duration(path) == pytest.approx(4.5, abs=0.3)
    assert site.hits["throttle2x1.mp4"] >= 3  # two 429s, then yt-dlp's request and ffmpeg's


def test_429_every_time_is_throttled_after_the_retries(site, tmp_path):
    error, seconds = fails("throttled01", tmp_path, config(site, retries=2))
    assert error.reason == "throttled" and "429" in str(error)
    assert site.hits["throttled01.mp4"] == 3
    assert seconds >= 0.2 * 0.5 + 0.4 * 0.5  # it backed off between tries (jitter: 0.5x to 1.5x)


def test_a_trickling_server_hits_the_deadline(site, tmp_path):
    error, seconds = fails("trickle0001", tmp_path, config(site, deadline_s=3, retries=2))
    assert error.reason == "deadline", error
    assert seconds < 3 + 10
    assert site.bytes_sent["trickle0001.mp4"] < 20_000  # it was stopped, not read to the end at 1 KB/s


def test_a_huge_segment_is_too_large_and_never_written_whole(site, tmp_path):
    error, _ = fails("hugevideo01", tmp_path, config(site, url_template=site.url + "/{ytid}.mkv", max_download_mb=20))
    assert error.reason == "too_large", error
    written = sum(path.stat().st_size for path in tmp_path.rglob("*") if path.is_file())
    assert written < 25 << 20 and site.bytes_sent["hugevideo01.mkv"] < 100 << 20  # of 300 MB


def test_a_redirect_is_followed(site, tmp_path):
    path = download_segment("redirect001", 3.0, 7.5, tmp_path, config(site)).path
    assert duration(path) == pytest.approx(4.5, abs=0.3)
    assert site.hits["redirected1.mp4"] >= 1


def test_the_cookies_file_is_sent(site, tmp_path):
    cookies = loopback.write_cookies(tmp_path / "cookies.txt", "session", "s3cr3t-cookie-v4lue")
    download_segment("withcookie1", 1.0, 4.0, tmp_path / "out", config(site, cookies=str(cookies)))
    sent = [headers.get("Cookie", "") for headers in site.headers]
    assert any("session=s3cr3t-cookie-v4lue" in cookie for cookie in sent), sent


def test_every_request_goes_through_the_proxy(site, tmp_path):
    # nothing listens on port 9: only the proxy (the site, which also answers absolute-URL requests) can reach it
    before = site.proxied
    path = download_segment(YTID, 1.0, 4.0, tmp_path, config(site, url_template="http://127.0.0.1:9/{ytid}.mp4",
                                                              proxy=site.url, retries=0)).path  # fmt: skip
    assert duration(path) == pytest.approx(3.0, abs=0.3)
    assert site.proxied - before >= 2  # yt-dlp's request and ffmpeg's


def test_yt_dlp_finds_the_deno_runtime_and_the_ejs_scripts(site):
    result = subprocess.run([sys.executable, "-m", "yt_dlp", "-v", "--simulate", f"{site.url}/{YTID}.mp4"],
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    debug = result.stdout + result.stderr
    assert result.returncode == 0, debug
    assert "JS runtimes: deno-" in debug and "yt_dlp_ejs-" in debug, debug[-3000:]


@pytest.mark.parametrize("ytid", ["../etc/pass", "$(id)abcdef", "a b c d e f"])
def test_unsafe_ytid_never_reaches_a_url(ytid, tmp_path):
    with pytest.raises(DownloadError, match="not an 11-character YouTube id"):
        download_segment(ytid, 0, 5, tmp_path, DownloadConfig(url_template="http://127.0.0.1:9/{ytid}"))
