"""asr-serve's HTTP surface against a real model served by uvicorn on loopback: health, exact transcripts with
word times, the posteriorgram, every refusal as a JSON error with its status, and concurrent requests that each
get their own result."""
from __future__ import annotations

import io
import json
import re
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import soundfile as sf
from conftest import tone
from serve_client import request, running, serve_config, serving, transcribe, utterances

from asr.inference.loading import load_engine
from asr.serve.app import build_app


@pytest.fixture(scope="module")
def engine(deploy_run):
    return load_engine(serve_config(deploy_run["run"]))


@pytest.fixture(scope="module")
def utts(deploy_run) -> list:
    return utterances(deploy_run)


@pytest.fixture(scope="module")
def base(engine, deploy_run):
    """The default server (greedy + beam, default limits, 3 workers)."""
    with serving(build_app(engine, serve_config(deploy_run["run"], workers=3))) as url:
        yield url


@pytest.fixture(scope="module")
def strict(engine, deploy_run):
    """A server with tiny limits: 40 KiB uploads, 1 s of audio."""
    with serving(build_app(engine, serve_config(deploy_run["run"], max_upload_mb=40 / 1024,
                                                max_audio_seconds=1.0, decoders=["greedy"]))) as url:
        yield url


def wav_bytes(wave: np.ndarray, rate: int = 16000) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, wave, rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def check_words(result: dict) -> None:
    """Words spell the text, in order, each within the audio."""
    assert " ".join(w["word"] for w in result["words"]) == result["text"]
    prev_end = 0.0
    for w in result["words"]:
        assert prev_end <= w["start"] <= w["end"] <= result["duration"], w
        prev_end = w["end"]


def test_health_describes_model_decoders_and_limits(base):
    status, health, headers = request(f"{base}/health")
    assert status == 200 and headers["content-type"] == "application/json"
    assert health["status"] == "ok" and "checkpoint" in health["model"] and health["pending"] == 0
    assert health["sample_rate"] == 16000 and health["frame_seconds"] > 0
    assert health["decoders"] == ["greedy", "beam"] and health["default_decoder"] == "greedy"
    assert health["limits"] == {"max_upload_mb": 20.0, "max_audio_seconds": 120.0, "workers": 3, "max_pending": 32}


@pytest.mark.parametrize("k", [0, 1, 2])
def test_each_utterance_gives_its_text_and_word_times(base, utts, k):
    utt, data = utts[k]
    status, result = transcribe(base, data, filename=f"utt{k}.flac")
    assert status == 200, result
    assert result["text"] == utt.text and result["decoder"] == "greedy" and result["filename"] == f"utt{k}.flac"
    assert result["duration"] == pytest.approx(utt.duration, abs=0.01)
    assert len(result["words"]) == len(utt.text.split()) >= 1
    check_words(result)
    assert "posteriorgram" not in result  # only when asked


def test_beam_decoder_on_request_and_posteriorgram_when_asked(base, utts):
    import base64

    import matplotlib.image as mpimg

    utt, data = utts[0]
    status, result = transcribe(base, data, decoder="beam", query="?posteriorgram=1")
    assert status == 200 and result["decoder"] == "beam" and result["text"] == utt.text
    check_words(result)
    prefix = "data:image/png;base64,"
    assert result["posteriorgram"].startswith(prefix)
    image = mpimg.imread(io.BytesIO(base64.b64decode(result["posteriorgram"][len(prefix):])), format="png")
    assert image.shape[0] > 100 and image.shape[1] > 300 and image.std() > 0.05  # a picture, not a blank


def test_concurrent_requests_each_get_their_own_transcript(base, utts):
    jobs = [k % 3 for k in range(12)]
    start = threading.Barrier(6)

    def one(k: int) -> tuple[int, int, dict]:
        try:
            start.wait(timeout=10)  # the first six leave together
        except threading.BrokenBarrierError:
            pass
        status, result = transcribe(base, utts[k][1], filename=f"u{k}.flac")
        return k, status, result

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(one, jobs))
    for k, status, result in results:
        assert status == 200 and result["filename"] == f"u{k}.flac" and result["text"] == utts[k][0].text
        check_words(result)


def test_unknown_decoder_is_400_listing_the_offered(base, utts):
    status, result = transcribe(base, utts[0][1], decoder="nope")
    assert status == 400 and result["error"] == "decoder 'nope' is not offered here; choose one of greedy, beam"


@pytest.mark.parametrize("data, why", [(np.random.default_rng(0).bytes(5000), "cannot decode"),
                                       (b"", "empty"), (wav_bytes(np.zeros(0, np.float32)), "empty")])
