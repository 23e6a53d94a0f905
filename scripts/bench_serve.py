"""Load test of `asr-serve`: start the server, learn each file's transcript with one request at a time, then let
N client threads POST those files for a fixed time and check every answer against that transcript.

    .venv/bin/python scripts/bench_serve.py --checkpoint runs/RUN --files a.flac b.flac c.flac --out bench/serve
    .venv/bin/python scripts/bench_serve.py --exported runs/RUN/export/model.onnx --files *.flac --clients 16

Reports (printed; with --out also OUT.md and OUT.json, the server's log in OUT.server.log) requests/s and
audio-seconds/s of correct answers, latency p50/p90/p99/max, and the requests that failed (no answer, or a status
other than 200) or came back wrong: a different text, or a mix-up -- another request's file name or another
file's transcript (a mix-up of two files with the same transcript is caught by the file name alone).

A benchmark, not a test: nothing asserts a time, and figures from a shared machine are noisy. Each client keeps
one connection open (keep-alive), as a browser or a proxy would. Exit status 1 when any request failed or was
wrong, 2 when the server did not start.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from benchmarks.common import cpu_name  # noqa: E402

MAX_CLIENTS = 64
MAX_SECONDS = 600.0
START_TIMEOUT = 180.0  # seconds for the server to load the model and listen
URL = re.compile(r"serving .* on (http://\S+/) ")


def hydra_value(path: str) -> str:
    """A path as a quoted Hydra override value (spaces, commas and brackets stay literal)."""
    return "'" + path.replace("\\", "\\\\").replace("'", "\\'") + "'"


def start_server(args, log_path: Path) -> tuple[subprocess.Popen, str]:
    """`asr-serve` on a free loopback port, its log in log_path; returns (process, base URL without the slash)."""
    model = f"checkpoint={hydra_value(args.checkpoint)}" if args.checkpoint else \
        f"exported={hydra_value(args.exported)}"
    cmd = [sys.executable, "-m", "asr.serve.cli", model, "host=127.0.0.1", "port=0", f"workers={args.workers}",
           f"device={args.device}", f"decoder={args.decoder}", f"decoders=[{args.decoder}]",
           f"max_pending={max(args.workers, args.clients)}"]  # every client's request is let in: none gets 503
    log = open(log_path, "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    log.close()
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        match = URL.search(log_path.read_text(errors="replace"))
        if match:
            return proc, match.group(1).rstrip("/")
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
    sys.exit(f"bench_serve: the server did not start (see {log_path}):\n{tail}")


def stop_server(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes]]) -> tuple[bytes, str]:
    """A multipart/form-data body (plain `fields`, then `files` as name -> (filename, bytes)) and its Content-Type
    (also the server tests' encoder: tests/serve/serve_client.py)."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, (filename, data) in files.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                     f'Content-Type: application/octet-stream\r\n\r\n'.encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


class Client:
    """One keep-alive connection: POST a file to /transcribe -> (status, JSON or None, seconds)."""

    def __init__(self, base: str):
        parts = urlsplit(base)
        self.host, self.port = parts.hostname, parts.port
        self.conn: http.client.HTTPConnection | None = None

    def post(self, filename: str, data: bytes, decoder: str) -> tuple[int, dict | None, float, str]:
        body, content_type = multipart({"decoder": decoder}, {"audio": (filename, data)})
        t0 = time.perf_counter()
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
            self.conn.request("POST", "/transcribe", body=body,
                              headers={"Content-Type": content_type})
            resp = self.conn.getresponse()
            raw = resp.read()
            seconds = time.perf_counter() - t0
            if resp.getheader("connection", "").lower() == "close":
                self.close()
            try:
                return resp.status, json.loads(raw), seconds, ""
            except ValueError:
                return resp.status, None, seconds, f"HTTP {resp.status}: not JSON: {raw[:100]!r}"
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            return 0, None, time.perf_counter() - t0, f"{type(exc).__name__}: {exc}"

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


@dataclass
class Tally:
    """What the clients saw; appended to under a lock."""

    latencies: list[float] = field(default_factory=list)  # seconds, correct answers
    audio_seconds: float = 0.0  # of correct answers
    requests: int = 0
    failures: int = 0  # no answer, or a status other than 200
    wrong_text: int = 0  # 200 with a text that is not the file's (and not another file's)
    mixed_up: int = 0  # 200 with another request's file name or another file's transcript
    examples: list[str] = field(default_factory=list)  # the first few problems, for the report
    lock: threading.Lock = field(default_factory=threading.Lock)

    def problem(self, kind: str, message: str) -> None:
        setattr(self, kind, getattr(self, kind) + 1)
        if len(self.examples) < 5:
            self.examples.append(message)


def check(result: dict | None, sent_name: str, k: int, expected: list[str]) -> str | None:
    """None when `result` is file k's own answer; else the kind of problem."""
    if result is None:
        return "failures"
    if result.get("filename") != sent_name or (result.get("text") != expected[k] and result.get("text") in expected):
        return "mixed_up"
    if result.get("text") != expected[k]:
        return "wrong_text"
    return None


def client_loop(c: int, base: str, files: list[tuple[str, bytes]], expected: list[str], durations: list[float],
                decoder: str, deadline: float, tally: Tally) -> None:
    client = Client(base)
    n = 0
    while time.monotonic() < deadline:
        k = (c + n) % len(files)  # clients start on different files, so neighbours in time differ
        name = f"c{c}-r{n}-{files[k][0]}"  # unique per request: an answer must come back with its own name
        status, result, seconds, err = client.post(name, files[k][1], decoder)
        n += 1
        with tally.lock:
            tally.requests += 1
            if status != 200:
                tally.problem("failures", f"{name}: {err or (result or {}).get('error') or f'HTTP {status}'}")
                continue
            kind = check(result, name, k, expected)
            if kind:
                tally.problem(kind, f"{name}: got {result.get('filename')!r} {result.get('text')!r}, "
                                    f"expected {expected[k]!r}")
                continue
            tally.latencies.append(seconds)
            tally.audio_seconds += durations[k]
    client.close()


def machine() -> str:
    return f"{cpu_name()}; Python {platform.python_version()}"


def markdown(report: dict) -> str:
    lat = report["latency_ms"]
    return "\n".join([
        f"Machine: {report['machine']}. Date: {report['date']}. Command: `{report['command']}`.",
        f"Server: {report['server']['model']}; decoder {report['server']['decoder']}, "
        f"{report['server']['workers']} workers, device {report['server']['device']}. "
        f"{report['clients']} clients for {report['seconds']:g} s over {len(report['files'])} files "
        f"({sum(f['duration'] for f in report['files']):.1f} s of audio).",
        "",
        "| requests | correct | failed | wrong text | mixed up | requests/s | audio-s/s | p50 ms | p90 ms | p99 ms | "
        "max ms |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {report['requests']} | {report['correct']} | {report['failures']} | {report['wrong_text']} | "
        f"{report['mixed_up']} | {report['requests_per_second']:.2f} | {report['audio_seconds_per_second']:.1f} | "
        f"{lat['p50']:.0f} | {lat['p90']:.0f} | {lat['p99']:.0f} | {lat['max']:.0f} |",
        *([""] + [f"- {e}" for e in report["examples"]] if report["examples"] else []),
    ])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    model = p.add_mutually_exclusive_group(required=True)
    model.add_argument("--checkpoint", help="a checkpoint .pt or a training run dir")
    model.add_argument("--exported", "--model", dest="exported", help="an exported model (.onnx, TorchScript .pt)")
    p.add_argument("--files", nargs="+", required=True, help="audio files to send (each one's transcript is "
                                                              "learnt first, one request at a time)")
    p.add_argument("--clients", type=int, default=8, help=f"client threads, 1..{MAX_CLIENTS} (default 8)")
    p.add_argument("--seconds", type=float, default=20.0, help=f"how long they send, up to {MAX_SECONDS:g} "
                                                                "(default 20)")
    p.add_argument("--decoder", default="greedy", help="greedy or beam (default greedy)")
    p.add_argument("--workers", type=int, default=2, help="the server's workers (default 2)")
    p.add_argument("--device", default="auto", help="the server's device (default auto)")
    p.add_argument("--out", type=Path, help="write OUT.md, OUT.json and OUT.server.log")
    args = p.parse_args(argv)
    if not 1 <= args.clients <= MAX_CLIENTS:
        p.error(f"--clients must be in 1..{MAX_CLIENTS}, got {args.clients}")
    if not 0 < args.seconds <= MAX_SECONDS:
        p.error(f"--seconds must be in (0, {MAX_SECONDS:g}], got {args.seconds:g}")
    for f in args.files:
        if not Path(f).is_file():
            p.error(f"--files: not found: {f}")
    return args


def learn_transcripts(base: str, files: list[tuple[str, bytes]], decoder: str) -> tuple[list[str], list[float]]:
    """Each file's transcript and duration, one request at a time (this also warms the server up)."""
    client = Client(base)
    expected, durations = [], []
    for name, data in files:
        status, result, _, err = client.post(name, data, decoder)
        if status != 200 or result is None:
            sys.exit(f"bench_serve: {name}: the reference request failed: {err or result}")
        expected.append(result["text"])
        durations.append(result["duration"])
    client.close()
    return expected, durations


def load(args, base: str, files, expected: list[str], durations: list[float]) -> tuple[Tally, float]:
    """args.clients threads sending for args.seconds: (what they saw, wall seconds)."""
    tally = Tally()
    started = time.monotonic()
    deadline = started + args.seconds
    threads = [threading.Thread(target=client_loop, args=(c, base, files, expected, durations, args.decoder,
                                                          deadline, tally), daemon=True)
               for c in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return tally, time.monotonic() - started


def build_report(args, argv, health: dict, server_exit: int, files, expected, durations, tally: Tally,
                 wall: float) -> dict:
    lat_ms = np.array(tally.latencies) * 1000 if tally.latencies else np.zeros(1)
    return {
        "command": "python scripts/bench_serve.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine(), "date": f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
        "server": {"model": health.get("model", "?"), "decoder": args.decoder, "workers": args.workers,
                   "device": args.device, "exit_status": server_exit},
        "clients": args.clients, "seconds": args.seconds, "wall_seconds": round(wall, 3),
        "files": [{"name": n, "duration": d, "text": t} for (n, _), d, t in zip(files, durations, expected)],
        "requests": tally.requests, "correct": len(tally.latencies), "failures": tally.failures,
        "wrong_text": tally.wrong_text, "mixed_up": tally.mixed_up,
        "requests_per_second": round(len(tally.latencies) / wall, 3),
        "audio_seconds_per_second": round(tally.audio_seconds / wall, 3),
        "latency_ms": {q: round(float(np.percentile(lat_ms, p)), 2)
                       for q, p in (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100))},
        "examples": tally.examples,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        log_path = args.out.with_suffix(".server.log")
    else:
        log_path = Path(tempfile.mkdtemp(prefix="bench_serve-")) / "server.log"
    files = [(Path(f).name, Path(f).read_bytes()) for f in args.files]
    proc, base = start_server(args, log_path)
    try:
        expected, durations = learn_transcripts(base, files, args.decoder)
        health = fetch_health(base)
        tally, wall = load(args, base, files, expected, durations)
    finally:
        server_exit = stop_server(proc)
    report = build_report(args, argv, health, server_exit, files, expected, durations, tally, wall)
    text = markdown(report)
    print(text)
    if args.out:
        args.out.with_suffix(".md").write_text(text + "\n")
        args.out.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    return 1 if tally.failures or tally.wrong_text or tally.mixed_up or not tally.requests or server_exit else 0


def fetch_health(base: str) -> dict:
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request("GET", "/health")
        return json.loads(conn.getresponse().read())
    except (OSError, ValueError, http.client.HTTPException):
        return {}
    finally:
        conn.close()


if __name__ == "__main__":
    sys.exit(main())
