"""The one exception family the CLIs turn into a one-line message (no traceback)."""


def message_line(exc: BaseException, last: bool = False) -> str:
    """One line from an exception a library raised: its first (or `last`) non-blank line, else its type name.
    torch's state-dict errors put the useful line last; most others put it first; some have no message at all."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return (lines[-1] if last else lines[0]) if lines else type(exc).__name__


class UserError(Exception):
    """Bad input or configuration the user can fix; the message names the file, id or key and what to change."""
