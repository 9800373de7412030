"""Preprocessing end to end on loopback: demo corpus -> real yt-dlp, ffmpeg, dlib -> Parquet.

One pipeline run over the small corpus plus a set of bad inputs feeds most tests in this module.
"""

import io
import os
import signal
import subprocess
import time

import numpy as np
import pytest
from PIL import Image

from demo_corpus.corpus import face_descriptor
from pipelines import preprocess
from speech2face import audio, storage
from speech2face.dataset import Layout, Manifest
from speech2face.landmarks import crop_landmarks
from tests.support.bad_media import make_bad_videos
from tests.support.cli import ROOT
from tests.support.loopback_server import serve
from tests.support.outputs import preprocess_command, read_all, read_clips, readable_clip_ids

FRAME_W, FRAME_H = 640, 360


@pytest.fixture(scope="module")
def bad_rows(small_corpus):
    """CSV rows that must each end as a failure at the given stage."""
    expected = {ytid: stage for ytid, stage in make_bad_videos(small_corpus.directory).items()}
    good = small_corpus.manifest["speakers"][0]
    seg = good["segments"][0]
    far_x, far_y = (0.05 if good["x"] > 0.5 else 0.95), (0.1 if good["y"] > 0.5 else 0.9)
    rows = [
        ("missingvid1,1,6,0.5,0.5", "missingvid1_1.000_6.000", "download"),  # 404
        ("stalled0001,1,6,0.5,0.5", "stalled0001_1.000_6.000", "download"),  # server never answers
        *[
            (f"{ytid},1,6,0.5,0.5", f"{ytid}_1.000_6.000", stage)
            for ytid, stage in expected.items()
            if ytid != "nofacevid01"
        ],
        ("nofacevid01,0.5,3.5,0.5,0.5", "nofacevid01_0.500_3.500", "face"),
        (
            f"{good['ytid']},{seg['start']:.3f},{seg['start'] + 0.5:.3f},{good['x']},{good['y']}",
            f"{good['ytid']}_{seg['start']:.3f}_{seg['start'] + 0.5:.3f}",
            "decode",
        ),  # under 1 s of audio
        (
            f"{good['ytid']},{seg['start'] + 0.01:.3f},{seg['end']:.3f},{far_x},{far_y}",
            f"{good['ytid']}_{seg['start'] + 0.01:.3f}_{seg['end']:.3f}",
            "face",
        ),  # face far from (x, y)
        ("abcdefghijk,1,5", "line", "parse"),  # missing column
        ("abcdefghijk,one,5,0.5,0.5", "line", "parse"),  # non-numeric time
        ("abcdefghijk,5,5,0.5,0.5", "line", "parse"),  # end <= start
        ("../x,1,5,0.5,0.5", "line", "parse"),  # path characters
        ("$(id),1,5,0.5,0.5", "line", "parse"),  # shell characters
    ]
    return rows


@pytest.fixture(scope="module")
def local_run(small_corpus, bad_rows, tmp_path_factory, ray_session):
    work = tmp_path_factory.mktemp("preprocess")
    train_csv = (small_corpus.directory / "avspeech_train.csv").read_text()
    duplicate = train_csv.splitlines()[0]
    csv = work / "train.csv"
    csv.write_text(train_csv + "\n".join(row for row, _, _ in bad_rows) + "\n" + duplicate + "\n")
    out = str(work / "out")
    with serve(small_corpus.directory, stall_names={"stalled0001.mp4"}) as base_url:
        common = dict(out=out, url_template=base_url + "/{ytid}.mp4", face_embedder="dlib", cpus_per_actor=0.5,
                      batch_size=4, socket_timeout=2.0, download_retries=1)  # fmt: skip
        first = preprocess.run(preprocess.PreprocessConfig(csv=str(csv), val_fraction=0.5, **common))
        test_csv = str(small_corpus.directory / "avspeech_test.csv")
        second = preprocess.run(preprocess.PreprocessConfig(csv=test_csv, split_name="test", **common))
    return {"out": out, "csv": csv, "summaries": (first, second), "corpus": small_corpus}


def test_every_row_ends_in_clips_or_failures(local_run):
    clips, failures = read_clips(local_run["out"]), read_all(storage.join(local_run["out"], "failures"))
    train_rows = [line for line in local_run["csv"].read_text().splitlines() if line.strip()]
    test_rows = (local_run["corpus"].directory / "avspeech_test.csv").read_text().splitlines()
    assert len(clips) + len(failures) == len(train_rows) + len(test_rows)
    good_rows = sum(len(s["segments"]) for s in local_run["corpus"].manifest["speakers"])
    assert len(clips) == good_rows  # every corpus segment succeeded
    assert local_run["summaries"][1].counts.clips == good_rows


def test_bad_inputs_fail_at_the_right_stage(local_run, bad_rows):
    failures = read_all(storage.join(local_run["out"], "failures"))
    by_id = {f["clip_id"]: f for f in failures}
    for row, clip_id, stage in bad_rows:
        if clip_id == "line":
            matches = [f for f in failures if f["stage"] == "parse" and repr(row)[1:-1][:40] in f["error"]]
            assert len(matches) == 1, f"{row!r} should be one parse failure"
        else:
            assert by_id[clip_id]["stage"] == stage, f"{row}: {by_id[clip_id]}"
    assert "timed out" in by_id["stalled0001_1.000_6.000"]["error"]
    assert "404" in by_id["missingvid1_1.000_6.000"]["error"]
    assert [f["error"] for f in failures if "duplicate" in f["error"]], "the repeated row is a parse failure"
    assert local_run["summaries"][0].counts.failures_per_stage["parse"] == 6


