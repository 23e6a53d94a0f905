"""One writer per run directory: an exclusive lock held for the whole run, and clean-up of what a killed run left.

Two `asr-train` processes on one run directory would both resume from the same checkpoint, write the same
`step-N` names, interleave `train.log` and `metrics.jsonl` and open two TensorBoard event files. The lock is a
POSIX record lock (`lockf`) on RUN_DIR/.lock: the kernel releases it when the holder dies, so a `kill -9` never
leaves a stale lock, and unlike `flock` it is not inherited by forked DataLoader workers, which outlive a killed
trainer by a few seconds. The file records the holder's PID and host so the error can name them.
"""
from __future__ import annotations

import errno
import fcntl
import logging
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from asr.errors import UserError

log = logging.getLogger(__name__)

LOCK_NAME = ".lock"


class RunDirBusyError(UserError):
    """Another process holds the run directory's lock."""


@contextmanager
def exclusive(run_dir: Path) -> Iterator[None]:
    """Hold RUN_DIR/.lock for the block; raise RunDirBusyError naming the holder if another process has it."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EACCES, errno.EAGAIN):
                raise
            holder = os.pread(fd, 256, 0).decode("utf-8", "replace").strip() or "an unknown process"
            raise RunDirBusyError(
                f"run directory {run_dir} is in use by {holder}; wait for that run to finish (or stop it), "
                f"or train into another run_dir=...") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"PID {os.getpid()} on host {socket.gethostname()} (since "
                      f"{time.strftime('%Y-%m-%d %H:%M:%S')})\n".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def remove_stale_temp_files(folder: Path) -> int:
    """Delete `.NAME.*.tmp` files that an atomic write killed mid-way left behind (see asr/fileio.py).

    Only safe while holding the run directory's lock: then no other process can be writing one.
    Returns how many were removed.
    """
    if not folder.is_dir():
        return 0
    stale = [p for p in folder.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp") and p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    if stale:
        log.info("removed %d unfinished temporary file(s) a killed run left in %s", len(stale), folder)
    return len(stale)
