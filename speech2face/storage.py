"""One way to read and write files whether they live in a local directory or at s3://bucket/prefix.

A URI is a local path (relative or absolute), ``file:///abs/path`` or ``s3://bucket/key``. S3
settings come from the environment, as for the AWS CLI: ``AWS_ENDPOINT_URL`` (or
``AWS_ENDPOINT_URL_S3``) for S3-compatible stores such as Ceph RGW or MinIO, ``AWS_REGION`` /
``AWS_DEFAULT_REGION``, and credentials from the AWS default chain (env vars, ~/.aws, instance
role). Credentials are never passed through or printed by this module.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import urlparse

from pyarrow import fs as pafs

SUPPORTED = "a local path, file:///absolute/path or s3://bucket/prefix"
_COPY_CHUNK = 8 << 20
T = TypeVar("T")


def _split(uri: str | os.PathLike) -> tuple[str, str]:
    """(scheme, rest); scheme is '' for a plain local path. Raises on an unsupported scheme."""
    uri = os.fspath(uri)
    if "://" not in uri:
        return "", uri
    scheme, rest = uri.split("://", 1)
    scheme = scheme.lower()
    if scheme not in ("file", "s3"):
        raise ValueError(
            f"Unsupported storage URI {uri!r}: '{scheme}://' is not supported. Use {SUPPORTED}; "
            "for another S3-compatible store (MinIO, Ceph, GCS interop) use s3:// and set AWS_ENDPOINT_URL."
        )
    return scheme, rest


def is_remote(uri: str | os.PathLike) -> bool:
    return _split(uri)[0] == "s3"


def _s3_filesystem() -> pafs.S3FileSystem:
    options: dict[str, Any] = {}
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        parsed = urlparse(endpoint)
        if not parsed.scheme or not parsed.netloc:
            raise ValueError(f"AWS_ENDPOINT_URL must look like http://host:port, got {endpoint!r}")
        options.update(endpoint_override=parsed.netloc, scheme=parsed.scheme)
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        options["region"] = region
    return pafs.S3FileSystem(**options)


def resolve(uri: str | os.PathLike) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem and the path inside it: an absolute path locally, 'bucket/key' on S3."""
    scheme, rest = _split(uri)
    if scheme == "s3":
        path = rest.strip("/")
        if not path:
            raise ValueError(f"S3 URI {os.fspath(uri)!r} names no bucket; use s3://bucket/prefix")
        return _s3_filesystem(), path
    return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(rest))


def join(uri: str | os.PathLike, *parts: str) -> str:
    scheme, _ = _split(uri)
    if not scheme:
        return os.path.join(os.fspath(uri), *parts)
    return "/".join([os.fspath(uri).rstrip("/"), *(part.strip("/") for part in parts)])


def _uri_for(uri: str | os.PathLike, path: str) -> str:
    """Turn a path inside the filesystem of `uri` back into a URI of the same kind."""
    scheme, _ = _split(uri)
    return f"s3://{path}" if scheme == "s3" else path


def exists(uri: str | os.PathLike) -> bool:
    filesystem, path = resolve(uri)
    return retried(lambda: filesystem.get_file_info(path), uri).type != pafs.FileType.NotFound


def _missing(uri: str | os.PathLike) -> FileNotFoundError:
    return FileNotFoundError(f"No such file: {os.fspath(uri)}")


# S3 errors worth retrying (the ones Ray Data's own writes retry, see DataContext.retried_io_errors).
TRANSIENT_S3_ERRORS = ("AWS Error NETWORK_CONNECTION", "AWS Error SLOW_DOWN", "AWS Error INTERNAL_FAILURE",
                       "AWS Error SERVICE_UNAVAILABLE", "HTTP status 503")  # fmt: skip
S3_BACKOFF_S = (1, 2, 4, 8, 16)  # ~31 s: a gateway restart, not a long outage


def is_transient(error: Exception) -> bool:
    """An S3 error that may pass if the operation is run again (not a missing file, not bad bytes)."""
    return any(marker in str(error) for marker in TRANSIENT_S3_ERRORS)


def retried(operation: Callable[[], T], uri: str | os.PathLike) -> T:
    """``operation()``, run again after a transient S3 error (every read, listing and write of this module
    goes through here); a local ``uri`` runs it once. Whole operations are retried, so a retried
    read never returns part of a file twice."""
    if not is_remote(uri):
        return operation()
    for backoff_s in S3_BACKOFF_S:
        try:
            return operation()
        except OSError as error:
            if not is_transient(error):
                raise
            time.sleep(backoff_s)
    return operation()  # the last try: its error is the caller's


def read_bytes(uri: str | os.PathLike) -> bytes:
    filesystem, path = resolve(uri)

    def read() -> bytes:
        with filesystem.open_input_stream(path) as stream:
            return stream.read()

    try:
        return retried(read, uri)
    except FileNotFoundError as error:
        raise _missing(uri) from error


