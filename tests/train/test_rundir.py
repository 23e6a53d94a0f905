"""Run-directory lock and clean-up: one writer per run directory, named when busy; leftover temp files removed."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap

import pytest

from asr.train import rundir


def test_second_holder_is_refused_naming_pid_and_host(tmp_path):
    with rundir.exclusive(tmp_path):
        # Another process (flock locks belong to open file descriptions; a second process is the real case).
        code = textwrap.dedent(f"""
            from pathlib import Path
            from asr.train import rundir
            try:
                with rundir.exclusive(Path({str(tmp_path)!r})):
                    print("acquired")
            except rundir.RunDirBusyError as exc:
                print(exc)
        """)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    assert "acquired" not in out
    assert f"PID {os.getpid()}" in out and socket.gethostname() in out and "run_dir" in out


def test_lock_is_released_on_exit_and_on_error(tmp_path):
    with rundir.exclusive(tmp_path):
        pass
    with pytest.raises(ValueError):
        with rundir.exclusive(tmp_path):
            raise ValueError("boom")
    with rundir.exclusive(tmp_path):  # free again
        assert "PID" in (tmp_path / rundir.LOCK_NAME).read_text()
    assert (tmp_path / rundir.LOCK_NAME).read_text() == ""


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    code = f"from pathlib import Path\nfrom asr.train import rundir\nimport os\n" \
           f"with rundir.exclusive(Path({str(tmp_path)!r})):\n    os._exit(0)\n"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    assert "PID" in (tmp_path / rundir.LOCK_NAME).read_text()  # died holding it: the text stays ...
    with rundir.exclusive(tmp_path):  # ... but the kernel released the flock
        pass


def test_stale_temp_files_are_removed(tmp_path):
    (tmp_path / ".step-00000004.pt.abc123.tmp").write_bytes(b"half a checkpoint")
    (tmp_path / "step-00000002.pt").write_bytes(b"kept")
    (tmp_path / "notes.tmp").write_text("not ours: no leading dot")
    assert rundir.remove_stale_temp_files(tmp_path) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.tmp", "step-00000002.pt"]
    assert rundir.remove_stale_temp_files(tmp_path / "missing") == 0


def test_run_logging_leaves_no_handler_behind(tmp_path):
    import logging
    log = logging.getLogger("asr.train")
    before = list(logging.getLogger().handlers)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with rundir.run_logging(tmp_path / "a", is_main=True):
        log.info("first run")
    with rundir.run_logging(tmp_path / "b", is_main=True):
        log.info("second run")
    assert logging.getLogger().handlers == before
    assert "first run" in (tmp_path / "a" / "train.log").read_text()
    assert "second run" not in (tmp_path / "a" / "train.log").read_text()
