"""The suite's own guards, tested on throw-away inner test runs: a leaked signal handler fails the test that leaked
it, and a hang ends the run within its time limit with every thread's stack on stderr (never CI's 90 minutes)."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def _inner_run(tmp_path: Path, body: str, limit_s: str, timeout_s: float = 120) -> tuple[int, str, float]:
    """Run one test file under this suite's conftest.py in a fresh pytest process."""
    (tmp_path / "conftest.py").write_text((TESTS / "conftest.py").read_text())
    (tmp_path / "test_inner.py").write_text(textwrap.dedent(body))
    env = {"ASR_TEST_SUITE_LIMIT_S": limit_s, "PATH": "/usr/bin:/bin"}
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_inner.py"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout_s)
    return r.returncode, r.stdout + r.stderr, time.monotonic() - t0


def test_a_test_that_leaks_a_signal_handler_fails(tmp_path):
    rc, out, _ = _inner_run(tmp_path, """
        import signal

        def test_leaks():
            signal.signal(signal.SIGTERM, lambda *a: None)

        def test_restores():  # both tests pass their call phase; test_leaks errors in teardown
            old = signal.signal(signal.SIGUSR1, lambda *a: None)
            signal.signal(signal.SIGUSR1, old)
    """, limit_s="120")
    assert rc == 1, out
    assert "2 passed, 1 error" in out and "left signal handlers changed: SIGTERM" in out, out


def test_a_hang_ends_the_run_with_every_threads_stack(tmp_path):
    rc, out, elapsed = _inner_run(tmp_path, """
        import threading
        import time

        def test_hangs():
            threading.Thread(target=time.sleep, args=(600,), name="helper", daemon=True).start()
            threading.Event().wait()  # waits forever, as a deadlocked pool join would
    """, limit_s="4")
    assert rc != 0 and elapsed < 60, (rc, elapsed, out)
    assert "Timeout (0:00:04)!" in out and out.count("Thread 0x") >= 2, out  # main thread + helper
    assert "test_hangs" in out
