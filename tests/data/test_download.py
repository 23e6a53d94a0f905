"""download_file (resume, retries, verification) against a local HTTP server; safe_extract on hostile tars."""
from __future__ import annotations

import hashlib
import io
import re
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from asr.data.download import ArchiveError, DownloadError, UnsafeArchiveError, download_file, md5sum, safe_extract
from asr.errors import UserError


class FileServer:
    """Serves `files` ({'/name': bytes}) on 127.0.0.1 with Range support; records every request.

    Fault injection: `fail_next` (503s), `truncate_next` (half a body, then close), `stall_next` (answer nothing
    until the server stops: only the client's timeout ends the request), `ignore_range` (always 200 with the whole
    file).
    """

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[dict] = []
        self.ignore_range = False
        self.fail_next = self.truncate_next = self.stall_next = 0
        self.released = threading.Event()  # set on exit: frees the handlers of stalled requests
        self._lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.owner = self  # type: ignore[attr-defined]
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> "FileServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.released.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def take(self, name: str) -> bool:
        """Atomically consume one unit of the fault counter `name`."""
        with self._lock:
            if getattr(self, name) > 0:
                setattr(self, name, getattr(self, name) - 1)
                return True
            return False


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        srv: FileServer = self.server.owner  # type: ignore[attr-defined]
        rng = self.headers.get("Range")
        srv.requests.append({"path": self.path, "range": rng})
        if srv.take("stall_next"):  # answer nothing, however long the client waits: it must time out
            srv.released.wait(timeout=60)
            return
        if srv.take("fail_next"):
            self.send_error(503)
            return
        data = srv.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        start, end, status = 0, len(data) - 1, 200
        if rng and not srv.ignore_range:
            m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng)
            assert m, rng
            start = int(m.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            end, status = min(int(m.group(2) or len(data) - 1), len(data) - 1), 206
        body = data[start:end + 1]
        try:
            self.send_response(status)
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            self.wfile.write(body[: len(body) // 2] if srv.take("truncate_next") else body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
            pass


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    """urllib honours *_proxy variables; the local server must be reached directly."""
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def server():
    with FileServer() as srv:
        yield srv


PAYLOAD = bytes(range(256)) * 4096 + b"tail"  # ~1 MiB: more than one read chunk


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def test_md5sum_matches_hashlib(tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(PAYLOAD * 3)
    assert md5sum(p) == md5(PAYLOAD * 3)


def test_download_verifies_and_renames(server, tmp_path):
    server.files["/f.bin"] = PAYLOAD
    dest = download_file(f"{server.url}/f.bin", tmp_path / "sub" / "f.bin", md5(PAYLOAD), progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert not (tmp_path / "sub" / "f.bin.part").exists()
    assert [r["range"] for r in server.requests] == [None]


def test_resume_uses_range(server, tmp_path):
    server.files["/f.bin"] = PAYLOAD
    (tmp_path / "f.bin.part").write_bytes(PAYLOAD[:1000])
    download_file(f"{server.url}/f.bin", tmp_path / "f.bin", md5(PAYLOAD), progress=False)
    assert (tmp_path / "f.bin").read_bytes() == PAYLOAD
    assert [r["range"] for r in server.requests] == ["bytes=1000-"]


def test_server_ignoring_range_restarts_cleanly(server, tmp_path):
    server.files["/f.bin"] = PAYLOAD
    server.ignore_range = True
    (tmp_path / "f.bin.part").write_bytes(b"junk that must not be kept" * 10)
    download_file(f"{server.url}/f.bin", tmp_path / "f.bin", md5(PAYLOAD), progress=False)
    assert (tmp_path / "f.bin").read_bytes() == PAYLOAD
    assert server.requests[0]["range"] is not None


def test_complete_part_is_finished_after_416(server, tmp_path):
    server.files["/f.bin"] = PAYLOAD
    (tmp_path / "f.bin.part").write_bytes(PAYLOAD)
    download_file(f"{server.url}/f.bin", tmp_path / "f.bin", md5(PAYLOAD), progress=False)
    assert (tmp_path / "f.bin").read_bytes() == PAYLOAD


def test_retries_after_503_truncation_and_timeout(server, tmp_path):
    server.files["/f.bin"] = PAYLOAD
    server.fail_next, server.truncate_next, server.stall_next = 1, 1, 1
    # The stalled request never gets an answer, so it times out however slow the machine is; the 2-s timeout is
    # far above a loopback reply even on a loaded machine (0.3 s was not: a slow reply added a retry).
    download_file(f"{server.url}/f.bin", tmp_path / "f.bin", md5(PAYLOAD), progress=False,
                  timeout=2.0, backoff=0.01)
    assert (tmp_path / "f.bin").read_bytes() == PAYLOAD
    # stalled (timed out), 503, whole body truncated to half, then resumed from the half
    assert [r["range"] for r in server.requests] == [None, None, None, f"bytes={len(PAYLOAD) // 2}-"]


def test_checksum_mismatch_deletes_and_names_url(server, tmp_path):
    server.files["/f.bin"] = PAYLOAD
    url = f"{server.url}/f.bin"
    with pytest.raises(DownloadError) as err:
        download_file(url, tmp_path / "f.bin", "0" * 32, progress=False)
    msg = str(err.value)
    assert url in msg and "0" * 32 in msg and md5(PAYLOAD) in msg and "--mirror" in msg and "\n" not in msg
    assert list(tmp_path.iterdir()) == []


def test_size_and_sha256_are_checked(server, tmp_path):
    server.files["/f.bin"] = PAYLOAD
    with pytest.raises(DownloadError, match="size"):
        download_file(f"{server.url}/f.bin", tmp_path / "f.bin", None, progress=False, size=len(PAYLOAD) + 1)
    with pytest.raises(DownloadError, match="SHA-256"):
        download_file(f"{server.url}/f.bin", tmp_path / "f.bin", None, progress=False, sha256="ab" * 32)
    sha = hashlib.sha256(PAYLOAD).hexdigest()
    download_file(f"{server.url}/f.bin", tmp_path / "f.bin", None, progress=False, sha256=sha, size=len(PAYLOAD))


def test_verified_dest_is_not_downloaded_again(server, tmp_path):
    server.files["/f.bin"] = PAYLOAD
    (tmp_path / "f.bin").write_bytes(PAYLOAD)
    download_file(f"{server.url}/f.bin", tmp_path / "f.bin", md5(PAYLOAD), progress=False)
    assert server.requests == []


def test_corrupt_dest_is_downloaded_again(server, tmp_path):
    server.files["/f.bin"] = PAYLOAD
    (tmp_path / "f.bin").write_bytes(b"corrupt")
    download_file(f"{server.url}/f.bin", tmp_path / "f.bin", md5(PAYLOAD), progress=False)
    assert (tmp_path / "f.bin").read_bytes() == PAYLOAD and len(server.requests) == 1


def test_404_fails_at_once(server, tmp_path):
    with pytest.raises(DownloadError, match=r"HTTP 404.*--mirror"):
        download_file(f"{server.url}/missing.bin", tmp_path / "m.bin", None, progress=False, backoff=5)
    assert len(server.requests) == 1


def test_unreachable_server_gives_up(tmp_path):
    with FileServer() as srv:
        url = f"{srv.url}/f.bin"
    with pytest.raises(DownloadError, match=r"after 3 attempts"):
        download_file(url, tmp_path / "f.bin", None, progress=False, retries=2, backoff=0.01)


def test_bad_scheme_and_file_url(tmp_path):
    with pytest.raises(DownloadError, match="not an http"):
        download_file("ftp2://example/x", tmp_path / "x", None, progress=False)
    src = tmp_path / "src.bin"
    src.write_bytes(PAYLOAD)
    (tmp_path / "dst.bin.part").write_bytes(b"stale")  # file:// ignores Range: must restart
    download_file(src.as_uri(), tmp_path / "dst.bin", md5(PAYLOAD), progress=False)
    assert (tmp_path / "dst.bin").read_bytes() == PAYLOAD


# ----------------------------------------------------------------------------------------------------
# safe_extract


def make_tar(path: Path, members: list[tuple[str, str, object]]) -> Path:
    """members: (name, kind, payload) with kind file (bytes) | dir | sym (target) | hard (target) | chr."""
    with tarfile.open(path, "w:gz") as tar:
        for name, kind, payload in members:
            ti = tarfile.TarInfo(name)
            if kind == "file":
                ti.size = len(payload)  # type: ignore[arg-type]
                tar.addfile(ti, io.BytesIO(payload))  # type: ignore[arg-type]
                continue
            ti.type = {"dir": tarfile.DIRTYPE, "sym": tarfile.SYMTYPE, "hard": tarfile.LNKTYPE,
                       "chr": tarfile.CHRTYPE}[kind]
            if kind == "dir":
                ti.mode = 0o755
            if kind in ("sym", "hard"):
                ti.linkname = payload  # type: ignore[assignment]
            tar.addfile(ti)
    return path


def test_safe_extract_good_archive(tmp_path):
    arc = make_tar(tmp_path / "ok.tar.gz", [("top/a.txt", "file", b"A"), ("top/sub", "dir", None),
                                            ("top/sub/b.txt", "file", b"B"), ("top/link", "sym", "sub/b.txt"),
                                            ("top/hard", "hard", "top/a.txt")])
    out = safe_extract(arc, tmp_path / "out", progress=False)
    assert (out / "top/a.txt").read_bytes() == b"A" and (out / "top/link").read_bytes() == b"B"
    assert (out / "top/hard").read_bytes() == b"A"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.tar.gz", "out"]  # no temp folder left


@pytest.mark.parametrize("members, culprit", [
    ([("ok.txt", "file", b"x"), ("ABS", "file", b"evil")], "ABS"),
    ([("ok.txt", "file", b"x"), ("../escape.txt", "file", b"evil")], "../escape.txt"),
    ([("a/../../escape.txt", "file", b"evil")], "a/../../escape.txt"),
    ([("etc", "sym", "/etc")], "etc"),
    ([("up", "sym", "../../outside")], "up"),
    ([("d", "sym", "."), ("l", "sym", "d/..")], "'l'"),  # chain: lexically inside, really the parent
    ([("sub", "dir", None), ("sub/link", "sym", ".."), ("sub/link/x.txt", "file", b"evil")], "sub/link/x.txt"),
    ([("h", "hard", "../outside.txt")], "h"),
    ([("loop", "sym", "loop")], "loop"),
    ([("ok.txt", "file", b"x"), ("dev", "chr", None)], "dev"),
])
def test_safe_extract_refuses_hostile_members(tmp_path, members, culprit):
    outside = tmp_path / "abs_evil.txt"
    members = [(str(outside) if n == "ABS" else n, k, p) for n, k, p in members]
    culprit = str(outside) if culprit == "ABS" else culprit
    work = tmp_path / "work"
    work.mkdir()
    arc = make_tar(tmp_path / "bad.tar.gz", members)
    with pytest.raises(UnsafeArchiveError) as err:
        safe_extract(arc, work / "out", progress=False)
    assert culprit in str(err.value) and str(arc) in str(err.value)
    assert list(work.iterdir()) == []  # nothing extracted, no temp folder left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.tar.gz", "work"]  # nothing written outside


def test_safe_extract_refuses_existing_target_and_corrupt_archive(tmp_path):
    arc = make_tar(tmp_path / "ok.tar.gz", [("a.txt", "file", b"A")])
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(ArchiveError, match="already exists"):
        safe_extract(arc, tmp_path / "out", progress=False)
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(b"this is not a tar file at all" * 20)
    with pytest.raises(ArchiveError, match="bad.tar.gz") as err:
        safe_extract(bad, tmp_path / "out2", progress=False)
    assert isinstance(err.value, UserError)
    assert not (tmp_path / "out2").exists()
    assert not list(tmp_path.glob(".out2.*"))
