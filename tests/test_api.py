"""The Python API (asr.api) and the decoding settings that travel with a model: `asr-eval tune_lm=true` records
the LM and its weights, and `asr-transcribe`, `asr-export`, `asr-serve` and `asr.load` use them."""
from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.functional as AF

import asr
from asr.audio import AudioLoadError
from asr.config import ServeConfig
from asr.data.manifest import write_manifest
from asr.decoding.settings import FILE_NAME
from asr.errors import UserError


@pytest.fixture(scope="module")
def tuned(deploy_run, tmp_path_factory) -> dict:
    """deploy_run copied (so other tests never see the record), an LM of its texts, `asr-eval tune_lm=true` run
    on it, and its three utterances' audio in a folder as <id>.flac."""
    from asr.decoding.ngram import build_arpa
    from asr.inference.evaluate import main as evaluate

    base = tmp_path_factory.mktemp("tuned")
    run = base / "run"
    shutil.copytree(deploy_run["run"], run)
    manifest = base / "dev.jsonl"
    write_manifest(manifest, deploy_run["utts"])
    lm = build_arpa(manifest, 2, base / "lm.arpa")
    summary = evaluate({"checkpoint": str(run), "corpus": None, "manifests": {"dev": str(manifest)},
                        "beam": {"lm_path": str(lm)}, "tune_lm": True, "lm_weight_grid": [0.25, 1.0],
                        "word_score_grid": [-1.0, 0.5], "device": "cpu", "progress": False, "worst_n": 0,
                        "tb": False, "out_dir": str(base / "eval")})
    audio = base / "audio"
    audio.mkdir()
    for u in deploy_run["utts"]:
        shutil.copyfile(u.audio_filepath, audio / f"{u.id}.flac")
    hyps = {json.loads(line)["id"]: json.loads(line)["hypothesis"]
            for line in (base / "eval" / "dev" / "beam_lm.jsonl").read_text().splitlines()}
    return {"base": base, "run": run, "lm": lm, "summary": summary, "audio": audio, "hyps": hyps,
            "utts": deploy_run["utts"]}


def test_tune_lm_records_the_lm_and_weights_beside_the_checkpoint(tuned):
    rec = json.loads((tuned["run"] / "checkpoints" / FILE_NAME).read_text())
    beam = tuned["summary"]["beam"]
    assert (rec["lm_path"], rec["lm_weight"], rec["word_score"]) == (str(tuned["lm"].resolve()), beam["lm_weight"],
                                                                      beam["word_score"])
    assert rec["checkpoint"] == "best.pt" and rec["tuned_on"].startswith("dev (WER ")
    assert tuned["summary"]["tune_lm"]["recorded"] == str(tuned["run"] / "checkpoints" / FILE_NAME)


def test_asr_eval_uses_the_recorded_lm_without_beam_lm_path(tuned):
    from asr.inference.evaluate import main as evaluate

    again = evaluate({"checkpoint": str(tuned["run"]), "corpus": None, "decoders": ["beam_lm"], "device": "cpu",
                      "manifests": {"dev": str(tuned["base"] / "dev.jsonl")}, "progress": False, "worst_n": 0,
                      "tb": False, "out_dir": str(tuned["base"] / "eval-again")})
    assert (again["beam"]["lm_weight"], again["beam"]["word_score"]) == (tuned["summary"]["beam"]["lm_weight"],
                                                                       tuned["summary"]["beam"]["word_score"])
    assert again["sets"]["dev"]["decoders"]["beam_lm"]["wer"] == tuned["summary"]["sets"]["dev"]["decoders"][
        "beam_lm"]["wer"]


def test_transcribe_a_folder_to_subtitles_with_the_recorded_lm(tuned, caplog):
    """The issue's check in small: a whole folder, decoder=beam_lm and no LM on the command line; the subtitles'
    words are the hypotheses asr-eval's beam_lm scored, and the log says where the weights came from."""
    from asr.inference.transcribe import main as transcribe

    caplog.set_level(logging.INFO, logger="asr")
    out = tuned["base"] / "test.srt"
    transcribe({"checkpoint": str(tuned["run"]), "audio": [str(tuned["audio"])], "decoder": "beam_lm",
                "device": "cpu", "output": str(out)})
    subs = {p.stem: p.read_text() for p in (tuned["base"] / "test").iterdir()}
    assert set(subs) == set(tuned["hyps"])
    for uid, doc in subs.items():
        text_lines = [ln for ln in doc.splitlines() if ln and not ln.isdigit() and "-->" not in ln]
        assert " ".join(text_lines) == tuned["hyps"][uid]
    beam = tuned["summary"]["beam"]
    assert f"lm_weight={beam['lm_weight']:g} ({tuned['run'] / 'checkpoints' / FILE_NAME})" in caplog.text


