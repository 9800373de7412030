"""`ray job submit --working-dir .` on a real two-node Ray cluster: preprocess into S3, then train.

The worker node declares one (logical) GPU, as a cluster's GPU node would: the feature stage's actors
must run there, and there they run the same code on CPU, since this machine has no GPU.
"""

import os
import sys
import time
from pathlib import Path

import pytest

from speech2face import storage
from tests.support import loopback_server as loopback
from tests.support.local_cluster import start_cluster
from tests.support.outputs import read_clips

TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


@pytest.fixture
def cluster(s3_bucket, tmp_path):
    # The nodes inherit S3 settings and put the venv first on PATH, as a cluster image would.
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    running = start_cluster(tmp_path, env)
    yield running
    running.stop()


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


def job_actors(cluster, job_id: str) -> list[dict]:
    """The job's actors that were placed on a node (an autoscaling pool may ask for one and then cancel it)."""
    actors = cluster.get(
        f"/api/v0/actors?limit=1000&detail=1&filter_keys=job_id&filter_predicates=%3D&filter_values={job_id}"
    )
    return [actor for actor in actors["data"]["result"]["result"] if actor["node_id"]]


def test_preprocess_then_train_jobs_on_two_nodes(cluster, small_corpus, s3_bucket, tmp_path):
    data, runs = storage.join(s3_bucket.uri, "s2f"), storage.join(s3_bucket.uri, "runs")
    csvs = {}
    for name in ("avspeech_train.csv", "avspeech_test.csv"):  # the job reads its CSVs from S3 too
        csvs[name] = (small_corpus.directory / name).read_text().splitlines()
        storage.write_bytes(storage.join(s3_bucket.uri, name), (small_corpus.directory / name).read_bytes())
    cookie = "cluster-c00kie-value-9d1e"  # from S3: each download actor, on either node, copies it
    cookies = loopback.write_cookies(tmp_path / "cookies.txt", "session", cookie)
    storage.write_bytes(storage.join(s3_bucket.uri, "cookies.txt"), cookies.read_bytes())
    with loopback.serve_site(small_corpus.directory) as site:
        cluster.submit("preprocess-1", "python", "-m", "pipelines.preprocess",
                       "--csv", storage.join(s3_bucket.uri, "avspeech_train.csv"),
                       "--test-csv", storage.join(s3_bucket.uri, "avspeech_test.csv"), "--out", data,
                       "--url-template", site.url + "/{ytid}.mp4", "--face-embedder", "dlib",
                       "--cpus-per-actor", "0.5", "--val-fraction", "0.5", "--batch-size", "2", "--gpu-actors", "1",
                       "--cookies", storage.join(s3_bucket.uri, "cookies.txt"))  # fmt: skip
        job = wait_for_job(cluster, "preprocess-1")
    logs = job_logs(cluster, "preprocess-1")
    assert job["status"] == "SUCCEEDED", logs[-4000:]
    assert "=== preprocess summary ===" in logs
    assert s3_bucket.server.secret_key not in logs and cookie not in logs  # never log credentials
    with_cookie = sum(cookie in headers.get("Cookie", "") for headers in site.headers)
    assert with_cookie >= sum(len(rows) for rows in csvs.values()), "every clip's download sent the cookie"
    nodes = cluster.nodes()
    gpu_nodes = {n["node_id"] for n in nodes if n["resources_total"].get("GPU")}
    actors = job_actors(cluster, job["job_id"])
    assert {a["node_id"] for a in actors} == {n["node_id"] for n in nodes}, "the job's actors should use both nodes"
    feature_nodes = {a["node_id"] for a in actors if "FeatureStage" in a["class_name"]}
    assert len(gpu_nodes) == 1 and feature_nodes == gpu_nodes, (feature_nodes, gpu_nodes)
    clips = read_clips(data)
    assert len(clips) == len(csvs["avspeech_train.csv"]) + len(csvs["avspeech_test.csv"])
    assert sum(c["split"] == "test" for c in clips.values()) == len(csvs["avspeech_test.csv"])
    assert storage.read_json(storage.join(data, "manifest.json"))["counts"]["clips"] == len(clips)

    cluster.submit("train-1", "python", "-m", "trainer.train", "--data", data, "--storage", runs, "--name", "tiny1",
                   "--preset", "tiny", "--epochs", "1", "--num-workers", "1", "--batch-size", "4")  # fmt: skip
    job = wait_for_job(cluster, "train-1")
    assert job["status"] == "SUCCEEDED", job_logs(cluster, "train-1")[-4000:]
    assert storage.exists(storage.join(runs, "tiny1", "model.safetensors"))
