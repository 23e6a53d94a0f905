"""asr.train.runlog: while a run logs, a full or read-only disk in a background writer thread (TensorBoard's) is left
to the training loop's one-line error instead of a traceback; other thread errors and the previous hook are kept."""
from __future__ import annotations

import errno
import threading

import torch

from asr.train.runlog import RunLog


def _raise_in_thread(exc: BaseException) -> None:
    def target():
        raise exc
    t = threading.Thread(target=target, name="writer")
    t.start()
    t.join()


def test_storage_errors_in_threads_are_quiet_only_while_the_run_logs(tmp_path, capsys):
    before = threading.excepthook
    with RunLog(tmp_path, torch.device("cpu"), log_every=1):
        _raise_in_thread(OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "tb" / "events")))
        assert capsys.readouterr().err == ""  # the loop reports it, in one line, when it next writes
        wrapped = RuntimeError("flush failed")
        wrapped.__cause__ = OSError(errno.EROFS, "Read-only file system")
        _raise_in_thread(wrapped)
        assert capsys.readouterr().err == ""
        _raise_in_thread(ValueError("a bug of ours"))  # anything else still prints its traceback
        err = capsys.readouterr().err
        assert "Exception in thread writer" in err and "ValueError: a bug of ours" in err
    assert threading.excepthook is before  # outside a run, whatever hook was there before (pytest's, here)
