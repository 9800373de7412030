"""speech2face.storage behaves the same on a local directory and on s3:// (a real Ceph RGW)."""

import os
import threading
import time

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from speech2face import storage


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path):
    """A base URI that does not exist yet: a local dir, or a prefix in a fresh S3 bucket."""
    if request.param == "local":
        return str(tmp_path / "store")
    return request.getfixturevalue("s3_bucket").uri


def test_bytes_round_trip_and_overwrite(root):
    uri = storage.join(root, "nested", "deeper", "blob.bin")
    payload = bytes(range(256)) * 1000
    assert not storage.exists(uri)

    storage.write_bytes(uri, payload)
    assert storage.exists(uri)
    assert storage.read_bytes(uri) == payload

    storage.write_bytes(uri, b"second version")
    assert storage.read_bytes(uri) == b"second version"
    assert storage.list_files(root) == [uri]  # no temp files left behind


def test_json_round_trip(root):
    manifest = {"clips": 3, "name": "Zoë – 话", "ratios": [0.5, 1e-300], "nested": {"ok": True, "none": None}}
    uri = storage.join(root, "manifest.json")
    storage.write_json(uri, manifest)
    assert storage.read_json(uri) == manifest


def test_parquet_round_trip_through_resolve_is_bit_exact(root):
    special = np.array([np.nan, -0.0, np.inf, -np.inf, np.float32(1e-45), 3.4028235e38, 1 / 3], np.float32)
    rng = np.random.default_rng(0)
    values = np.concatenate([special, rng.standard_normal(1000).astype(np.float32)])
    table = pa.table(
        {
            "clip_id": [f"clip{i:04d}" for i in range(len(values))],
            "value": values,
            "raw": [value.tobytes() for value in values],
        }
    )
    storage.makedirs(storage.join(root, "clips"))
    filesystem, path = storage.resolve(storage.join(root, "clips", "part-0.parquet"))

    pq.write_table(table, path, filesystem=filesystem)
    back = pq.read_table(path, filesystem=filesystem)

    assert back.schema == table.schema
    assert back["clip_id"].to_pylist() == table["clip_id"].to_pylist()
    assert back["raw"].to_pylist() == table["raw"].to_pylist()
    assert back["value"].to_numpy().view(np.uint32).tolist() == values.view(np.uint32).tolist()


def test_list_files_recursive_sorted_with_suffix_filter(root):
    names = ["b/2.parquet", "a.json", "b/1.parquet", "b/c/3.parquet", "b/.in-flight.tmp"]
    for name in names:
        storage.write_bytes(storage.join(root, name), name.encode())

    everything = storage.list_files(root)
    assert everything == [storage.join(root, n) for n in ["a.json", "b/1.parquet", "b/2.parquet", "b/c/3.parquet"]]
    assert [storage.read_bytes(uri) for uri in everything] == [
        b"a.json",
        b"b/1.parquet",
        b"b/2.parquet",
        b"b/c/3.parquet",
    ]
    assert storage.list_files(root, suffix=".parquet") == everything[1:]
    assert storage.list_files(storage.join(root, "b", "c")) == [storage.join(root, "b/c/3.parquet")]
    assert storage.list_files(storage.join(root, "nothing-here")) == []


def test_local_copy_gives_a_readable_local_file(root):
    uri = storage.join(root, "weights", "model.h5")
    storage.write_bytes(uri, b"\x89HDF\r\n" + os.urandom(3 << 20))

    with storage.local_copy(uri) as path:
        assert os.path.isfile(path) and path.endswith("model.h5")
        with open(path, "rb") as file:
            assert file.read() == storage.read_bytes(uri)
    if storage.is_remote(uri):
        assert not os.path.exists(path)  # the download is cleaned up
    else:
        assert path == storage.resolve(uri)[1]  # a local file is used in place, not copied


def test_missing_file_errors_name_the_uri(root):
    missing = storage.join(root, "no", "such.json")
    for action in (storage.read_bytes, storage.read_json):
        with pytest.raises(FileNotFoundError, match="no/such.json"):
            action(missing)
    with pytest.raises(FileNotFoundError, match="no/such.json"):
        with storage.local_copy(missing):
            pass


def test_makedirs_s3_checks_the_bucket_exists(s3_bucket):
    storage.makedirs(storage.join(s3_bucket.uri, "out"))  # existing bucket: fine, nothing written
    assert storage.list_files(f"s3://{s3_bucket.name}") == []
    with pytest.raises(FileNotFoundError, match="bucket 'no-such-bucket-here'.*create it"):
        storage.makedirs("s3://no-such-bucket-here/out")


