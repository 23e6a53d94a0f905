"""Backends: the exported model (asr-export) under onnxruntime and TorchScript against the PyTorch model it came
from, on the CPU with the same threads: waveform -> log-probs (front-end included), one utterance per call (what
asr-transcribe and asr-serve do) and duration-sorted batches of 8. Also reports each backend's largest
|log-prob| difference to PyTorch on the valid frames.

The model: `--checkpoint` when given (the demo run), else the small preset with seeded random weights (speed
does not depend on the weights).
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import torch

from asr.export.exporter import export
from asr.inference.exported import load_exported
from asr.inference.loading import LoadedModel, load_model
from asr.lengths import pad_waves
from asr.text import CharTokenizer

from .common import SAMPLE_RATE, Row, demo_durations, speechlike
from .step import trainee

BATCH = 8


def reference(checkpoint: str | None) -> LoadedModel:
    if checkpoint:
        return load_model(checkpoint, "cpu")
    run = trainee("small")
    return LoadedModel(model=run.raw_model.eval(), featurizer=run.featurizer.eval(), tokenizer=CharTokenizer(),
                       config=run.cfg,
                       device=torch.device("cpu"), path=Path("small preset, random weights"), step=0, run_dir=None)


def _rate(fn, calls: list, audio_s: float) -> tuple[float, float]:
    """(audio-s/s, seconds) of running fn over calls once, after one untimed warm-up call."""
    fn(*calls[0])
    t0 = time.perf_counter()
    for args in calls:
        fn(*args)
    seconds = time.perf_counter() - t0
    return audio_s / seconds, seconds


def run(quick: bool, scales: list[int], checkpoint: str | None = None) -> list[Row]:
    threads = os.cpu_count() or 1
    torch.set_num_threads(threads)
    loaded = reference(checkpoint)
    base = 4 if quick else 16
    base_waves = [torch.from_numpy(speechlike(d, seed=i)) for i, d in enumerate(demo_durations(base, seed=3))]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        runtimes = {}
        for fmt, name in (("onnx", "model.onnx"), ("torchscript", "model.pt")):
            meta = export(loaded, fmt, Path(tmp) / name, base_waves[:3])
            runtimes[fmt] = (load_exported(Path(tmp) / name, threads=threads), meta["parity"]["max_abs_diff"])
        for scale in scales:
            waves = sorted(base_waves * scale, key=lambda w: w.numel())
            audio_s = sum(w.numel() for w in waves) / SAMPLE_RATE
            alone = [(w[None], torch.tensor([w.numel()])) for w in waves]
            batched = [pad_waves(waves[k:k + BATCH]) for k in range(0, len(waves), BATCH)]
            for case, calls in (("1 utterance per call", alone), (f"batches of {BATCH}", batched)):
                torch_rate, _ = _rate(loaded.log_probs, calls, audio_s)
                for fmt, (runtime, diff) in runtimes.items():
                    rate, _ = _rate(runtime.log_probs, calls, audio_s)
                    rows.append(Row("backends", f"{fmt}: {case}", scale, "audio-s/s", rate, "PyTorch", torch_rate,
                                    extra={"utterances": len(waves), "audio s": round(audio_s, 1),
                                           "max abs diff": f"{diff:.1e}", "threads": threads}))
    return rows
