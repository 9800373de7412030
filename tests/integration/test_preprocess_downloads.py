"""Download failures in the pipeline: reasons in failures/ and the manifest, retry by reason, cookies
that never leak, and an unwritable --out found before any download. Loopback servers and the real RGW."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pytest

from pipelines import failures, preprocess
from speech2face import storage
from tests.support import loopback_server as loopback
from tests.support.cli import ROOT
from tests.support.outputs import preprocess_command, read_all, read_clips, readable_clip_ids

COOKIE_VALUE = "c00kie-n3ver-logged-7f3a"
OLD_FAILURE = "oldfailure1_1.000_6.000"


def _site_dir(corpus_dir: Path, tmp_path: Path) -> tuple[Path, str]:
    """The corpus videos (links), plus throttled01.mp4: a copy of the first train clip's video."""
    site = tmp_path / "site"
    site.mkdir()
    for video in corpus_dir.glob("*.mp4"):
        (site / video.name).symlink_to(video)
    first = (corpus_dir / "avspeech_train.csv").read_text().splitlines()[0]
    ytid, rest = first.split(",", 1)
    (site / "throttled01.mp4").symlink_to(corpus_dir / f"{ytid}.mp4")
    return site, f"throttled01,{rest}"


def _write_old_failures(failures_uri: str) -> None:
    """A failures/ file as written before the reason column existed."""
    row = {"clip_id": OLD_FAILURE, "ytid": "oldfailure1", "start": 1.0, "end": 6.0, "stage": "face", "error": "x"}
    old_schema = failures.FAILURE_SCHEMA.remove(failures.FAILURE_SCHEMA.get_field_index("reason"))
    storage.write_bytes(storage.join(failures_uri, "stages-old.parquet"),
                        failures.parquet_bytes(pa.Table.from_pylist([row], schema=old_schema)))  # fmt: skip


def test_throttled_clips_wait_for_a_retry_by_reason_and_cookies_never_leak(small_corpus, ray_session, tmp_path, capfd):
    site_dir, throttled_row = _site_dir(small_corpus.directory, tmp_path)
    good_rows = (small_corpus.directory / "avspeech_train.csv").read_text().splitlines()[:2]
    csv = tmp_path / "train.csv"
    csv.write_text("\n".join([*good_rows, throttled_row, "missingvid1,1,6,0.5,0.5"]) + "\n")
    cookies = loopback.write_cookies(tmp_path / "cookies.txt", "session", COOKIE_VALUE)
    out = str(tmp_path / "out")
    _write_old_failures(storage.join(out, "failures"))

    def scripts(site, release):  # 429 for the first run's two attempts; then the throttling has passed
        return {"throttled01.mp4": loopback.status(429, times=2)}

    with loopback.serve_site(site_dir, scripts) as site:
        common = dict(csv=str(csv), out=out, url_template=site.url + "/{ytid}.mp4", face_embedder="dlib",
                      cpus_per_actor=0.5, batch_size=2, download_retries=1, throttle_backoff=0.2,
                      cookies=str(cookies))  # fmt: skip
        first = preprocess.run(preprocess.PreprocessConfig(**common))
        assert site.hits["throttled01.mp4"] == 2 and site.hits["missingvid1.mp4"] == 1
        assert first.counts.clips == 2
        assert first.counts.failures_per_reason == {"throttled": 1, "unavailable": 1}
        assert first.counts.failures == 3  # and the old file's row, which has no reason

        second = preprocess.run(preprocess.PreprocessConfig(**common, retry_failures="throttled"))
        assert second.processed_this_run == 1  # the throttled clip, and nothing else
        assert site.hits["missingvid1.mp4"] == 1
        assert second.counts.clips == 3 and second.counts.failures_per_reason == {"unavailable": 1}
        assert any(COOKIE_VALUE in headers.get("Cookie", "") for headers in site.headers)

    failures = read_all(storage.join(out, "failures"))
    assert {f["clip_id"]: f.get("reason") for f in failures if f["stage"] != "parse"} == {
        "missingvid1_1.000_6.000": "unavailable", OLD_FAILURE: None}  # the old file has no reason column  # fmt: skip
    captured = capfd.readouterr()
    manifest = Path(out, "manifest.json").read_text()
    ray_logs = Path(ray_session._private.worker._global_node.get_logs_dir_path())
    leaked = [path for path in ray_logs.rglob("*") if path.is_file() and COOKIE_VALUE.encode() in path.read_bytes()]
    assert COOKIE_VALUE not in captured.out + captured.err + manifest + str(failures) and not leaked, leaked


