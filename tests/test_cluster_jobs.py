"""`ray job submit --working-dir .` on a real two-node Ray cluster: preprocess into S3, then train."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from speech2face import storage
from tests.local_cluster import RAY, start_cluster
from tests.stalling_server import serve
from tests.test_preprocess import read_clips

ROOT = Path(__file__).resolve().parents[1]
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


@pytest.fixture
def cluster(s3_bucket, tmp_path):
    # The nodes inherit S3 settings and put the venv first on PATH, as a cluster image would.
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    running = start_cluster(tmp_path, env)
    yield running
    running.stop()


def submit(cluster, submission_id: str, *command: str) -> None:
    result = subprocess.run(
        [RAY, "job", "submit", "--address", cluster.dashboard_url, "--working-dir", str(ROOT),
         "--submission-id", submission_id, "--no-wait", "--", *command],
        capture_output=True, text=True, timeout=300, env=os.environ | {"RAY_AUTH_MODE": "disabled"})  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def wait_for_job(cluster, submission_id: str, timeout_s: float = 900) -> dict:
    """Polls the dashboard's job API until the job ends."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = cluster.get(f"/api/jobs/{submission_id}")
        if job["status"] in TERMINAL:
            return job
        time.sleep(2)
    raise TimeoutError(f"job {submission_id} still running after {timeout_s} s")


def job_logs(cluster, submission_id: str) -> str:
    return cluster.get(f"/api/jobs/{submission_id}/logs")["logs"]


def nodes_of_job_actors(cluster, job_id: str) -> set[str]:
    actors = cluster.get(
        f"/api/v0/actors?limit=1000&detail=1&filter_keys=job_id&filter_predicates=%3D&filter_values={job_id}"
    )
    return {actor["node_id"] for actor in actors["data"]["result"]["result"]}


def test_preprocess_then_train_jobs_on_two_nodes(cluster, small_corpus, s3_bucket):
    data, runs = storage.join(s3_bucket.uri, "s2f"), storage.join(s3_bucket.uri, "runs")
    csv_uri = storage.join(s3_bucket.uri, "avspeech_train.csv")
    storage.write_bytes(csv_uri, (small_corpus.directory / "avspeech_train.csv").read_bytes())
    with serve(small_corpus.directory) as base_url:
        submit(cluster, "preprocess-1", "python", "-m", "pipelines.preprocess", "--csv", csv_uri, "--out", data,
               "--url-template", base_url + "/{ytid}.mp4", "--face-embedder", "dlib", "--cpus-per-actor", "0.5",
               "--val-fraction", "0.5", "--batch-size", "2")  # fmt: skip
        job = wait_for_job(cluster, "preprocess-1")
    assert job["status"] == "SUCCEEDED", job_logs(cluster, "preprocess-1")[-4000:]
    assert "=== preprocess summary ===" in job_logs(cluster, "preprocess-1")
    node_ids = {node["node_id"] for node in cluster.nodes()}
    assert nodes_of_job_actors(cluster, job["job_id"]) == node_ids, "the job's actors should use both nodes"
    assert len(read_clips(data)) == len((small_corpus.directory / "avspeech_train.csv").read_text().splitlines())

    submit(cluster, "train-1", "python", "-m", "trainer.train", "--data", data, "--storage", runs, "--name", "tiny1",
           "--preset", "tiny", "--epochs", "1", "--num-workers", "1", "--batch-size", "4")  # fmt: skip
    job = wait_for_job(cluster, "train-1")
    assert job["status"] == "SUCCEEDED", job_logs(cluster, "train-1")[-4000:]
    assert storage.exists(storage.join(runs, "tiny1", "model.safetensors"))
