"""asr.fileio: atomic writes (old file or whole new one), their permissions, and reading the umask without
changing it."""
from __future__ import annotations

import os
import stat

import pytest

from asr import fileio


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield
    os.umask(old)


def test_umask_is_read_without_being_changed(umask_027, monkeypatch, tmp_path):
    def forbidden(*_):
        raise AssertionError("os.umask changes the umask of every thread while it is read")
    monkeypatch.setattr(os, "umask", forbidden)
    assert fileio.current_umask() == 0o027
    with fileio.atomic_write(tmp_path / "a.txt") as f:
        f.write("x")
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o640  # 0666 minus the umask, not mkstemp's 0600


def test_without_proc_the_probe_file_tells_the_umask(umask_027, monkeypatch):
    real_open = open

    def no_proc(path, *args, **kwargs):
        if str(path).startswith("/proc/"):
            raise FileNotFoundError(path)
        return real_open(path, *args, **kwargs)
    monkeypatch.setattr("builtins.open", no_proc)
    assert fileio.current_umask() == 0o027


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "m.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with fileio.atomic_write(target) as f:
            f.write("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["m.json"]
