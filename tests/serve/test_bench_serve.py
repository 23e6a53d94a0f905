"""scripts/bench_serve.py, run small against the test model: every answer correct, none mixed up, and a report
with every field (a benchmark is not a test: no figure is asserted)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import bench_serve
import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_small_load_test_has_no_failures_and_a_full_report(deploy_run, tmp_path):
    files = [u.audio_filepath for u in deploy_run["utts"]]
    out = tmp_path / "serve"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_serve.py"), "--checkpoint",
                           str(deploy_run["run"]), "--files", *files, "--clients", "2", "--seconds", "3",
                           "--device", "cpu", "--out", str(out)], capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["failures"] == report["wrong_text"] == report["mixed_up"] == 0 and report["examples"] == []
    assert report["requests"] == report["correct"] > 0
    assert [f["text"] for f in report["files"]] == [u.text for u in deploy_run["utts"]]
    assert report["requests_per_second"] > 0 and report["audio_seconds_per_second"] > 0
    lat = report["latency_ms"]
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert report["server"]["exit_status"] == 0 and report["clients"] == 2
    md = out.with_suffix(".md").read_text()
    assert "| requests | correct | failed | wrong text | mixed up | requests/s |" in md
    assert "clean shutdown" in out.with_suffix(".server.log").read_text()


def test_check_tells_wrong_from_mixed_up():
    expected = ["A B", "C D"]
    assert bench_serve.check({"filename": "x", "text": "A B"}, "x", 0, expected) is None
    assert bench_serve.check({"filename": "x", "text": "C D"}, "x", 0, expected) == "mixed_up"
    assert bench_serve.check({"filename": "y", "text": "A B"}, "x", 0, expected) == "mixed_up"
    assert bench_serve.check({"filename": "x", "text": "A"}, "x", 0, expected) == "wrong_text"
    assert bench_serve.check(None, "x", 0, expected) == "failures"


@pytest.mark.parametrize("extra, message", [(["--clients", "65"], "--clients must be in 1..64"),
                                            (["--seconds", "601"], "--seconds must be in (0, 600]")])
def test_bounds_are_refused(extra, message, tmp_path, capsys):
    audio = tmp_path / "a.wav"
    audio.write_bytes(b"")
    with pytest.raises(SystemExit) as exc:
        bench_serve.parse_args(["--checkpoint", "x", "--files", str(audio), *extra])
    assert exc.value.code == 2 and message in capsys.readouterr().err
