"""A real two-node Ray cluster (tests/support/local_cluster.py), used as a user does: `ray job submit
--working-dir .` of preprocessing into S3 (a real RGW) and of training, and its worker node reclaimed as a spot
instance is.

The worker node declares one (logical) GPU, as a cluster's GPU node would: the feature stage's actors must run
there, and there they run the same code on CPU, since this machine has no GPU. The jobs' drivers run on the head,
which is never spot.

The worker node is killed as AWS reclaims a spot instance (SIGKILL to its `ray start` process group: raylet,
object store, agents and its Ray workers, all at once) in the middle of a preprocessing run and in the middle
of a training epoch. A new worker node then starts with the same arguments, as the autoscaler replaces the
node (docs/cluster.md, "Spot workers for a two-day job").
- Preprocessing: the same command, rerun, plans exactly the clips still missing and ends with every clip
  of the CSV exactly once.
- Training (from the S3 data of the first job): the run goes on from its last checkpoint (Ray Train's
  FailureConfig retry on the new node), not from scratch: the epochs checkpointed before the kill keep their
  rows in metrics.csv.

One cluster serves the module (starting one costs ~15-30 s). The head notices a dead node within ~3 s (a health
check every 0.5 s, 6 misses) instead of the default ~15 s, and Ray Train's controller polls its workers every
0.2 s instead of 2 s, so a checkpoint is registered as soon as it is written.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import sys
import time
from pathlib import Path

import pytest

from demo_corpus.server import serve_directory, url_template
from speech2face import storage
from speech2face.avspeech import parse_csv
from speech2face.dataset import clips_uri, failures_uri
from tests.support import loopback_server as loopback
from tests.support import rgw
from tests.support.cli import TINY_RUN
from tests.support.local_cluster import start_cluster
from tests.support.outputs import read_all, read_clips, readable_clip_ids

TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}
VAL_FRACTION = "0.4"  # the reclaimed preprocess: 1 of the 4 training videos goes to val, train 6 clips, val 2
EPOCHS = 4  # the kill comes right after epoch 1's checkpoint; the last epochs take ~0.3 s each


@pytest.fixture(scope="module")
def bucket(s3_server):
    """A bucket for the module, its client settings in os.environ meanwhile: the nodes, their jobs and this
    process's own reads inherit them."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield from rgw.s3_bucket_fixture(s3_server, monkeypatch)


@pytest.fixture(scope="module")
def cluster(bucket, tmp_path_factory):
    env = os.environ | {
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",  # the venv first, as a cluster image has it
        "RAY_health_check_period_ms": "500",
        "RAY_health_check_timeout_ms": "500",
        "RAY_health_check_failure_threshold": "6",
        "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2",
        "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "1",  # Ray's default, off elsewhere in the suite (conftest.py)
    }
    # head: 1 CPU; worker: 2 CPUs and 1 logical GPU. A training worker asking for 2 CPUs fits the worker only.
    running = start_cluster(tmp_path_factory.mktemp("cluster"), env, head_cpus=1, worker_cpus=2)
    yield running
    running.stop()


def status(cluster, submission_id: str) -> str:
    return cluster.get(f"/api/jobs/{submission_id}")["status"]


def logs(cluster, submission_id: str) -> str:
    return cluster.get(f"/api/jobs/{submission_id}/logs")["logs"]


def wait_for_moment(cluster, submission_id: str, probe, what: str, timeout_s: float = 300):
    """``probe()``'s first true value, polled every 0.1 s: the moment to kill the node (the job must not end first)."""
    deadline, asked = time.monotonic() + timeout_s, 0.0
    while time.monotonic() < deadline:
        if value := probe():
            return value
        if time.monotonic() - asked > 1:  # the job's status once a second: the dashboard shares the 2 cores
            assert status(cluster, submission_id) not in TERMINAL, logs(cluster, submission_id)[-4000:]
            asked = time.monotonic()
        time.sleep(0.1)
    raise TimeoutError(f"{submission_id}: no {what} after {timeout_s} s")


def wait_for_job(cluster, submission_id: str, timeout_s: float = 600) -> str:
    deadline = time.monotonic() + timeout_s
    while (state := status(cluster, submission_id)) not in TERMINAL:
        assert time.monotonic() < deadline, f"{submission_id} still running after {timeout_s} s"
        time.sleep(0.5)
    return state


def reclaim_worker(cluster) -> float:
    """Kills the worker node and starts its replacement; returns the time of the kill."""
    killed = time.time()
    cluster.kill_worker()
    cluster.start_worker()
    return killed


def job_actors(cluster, job_id: str) -> list[dict]:
    """The job's actors that were placed on a node (an autoscaling pool may ask for one and then cancel it)."""
    actors = cluster.get(
        f"/api/v0/actors?limit=1000&detail=1&filter_keys=job_id&filter_predicates=%3D&filter_values={job_id}"
    )
    return [actor for actor in actors["data"]["result"]["result"] if actor["node_id"]]


