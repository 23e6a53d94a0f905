"""Streaming export: a unidirectional model fed audio in pieces of any size, with its recurrent state and
lookahead buffer carried between chunks, gives the whole-utterance model's log-probs frame for frame and the
same transcript, in PyTorch and from the exported ONNX / TorchScript step."""
from __future__ import annotations

import pytest
import torch

from asr.audio import load_audio
from asr.decoding.greedy import greedy_decode
from asr.export.streaming import (
    StreamGeometry,
    StreamingSession,
    StreamingStep,
    export_streaming,
    load_streaming,
    stream_geometry,
    stream_transcript_log_probs,
)
from asr.inference.exported import ExportError
from asr.inference.loading import load_model


@pytest.fixture(scope="module")
def loaded(streaming_run):
    return load_model(streaming_run["run"], "cpu")


@pytest.fixture(scope="module")
def waves(streaming_run, loaded):
    return [load_audio(u.audio_filepath, loaded.sample_rate) for u in streaming_run["utts"]]


def whole(loaded, wave):
    lp, n = loaded.log_probs(wave[None], torch.tensor([wave.numel()]))
    return lp[0, : int(n[0])]


@pytest.mark.parametrize("chunk,piece", [(1, 160), (4, 1000), (16, 7777), (50, 100_000)])
def test_chunked_with_carried_state_equals_the_whole_utterance(loaded, waves, chunk, piece):
    step = StreamingStep(loaded, chunk).eval()
    geometry = stream_geometry(step, loaded)
    for w in waves:
        ref = whole(loaded, w)
        with torch.no_grad():
            got = stream_transcript_log_probs(step, geometry, w, piece)
        assert got.shape == ref.shape and geometry.output_frames(w.numel()) == ref.shape[0]
        assert (got - ref).abs().max() < 1e-4
        n = torch.tensor([ref.shape[0]])
        text = greedy_decode(got[None], n, loaded.tokenizer)[0]
        assert text == greedy_decode(ref[None], n, loaded.tokenizer)[0] and text  # same, and not empty


def test_frames_come_out_as_soon_as_their_context_has_arrived(loaded, waves):
    step = StreamingStep(loaded, 4).eval()
    geometry = stream_geometry(step, loaded)
    session = StreamingSession(step, geometry)
    w = waves[0]
    with torch.no_grad():
        early = session.feed(w[: w.numel() // 2])
        rest = session.feed(w[w.numel() // 2:])
        last = session.finish()
    total = early.shape[0] + rest.shape[0] + last.shape[0]
    assert total == whole(loaded, w).shape[0]
    # Half the audio in, all frames whose chunk, conv context and lookahead are covered are out: at most one chunk
    # plus the lookahead plus the conv context behind the audio received.
    behind = (w.numel() // 2) / geometry.samples_per_frame - early.shape[0]
    assert 0 <= behind <= geometry.chunk_frames + geometry.lookahead + 2


@pytest.mark.parametrize("fmt,suffix", [("onnx", ".stream.onnx"), ("torchscript", ".stream.pt")])
def test_exported_streaming_step_matches(loaded, waves, tmp_path, fmt, suffix):
    out = tmp_path / f"model{suffix}"
    info = export_streaming(loaded, fmt, out, waves, chunk=8, tolerance=1e-3)
    assert info["parity"]["greedy_identical"] and info["parity"]["max_abs_diff"] < 1e-3
    assert info["latency_seconds"] > info["chunk_seconds"] == pytest.approx(8 * 0.04)
    step_fn, geometry = load_streaming(out)
    assert geometry == stream_geometry(StreamingStep(loaded, 8), loaded)  # the sidecar reads back exactly
    assert StreamGeometry.from_dict(geometry.to_dict()) == geometry
    for w in waves:
        ref = whole(loaded, w)
        got = stream_transcript_log_probs(step_fn, geometry, w, 3001)
        assert got.shape == ref.shape and (got - ref).abs().max() < 1e-3


def test_models_that_cannot_stream_are_refused(deploy_run, streaming_run):
    bidirectional = load_model(deploy_run["run"], "cpu")
    with pytest.raises(ExportError, match="unidirectional"):
        StreamingStep(bidirectional, 4)
    per_utterance = load_model(streaming_run["run"], "cpu")
    per_utterance.config.features.normalize = "utterance"
    with pytest.raises(ExportError, match="features.normalize=none"):
        StreamingStep(per_utterance, 4)
    vgg = load_model(streaming_run["run"], "cpu")
    vgg.config.model.frontend = "vgg"
    with pytest.raises(ExportError, match="strided conv front-end .* model.frontend=vgg"):
        StreamingStep(vgg, 4)


FULL_RATE_FIRST_CONV = ["model.conv_channels=[16,32,32]", "model.conv_time_strides=[1,2,2]",
                        "model.conv_freq_strides=[2,1,2]"]


@pytest.mark.parametrize("overrides", [[], ["model.self_condition=true"], FULL_RATE_FIRST_CONV,
                                       ["model.conv_time_strides=[3,1]"]])
def test_the_streaming_preset_itself_streams(tmp_path, overrides):
    """model=streaming as shipped (4 x LSTM-384, lookahead 5, unnormalised features; seeded random weights: the
    arithmetic of its windows, state and lookahead does not depend on training) through the ONNX streaming step;
    with self-conditioned CTC, whose conditioning the step must apply after the same layer; and with a conv
    front-end whose first layer keeps the full frame rate and the last two their own mel strides; and with 30 ms
    frames (a stride of 3, whose windows do not start on even frames)."""
    from conftest import compose_train

    from asr.config import TrainConfig, to_object
    from asr.inference.loading import LoadedModel
    from asr.model.acoustic import AcousticModel
    from asr.model.features import LogMel
    from asr.text import CharTokenizer

    cfg = to_object(compose_train(["model=streaming", *overrides]), TrainConfig)
    torch.manual_seed(0)
    model = AcousticModel(cfg.model, cfg.features.n_mels, CharTokenizer().size).eval()
    assert (model.inter_cond is not None) == (overrides == ["model.self_condition=true"])
    loaded = LoadedModel(model=model, featurizer=LogMel(cfg.features).eval(), tokenizer=CharTokenizer(), config=cfg,
                         device=torch.device("cpu"), path=tmp_path / "random.pt", step=0, run_dir=None)
    g = torch.Generator().manual_seed(1)
    waves = [0.1 * torch.randn(n, generator=g) for n in (9_000, 23_456)]
    info = export_streaming(loaded, "onnx", tmp_path / "model.stream.onnx", waves, chunk=16, tolerance=1e-3)
    assert info["lookahead"] == 5 and info["layers"] == 4 and info["hidden"] == 384
    assert info["parity"]["max_abs_diff"] < 1e-3 and info["parity"]["greedy_identical"]
