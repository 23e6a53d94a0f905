"""`asr-data doctor` on real generated audio: every kind of problem is reported by utterance id."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import tone

from asr.data import cli
from asr.data.doctor import (
    KINDS,
    Report,
    check_manifest,
    check_utterances,
    output_frames,
    padding_waste,
    strides_for,
)
from asr.data.doctor_report import format_report, histogram
from asr.data.manifest import Utterance
from asr.model.features import LogMel
from asr.text import save_tokenizer, train_pieces

SR = 16000
CLEAN = [  # (id, seconds, text): about 8-11 chars/s, all feasible at 4x subsampling
    ("c0", 1.0, "HELLO WORLD"), ("c1", 1.2, "GOOD SPEECH"), ("c2", 1.5, "OPEN SOURCE TREE"),
    ("c3", 1.1, "DOG'S MODEL"), ("c4", 1.3, "CAT AND DOG"), ("c5", 1.6, "HELLO SPEECH MODEL"),
    ("c6", 1.4, "THE GOOD TREE"), ("c7", 1.0, "OPEN WORLD"),
]


def _flac(path: Path, seconds: float, sample_rate: int = SR, channels: int = 1, seed: int = 0) -> float:
    wave = tone(seconds, sample_rate, seed=seed)
    if channels > 1:
        wave = np.stack([wave] * channels, axis=1)
    sf.write(path, wave, sample_rate, format="FLAC", subtype="PCM_16")
    return len(wave) / sample_rate


def _write_manifest(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _clean_records(root: Path) -> list[dict]:
    recs = []
    for i, (uid, secs, text) in enumerate(CLEAN):
        dur = _flac(root / f"{uid}.flac", secs, seed=i)
        recs.append({"audio_filepath": f"{uid}.flac", "duration": dur, "text": text, "id": uid})
    return recs


@pytest.fixture(scope="module")
def problem_corpus(tmp_path_factory) -> Path:
    """A manifest with one utterance per problem, plus the clean ones (relative paths)."""
    root = tmp_path_factory.mktemp("doctor")
    recs = _clean_records(root)

    def add(uid: str, text: str, seconds: float | None = None, duration: float | None = None, **audio):
        if seconds is not None:
            real = _flac(root / f"{uid}.flac", seconds, **audio)
            duration = real if duration is None else duration
        recs.append({"audio_filepath": f"{uid}.flac", "duration": duration, "text": text, "id": uid})

    add("missing", "HELLO WORLD", duration=1.0)  # no file written
    (root / "random.flac").write_bytes(np.random.default_rng(1).bytes(5000))
    add("random", "HELLO WORLD", duration=1.0)
    _flac(root / "whole.flac", 1.5)
    data = (root / "whole.flac").read_bytes()
    (root / "truncated.flac").write_bytes(data[: len(data) // 2])  # header intact, frames missing
    add("truncated", "OPEN SOURCE TREE", duration=1.5)
    add("sr22k", "HELLO WORLD", 1.2, sample_rate=22050)
    add("stereo", "GOOD SPEECH", 1.2, channels=2)
    add("mismatch", "HELLO WORLD", 1.0, duration=1.3)
    add("empty", "", 1.0)
    add("lower", "héllo world", 1.0)
    add("digits", "ROOM 101 IS OPEN", 1.0)
    add("spaces", "HELLO  WORLD", 1.0)
    add("short", "CAT", 0.2)
    add("long", "HELLO WORLD AND A GOOD SPEECH MODEL", 3.5)
    add("infeasible", "THIS TRANSCRIPT IS FAR TOO LONG FOR HALF A SECOND", 0.5)
    # 0.06 s -> 1 + 960 // 160 = 7 frames -> (7 - 1) // 4 + 1 = 2 frames: "AB" fits, "AA" needs a blank between.
    add("ab_fits", "AB", 0.06)
    add("aa_repeat", "AA", 0.06)
    add("slow", "CAT", 2.9)  # ~1 char/s: a transcript paired with the wrong (longer) audio
    return _write_manifest(root / "problems.jsonl", recs)


@pytest.fixture(scope="module")
def report(problem_corpus) -> Report:
    return check_manifest(problem_corpus, max_duration=3.0, jobs=1)


@pytest.mark.parametrize("kind, ids", [
    ("missing", ["missing"]),
    ("unreadable", ["random"]),
    ("corrupt", ["truncated"]),
    ("sample_rate", ["sr22k"]),
    ("multichannel", ["stereo"]),
    ("duration_mismatch", ["mismatch"]),
    ("empty_text", ["empty"]),
    ("unknown_chars", ["lower", "digits"]),
    ("not_normalized", ["spaces"]),
    ("too_short", ["short", "ab_fits", "aa_repeat"]),
    ("too_long", ["long"]),
    ("ctc_infeasible", ["infeasible", "aa_repeat"]),
    ("rate_outlier", ["slow"]),
])
def test_each_problem_reported_by_id(report, kind, ids):
    assert report.ids(kind) == ids


def test_clean_utterances_have_no_findings(report):
    flagged = {f.utt_id for f in report.findings}
    assert not flagged & {uid for uid, _, _ in CLEAN}
    assert "ab_fits" not in report.ids("ctc_infeasible")


def test_details_name_the_file_and_numbers(report, problem_corpus):
    detail = {f.utt_id: f.detail for f in report.findings if f.kind != "too_short"}
    assert str(problem_corpus.parent / "missing.flac") in detail["missing"]
    assert "random.flac" in detail["random"] and "truncated.flac" in detail["truncated"]
    assert "22050 Hz" in detail["sr22k"]
    assert "1.300" in detail["mismatch"] and "1.000" in detail["mismatch"]
    assert "HELLO WORLD" in detail["lower"]  # what normalize() would make of it
    assert "need 3 frames" in detail["aa_repeat"] and "gives 2" in detail["aa_repeat"]


def test_parallel_decode_matches_serial(problem_corpus, report):
    parallel = check_manifest(problem_corpus, max_duration=3.0, jobs=2)
    assert parallel.findings == report.findings
    assert parallel.durations == pytest.approx(report.durations)


def test_output_frames_match_front_end_and_conv_stack():
    """The doctor's T' must equal what LogMel + kernel-3/padding-1 time convs really produce."""
    mel = LogMel()
    for strides in ([2], [2, 2], [4], [1, 2]):
        convs = torch.nn.Sequential(*[torch.nn.Conv1d(1, 1, 3, stride=s, padding=1) for s in strides])
        sub = int(np.prod(strides))
        for samples in [0, 1, 159, 160, 161, 479, 480, 800, 961, 16000, 16001, 23999]:
            frames = int(mel.output_lengths(torch.tensor(samples)))
            real = convs(torch.zeros(1, 1, frames)).shape[-1]
            assert output_frames(samples / SR, SR, 160, strides) == real, (strides, samples)
            assert output_frames(samples / SR, SR, 160, strides_for(sub)) == real, (strides, samples)


@pytest.mark.parametrize("strides", [[2], [2, 2], [4], [1, 2], [1, 4]])
def test_output_frames_match_the_model(strides):
    """The contract with asr.model.acoustic: its output_lengths is the doctor's T' for every legal stride layout."""
    from asr.config import ModelConfig
    from asr.model.acoustic import AcousticModel

    cfg = ModelConfig(conv_channels=[4] * len(strides), conv_time_strides=strides, rnn_hidden=8, rnn_layers=1)
    model = AcousticModel(cfg, n_mels=80, vocab_size=29)
    samples = torch.tensor([0, 1, 159, 160, 161, 479, 480, 800, 961, 16000, 16001, 23999])
    frames = LogMel().output_lengths(samples)
    expected = [output_frames(int(s) / SR, SR, 160, strides_for(cfg.subsampling)) for s in samples]
    assert model.output_lengths(frames).tolist() == expected


def test_cli_clean_manifest_exits_zero(tmp_path, capsys):
    path = _write_manifest(tmp_path / "clean.jsonl", _clean_records(tmp_path))
    assert cli.main(["doctor", str(path), "--jobs", "1"]) == 0
    out = capsys.readouterr().out
    assert "8 utterances" in out and "0 error(s), 0 warning(s)" in out


def test_cli_problems_exit_one_summary_first(problem_corpus, capsys):
    assert cli.main(["doctor", str(problem_corpus), "--max-duration", "3", "--jobs", "1"]) == 1
    out = capsys.readouterr().out
    table = out.index("severity")
    for uid in ["missing", "random", "truncated", "sr22k", "aa_repeat", "slow"]:
        assert f"    {uid}: " in out and out.index(f"    {uid}: ") > table  # summary table comes first
    assert "durations:" in out and "#" in out


def test_cli_empty_manifest_exits_two_with_one_line(tmp_path, capsys):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n")
    assert cli.main(["doctor", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err and "Traceback" not in err


def test_cli_malformed_line_names_file_and_line(tmp_path, capsys):
    recs = _clean_records(tmp_path)[:2]
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(recs[0]) + "\n" + json.dumps(recs[1])[:-5] + "\n")
    assert cli.main(["doctor", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{path}:2" in err


def test_cli_missing_manifest_still_checks_the_others(tmp_path, capsys):
    good = _write_manifest(tmp_path / "clean.jsonl", _clean_records(tmp_path))
    assert cli.main(["doctor", str(tmp_path / "nope.jsonl"), str(good), "--jobs", "1"]) == 2
    captured = capsys.readouterr()
    assert "nope.jsonl" in captured.err and "8 utterances" in captured.out


def test_cli_plot_writes_png(tmp_path, capsys):
    path = _write_manifest(tmp_path / "clean.jsonl", _clean_records(tmp_path))
    png = tmp_path / "plots" / "durations.png"
    assert cli.main(["doctor", str(path), "--plot", str(png), "--jobs", "1"]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_subsampling_is_a_user_error(tmp_path, capsys):
    path = _write_manifest(tmp_path / "clean.jsonl", _clean_records(tmp_path)[:1])
    assert cli.main(["doctor", str(path), "--subsampling", "0"]) == 2
    assert "--subsampling" in capsys.readouterr().err


def test_long_lists_are_cut_with_a_count(tmp_path):
    _flac(tmp_path / "a.flac", 1.0)
    utts = [Utterance(id=f"u{i:02d}", audio_filepath=str(tmp_path / "a.flac"), duration=1.0, text="")
            for i in range(13)]
    text = format_report(check_utterances(utts, jobs=1), show=10)
    assert "u09: " in text and "u10: " not in text and "... and 3 more" in text


def test_zero_sample_file_is_an_error(tmp_path):
    sf.write(tmp_path / "z.wav", np.zeros(0, dtype=np.float32), SR)
    r = check_utterances([Utterance("z", str(tmp_path / "z.wav"), 0.0, "HI")], jobs=1)
    assert r.ids("corrupt") == ["z"] and "no samples" in r.findings[0].detail


def test_bad_manifest_durations(tmp_path):
    _flac(tmp_path / "a.flac", 1.0)
    utts = [Utterance(f"d{i}", str(p), d, "HELLO") for i, (p, d) in enumerate(
        [(tmp_path / "a.flac", float("nan")), (tmp_path / "a.flac", -1.0), (tmp_path / "gone.flac", float("inf"))])]
    r = check_utterances(utts, jobs=1)
    assert r.ids("bad_duration") == ["d0", "d1", "d2"] and r.ids("missing") == ["d2"]
    assert r.durations == [1.0, 1.0] and not r.ids("duration_mismatch") and not r.ids("ctc_infeasible")


def test_silent_file_is_a_warning(tmp_path):
    sf.write(tmp_path / "s.flac", np.zeros(SR, dtype=np.float32), SR, format="FLAC", subtype="PCM_16")
    r = check_utterances([Utterance("s", str(tmp_path / "s.flac"), 1.0, "HELLO")], jobs=1)
    assert r.ids("silent") == ["s"] and r.num_errors == 0 and KINDS["silent"][0] == "warning"


def test_padding_waste_uses_the_bucketed_sampler():
    assert padding_waste([2.0] * 50, 20.0, 5) == pytest.approx(0.0)
    mixed = list(np.random.default_rng(0).uniform(1.0, 15.0, 500))
    bucketed, flat = padding_waste(mixed, 60.0, 10), padding_waste(mixed, 60.0, 1)
    assert 0 < bucketed < flat < 1


def test_report_shows_padding(report):
    assert 0 <= report.padding_bucketed <= report.padding_unbucketed < 1
    assert "padding in batches" in format_report(report)


def test_report_lists_only_failed_checks_unless_all(tmp_path):
    """The console shows the checks that found something and one line for the rest; --all shows every row."""
    _flac(tmp_path / "a.flac", 1.0)
    sf.write(tmp_path / "s.flac", np.zeros(SR, dtype=np.float32), SR, format="FLAC", subtype="PCM_16")
    clean = check_utterances([Utterance("a", str(tmp_path / "a.flac"), 1.0, "HELLO")], jobs=1)
    text = format_report(clean)
    assert f"all {len(KINDS)} checks passed" in text and "severity" not in text
    assert all(label not in text for _, label in KINDS.values())
    full = format_report(clean, full=True)
    assert all(label in full for _, label in KINDS.values()) and "checks passed" not in full
    silent = format_report(check_utterances([Utterance("s", str(tmp_path / "s.flac"), 1.0, "HELLO")], jobs=1))
    assert KINDS["silent"][1] in silent and f"{len(KINDS) - 1} other checks passed" in silent
    assert sum(label in silent for _, label in KINDS.values()) == 1


def test_histogram_counts_everything():
    lines = histogram([1.0, 1.1, 2.0, 5.0], bins=4)
    assert len(lines) == 4 and sum(int(line.split()[-1]) for line in lines) == 4


def test_a_subword_runs_tokenizer_fits_pieces_not_characters(tmp_path, capsys):
    """At 8x subsampling (80 ms frames) fast utterances are infeasible in characters but fit as the pieces a
    model.tokenizer=sentencepiece run learned; --tokenizer takes that run's tokenizer.json."""
    recs = []
    for i, (uid, _, text) in enumerate(CLEAN):  # 14 characters a second: 80 ms frames fit fewer than 13
        dur = _flac(tmp_path / f"{uid}.flac", len(text) / 14, seed=i)
        recs.append({"audio_filepath": f"{uid}.flac", "duration": dur, "text": text, "id": uid})
    path = _write_manifest(tmp_path / "fast.jsonl", recs)
    save_tokenizer(train_pieces([text for _, _, text in CLEAN] * 5, 64), tmp_path / "tokenizer.json")
    assert cli.main(["doctor", str(path), "--subsampling", "8", "--jobs", "1"]) == 1
    assert "too few frames for CTC" in capsys.readouterr().out
    assert cli.main(["doctor", str(path), "--subsampling", "8", "--tokenizer", str(tmp_path / "tokenizer.json"),
                     "--jobs", "1"]) == 0
    assert "0 error(s)" in capsys.readouterr().out
    (tmp_path / "broken.json").write_text("{")
    assert cli.main(["doctor", str(path), "--tokenizer", str(tmp_path / "broken.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--tokenizer" in err and "broken.json" in err
