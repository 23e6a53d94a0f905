"""scripts/bench.py: the table arithmetic, the synthesised durations, and one smoke run of `--quick` (a benchmark
is not a test: no figure is asserted, only that every sub-benchmark runs and reports sane rows)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from benchmarks.common import Row, librispeech_like_durations, scaling_note, table

ROOT = Path(__file__).resolve().parents[1]


def test_ratio_points_the_same_way_for_both_kinds_of_metric():
    assert Row("x", "c", 1, "audio-s/s", 300.0, "alt", 100.0).ratio == pytest.approx(3.0)
    assert Row("x", "c", 1, "RTF", 0.01, "alt", 0.05, higher_is_better=False).ratio == pytest.approx(5.0)
    assert Row("x", "c", 1, "audio-s/s", 300.0).ratio is None


def test_scaling_note_flags_cost_growing_worse_than_linear():
    rows = [Row("f", "a", 1, "audio-s/s", 100.0), Row("f", "a", 8, "audio-s/s", 95.0),
            Row("d", "b", 1, "RTF", 0.01, higher_is_better=False),
            Row("d", "b", 8, "RTF", 0.02, higher_is_better=False)]
    notes = scaling_note(rows)
    assert "no worse than linear" in notes[("f", "a")] and "95 %" in notes[("f", "a")]
    assert "worse than linear" in notes[("d", "b")] and "50 %" in notes[("d", "b")]
    assert table(rows).count("\n| ") == 4  # one line per row below the header


def test_librispeech_like_durations_match_train_clean_100():
    d = np.array(librispeech_like_durations(28539, seed=0))
    assert d.min() >= 1.0 and d.max() <= 35.0
    assert 12.2 < d.mean() < 13.2
    assert 0.5 < np.mean((d >= 12) & (d <= 17)) < 0.8  # most segments are 12-17 s long


@pytest.mark.skipif(not Path("/usr/share/wordnet/data.noun").exists(),
                    reason="the simulated decoding input needs WordNet's sentences (scripts/setup.sh installs them)")
def test_quick_run_reports_every_benchmark(tmp_path, capsys):
    import bench

    assert bench.main(["--quick", "--scales", "1", "--out", str(tmp_path / "b")]) == 0
    result = json.loads((tmp_path / "b.json").read_text())
    benches = {r["bench"] for r in result["rows"]}
    assert benches == {"features", "loading", "batching", "step", "decoding", "backends", "pipeline"}
    for r in result["rows"]:
        assert r["ours"] > 0, r
    features = next(r for r in result["rows"] if r["bench"] == "features")
    assert features["extra"]["max abs diff"] < 1e-2  # the two compute the same log-mel
    assert "| features |" in (tmp_path / "b.md").read_text()
    for r in (r for r in result["rows"] if r["bench"] == "backends"):  # exported models compute the same log-probs
        assert r["alt"] > 0 and float(r["extra"]["max abs diff"]) < 1e-3, r


def test_the_step_benchmark_trains_exactly_what_asr_train_trains(tmp_path, tiny_corpus):
    """The benchmark's Trainee and an `asr-train` run's Components, built from the same configuration and started
    from the same weights, take the same step on the same batch: same augmentation, dropout (the small preset's, conv
    Dropout2d included), objective (intermediate CTC switched on, so the comparison covers it), clipping and AdamW
    update, to the last bit."""
    from dataclasses import replace

    import torch
    from benchmarks import step as bench_step
    from conftest import compose_train, tiny_train_overrides

    from asr.config import TrainConfig, to_object
    from asr.train.components import build
    from asr.train.state import TrainState
    from asr.train.step import train_step

    # The demo's data preset trains without SpecAugment (the tiny one keeps the schema's masks on): as the demo.
    overrides = tiny_train_overrides(tiny_corpus, tmp_path / "run", **{"model.inter_ctc_weight": 0.3,
                                                                       "augment.spec_augment": "false"})
    cfg = to_object(compose_train(overrides), TrainConfig)
    assert cfg.model.inter_ctc_weight > 0 and cfg.model.dropout > 0 and cfg.model.conv_dropout > 0  # covered
    components = build(cfg, tmp_path / "run")
    model_overrides = {k.split(".", 1)[1]: v for k, v in (o.split("=", 1) for o in overrides) if k.startswith("model.")}
    trainee = bench_step.trainee("small", model_overrides)
    # Speed perturbation and noise act on waveforms in the dataset, before the step: the feature augmentation is the same.
    waveform_level = dict(speed_perturb=[], speed_per_batch=True, noise_snr_db=None)
    assert replace(trainee.cfg.augment, **waveform_level) == replace(cfg.augment, **waveform_level)
    assert trainee.cfg.model == cfg.model and trainee.cfg.features == cfg.features
    # The schedule (warm-up) is the loop's: the step takes the optimizer's learning rate as the loop set it.
    assert replace(trainee.cfg.optim, warmup_steps=0) == replace(cfg.optim, warmup_steps=0)
    trainee.raw_model.load_state_dict(components.raw_model.state_dict())
    batch = components.train_dataset[list(range(4))]
    for run in (components, trainee):
        torch.manual_seed(0)
        result = train_step(run, batch, TrainState())
        assert result.updated and not result.skipped
    for (name, a), b in zip(components.raw_model.state_dict().items(), trainee.raw_model.state_dict().values()):
        assert torch.equal(a, b), name


def test_the_step_benchmark_can_time_the_trainers_own_batches(tiny_corpus):
    """`bench_cpu_step.py --corpus N`: the batches are the loader's (mixed lengths, each within the data preset's
    max_batch_seconds, not the shortest first), and each variant gets the same ones."""
    import torch
    from benchmarks import step as bench_step

    from asr.data.manifest import read_manifest
    from asr.text import train_pieces

    data = ["data=synthetic_tiny", "data.synth_preset=null", f"data.train_manifests=[{tiny_corpus['train']}]",
            f"data.dev_manifests={{dev:{tiny_corpus['dev']}}}", "data.max_batch_seconds=8",
            "data.max_duration=8"]
    batches = bench_step.corpus_batches(3, data)
    assert len(batches) == 3 and all(len(b) >= 1 for b in batches)
    seconds = [b.wave_lengths.float() / 16000 for b in batches]
    assert all(float(s.sum()) <= 8.0 for s in seconds)
    assert len({round(float(x), 3) for s in seconds for x in s}) > 1  # mixed lengths, not generated ones
    again = bench_step.corpus_batches(3, data)
    assert [b.ids for b in again] == [b.ids for b in batches]
    row = bench_step.measure_batches("small", {"rnn_hidden": 16, "rnn_layers": 2, "conv_channels": [4, 4]}, batches)
    audio = sum(float(s.sum()) for s in seconds[1:])
    assert row["seconds"] == round(audio, 1) and row["step_s"] > 0
    assert row["audio_s_per_s"] == pytest.approx(audio / (2 * row["step_s"]), rel=0.01, abs=0.06)  # both rounded
    # A subword variant is timed on its own targets: the same transcripts in pieces (oracle: they decode back).
    pieces = {"tokenizer": "sentencepiece", "vocab_size": 64, "conv_channels": [4, 4, 4],
              "conv_time_strides": [2, 2, 2], "rnn_hidden": 16, "rnn_layers": 2}
    cfg = bench_step.train_config("small", pieces)
    retargeted = bench_step.with_piece_targets(batches, cfg, [tiny_corpus["train"]])
    tok = train_pieces([u.text for u in read_manifest(tiny_corpus["train"])], 64)
    for a, b in zip(batches, retargeted):
        assert b.texts == a.texts and torch.equal(b.waves, a.waves) and torch.equal(b.wave_lengths, a.wave_lengths)
        assert [tok.ids_to_text(t[:n].tolist()) for t, n in zip(b.targets, b.target_lengths)] == a.texts
        assert int(b.target_lengths.sum()) < int(a.target_lengths.sum())
    row = bench_step.measure_batches("small", pieces, batches, piece_manifests=[tiny_corpus["train"]])
    assert row["step_s"] > 0 and row["params_m"] > 0
