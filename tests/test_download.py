"""yt-dlp segment downloads against a real loopback HTTP server."""
import subprocess
import time

import pytest

from speech2face.download import DownloadConfig, DownloadError, download_segment
from tests.stalling_server import serve

YTID = "vidABCDEF01"


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
    with serve(root, stall_names={"stalled0001.mp4"}) as base_url:
        yield base_url


def duration(path) -> float:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(path)],
                         capture_output=True, text=True, check=True)  # fmt: skip
    return float(out.stdout)


def config(base_url, **kw):
    return DownloadConfig(url_template=base_url + "/{ytid}.mp4", socket_timeout_s=2, backoff_s=0.1, **kw)


def test_downloads_only_the_segment(site, tmp_path):
    path = download_segment(YTID, 3.0, 7.5, tmp_path, config(site))
    assert duration(path) == pytest.approx(4.5, abs=0.3)


def test_missing_video_is_permanent_and_not_retried(site, tmp_path):
    started = time.monotonic()
    with pytest.raises(DownloadError, match="404") as caught:
        download_segment("nosuchvideo", 0, 5, tmp_path, config(site, retries=3))
    assert caught.value.permanent
    assert "after 1 attempt(s)" in str(caught.value)
    assert time.monotonic() - started < 5


def test_stalled_server_times_out_after_bounded_retries(site, tmp_path):
    started = time.monotonic()
    with pytest.raises(DownloadError, match="timed out") as caught:
        download_segment("stalled0001", 0, 5, tmp_path, config(site, retries=1))
    assert "after 2 attempt(s)" in str(caught.value)
    assert time.monotonic() - started < 20  # 2 attempts x 2 s timeout + backoff, not forever


@pytest.mark.parametrize("ytid", ["../etc/pass", "$(id)abcdef", "a b c d e f"])
def test_unsafe_ytid_never_reaches_a_url(ytid, tmp_path):
    with pytest.raises(DownloadError, match="not an 11-character YouTube id"):
        download_segment(ytid, 0, 5, tmp_path, DownloadConfig(url_template="http://127.0.0.1:9/{ytid}"))