def test_shapes_dtypes_landmarks_and_no_stored_spectrogram_by_default(local_run):
    clips = read_clips(local_run["out"])
    for clip in clips.values():
        assert clip["waveform"].shape == (96000,) and clip["waveform"].dtype == np.int16
        assert "spectrogram" not in clip  # readers compute it from the waveform (--store-spectrogram keeps it)
        assert clip["face_feature"].shape == (128,) and clip["face_feature"].dtype == np.float32
        assert clip["embedder"] == "dlib" and 1.0 <= clip["duration_s"] <= 6.0
        image = Image.open(io.BytesIO(clip["face_jpeg"]))
        assert image.size == (224, 224) and image.mode == "RGB"
        points = clip["face_landmarks"]
        assert points.shape == (68, 2) and points.dtype == np.float32
        # dlib's points on the stored crop agree with the column (JPEG moves them by a pixel or two)
        again = crop_landmarks(np.asarray(image)[None])[0]
        assert np.abs(again - points).mean() < 2.0
    assert local_run["summaries"][1].config["store_spectrogram"] is False
    assert local_run["summaries"][1].layout == Layout(store_spectrogram=False, store_landmarks=True)


def test_short_segments_are_looped(local_run):
    clips = read_clips(local_run["out"])
    short = [c for c in clips.values() if c["duration_s"] < 5]
    assert short, "the corpus has segments under 6 s"
    clip = short[0]
    n = int(round(clip["duration_s"] * audio.SAMPLE_RATE))
    np.testing.assert_array_equal(clip["waveform"][n : 2 * n][:1000], clip["waveform"][:1000])


def test_crop_is_the_speaker_not_the_distractor(local_run):
    clips = read_clips(local_run["out"])
    speakers = {s["ytid"]: s for s in local_run["corpus"].manifest["speakers"]}
    checked_distractors = 0
    for clip in clips.values():
        speaker = speakers[clip["ytid"]]
        top, right, bottom, left = clip["face_box"]
        centre = ((left + right) / 2 / FRAME_W, (top + bottom) / 2 / FRAME_H)
        assert abs(centre[0] - clip["x"]) < 0.07 and abs(centre[1] - clip["y"]) < 0.1
        segment = next(s for s in speaker["segments"] if abs(s["start"] - clip["start"]) < 1e-3)
        own = np.linalg.norm(clip["face_feature"] - face_descriptor(speaker["face_index"]))
        assert own < 0.45, f"{clip['clip_id']}: crop is not the speaker's face (dlib distance {own:.2f})"
        if segment["distractor_face"] is not None:
            other = np.linalg.norm(clip["face_feature"] - face_descriptor(segment["distractor_face"]))
            assert own < other
            checked_distractors += 1
    assert checked_distractors >= 1


def test_splits_are_disjoint_by_video(local_run):
    clips = read_clips(local_run["out"])
    videos = {}
    for clip in clips.values():
        videos.setdefault(clip["split"], set()).add(clip["ytid"])
    assert set(videos) == {"train", "val", "test"}
    assert not (videos["train"] & videos["val"]) and not (videos["test"] & (videos["train"] | videos["val"]))
    manifest = Manifest.read(local_run["out"])
    assert manifest.counts.per_split == {split: sum(c["split"] == split for c in clips.values())
                                         for split in ("test", "train", "val")}  # fmt: skip
    assert manifest.embedder.name == "dlib" and len(manifest.embedder.weights_sha256) == 64
    assert storage.read_json(storage.join(local_run["out"], "manifest.json"))["version"] == 5


def test_rerun_skips_everything_already_done(local_run):
    with serve(local_run["corpus"].directory) as base_url:
        summary = preprocess.run(preprocess.PreprocessConfig(
            csv=str(local_run["csv"]), out=local_run["out"], url_template=base_url + "/{ytid}.mp4",
            face_embedder="dlib", cpus_per_actor=0.5, val_fraction=0.5))  # fmt: skip
    assert summary.processed_this_run == 0 and summary.object_store is None  # nothing ran, nothing held
    assert summary.counts == local_run["summaries"][1].counts
    held = local_run["summaries"][0].object_store  # the first run's downloads and blocks in flight
    assert 0 < held["peak_mb"] < held["capacity_mb"], held


def test_killed_job_resumes_without_duplicates_or_losses(small_corpus, ray_session, tmp_path):
    csv = small_corpus.directory / "avspeech_train.csv"
    rows = len(csv.read_text().splitlines())
    out = str(tmp_path / "out")
    env = os.environ | {"RAY_ADDRESS": ray_session.get_runtime_context().gcs_address}
    with serve(small_corpus.directory) as base_url:
        command = preprocess_command(csv, out, base_url, "--rows-per-file", "2")  # files written as it goes
        job = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        deadline = time.monotonic() + 300
        while not readable_clip_ids(out):
            assert job.poll() is None and time.monotonic() < deadline, "the job ended before writing any clip"
            time.sleep(0.2)
        os.killpg(job.pid, signal.SIGKILL)
        job.wait()
        written_before = len(readable_clip_ids(out))  # a shard being written when killed is unreadable
        assert 0 < written_before < rows, "the kill should land midway"
        rerun = subprocess.run(preprocess_command(csv, out, base_url), cwd=ROOT, env=env, capture_output=True,
                               text=True, timeout=600)  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"{written_before} already in clips/" in rerun.stdout
    clips = read_clips(out)  # raises on a duplicate clip_id
    failures = read_all(storage.join(out, "failures"))
    reasons = [(f["clip_id"], f["stage"], f["reason"], f["error"]) for f in failures]
    assert len(clips) + len(failures) == rows and not failures, (reasons, rerun.stdout[-2000:])
