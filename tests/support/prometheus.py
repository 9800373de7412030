"""A real Prometheus (Debian's package) on loopback, scraping given targets every second: for the metrics tests."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.support.local_cluster import free_port

# the session Ray exports the system's own metrics every 2 s (Ray's default: 10 s), so metric tests wait less
METRICS_REPORT_MS = 2000
DASHBOARD = Path(__file__).resolve().parents[2] / "grafana" / "speech2face.json"
SERVE_PANELS = "Serve: "  # the title of the panels the serve test checks (the others: tests/integration)


@dataclass
class Prometheus:
    url: str
    process: subprocess.Popen
    log: Path

    def query(self, promql: str) -> list[dict]:
        """The instant vector of ``promql``: [{"metric": {labels}, "value": [time, "value"]}, ...]."""
        address = f"{self.url}/api/v1/query?query={urllib.parse.quote(promql)}"
        with urllib.request.urlopen(address, timeout=10) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        return body["data"]["result"]

    def wait_for(self, promql: str, done, timeout_s: float = 90) -> list[dict]:
        """``query(promql)`` once ``done(result)`` holds (scrapes and the exporter lag by seconds)."""
        deadline = time.monotonic() + timeout_s
        while True:
            result = self.query(promql)
            if done(result) or time.monotonic() > deadline:
                return result
            time.sleep(1)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def start_prometheus(workdir: Path, targets: list[str]) -> Prometheus:
    binary = shutil.which("prometheus")
    assert binary, "`make setup` installs Debian's prometheus package (a test-only dependency)"
    config = workdir / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: ray\n    static_configs:\n"
        f"      - targets: {json.dumps(targets)}\n"
    )
    port, log = free_port(), workdir / "prometheus.log"
    with open(log, "w") as output:
        process = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip
    server = Prometheus(f"http://127.0.0.1:{port}", process, log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{server.url}/-/ready", timeout=2):
                return server
        except OSError:
            assert process.poll() is None, log.read_text()[-3000:]
            time.sleep(0.5)
    server.stop()
    raise RuntimeError(f"prometheus not ready within 60 s:\n{log.read_text()[-3000:]}")


def sample_labels(line: str) -> dict:
    """The labels of one sample line of Ray's metrics endpoint (Prometheus' text format)."""
    inside = line[line.index("{") + 1 : line.rindex("}")]
    return {key: value.strip('"') for key, value in (pair.split("=", 1) for pair in inside.split(","))}


def dashboard_queries(serve: bool) -> list[str]:
    """The PromQL of the dashboard's Serve panels, or of the others."""
    board = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in board["panels"] if panel["title"].startswith(SERVE_PANELS) == serve
            for target in panel["targets"]]  # fmt: skip


def check_queries_hold_samples(prometheus: Prometheus, queries: list[str]) -> None:
    """Each query evaluates (a typo in PromQL is a 400), and each metric it names has samples in 30 minutes."""
    for query in queries:
        prometheus.query(query)
        names = set(re.findall(r"ray_s2f_\w+", query))
        assert names, query
        for name in names:
            held = prometheus.query(f'count(count_over_time({{__name__="{name}"}}[30m]))')
            assert held and float(held[0]["value"][1]) > 0, (name, query)
