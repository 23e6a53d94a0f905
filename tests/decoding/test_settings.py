"""Decoding settings that travel with a model (asr.decoding.settings): precedence, recording, export copies."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from asr.config import BeamConfig, ConfigError
from asr.decoding import settings


def _recorded(tmp_path: Path, **kw) -> settings.Recorded:
    lm = tmp_path / "lm.arpa"
    lm.write_text("\\data\\\n")
    base = dict(lm_path=str(lm), lexicon_path=None, lm_weight=1.5, word_score=-1.0, origin="decoding.json",
                tuned_on="dev (WER 20.00 %)")
    base.update(kw)
    return settings.Recorded(**base)


def test_command_line_wins_then_recorded_then_defaults(tmp_path):
    rec = _recorded(tmp_path)
    got, how = settings.resolve(BeamConfig(), rec)
    assert (got.lm_path, got.lm_weight, got.word_score) == (rec.lm_path, 1.5, -1.0)
    assert "lm_weight=1.5 (decoding.json)" in how and "tuned on dev" in how
    got, how = settings.resolve(BeamConfig(lm_weight=0.7), rec)
    assert (got.lm_weight, got.word_score) == (0.7, -1.0) and "lm_weight=0.7 (command line)" in how
    # the same LM named on the command line keeps its tuned weights; another LM gets the defaults
    assert settings.resolve(BeamConfig(lm_path=rec.lm_path), rec)[0].lm_weight == 1.5
    other, how = settings.resolve(BeamConfig(lm_path=str(tmp_path / "other.arpa")), rec)
    assert (other.lm_weight, other.word_score) == (settings.DEFAULT_LM_WEIGHT, settings.DEFAULT_WORD_SCORE)
    assert "(default)" in how
    assert settings.resolve(BeamConfig(), None) == (BeamConfig(lm_weight=0.5, word_score=0.0), "no language model")


def test_record_then_read_beside_the_checkpoint(tmp_path):
    ckpt = tmp_path / "checkpoints" / "best.pt"
    ckpt.parent.mkdir()
    lm = tmp_path / "lm.arpa"
    lm.write_text("x")
    path = settings.record(ckpt, BeamConfig(lm_path=str(lm), lm_weight=2.0, word_score=1.0), "dev")
    assert path == ckpt.parent / settings.FILE_NAME and json.loads(path.read_text())["checkpoint"] == "best.pt"
    rec = settings.for_checkpoint(ckpt)
    assert (rec.lm_path, rec.lm_weight, rec.word_score, rec.tuned_on) == (str(lm.resolve()), 2.0, 1.0, "dev")
    assert settings.for_checkpoint(tmp_path / "elsewhere" / "best.pt") is None
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="decoding.json: cannot read decoding settings"):
        settings.for_checkpoint(ckpt)


def test_export_copies_the_lm_and_points_to_it_relatively(tmp_path):
    rec = _recorded(tmp_path)
    out = tmp_path / "export"
    out.mkdir()
    entry = settings.for_export(rec, out)
    assert entry["lm_path"] == "lm.arpa" and (out / "lm.arpa").read_text() == "\\data\\\n"
    back = settings.Recorded.from_dict(entry, "model.onnx.json", out)
    assert back.lm_path == str(out / "lm.arpa") and back.lm_weight == 1.5
    assert settings.for_export(None, out) is None
    gone = _recorded(tmp_path, lm_path=str(tmp_path / "gone.arpa"))
    with pytest.raises(ConfigError, match="lm_path .*gone.arpa no longer exists"):
        settings.for_export(gone, out)


def test_beam_lm_needs_an_lm_from_somewhere():
    settings.require_lm(BeamConfig(), ["greedy", "beam"])
    with pytest.raises(ConfigError, match=r"^beam\.lm_path: .*none is recorded"):
        settings.require_lm(BeamConfig(), ["beam_lm"])
