"""asr-export: ONNX (onnxruntime) and TorchScript files match the PyTorch model on real utterances of several
lengths, alone and padded in one batch; greedy transcripts identical; a file is only published when it passes,
and its sidecar holds everything a runtime needs."""
from __future__ import annotations

import json

import pytest
import torch

from asr.audio import load_audio
from asr.decoding.greedy import greedy_decode
from asr.export.exporter import export
from asr.inference.exported import ExportError, load_exported, sidecar_path
from asr.inference.loading import load_model
from asr.lengths import pad_waves

TOLERANCE = 1e-3  # max |log-prob| difference on valid frames; measured ~1e-4 on this model (fp32 rounding)


@pytest.fixture(scope="module")
def loaded(deploy_run):
    return load_model(deploy_run["run"], "cpu")


@pytest.fixture(scope="module")
def waves(deploy_run, loaded):
    return [load_audio(u.audio_filepath, loaded.sample_rate) for u in deploy_run["utts"]]


@pytest.fixture(scope="module", params=["onnx", "torchscript"])
def exported(request, loaded, waves, tmp_path_factory):
    out = tmp_path_factory.mktemp(request.param) / ("model.onnx" if request.param == "onnx" else "model.pt")
    meta = export(loaded, request.param, out, waves, TOLERANCE)
    return out, meta


def test_parity_alone_and_padded(exported, loaded, waves, deploy_run):
    out, meta = exported
    runtime = load_exported(out, threads=1)
    assert len({w.numel() for w in waves}) == len(waves)  # several lengths
    batch, lengths = pad_waves(waves)
    ref_lp, ref_n = loaded.log_probs(batch, lengths)
    lp, n = runtime.log_probs(batch, lengths)
    assert torch.equal(n, ref_n)
    for k, w in enumerate(waves):
        t = int(n[k])
        assert (lp[k, :t] - ref_lp[k, :t]).abs().max() < TOLERANCE
        alone, n1 = runtime.log_probs(w[None], torch.tensor([w.numel()]))
        assert int(n1[0]) == t and (alone[0, :t] - ref_lp[k, :t]).abs().max() < TOLERANCE
        assert runtime.output_frames(w.numel()) == t
    texts = greedy_decode(lp, n, runtime.tokenizer)
    assert texts == greedy_decode(ref_lp, ref_n, loaded.tokenizer) == [u.text for u in deploy_run["utts"]]
    p = meta["parity"]
    assert p["utterances"] == 3 and p["greedy_identical"] and 0 <= p["max_abs_diff"] < TOLERANCE


def test_sidecar_describes_the_model_without_the_project(exported, loaded):
    out, _ = exported
    meta = json.loads(sidecar_path(out).read_text())
    assert meta["vocab"] == loaded.tokenizer.vocab and meta["blank"] == 0
    assert meta["sample_rate"] == 16000 and meta["samples_per_frame"] == 640
    assert meta["features"]["n_mels"] == loaded.config.features.n_mels and meta["features"]["normalize"] == "utterance"
    assert meta["model_file"] == out.name and meta["format"] in ("onnx", "torchscript")
    assert meta["source"]["checkpoint"].endswith("best.pt") and meta["versions"]["torch"]


@pytest.mark.parametrize("exported", ["torchscript"], indirect=True)
def test_torchscript_runs_without_the_graph_executors_optimisation(exported, waves):
    """The runtime calls the TorchScript module with the optimising executor off (scripts/bench_torchscript.py: its
    re-optimisation on first calls and new shapes cost 1-3 s a call on 2 cores busy with training, 0.06-0.11 s idle
    against 0.024 s). The executed graph shows it:
    the optimising executor inlines the submodules' methods, the plain interpreter runs them as prim::CallMethod."""
    out, _ = exported
    runtime = load_exported(out, threads=1)
    for w in waves[:2] * 2:  # the optimising executor profiles on the first call and optimises on the second
        runtime.log_probs(w[None], torch.tensor([w.numel()]))
    assert "prim::CallMethod" in str(torch.jit.last_executed_optimized_graph())


@pytest.mark.parametrize("exported", ["onnx"], indirect=True)
def test_onnx_graph_has_dynamic_batch_and_time(exported):
    out, _ = exported
    import onnx
    graph = onnx.load(str(out)).graph
    dims = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.input}
    assert dims == {"waves": ["batch", "samples"], "lengths": ["batch"]}
    assert [o.name for o in graph.output] == ["log_probs", "out_lengths"]


def test_a_failed_parity_check_publishes_nothing(loaded, waves, tmp_path, monkeypatch):
    out = tmp_path / "model.onnx"
    with pytest.raises(ExportError, match="does not match the PyTorch model"):
        export(loaded, "onnx", out, waves, tolerance=1e-12)
    assert list(tmp_path.iterdir()) == []  # neither the model nor its sidecar nor a temp file


def test_unknown_format_and_missing_files_are_clear_errors(loaded, waves, tmp_path):
    with pytest.raises(ExportError, match="format: 'tflite'"):
        export(loaded, "tflite", tmp_path / "m.tflite", waves)
    with pytest.raises(ExportError, match="not found"):
        load_exported(tmp_path / "nope.onnx")
    (tmp_path / "lonely.onnx").write_bytes(b"x")
    with pytest.raises(ExportError, match="sidecar lonely.onnx.json is missing"):
        load_exported(tmp_path / "lonely.onnx")


def test_a_corrupt_model_file_is_a_clear_error(exported, tmp_path):
    out, _ = exported
    bad = tmp_path / out.name
    bad.write_bytes(b"not a model")
    sidecar_path(bad).write_text(sidecar_path(out).read_text())
    with pytest.raises(ExportError, match="cannot load it"):
        load_exported(bad)



