"""asr.errors: a command whose reader goes away (`asr-data doctor ... | head`) stops quietly."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

_WRITER = textwrap.dedent("""
    import sys
    from asr.errors import stdout_closed_quietly

    def main():
        for i in range(200_000):
            print(f"row {i}: " + "x" * 60)
        return 0

    sys.exit(stdout_closed_quietly(main) if sys.argv[1] == "wrapped" else main())
""")


def _read_a_little_then_close(mode: str) -> tuple[int, str]:
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, mode], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline().startswith(b"row 0:")
    proc.stdout.close()  # the reader goes away, as `| head -1` does
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err.decode()


@pytest.mark.parametrize("mode, traceback", [("bare", True), ("wrapped", False)])
def test_a_closed_pipe_ends_the_command_without_a_traceback(mode, traceback):
    code, err = _read_a_little_then_close(mode)
    assert code != 0
    assert ("BrokenPipeError" in err) is traceback, err
    if not traceback:
        assert code == 1 and err == ""
