"""scripts/score_output.py: asr-transcribe's output in every format scores like asr.metrics.score (jiwer-backed)."""
from __future__ import annotations

import jiwer
import pytest
from score_output import main

from asr.data.manifest import Utterance, write_manifest
from asr.inference.transcript_formats import Writer


def _rec(uid: str, text: str) -> dict:
    words = [{"word": w, "start": 0.5 * k, "end": 0.5 * k + 0.4} for k, w in enumerate(text.split())]
    return {"audio": f"x/{uid}.flac", "text": text, "decoder": "beam_lm", "duration": 9.0, "words": words}


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "ctm", "srt", "vtt"])
def test_every_format_scores_the_same(tmp_path, fmt, capsys):
    refs = {"1-1-0001": "THE CAT SAT ON THE MAT", "1-1-0002": "A DOG", "1-1-0003": "NOTHING HEARD"}
    hyps = {"1-1-0001": "THE CAT SAT ON MAT", "1-1-0002": "A FROG DOG"}  # the third has no transcript
    manifest = tmp_path / "m.jsonl"
    write_manifest(manifest, [Utterance(id=k, audio_filepath=f"x/{k}.flac", duration=9.0, text=v)
                              for k, v in refs.items()])
    out = tmp_path / f"out.{fmt}"
    w = Writer(fmt, str(out), many=True)
    for uid, text in hyps.items():
        w.write(_rec(uid, text))
    w.write({"audio": "x/1-1-0003.flac", "error": "cannot decode"})
    w.close()
    got = main(["--manifest", str(manifest), "--output", str(out)])
    truth = jiwer.wer(list(refs.values()), [hyps.get(k, "") for k in refs])
    assert got["wer"] == pytest.approx(truth) and got["missing"] == 1
    assert "1 without a transcript" in capsys.readouterr().out
