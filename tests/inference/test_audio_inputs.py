"""What `audio=` may name (asr.inference.audio_inputs): files, folders, globs, manifests and stdin."""
from __future__ import annotations

import io
import json

import pytest

from asr.config import ConfigError
from asr.data.manifest import ManifestError
from asr.inference.audio_inputs import expand


@pytest.fixture
def tree(tmp_path):
    for rel in ("a/1.flac", "a/b/2.WAV", "a/b/notes.txt", "c.mp3", "d.ogg"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    return tmp_path


def test_folders_recursively_by_audio_suffix_then_globs_in_order(tree):
    got = expand([str(tree / "a"), str(tree / "*.mp3"), str(tree / "missing.wav")])
    assert got == [str(tree / "a/1.flac"), str(tree / "a/b/2.WAV"), str(tree / "c.mp3"), str(tree / "missing.wav")]
    assert expand([str(tree / "**" / "*.flac")]) == [str(tree / "a/1.flac")]


def test_manifest_paths_relative_to_it_and_stdin(tree):
    man = tree / "m.jsonl"
    man.write_text("\n".join(json.dumps({"id": k, "audio_filepath": p, "text": "", "duration": 1})
                             for k, p in enumerate(["c.mp3", str(tree / "d.ogg")])) + "\n\n")
    assert expand([str(man)]) == [str(tree / "c.mp3"), str(tree / "d.ogg")]
    stdin = io.StringIO(f"{tree / 'a'}\n\n{tree / 'c.mp3'}\n")
    assert expand(["-"], stdin=stdin) == [str(tree / "a/1.flac"), str(tree / "a/b/2.WAV"), str(tree / "c.mp3")]


def test_errors_name_the_entry(tree):
    (tree / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"audio\[1\]: the folder .*empty holds no audio"):
        expand([str(tree / "c.mp3"), str(tree / "empty")])
    with pytest.raises(ConfigError, match=r"audio\[0\]: the pattern .*\*\.aac matches no file"):
        expand([str(tree / "*.aac")])
    bad = tree / "bad.jsonl"
    bad.write_text('{"id": 1}\n')
    with pytest.raises(ManifestError, match=r"bad\.jsonl:1: no \"audio_filepath\""):
        expand([str(bad)])
