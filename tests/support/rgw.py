"""A throwaway Ceph RADOS Gateway (a real S3 server) for tests.

One monitor, one in-memory OSD (memstore) and radosgw, all on 127.0.0.1 with ports picked at
run time and every file under one work dir, so parallel runs do not collide. Needs the Debian
packages `radosgw ceph-mon ceph-osd` (`make test` installs them).

The S3 data lives in the OSD's memory (1 GiB at most) and vanishes with the server.

Clients get their settings from environment variables (`RGWServer.env()`). They must be in
`os.environ` *before* a Ray cluster starts, because Ray workers copy the driver's environment
when they are spawned; for a Ray cluster that is already running, pass
`runtime_env={"env_vars": server.env()}` instead.
"""

from __future__ import annotations

import ctypes
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

INSTALL_HINT = (
    "Ceph RGW (the S3 server used by the tests) is not installed: run "
    "`apt-get install -y --no-install-recommends radosgw ceph-mon ceph-osd` (as `make test` does)."
)
REQUIRED_BINARIES = ("ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "ceph-authtool", "monmaptool", "ceph")
START_TIMEOUT_S = 60.0
STOP_GRACE_S = 10.0
PR_SET_PDEATHSIG = 1
OVERRIDING_AWS_SETTINGS = ("AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_SESSION_TOKEN", "AWS_PROFILE")
REGION = "us-east-1"  # RGW's default zonegroup accepts buckets created without a location constraint


class RGWStartError(RuntimeError):
    """The throwaway Ceph cluster did not come up; the message holds the daemons' log tails."""


def rgw_available() -> bool:
    return all(shutil.which(name) for name in REQUIRED_BINARIES)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _log_tail(path: Path, lines: int = 25) -> str:
    text = path.read_text(errors="replace").splitlines()[-lines:]
    return f"--- {path.name} (last {len(text)} lines):\n" + "\n".join(text)


@dataclass
class RGWServer:
    workdir: Path
    endpoint: str
    access_key: str
    secret_key: str
    region: str = REGION
    _processes: list[subprocess.Popen] = field(default_factory=list, repr=False)
    _spawn_gateway: Callable[[], None] | None = field(default=None, repr=False)

    def env(self) -> dict[str, str]:
        """Environment variables an S3 client (pyarrow, the AWS SDKs, Ray workers) needs."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_EC2_METADATA_DISABLED": "true",
            # RGW 16 answers HTTP 411 to the SDK's default streaming-checksum uploads.
            "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required",
            "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required",
        }

    def filesystem(self):
        """An S3FileSystem for this server that works whatever os.environ holds."""
        from pyarrow.fs import S3FileSystem

        # The AWS SDK reads the checksum settings from the environment when the client is made.
        checksum_settings = {k: v for k, v in self.env().items() if "CHECKSUM" in k}
        with mock.patch.dict(os.environ, checksum_settings):
            return S3FileSystem(
                access_key=self.access_key,
                secret_key=self.secret_key,
                endpoint_override=self.endpoint,
                region=self.region,
                allow_bucket_creation=True,
                allow_bucket_deletion=True,
            )

    def create_bucket(self, name: str) -> None:
        self.filesystem().create_dir(name)

    def log_tails(self) -> str:
        logs = [path for path in sorted(self.workdir.glob("*.log")) if path.stat().st_size]
        return "\n".join(_log_tail(path) for path in logs)

    def stop(self) -> None:
        """Stop radosgw, then the OSD, then the monitor (an OSD whose monitor is gone may hang)."""
        while self._processes:
            _terminate(self._processes.pop())

    def stop_gateway(self) -> None:
        """Stop radosgw alone, as an outage: clients get connection errors; the monitor and OSD keep the data."""
        _terminate(self._processes.pop())  # radosgw is started last

    def start_gateway(self) -> None:
        """Start radosgw again after ``stop_gateway`` and wait until it answers. Call it from the thread
        that started the server (the daemons die with their starting thread)."""
        self._spawn_gateway()
        _wait_for_http(self.endpoint, time.monotonic() + START_TIMEOUT_S, self._processes)

    def __enter__(self) -> RGWServer:
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


def _terminate(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _write_conf(workdir: Path, fsid: str, mon_port: int, rgw_port: int) -> Path:
    conf = workdir / "ceph.conf"
    conf.write_text(
        f"""[global]
fsid = {fsid}
mon host = v2:127.0.0.1:{mon_port}
public network = 127.0.0.0/8
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
keyring = {workdir}/keyring
admin socket = {workdir}/$name.asok
pid file = {workdir}/$name.pid
run dir = {workdir}
log file = {workdir}/$name.log
ms bind ipv4 = true
ms bind ipv6 = false
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon warn on pool no redundancy = false
mon data avail warn = 1
mon data avail crit = 0
# A one-OSD test cluster need not batch map changes: start-up drops from ~19 s to ~2.5 s.
paxos propose interval = 0.05
paxos min wait = 0.01

[mon]
mon data = {workdir}/mon.$id
mon initial members = a

[osd]
osd data = {workdir}/osd.$id
osd objectstore = memstore
memstore device bytes = {1 << 30}

[client.rgw]
rgw frontends = beast endpoint=127.0.0.1:{rgw_port}
rgw data = {workdir}/rgw
rgw enable gc threads = false
rgw enable lc threads = false
rgw enable quota threads = false
"""
    )
    return conf


def _run(args: list[str], workdir: Path) -> str:
    result = subprocess.run(args, cwd=workdir, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        output = "\n".join((result.stdout + result.stderr).splitlines()[-15:])
        raise RGWStartError(f"`{' '.join(args)}` failed (exit code {result.returncode}):\n{output}")
    return result.stdout


def _create_keyring(workdir: Path) -> None:
    keyring = str(workdir / "keyring")
    entities = {
        "mon.": ["mon", "allow *"],
        "client.admin": ["mon", "allow *", "osd", "allow *", "mgr", "allow *"],
        "osd.0": ["mon", "allow profile osd", "osd", "allow *", "mgr", "allow profile osd"],
        "client.rgw": ["mon", "allow rw", "osd", "allow rwx", "mgr", "allow rw"],
    }
    _run(["ceph-authtool", "--create-keyring", keyring], workdir)
    for name, caps in entities.items():
        cap_args = [arg for kind, spec in zip(caps[::2], caps[1::2], strict=True) for arg in ("--cap", kind, spec)]
        _run(["ceph-authtool", keyring, "--gen-key", "-n", name, *cap_args], workdir)


def _wait_for_http(endpoint: str, deadline: float, processes: list[subprocess.Popen]) -> None:
    while time.monotonic() < deadline:
        for proc in processes:
            if proc.poll() is not None:
                raise RGWStartError(f"{proc.args[0]} exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(endpoint, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # any HTTP answer (e.g. 403 for an anonymous request) means radosgw serves
        except OSError:
            time.sleep(0.25)
    raise RGWStartError(f"radosgw did not answer on {endpoint} within {START_TIMEOUT_S:.0f} s")


def _warm_up(server: RGWServer) -> None:
    """Write and delete one object: proves the keys work, and makes RGW create its lazily made
    bucket index/data pools now rather than inside the first test."""
    try:
        server.create_bucket("warm-up")
        with server.filesystem().open_output_stream("warm-up/object") as stream:
            stream.write(b"ok")
        server.filesystem().delete_dir("warm-up")
    except OSError as error:
        raise RGWStartError(f"radosgw answers but an S3 write failed: {error}") from error


def _die_with_parent_hook():
    """A pre-exec hook asking Linux to kill the daemon if the test process dies without stop().
    prctl is looked up here, in the parent: the forked child should only make the call."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    return lambda: prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def start_rgw(workdir: str | os.PathLike) -> RGWServer:
    """Start mon + memstore OSD + radosgw under `workdir`, create an S3 user, return the server.

    The daemons are killed if the *thread* that started them ends (Linux PDEATHSIG), so call
    this from a thread that outlives the server, e.g. pytest's main thread."""
    if not rgw_available():
        raise RGWStartError(INSTALL_HINT)
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + START_TIMEOUT_S
    fsid, osd_uuid = str(uuid.uuid4()), str(uuid.uuid4())
    mon_port, rgw_port = _free_port(), _free_port()
    conf = str(_write_conf(workdir, fsid, mon_port, rgw_port))
    server = RGWServer(
        workdir=workdir,
        endpoint=f"http://127.0.0.1:{rgw_port}",
        access_key=secrets.token_hex(10).upper(),
        secret_key=secrets.token_urlsafe(30),
    )

    die_with_parent = _die_with_parent_hook()

    def spawn(args: list[str], log_name: str) -> None:
        log = open(workdir / f"{log_name}.stdout.log", "ab")  # a restarted gateway appends
        server._processes.append(
            subprocess.Popen(
                args,
                cwd=workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=die_with_parent,
            )
        )
        log.close()

    ceph = ["ceph", "-c", conf, "--connect-timeout", "20"]
    try:
        _create_keyring(workdir)
        _run(
            [
                "monmaptool",
                "--create",
                "--fsid",
                fsid,
                "--addv",
                "a",
                f"[v2:127.0.0.1:{mon_port}]",
                str(workdir / "monmap"),
            ],
            workdir,
        )
        _run(["ceph-mon", "-c", conf, "--mkfs", "-i", "a", "--monmap", str(workdir / "monmap")], workdir)
        spawn(["ceph-mon", "-c", conf, "-f", "-i", "a"], "mon.a")
        _run([*ceph, "osd", "new", osd_uuid, "0"], workdir)
        (workdir / "osd.0").mkdir()
        _run(["ceph-osd", "-c", conf, "-i", "0", "--mkfs", "--osd-uuid", osd_uuid], workdir)
        spawn(["ceph-osd", "-c", conf, "-f", "-i", "0"], "osd.0")
        server._spawn_gateway = lambda: spawn(["radosgw", "-c", conf, "-f", "-n", "client.rgw"], "client.rgw")
        server._spawn_gateway()
        _wait_for_http(server.endpoint, deadline, server._processes)
        _run(
            [
                "radosgw-admin",
                "-c",
                conf,
                "user",
                "create",
                "--uid=test",
                "--display-name=test",
                f"--access-key={server.access_key}",
                f"--secret={server.secret_key}",
            ],
            workdir,
        )
        _warm_up(server)
    except BaseException as error:
        server.stop()
        if isinstance(error, (RGWStartError, subprocess.TimeoutExpired)):
            raise RGWStartError(f"Ceph RGW failed to start in {workdir}: {error}\n{server.log_tails()}") from error
        raise
    return server


def _running_in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def s3_server_fixture(tmp_path_factory) -> Iterator[RGWServer]:
    """Body of the session-scoped `s3_server` fixture. In CI (CI=true) an RGW that cannot start
    fails the tests; elsewhere they are skipped with the reason (usually: not installed)."""
    import pytest

    give_up = pytest.fail if _running_in_ci() else pytest.skip
    if not rgw_available():
        give_up(INSTALL_HINT)
    try:
        server = start_rgw(tmp_path_factory.mktemp("rgw"))
    except RGWStartError as error:
        give_up(str(error))
    with server:
        yield server


@dataclass(frozen=True)
class S3Bucket:
    name: str
    uri: str  # s3://<name>/data: a prefix inside the fresh bucket
    server: RGWServer


def s3_bucket_fixture(s3_server: RGWServer, monkeypatch) -> Iterator[S3Bucket]:
    """Body of the function-scoped `s3_bucket` fixture: a fresh bucket, with the client settings
    put in os.environ for this test, so subprocesses and Ray workers *started during the test*
    inherit them (a Ray cluster started earlier needs `runtime_env={"env_vars": s3_server.env()}`)."""
    for name in OVERRIDING_AWS_SETTINGS:  # a developer's own AWS setup must not redirect the tests
        monkeypatch.delenv(name, raising=False)
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    bucket = f"test-{uuid.uuid4().hex[:16]}"
    s3_server.create_bucket(bucket)
    yield S3Bucket(name=bucket, uri=f"s3://{bucket}/data", server=s3_server)
    s3_server.filesystem().delete_dir(bucket)  # leave no buckets behind for later tests
