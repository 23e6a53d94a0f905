"""scripts/check_install.py: passes on a working install; a broken piece is one line naming it and the fix."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import check_install

ROOT = Path(__file__).resolve().parents[1]


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


def test_every_locked_distribution_is_compared_not_just_a_few(monkeypatch):
    """A mismatch or a missing package anywhere in the lock is named (it compared 6 of ~100 before)."""
    import pytest
    real = check_install.metadata.version
    locked = check_install._locked_versions()
    assert len(locked) > 50 and {"tqdm", "jiwer", "hydra-core"} <= locked.keys()

    def version(name):
        if check_install._canonical(name) == "tqdm":
            return "0.0.1"
        if check_install._canonical(name) == "jiwer":
            raise check_install.metadata.PackageNotFoundError(name)
        return real(name)
    monkeypatch.setattr(check_install.metadata, "version", version)
    with pytest.raises(RuntimeError) as exc:
        check_install.check_versions()
    assert f"tqdm 0.0.1 is installed but requirements.lock pins {locked['tqdm']}" in str(exc.value)
    assert f"jiwer is not installed (requirements.lock pins {locked['jiwer']})" in str(exc.value)


def test_lock_entries_for_other_platforms_or_pythons_are_not_required(monkeypatch, tmp_path):
    (tmp_path / "requirements.lock").write_text(
        "tqdm==4.0 \\\n    --hash=sha256:00\ncolorama==0.4.6 ; sys_platform == 'win32' \\\n    --hash=sha256:11\n"
        "ml-dtypes==0.5.4 ; python_full_version >= '3.99' \\\nml-dtypes==0.7.0 ; python_full_version < '3.99'\n")
    monkeypatch.setattr(check_install, "ROOT", tmp_path)
    assert check_install._locked_versions() == {"tqdm": "4.0", "ml-dtypes": "0.7.0"}
