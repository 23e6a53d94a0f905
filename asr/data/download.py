"""Resumable, verified downloads and safe archive extraction (used for corpora and LM files).

`download_file` streams into `DEST.part` with HTTP Range resumption, retries transient failures with
backoff, verifies MD5 (and optionally SHA-256 / size) and only then renames to DEST, so a file under its
final name is always a verified one. `safe_extract` validates every tar member before writing anything
and extracts into a hidden temporary folder that is renamed into place at the end.
"""
from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import shutil
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from pathlib import Path

from tqdm import tqdm

from asr.errors import UserError

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
_USER_AGENT = "asr-ctc-downloader/0.1 (+urllib)"
# Status codes worth retrying; anything else (404, 403, ...) is a wrong URL or mirror and fails at once.
_TRANSIENT = {408, 425, 429, 500, 502, 503, 504}
# tarfile's extraction filters arrived in 3.11.4 / 3.10.12; `except ()` catches nothing on older versions.
_FILTER_ERROR = getattr(tarfile, "FilterError", ())


class DownloadError(UserError):
    """A download failed or did not verify; the message names the URL and what to do."""


class ArchiveError(UserError):
    """An archive could not be read or extracted; the message names the archive."""


class UnsafeArchiveError(ArchiveError):
    """An archive member would write outside the target (or is a device); the message names the member."""


def _digests(path: Path, want_md5: bool, want_sha256: bool) -> tuple[str | None, str | None]:
    md5 = hashlib.md5(usedforsecurity=False) if want_md5 else None
    sha = hashlib.sha256() if want_sha256 else None
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            if md5 is not None:
                md5.update(chunk)
            if sha is not None:
                sha.update(chunk)
    return (md5.hexdigest() if md5 else None), (sha.hexdigest() if sha else None)


def md5sum(path: str | Path) -> str:
    """Hex MD5 of a file, read in 1 MiB chunks."""
    return _digests(Path(path), True, False)[0]  # type: ignore[return-value]


def _mismatch(path: Path, md5: str | None, sha256: str | None, size: int | None) -> str | None:
    """None if `path` satisfies every given expectation, else a description of the first mismatch."""
    if size is not None and path.stat().st_size != size:
        return f"size: expected {size} bytes, got {path.stat().st_size}"
    got_md5, got_sha = _digests(path, md5 is not None, sha256 is not None)
    if md5 is not None and got_md5 != md5.lower():
        return f"MD5: expected {md5.lower()}, got {got_md5}"
    if sha256 is not None and got_sha != sha256.lower():
        return f"SHA-256: expected {sha256.lower()}, got {got_sha}"
    return None


def _total_from_content_range(value: str | None) -> tuple[int | None, int | None]:
    """'bytes 100-199/200' -> (100, 200); 'bytes */200' -> (None, 200)."""
    m = re.match(r"\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)", value or "")
    if not m:
        return None, None
    start = int(m.group(1)) if m.group(1) is not None else None
    return start, (int(m.group(2)) if m.group(2) != "*" else None)