def test_load_and_transcribe_files_lists_and_waveforms(deploy_run):
    rec = asr.load(deploy_run["run"])
    utts = deploy_run["utts"]
    one = rec.transcribe(utts[0].audio_filepath)
    assert isinstance(one, asr.Transcript) and one.text == utts[0].text and one.decoder == "greedy"
    assert " ".join(w.word for w in one.words) == one.text and one.words[-1].end <= one.duration
    many = rec.transcribe([u.audio_filepath for u in utts])
    assert [t.text for t in many] == [u.text for u in utts]
    samples, sr = sf.read(utts[1].audio_filepath, dtype="float32")
    assert rec.transcribe(samples, sample_rate=sr).text == utts[1].text
    stereo = np.stack([samples, samples], axis=1)
    up = AF.resample(torch.from_numpy(samples), sr, 22050)
    assert [(t.audio, t.text) for t in rec.transcribe([stereo, samples], sample_rate=sr)] == [
        ("<array 0>", utts[1].text), ("<array 1>", utts[1].text)]  # (samples, channels) is down-mixed
    assert rec.transcribe(up, sample_rate=22050).text == utts[1].text  # resampled to the model's 16 kHz
    with pytest.raises(UserError, match=r"audio\[0\] is a waveform: pass sample_rate"):
        rec.transcribe(samples)
    with pytest.raises(AudioLoadError, match="nope.wav"):
        rec.transcribe("nope.wav")


def test_a_subword_model_transcribes_with_every_decoder_and_word_times(piece_run, tmp_path):
    """Pieces through the whole pipeline: greedy, beam, and beam + a word LM whose lexicon is spelled in pieces;
    words and their times come from the pieces' alignment."""
    from asr.decoding.ngram import build_arpa

    utts = piece_run["utts"]
    write_manifest(tmp_path / "texts.jsonl", utts)
    lm = build_arpa(tmp_path / "texts.jsonl", 2, tmp_path / "lm.arpa")
    for decoder in ("greedy", "beam", "beam_lm"):
        rec = asr.load(piece_run["run"], decoder=decoder, lm_path=str(lm) if decoder == "beam_lm" else None)
        out = rec.transcribe([u.audio_filepath for u in utts])
        assert [t.text for t in out] == [u.text for u in utts], decoder
        for t in out:
            assert [w.word for w in t.words] == t.text.split()
            assert all(0 <= a.start <= a.end <= b.start for a, b in zip(t.words, t.words[1:]))
            assert t.words[-1].end <= t.duration


def test_an_export_carries_the_recorded_lm_and_weights(tuned):
    from asr.export.cli import main as export

    model = tuned["base"] / "shipped" / "model.onnx"
    model.parent.mkdir()
    export({"checkpoint": str(tuned["run"]), "format": "onnx", "out": str(model),
            "check_audio": [u.audio_filepath for u in tuned["utts"]]})
    meta = json.loads((model.parent / "model.onnx.json").read_text())
    assert meta["decoding"]["lm_path"] == "lm.arpa" and (model.parent / "lm.arpa").is_file()
    shutil.copytree(model.parent, tuned["base"] / "moved")  # the folder travels: nothing points back
    rec = asr.load(tuned["base"] / "moved" / "model.onnx", decoder="beam_lm")
    assert rec.beam.lm_path == str(tuned["base"] / "moved" / "lm.arpa")
    assert (rec.beam.lm_weight, rec.beam.word_score) == (tuned["summary"]["beam"]["lm_weight"],
                                                         tuned["summary"]["beam"]["word_score"])
    texts = [t.text for t in rec.transcribe([u.audio_filepath for u in tuned["utts"]])]
    assert texts == [tuned["hyps"][u.id] for u in tuned["utts"]]


def test_serve_offers_beam_lm_when_an_lm_travels_with_the_model(tuned):
    from asr.inference.loading import load_engine
    from asr.serve.engine import Transcriber

    cfg = ServeConfig(checkpoint=str(tuned["run"]), device="cpu")
    transcriber = Transcriber(load_engine(cfg), cfg)
    assert list(transcriber.decoders) == ["greedy", "beam", "beam_lm"]
    u = tuned["utts"][0]
    with open(u.audio_filepath, "rb") as f:
        assert transcriber.transcribe(f.read(), "a.flac", "beam_lm")["text"] == tuned["hyps"][u.id]
    transcriber.close()