# ---- preprocessing into S3 ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3_preprocess(cluster, small_corpus, bucket, tmp_path_factory) -> dict:
    """pipelines.preprocess as a job: CSVs, cookies and output on S3, the videos from a loopback site."""
    data = storage.join(bucket.uri, "s2f")
    csvs = {}
    for name in ("avspeech_train.csv", "avspeech_test.csv"):  # the job reads its CSVs from S3 too
        csvs[name] = (small_corpus.directory / name).read_text().splitlines()
        storage.write_bytes(storage.join(bucket.uri, name), (small_corpus.directory / name).read_bytes())
    cookie = "cluster-c00kie-value-9d1e"  # from S3: each download actor, on either node, copies it
    cookies = loopback.write_cookies(tmp_path_factory.mktemp("cookies") / "cookies.txt", "session", cookie)
    storage.write_bytes(storage.join(bucket.uri, "cookies.txt"), cookies.read_bytes())
    with loopback.serve_site(small_corpus.directory) as site:
        cluster.submit("preprocess-s3", "python", "-m", "pipelines.preprocess",
                       "--csv", storage.join(bucket.uri, "avspeech_train.csv"),
                       "--test-csv", storage.join(bucket.uri, "avspeech_test.csv"), "--out", data,
                       "--url-template", site.url + "/{ytid}.mp4", "--face-embedder", "dlib",
                       "--cpus-per-actor", "0.5", "--val-fraction", "0.5", "--batch-size", "2", "--gpu-actors", "1",
                       "--cookies", storage.join(bucket.uri, "cookies.txt"))  # fmt: skip
        state = wait_for_job(cluster, "preprocess-s3")
    job = cluster.get("/api/jobs/preprocess-s3")
    return {"data": data, "csvs": csvs, "cookie": cookie, "state": state, "job": job, "headers": site.headers,
            "logs": logs(cluster, "preprocess-s3"), "nodes": cluster.nodes(),
            "actors": job_actors(cluster, job["job_id"])}  # fmt: skip


def test_preprocess_job_on_two_nodes_into_s3(s3_preprocess, bucket):
    run = s3_preprocess
    assert run["state"] == "SUCCEEDED", run["logs"][-4000:]
    assert "=== preprocess summary ===" in run["logs"]
    assert bucket.server.secret_key not in run["logs"] and run["cookie"] not in run["logs"]  # never log credentials
    with_cookie = sum(run["cookie"] in headers.get("Cookie", "") for headers in run["headers"])
    assert with_cookie >= sum(len(rows) for rows in run["csvs"].values()), "every clip's download sent the cookie"
    nodes, actors = run["nodes"], run["actors"]
    gpu_nodes = {n["node_id"] for n in nodes if n["resources_total"].get("GPU")}
    assert {a["node_id"] for a in actors} == {n["node_id"] for n in nodes}, "the job's actors should use both nodes"
    feature_nodes = {a["node_id"] for a in actors if "FeatureStage" in a["class_name"]}
    assert len(gpu_nodes) == 1 and feature_nodes == gpu_nodes, (feature_nodes, gpu_nodes)
    clips = read_clips(run["data"])
    assert len(clips) == len(run["csvs"]["avspeech_train.csv"]) + len(run["csvs"]["avspeech_test.csv"])
    assert sum(c["split"] == "test" for c in clips.values()) == len(run["csvs"]["avspeech_test.csv"])
    assert storage.read_json(storage.join(run["data"], "manifest.json"))["counts"]["clips"] == len(clips)


# ---- a reclaimed node ---------------------------------------------------------------------------


def clip_files(out: str) -> list[str]:
    return storage.list_files(clips_uri(out), suffix=".parquet")


@pytest.fixture(scope="module")
def reclaimed_preprocess(cluster, small_corpus, tmp_path_factory) -> dict:
    """A preprocess whose worker node dies once its first clip is written, then the same command again."""
    out = str(tmp_path_factory.mktemp("spot_data") / "s2f")
    started = time.monotonic()
    with serve_directory(small_corpus.directory) as (_, base_url):
        # --rows-per-file 1: a file per clip, so some are written while others are in flight when the node dies
        command = ["python", "-m", "pipelines.preprocess", "--csv", str(small_corpus.directory / "avspeech_train.csv"),
                   "--out", out, "--url-template", url_template(base_url), "--face-embedder", "dlib",
                   "--val-fraction", VAL_FRACTION, "--cpus-per-actor", "0.5", "--batch-size", "2", "--gpu-actors", "1",
                   "--rows-per-file", "1"]  # fmt: skip
        cluster.submit("preprocess-1", *command)
        written = wait_for_moment(cluster, "preprocess-1", lambda: clip_files(out), "clip file")
        reclaim_worker(cluster)
        first = wait_for_job(cluster, "preprocess-1")  # Ray Data retries the lost tasks, restarts the lost actors
        after_first = readable_clip_ids(out)
        cluster.submit("preprocess-2", *command)
        second = wait_for_job(cluster, "preprocess-2")
    print(f"[spot] preprocess: {time.monotonic() - started:.1f} s; clip files at the kill: {len(written)}; "
          f"first run {first} with {len(after_first)} clips")  # fmt: skip
    return {"out": out, "at_kill": len(written), "after_first": after_first, "first": first, "second": second,
            "rerun_logs": logs(cluster, "preprocess-2")}  # fmt: skip