def _fetch_once(url: str, part: Path, timeout: float, progress: bool) -> bool:
    """One HTTP attempt that appends to (or restarts) `part`. Returns True when the body was complete.

    Kept whole (a little over 50 lines): the Range request, the server's answer to it (206, 200 or 416) and the
    append-or-restart decision are one protocol step, easier to check read together.

    Raises urllib/http/socket errors for the caller's retry loop, DownloadError for permanent failures.
    """
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": _USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            # The range starts at or past the end: either .part is already whole or it is junk.
            _, total = _total_from_content_range(exc.headers.get("Content-Range"))
            if total == offset:
                return True
            part.unlink(missing_ok=True)
            return False
        if exc.code in _TRANSIENT:
            raise
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}; check the URL or the --mirror base URL") from None
    with resp:
        status = resp.getcode() or 200  # file:// URLs report no status
        total: int | None = None
        if status == 206:
            start, total = _total_from_content_range(resp.headers.get("Content-Range"))
            if start != offset:  # a range we did not ask for: start over rather than splice garbage
                part.unlink(missing_ok=True)
                return False
        else:
            # 200: the server ignored Range (or there was none); restart the file from byte 0.
            offset = 0
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        try:
            f = open(part, "ab" if offset else "wb")
        except OSError as exc:
            raise DownloadError(f"cannot write {part}: {exc}; check permissions and free space") from None
        with f, tqdm(total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                     desc=part.name.removesuffix(".part"), disable=None if progress else True,
                     leave=False) as bar:
            while chunk := resp.read(_CHUNK):
                try:
                    f.write(chunk)
                except OSError as exc:
                    raise DownloadError(f"cannot write {part}: {exc}; check free disk space") from None
                bar.update(len(chunk))
    size = part.stat().st_size
    if total is not None and size < total:
        raise http.client.IncompleteRead(b"", total - size)
    if total is not None and size > total:
        part.unlink()
        return False
    return True


def download_file(url: str, dest: str | Path, md5: str | None, progress: bool = True, *,
                  sha256: str | None = None, size: int | None = None, retries: int = 4,
                  timeout: float = 60.0, backoff: float = 1.0) -> Path:
    """Download `url` to `dest`, resuming `dest.part`, then verify and rename.

    An existing `dest` that satisfies `md5`/`sha256`/`size` (or any existing `dest` when none is given:
    only verified files are ever renamed to it) is returned without a request. Transient failures
    (timeouts, resets, 5xx, truncated bodies) are retried `retries` times with exponential backoff
    (`backoff` s, doubling); an attempt that made progress resets the count.
    """
    dest = Path(dest)
    if urllib.parse.urlsplit(url).scheme not in ("http", "https", "file"):
        raise DownloadError(f"cannot download {url!r}: not an http(s):// or file:// URL; fix the URL or --mirror")
    part = dest.with_name(dest.name + ".part")
    if dest.is_file():
        if _mismatch(dest, md5, sha256, size) is None:
            return dest
        log.warning("%s does not verify; downloading it again", dest)
        dest.unlink()
    dest.parent.mkdir(parents=True, exist_ok=True)
    failures = 0
    while True:
        before = part.stat().st_size if part.exists() else 0
        try:
            if _fetch_once(url, part, timeout, progress):
                break
            failures += 1  # restarted from scratch; bounded like any failure
        except (OSError, http.client.HTTPException) as exc:
            failures = 0 if (part.exists() and part.stat().st_size > before) else failures + 1
            if failures > retries:
                reason = getattr(exc, "reason", None) or exc
                kept = f"; {part} is kept, rerun to resume" if part.exists() else ""
                raise DownloadError(f"could not download {url} after {retries + 1} attempts ({reason}){kept}; "
                                    "check the network or the --mirror base URL") from None
            delay = backoff * 2 ** max(failures - 1, 0)
            log.warning("download of %s interrupted (%s); retrying in %.1f s", url, exc, delay)
            time.sleep(delay)
            continue
        if failures > retries:
            raise DownloadError(f"{url}: the server kept returning inconsistent ranges; "
                                f"delete {part} and retry, or use another --mirror")
    problem = _mismatch(part, md5, sha256, size)
    if problem is not None:
        part.unlink(missing_ok=True)
        raise DownloadError(f"{url} failed verification ({problem}); the download was deleted: "
                            "retry, and check that --mirror serves the official files")
    os.replace(part, dest)
    return dest


# ----------------------------------------------------------------------------------------------------
# extraction


def _parts(name: str, archive: Path) -> tuple[str, ...]:
    """Normalized relative path components of a member name; refuses absolute paths and '..'."""
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        raise UnsafeArchiveError(f"{archive}: member {name!r} has an absolute path; refusing to extract")
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise UnsafeArchiveError(f"{archive}: member {name!r} contains '..'; refusing to extract")
    return parts


