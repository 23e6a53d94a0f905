"""JSONL manifests: round trip, path resolution, and ManifestError naming path:line."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from asr.data.manifest import ManifestError, Utterance, read_manifest, write_manifest
from asr.errors import UserError

REC = {"audio_filepath": "a.flac", "duration": 1.5, "text": "HELLO", "id": "u1", "speaker": "84"}


def _write(path: Path, lines: list) -> Path:
    path.write_text("".join((ln if isinstance(ln, str) else json.dumps(ln)) + "\n" for ln in lines),
                    encoding="utf-8")
    return path


def test_round_trip(tmp_path):
    utts = [Utterance("84-1-0", str(tmp_path / "a.flac"), 1.25, "HELLO WORLD", "84"),
            Utterance("84-1-1", str(tmp_path / "b.flac"), 2.0, "caf\u00e9 \u2019", ""),  # kept as is, not ASCII-escaped
            ]
    write_manifest(tmp_path / "sub" / "m.jsonl", utts)
    assert read_manifest(tmp_path / "sub" / "m.jsonl") == utts
    assert "caf\u00e9" in (tmp_path / "sub" / "m.jsonl").read_text(encoding="utf-8")
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["m.jsonl"]  # no temp file left behind


def test_nemo_keys_and_defaults(tmp_path):
    path = _write(tmp_path / "m.jsonl", [{"audio_filepath": "x/19-198-0001.flac", "duration": 3, "text": "HI"}])
    (utt,) = read_manifest(path)
    assert utt.id == "19-198-0001"  # no id: the file stem
    assert utt.speaker == "" and utt.duration == 3.0 and isinstance(utt.duration, float)


def test_relative_paths_resolve_against_the_manifest_folder(tmp_path):
    absolute = str(tmp_path / "elsewhere" / "b.flac")
    (tmp_path / "corpus").mkdir()
    path = _write(tmp_path / "corpus" / "m.jsonl", [REC, {**REC, "id": "u2", "audio_filepath": absolute}])
    a, b = read_manifest(path)
    assert Path(a.audio_filepath) == tmp_path / "corpus" / "a.flac"
    assert b.audio_filepath == absolute


def test_blank_lines_are_skipped_and_line_numbers_stay_true(tmp_path):
    path = _write(tmp_path / "m.jsonl", [REC, "", "   ", "{not json"])
    with pytest.raises(ManifestError, match=rf"^{re.escape(str(path))}:4: not valid JSON"):
        read_manifest(path)


@pytest.mark.parametrize("line, match", [
    ("{not json", "not valid JSON"),
    ('["a.flac", 1.0, "HI"]', "expected a JSON object"),
    ({"duration": 1.0, "text": "HI"}, r"missing key\(s\) \['audio_filepath'\]"),
    ({"audio_filepath": "a.flac", "duration": 1.0}, r"missing key\(s\) \['text'\]"),
    ({**REC, "duration": "long"}, "duration 'long' is not a number"),
    ({**REC, "duration": None}, "is not a number"),
    ({**REC, "duration": [1]}, "is not a number"),
])
def test_malformed_line_names_path_and_line(tmp_path, line, match):
    path = _write(tmp_path / "m.jsonl", [{**REC, "id": "first"}, line])
    with pytest.raises(ManifestError, match=match) as err:
        read_manifest(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}:2: ") and "\n" not in msg
    assert isinstance(err.value, UserError)


def test_duplicate_id(tmp_path):
    path = _write(tmp_path / "m.jsonl", [REC, {**REC, "audio_filepath": "b.flac"}])
    with pytest.raises(ManifestError, match=rf"{re.escape(str(path))}:2: duplicate utterance id 'u1'"):
        read_manifest(path)
    # Two lines without ids whose files share a stem collide too.
    path = _write(tmp_path / "n.jsonl", [{**REC, "id": None}, {**REC, "id": None, "audio_filepath": "d/a.flac"}])
    with pytest.raises(ManifestError, match="duplicate utterance id 'a'"):
        read_manifest(path)


def test_empty_and_missing_manifest(tmp_path):
    empty = _write(tmp_path / "empty.jsonl", ["", "  "])
    with pytest.raises(ManifestError, match=f"manifest is empty: {re.escape(str(empty))}"):
        read_manifest(empty)
    assert read_manifest(empty, allow_empty=True) == []
    with pytest.raises(ManifestError, match="manifest not found"):
        read_manifest(tmp_path / "nope.jsonl")
    with pytest.raises(ManifestError, match="manifest not found"):
        read_manifest(tmp_path)  # a folder is not a manifest


@pytest.mark.parametrize("duration", ["NaN", "Infinity", "-1.0"])
def test_non_finite_or_negative_duration(tmp_path, duration):
    path = tmp_path / "m.jsonl"
    path.write_text('{"audio_filepath": "a.flac", "text": "HI", "duration": %s}\n' % duration)
    with pytest.raises(ManifestError, match=re.escape(f"{path}:1")):
        read_manifest(path)


def test_null_text_is_an_error(tmp_path):
    path = _write(tmp_path / "m.jsonl", [{**REC, "text": None}])
    with pytest.raises(ManifestError, match=re.escape(f"{path}:1")):
        read_manifest(path)


def test_rewriting_a_relative_manifest_elsewhere_keeps_the_audio(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "a.flac").write_bytes(b"")
    _write(tmp_path / "corpus" / "m.jsonl", [REC])
    utts = read_manifest("corpus/m.jsonl")
    write_manifest("subsets/m.jsonl", utts)
    (again,) = read_manifest("subsets/m.jsonl")
    assert Path(again.audio_filepath).resolve() == (tmp_path / "corpus" / "a.flac")
