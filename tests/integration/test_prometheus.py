"""A real Prometheus (Debian's package, on loopback) scraping the session's Ray while a small preprocess runs:
PromQL returns the system's own counters, with the values the run's manifest records."""

import pytest

import telemetry
from demo_corpus.server import serve_directory, url_template
from speech2face.dataset import DECODE, DOWNLOAD, FACE, FEATURE, Manifest
from tests.support.cli import TINY_RUN, check, read_metrics, run
from tests.support.prometheus import check_queries_hold_samples, dashboard_queries, start_prometheus


@pytest.fixture(scope="module")
def prometheus(ray_session, tmp_path_factory):
    """One Prometheus for the module: the dashboard's test queries what the runs before it left."""
    import ray

    port = ray._private.worker.global_worker.node.metrics_export_port  # the node's metrics agent
    server = start_prometheus(tmp_path_factory.mktemp("prometheus"), [f"127.0.0.1:{port}"])
    yield server
    server.stop()


def test_preprocessing_counters_in_prometheus_equal_the_manifests(prometheus, small_corpus, ray_address, tmp_path):
    rows = (small_corpus.directory / "avspeech_train.csv").read_text().splitlines()[:3]
    csv = tmp_path / "train.csv"  # three clips the origin has, two videos it does not (404: unavailable)
    csv.write_text("\n".join([*rows, "missingvid1,1,6,0.5,0.5", "missingvid2,1,6,0.5,0.5"]) + "\n")
    out = tmp_path / "out"
    with serve_directory(small_corpus.directory) as (_, base_url):
        result = check(run("pipelines.preprocess", "--csv", str(csv), "--out", str(out), "--url-template",
                           url_template(base_url), "--cpus-per-actor", "0.5", "--face-embedder", "dlib",
                           ray_address=ray_address))  # fmt: skip
    manifest = Manifest.read(str(out))
    job = manifest.ray_job
    assert job and f'carry JobId="{job}"' in result.stdout
    assert manifest.counts.failures_per_reason == {"unavailable": 2} and manifest.counts.clips == 3

    def total(result: list[dict]) -> float:
        return sum(float(sample["value"][1]) for sample in result)

    failures = prometheus.wait_for(
        f'sum by (stage, reason) (ray_s2f_preprocess_failures_total{{JobId="{job}"}})', lambda r: total(r) >= 2
    )
    held = prometheus.query('count by (__name__, job) ({__name__=~"ray_s2f.*"})')
    assert {(s["metric"]["stage"], s["metric"]["reason"]): float(s["value"][1]) for s in failures} == {
        ("download", "unavailable"): 2.0
    }, held
    sent = prometheus.wait_for(
        f'sum(ray_s2f_preprocess_download_bytes_total{{JobId="{job}"}})',
        lambda r: total(r) >= manifest.downloads["total_bytes"],
    )
    assert total(sent) == manifest.downloads["total_bytes"] > 0
    clips = prometheus.wait_for(
        f'sum by (split) (ray_s2f_preprocess_clips_total{{JobId="{job}"}})', lambda r: total(r) >= 3
    )
    assert {s["metric"]["split"]: float(s["value"][1]) for s in clips} == manifest.counts.per_split
    # a gauge leaves Ray's endpoint with its process: its last value in Prometheus
    planned = prometheus.wait_for(
        f'last_over_time(ray_s2f_preprocess_rows_planned{{JobId="{job}"}}[10m])', lambda r: len(r) > 0
    )
    assert total(planned) == manifest.processed_this_run == 5
    left = prometheus.wait_for(telemetry.ROWS_LEFT, lambda r: any(s["metric"]["JobId"] == job for s in r))
    assert [float(s["value"][1]) for s in left if s["metric"]["JobId"] == job] == [0.0]
    per_stage = prometheus.wait_for(
        f'sum by (stage) (ray_s2f_preprocess_stage_seconds_count{{JobId="{job}"}})', lambda r: total(r) >= 14
    )
    counted = {s["metric"]["stage"]: float(s["value"][1]) for s in per_stage}
    assert counted == {DOWNLOAD: 5, DECODE: 3, FACE: 3, FEATURE: 3}, counted  # the 2 missing videos fail downloading


def test_training_gauges_in_prometheus_equal_metrics_csv(prometheus, small_dataset, ray_address, tmp_path):
    check(run("trainer.train", "--data", str(small_dataset), "--storage", str(tmp_path), "--name", "watched",
              "--epochs", "1", *TINY_RUN, ray_address=ray_address))  # fmt: skip
    (row,) = read_metrics(tmp_path / "watched")
    run_tag = '{run="watched"}'
    for metric, expected in (("ray_s2f_train_samples_per_s", row["samples_per_s"]), ("ray_s2f_train_epoch", 1),
                             ("ray_s2f_train_data_wait_fraction", row["data_wait_frac"])):  # fmt: skip
        result = prometheus.wait_for(f"last_over_time({metric}{run_tag}[10m])", lambda r: len(r) > 0)
        assert [float(sample["value"][1]) for sample in result] == [pytest.approx(expected)], (metric, result)
    losses = prometheus.wait_for(f"last_over_time(ray_s2f_train_loss{run_tag}[10m])", lambda r: len(r) == 2)
    by_split = {sample["metric"]["split"]: float(sample["value"][1]) for sample in losses}
    assert by_split == {"train": pytest.approx(row["train_loss"]), "val": pytest.approx(row["val_loss"])}


def test_every_query_of_the_grafana_dashboard_names_metrics_prometheus_holds(prometheus):
    """After the runs above: each panel's query evaluates, and each metric it names has samples (the Serve
    panels: tests/e2e/test_serve.py, with the service's own Prometheus)."""
    queries = dashboard_queries(serve=False)
    assert len(queries) >= 10
    check_queries_hold_samples(prometheus, queries)
