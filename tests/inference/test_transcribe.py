"""asr-transcribe: any-rate/channel audio, chunked long files, word timings from the CTC alignment, CLI errors."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import tone
from test_evaluate import build_tiny_run

from asr.config import ConfigError, to_object
from asr.inference.loading import LoadedModel, load_model
from asr.inference.transcribe import TranscribeConfig, TranscribeError, _audio_as_list, _failure_summary, cli, main


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> dict[str, Path]:
    return build_tiny_run(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def loaded(tiny_run) -> LoadedModel:
    return load_model(tiny_run["run"], "cpu")


def tones(seconds: float, sample_rate: int = 16000) -> np.ndarray:
    """Concatenated 1.5 s tones of changing pitch: speech-like variety over a long file."""
    parts = [tone(1.5, sample_rate, freq=200 + 40 * (k % 7), seed=k) for k in range(math.ceil(seconds / 1.5))]
    return np.concatenate(parts)[: int(seconds * sample_rate)]


def check_words(rec: dict) -> None:
    assert " ".join(w["word"] for w in rec["words"]) == rec["text"]
    prev_end = 0.0
    for w in rec["words"]:
        assert 0.0 <= prev_end <= w["start"] <= w["end"] <= rec["duration"]
        prev_end = w["end"]


def test_stereo_44k_wav_and_mono_flac(tiny_run, tmp_path, capsys):
    wave = tones(3.0, 44100)
    stereo = tmp_path / "stereo.wav"
    sf.write(stereo, np.stack([wave, 0.5 * wave], axis=1), 44100)
    mono = tmp_path / "mono.flac"
    sf.write(mono, tones(2.0), 16000)
    recs = main({"checkpoint": str(tiny_run["run"]), "audio": [str(stereo), str(mono)], "device": "cpu"})
    lines = capsys.readouterr().out.strip().splitlines()  # output=null: JSON lines on stdout, nothing else
    assert [json.loads(line) for line in lines] == recs
    assert [r["audio"] for r in recs] == [str(stereo), str(mono)]
    assert recs[0]["duration"] == pytest.approx(3.0, abs=1e-3) and recs[1]["duration"] == pytest.approx(2.0)
    for rec in recs:
        assert set(rec) == {"audio", "text", "decoder", "duration", "words"} and rec["decoder"] == "greedy"
        check_words(rec)


def test_beam_lm_writes_jsonl(tiny_run, tmp_path):
    from asr.decoding.ngram import build_arpa
    lm = build_arpa(tiny_run["train"], 2, tmp_path / "lm.arpa")
    path = tmp_path / "a.flac"
    sf.write(path, tones(4.0), 16000)
    out = tmp_path / "out.jsonl"
    main({"checkpoint": str(tiny_run["run"]), "audio": [str(path)], "decoder": "beam_lm", "device": "cpu",
          "beam": {"lm_path": str(lm)}, "output": str(out)})
    rec = json.loads(out.read_text())
    assert rec["decoder"] == "beam_lm"
    check_words(rec)


def test_long_file_is_processed_in_bounded_chunks(tiny_run, tmp_path, monkeypatch):
    seconds = 95.0
    path = tmp_path / "long.flac"
    sf.write(path, tones(seconds), 16000)
    seen: list[int] = []
    original = LoadedModel.log_probs

    def spy(self, waves, lengths):
        seen.append(waves.shape[-1])
        return original(self, waves, lengths)

    monkeypatch.setattr(LoadedModel, "log_probs", spy)
    rec = main({"checkpoint": str(tiny_run["run"]), "audio": [str(path)], "device": "cpu",
                "output": str(tmp_path / "o.jsonl"), "chunk_seconds": 30, "context_seconds": 2})[0]
    assert len(seen) == 4 and max(seen) <= (30 + 2 * 2) * 16000  # memory bounded by one extended window
    assert rec["duration"] == pytest.approx(seconds)
    check_words(rec)


def test_beam_lm_without_an_lm_anywhere_is_refused_naming_both_ways(tiny_run, tmp_path):
    """No beam.lm_path and no LM recorded with the model: refused once the model is read, before any output."""
    path = tmp_path / "a.flac"
    sf.write(path, tones(1.0), 16000)
    out = tmp_path / "o.jsonl"
    with pytest.raises(ConfigError, match=r"^beam\.lm_path: .*none is recorded.*tune_lm=true"):
        main({"checkpoint": str(tiny_run["run"]), "audio": [str(path)], "decoder": "beam_lm", "device": "cpu",
              "output": str(out)})
    assert not out.exists()


def test_config_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"^audio"):
        to_object({"checkpoint": "x.pt"}, TranscribeConfig)
    with pytest.raises(ConfigError, match=r"^chunk_seconds"):
        to_object({"checkpoint": "x.pt", "audio": ["a.wav"], "chunk_seconds": 0}, TranscribeConfig)


def test_cli_bad_file_is_an_error_line_and_the_rest_are_transcribed(tiny_run, tmp_path, monkeypatch, capsys,
                                                                      keep_logging):
    monkeypatch.chdir(tmp_path)
    sf.write("good.wav", tones(1.5), 16000)
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(64))  # a header, then junk
    sf.write("good2.wav", tones(2.0), 16000)
    monkeypatch.setattr(sys, "argv", ["asr-transcribe", f"checkpoint={tiny_run['run']}",
                                      "audio=[good.wav,corrupt.wav,good2.wav]", "device=cpu"])
    with pytest.raises(SystemExit) as exc:
        cli()
    assert exc.value.code == 2
    captured = capsys.readouterr()
    recs = [json.loads(line) for line in captured.out.splitlines()]
    assert [r["audio"] for r in recs] == ["good.wav", "corrupt.wav", "good2.wav"]  # the third one too
    assert set(recs[1]) == {"audio", "error"} and "corrupt.wav" in recs[1]["error"]
    for rec in (recs[0], recs[2]):
        assert "error" not in rec
        check_words(rec)
    err = captured.err.strip().splitlines()  # INFO/WARNING log lines, then the summary; never a traceback
    assert err[-1] == "asr-transcribe: error: 1 of 3 files failed: corrupt.wav"
    assert "Traceback" not in captured.err


def test_failed_files_are_in_the_output_file_and_the_error(tiny_run, tmp_path):
    good, corrupt, empty = tmp_path / "good.flac", tmp_path / "corrupt.flac", tmp_path / "empty.wav"
    sf.write(good, tones(1.5), 16000)
    corrupt.write_bytes(b"fLaC" + bytes(100))
    sf.write(empty, np.zeros(0, dtype=np.float32), 16000)  # a valid header and no samples
    out = tmp_path / "out.jsonl"
    with pytest.raises(TranscribeError, match=r"^2 of 3 files failed: .*corrupt\.flac, .*empty\.wav$") as exc:
        main({"checkpoint": str(tiny_run["run"]), "audio": [str(corrupt), str(good), str(empty)], "device": "cpu",
              "output": str(out)})
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert lines == exc.value.results
    assert [set(r) for r in lines] == [{"audio", "error"}, {"audio", "text", "decoder", "duration", "words"},
                                       {"audio", "error"}]
    assert "empty" in lines[2]["error"] and str(empty) in lines[2]["error"]


def test_a_missing_file_among_others_is_an_error_line_like_a_corrupt_one(tiny_run, tmp_path):
    """Issue 25: a missing file in the middle of a list refused the whole batch, a corrupt one did not."""
    good, gone = tmp_path / "good.wav", tmp_path / "gone.wav"
    sf.write(good, tones(1.5), 16000)
    with pytest.raises(TranscribeError, match=r"^1 of 3 files failed: .*gone\.wav$") as exc:
        main({"checkpoint": str(tiny_run["run"]), "audio": [str(good), str(gone), str(good)], "device": "cpu"})
    recs = exc.value.results
    assert [r["audio"] for r in recs] == [str(good), str(gone), str(good)]
    assert set(recs[1]) == {"audio", "error"} and "audio file not found" in recs[1]["error"]
    assert "error" not in recs[0] and recs[0] == recs[2]
    with pytest.raises(ConfigError, match=r"audio: file not found: .*gone\.wav \(and none of the other 1"):
        main({"checkpoint": str(tiny_run["run"]), "audio": [str(gone), str(tmp_path / "x.wav")], "device": "cpu"})


def test_failure_summary_stays_one_line():
    assert _failure_summary(["a.wav"], 3) == "1 of 3 files failed: a.wav"
    names = [f"f{k}.wav" for k in range(8)]
    assert _failure_summary(names, 10) == "8 of 10 files failed: f0.wav, f1.wav, f2.wav, f3.wav, f4.wav and 3 more"


def test_single_files_and_bare_words_become_one_list():
    """`audio=x` needs no list syntax, and bare words (a shell glob's expansion, `-`) are audio too, quoted so any
    path parses (a quote in a name escaped); Hydra options and list syntax pass through."""
    assert _audio_as_list(["audio=a b.wav", "decoder=beam"]) == ["decoder=beam", "audio=['a b.wav']"]
    assert _audio_as_list(["checkpoint=r", "x/1.wav", "x/it's.wav", "-"]) == [
        "checkpoint=r", "audio=['x/1.wav','x/it\\'s.wav','-']"]
    assert _audio_as_list(["audio=[x.wav]", "--help", "+beam.lm_path=l"]) == ["audio=[x.wav]", "--help", "+beam.lm_path=l"]


def test_cli_missing_audio_exits_2_with_one_line(tiny_run, tmp_path, monkeypatch, capsys, keep_logging):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["asr-transcribe", f"checkpoint={tiny_run['run']}",
                                      f"audio={tmp_path / 'nope.wav'}", "device=cpu"])
    with pytest.raises(SystemExit) as exc:
        cli()
    assert exc.value.code == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("asr-transcribe: error: audio: file not found") and not captured.out


def test_cli_single_file_to_stdout(tiny_run, tmp_path, monkeypatch, capsys, keep_logging):
    path = tmp_path / "one.flac"
    sf.write(path, tones(1.5), 16000)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["asr-transcribe", f"checkpoint={tiny_run['run']}", f"audio={path}",
                                      "device=cpu", "decoder=beam"])
    cli()
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    rec = json.loads(lines[0])
    assert rec["audio"] == str(path) and rec["decoder"] == "beam" and rec["duration"] == pytest.approx(1.5)
