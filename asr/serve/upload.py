"""Reading one upload: a multipart/form-data body with a file field `audio` (+ plain fields such as `decoder`),
never more than `max_bytes` of it.

The limit is applied twice: on the Content-Length header before a byte is read (an honest client learns at once),
and on the bytes actually received (a client may send no length -- chunked transfer -- or a false one). The body
is parsed by Starlette's own multipart parser (python-multipart) fed from that capped stream.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import AsyncIterator, Callable

import anyio
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect, Request

FILE_FIELD = "audio"
MAX_FIELDS = 8  # `decoder` and a few spares; a form is not a place to send data
FILENAME_CHARS = 120  # how much of a client-chosen file name goes into messages


class RequestError(Exception):
    """A request the server refuses: an HTTP status and a one-line message for the client."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Upload:
    data: bytes  # the file's bytes, as sent
    filename: str  # the client's name for it (for messages), "the upload" when it gave none
    fields: dict[str, str] = field(default_factory=dict)  # the plain form fields


def too_large(max_bytes: int) -> RequestError:
    return RequestError(413, f"the upload is larger than this server takes: at most {max_bytes / 2**20:g} MiB "
                             f"({max_bytes} bytes, max_upload_mb)")


def display_name(filename: str | None) -> str:
    """A client's file name made safe to quote in one line: whitespace collapsed, length bounded."""
    name = " ".join((filename or "").split())
    if not name:
        return "the upload"
    return name if len(name) <= FILENAME_CHARS else name[: FILENAME_CHARS - 3] + "..."


async def _capped(request: Request, max_bytes: int, idle_seconds: float,
                  on_first_bytes: Callable[[], None]) -> AsyncIterator[bytes]:
    """The body, chunk by chunk: at most `max_bytes` (413), no gap longer than `idle_seconds` (408);
    `on_first_bytes()` runs once the first chunk is in (it may refuse the request by raising RequestError)."""
    received, first = 0, True
    stream = request.stream().__aiter__()
    while True:
        try:
            with anyio.fail_after(idle_seconds):
                chunk = await stream.__anext__()
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise RequestError(408, f"the upload stalled: no bytes for {idle_seconds:g} s (upload_timeout_seconds); "
                                    f"{received} bytes had arrived") from None
        if first:
            first = False
            on_first_bytes()
        received += len(chunk)
        if received > max_bytes:
            raise too_large(max_bytes)
        yield chunk


async def read_upload(request: Request, max_bytes: int, idle_seconds: float = 30.0,
                      on_first_bytes: Callable[[], None] = lambda: None) -> Upload:
    """The request's `audio` file and plain fields; RequestError (400 bad form, 408 stalled, 413 too large)
    otherwise. `on_first_bytes` runs when the body starts to arrive: a client that sent only its headers holds
    nothing of the server's (asr-serve counts a transcription from then on)."""
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise RequestError(400, f"send the audio as multipart/form-data with a file field '{FILE_FIELD}' "
                                f"(e.g. curl -F {FILE_FIELD}=@talk.wav URL/transcribe)")
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > max_bytes:
        raise too_large(max_bytes)
    parser = MultiPartParser(request.headers, _capped(request, max_bytes, idle_seconds, on_first_bytes), max_files=1,
                             max_fields=MAX_FIELDS)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise RequestError(400, f"cannot read the form: {exc.message}") from None
    except ClientDisconnect:
        raise RequestError(400, "the client went away before the upload was complete") from None
    try:
        item = form.get(FILE_FIELD)
        if not isinstance(item, UploadFile):
            what = "is not a file" if item is not None else "is missing"
            raise RequestError(400, f"the file field '{FILE_FIELD}' {what}; send the audio as a file "
                                    f"(e.g. curl -F {FILE_FIELD}=@talk.wav URL/transcribe)")
        data = await item.read()
        fields = {k: v for k, v in form.multi_items() if isinstance(v, str)}
        return Upload(data=data, filename=display_name(item.filename), fields=fields)
    finally:
        await form.close()
