"""Helpers for the server tests: run an app with uvicorn on a free loopback port in a thread, and talk to it with
the standard library (httpx, which Starlette's TestClient needs, is not a dependency of ours)."""
from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import time
from pathlib import Path
from typing import Iterator, Optional
from urllib.parse import urlsplit

from bench_serve import multipart  # one multipart encoder for the load test and these tests (scripts/)

from asr.config import ServeConfig


def serve_config(run: Path, **overrides) -> ServeConfig:
    """The server's config for the test model on the CPU."""
    return ServeConfig(checkpoint=str(run), device="cpu", **overrides)


def utterances(deploy_run: dict) -> list:
    """`deploy_run`'s three utterances with their audio: [(Utterance, bytes)]; the model says each text exactly."""
    return [(u, Path(u.audio_filepath).read_bytes()) for u in deploy_run["utts"]]


@contextlib.contextmanager
def serving(app, timeout: float = 30.0) -> Iterator[str]:
    """Serve `app` on 127.0.0.1:<free port> for the block; yields its base URL ("http://127.0.0.1:N")."""
    with running(app, timeout) as (url, _):
        yield url


@contextlib.contextmanager
def running(app, timeout: float = 30.0):
    """`serving`, yielding (base URL, the uvicorn.Server): `server.should_exit = True` is what SIGTERM does."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, lifespan="on", timeout_graceful_shutdown=10))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)  # no signal handlers
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", server
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()


def request(url: str, method: str = "GET", body: Optional[bytes] = None, headers: Optional[dict] = None,
            chunked: bool = False, timeout: float = 60.0) -> tuple[int, dict, dict]:
    """(status, JSON body -- or {"text": ...} when it is not JSON --, response headers)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        if chunked:  # no Content-Length: the server learns the size only by reading
            conn.request(method, path, body=iter([body[i:i + 8192] for i in range(0, len(body), 8192)]),
                         headers=headers or {}, encode_chunked=True)
        else:
            conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        raw = resp.read()
        try:
            payload = json.loads(raw)
        except ValueError:
            payload = {"text": raw.decode("utf-8", "replace")}
        return resp.status, payload, dict(resp.headers)
    finally:
        conn.close()


def transcribe(base: str, data: bytes, filename: str = "audio.wav", decoder: Optional[str] = None,
               query: str = "", chunked: bool = False) -> tuple[int, dict]:
    """POST one file to /transcribe; (status, JSON)."""
    body, ctype = multipart({"decoder": decoder} if decoder else {}, {"audio": (filename, data)})
    status, payload, _ = request(f"{base}/transcribe{query}", "POST", body, {"Content-Type": ctype},
                                 chunked=chunked)
    return status, payload
