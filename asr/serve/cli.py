"""`asr-serve`: serve a model over HTTP with a web page (uvicorn running asr.serve.app).

    asr-serve checkpoint=runs/synthetic_small_adamw                     # http://127.0.0.1:8000/
    asr-serve exported=runs/RUN/export/model.onnx port=8080 workers=4
    asr-serve checkpoint=RUN decoders=[greedy,beam,beam_lm] beam.lm_path=lm.arpa

The port is bound before the model loads (a taken port is a one-line error at once), and the URL is logged once
the server accepts connections. SIGTERM or Ctrl-C stops it gracefully: no new connections, the requests in
flight are answered (for up to shutdown_seconds), then the process exits 0.
"""
from __future__ import annotations

import contextlib
import logging
import signal
import socket
import sys
import threading
from typing import Iterator

from omegaconf import DictConfig

from asr import hydra_cli
from asr.config import ConfigError, ServeConfig, to_object
from asr.errors import UserError

log = logging.getLogger("asr.serve")
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def bind(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (host, port), not yet listening: connections are refused until the server is ready."""
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise ConfigError(f"host: cannot resolve {host!r} ({exc.strerror})") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"port: cannot listen on {host}:{port} ({exc.strerror}); choose another port=N "
                          "(0 = any free port)") from None
    return sock


def url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


@contextlib.contextmanager
def stop_signals(server) -> Iterator[list[int]]:
    """SIGTERM/SIGINT for the block: ask `server` to stop, and record the signal.

    uvicorn installs its own handlers while it serves and, once it has shut down gracefully, raises the signal
    again for the handler it found: ours, which only records it -- so a requested stop is exit status 0, not a
    death by signal. Restored on leaving (handlers are process-wide, see DESIGN.md's pitfalls).
    """
    got: list[int] = []

    def handler(signum, _frame):
        got.append(signum)
        server.should_exit = True  # a signal before uvicorn installed its handlers stops it right after start

    if threading.current_thread() is not threading.main_thread():
        yield got
        return
    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield got
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def main(cfg: DictConfig | ServeConfig | dict) -> None:
    """Load the model, serve it until SIGTERM/SIGINT, return when every request in flight is answered."""
    import uvicorn

    from asr.inference.loading import load_engine, resolve_checkpoint
    from asr.serve.app import build_app

    cfg = to_object(cfg, ServeConfig)
    if cfg.checkpoint:
        resolve_checkpoint(cfg.checkpoint)  # a typo in the path fails before the port is taken
    sock = bind(cfg.host, cfg.port)
    try:
        engine = load_engine(cfg)
        app = build_app(engine, cfg)
        server = uvicorn.Server(uvicorn.Config(
            app, log_config=None, lifespan="on", timeout_graceful_shutdown=cfg.shutdown_seconds))
        sock.listen(128)
        if cfg.host not in LOOPBACK:
            log.warning("serving on %s: reachable from other machines, and there is no authentication", cfg.host)
        log.info("serving %s on %s (the page; POST /transcribe, GET /health) with decoders %s", engine.describe(),
                 url(sock), ", ".join(str(d) for d in cfg.decoders))
        with stop_signals(server) as got:
            server.run(sockets=[sock])
    finally:
        sock.close()
    if got:
        log.info("stopped by %s after answering the requests in flight; clean shutdown",
                 signal.Signals(got[0]).name)
    if not server.started:
        raise UserError("the server did not start (see the log above)")


def cli() -> None:
    """Hydra entry point (`asr-serve checkpoint=RUN_DIR` or `asr-serve exported=model.onnx`)."""
    hydra_cli.run("asr-serve", "serve", "serve_schema", ServeConfig, main)


if __name__ == "__main__":
    sys.exit(cli())
