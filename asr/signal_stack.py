"""Signal handlers run on a stack of their own, so a signal cannot corrupt the memory of the kernel it interrupts.

A signal handled by a process (CPython's C-level handler for SIGTERM/SIGUSR1 once `signal.signal` installed a
Python one, for SIGINT always) is delivered, by default, on the interrupted thread's own stack: the kernel writes
its frame just below that thread's stack pointer. Measured with torch 2.11 on CPU: a SIGTERM that lands while the
main thread is inside oneDNN's LSTM kernels (`mkldnn_rnn_layer`) corrupts the heap - "corrupted size vs. prev_size"
and SIGABRT or SIGSEGV within a second or two of signals every 0.5 ms, six runs of six
(scripts/check_signal_stack.py). It killed a torchrun rank that was asked to checkpoint and stop (the launcher
test in tests/train/test_train.py, about one run in eight). With an alternate stack all six runs finished.

CPython installs every handler with SA_ONSTACK, so an alternate stack for the thread the signal lands on is all it
takes; Linux delivers a process-directed signal to the main thread whenever that thread does not block it.
`faulthandler.enable()` is the portable way to give the calling thread one (the stack faulthandler needs for a
stack overflow), and it prints every thread's Python stack on a fatal crash, which a user whose run dies in
native code wants anyway.
"""
from __future__ import annotations

import faulthandler
import io
import os
import sys

__all__ = ["ensure_alternate_signal_stack"]

_devnull = None  # faulthandler keeps writing to the file it was given: keep it open for the process's life


def ensure_alternate_signal_stack() -> None:
    """Give the calling thread (call it from the main thread) an alternate signal stack, through faulthandler.

    Idempotent; leaves a faulthandler the user enabled as it is. Fatal-crash tracebacks go to the process's
    real stderr; where there is none with a file descriptor (some notebooks, pythonw) to os.devnull, which
    still installs the stack."""
    global _devnull
    if faulthandler.is_enabled():
        return
    try:
        faulthandler.enable(file=sys.__stderr__, all_threads=True)
        return
    except (AttributeError, ValueError, io.UnsupportedOperation, RuntimeError):
        pass  # sys.__stderr__ is None, closed, or has no fileno()
    if _devnull is None:
        _devnull = open(os.devnull, "w")
    faulthandler.enable(file=_devnull, all_threads=True)
