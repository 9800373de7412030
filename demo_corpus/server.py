"""Serve a directory over HTTP on the loopback interface, so yt-dlp fetches demo videos as from YouTube."""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HOST = "127.0.0.1"


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args) -> None:  # noqa: A002 - the base class's signature
        pass  # one line per request would drown the pipeline's progress output


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        pass  # clients (ffmpeg fetching a section) hang up mid-file on purpose


def url_template(base_url: str) -> str:
    """The ``--url-template`` for pipelines.preprocess: ``<base_url>/{ytid}.mp4``."""
    return f"{base_url}/{{ytid}}.mp4"


@contextlib.contextmanager
def serve_directory(directory: str | Path, port: int = 0) -> Iterator[tuple[ThreadingHTTPServer, str]]:
    """Serve ``directory`` on 127.0.0.1:``port`` from a background thread; yields ``(server, base_url)``.

    ``port=0`` picks a free port. The server stops when the ``with`` block ends.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"cannot serve {directory}: not a directory (generate the corpus first)")
    if not 0 <= port <= 65535:
        raise ValueError(f"port must be in 0..65535 (0 picks a free one), got {port}")
    handler = functools.partial(_QuietHandler, directory=str(directory))
    try:
        server = _QuietServer((HOST, port), handler)
    except OSError as error:
        message = f"cannot listen on {HOST}:{port} ({error.strerror}); pick another port, or 0 for a free one"
        raise OSError(message) from error
    thread = threading.Thread(target=server.serve_forever, name=f"serve {directory}", daemon=True)
    thread.start()
    try:
        yield server, f"http://{HOST}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