def test_not_audio_is_400_naming_the_file(base, data, why):
    status, result = transcribe(base, data, filename="holiday photo.jpg")
    assert status == 400 and why in result["error"] and "holiday photo.jpg" in result["error"]
    assert "Traceback" not in result["error"] and "\n" not in result["error"]


def test_bad_forms_are_400(base):
    status, result, _ = request(f"{base}/transcribe", "POST", b"decoder=greedy",
                                {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 400 and "multipart/form-data" in result["error"]
    from serve_client import multipart
    body, ctype = multipart({"decoder": "greedy"}, {})
    status, result, _ = request(f"{base}/transcribe", "POST", body, {"Content-Type": ctype})
    assert status == 400 and result["error"].startswith("the file field 'audio' is missing")
    body, ctype = multipart({"audio": "not a file"}, {})
    status, result, _ = request(f"{base}/transcribe", "POST", body, {"Content-Type": ctype})
    assert status == 400 and result["error"].startswith("the file field 'audio' is not a file")


def test_upload_over_the_limit_is_413_by_header_and_by_count(strict):
    big = wav_bytes(tone(0.9, 16000)) + bytes(30_000)  # 0.9 s of audio (within the audio limit) in ~59 KB
    status, result = transcribe(strict, big, filename="big.wav")
    assert status == 413 and "at most 0.0390625 MiB (40960 bytes, max_upload_mb)" in result["error"]
    status, result = transcribe(strict, big, filename="big.wav", chunked=True)  # no Content-Length to go by
    assert status == 413 and "max_upload_mb" in result["error"]


def test_audio_over_the_limit_is_413_with_duration_and_limit(strict):
    status, result = transcribe(strict, wav_bytes(tone(1.0, 8000), 8000), filename="short.wav")
    assert status == 200
    status, result = transcribe(strict, wav_bytes(tone(1.5, 8000), 8000), filename="long.wav")
    assert status == 413
    assert result["error"] == "long.wav is 1.5 s long; at most 1 s are accepted (max_audio_seconds)"


def test_page_static_files_and_json_404(base):
    status, page, headers = request(f"{base}/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert 'src="static/app.js"' in page["text"] and "http" not in page["text"].split("<body")[1]  # nothing remote
    for name, kind in [("app.js", "javascript"), ("style.css", "text/css")]:
        status, _, headers = request(f"{base}/static/{name}")
        assert status == 200 and kind in headers["content-type"]
    assert request(f"{base}/nope")[:2] == (404, {"error": "Not Found"})
    assert request(f"{base}/transcribe")[:2] == (405, {"error": "Method Not Allowed"})


def test_every_response_forbids_content_sniffing(base, utts):
    from serve_client import multipart
    body, ctype = multipart({}, {"audio": ("a.wav", utts[0][1])})
    bad, bad_ctype = multipart({}, {"audio": ("a.html", b"<script>alert(1)</script>")})
    for status, _, headers in (request(f"{base}/"), request(f"{base}/static/app.js"), request(f"{base}/health"),
                               request(f"{base}/nope"), request(f"{base}/transcribe", "POST", body, {"Content-Type": ctype}),
                               request(f"{base}/transcribe", "POST", bad, {"Content-Type": bad_ctype})):
        assert {k.lower(): v for k, v in headers.items()}.get("x-content-type-options") == "nosniff", (status, headers)


class Broken:
    """The test engine with a model that fails: a fault of ours, not of the request."""

    def __init__(self, engine):
        self._engine = engine

    def __getattr__(self, name):
        return getattr(self._engine, name)

    def log_probs(self, waves, lengths):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")


def test_internal_error_is_json_500_without_the_traceback(engine, deploy_run, utts, caplog):
    with serving(build_app(Broken(engine), serve_config(deploy_run["run"], decoders=["greedy"]))) as url:
        status, result = transcribe(url, utts[0][1], filename="a.flac")
        assert status == 500 and result == {"error": "internal error while transcribing a.flac; see the server's log"}
        assert request(f"{url}/health")[0] == 200  # and the server goes on
    assert "illegal memory access" in caplog.text  # the cause is in the log


class Held(Broken):
    """The test engine whose model waits until the test lets it go."""

    def __init__(self, engine):
        super().__init__(engine)
        self.entered, self.release = threading.Event(), threading.Event()

    def log_probs(self, waves, lengths):
        self.entered.set()
        assert self.release.wait(30)
        return self._engine.log_probs(waves, lengths)


def test_more_than_max_pending_is_503_and_the_others_finish(engine, deploy_run, utts):
    held = Held(engine)
    with serving(build_app(held, serve_config(deploy_run["run"], decoders=["greedy"], workers=1,
                                              max_pending=2))) as url:
        with ThreadPoolExecutor(2) as pool:
            first = pool.submit(transcribe, url, utts[0][1])
            assert held.entered.wait(30)  # the first is in the model, holding the one worker
            second = pool.submit(transcribe, url, utts[1][1])  # waits for the worker
            deadline = time.monotonic() + 30
            while request(f"{url}/health")[1]["pending"] < 2 and time.monotonic() < deadline:
                time.sleep(0.02)
            status, result = transcribe(url, utts[2][1])  # one too many
            assert status == 503 and result["error"].startswith("busy: 2 transcriptions are in progress or waiting")
            held.release.set()
            assert first.result(30)[1]["text"] == utts[0][0].text
            assert second.result(30)[1]["text"] == utts[1][0].text
        assert transcribe(url, utts[2][1])[1]["text"] == utts[2][0].text


def test_stopping_answers_the_request_in_flight_and_refuses_new_ones(engine, deploy_run, utts):
    held = Held(engine)
    with running(build_app(held, serve_config(deploy_run["run"], decoders=["greedy"]))) as (url, server):
        with ThreadPoolExecutor(1) as pool:
            in_flight = pool.submit(transcribe, url, utts[0][1])
            assert held.entered.wait(30)
            server.should_exit = True  # what SIGTERM asks of uvicorn
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:  # the listening socket closes ...
                try:
                    request(f"{url}/health", timeout=2)
                except ConnectionRefusedError:
                    break
                time.sleep(0.05)
            else:
                pytest.fail("the server still accepts connections after being asked to stop")
            held.release.set()  # ... and the request in flight is still answered
            status, result = in_flight.result(30)
            assert status == 200 and result["text"] == utts[0][0].text


def _stalled_upload(url: str) -> socket.socket:
    """A raw connection that sends a /transcribe request's headers (a 100 kB multipart body announced) and the
    first kilobyte of its body, then nothing more: a slow or malicious client."""
    host, port = url.removeprefix("http://").split(":")
    conn = socket.create_connection((host, int(port)), timeout=30)
    head = (f"POST /transcribe HTTP/1.1\r\nHost: {host}\r\nContent-Type: multipart/form-data; boundary=XyZ\r\n"
            f"Content-Length: 100000\r\n\r\n")
    conn.sendall(head.encode() + b"--XyZ\r\nContent-Disposition: form-data; name=\"audio\"; filename=\"a.wav\"\r\n"
                 b"\r\n" + b"R" * 1000)
    return conn


def _stalled_headers(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    conn = socket.create_connection((host, int(port)), timeout=30)
    conn.sendall(f"POST /transcribe HTTP/1.1\r\nHost: {host}\r\nContent-Type: multipart/form-data; boundary=XyZ\r\n"
                 f"Content-Length: 100000\r\n\r\n".encode())
    return conn


def _response(conn: socket.socket) -> tuple[int, dict]:
    data = b""
    while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < int(
            re.search(rb"content-length: (\d+)", data.lower()).group(1) if b"content-length" in data.lower() else 0):
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    return int(head.split()[1]), json.loads(body)


def test_stalled_clients_hold_no_place_and_stalled_uploads_time_out_with_408(engine, deploy_run, utts):
    """Issue 25: connections that sent their headers and then stalled counted towards max_pending and were never
    timed out, so every new request got 503 while they stayed open. Now a place is taken by the first body byte,
    and an upload silent for upload_timeout_seconds gets 408 and frees its place."""
    cfg = serve_config(deploy_run["run"], decoders=["greedy"], workers=1, max_pending=2, upload_timeout_seconds=1.5)
    with serving(build_app(engine, cfg)) as url:
        headers_only = [_stalled_headers(url) for _ in range(4)]  # twice max_pending, headers and nothing else
        mid_upload = [_stalled_upload(url) for _ in range(2)]  # max_pending uploads that stop half-way
        try:
            deadline = time.monotonic() + 10
            while request(f"{url}/health")[1]["pending"] < 2 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert request(f"{url}/health")[1]["pending"] == 2  # only the uploads that sent bytes hold places
            assert transcribe(url, utts[0][1])[0] == 503  # they are max_pending: full, for now
            for conn in mid_upload:  # ... until the upload timeout answers them
                status, body = _response(conn)
                assert status == 408 and body["error"].startswith("the upload stalled: no bytes for 1.5 s")
            status, result = transcribe(url, utts[0][1])  # the places are free again; the header-only four
            assert status == 200 and result["text"] == utts[0][0].text  # never held one
            assert request(f"{url}/health")[1]["pending"] == 0
        finally:
            for conn in headers_only + mid_upload:
                conn.close()