def _copy_with_sidecar(exported, tmp_path, edit) -> object:
    """The exported file beside a copy of its sidecar changed by `edit(meta)`; returns the copy's model path."""
    import shutil
    out, _ = exported
    tmp_path.mkdir(parents=True, exist_ok=True)
    copy = tmp_path / out.name
    shutil.copy(out, copy)
    meta = json.loads(sidecar_path(out).read_text())
    edit(meta)
    sidecar_path(copy).write_text(json.dumps(meta))
    return copy


def _shorter(meta):
    meta["vocab"] = meta["vocab"][:-1]


def _longer(meta):
    meta["vocab"] = meta["vocab"] + ["#"]


def _permuted(meta):
    meta["vocab"][1], meta["vocab"][2] = meta["vocab"][2], meta["vocab"][1]


def _rate(meta):
    meta["sample_rate"] = 8000


def _rate_and_features(meta):
    meta["sample_rate"] = meta["features"]["sample_rate"] = 22050


@pytest.mark.parametrize("edit,message", [
    (_shorter, "does not match model"), (_longer, "does not match model"), (_permuted, "does not match model"),
    (_rate, "sample_rate 8000 contradicts features.sample_rate 16000"),
    (_rate_and_features, "does not match model")])
def test_a_sidecar_that_does_not_describe_its_model_is_refused_in_one_line(exported, tmp_path, edit, message):
    """Issue 25: a shorter vocabulary crashed transcription deep in a decoder, a longer or permuted one and another
    sample rate transcribed garbage with exit 0. The export records a digest of the sidecar in the model file."""
    with pytest.raises(ExportError, match=message) as exc:
        load_exported(_copy_with_sidecar(exported, tmp_path, edit))
    assert "re-export" in str(exc.value) and "\n" not in str(exc.value)


def test_files_exported_before_the_digest_still_have_their_vocabulary_checked(exported, tmp_path, monkeypatch):
    import asr.inference.exported as rt
    monkeypatch.setattr(rt, "CONTRACT_KEY", "a key no file has")  # what a file written before digests looks like
    load_exported(_copy_with_sidecar(exported, tmp_path / "same", lambda meta: None))  # its own sidecar: fine
    with pytest.raises(ExportError, match=r"its vocabulary has \d+ symbols but model\.\w+ outputs \d+ classes"):
        load_exported(_copy_with_sidecar(exported, tmp_path / "short", _shorter))


@pytest.fixture(scope="module")
def upsampled_run(tiny_corpus, tmp_path_factory):
    """deploy_run's twin with model.output_upsample=2: {"run": run dir, "utts": the memorised utterances}."""
    from conftest import train_memorizer

    run = tmp_path_factory.mktemp("upsampled") / "run"
    return {"run": run, "utts": train_memorizer(tiny_corpus, run, output_upsample=2)}


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_an_output_upsampled_model_exports_with_its_frame_rate(fmt, upsampled_run, tmp_path):
    """model.output_upsample=2: the exported graph gives 2 CTC frames per encoder frame, the sidecar's frame stride
    is the CTC frame's (hop x 4 / 2 = 320 samples), and the runtime's frame arithmetic matches the graph's output
    on utterances alone and padded; the transcripts are the memorised ones."""
    utts = upsampled_run["utts"]
    loaded = load_model(upsampled_run["run"], "cpu")
    waves = [load_audio(u.audio_filepath, loaded.sample_rate) for u in utts]
    out = tmp_path / ("model.onnx" if fmt == "onnx" else "model.pt")
    meta = export(loaded, fmt, out, waves, TOLERANCE)
    assert meta["samples_per_frame"] == 320 and meta["model"]["output_upsample"] == 2
    runtime = load_exported(out, threads=1)
    batch, lengths = pad_waves(waves)
    lp, n = runtime.log_probs(batch, lengths)
    ref_lp, ref_n = loaded.log_probs(batch, lengths)
    assert torch.equal(n, ref_n)
    for k, w in enumerate(waves):
        assert runtime.output_frames(w.numel()) == int(n[k]) == 2 * (int(n[k]) // 2)
    assert greedy_decode(lp, n, runtime.tokenizer) == [u.text for u in utts]


def test_a_subword_model_exports_its_pieces(piece_run, tmp_path):
    """The sidecar carries the SentencePiece model, the runtime reads pieces back, and a sidecar with other pieces
    is refused."""
    loaded = load_model(piece_run["run"], "cpu")
    waves = [load_audio(u.audio_filepath, loaded.sample_rate) for u in piece_run["utts"]]
    out = tmp_path / "model.onnx"
    meta = export(loaded, "onnx", out, waves, TOLERANCE)
    assert meta["tokenizer"]["kind"] == "sentencepiece" and meta["parity"]["greedy_identical"]
    assert meta["vocab"] == loaded.tokenizer.vocab and "vocab" not in meta["tokenizer"]  # the symbols stored once
    runtime = load_exported(out, threads=1)
    assert runtime.tokenizer == loaded.tokenizer
    lp, n = runtime.log_probs(*pad_waves(waves))
    assert greedy_decode(lp, n, runtime.tokenizer) == [u.text for u in piece_run["utts"]]
    other = json.loads(sidecar_path(out).read_text())
    other["vocab"] = other["vocab"][:1] + other["vocab"][1:][::-1]
    sidecar_path(out).write_text(json.dumps(other))
    with pytest.raises(ExportError, match="not a usable sidecar .*does not match"):
        load_exported(out, threads=1)
