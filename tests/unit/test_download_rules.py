"""Download rules that need no server: yt-dlp's messages as failure reasons, and the per-node rate limit."""

import threading
import time

import numpy as np
import pytest

from speech2face.download import NodeRateLimiter, classify


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ("[youtube] abc: Sign in to confirm you’re not a bot. Use --cookies-from-browser", "throttled"),
        ("unable to download video data: HTTP Error 429: Too Many Requests", "throttled"),
        ("[youtube] abc: Private video. Sign in if you've been granted access", "unavailable"),
        ("[youtube] abc: Video unavailable. This video has been removed by the uploader", "unavailable"),
        ("unable to download webpage: HTTP Error 404: Not Found", "unavailable"),
        ("unable to download webpage: HTTP Error 503: Service Unavailable", "transient"),
        ("unable to download webpage: The read operation timed out", "transient"),
        ("[Errno 104] Connection reset by peer", "transient"),
    ],
)
def test_yt_dlp_messages_map_to_reasons(message, reason):
    assert classify(message) == reason


def test_the_rate_limit_spaces_download_starts_across_processes(tmp_path):
    slots = tmp_path / "slots"  # one file per node; two limiters stand for two processes on it
    limiters = [NodeRateLimiter(per_minute=120, path=slots) for _ in range(2)]
    slots, early = [], []

    def worker(limiter):
        for _ in range(2):
            slot = limiter.wait()
            slots.append(slot)
            early.append(time.time() < slot)  # it must not return before its slot

    threads = [threading.Thread(target=worker, args=(limiter,)) for limiter in limiters]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    gaps = np.diff(sorted(slots))  # the slots, not when each thread woke: a busy machine wakes threads late
    assert len(slots) == 4 and gaps.min() >= 0.5 - 1e-6 and not any(early), (gaps, early)  # 120/min: 1 per 0.5 s
