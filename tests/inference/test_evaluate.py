"""asr-eval end to end on a tiny checkpoint trained here (real FLAC tones, no synthetic corpus, CPU, ~15 s)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from conftest import write_librispeech_tree

from asr import checkpoint as ckpt_io
from asr.config import (
    AugmentConfig,
    ConfigError,
    DataConfig,
    ModelConfig,
    OptimConfig,
    TrainConfig,
    TrainerConfig,
    to_object,
)
from asr.data.manifest import Utterance, read_manifest, write_manifest
from asr.errors import UserError
from asr.inference.evaluate import EvalConfig, cli, main
from asr.inference.loading import load_model
from asr.text import normalize


def build_tiny_run(base: Path) -> dict[str, Path]:
    """Train a tiny model for 5 steps (once per session: test_transcribe reuses it from the same folder)."""
    root = base / "tiny_asr_run"
    paths = {"root": root, "run": root / "run", "train": root / "train.jsonl"}
    if (paths["run"] / "checkpoints" / "best.pt").is_file():
        return paths
    truth = write_librispeech_tree(root / "LibriSpeech", "train-clean", utts_per_chapter=3)
    write_manifest(paths["train"], [Utterance(id=t["id"], audio_filepath=t["path"], duration=t["frames"] / 16000,
                                              text=t["text"], speaker=t["speaker"]) for t in truth])
    from asr.train import loop as train
    cfg = TrainConfig(
        data=DataConfig(name="tiny", train_manifests=[str(paths["train"])], dev_manifests={"dev": str(paths["train"])},
                        max_batch_seconds=20.0, num_workers=0, min_duration=0.1, max_duration=10.0),
        model=ModelConfig(conv_channels=[8, 8], rnn_hidden=32, rnn_layers=1, dropout=0.0),
        optim=OptimConfig(lr=3e-3, warmup_steps=1),
        augment=AugmentConfig(spec_augment=False, speed_perturb=[]),
        trainer=TrainerConfig(max_steps=5, device="cpu", progress=False, checkpoint_every_steps=1, keep_last=3,
                              num_images=0, log_every=100),
        run_dir=str(paths["run"]))
    train.main(cfg)
    return paths


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> dict[str, Path]:
    return build_tiny_run(tmp_path_factory.getbasetemp())


@pytest.fixture
def eval_data(tiny_run, tmp_path) -> Path:
    """data_dir with synthetic/manifests/{dev,test}.jsonl: dev holds an empty reference and a missing file."""
    utts = read_manifest(tiny_run["train"])
    dev = utts[:5] + [
        Utterance(id="empty-ref", audio_filepath=utts[5].audio_filepath, duration=utts[5].duration, text=""),
        Utterance(id="gone", audio_filepath=str(tmp_path / "no-such.flac"), duration=1.0, text="hello, World!")]
    folder = tmp_path / "data" / "synthetic" / "manifests"
    write_manifest(folder / "dev.jsonl", dev)
    write_manifest(folder / "test.jsonl", utts[6:])
    return tmp_path / "data"


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_greedy_and_beam_records_summary_and_tensorboard(tiny_run, eval_data, capsys):
    summary = main({"checkpoint": str(tiny_run["run"]), "corpus": "synthetic", "data_dir": str(eval_data),
                    "decoders": ["greedy", "beam"], "device": "cpu", "progress": False, "worst_n": 2})
    out_dir = tiny_run["run"] / "eval"  # default: <run dir>/eval
    assert Path(summary["out_dir"]) == out_dir
    printed = capsys.readouterr().out
    assert "greedy" in printed and "beam" in printed and "worst 2 of dev" in printed and "missing" in printed
    saved = json.loads((out_dir / "summary.json").read_text())
    assert set(saved["sets"]) == {"dev", "test"} and (out_dir / "summary.txt").is_file()

    for name in ("dev", "test"):
        manifest = read_manifest(eval_data / "synthetic" / "manifests" / f"{name}.jsonl")
        ref_words = sum(len(normalize(u.text).split()) for u in manifest)
        for dec in ("greedy", "beam"):
            recs = _records(out_dir / name / f"{dec}.jsonl")
            res = saved["sets"][name]["decoders"][dec]
            assert [r["id"] for r in recs] == [u.id for u in manifest]
            assert sum(r["ref_words"] for r in recs) == res["word"]["ref"] == ref_words
            errors = sum(r["word_errors"] for r in recs)
            assert errors == sum(r["substitutions"] + r["deletions"] + r["insertions"] for r in recs)
            assert res["wer"] == pytest.approx(errors / ref_words)  # corpus WER = pooled per-utterance counts
            assert res["cer"] == pytest.approx(sum(r["char_errors"] for r in recs) / sum(r["ref_chars"] for r in recs))
            assert res["rtf"] is not None and res["rtf"] >= 0
            split = res["seen_unseen"]  # the training transcripts' words: the oracle set, built here
            train_words = {w for u in read_manifest(tiny_run["train"]) for w in normalize(u.text).split()}
            unseen = sum(w not in train_words for u in manifest for w in normalize(u.text).split())
            assert split["unseen_words"] == unseen and split["seen_words"] == ref_words - unseen
            assert split["seen_wrong"] + split["unseen_wrong"] == sum(r["substitutions"] + r["deletions"] for r in recs)
    assert "words wrong, seen in the training transcripts / unseen" in printed
    dev = saved["sets"]["dev"]
    assert dev["missing"] == 1 and dev["missing_ids"] == ["gone"] and dev["empty_references"] == 1
    assert dev["acoustic_rtf"] > 0
    recs = {r["id"]: r for r in _records(out_dir / "dev" / "greedy.jsonl")}
    gone = recs["gone"]
    assert gone["missing"] and "no-such.flac" in gone["error"] and gone["hypothesis"] == ""
    assert gone["reference"] == "HELLO WORLD" and gone["deletions"] == gone["ref_words"] == 2
    empty = recs["empty-ref"]
    assert empty["ref_words"] == 0 and empty["insertions"] == len(empty["hypothesis"].split())
    assert not empty["missing"]

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    step = ckpt_io.load(tiny_run["run"] / "checkpoints" / "best.pt")["state"]["step"]
    # its own TensorBoard run, named by the checkpoint's step: the training's run is left as it was
    assert summary["tb_dir"] == str(tiny_run["run"] / "tb" / f"eval-step-{step:08d}")
    acc = EventAccumulator(summary["tb_dir"])
    acc.Reload()
    tags = acc.Tags()["scalars"]
    for tag in ("dev/wer_greedy", "dev/cer_beam", "test/wer_beam"):
        assert tag in tags
    train_run = EventAccumulator(str(tiny_run["run"] / "tb" / "train"))
    train_run.Reload()
    assert "test/wer_beam" not in train_run.Tags()["scalars"]
    assert acc.Scalars("test/wer_beam")[-1].step == step == summary["step"]
    assert acc.Scalars("test/wer_beam")[-1].value == pytest.approx(saved["sets"]["test"]["decoders"]["beam"]["wer"])


def test_beam_lm_with_tuning(tiny_run, tmp_path, capsys):
    import shutil

    from asr.decoding.ngram import build_arpa
    lm = build_arpa(tiny_run["train"], 2, tmp_path / "lm.arpa")
    run = tmp_path / "run"  # a copy: tuning records decoding.json beside the checkpoint, which other tests must not see
    shutil.copytree(tiny_run["run"], run)
    summary = main({"checkpoint": str(run / "checkpoints" / "best.pt"), "corpus": None,
                    "manifests": {"dev": str(tiny_run["train"])}, "beam": {"lm_path": str(lm)}, "tune_lm": True,
                    "lm_weight_grid": [0.5, 2.0], "word_score_grid": [0.0, 2.0], "device": "cpu",
                    "progress": False, "worst_n": 0, "out_dir": str(tmp_path / "out"), "tb": False})
    assert summary["decoders"] == ["greedy", "beam", "beam_lm"]  # the default once an LM is configured
    tuning = json.loads((tmp_path / "out" / "tune_lm.json").read_text())
    assert tuning["subset"] == "dev" and len(tuning["grid"]) == 4
    best = min(tuning["grid"], key=lambda g: (g["word_errors"], g["char_errors"]))
    assert (summary["beam"]["lm_weight"], summary["beam"]["word_score"]) == (best["lm_weight"], best["word_score"])
    # beam_lm decodes the same cached log-probs with the best pair: the same WER as its grid point
    assert summary["sets"]["dev"]["decoders"]["beam_lm"]["wer"] == pytest.approx(best["wer"])
    printed = capsys.readouterr().out
    assert "tune_lm on dev" in printed and "beam_lm" in printed
    words = {w for u in read_manifest(tiny_run["train"]) for w in u.text.split()}
    hyps = [r["hypothesis"] for r in _records(tmp_path / "out" / "dev" / "beam_lm.jsonl")]
    assert all(w in words for h in hyps for w in h.split())  # the lexicon (LM unigrams) constrains the words
    assert json.loads((run / "checkpoints" / "decoding.json").read_text())["lm_weight"] == best["lm_weight"]


@pytest.mark.parametrize("tune", [False, True])
def test_a_broken_lm_fails_before_the_acoustic_pass(tiny_run, tmp_path, monkeypatch, tune):
    """Issue 25: a broken LM file failed only after the whole acoustic pass, losing the greedy and beam results."""
    import asr.inference.evaluate as ev
    lm = tmp_path / "broken.arpa"
    lm.write_text("\\data\\\nngram 1=3\n\n\\1-grams:\n-1.0 CAT\n-1.2 DOG")  # cut short: no \end\

    def acoustic_pass(*args, **kwargs):
        raise AssertionError("the acoustic pass ran before the LM was checked")
    monkeypatch.setattr(ev, "cache_log_probs", acoustic_pass)
    with pytest.raises(UserError, match=r"beam\.lm_path: .*broken\.arpa"):
        main({"checkpoint": str(tiny_run["run"]), "corpus": None, "manifests": {"dev": str(tiny_run["train"])},
              "beam": {"lm_path": str(lm)}, "tune_lm": tune, "device": "cpu", "progress": False, "tb": False,
              "out_dir": str(tmp_path / "out")})


def test_average_last(tiny_run, tmp_path):
    ckpts = ckpt_io.list_checkpoints(tiny_run["run"] / "checkpoints")
    loaded = load_model(tiny_run["run"], "cpu", average_last=2)
    assert loaded.averaged == ckpts[-2:] and loaded.step == 5
    a, b = (ckpt_io.load(p)["model"]["head.weight"] for p in ckpts[-2:])
    assert torch.allclose(loaded.model.state_dict()["head.weight"], (a + b) / 2, atol=1e-6)
    summary = main({"checkpoint": str(tiny_run["run"]), "average_last": 2, "corpus": None,
                    "manifests": {"dev": str(tiny_run["train"])}, "decoders": ["greedy"], "device": "cpu",
                    "progress": False, "out_dir": str(tmp_path / "avg"), "tb": False})
    assert len(summary["averaged"]) == 2 and (tmp_path / "avg" / "dev" / "greedy.jsonl").is_file()
    with pytest.raises(ConfigError, match="average_last"):
        load_model(tiny_run["run"], "cpu", average_last=10)


def test_beam_lm_without_an_lm_anywhere_is_refused_before_the_acoustic_pass(tiny_run, tmp_path):
    with pytest.raises(ConfigError, match=r"^beam\.lm_path: .*none is recorded"):
        main({"checkpoint": str(tiny_run["run"]), "corpus": None, "manifests": {"dev": str(tiny_run["train"])},
              "decoders": ["greedy", "beam_lm"], "device": "cpu", "progress": False, "tb": False,
              "out_dir": str(tmp_path / "out")})
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("overrides, key", [
    ({"tune_lm": True}, "beam.lm_path"),
    ({"decoders": ["viterbi"]}, "decoders"),
    ({"checkpoint": None}, "checkpoint"),
    ({"corpus": "timit"}, "corpus"),
    ({"beam": {"beam_size": 0}}, "beam.beam_size"),
    ({"worst": 3}, "worst"),
])
def test_config_errors_name_the_key(overrides, key):
    with pytest.raises(ConfigError) as err:
        to_object({"checkpoint": "x.pt", **overrides}, EvalConfig)
    assert str(err.value).startswith(key)


def test_missing_manifest_names_it(tiny_run, tmp_path):
    with pytest.raises(ConfigError, match=r"subsets: .*dev.jsonl"):
        main({"checkpoint": str(tiny_run["run"]), "data_dir": str(tmp_path), "device": "cpu"})




def test_cli_wrong_checkpoint_exits_2_with_one_line(tmp_path, monkeypatch, capsys, keep_logging):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["asr-eval", f"checkpoint={tmp_path / 'nope.pt'}"])
    with pytest.raises(SystemExit) as exc:
        cli()
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("asr-eval: error: checkpoint not found:") and "nope.pt" in err[0]
    assert not list(tmp_path.iterdir())  # Hydra wrote no output folder or log file


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu(tiny_run, tmp_path):
    utts = read_manifest(tiny_run["train"])
    from asr.inference.loading import cache_log_probs
    cpu, gpu = (cache_log_probs(load_model(tiny_run["run"], d), utts, 30.0, progress=False) for d in ("cpu", "cuda"))
    for (i, a, la), (j, b, lb) in zip(cpu.batches, gpu.batches):
        assert i == j and torch.equal(la, lb) and b.device.type == "cpu" and b.dtype == torch.float32
        assert torch.allclose(a, b, atol=2e-3)
    common = {"checkpoint": str(tiny_run["run"]), "corpus": None, "manifests": {"dev": str(tiny_run["train"])},
              "decoders": ["greedy", "beam"], "progress": False, "worst_n": 0, "tb": False}
    res = {d: main({**common, "device": d, "out_dir": str(tmp_path / d)}) for d in ("cpu", "cuda")}
    assert res["cuda"]["device"].startswith("cuda")
    for dec in ("greedy", "beam"):
        a, b = (res[d]["sets"]["dev"]["decoders"][dec] for d in ("cpu", "cuda"))
        assert a["word"]["ref"] == b["word"]["ref"] and abs(a["cer"] - b["cer"]) < 0.05


def test_cli_runs_end_to_end(tiny_run, tmp_path, monkeypatch, capsys, keep_logging):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["asr-eval", f"checkpoint={tiny_run['run']}", "corpus=null",
                                      f"+manifests.dev={tiny_run['train']}", "decoders=[greedy]", "device=cpu",
                                      "tb=false", "progress=false", f"out_dir={tmp_path / 'cli'}"])
    cli()
    out = capsys.readouterr().out
    assert "greedy" in out and "WER%" in out
    assert json.loads((tmp_path / "cli" / "summary.json").read_text())["decoders"] == ["greedy"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cli"]  # nothing from Hydra in the working directory
