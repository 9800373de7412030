"""Serve a directory over HTTP on the loopback interface, as a CDN serves video: byte ranges, counted.

``Range: bytes=A-B`` (or ``A-``) gets ``206 Partial Content``, as googlevideo answers, so ffmpeg seeks
into a file instead of reading it from the start. Every file body sent is logged as a :class:`Sent` on
the server's ``sent`` list. ``ranges=False`` answers every request with the whole file, as
``python -m http.server`` does (what the demo served before; the download benchmark compares both).
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from speech2face.ranges import requested_range

HOST = "127.0.0.1"


@dataclass(frozen=True)
class Sent:
    """One response: bytes the server wrote to the socket (a client that hangs up early read fewer)."""

    path: str
    range: str | None  # the request's Range header
    status: int
    bytes: int


class RangeHandler(SimpleHTTPRequestHandler):
    """GET and HEAD with single byte ranges; everything else as ``SimpleHTTPRequestHandler``."""

    def log_message(self, format, *args) -> None:  # noqa: A002 - the base class's signature
        pass  # one line per request would drown the pipeline's progress output

    def send_head(self):
        path = Path(self.translate_path(self.path))
        if not (self.server.ranges and path.is_file()):
            return super().send_head()
        size = path.stat().st_size
        wanted = requested_range(self.headers.get("Range", ""), size)
        if wanted is None:
            return super().send_head()
        first, last = wanted
        if first > last:
            self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            self._record(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE, 0)
            return None
        file = open(path, "rb")  # noqa: SIM115 - closed by do_GET/do_HEAD, as the base class does
        file.seek(first)
        self.send_response(HTTPStatus.PARTIAL_CONTENT)
        self.send_header("Content-Type", self.guess_type(str(path)))
        self.send_header("Content-Range", f"bytes {first}-{last}/{size}")
        self.send_header("Content-Length", str(last - first + 1))
        self.end_headers()
        self.body_length = last - first + 1
        return file

    def send_response(self, code, message=None) -> None:
        self._status, self.body_length = int(code), None  # None: the whole file
        super().send_response(code, message)

    def end_headers(self) -> None:
        if self.server.ranges and self._status in (HTTPStatus.OK, HTTPStatus.PARTIAL_CONTENT):
            self.send_header("Accept-Ranges", "bytes")
        super().end_headers()

    def copyfile(self, source, outputfile) -> None:
        """Copy at most the range's length, counting what the socket accepted."""
        left = self.body_length if self.body_length is not None else os.fstat(source.fileno()).st_size - source.tell()
        sent = 0
        try:
            while left > 0 and (chunk := source.read(min(left, 64 * 1024))):
                outputfile.write(chunk)
                sent += len(chunk)
                left -= len(chunk)
        finally:
            self._record(self._status, sent)

    def _record(self, status: int, sent: int) -> None:
        with self.server.lock:
            self.server.sent.append(Sent(self.path, self.headers.get("Range"), status, sent))


class OriginServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, handler, ranges: bool = True):
        super().__init__(address, handler)
        self.ranges = ranges
        self.sent: list[Sent] = []
        self.lock = threading.Lock()

    def handle_error(self, request, client_address) -> None:
        pass  # clients (ffmpeg fetching a section) hang up mid-file on purpose


def url_template(base_url: str) -> str:
    """The ``--url-template`` for pipelines.preprocess: each video's DASH manifest (``demo_corpus.dash``)."""
    return f"{base_url}/{{ytid}}.mpd"


@contextlib.contextmanager
def serve_directory(
    directory: str | Path, port: int = 0, ranges: bool = True, handler: type[RangeHandler] = RangeHandler
) -> Iterator[tuple[OriginServer, str]]:
    """Serve ``directory`` on 127.0.0.1:``port`` from a background thread; yields ``(server, base_url)``.

    ``port=0`` picks a free port. The server stops when the ``with`` block ends.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"cannot serve {directory}: not a directory (generate the corpus first)")
    if not 0 <= port <= 65535:
        raise ValueError(f"port must be in 0..65535 (0 picks a free one), got {port}")
    try:
        server = OriginServer((HOST, port), functools.partial(handler, directory=str(directory)), ranges)
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