def expected_clip_ids(corpus: Path) -> set[str]:
    """The plan: every row of the training CSV (each one makes a clip in a clean run of this corpus)."""
    segments, failures = parse_csv((corpus / "avspeech_train.csv").read_text(), float(VAL_FRACTION))
    assert segments and not failures
    return {segment.clip_id for segment in segments}


def test_preprocess_rerun_after_a_reclaimed_node_has_every_clip_once(reclaimed_preprocess, small_corpus):
    run, expected = reclaimed_preprocess, expected_clip_ids(small_corpus.directory)
    assert 1 <= run["at_kill"] < len(expected), "the node died in the middle of the run"
    assert run["second"] == "SUCCEEDED", run["rerun_logs"][-4000:]
    done = set(run["after_first"])  # what the (perhaps failed) first run left, whole
    assert len(done) == len(run["after_first"]), "the first run wrote a clip twice"
    planned = f"{len(expected)} valid rows: {len(done)} already in clips/, 0 failed earlier (skipped), "
    assert f"{planned}{len(expected) - len(done)} to process" in run["rerun_logs"], run["rerun_logs"][-4000:]
    clips = read_clips(run["out"])  # fails on a duplicate clip id
    assert set(clips) == expected
    assert [row for row in read_all(failures_uri(run["out"])) if row["stage"] != "parse"] == []
    manifest = storage.read_json(storage.join(run["out"], "manifest.json"))
    assert manifest["counts"]["clips"] == len(expected) and manifest["counts"]["failures"] == 0


# ---- training --------------------------------------------------------------------------------


def _metrics(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.csv"  # written whole (temp file + rename) by rank 0 after each epoch
    return list(csv.DictReader(io.StringIO(path.read_text()))) if path.exists() else []


def _checkpointed_epoch(run_dir: Path) -> int:
    """The epoch of the latest checkpoint that Ray Train's controller registered (0: none yet). A checkpoint_*
    directory alone is not enough: the controller registers its report at its next poll of the worker."""
    try:
        snapshot = json.loads((run_dir / "checkpoint_manager_snapshot.json").read_text())
    except (FileNotFoundError, ValueError):  # not written yet, or being written
        return 0
    return int(((snapshot.get("latest_checkpoint_result") or {}).get("metrics") or {}).get("epoch", 0))


def test_training_on_s3_data_resumes_from_its_checkpoint_after_a_reclaimed_node(
    cluster, s3_preprocess, tmp_path_factory
):
    runs = tmp_path_factory.mktemp("spot_runs")
    run_dir = runs / "spot"
    started = time.monotonic()
    # --cpus-per-worker 2: the training worker fits only the worker node, the one killed
    cluster.submit("train-1", "python", "-m", "trainer.train", "--data", s3_preprocess["data"],
                   "--storage", str(runs), "--name", "spot", "--epochs", str(EPOCHS), "--num-workers", "1",
                   "--cpus-per-worker", "2", *TINY_RUN)  # fmt: skip
    wait_for_moment(cluster, "train-1", lambda: _checkpointed_epoch(run_dir), "checkpoint")
    killed = reclaim_worker(cluster)
    registered, before = _checkpointed_epoch(run_dir), _metrics(run_dir)
    assert wait_for_job(cluster, "train-1") == "SUCCEEDED", logs(cluster, "train-1")[-4000:]
    print(f"[spot] training: {time.monotonic() - started:.1f} s; killed after checkpoint {registered}")

    text = logs(cluster, "train-1")
    resumed = re.search(rf"resuming {re.escape(str(run_dir))} after epoch (\d+) ", text)
    assert resumed, f"the run did not resume from a checkpoint:\n{text[-4000:]}"
    resumed_after = int(resumed.group(1))
    assert 1 <= registered <= resumed_after < EPOCHS, (registered, resumed_after)  # killed before the run ended
    rows = _metrics(run_dir)
    assert [int(row["epoch"]) for row in rows] == list(range(1, EPOCHS + 1))
    assert rows[:resumed_after] == before[:resumed_after], "the checkpointed epochs are kept, not trained again"
    assert all(float(row["finished_at"]) > killed for row in rows[resumed_after:])
    assert (run_dir / "model.safetensors").is_file()
