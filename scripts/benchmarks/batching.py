"""Batching: our duration buckets (asr.data.sampler.DurationBucketSampler) against random fixed-size batches,
on durations shaped like LibriSpeech train-clean-100 (synthesised: the built-in corpus is 1-7 s, so its padding
says little about LibriSpeech).

Two figures per sampler: the padding ratio (share of the padded audio-seconds that is padding) at the
LibriSpeech preset's batch budget, and the training throughput in *real* (unpadded) audio-seconds per second of
the small model on CPU-sized batches drawn by each sampler (the same budget for both, the same number of steps).
"""
from __future__ import annotations

import random
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from asr.data.dataset import Batch
from asr.data.sampler import DurationBucketSampler, padding_ratio

from .common import Row, librispeech_like_durations
from .step import timed_steps, trainee

ROOT = Path(__file__).resolve().parents[2]
CPU_BUDGET_S = 60.0  # audio-seconds per batch for the CPU throughput half (a GPU batch would take minutes here)


def random_batches(n_utts: int, batch_size: int, seed: int) -> list[list[int]]:
    """Shuffled indices cut into batches of `batch_size`: what a plain DataLoader(shuffle=True) would give."""
    order = list(range(n_utts))
    random.Random(seed).shuffle(order)
    return [order[i:i + batch_size] for i in range(0, n_utts, batch_size)]


def bucket_batches(durations: list[float], budget: float, buckets: int, seed: int) -> list[list[int]]:
    sampler = DurationBucketSampler(durations, budget, num_buckets=buckets, shuffle=True, seed=seed)
    return sampler.global_batches(0)


def train_throughput(batches: list[list[int]], durations: list[float], steps: int) -> float:
    """Real audio-seconds per second of the small model's training step (the trainer's) over the first `steps`
    batches, on generated audio of the batches' durations."""
    run = trainee("small")
    generated = []
    for batch in batches[:steps + 1]:
        lengths = torch.tensor([int(durations[i] * 16000) for i in batch])
        waves = torch.randn(len(batch), int(lengths.max())) * 0.1
        waves *= torch.arange(waves.shape[1])[None, :] < lengths[:, None]
        units = (lengths // 16000 * 12).clamp(min=1)
        targets = torch.randint(1, 29, (len(batch), int(units.max())))
        generated.append(Batch(ids=[str(i) for i in batch], waves=waves, wave_lengths=lengths, targets=targets,
                               target_lengths=units, texts=[""] * len(batch)))
    real = sum(durations[i] for batch in batches[1:steps + 1] for i in batch)  # the first batch warms up
    return real / timed_steps(run, generated)


def run(quick: bool, scales: list[int]) -> list[Row]:
    preset = OmegaConf.load(ROOT / "configs" / "data" / "librispeech_100.yaml")
    budget, buckets = float(preset.max_batch_seconds), int(preset.num_buckets)
    rows = []
    for scale in scales:
        durations = librispeech_like_durations((3000 if quick else 28539) * scale // (1 if quick else 8), seed=scale)
        t0 = time.perf_counter()
        ours = bucket_batches(durations, budget, buckets, seed=0)
        t_sampler = time.perf_counter() - t0
        size = max(1, round(len(durations) / len(ours)))  # the same mean batch size for the random batches
        theirs = random_batches(len(durations), size, seed=0)
        rows.append(Row("batching", f"LibriSpeech-like durations, {budget:g}-s batches, {buckets} buckets", scale,
                        "padding %", 100 * padding_ratio(ours, durations), f"random batches of {size}",
                        100 * padding_ratio(theirs, durations), higher_is_better=False,
                        extra={"utterances": len(durations), "mean s": round(sum(durations) / len(durations), 2),
                               "sampler s": round(t_sampler, 3)}))
    durations = librispeech_like_durations(3000, seed=0)
    short = [d for d in durations if d <= CPU_BUDGET_S / 2]
    ours = bucket_batches(short, CPU_BUDGET_S, buckets, seed=1)
    size = max(1, round(len(short) / len(ours)))
    theirs = random_batches(len(short), size, seed=1)
    steps = 3 if quick else 8
    rows.append(Row("batching", f"small-model training step, {CPU_BUDGET_S:g}-s batches, {steps} steps", 1,
                    "real audio-s/s", train_throughput(ours, short, steps), f"random batches of {size}",
                    train_throughput(theirs, short, steps),
                    extra={"padding ours %": round(100 * padding_ratio(ours[1:steps + 1], short), 1),
                           "padding theirs %": round(100 * padding_ratio(theirs[1:steps + 1], short), 1)}))
    return rows
