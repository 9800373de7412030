"""An s3:// object as a loopback HTTP URL that honours ``Range``, so ffmpeg seeks in it with ranged reads.

ffmpeg cuts a 6 s segment out of an hour of video by reading the index and then only the bytes of the
segment; over HTTP it does so with ``Range`` requests. Each one becomes ranged S3 reads of the object
(pyarrow's ``read_at``), a chunk at a time, so a request the client abandons stops costing reads. The file
is never copied whole, to the driver or anywhere else. Nothing here is reachable from another machine.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from pyarrow import fs as pafs

from speech2face import storage

# One ranged S3 read. Small, because ffmpeg abandons open-ended requests and what was read ahead for them
# is wasted (bytes per cut: benchmarks/RESULTS.md, "Ranged reads").
CHUNK_BYTES = 64 << 10
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def requested_range(header: str, size: int) -> tuple[int, int] | None:
    """(first, last) byte that a single ``Range: bytes=A-B`` (or ``A-``, or ``-N``: the last N) asks of an
    object of ``size`` bytes; None without such a header (the whole object). first > last: unsatisfiable."""
    match = _RANGE.fullmatch(header.strip())
    if not match or not (match[1] or match[2]):
        return None
    if not match[1]:  # bytes=-N: the last N bytes
        return max(size - int(match[2]), 0), size - 1
    return int(match[1]), min(int(match[2]), size - 1) if match[2] else size - 1


@dataclass
class Served:
    """The URL ffmpeg reads, and what it cost: bytes read from the store and requests answered."""

    url: str
    size: int
    bytes_read: int = 0
    requests: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _count(self, n: int) -> None:
        with self._lock:
            self.bytes_read += n


@contextlib.contextmanager
def serve(uri: str) -> Iterator[Served]:
    """Serve ``uri`` on 127.0.0.1 while the block runs. FileNotFoundError when it does not exist."""
    filesystem, path = storage.resolve(uri)
    info = storage.retried(lambda: filesystem.get_file_info(path), uri)
    if info.type != pafs.FileType.File:
        raise FileNotFoundError(f"No such file: {uri}")
    source = storage.retried(lambda: filesystem.open_input_file(path), uri)  # read_at is thread-safe
    served = Served(url="", size=info.size)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def do_HEAD(self) -> None:
            self._answer(send_body=False)

        def do_GET(self) -> None:
            self._answer(send_body=True)

        def _answer(self, send_body: bool) -> None:
            requested = self.headers.get("Range", "")
            served.requests.append(requested or "whole")
            wanted = requested_range(requested, info.size)
            first, last = wanted or (0, info.size - 1)
            if first > last:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{info.size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206 if wanted else 200)
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(last - first + 1))
            if wanted:
                self.send_header("Content-Range", f"bytes {first}-{last}/{info.size}")
            self.end_headers()
            offset = first
            while send_body and offset <= last:
                size = min(CHUNK_BYTES, last - offset + 1)
                data = storage.retried(lambda at=offset, n=size: source.read_at(n, at), uri)
                served._count(len(data))
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    return  # the client has what it wanted
                offset += len(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    served.url = f"http://127.0.0.1:{server.server_address[1]}/{path.rsplit('/', 1)[-1]}"
    thread = threading.Thread(target=server.serve_forever, name="s2f-ranges", daemon=True)
    thread.start()
    try:
        yield served
    finally:
        server.shutdown()
        server.server_close()
        source.close()
