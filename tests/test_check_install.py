"""scripts/check_install.py: passes on a working install; a broken piece is one line naming it and the fix."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import check_install  # noqa: E402


def test_passes_on_this_install():
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "check_install.py")], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and r.stderr == "", r.stderr


def test_lock_pins_the_installed_torch_pair():
    locked = check_install._locked_versions()
    assert locked["torch"] == locked["torchaudio"]  # torchaudio releases pair with torch of the same number


def test_a_broken_piece_is_one_line_with_its_fix(monkeypatch, capsys):
    def broken():
        raise OSError("libtorchaudio.so: undefined symbol: torch_exception_get_what_without_backtrace\nmore")
    monkeypatch.setattr(check_install, "CHECKS", [("torchaudio's extension", broken, "reinstall")])
    assert check_install.main() == 1
    err = capsys.readouterr().err
    assert err == ("setup: broken: torchaudio's extension: libtorchaudio.so: undefined symbol: "
                   "torch_exception_get_what_without_backtrace more; fix: reinstall\n")
