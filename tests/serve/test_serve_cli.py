"""`asr-serve` as a user runs it: a real process that logs its URL, answers, and stops cleanly on SIGTERM; and
configuration mistakes as one line naming the key (exit status 2)."""
from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from serve_client import request, transcribe, utterances

from asr.config import ConfigError, ServeConfig, to_object
from asr.serve.cli import cli

URL = re.compile(r"serving .* on (http://127\.0\.0\.1:\d+/)")


def read_lines(stream, lines: list[str]) -> None:
    for line in stream:
        lines.append(line)


@contextlib.contextmanager
def served_process(deploy_run, cwd: Path):
    """`asr-serve` as a real process (greedy only) until its URL is logged: yields (process, URL, its stderr lines
    so far and to come). On leaving, a process still running is killed and the stderr reader finishes."""
    script = Path(sys.executable).with_name("asr-serve")  # the console script pyproject.toml declares
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "asr.serve.cli"]
    proc = subprocess.Popen([*command, f"checkpoint={deploy_run['run']}", "port=0",
                             "device=cpu", "decoders=[greedy]"], cwd=cwd, stderr=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines: list[str] = []
    reader = threading.Thread(target=read_lines, args=(proc.stderr, lines), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 90
        url = None
        while url is None and time.monotonic() < deadline and proc.poll() is None:
            url = next((m.group(1) for m in map(URL.search, list(lines)) if m), None)
            time.sleep(0.05)
        assert url, "no URL logged:\n" + "".join(lines)
        yield proc, url, lines
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(5)


def test_process_serves_then_stops_cleanly_on_sigterm(deploy_run, tmp_path):
    with served_process(deploy_run, tmp_path) as (proc, url, lines):
        status, health, _ = request(f"{url}health")
        assert status == 200 and health["decoders"] == ["greedy"]
        utt, data = utterances(deploy_run)[1]
        status, result = transcribe(url.rstrip("/"), data)
        assert status == 200 and result["text"] == utt.text
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    log = "".join(lines)
    assert "stopped by SIGTERM after answering the requests in flight; clean shutdown" in log
    assert "Traceback" not in log and proc.stdout.read() == ""
    assert list(tmp_path.iterdir()) == []  # no Hydra output folder


def test_a_real_sigterm_answers_the_upload_in_flight(deploy_run, tmp_path):
    """The real signal, to the real process, while a request is in flight (half its body sent): the listening
    socket closes, the request is still read to its end and answered with its transcript, then exit 0 with the
    clean-shutdown line and no traceback (the thread-level test with should_exit cannot show this)."""
    from serve_client import multipart
    with served_process(deploy_run, tmp_path) as (proc, url, lines):
        utt, data = utterances(deploy_run)[2]
        body, ctype = multipart({}, {"audio": ("in-flight.flac", data)})
        host, port = url.removeprefix("http://").rstrip("/").split(":")
        with socket.create_connection((host, int(port)), timeout=30) as conn:
            conn.sendall(f"POST /transcribe HTTP/1.1\r\nHost: {host}\r\nContent-Type: {ctype}\r\n"
                         f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                         + body[: len(body) // 2])
            time.sleep(0.5)  # the server has the request: its place is taken, its body half read
            proc.send_signal(signal.SIGTERM)
            time.sleep(1.0)  # the server is shutting down: no new connection, the one in flight kept
            assert proc.poll() is None, "the server exited with a request in flight:\n" + "".join(lines)
            conn.sendall(body[len(body) // 2:])  # the rest arrives after the signal
            reply = b""
            while chunk := conn.recv(65536):
                reply += chunk
        head, _, payload = reply.partition(b"\r\n\r\n")
        assert head.split()[1] == b"200", reply[:500]
        assert json.loads(payload)["text"] == utt.text
        assert proc.wait(timeout=30) == 0
    log = "".join(lines)
    assert "stopped by SIGTERM after answering the requests in flight; clean shutdown" in log
    assert "Traceback" not in log and "CancelledError" not in log


def run_cli(monkeypatch, capsys, *args: str) -> str:
    monkeypatch.setattr(sys, "argv", ["asr-serve", *args])
    with pytest.raises(SystemExit) as exc:
        cli()
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_bad_configs_are_one_line_naming_the_key(deploy_run, tmp_path, monkeypatch, capsys, keep_logging):
    monkeypatch.chdir(tmp_path)
    run = f"checkpoint={deploy_run['run']}"
    assert run_cli(monkeypatch, capsys, run, "port=-1") == (
        "asr-serve: error: port: must be in 0..65535 (0 = any free port), got -1")
    assert run_cli(monkeypatch, capsys, run, "exported=model.onnx").startswith(
        "asr-serve: error: exported: give either checkpoint=PATH or exported=PATH, not both")
    assert run_cli(monkeypatch, capsys, "port=8000").startswith("asr-serve: error: checkpoint: required")
    assert run_cli(monkeypatch, capsys, run, "decoder=beam_lm").startswith("asr-serve: error: decoder: beam_lm is "
                                                                           "not among decoders ['greedy', 'beam']")
    assert run_cli(monkeypatch, capsys, run, "max_upload_mb=0") == (
        "asr-serve: error: max_upload_mb: must be > 0, got 0.0")


def test_a_taken_port_is_one_line(deploy_run, tmp_path, monkeypatch, capsys, keep_logging):
    monkeypatch.chdir(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        line = run_cli(monkeypatch, capsys, f"checkpoint={deploy_run['run']}", f"port={port}", "device=cpu")
    assert line.startswith(f"asr-serve: error: port: cannot listen on 127.0.0.1:{port} (")
    assert line.endswith("choose another port=N (0 = any free port)")


def test_schema_defaults_serve_loopback_with_decoders_decided_by_the_model():
    """decoders=null is decided once the model is read (greedy, beam, + beam_lm when an LM travels with it:
    test_engine, test_api); beam_lm without an LM anywhere is refused then (test_engine)."""
    cfg = to_object({"checkpoint": "x.pt"}, ServeConfig)
    assert (cfg.host, cfg.port, cfg.decoder, cfg.decoders) == ("127.0.0.1", 8000, "greedy", None)
    assert cfg.max_upload_bytes == 20 * 2**20
    with pytest.raises(ConfigError, match=r"^workers: must be >= 1"):
        to_object({"checkpoint": "x.pt", "workers": 0}, ServeConfig)
    with pytest.raises(ConfigError, match=r"^decoder: beam is not among decoders \['greedy'\]"):
        to_object({"checkpoint": "x.pt", "decoders": ["greedy"], "decoder": "beam"}, ServeConfig)
