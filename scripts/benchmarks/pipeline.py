"""The real training pipeline end to end, the figure a GPU user feels: a FLAC corpus with LibriSpeech-like
durations (generated on all cores, nothing from the network), then `asr-train` itself in this process (loader
workers, speed perturbation, duration buckets, pinned memory, features on the device, the model under autocast,
fp32 CTC, AdamW) for a fixed number of steps. Reported from the trainer's own TensorBoard scalars (median over
its log windows, the first one left out as warm-up): real audio-s/s and x real time, data wait, padding; on CUDA
also the peak memory and the GPU utilisation sampled with nvidia-smi. scripts/bench_gpu_train.py measures the step
alone on generated batches of the same shape, so the two side by side show what the data path costs.

Defaults follow the device: on CUDA the LibriSpeech-size model in fp16 on hours of audio, on a CPU the small
model on a few minutes (enough to run the same code path).
"""
from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Optional

import soundfile as sf
import torch
from omegaconf import OmegaConf

from asr.data.manifest import Utterance, write_manifest

from .common import SAMPLE_RATE, Row, librispeech_like_durations, speechlike

ROOT = Path(__file__).resolve().parents[2]
WORDS = ("THE OF AND TO A IN THAT HE WAS IT HIS WITH AS HAD FOR YOU NOT BE HER ON AT BY WHICH HAVE OR FROM THIS "
         "HIM BUT ALL SHE THEY WERE MY ARE ME ONE THEIR SO AN SAID THEM WE WHO WOULD BEEN WILL NO WHEN THERE").split()


@dataclass
class PipelineSpec:
    hours: float
    model: str
    precision: str
    steps: int
    batch_seconds: float
    workers: int
    max_duration: float = 20.0  # the LibriSpeech presets' filter

    @classmethod
    def for_device(cls, quick: bool) -> "PipelineSpec":
        cores = os.cpu_count() or 1
        if torch.cuda.is_available():
            return cls(hours=0.5 if quick else 3.0, model="large", precision="fp16", steps=40 if quick else 200,
                       batch_seconds=1200.0, workers=max(1, cores - 2))
        return cls(hours=0.03 if quick else 0.25, model="small", precision="fp32", steps=6 if quick else 40,
                   batch_seconds=60.0, workers=1)


def _render(job: tuple[str, float, int]) -> None:
    path, seconds, seed = job
    sf.write(path, speechlike(seconds, seed), SAMPLE_RATE, subtype="PCM_16")


def write_corpus(root: Path, hours: float, max_duration: float, workers: int) -> tuple[Path, float]:
    """FLACs whose durations follow LibriSpeech train-clean-100 (longer than `max_duration` dropped, as the
    presets do) until `hours` of audio; ~15 characters of transcript per second. Returns (manifest, seconds)."""
    durations = [d for d in librispeech_like_durations(int(hours * 3600 / 12) + 50, seed=7) if d <= max_duration]
    utts, jobs, total = [], [], 0.0
    for i, d in enumerate(durations):
        if total >= hours * 3600:
            break
        path = root / f"{i:06d}.flac"
        n_words = max(1, int(d * 15 / 4.3))
        text = " ".join(WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(n_words))
        utts.append(Utterance(id=f"{i // 100}-{i % 100}-{i:04d}", audio_filepath=str(path), duration=d, text=text))
        jobs.append((str(path), d, i))
        total += d
    with ProcessPoolExecutor(max(1, workers), mp_context=get_context("spawn")) as pool:
        list(pool.map(_render, jobs, chunksize=8))
    manifest = root / "train.jsonl"
    write_manifest(manifest, utts)
    return manifest, total


class GpuSampler:
    """Samples nvidia-smi's utilisation every 0.5 s on a thread while the trainer runs (CUDA machines only)."""

    def __init__(self) -> None:
        self.values: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.enabled = torch.cuda.is_available() and shutil.which("nvidia-smi") is not None

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                                  "-i", "0"], capture_output=True, text=True)
            if out.returncode == 0 and out.stdout.strip():
                self.values.append(float(out.stdout.split()[0]))

    def __enter__(self) -> "GpuSampler":
        if self.enabled:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self.enabled:
            self._thread.join()


def tb_medians(run_dir: Path, tags: list[str]) -> dict[str, Optional[float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    values: dict[str, list[float]] = {t: [] for t in tags}
    from asr import tb

    for events in sorted((run_dir / "tb" / tb.TRAIN_RUN).glob("events*")):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
        acc.Reload()
        for t in tags:
            if t in acc.Tags()["scalars"]:
                values[t] += [e.value for e in acc.Scalars(t)]
    return {t: statistics.median(v[1:] if len(v) > 1 else v) if v else None for t, v in values.items()}


def train(manifest: Path, spec: PipelineSpec, run_dir: Path) -> dict:
    from asr import tb
    from asr.train.loop import main as train_main

    cfg = {
        "data": {"name": "pipeline", "synth_preset": None, "train_manifests": [str(manifest)], "dev_manifests": {},
                 "max_batch_seconds": spec.batch_seconds, "num_buckets": 30, "max_duration": spec.max_duration,
                 "min_duration": 1.0, "sortagrad": False, "num_workers": spec.workers},
        "model": OmegaConf.to_container(OmegaConf.load(ROOT / "configs" / "model" / f"{spec.model}.yaml")),
        "augment": {"spec_augment": True, "speed_perturb": [0.9, 1.0, 1.1]},
        "trainer": {"max_steps": spec.steps, "precision": spec.precision, "log_every": max(2, spec.steps // 10),
                    "progress": False, "resume": "never", "num_images": 0, "val_every_epochs": 1000},
        "run_dir": str(run_dir),
    }
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    with GpuSampler() as gpu:
        train_main(cfg)
    wall = time.perf_counter() - t0
    stats = tb_medians(run_dir, [tb.TRAIN_AUDIO_PER_S, tb.TRAIN_DATA_WAIT, tb.TRAIN_PADDING])
    return {"audio_s_per_s": stats[tb.TRAIN_AUDIO_PER_S], "data_wait": stats[tb.TRAIN_DATA_WAIT],
            "padding": stats[tb.TRAIN_PADDING], "wall_s": wall,
            "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None,
            "gpu_util": statistics.median(gpu.values) if gpu.values else None}


def run(quick: bool, scales: list[int], spec: Optional[PipelineSpec] = None) -> list[Row]:
    spec = spec or PipelineSpec.for_device(quick)
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
    with tempfile.TemporaryDirectory(prefix="asr-bench-pipeline-") as tmp:
        t0 = time.perf_counter()
        manifest, audio = write_corpus(Path(tmp), spec.hours, spec.max_duration, os.cpu_count() or 1)
        corpus_s = time.perf_counter() - t0
        r = train(manifest, spec, Path(tmp) / "run")
    extra = {"device": device, "model": spec.model, "precision": spec.precision, "steps": spec.steps,
             "batch s": spec.batch_seconds, "workers": spec.workers, "corpus h": round(audio / 3600, 2),
             "corpus written in s": round(corpus_s, 1), "data wait %": 100 * (r["data_wait"] or 0.0),
             "padding %": 100 * (r["padding"] or 0.0), "wall s": round(r["wall_s"], 1)}
    if r["peak_gib"] is not None:
        extra["peak GiB"] = round(r["peak_gib"], 2)
    if r["gpu_util"] is not None:
        extra["GPU util %"] = r["gpu_util"]
    return [Row("pipeline", f"asr-train end to end, {spec.model} {spec.precision} on {device}", 1,
                "x real time (audio-s/s)", r["audio_s_per_s"] or 0.0, extra=extra)]