def write_bytes(uri: str | os.PathLike, data: bytes) -> None:
    """Write a whole file. Locally via a temp file + rename, so readers never see half a file;
    an S3 PUT is already all-or-nothing, and is retried on transient errors."""
    filesystem, path = resolve(uri)
    if is_remote(uri):

        def put() -> None:
            with filesystem.open_output_stream(path) as stream:
                stream.write(data)

        return retried(put, uri)
    directory, name = os.path.split(path)
    os.makedirs(directory, exist_ok=True)
    fd, temp_path = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        os.replace(temp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_path)
        raise


def read_json(uri: str | os.PathLike) -> Any:
    return json.loads(read_bytes(uri))


def write_json(uri: str | os.PathLike, value: Any) -> None:
    write_bytes(uri, (json.dumps(value, indent=2, ensure_ascii=False) + "\n").encode())


def list_files(uri: str | os.PathLike, suffix: str | None = None) -> list[str]:
    """Sorted URIs of all files below `uri` (recursively), optionally only those ending in `suffix`.

    A missing directory lists as empty (on S3 an empty prefix and a missing one are the same).
    Names starting with '.' are skipped: they are in-flight temp files of `write_bytes`."""
    filesystem, path = resolve(uri)
    selector = pafs.FileSelector(path, recursive=True, allow_not_found=True)
    found = [
        info.path
        for info in retried(lambda: filesystem.get_file_info(selector), uri)
        if info.type == pafs.FileType.File
        and not info.base_name.startswith(".")
        and (suffix is None or info.base_name.endswith(suffix))
    ]
    return [_uri_for(uri, found_path) for found_path in sorted(found)]


def makedirs(uri: str | os.PathLike) -> None:
    """Create a local directory; on S3 (which has no directories) check that the bucket exists."""
    filesystem, path = resolve(uri)
    if not is_remote(uri):
        os.makedirs(path, exist_ok=True)
        return
    bucket = path.split("/", 1)[0]
    if retried(lambda: filesystem.get_file_info(bucket), uri).type == pafs.FileType.NotFound:
        raise FileNotFoundError(
            f"S3 bucket '{bucket}' (for {os.fspath(uri)}) does not exist or is not visible with these "
            f"credentials; create it first, e.g. `aws s3 mb s3://{bucket}`."
        )


class NotWritableError(OSError):
    """``check_writable`` failed; the message names the URI and where credentials came from, never a secret."""


def credential_source() -> str:
    """Where the AWS default chain finds credentials here, as a person would check it (no values)."""
    if os.environ.get("AWS_ACCESS_KEY_ID"):
        return "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY in the environment"
    if os.environ.get("AWS_PROFILE"):
        return f"profile {os.environ['AWS_PROFILE']!r} (AWS_PROFILE) of ~/.aws"
    if os.path.exists(os.path.expanduser("~/.aws/credentials")):
        return "the default profile of ~/.aws/credentials"
    return "none in the environment or ~/.aws (the instance role, if any)"


def check_writable(uri: str | os.PathLike) -> None:
    """Write and delete a small marker object under ``uri``, so a bad bucket or key fails before any work."""
    marker = join(uri, f".write-check-{os.getpid()}-{os.urandom(4).hex()}")
    try:
        makedirs(uri)
        write_bytes(marker, b"speech2face write check\n")
        delete(marker)
    except (OSError, ValueError) as error:
        detail = str(error).strip().splitlines()[0][:300].rstrip(".") if str(error).strip() else type(error).__name__
        where = f"; S3 credentials: {credential_source()}" if is_remote(uri) else ""
        raise NotWritableError(f"cannot write to {os.fspath(uri)}: {detail}{where}") from None


@contextlib.contextmanager
def local_copy(uri: str | os.PathLike) -> Iterator[str]:
    """A local file path with the content of `uri`: the path itself when local, else a temp
    download (same file name, so suffixes like .h5 survive) deleted on exit."""
    filesystem, path = resolve(uri)
    if not is_remote(uri):
        if not os.path.isfile(path):
            raise _missing(uri)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="speech2face-") as temp_dir:
        local_path = os.path.join(temp_dir, posixpath.basename(path))

        def copy() -> None:  # from the start on every try: open(..., "wb") truncates
            with filesystem.open_input_stream(path) as source, open(local_path, "wb") as target:
                shutil.copyfileobj(source, target, _COPY_CHUNK)

        try:
            retried(copy, uri)
        except FileNotFoundError as error:
            raise _missing(uri) from error
        yield local_path


def delete(uri: str | os.PathLike) -> None:
    """Delete one file; a missing file is not an error (resume may race with a cleanup)."""
    filesystem, path = resolve(uri)
    with contextlib.suppress(FileNotFoundError):
        retried(lambda: filesystem.delete_file(path), uri)
