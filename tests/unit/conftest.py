"""The unit tier: in-process only. A test here that starts a subprocess, listens on a socket or starts Ray
fails at once, saying where it belongs (tests/integration)."""

import socket
import subprocess
import sys

import pytest

MOVE = "unit tests run in-process only; a test that needs {} belongs in tests/integration"


def _refuse(what: str):
    def refused(*_args, **_kwargs):
        raise RuntimeError(MOVE.format(what))

    return refused


def _ray_is_running() -> bool:
    ray = sys.modules.get("ray")
    return ray is not None and ray.is_initialized()


@pytest.fixture(autouse=True)
def in_process_only(monkeypatch):
    monkeypatch.setattr(subprocess.Popen, "__init__", _refuse("a subprocess"))
    monkeypatch.setattr(socket.socket, "listen", _refuse("a server"))
    running_before = _ray_is_running()  # the whole suite's session Ray may be up already: not this test's
    yield
    assert running_before or not _ray_is_running(), MOVE.format("Ray")
