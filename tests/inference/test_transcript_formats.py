"""Transcript writers (asr.inference.transcript_formats): format choice, subtitle cues, SRT/VTT/CTM/CSV contents."""
from __future__ import annotations

import csv
import json

import pytest

from asr.config import ConfigError
from asr.inference.transcript_formats import FORMATS, Writer, cues, pick_format, subtitles


def _rec(audio="talks/a.flac"):
    words = [("HELLO", 0.0, 0.4), ("WORLD", 0.5, 0.9), ("AFTER", 2.0, 2.3), ("A", 2.4, 2.5), ("PAUSE", 2.6, 3.0)]
    return {"audio": audio, "text": " ".join(w for w, _, _ in words), "decoder": "greedy", "duration": 3.2,
            "words": [{"word": w, "start": s, "end": e} for w, s, e in words]}


def test_format_by_option_or_suffix_and_unknown_refused():
    assert pick_format(None, None) == "jsonl" and pick_format(None, "x.SRT") == "srt"
    assert pick_format("ctm", "x.txt") == "ctm"
    with pytest.raises(ConfigError, match=r"^output: cannot tell the format of x\.txt"):
        pick_format(None, "x.txt")
    with pytest.raises(ConfigError, match=r"^output_format: 'doc' is not one of " + ", ".join(FORMATS)):
        pick_format("doc", None)


def test_cues_cut_at_pauses_and_length():
    assert cues(_rec()["words"]) == [(0.0, 0.9, "HELLO WORLD"), (2.0, 3.0, "AFTER A PAUSE")]
    many = [{"word": "WORD", "start": k * 0.5, "end": k * 0.5 + 0.4} for k in range(40)]
    out = cues(many)
    assert all(e - s <= 6.0 and len(t) <= 84 for s, e, t in out)
    assert " ".join(t for _, _, t in out) == " ".join(["WORD"] * 40)


def test_srt_and_vtt_documents():
    srt = subtitles(_rec(), "srt")
    assert srt == ("1\n00:00:00,000 --> 00:00:00,900\nHELLO WORLD\n\n"
                   "2\n00:00:02,000 --> 00:00:03,000\nAFTER A PAUSE\n")
    assert subtitles(_rec(), "vtt").startswith("WEBVTT\n\n00:00:00.000 --> 00:00:00.900\nHELLO WORLD\n")


def test_writers_one_file_many_files_ctm_csv(tmp_path):
    w = Writer("srt", str(tmp_path / "one.srt"), many=False)
    w.write(_rec())
    w.close()
    assert (tmp_path / "one.srt").read_text().startswith("1\n00:00:00,000")
    w = Writer("vtt", str(tmp_path / "subs.vtt"), many=True)
    for r in (_rec("x/a.flac"), _rec("y/b.wav"), {"audio": "bad.wav", "error": "cannot decode"}, _rec("z/a.wav")):
        w.write(r)
    w.close()
    assert sorted(p.name for p in (tmp_path / "subs").iterdir()) == ["a-2.vtt", "a.vtt", "b.vtt"]
    w = Writer("ctm", str(tmp_path / "o.ctm"), many=True)
    w.write(_rec())
    w.close()
    assert (tmp_path / "o.ctm").read_text().splitlines()[:2] == ["a 1 0.000 0.400 HELLO 1.00", "a 1 0.500 0.400 WORLD 1.00"]
    w = Writer("csv", str(tmp_path / "o.csv"), many=True)
    w.write(_rec())
    w.write({"audio": "bad.wav", "error": "cannot decode"})
    w.close()
    rows = list(csv.reader(open(tmp_path / "o.csv")))
    assert rows == [["audio", "duration", "text", "error"], ["talks/a.flac", "3.2", _rec()["text"], ""],
                    ["bad.wav", "", "", "cannot decode"]]
    with pytest.raises(ConfigError, match="srt subtitles are written to files"):
        Writer("srt", None, many=False)


def test_jsonl_to_a_file(tmp_path):
    w = Writer("jsonl", str(tmp_path / "o.jsonl"), many=True)
    w.write(_rec())
    w.close()
    assert json.loads((tmp_path / "o.jsonl").read_text()) == _rec()
