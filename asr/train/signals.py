"""Preemption: SIGTERM/SIGUSR1 ask a run to checkpoint at the next step boundary and exit 143.

The handlers are scoped to the run, not process-wide: `main()` is called in-process by tests and notebooks, and a
handler left behind is inherited by every process forked later, which then ignores SIGTERM (a forked pool worker
that could not be terminated hung our own test suite).
"""
from __future__ import annotations

import contextlib
import logging
import signal
import threading
from typing import Iterator

from asr.signal_stack import ensure_alternate_signal_stack

log = logging.getLogger("asr.train")

EXIT_PREEMPTED = 143  # 128 + SIGTERM: what schedulers (SLURM, k8s) expect from a job that checkpointed and left


class StopRequest:
    """Set by SIGTERM/SIGUSR1 while a run is active."""

    def __init__(self) -> None:
        self.requested = False


@contextlib.contextmanager
def preemption_signals() -> Iterator[StopRequest]:
    """Handle SIGTERM/SIGUSR1 for the block, then restore the previous handlers (also on error).

    Outside the main thread Python cannot install handlers: then only a caller setting `requested` stops the run.
    The handlers run on an alternate signal stack (asr/signal_stack.py): on the interrupted thread's own stack, a
    SIGTERM that landed inside oneDNN's LSTM kernels corrupted the heap and killed the run it meant to save.
    """
    stop = StopRequest()

    def handler(signum, _frame):
        stop.requested = True
        log.warning("received signal %d: will checkpoint at the next step boundary and exit", signum)

    previous = {}
    if threading.current_thread() is threading.main_thread():
        ensure_alternate_signal_stack()
        for sig in (signal.SIGTERM, signal.SIGUSR1):
            previous[sig] = signal.signal(sig, handler)
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            # None: the previous handler was not installed from Python (faulthandler, say); the default then.
            signal.signal(sig, old if old is not None else signal.SIG_DFL)
