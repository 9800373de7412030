"""yt-dlp segment downloads against a real loopback HTTP server."""

import subprocess
import time
import urllib.request

import numpy as np
import pytest

from speech2face.audio import decode_audio
from speech2face.download import DownloadConfig, DownloadError, download_segment
from speech2face.video import probe_video, read_frame
from tests.stalling_server import serve

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


def test_a_cut_between_keyframes_decodes_exactly_the_segment(site, tmp_path):
    path = download_segment(NOISY, 3.3, 7.5, tmp_path, config(site))  # keyframes at 2 and 4 s, not at 3.3
    original, _ = urllib.request.urlretrieve(f"{site}/{NOISY}.mp4", tmp_path / "original.mp4")
    segment, reference = decode_audio(path, 0.0, 4.0), decode_audio(original, 3.3, 4.0)
    assert (
        abs(segment.size - reference.size) <= 16
        and np.corrcoef(segment[: 16000 * 4], reference[: 16000 * 4])[0, 1] > 0.99
    )
    width, height, seconds = probe_video(str(path))
    assert seconds == pytest.approx(4.2, abs=0.05)
    frame, expected = read_frame(str(path), 1.0, width, height), read_frame(str(original), 4.3, width, height)
    assert np.abs(frame.astype(int) - expected.astype(int)).mean() < 3  # testsrc moves: a shifted cut would differ


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
