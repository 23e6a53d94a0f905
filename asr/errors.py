"""The one exception family the CLIs turn into a one-line message (no traceback), and how to recognise a failure of
the user's storage (full, read-only, forbidden) wherever a library wrapped it."""
from __future__ import annotations

import errno
import os
import sys
from typing import Callable, Optional, TypeVar

T = TypeVar("T")

# Storage failures of the user's environment: full disk or quota, read-only or forbidden folder.
STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def message_line(exc: BaseException, last: bool = False) -> str:
    """One line from an exception a library raised: its first (or `last`) non-blank line, else its type name.
    torch's state-dict errors put the useful line last; most others put it first; some have no message at all."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return (lines[-1] if last else lines[0]) if lines else type(exc).__name__


class UserError(Exception):
    """Bad input or configuration the user can fix; the message names the file, id or key and what to change."""


def storage_error(exc: BaseException) -> Optional[OSError]:
    """The storage failure (full, read-only or forbidden: STORAGE_ERRNOS) that `exc` is or was caused by, if any."""
    seen: set[int] = set()
    current: Optional[BaseException] = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in STORAGE_ERRNOS:
            return current
        current = current.__cause__ or current.__context__
    return None


def stdout_closed_quietly(main: Callable[[], T]) -> T:
    """Run a console command's `main`; if the reader of its stdout goes away (`asr-data doctor ... | head`), stop
    with exit status 1 and no traceback, as a Unix filter does. Python's own advice: point stdout at /dev/null so the
    interpreter's final flush cannot raise a second time."""
    try:
        return main()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(1)
