"""Loopback HTTP servers for tests: a directory served with byte ranges, and scripted misbehaviour for
chosen files (named by their path under the directory).

A script gets the request handler and how many times its name was requested (1 for the first) and
returns True when it answered; otherwise the file is served as usual.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import subprocess
import sys
import threading
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from demo_corpus.server import OriginServer, RangeHandler

Script = Callable[[RangeHandler, int], bool]


@dataclass
class Site:
    url: str
    hits: Counter = field(default_factory=Counter)  # file name -> requests
    headers: list[dict] = field(default_factory=list)  # each request's headers, in order
    bytes_sent: Counter = field(default_factory=Counter)  # by scripts that stream
    proxied: int = 0  # requests for an absolute URL: this server was the client's proxy
    sent: list = field(default_factory=list)  # every response (demo_corpus.server.Sent)


def status(code: int, times: int | None = None) -> Script:
    """Answer ``code`` to the first ``times`` requests (all, if None), then serve the file."""

    def script(handler, hit: int) -> bool:
        if times is not None and hit > times:
            return False
        handler.send_error(code)
        return True

    return script


def page(text: str) -> Script:
    """A 200 HTML page, as a video site shows for a removed video."""

    def script(handler, hit: int) -> bool:
        body = f"<html><head><title>{text}</title></head><body><h1>{text}</h1></body></html>".encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "text/html; charset=utf-8")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)
        return True

    return script


def forbidden_after(served: int) -> Script:
    """Serve the first ``served`` requests, then answer 403: a signed URL that expired mid-download."""

    def script(handler, hit: int) -> bool:
        if hit <= served:
            return False
        handler.send_error(403)
        return True

    return script


def dropped_midway(fraction: float) -> Script:
    """Promise the asked range, send ``fraction`` of it, then close the connection."""

    def script(handler, hit: int) -> bool:
        file = handler.send_head()
        if file is None:
            return True
        with file:
            length = handler.body_length if handler.body_length is not None else os.fstat(file.fileno()).st_size
            handler.wfile.write(file.read(int(length * fraction)))
        handler.close_connection = True
        handler.connection.shutdown(socket.SHUT_RDWR)
        return True

    return script


def redirect(to_name: str) -> Script:
    def script(handler, hit: int) -> bool:
        handler.send_response(302)
        handler.send_header("Location", f"/{to_name}")
        handler.send_header("Content-Length", "0")
        handler.end_headers()
        return True

    return script


def stall(release: threading.Event) -> Script:
    """Hold the connection open and say nothing, until ``release`` is set."""

    def script(handler, hit: int) -> bool:
        release.wait(120)
        return True

    return script


def _stream(handler, name: str, total: int, chunks: Iterator[bytes], content_type: str, site: Site) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(total))
    handler.end_headers()
    with contextlib.suppress(OSError):  # the client hung up: what a deadline or a size cap does
        for chunk in chunks:
            handler.wfile.write(chunk)
            site.bytes_sent[name] += len(chunk)


def trickle(data: bytes, bytes_per_s: int, site: Site, release: threading.Event) -> Script:
    """Send ``data`` at ``bytes_per_s``, one chunk a second: never idle long enough for a socket timeout."""

    def chunks() -> Iterator[bytes]:
        for offset in range(0, len(data), bytes_per_s):
            yield data[offset : offset + bytes_per_s]
            if release.wait(1.0):
                return

    def script(handler, hit: int) -> bool:
        _stream(handler, Path(handler.path).name, len(data), chunks(), "video/mp4", site)
        return True

    return script


def generated_video(total_bytes: int, site: Site) -> Script:
    """A raw-video Matroska response of ``total_bytes``, made by ffmpeg as it is sent (never on disk)."""
    command = ["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=1280x720:rate=25",
               "-pix_fmt", "yuv420p", "-c:v", "rawvideo", "-f", "matroska", "-"]  # fmt: skip

    def script(handler, hit: int) -> bool:
        generator = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)

        def chunks() -> Iterator[bytes]:
            left = total_bytes
            while left > 0 and (chunk := generator.stdout.read(min(left, 1 << 20))):
                left -= len(chunk)
                yield chunk

        try:
            _stream(handler, Path(handler.path).name, total_bytes, chunks(), "video/x-matroska", site)
        finally:
            generator.kill()
            generator.wait()
        return True

    return script


def write_cookies(path: Path, name: str, value: str) -> Path:
    """A Netscape-format cookies.txt (what yt-dlp's --cookies reads) with one cookie for 127.0.0.1."""
    path.write_text(f"# Netscape HTTP Cookie File\n127.0.0.1\tFALSE\t/\tFALSE\t2000000000\t{name}\t{value}\n")
    return path


class _Handler(RangeHandler):
    scripts: dict[str, Script] = {}
    site: Site
    lock: threading.Lock

    def do_GET(self):  # noqa: N802 - http.server's naming
        if self.path.startswith("http://"):  # a client using this server as its HTTP proxy
            self.path = urllib.parse.urlsplit(self.path).path
            self.site.proxied += 1
        name = self.path.split("?")[0].lstrip("/")
        with self.lock:
            self.site.hits[name] += 1
            self.site.headers.append(dict(self.headers))
            hit = self.site.hits[name]
        script = self.scripts.get(name)
        if script is None or not script(self, hit):
            super().do_GET()


class _Server(OriginServer):
    def handle_error(self, request, client_address):
        """A client that hangs up mid-response (ffmpeg has what it needs, or was stopped) is not news."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@contextlib.contextmanager
def serve_site(directory: str | Path, scripts: Callable[[Site, threading.Event], dict[str, Script]] | None = None,
               ) -> Iterator[Site]:  # fmt: skip
    """A server for ``directory``; ``scripts(site, release)`` names the misbehaving files.

    ``release`` is set when the server stops, so scripts that hold a connection let go.
    """
    release, site = threading.Event(), Site(url="")
    handler = type("Handler", (_Handler,), {"site": site, "lock": threading.Lock(), "scripts": {}})
    handler.scripts = scripts(site, release) if scripts else {}
    server = _Server(("127.0.0.1", 0), functools.partial(handler, directory=str(directory)))
    site.url, site.sent = f"http://127.0.0.1:{server.server_address[1]}", server.sent
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield site
    finally:
        release.set()
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def serve(directory: str | Path, stall_names: set[str] = frozenset()) -> Iterator[str]:
    """Yields the base URL (http://127.0.0.1:PORT) of a server for ``directory``; ``stall_names`` never answer."""
    with serve_site(directory, lambda site, release: {name: stall(release) for name in stall_names}) as site:
        yield site.url
