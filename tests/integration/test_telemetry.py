"""The system's own metrics (telemetry) reach Ray's metrics endpoint from the processes that record them."""

import time
import urllib.request

import pytest

from tests.support.prometheus import sample_labels


def totals(port: int, name: str, job: str) -> dict:
    """Metric ``name`` of Ray job ``job`` on the endpoint, summed by its (stage, reason) labels."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    found: dict = {}
    for line in text.splitlines():
        if line.startswith(name + "{") and f'JobId="{job}"' in line:
            labels = sample_labels(line)
            key = (labels.get("stage"), labels.get("reason"))
            found[key] = found.get(key, 0.0) + float(line.rsplit(" ", 1)[1])
    return found


@pytest.mark.usefixtures("ray_session")
def test_a_stage_records_seconds_failures_by_reason_and_bytes():
    """Counted as differences: other tests of the session may record under the same (the test process's) job."""
    import ray

    from pipelines.stages import _run_row

    @ray.remote(num_cpus=0.25)
    def three_rows() -> None:
        import telemetry

        class Throttled(Exception):
            reason = "throttled"

        def fails(_row):
            raise Throttled("429")

        rows = [{"error": "", "stage": "", "reason": ""} for _ in range(3)]
        _run_row(rows[0], "download", lambda _row: {})
        _run_row(rows[1], "download", fails)
        _run_row(rows[2], "download", fails)
        telemetry.downloaded(12345)

    job = ray.get_runtime_context().get_job_id()
    port = ray._private.worker.global_worker.node.metrics_export_port
    names = ("ray_s2f_preprocess_failures_total", "ray_s2f_preprocess_stage_seconds_count",
             "ray_s2f_preprocess_download_bytes_total")  # fmt: skip
    before = {name: totals(port, name, job) for name in names}
    ray.get(three_rows.remote())
    expected = {names[0]: {("download", "throttled"): 2.0}, names[1]: {("download", None): 3.0},
                names[2]: {(None, None): 12345.0}}  # fmt: skip
    deadline = time.monotonic() + 60  # the agent exports every few seconds
    while True:
        after = {name: totals(port, name, job) for name in names}
        grown = {name: {key: value - before[name].get(key, 0.0) for key, value in after[name].items()
                        if value != before[name].get(key, 0.0)} for name in names}  # fmt: skip
        if grown == expected or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert grown == expected, (before, after)