def _preprocess_exit(csv: Path, out: str, url: str, env: dict) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "pipelines.preprocess", "--csv", str(csv), "--out", out,
               "--url-template", url + "/{ytid}.mp4", "--face-embedder", "dlib"]  # fmt: skip
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_an_unwritable_out_is_one_error_before_any_download(s3_bucket, small_corpus, tmp_path):
    csv = small_corpus.directory / "avspeech_train.csv"
    not_a_dir = tmp_path / "a_file"  # unwritable even for root, who ignores permission bits
    not_a_dir.write_text("")
    wrong_secret = "wr0ng-secret-never-printed"
    cases = [
        ("s3://no-such-bucket/x", os.environ, "does not exist"),
        (storage.join(s3_bucket.uri, "out"), os.environ | {"AWS_SECRET_ACCESS_KEY": wrong_secret}, ""),
        (str(not_a_dir / "out"), os.environ, "Not a directory"),
    ]
    with loopback.serve_site(small_corpus.directory) as site:
        for out, env, detail in cases:
            result = _preprocess_exit(csv, out, site.url, env)
            lines = result.stderr.strip().splitlines()
            assert result.returncode == 2 and len(lines) == 1, f"{out}: {result.stderr}"
            assert lines[0].startswith(f"error: cannot write to {out}: ") and detail in lines[0], lines[0]
            if out.startswith("s3://"):
                assert "S3 credentials: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY in the environment" in lines[0]
            for secret in (s3_bucket.server.secret_key, wrong_secret):
                assert secret not in result.stdout + result.stderr
        assert sum(site.hits.values()) == 0  # not one download


def test_an_s3_outage_mid_run_then_a_rerun_loses_and_duplicates_nothing(s3_bucket, small_corpus, ray_address):
    csv = small_corpus.directory / "avspeech_train.csv"
    rows = len(csv.read_text().splitlines())
    out = storage.join(s3_bucket.uri, "out")
    with loopback.serve_site(small_corpus.directory) as site:
        command = preprocess_command(csv, out, site.url)
        env = os.environ | {"RAY_ADDRESS": ray_address}  # the session's Ray: its workers have the S3 settings
        job = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 300
        while not readable_clip_ids(out):
            assert job.poll() is None and time.monotonic() < deadline, "the job ended before writing any clip"
            time.sleep(0.5)
        s3_bucket.server.stop_gateway()
        time.sleep(3)
        s3_bucket.server.start_gateway()
        job.wait(timeout=600)  # it may finish (writes are retried) or fail; the rerun must repair either
        rerun = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    clips = read_clips(out)  # raises on a duplicate clip_id
    assert len(clips) == rows and not read_all(storage.join(out, "failures")), f"job exit {job.returncode}"


@pytest.mark.parametrize(("value", "ok"), [("throttled", True), ("throttled,deadline", True), ("blocked", False)])
def test_retry_failures_takes_known_reasons(value, ok, tmp_path):
    argv = ["--csv", "a.csv", "--out", str(tmp_path), "--face-embedder", "dlib", "--retry-failures", value]
    if ok:
        assert preprocess.parse_args(argv).retry_failures == value
    else:
        with pytest.raises(SystemExit):
            preprocess.parse_args(argv)
    assert preprocess.parse_args(argv[:-2] + ["--retry-failures"]).retry_failures == "all"
