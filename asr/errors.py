"""The one exception family the CLIs turn into a one-line message (no traceback)."""


class UserError(Exception):
    """Bad input or configuration the user can fix; the message names the file, id or key and what to change."""
