"""Training step: audio-seconds per second of the step `asr-train` takes (asr.train.step.train_step on a Trainee built
by asr.train.components.build_trainee: log-mel, SpecAugment as the demo recipe sets it, the model, the objective with
intermediate CTC, backward, clipping, AdamW) on generated batches, for a model preset (and overrides).

On a few CPU cores it also answers the question behind the demo recipe: does a smaller batch cost throughput?
(If not, smaller batches buy more updates per epoch for free.) Data wait is the loading benchmark's job.
"""
from __future__ import annotations

import time
from typing import Optional

import torch

from asr.config import TrainConfig, compose, to_object
from asr.data.dataset import Batch
from asr.text import CharTokenizer
from asr.train.components import Trainee, build_trainee
from asr.train.state import TrainState
from asr.train.step import train_step

from .common import SAMPLE_RATE, Row


def train_config(preset: str = "small", override: Optional[dict] = None, precision: str = "fp32") -> TrainConfig:
    """What `asr-train model=PRESET` trains on the demo's data preset, with `override` {model key: value} applied."""
    overrides = [f"model={preset}", f"trainer.precision={precision}"]
    overrides += [f"model.{k}={_hydra_value(v)}" for k, v in (override or {}).items()]
    return to_object(compose("train", overrides), TrainConfig)


def vocab_size(cfg: TrainConfig) -> int:
    """C of the model `cfg` trains: the characters, or model.vocab_size pieces plus the blank."""
    return cfg.model.vocab_size + 1 if cfg.model.tokenizer == "sentencepiece" else CharTokenizer().size


def trainee(preset: str = "small", override: Optional[dict] = None, precision: str = "fp32",
            device: str = "cpu") -> Trainee:
    """The Trainee of `train_config(preset, override, precision)` (its augmentation, optimizer and vocabulary size),
    seeded, on `device`."""
    cfg = train_config(preset, override, precision)
    torch.manual_seed(0)
    return build_trainee(cfg, torch.device(device), vocab_size(cfg))


def _hydra_value(v) -> str:
    return "[" + ",".join(str(x) for x in v) + "]" if isinstance(v, (list, tuple)) else str(v).lower() \
        if isinstance(v, bool) else str(v)


def generated_batch(batch: int, seconds: float, chars_per_s: float = 12.0, vocab: int = 29) -> Batch:
    """`batch` utterances of `seconds` of noise with random transcripts of `chars_per_s` characters a second."""
    samples = int(seconds * SAMPLE_RATE)
    units = int(seconds * chars_per_s)
    return Batch(ids=[f"gen-{i}" for i in range(batch)], waves=torch.randn(batch, samples) * 0.1,
                 wave_lengths=torch.full((batch,), samples), targets=torch.randint(1, vocab, (batch, units)),
                 target_lengths=torch.full((batch,), units), texts=[""] * batch)


def timed_steps(run: Trainee, batches: list[Batch]) -> float:
    """Seconds spent in `train_step` over batches[1:] (the first warms up allocators and kernels)."""
    state, spent = TrainState(), 0.0
    for i, batch in enumerate(batches):
        t0 = time.perf_counter()
        train_step(run, batch, state)
        if run.device.type == "cuda":
            torch.cuda.synchronize(run.device)
        if i:
            spent += time.perf_counter() - t0
        state.step += 1
    return spent


def measure(preset: str, override: Optional[dict], batch: int, seconds: float, steps: int,
            precision: str = "fp32") -> dict:
    """Mean seconds per step over `steps` timed steps after one warm-up step, and audio-s/s."""
    torch.manual_seed(0)  # the same noise every call (the trainee is seeded again before its weights are drawn)
    cfg = train_config(preset, override, precision)
    pieces = cfg.model.tokenizer == "sentencepiece"  # about half as many units as characters (asr/text/pieces.py)
    data = generated_batch(batch, seconds, chars_per_s=6.0 if pieces else 12.0, vocab=vocab_size(cfg))
    return {**measure_batches(preset, override, [data] * (steps + 1), precision), "batch": batch, "seconds": seconds}


def corpus_batches(count: int, data_overrides: Optional[list[str]] = None) -> list[Batch]:
    """The first `count` batches the trainer's own loader gives on the demo corpus (the data preset's 36-s buckets of
    1-7 s utterances, shuffled: sortagrad off, so not the shortest first), read once and shared by every variant."""
    import itertools
    import tempfile
    from pathlib import Path

    from asr.train.components import build

    overrides = ["data.sortagrad=false", "data.num_workers=0"] + list(data_overrides or [])
    cfg = to_object(compose("train", overrides), TrainConfig)
    with tempfile.TemporaryDirectory() as tmp:
        loader = build(cfg, Path(tmp) / "run").train_loader
        return list(itertools.islice(iter(loader), count))


def with_piece_targets(batches: list[Batch], cfg: TrainConfig, manifests: Optional[list[str]] = None) -> list[Batch]:
    """The same corpus batches with their transcripts encoded as the pieces training would learn for `cfg` from the
    training transcripts of `manifests` (default: the data preset's), so a subword variant is timed on its own
    targets."""
    from asr.data.dataset import collate
    from asr.data.manifest import read_manifest
    from asr.text import train_pieces

    texts = [u.text for m in (manifests or cfg.data.train_manifests) for u in read_manifest(m)]
    tok = train_pieces(texts, cfg.model.vocab_size, cfg.model.piece_model.value)
    return [collate(b.ids, [w[:n] for w, n in zip(b.waves, b.wave_lengths)], [tok.encode(t) for t in b.texts],
                    b.texts) for b in batches]


def audio_seconds(batches: list[Batch]) -> float:
    """Seconds of real (unpadded) audio in `batches`."""
    return sum(float(b.wave_lengths.sum()) for b in batches) / SAMPLE_RATE


def measure_batches(preset: str, override: Optional[dict], batches: list[Batch], precision: str = "fp32",
                    piece_manifests: Optional[list[str]] = None) -> dict:
    """Mean seconds per step over batches[1:] (batches[0] warms up) and real (unpadded) audio-s/s. A subword
    variant's targets are the batches' transcripts in pieces learned from `piece_manifests` (see with_piece_targets)."""
    run = trainee(preset, override, precision)
    if run.cfg.model.tokenizer == "sentencepiece" and batches and batches[0].texts[0]:
        batches = with_piece_targets(batches, run.cfg, piece_manifests)
    spent = timed_steps(run, batches)
    audio = audio_seconds(batches[1:])
    return {"preset": preset, "override": override or {}, "batch": "corpus", "seconds": round(audio, 1),
            "params_m": round(run.raw_model.num_parameters() / 1e6, 2), "step_s": round(spent / (len(batches) - 1), 4),
            "audio_s_per_s": round(audio / spent, 1)}


def run(quick: bool, scales: list[int]) -> list[Row]:
    """small and large presets, batch of `scale` x 4 utterances of 4 s (large: fewer, it is 14x the compute)."""
    rows = []
    plans = [("small", 4, 2 if quick else 4)] + ([] if quick else [("large", 2, 2)])
    for preset, per_scale, steps in plans:
        for scale in scales:
            r = measure(preset, None, per_scale * scale, 4.0, steps)
            rows.append(Row("step", f"{preset} ({r['params_m']} M), {per_scale} x 4 s per 1x, fp32 CPU", scale,
                            "audio-s/s", r["audio_s_per_s"], extra={"step s": r["step_s"]}))
    return rows

