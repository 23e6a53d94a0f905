"""The run directory: where it is (`resolve_run_dir`), its log file, one writer at a time (an exclusive lock held
for the whole run), and clean-up of what a killed run left.

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
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from asr.config import TrainConfig
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


def resolve_run_dir(cfg: TrainConfig) -> Path:
    """`run_dir` if set, else Hydra's output dir when running under Hydra, else the current directory."""
    if cfg.run_dir:
        path = Path(cfg.run_dir)
    else:
        try:
            from hydra.core.hydra_config import HydraConfig
            path = Path(HydraConfig.get().runtime.output_dir)
        except ValueError:
            path = Path.cwd()
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def run_logging(run_dir: Path, is_main: bool) -> Iterator[None]:
    """Console + run_dir/train.log on rank 0 for the block (Hydra already configures both when it launched us);
    the handlers added here are removed and closed at the end, so a later run in the same process (tests, a
    notebook) does not also write into this run's log."""
    root = logging.getLogger()
    level, added = root.level, []
    if not is_main:
        root.setLevel(logging.WARNING)
    else:
        root.setLevel(logging.INFO)
        target = str((run_dir / "train.log").resolve())
        if not any(isinstance(h, logging.FileHandler) and h.baseFilename == target for h in root.handlers):
            fh = logging.FileHandler(target)
            fh.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
            added.append(fh)
        if not any(isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
                   for h in root.handlers):
            added.append(logging.StreamHandler(sys.stderr))
        for h in added:
            root.addHandler(h)
    try:
        yield
    finally:
        for h in added:
            root.removeHandler(h)
            h.close()
        root.setLevel(level)


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
