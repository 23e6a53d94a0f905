"""The HTTP surface of `asr-serve` (Starlette, an ASGI app; uvicorn serves it):

    GET  /            the web page (asr/serve/static/index.html; its script and style under /static/)
    GET  /health      {"status": "ok", "model", "sample_rate", "frame_seconds", "decoders", "default_decoder",
                       "pending" (transcriptions in the server now),
                       "limits": {"max_upload_mb", "max_audio_seconds", "workers", "max_pending"}}
    POST /transcribe  multipart/form-data: file `audio` + optional `decoder`; `?posteriorgram=1` adds the
                      posteriors as a PNG data URL -> {"filename", "text", "words": [{"word", "start", "end"}],
                      "decoder", "duration", "frame_seconds", "processing_seconds"(, "posteriorgram")}

Every refusal is JSON {"error": "one line"} with its status: 400 (no `audio` file, not audio, corrupt or empty --
naming the file -- or an unknown decoder, listing the offered ones), 413 (upload over max_upload_mb, audio over
max_audio_seconds), 408 (an upload that sent nothing for upload_timeout_seconds), 503 (max_pending
transcriptions already in the server), 404/405, and 500 for a fault of ours (logged with its traceback here, never
sent). A request counts towards max_pending from the first byte of its body: a client that sends its headers and
stalls holds no place, and one that stalls mid-upload loses its place after upload_timeout_seconds.

Decoding the audio, the model and the decoder run on worker threads, at most `workers` requests at a time (an
anyio capacity limiter); the event loop only moves bytes. Requests waiting for a worker hold their upload in
memory, hence max_pending: at most max_pending x max_upload_mb of uploads are held at once.
"""
from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Callable

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from asr.audio import AudioLoadError, AudioTooLongError
from asr.config.serve import ServeConfig
from asr.inference.transcription import Engine
from asr.serve.engine import Transcriber
from asr.serve.upload import RequestError, read_upload

log = logging.getLogger("asr.serve")
STATIC = Path(__file__).resolve().parent / "static"
TRUE = {"1", "true", "yes", "on"}


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": " ".join(str(message).split())}, status_code=status)


def build_app(engine: Engine, cfg: ServeConfig) -> Starlette:
    """The app serving `engine` under `cfg`'s decoders and limits; its decoders are built here (a bad LM fails
    now, not at the first request). Longer than most functions: the handlers are closures over the transcriber,
    the limiter and the pending count, which keeps the app's whole state in this one call."""
    transcriber = Transcriber(engine, cfg)
    offered = list(transcriber.decoders)
    limiter: list[anyio.CapacityLimiter] = []  # made in the lifespan: anyio ties it to the running event loop
    pending = [0]  # transcriptions in the server (reading, waiting, running); only the event loop's thread counts

    @asynccontextmanager
    async def lifespan(app: Starlette):
        limiter.append(anyio.CapacityLimiter(cfg.workers))
        yield
        transcriber.close()

    async def health(request: Request) -> Response:
        return JSONResponse({
            "status": "ok", "model": engine.describe(), "sample_rate": engine.sample_rate,
            "frame_seconds": engine.frame_seconds, "decoders": offered, "default_decoder": str(cfg.decoder),
            "pending": pending[0],
            "limits": {"max_upload_mb": cfg.max_upload_mb, "max_audio_seconds": cfg.max_audio_seconds,
                       "workers": cfg.workers, "max_pending": cfg.max_pending}})

    async def transcribe(request: Request) -> Response:
        admitted = [False]

        def admit() -> None:  # when the body's first bytes arrive: headers alone hold no place
            if pending[0] >= cfg.max_pending:
                raise RequestError(503, f"busy: {pending[0]} transcriptions are in progress or waiting "
                                        "(max_pending); try again shortly")
            pending[0] += 1
            admitted[0] = True
        try:
            return await transcribe_one(request, admit)
        finally:
            if admitted[0]:
                pending[0] -= 1

    async def transcribe_one(request: Request, admit: Callable[[], None]) -> Response:
        try:
            upload = await read_upload(request, cfg.max_upload_bytes, cfg.upload_timeout_seconds, admit)
        except RequestError as exc:
            return error(exc.status, exc.message)
        decoder = upload.fields.get("decoder") or str(cfg.decoder)
        if decoder not in transcriber.decoders:
            return error(400, f"decoder {decoder[:40]!r} is not offered here; choose one of {', '.join(offered)}")
        want_png = request.query_params.get("posteriorgram", "").lower() in TRUE
        try:
            result = await anyio.to_thread.run_sync(transcriber.transcribe, upload.data, upload.filename, decoder,
                                                    want_png, limiter=limiter[0])
        except AudioTooLongError as exc:
            return error(413, f"{exc} (max_audio_seconds)")
        except AudioLoadError as exc:
            return error(400, f"{exc} (send WAV, FLAC or OGG audio)")
        except Exception:  # a fault of ours: the traceback goes to the log, the client gets one line
            log.exception("transcribing %s failed", upload.filename)
            return error(500, f"internal error while transcribing {upload.filename}; see the server's log")
        log.info("%s: %.1f s of audio, %s, %d words, %.3f s", upload.filename, result["duration"], decoder,
                 len(result["words"]), result["processing_seconds"])
        return JSONResponse(result)

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html")

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return error(exc.status_code, exc.detail)

    async def server_error(request: Request, exc: Exception) -> Response:
        return error(500, "internal error; see the server's log")

    routes = [Route("/", index, methods=["GET"]), Route("/health", health, methods=["GET"]),
              Route("/transcribe", transcribe, methods=["POST"]),
              Mount("/static", app=StaticFiles(directory=STATIC), name="static")]
    app = Starlette(routes=routes, lifespan=lifespan,
                    exception_handlers={HTTPException: http_error, Exception: server_error})
    app.add_middleware(NoSniff)
    return app


class NoSniff:
    """ASGI middleware: every response says `X-Content-Type-Options: nosniff`, so a browser takes a JSON error
    or an uploaded file's echo for what its Content-Type says, never for a script or a page."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_header(message):
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-content-type-options", b"nosniff")]
            await send(message)
        await self.app(scope, receive, send_with_header)
