"""Training step: audio-seconds per second of one `asr-train` step on generated batches (the step without the
disk), split into log-mel features / forward / CTC / backward / optimizer, for a model preset (and overrides).

On a few CPU cores it also answers the question behind the demo recipe: does a smaller batch cost throughput?
(If not, smaller batches buy more updates per epoch for free.) Data wait is the loading benchmark's job.
"""
from __future__ import annotations

import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from asr.config import FeatureConfig, ModelConfig, OptimConfig, to_object
from asr.ctc import ctc_loss
from asr.features import LogMel
from asr.model import AcousticModel
from asr.optim import build_optimizer

from .common import Row

ROOT = Path(__file__).resolve().parents[2]
PHASES = ("features", "forward", "ctc", "backward", "optimizer")


def load_model_config(preset: str, override: dict | None = None) -> ModelConfig:
    cfg = OmegaConf.load(ROOT / "configs" / "model" / f"{preset}.yaml")
    return to_object(OmegaConf.merge(cfg, override or {}), ModelConfig)


def trainee(preset: str = "small", override: dict | None = None) -> tuple[AcousticModel, LogMel, torch.optim.Optimizer]:
    """(model in train mode, log-mel front-end, AdamW) for a model preset, seeded: what every benchmark that runs
    training steps trains (29 classes, the character vocabulary's size)."""
    torch.manual_seed(0)
    model = AcousticModel(load_model_config(preset, override), FeatureConfig().n_mels, 29).train()
    return model, LogMel(FeatureConfig()), build_optimizer(model, OptimConfig(lr=1e-4))


def measure(preset: str, override: dict | None, batch: int, seconds: float, steps: int,
            chars_per_s: float = 12.0) -> dict:
    """Mean over `steps` timed steps after one warm-up step: seconds per step, audio-s/s, share of each phase."""
    model, featurizer, optimizer = trainee(preset, override)
    samples = int(seconds * 16000)
    waves, lengths = torch.randn(batch, samples) * 0.1, torch.full((batch,), samples)
    units = int(seconds * chars_per_s)
    targets, target_lengths = torch.randint(1, 29, (batch, units)), torch.full((batch,), units)
    spent = dict.fromkeys(PHASES, 0.0)
    for i in range(steps + 1):
        t = [time.perf_counter()]
        feats, frames = featurizer(waves, lengths)
        t.append(time.perf_counter())
        log_probs, out_lengths = model(feats, frames)
        t.append(time.perf_counter())
        loss = ctc_loss(log_probs, out_lengths, targets, target_lengths)[0].mean()
        t.append(time.perf_counter())
        loss.backward()
        t.append(time.perf_counter())
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        t.append(time.perf_counter())
        if i:  # the first step warms up allocators and kernels
            for k, name in enumerate(PHASES):
                spent[name] += t[k + 1] - t[k]
    per_step = sum(spent.values()) / steps
    return {"preset": preset, "override": override or {}, "batch": batch, "seconds": seconds,
            "params_m": round(model.num_parameters() / 1e6, 2), "step_s": round(per_step, 4),
            "audio_s_per_s": round(batch * seconds / per_step, 1),
            "split": {k: round(v / steps / per_step, 3) for k, v in spent.items()}}


def run(quick: bool, scales: list[int]) -> list[Row]:
    """small and large presets, batch of `scale` x 4 utterances of 4 s (large: fewer, it is 14x the compute)."""
    rows = []
    plans = [("small", 4, 2 if quick else 4)] + ([] if quick else [("large", 2, 2)])
    for preset, per_scale, steps in plans:
        for scale in scales:
            r = measure(preset, None, per_scale * scale, 4.0, steps)
            rows.append(Row("step", f"{preset} ({r['params_m']} M), {per_scale} x 4 s per 1x, fp32 CPU", scale,
                            "audio-s/s", r["audio_s_per_s"],
                            extra={"step s": r["step_s"],
                                   **{k: f"{100 * v:.0f} %" for k, v in r["split"].items()}}))
    return rows
