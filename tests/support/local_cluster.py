"""A real two-node Ray cluster on loopback, started with the Ray CLI as a user would (`ray start`).

Each node is a `ray start --block` process in its own process group, so stopping the cluster
kills exactly the processes this module started (never `ray stop`, which would hit every Ray
on the machine).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _node_ports() -> list[str]:
    # Worker ports below the ephemeral range, where free_port() picks the others: no overlap.
    low = random.randrange(20000, 29000)
    return ["--node-manager-port", str(free_port()), "--object-manager-port", str(free_port()),
            "--dashboard-agent-listen-port", str(free_port()), "--dashboard-agent-grpc-port", str(free_port()),
            "--metrics-export-port", str(free_port()), "--runtime-env-agent-port", str(free_port()),
            "--min-worker-port", str(low), "--max-worker-port", str(low + 200)]  # fmt: skip


@dataclass
class LocalCluster:
    gcs_address: str
    dashboard_url: str
    processes: list[subprocess.Popen] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)
    # Ray's unix sockets live here; pytest's tmp paths exceed the 107-byte AF_UNIX limit.
    temp_dir: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="s2f-ray-", dir="/tmp"))

    def get(self, path: str) -> dict:
        with urllib.request.urlopen(self.dashboard_url + path, timeout=30) as response:
            return json.load(response)

    def nodes(self) -> list[dict]:
        return [n for n in self.get("/api/v0/nodes?limit=100")["data"]["result"]["result"] if n["state"] == "ALIVE"]

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        # `ray start --block` rarely ends within 20 s of SIGTERM on a loaded machine (it stops the node's
        # processes one by one), and a test cluster's state is thrown away: 5 s, then SIGKILL to the group
        deadline = time.monotonic() + 5
        for process in self.processes:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def log_tails(self) -> str:
        return "\n".join(f"--- {log}\n{log.read_text()[-2000:]}" for log in self.logs if log.exists())


def _start_node(args: list[str], log: Path, env: dict) -> subprocess.Popen:
    with open(log, "w") as output:
        return subprocess.Popen([RAY, "start", "--block", *args], stdout=output, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)  # fmt: skip


def start_cluster(workdir: Path, env: dict, head_cpus: int = 2, worker_cpus: int = 2) -> LocalCluster:
    """Head (CPU only) + a worker declaring one logical GPU and the custom resource `worker_node`."""
    env = env | {"RAY_AUTH_MODE": "disabled"}  # a loopback test cluster; production keeps token auth
    gcs_port, dashboard_port = free_port(), free_port()
    cluster = LocalCluster(f"127.0.0.1:{gcs_port}", f"http://127.0.0.1:{dashboard_port}")
    cluster.logs = [workdir / "head.log", workdir / "worker.log"]
    try:
        cluster.processes.append(_start_node(
            ["--head", "--node-ip-address=127.0.0.1", f"--port={gcs_port}", "--dashboard-host=127.0.0.1",
             f"--dashboard-port={dashboard_port}", f"--num-cpus={head_cpus}", "--num-gpus=0",
             f"--temp-dir={cluster.temp_dir}", *_node_ports()], cluster.logs[0], env))  # fmt: skip
        _wait(lambda: cluster.get("/api/version"), "the head's dashboard", cluster)
        for attempt in range(2):
            cluster.processes.append(_start_node(
                [f"--address={cluster.gcs_address}", "--node-ip-address=127.0.0.1", f"--num-cpus={worker_cpus}",
                 "--num-gpus=1", '--resources={"worker_node": 1}', *_node_ports()], cluster.logs[1], env))  # fmt: skip
            try:
                _wait(lambda: len(cluster.nodes()) == 2 or None, "both nodes to register", cluster)
                break
            except RuntimeError:
                # `ray start` gives a raylet 30 s (hard-coded) to register; a loaded 2-core machine can miss it
                if attempt or "timed out during startup" not in cluster.logs[1].read_text():
                    raise
                cluster.processes.pop().wait()
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _wait(probe, what: str, cluster: LocalCluster, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in cluster.processes):
            raise RuntimeError(f"a ray node exited while waiting for {what}\n{cluster.log_tails()}")
        try:
            if probe():
                return
        except OSError:
            pass
        time.sleep(1)
    raise TimeoutError(f"timed out waiting for {what}\n{cluster.log_tails()}")
