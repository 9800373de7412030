"""Downloads from a YouTube-shaped origin: a DASH manifest of separate video-only and audio-only formats,
served by byte ranges; yt-dlp's real format selection and ffmpeg's ranged reads and merge.

Rows go through the pipeline's own download and decode + face stages (``pipelines.stages``), without Ray,
so each clip ends as the pipeline would keep it or as a failure row with its reason.
"""

import dataclasses
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from demo_corpus import dash
from pipelines.preprocess.ledger import read_columns, todo_frame
from pipelines.stages import DecodeFaceStage, DownloadStage
from speech2face import faces
from speech2face.avspeech import Segment
from speech2face.dataset import (
    AUDIO_FORMAT,
    DOWNLOAD_BYTES,
    DURATION_S,
    ERROR,
    FACE_BOX,
    FRAME_TIME,
    REASON,
    START,
    VIDEO_FORMAT,
    WAVEFORM,
    YTID,
    Manifest,
    clips_uri,
)
from speech2face.download import DownloadConfig
from tests.support import loopback_server as loopback
from tests.support.oddities import LENGTH, MARKER_AT, SEGMENT, Upload, onset_s, publish

LADDER = Upload("ladder00001", (dash.h264(240), dash.h264(360), dash.vp9(360), dash.AAC, dash.OPUS))
ODDITIES = {  # each real-world oddity, and what the pipeline must make of it: a clip, or a failure's reason
    Upload("vp9tenbit01", (dash.vp9(360, ten_bit=True), dash.OPUS)): None,
    Upload("av1opus0001", (dash.av1(360), dash.OPUS), rate=48000): None,
    Upload("stereo00001", (dash.h264(360), dash.AAC), channels="stereo"): None,
    Upload("surround001", (dash.h264(360), dash.OPUS), channels="5.1", rate=48000): None,
    Upload("rotated0001", (dash.COPY_H264, dash.COPY_AAC), size=(360, 640), rotated=True, y=0.35): None,
    Upload("vfr00000001", (dash.COPY_H264, dash.COPY_AAC), variable_frame_rate=True, x=0.3): None,
    Upload("vertical001", (dash.COPY_H264, dash.COPY_AAC), size=(360, 640), y=0.6): None,
    Upload("letterbox01", (dash.h264(360), dash.AAC), size=(480, 360), x=0.4): None,
    Upload("lateaudio01", (dash.h264(360), dash.OPUS), audio_delay=0.5): None,
    Upload("silent00001", (dash.h264(360),), audio=False): "no_audio",
    Upload("soundonly01", (dash.AAC,)): "no_video",
}
# A longer, busier upload: ffmpeg reads its header, then seeks by a second range request
FORBIDDEN, DROPPED = "forbidden01", "dropped0001"


@dataclasses.dataclass
class Origin:
    site: loopback.Site
    folder: Path


@pytest.fixture(scope="module")
def origin(tmp_path_factory):
    folder = tmp_path_factory.mktemp("origin")
    publish([LADDER, *ODDITIES], folder)
    busy = folder / "busy.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=10", "-f", "lavfi", "-i",
         "anoisesrc=sample_rate=16000:seed=3", "-t", "40", "-c:v", "libx264", "-preset", "ultrafast", "-b:v", "600k",
         "-g", "20", "-c:a", "aac", str(busy)],
        check=True,
    )  # fmt: skip
    for ytid in (FORBIDDEN, DROPPED):
        dash.publish(busy, folder, ytid, [dash.h264(240), dash.AAC])

    def scripts(site, release):  # the 2nd request for the video: 403, as an expired signed URL; every one cut short
        return {f"{FORBIDDEN}/133.mp4": loopback.forbidden_after(1), f"{DROPPED}/133.mp4": loopback.dropped_midway(0.3)}

    with loopback.serve_site(folder, scripts) as site:
        yield Origin(site, folder)


def rows(*segments) -> pd.DataFrame:
    """Rows as the pipeline's ledger hands them to the stages (``todo_frame``): (upload, start, end)."""
    return todo_frame([Segment(f"{upload.ytid}_{start}", upload.ytid, start, end, upload.x, upload.y, "train")
                       for upload, start, end in segments])  # fmt: skip


