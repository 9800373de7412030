"""A real two-node Ray cluster on loopback, started with the Ray CLI as a user would (`ray start`).

Each node is a `ray start --block` process in its own process group, so stopping the cluster
kills exactly the processes this module started (never `ray stop`, which would hit every Ray
on the machine).
"""

from __future__ import annotations

import contextlib
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
ROOT = Path(__file__).resolve().parents[2]


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
    env: dict = field(default_factory=dict)
    worker_args: list[str] = field(default_factory=list)  # the worker's `ray start` arguments, ports aside
    # Ray's unix sockets live here; pytest's tmp paths exceed the 107-byte AF_UNIX limit.
    temp_dir: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="s2f-ray-", dir="/tmp"))
    # Each worker node its own, as on separate machines: sharing the head's, a new node's runtime-env agent
    # unpacks a job's working_dir again into the head's copy, under the feet of the job's running driver.
    worker_temp_dirs: list[str] = field(default_factory=list)

    def get(self, path: str) -> dict:
        with urllib.request.urlopen(self.dashboard_url + path, timeout=30) as response:
            return json.load(response)

    def submit(self, submission_id: str, *command: str) -> None:
        """`ray job submit --working-dir . --no-wait`, as a user submits a job: its driver runs on the head."""
        result = subprocess.run(
            [RAY, "job", "submit", "--address", self.dashboard_url, "--working-dir", str(ROOT),
             "--submission-id", submission_id, "--no-wait", "--", *command],
            capture_output=True, text=True, timeout=300, env=os.environ | {"RAY_AUTH_MODE": "disabled"})  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr

    def nodes(self) -> list[dict]:
        return [n for n in self.get("/api/v0/nodes?limit=100")["data"]["result"]["result"] if n["state"] == "ALIVE"]

    def stop(self) -> None:
        """SIGKILL to every node, as to a reclaimed one: a test cluster's state is thrown away, and `ray start
        --block` rarely ends within 20 s of SIGTERM on a loaded machine (it stops the node's processes one by one)."""
        while self.processes:
            self._kill(self.processes.pop())
        for directory in [self.temp_dir, *self.worker_temp_dirs]:
            shutil.rmtree(directory, ignore_errors=True)

    def kill_worker(self) -> None:
        """The worker node vanishes, as a reclaimed spot instance does: SIGKILL to its `ray start` process group
        (raylet, object store, agents) and to its Ray workers, which run in process groups of their own (left
        alone, they go on for a second or two). The head notices the loss by the node's missed health checks."""
        self._kill(self.processes.pop())

    @staticmethod
    def _kill(node: subprocess.Popen) -> None:
        processes = _descendants(node.pid)  # before the kill: then they are reparented
        with contextlib.suppress(ProcessLookupError):
            os.killpg(node.pid, signal.SIGKILL)
        for pid in processes:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        node.wait()

    def start_worker(self) -> None:
        """A worker node with the same `ray start` arguments (fresh ports), as the autoscaler's replacement."""
        known = {node["node_id"] for node in self.nodes()}  # the killed node may still count as alive
        self.processes.append(_start_node(self._worker_start_args(), self.logs[1], self.env, append=True))
        _wait(lambda: {node["node_id"] for node in self.nodes()} - known, "the new worker node to register", self)

    def _worker_start_args(self) -> list[str]:
        self.worker_temp_dirs.append(tempfile.mkdtemp(prefix="s2f-ray-w-", dir="/tmp"))
        return [*self.worker_args, f"--temp-dir={self.worker_temp_dirs[-1]}", *_node_ports()]

    def log_tails(self) -> str:
        return "\n".join(f"--- {log}\n{log.read_text()[-2000:]}" for log in self.logs if log.exists())


def _descendants(root: int) -> list[int]:
    """The ids of every process below ``root``, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):  # gone meanwhile
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        below = children.get(todo.pop(), [])
        found += below
        todo += below
    return found


def _start_node(args: list[str], log: Path, env: dict, append: bool = False) -> subprocess.Popen:
    with open(log, "a" if append else "w") as output:
        return subprocess.Popen([RAY, "start", "--block", *args], stdout=output, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)  # fmt: skip


def start_cluster(workdir: Path, env: dict, head_cpus: int = 2, worker_cpus: int = 2) -> LocalCluster:
    """Head (CPU only) + a worker declaring one logical GPU and the custom resource `worker_node`."""
    env = env | {"RAY_AUTH_MODE": "disabled"}  # a loopback test cluster; production keeps token auth
    gcs_port, dashboard_port = free_port(), free_port()
    cluster = LocalCluster(f"127.0.0.1:{gcs_port}", f"http://127.0.0.1:{dashboard_port}", env=env)
    cluster.logs = [workdir / "head.log", workdir / "worker.log"]
    cluster.worker_args = [f"--address={cluster.gcs_address}", "--node-ip-address=127.0.0.1",
                           f"--num-cpus={worker_cpus}", "--num-gpus=1", '--resources={"worker_node": 1}']  # fmt: skip
    try:
        cluster.processes.append(_start_node(
            ["--head", "--node-ip-address=127.0.0.1", f"--port={gcs_port}", "--dashboard-host=127.0.0.1",
             f"--dashboard-port={dashboard_port}", f"--num-cpus={head_cpus}", "--num-gpus=0",
             f"--temp-dir={cluster.temp_dir}", *_node_ports()], cluster.logs[0], env))  # fmt: skip
        _wait(lambda: cluster.get("/api/version"), "the head's dashboard", cluster)
        for attempt in range(2):
            cluster.processes.append(_start_node(cluster._worker_start_args(), cluster.logs[1], env))
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
