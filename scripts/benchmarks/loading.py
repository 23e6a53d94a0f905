"""Data loading: our loader (FLAC decoding with soundfile, speed perturbation 0.9/1.0/1.1, duration-bucketed
batches, DataLoader workers) feeding log-mel features, in audio-seconds per second, for several worker counts;
then the loader inside a real training loop of the small model, where data wait is the share of the wall-clock
time the step spent blocked on the next batch (the trainer's own `data wait` figure).

The input is a FLAC corpus written for the benchmark (generated speech-like audio, 1-20 s) in a temporary folder.
"""
from __future__ import annotations

import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import soundfile as sf

from asr.config import FeatureConfig
from asr.data.dataset import AudioDataset, make_loader
from asr.data.manifest import Utterance
from asr.data.sampler import DurationBucketSampler
from asr.model.features import LogMel
from asr.text import CharTokenizer
from asr.train.state import TrainState
from asr.train.step import train_step

from .common import SAMPLE_RATE, Row, demo_durations, speechlike
from .step import trainee

BUDGET_S = 36.0  # the demo recipe's batch budget
SPEED = [0.9, 1.0, 1.1]
WORDS = "THE QUICK BROWN FOX JUMPS OVER A LAZY DOG WHILE SEVEN WIZARDS HEX NIMBLE JUDGES".split()


def write_corpus(root: Path, n: int, seed: int) -> list[Utterance]:
    """n FLAC files (16-bit, 16 kHz) with about 12 characters of transcript per second."""
    utts = []
    for i, d in enumerate(demo_durations(n, seed=seed)):
        path = root / f"bench-{seed}-{i:04d}.flac"
        sf.write(path, speechlike(d, seed=1000 * seed + i), SAMPLE_RATE, subtype="PCM_16")
        words = [WORDS[(i + k) % len(WORDS)] for k in range(max(1, int(d * 12 / 5)))]
        utts.append(Utterance(id=path.stem, audio_filepath=str(path), duration=d, text=" ".join(words)))
    return utts


def _loader(utts: list[Utterance], workers: int):
    dataset = AudioDataset(utts, CharTokenizer(), speed_perturb=SPEED, seed=0)
    sampler = DurationBucketSampler([u.duration for u in utts], BUDGET_S, num_buckets=10, shuffle=True, seed=0)
    return make_loader(dataset, sampler, num_workers=workers)


def loader_throughput(utts: list[Utterance], workers: int) -> float:
    """Audio-s/s of one pass of the loader plus log-mel features (the consumer does nothing else)."""
    featurizer = LogMel(FeatureConfig())
    audio = 0.0
    t0 = time.perf_counter()
    for batch in _loader(utts, workers):
        featurizer(batch.waves, batch.wave_lengths)
        audio += float(batch.wave_lengths.sum()) / SAMPLE_RATE
    return audio / (time.perf_counter() - t0)


def training_data_wait(utts: list[Utterance], workers: int) -> tuple[float, float]:
    """(data wait share, real audio-s/s) of one epoch of the small model's training steps (the trainer's) fed by
    the loader."""
    run = trainee("small")
    state = TrainState()
    waited = audio = 0.0
    t_start = time.perf_counter()
    it = iter(_loader(utts, workers))
    while True:
        t0 = time.perf_counter()
        batch = next(it, None)
        waited += time.perf_counter() - t0
        if batch is None:
            break
        train_step(run, batch, state)
        state.step += 1
        audio += float(batch.wave_lengths.sum()) / SAMPLE_RATE
    total = time.perf_counter() - t_start
    return waited / total, audio / total


def run(quick: bool, scales: list[int]) -> list[Row]:
    base = 12 if quick else 40
    cores = os.cpu_count() or 1
    worker_counts = sorted({0, 1, min(2, cores)} | (set() if quick else {min(4, cores), min(8, cores)}))
    rows = []
    with tempfile.TemporaryDirectory(prefix="asr-bench-") as tmp:
        base_utts = write_corpus(Path(tmp), base, seed=1)
        for scale in scales:  # k x the work: the corpus k times over (ids made unique), decoded k times
            utts = [replace(u, id=f"{u.id}-{k}") for k in range(scale) for u in base_utts]
            for workers in worker_counts:
                rows.append(Row("loading", f"decode + speed perturb + log-mel, {workers} workers", scale,
                                "audio-s/s", loader_throughput(utts, workers),
                                extra={"utterances": len(utts), "cores": cores}))
        wait, rate = training_data_wait(base_utts, workers=1)
        rows.append(Row("loading", "small-model training fed by the loader (1 worker, the demo's)", 1,
                        "data wait %", 100 * wait, higher_is_better=False,
                        extra={"real audio-s/s": round(rate, 1), "utterances": len(base_utts)}))
    return rows
