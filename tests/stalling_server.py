"""A loopback HTTP server for tests: serves a directory, and never answers for chosen file names."""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class _Handler(SimpleHTTPRequestHandler):
    stall_names: frozenset[str] = frozenset()
    release: threading.Event

    def do_GET(self):  # noqa: N802 - http.server's naming
        if Path(self.path).name in self.stall_names:
            self.release.wait(120)  # hold the connection open and say nothing: a stalled server
            return
        super().do_GET()

    def log_message(self, *args):  # keep test output quiet
        pass


@contextlib.contextmanager
def serve(directory: str | Path, stall_names: set[str] = frozenset()) -> Iterator[str]:
    """Yields the base URL (http://127.0.0.1:PORT) of a server for ``directory``."""
    release = threading.Event()
    handler = type("Handler", (_Handler,), {"stall_names": frozenset(stall_names), "release": release})
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(directory)))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        release.set()
        server.shutdown()
        server.server_close()
