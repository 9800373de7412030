"""Reading an upload from an HTTP request: size-limited, multipart or raw, with errors a client can act on.

No Ray here: the service turns an ``ApiError`` into a JSON ``{"error": ...}`` response with its status.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass

from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from speech2face.audio import AudioError, UnusableAudioError, load_audio_with_duration

RAW_TYPES = ("audio/", "video/", "application/octet-stream")
HOW_TO_SEND = (
    "send the file as multipart/form-data (field 'file') or as the raw body with Content-Type "
    "audio/*, video/* or application/octet-stream"
)


class ApiError(Exception):
    """A request the service refuses: ``status`` is the HTTP status, the message one line for the client."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Upload:
    data: bytes
    filename: str


async def _limited(stream: AsyncIterator[bytes], max_bytes: int) -> AsyncIterator[bytes]:
    received = 0
    async for chunk in stream:
        received += len(chunk)
        if received > max_bytes:
            raise ApiError(413, f"the upload is over the limit of {max_bytes / 2**20:g} MB (--max-upload-mb)")
        yield chunk


async def read_upload(request: Request, max_bytes: int) -> Upload:
    """The uploaded file's bytes, read at most ``max_bytes`` (the body is never held whole before the check)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise ApiError(413, f"the upload ({int(declared) / 2**20:.1f} MB) is over the limit of "
                            f"{max_bytes / 2**20:g} MB (--max-upload-mb)")  # fmt: skip
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = _limited(request.stream(), max_bytes)
    if content_type == "multipart/form-data":
        upload = await _first_file(request, body)
    elif content_type.startswith(RAW_TYPES):
        upload = Upload(b"".join([chunk async for chunk in body]), request.query_params.get("filename", "upload"))
    else:
        raise ApiError(415, f"unsupported Content-Type {content_type or '(none)'!r}: {HOW_TO_SEND}")
    if not upload.data:
        raise ApiError(400, f"the upload is empty: {HOW_TO_SEND}")
    return upload


async def _first_file(request: Request, body: AsyncIterator[bytes]) -> Upload:
    try:
        form = await MultiPartParser(request.headers, body, max_files=1, max_fields=10).parse()
    except MultiPartException as error:
        raise ApiError(400, f"malformed multipart body: {error}") from error
    files = [value for value in form.values() if isinstance(value, UploadFile)]
    if not files:
        raise ApiError(400, f"the multipart body has no file: {HOW_TO_SEND}")
    data = await files[0].read()
    await form.close()
    return Upload(data, files[0].filename or "upload")


def decode_upload(upload: Upload, start: float) -> tuple:
    """(6 s waveform, seconds of real audio) through trainer.predict's loader; ffmpeg needs a seekable file."""
    suffix = os.path.splitext(upload.filename)[1][:16]
    with tempfile.NamedTemporaryFile(suffix=suffix) as file:
        file.write(upload.data)
        file.flush()
        try:
            return load_audio_with_duration(file.name, start)
        except AudioError as error:
            message = str(error).replace(file.name, upload.filename)
            raise ApiError(422 if isinstance(error, UnusableAudioError) else 400, message) from error