def test_an_s3_write_during_a_gateway_outage_is_retried_until_it_lands(s3_bucket):
    uri, data = storage.join(s3_bucket.uri, "during-outage.bin"), os.urandom(4096)
    outcome = {}

    def write():
        try:
            storage.write_bytes(uri, data)
            outcome["landed"] = time.monotonic()
        except Exception as error:  # noqa: BLE001 - reported by the assertion below
            outcome["error"] = error

    s3_bucket.server.stop_gateway()
    writer = threading.Thread(target=write)
    try:
        writer.start()
        time.sleep(2)
    finally:
        restarting = time.monotonic()  # the gateway was down until now
        s3_bucket.server.start_gateway()  # from this (the starting) thread: see RGWServer.start_gateway
    writer.join(60)
    assert "error" not in outcome and outcome.get("landed", 0) > restarting, outcome  # it waited out the outage
    assert storage.read_bytes(uri) == data


def test_a_resume_plan_survives_a_gateway_restart_in_the_middle_of_its_reads(s3_bucket, tmp_path, monkeypatch):
    from pipelines.failures import parquet_bytes
    from pipelines.preprocess import ledger
    from pipelines.preprocess.config import PreprocessConfig
    from speech2face import dataset, shards

    csv = tmp_path / "rows.csv"
    csv.write_text("".join(f"video{i:06d},{i}.0,{i + 5}.0,0.5,0.5\n" for i in range(40)))
    config = PreprocessConfig(csv=str(csv), out=s3_bucket.uri, face_embedder="dlib")
    clips, failures = dataset.clips_uri(s3_bucket.uri), dataset.failures_uri(s3_bucket.uri)
    segments = ledger.read_segments(config, failures, write_failures=False)
    for index in range(15):  # the first 30 rows are done, 2 a shard
        ids = [s.clip_id for s in segments[2 * index : 2 * index + 2]]
        table = pa.table({dataset.CLIP_ID: ids, dataset.WAVEFORM: dataset.tensor_array(np.zeros((2, 16000), np.int16))})
        storage.write_bytes(storage.join(clips, f"split=train/part-{index:02d}.parquet"), parquet_bytes(table))

    real_read, calls = shards.read_shard, []
    fifth_read, gateway_down = threading.Event(), threading.Event()

    def read_shard(*args, **kwargs):  # the 5th read waits for the outage, then goes on into it
        calls.append(args[0])
        if len(calls) == 5:
            fifth_read.set()
            gateway_down.wait(60)
        return real_read(*args, **kwargs)

    monkeypatch.setattr(shards, "read_shard", read_shard)
    outcome = {}

    def plan():
        try:
            outcome["todo"] = ledger.plan(config, segments, clips, failures)
            outcome["done_at"] = time.monotonic()
        except Exception as error:  # noqa: BLE001 - reported by the assertion below
            outcome["error"] = error

    planner = threading.Thread(target=plan)
    planner.start()
    try:
        assert fifth_read.wait(60)
        s3_bucket.server.stop_gateway()
        gateway_down.set()
        time.sleep(2)  # the reads now meet refused connections
    finally:
        gateway_down.set()
        restarting = time.monotonic()
        s3_bucket.server.start_gateway()  # from this (the starting) thread: see RGWServer.start_gateway
    planner.join(90)
    assert "error" not in outcome and outcome.get("done_at", 0) > restarting, outcome  # it waited out the outage
    assert outcome["todo"][dataset.CLIP_ID].tolist() == [s.clip_id for s in segments[30:]]  # none lost or doubled
    assert len(calls) >= 15


def test_makedirs_local_creates_the_directory(tmp_path):
    target = tmp_path / "a" / "b"
    storage.makedirs(str(target))
    assert target.is_dir()


@pytest.mark.parametrize("uri", ["gs://bucket/x", "hdfs://host/x", "HTTP://example.com/x.h5"])
def test_unsupported_scheme_says_what_is_supported(uri):
    with pytest.raises(ValueError, match=r"not supported.*s3://bucket/prefix"):
        storage.resolve(uri)
    with pytest.raises(ValueError, match="not supported"):
        storage.read_bytes(uri)


def test_s3_uri_without_bucket_is_rejected():
    with pytest.raises(ValueError, match="names no bucket"):
        storage.resolve("s3://")


def test_resolve_and_join_local_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    filesystem, path = storage.resolve("rel/dir")
    assert isinstance(filesystem, pafs.LocalFileSystem) and path == str(tmp_path / "rel" / "dir")
    assert storage.resolve("file:///abs/x.parquet")[1] == "/abs/x.parquet"
    assert storage.join("out", "clips", "a.parquet") == os.path.join("out", "clips", "a.parquet")
    assert not storage.is_remote("out") and not storage.is_remote("file:///out")


def test_resolve_s3_uses_the_endpoint_from_the_environment(s3_bucket, monkeypatch):
    filesystem, path = storage.resolve(s3_bucket.uri + "/")
    assert isinstance(filesystem, pafs.S3FileSystem) and path == f"{s3_bucket.name}/data"
    assert storage.join("s3://b/p/", "/clips/", "x.parquet") == "s3://b/p/clips/x.parquet"
    assert storage.is_remote(s3_bucket.uri)

    monkeypatch.setenv("AWS_ENDPOINT_URL", "127.0.0.1:1")  # no scheme: a clear error, not a hang
    with pytest.raises(ValueError, match="AWS_ENDPOINT_URL must look like http://host:port"):
        storage.resolve(s3_bucket.uri)
