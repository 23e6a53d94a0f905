"""The server's engine side: one upload's bytes -> result, for a checkpoint and for an exported ONNX model, and
the posteriorgram picture."""
from __future__ import annotations

import io

import matplotlib.image as mpimg
import pytest
import torch
from serve_client import serve_config, utterances

from asr.audio import AudioLoadError, AudioTooLongError
from asr.config import ServeConfig
from asr.data.sentences import load_sentences
from asr.inference.loading import load_engine
from asr.serve.engine import Transcriber
from asr.serve.posteriorgram import posteriorgram_png, token_labels
from asr.text import CharTokenizer, train_pieces


def test_transcriber_result_and_errors(deploy_run):
    cfg = serve_config(deploy_run["run"], max_audio_seconds=10.0)
    transcriber = Transcriber(load_engine(cfg), cfg)
    assert list(transcriber.decoders) == ["greedy", "beam"]
    for utt, data in utterances(deploy_run):
        result = transcriber.transcribe(data, "x.flac", "beam")
        assert result["text"] == utt.text and result["decoder"] == "beam"
        assert set(result) == {"filename", "text", "words", "decoder", "duration", "frame_seconds",
                               "processing_seconds"}
    with pytest.raises(AudioLoadError, match="cannot decode junk.bin"):
        transcriber.transcribe(b"\x00" * 100, "junk.bin", "greedy")
    cfg.max_audio_seconds = 0.5
    with pytest.raises(AudioTooLongError, match=r"^x\.flac is \d\.\d s long; at most 0\.5 s"):
        transcriber.transcribe(utterances(deploy_run)[0][1], "x.flac", "greedy")


def test_beam_lm_without_an_lm_anywhere_is_refused_at_start(deploy_run):
    from asr.config import ConfigError
    for decoders, decoder in ((["greedy", "beam_lm"], "greedy"), (None, "beam_lm")):
        cfg = serve_config(deploy_run["run"], decoders=decoders, decoder=decoder)
        with pytest.raises(ConfigError, match=r"^(beam\.lm_path: .*none is recorded|decoder: beam_lm is not among)"):
            Transcriber(load_engine(cfg), cfg)


def test_an_exported_onnx_model_serves_the_same_transcripts(deploy_run, tmp_path):
    from asr.export.cli import main as export

    model = tmp_path / "model.onnx"
    export({"checkpoint": str(deploy_run["run"]), "format": "onnx", "out": str(model),
            "check_audio": [u.audio_filepath for u in deploy_run["utts"]]})
    cfg = ServeConfig(exported=str(model), decoders=["greedy"])
    engine = load_engine(cfg)
    assert "onnx" in engine.describe()
    transcriber = Transcriber(engine, cfg)
    for utt, data in utterances(deploy_run):
        assert transcriber.transcribe(data, "x.flac", "greedy")["text"] == utt.text


def test_posteriorgram_has_a_row_per_token_and_grows_with_time():
    tok = CharTokenizer()
    assert token_labels(tok)[:4] == ["blank", "space", "' (apostrophe)", "A"] and len(token_labels(tok)) == tok.size
    log_probs = torch.log_softmax(torch.randn(50, tok.size, generator=torch.Generator().manual_seed(0)) * 3, -1)
    short = mpimg.imread(io.BytesIO(posteriorgram_png(log_probs, tok, 0.04)), format="png")
    long = mpimg.imread(io.BytesIO(posteriorgram_png(log_probs.repeat(8, 1), tok, 0.04)), format="png")
    assert short.shape[0] == long.shape[0] and long.shape[1] > short.shape[1] > 300
    assert short[..., :3].std() > 0.1  # drawn, not blank


def test_a_posteriorgram_of_many_pieces_draws_the_likeliest_rows():
    """A 257-class subword model would be 257 mostly dark rows: the picture keeps the blank and the classes that
    peak highest (oracle: the ones given a spike), at the height of a MAX_POSTERIOR_ROWS-class one."""
    from asr.tb import MAX_POSTERIOR_ROWS, likely_classes

    post = torch.full((40, 257), 0.001)
    spikes = [7, 100, 256]
    for t, c in enumerate(spikes):
        post[t, c] = 0.9
    rows = likely_classes(post.numpy())
    assert len(rows) == MAX_POSTERIOR_ROWS and rows[0] == 0 and rows == sorted(rows) and set(spikes) <= set(rows)
    assert likely_classes(post[:, :29].numpy()) == list(range(29))  # characters: every row
    tok = train_pieces([s.text for s in load_sentences()[::20]], 128)
    log_probs = torch.log_softmax(torch.randn(50, tok.size, generator=torch.Generator().manual_seed(0)) * 3, -1)
    img = mpimg.imread(io.BytesIO(posteriorgram_png(log_probs, tok, 0.08)), format="png")
    chars = mpimg.imread(io.BytesIO(posteriorgram_png(log_probs[:, :MAX_POSTERIOR_ROWS], tok, 0.08)), format="png")
    assert img.shape == chars.shape