def _resolve(start: list[str], rel: str, links: dict[tuple[str, ...], str], depth: int = 0) -> list[str] | None:
    """Resolve `rel` from folder `start` inside the archive, following the archive's own symlinks.

    Returns the path components, or None if it escapes the root (or loops). Lexical checks alone miss
    chains such as `d -> .` plus `l -> d/..`, which points outside although 'd/..' looks harmless.
    """
    if depth > 40 or rel.startswith("/"):
        return None
    stack = list(start)
    for comp in rel.split("/"):
        if comp in ("", "."):
            continue
        if comp == "..":
            if not stack:
                return None
            stack.pop()
            continue
        stack.append(comp)
        target = links.get(tuple(stack))
        if target is not None:
            resolved = _resolve(stack[:-1], target, links, depth + 1)
            if resolved is None:
                return None
            stack = resolved
    return stack


def _validate(members: list[tarfile.TarInfo], archive: Path) -> None:
    names = {m.name: _parts(m.name, archive) for m in members}
    symlinks = {names[m.name]: m.linkname for m in members if m.issym()}
    link_names = set(symlinks) | {names[m.name] for m in members if m.islnk()}
    for m in members:
        parts = names[m.name]
        if m.isdev():
            raise UnsafeArchiveError(f"{archive}: member {m.name!r} is a device or FIFO; refusing to extract")
        if not (m.isfile() or m.isdir() or m.issym() or m.islnk()):
            raise UnsafeArchiveError(f"{archive}: member {m.name!r} has unsupported type {m.type!r}")
        if not parts and not m.isdir():
            raise UnsafeArchiveError(f"{archive}: member {m.name!r} has an empty name")
        if any(parts[:i] in link_names for i in range(1, len(parts))):
            raise UnsafeArchiveError(f"{archive}: member {m.name!r} is written through a link; refusing to extract")
        if m.issym() and _resolve(list(parts[:-1]), m.linkname, symlinks) is None:
            raise UnsafeArchiveError(f"{archive}: symlink {m.name!r} -> {m.linkname!r} points outside the "
                                     "target; refusing to extract")
        if m.islnk() and _resolve([], m.linkname, symlinks) is None:
            raise UnsafeArchiveError(f"{archive}: hard link {m.name!r} -> {m.linkname!r} points outside the "
                                     "target; refusing to extract")


def safe_extract(archive: str | Path, target: str | Path, progress: bool = True) -> Path:
    """Extract a tar archive (any compression) so that its members land under `target`.

    Every member is validated first (no absolute paths, no '..', no links leaving `target`, no writing
    through links, no devices); then extraction goes to a hidden temporary folder beside `target`, which
    is renamed to `target` only when complete. `target` must not exist (an empty folder is allowed).
    """
    archive, target = Path(archive), Path(target)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ArchiveError(f"cannot extract {archive}: {target} already exists; remove it first")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    try:
        try:
            with tarfile.open(archive, "r:*") as tar:
                members = tar.getmembers()
                _validate(members, archive)
                bar = tqdm(members, desc=f"extract {archive.name}", unit="file", disable=None if progress else True,
                           leave=False)
                if hasattr(tarfile, "data_filter"):  # 3.11.4+/3.10.12+: a second, filesystem-level guard
                    tar.extractall(tmp, members=bar, filter="data")
                else:
                    for m in members:
                        m.mode = (m.mode & 0o755) | (0o700 if m.isdir() else 0o600)
                    tar.extractall(tmp, members=bar)
        except _FILTER_ERROR as exc:
            raise UnsafeArchiveError(f"{archive}: {exc}; refusing to extract") from None
        except (tarfile.TarError, EOFError, zlib.error) as exc:
            raise ArchiveError(f"cannot read archive {archive} ({exc}); delete it and download again") from None
        except OSError as exc:
            raise ArchiveError(f"cannot extract {archive} into {target.parent} ({exc}); check free disk "
                               "space and permissions, or delete the archive if it is corrupt") from None
        if target.is_dir():
            target.rmdir()
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
