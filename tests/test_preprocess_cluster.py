"""Preprocessing where a user runs it: on S3 (real Ceph RGW), on a GPU node, and after being killed."""

import json
import os
import signal
import subprocess
import sys
import time

import pyarrow as pa
import pyarrow.parquet as pq

from speech2face import storage
from tests.stalling_server import serve
from tests.test_preprocess import read_all, read_clips

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def preprocess_command(csv, out, base_url, *extra):
    return [sys.executable, "-m", "pipelines.preprocess", "--csv", str(csv), "--out", out,
            "--url-template", base_url + "/{ytid}.mp4", "--face-embedder", "dlib", "--cpus-per-actor", "0.5",
            "--batch-size", "2", *extra]  # fmt: skip


def readable_clip_ids(out: str) -> list[str]:
    ids = []
    for file_uri in storage.list_files(storage.join(out, "clips"), suffix=".parquet"):
        try:
            ids += pq.read_table(file_uri, columns=["clip_id"]).column("clip_id").to_pylist()
        except pa.ArrowInvalid:
            pass
    return ids


def test_same_pipeline_into_s3(small_corpus, s3_bucket, tmp_path):
    csv = small_corpus.directory / "avspeech_test.csv"
    # The job reads its CSV from S3 too, as on a cluster.
    storage.write_bytes(storage.join(s3_bucket.uri, "avspeech_test.csv"), csv.read_bytes())
    with serve(small_corpus.directory) as base_url:
        result = subprocess.run(
            preprocess_command(storage.join(s3_bucket.uri, "avspeech_test.csv"), s3_bucket.uri, base_url,
                               "--split-name", "test"),
            cwd=ROOT, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "=== preprocess summary ===" in result.stdout
    clips = read_clips(s3_bucket.uri)
    assert len(clips) == len(csv.read_text().splitlines())
    assert {c["split"] for c in clips.values()} == {"test"}
    manifest = storage.read_json(storage.join(s3_bucket.uri, "manifest.json"))
    assert manifest["counts"]["clips"] == len(clips)
    assert s3_bucket.server.secret_key not in result.stdout + result.stderr  # never log credentials


def test_killed_job_resumes_without_duplicates_or_losses(small_corpus, ray_session, tmp_path):
    csv = small_corpus.directory / "avspeech_train.csv"
    rows = len(csv.read_text().splitlines())
    out = str(tmp_path / "out")
    env = os.environ | {"RAY_ADDRESS": ray_session.get_runtime_context().gcs_address}
    with serve(small_corpus.directory) as base_url:
        job = subprocess.Popen(preprocess_command(csv, out, base_url), cwd=ROOT, env=env, start_new_session=True,
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
    assert len(clips) + len(failures) == rows and not failures


def test_feature_actors_run_on_the_gpu_node_and_fall_back_to_cpu(small_corpus, tmp_path):
    csv = small_corpus.directory / "avspeech_test.csv"
    with serve(small_corpus.directory) as base_url:
        result = subprocess.run(
            [sys.executable, "-m", "tests.scripts.preprocess_on_gpu_cluster", str(csv), str(tmp_path / "out"),
             base_url + "/{ytid}.mp4"],
            cwd=ROOT, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["feature_nodes"], "no FeatureStage actor was found"
    assert set(report["feature_nodes"]) == {report["gpu_node"]}
    assert report["gpu_node"] not in report["cpu_only_nodes"]
    # The node's GPU is only logical here, so the actor computed on CPU with the same code.
    assert report["summary"]["counts"]["clips"] == len(csv.read_text().splitlines())
