"""asr-export's command and what runs its output: `asr-transcribe backend=onnx|torchscript` (greedy and
beam + LM) gives the PyTorch backend's transcripts and word times; errors name the key or file."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from asr.config import ConfigError, EvalConfig, TranscribeConfig
from asr.decoding.ngram import build_arpa
from asr.export import cli as export_cli
from asr.inference.exported import ExportError
from asr.inference.transcribe import main as transcribe


@pytest.fixture(scope="module")
def exports(deploy_run):
    onnx = export_cli.main({"checkpoint": str(deploy_run["run"])})  # defaults: ONNX in <run>/export/
    ts = export_cli.main({"checkpoint": str(deploy_run["run"]), "format": "torchscript"})
    return {"onnx": onnx, "torchscript": ts}


def test_defaults_write_into_the_run_and_check_on_its_dev_set(exports, deploy_run, capsys):
    run = deploy_run["run"]
    assert (run / "export" / "model.onnx").is_file() and (run / "export" / "model.onnx.json").is_file()
    assert (run / "export" / "model.pt").is_file() and (run / "export" / "model.pt.json").is_file()
    parity = exports["onnx"]["parity"]
    # the run's dev set is its three training utterances: they are the parity check's audio
    assert sorted(parity["seconds"]) == sorted(round(u.duration, 3) for u in deploy_run["utts"])
    assert exports["onnx"]["streaming"] is None  # bidirectional: no streaming step


@pytest.mark.parametrize("backend", ["onnx", "torchscript"])
@pytest.mark.parametrize("decoder", ["greedy", "beam_lm"])
def test_exported_backend_transcribes_like_pytorch(exports, deploy_run, tmp_path, backend, decoder):
    audio = [u.audio_filepath for u in deploy_run["utts"]]
    beam = {}
    if decoder == "beam_lm":
        text = tmp_path / "text.txt"
        text.write_text("\n".join(u.text for u in deploy_run["utts"]) + "\n")
        beam = {"lm_path": str(build_arpa(text, 2, tmp_path / "lm.arpa"))}
    common = {"checkpoint": str(deploy_run["run"]), "audio": audio, "decoder": decoder, "beam": beam}
    ref = transcribe({**common, "device": "cpu", "output": str(tmp_path / "ref.jsonl")})
    got = transcribe({**common, "backend": backend, "output": str(tmp_path / "got.jsonl")})
    assert [r["text"] for r in got] == [r["text"] for r in ref] == [u.text for u in deploy_run["utts"]]
    for r, g in zip(ref, got):
        assert [w["word"] for w in g["words"]] == [w["word"] for w in r["words"]]
        for a, b in zip(r["words"], g["words"]):
            assert abs(a["start"] - b["start"]) <= 0.04 and abs(a["end"] - b["end"]) <= 0.04  # one frame
    assert json.loads((tmp_path / "got.jsonl").read_text().splitlines()[0])["text"] == got[0]["text"]


def test_exported_path_alone_is_enough(exports, deploy_run, tmp_path):
    model = deploy_run["run"] / "export" / "model.pt"
    recs = transcribe({"exported": str(model), "audio": [deploy_run["utts"][0].audio_filepath],
                       "output": str(tmp_path / "o.jsonl")})
    assert recs[0]["text"] == deploy_run["utts"][0].text


def test_errors_name_the_key_or_the_command(deploy_run, tmp_path):
    audio = [deploy_run["utts"][0].audio_filepath]
    lone = tmp_path / "lone.pt"  # a checkpoint with no export beside it
    shutil.copy(deploy_run["run"] / "checkpoints" / "best.pt", lone)
    with pytest.raises(ExportError, match="export/model.onnx not found; export the checkpoint first "
                                          r"\(asr-export checkpoint=.*lone.pt format=onnx\)"):
        transcribe({"checkpoint": str(lone), "audio": audio, "backend": "onnx"})
    with pytest.raises(ExportError, match="exported model not found: .*none.onnx"):
        transcribe({"exported": str(tmp_path / "none.onnx"), "audio": audio})
    with pytest.raises(ConfigError, match="^exported: .* backend=pytorch"):
        TranscribeConfig(checkpoint="x", exported="m.onnx", backend="pytorch", audio=audio)
    with pytest.raises(ConfigError, match="^backend: .*'tflite'"):
        TranscribeConfig(checkpoint="x", backend="tflite", audio=audio)
    with pytest.raises(ConfigError, match="^backend: asr-eval scores checkpoints"):
        EvalConfig(checkpoint="x", backend="onnx")
    with pytest.raises(ConfigError, match="^format: .*'tflite'"):
        export_cli.main({"checkpoint": str(deploy_run["run"]), "format": "tflite"})
    with pytest.raises(ConfigError, match="^out: .* should end in .onnx"):
        export_cli.main({"checkpoint": str(deploy_run["run"]), "out": str(tmp_path / "m.pt")})
    with pytest.raises(ConfigError, match=r"^check_audio\[0\]: file not found"):
        export_cli.main({"checkpoint": str(deploy_run["run"]), "check_audio": [str(tmp_path / "no.wav")]})


def test_streaming_model_gets_its_streaming_step(streaming_run, capsys):
    meta = export_cli.main({"checkpoint": str(streaming_run["run"]), "streaming_chunk_frames": 4})
    stream = meta["streaming"]
    assert (streaming_run["run"] / "export" / "model.stream.onnx").is_file()
    assert stream["chunk_frames"] == 4 and stream["parity"]["greedy_identical"]
    assert "streaming, 4 frames (0.16 s) a step" in capsys.readouterr().out


@pytest.mark.skipif(sys.platform != "linux", reason="needs Linux mount namespaces")
def test_a_read_only_output_folder_is_one_line_naming_out(deploy_run, tmp_path):
    """Issue 25: Hydra's 'Error executing job with overrides' came before our line, and the hint named run_dir=.
    The output folder is a read-only tmpfs in a private mount namespace of the child (unshare)."""
    if subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode != 0:
        pytest.skip("unshare -rm (user + mount namespaces) is not permitted here")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    export = (f"{sys.executable} -m asr.export.cli 'checkpoint={deploy_run['run']}' 'out={mnt}/m.onnx' "
              f"'hydra.run.dir={tmp_path}/hydra'")
    r = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o ro,size=1m tmpfs {mnt} && exec {export}"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=300,
                       env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "HOME": str(tmp_path)})
    assert r.returncode == 2, r.stderr[-3000:]
    assert "Error executing job" not in r.stderr and "Traceback" not in r.stderr, r.stderr[-3000:]
    errors = [line for line in r.stderr.splitlines() if line.startswith("asr-export: error:")]
    assert len(errors) == 1 and "Read-only file system" in errors[0] and "(out=...)" in errors[0], r.stderr