def run_stages(origin, batch: pd.DataFrame, tmp_path, **download) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(clips, failures) after the download and decode + face stages."""
    config = DownloadConfig(url_template=origin.site.url + "/{ytid}.mpd", socket_timeout_s=5, backoff_s=0.1)
    config = dataclasses.replace(config, **download)
    downloaded = DownloadStage(download=config, threads=4)(batch)
    failures_uri = str(tmp_path / "failures")
    clips = DecodeFaceStage(frames_per_clip=3, face_model="hog", max_distance=faces.MAX_DISTANCE,
                            store_landmarks=False, failures_uri=failures_uri)(downloaded)  # fmt: skip
    failed = pq.read_table(failures_uri).to_pandas() if (tmp_path / "failures").exists() else pd.DataFrame()
    return clips.set_index(YTID), failed.set_index(YTID) if len(failed) else failed


def assert_exact_clip(clip, upload: Upload, frame_height: int | None = None) -> None:
    """The tone at MARKER_AT within 10 ms of its place, the early tone absent, the face of the segment where
    it was put (upright: dlib's detector finds no face turned on its side); ``frame_height``: the chosen
    format's, where it scaled the picture."""
    wave = np.frombuffer(clip[WAVEFORM], np.int16) / 32768
    assert onset_s(wave) == pytest.approx(MARKER_AT - SEGMENT[0], abs=0.010), upload.ytid
    assert clip[DURATION_S] == pytest.approx(SEGMENT[1] - SEGMENT[0], abs=0.05), upload.ytid
    assert 0 < clip[FRAME_TIME] < SEGMENT[1] - SEGMENT[0], upload.ytid  # the face shows only in the segment
    top, right, bottom, left = clip[FACE_BOX]
    scale = (frame_height or upload.size[1]) / upload.size[1]
    width, height = upload.size[0] * scale, upload.size[1] * scale
    centre = ((left + right) / 2 / width, (top + bottom) / 2 / height)
    assert centre == pytest.approx((upload.x, upload.y), abs=0.05), upload.ytid


def test_formats_under_the_cap_are_fetched_by_ranges_merged_and_cut_exactly(origin, tmp_path):
    batch = rows((LADDER, *SEGMENT))
    for max_height, video, audio in ((720, "243 vp9 360p", "251 opus 48000 Hz"),
                                     (240, "133 avc1.4d401f 240p", "251 opus 48000 Hz")):  # fmt: skip
        sent_before = len(origin.site.sent)
        clips, failures = run_stages(origin, batch, tmp_path / str(max_height), max_height=max_height)
        assert len(failures) == 0
        clip = clips.loc[LADDER.ytid]
        assert (clip[VIDEO_FORMAT], clip[AUDIO_FORMAT]) == (video, audio)
        assert_exact_clip(clip, LADDER, frame_height=min(max_height, 360))
        sent = sum(response.bytes for response in origin.site.sent[sent_before:] if "/" in response.path[1:])
        assert 0 < clip[DOWNLOAD_BYTES] <= sent  # counted by ffmpeg, the client: at most what the origin sent
    clips, failures = run_stages(origin, batch, tmp_path / "144", max_height=144)
    assert len(clips) == 0 and failures.loc[LADDER.ytid, REASON] == "over_max_height"
    assert "no video format at or under --max-height 144 (the video has 240p, 360p)" in failures.loc[LADDER.ytid, ERROR]


def test_every_oddity_gives_an_exact_clip_or_a_named_failure(origin, tmp_path):
    plain = next(iter(ODDITIES))
    runs_past, starts_past = (plain, LENGTH - 3, LENGTH + 3), (plain, LENGTH + 1, LENGTH + 7)
    clips, failures = run_stages(origin, rows(*((upload, *SEGMENT) for upload in ODDITIES), runs_past, starts_past),
                                 tmp_path)  # fmt: skip
    for upload, reason in ODDITIES.items():
        if reason is None:
            assert upload.ytid not in failures.index or SEGMENT[0] not in failures.loc[[upload.ytid], START].values
            assert_exact_clip(clips[clips[START] == SEGMENT[0]].loc[upload.ytid], upload)
        else:
            assert failures.loc[upload.ytid, REASON] == reason, failures.loc[upload.ytid, ERROR]
    # a segment running past the end is the shorter clip the video has; one starting past it, a failure
    past = clips.loc[[plain.ytid]].set_index(START)
    assert past.loc[LENGTH - 3, DURATION_S] == pytest.approx(3.0, abs=0.05)
    failed = failures.loc[[plain.ytid]].iloc[0]
    assert (failed[START], failed[REASON]) == (LENGTH + 1, "past_end")
    assert "the segment starts after the video's end" in failed[ERROR]


def test_an_expired_url_midway_and_a_dropped_connection_end_as_failure_rows(origin, tmp_path):
    busy = [Upload(FORBIDDEN, ()), Upload(DROPPED, ())]
    clips, failures = run_stages(origin, rows(*((upload, 30.0, 36.0) for upload in busy)), tmp_path, retries=1)
    assert len(clips) == 0
    assert failures.loc[FORBIDDEN, REASON] == "forbidden" and "403" in failures.loc[FORBIDDEN, ERROR]
    assert failures.loc[DROPPED, REASON] == "transient"
    assert "Stream ends prematurely" in failures.loc[DROPPED, ERROR]
    assert origin.site.hits[f"{FORBIDDEN}/133.mp4"] == 3  # served once; then 403 to the seek and to the retry


def test_the_pipeline_records_each_clips_bytes_and_formats_and_sums_them_up(small_dataset):
    """The session's dataset: the demo corpus downloaded from its DASH manifests by pipelines.preprocess."""
    clips = read_columns(clips_uri(str(small_dataset)), [DOWNLOAD_BYTES, VIDEO_FORMAT, AUDIO_FORMAT])
    assert (clips[DOWNLOAD_BYTES] > 0).all()
    assert set(clips[VIDEO_FORMAT]) == {"134 avc1.4d401f 360p"}
    assert set(clips[AUDIO_FORMAT]) == {"140 mp4a.40.2 22050 Hz"}
    downloads = Manifest.read(str(small_dataset)).downloads
    assert downloads["clips"] == len(clips) and downloads["total_bytes"] == clips[DOWNLOAD_BYTES].sum()
    assert downloads["mean_bytes"] == pytest.approx(clips[DOWNLOAD_BYTES].mean())
    assert downloads["p95_bytes"] == pytest.approx(clips[DOWNLOAD_BYTES].quantile(0.95))
    assert downloads["video_formats"] == {"134 avc1.4d401f 360p": len(clips)}
