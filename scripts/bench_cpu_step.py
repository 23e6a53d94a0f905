"""CPU training-step throughput by batch size and model shape: audio-seconds per second, split into log-mel
features / forward / CTC / backward / optimizer, on generated batches (the step without the disk).

It answers the question behind the demo recipe: on a few CPU cores, does a smaller batch cost throughput? (If
not, smaller batches buy more updates per epoch for free.) Each variant is a model-preset override.

    python scripts/bench_cpu_step.py --seconds 3 --batches 40 12 6 --variants '{}' '{"rnn_type": "gru"}'
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from asr.config import FeatureConfig, ModelConfig, OptimConfig, to_object
from asr.ctc import ctc_loss
from asr.features import LogMel
from asr.model import AcousticModel
from asr.optim import build_optimizer

ROOT = Path(__file__).resolve().parents[1]
PHASES = ("features", "forward", "ctc", "backward", "optimizer")


def measure(preset: str, override: dict, batch: int, seconds: float, steps: int, chars_per_s: float = 12.0) -> dict:
    """Mean over `steps` timed steps after one warm-up step: seconds per step, audio-s/s, share of each phase."""
    torch.manual_seed(0)
    cfg = to_object(OmegaConf.merge(OmegaConf.load(ROOT / "configs" / "model" / f"{preset}.yaml"), override),
                    ModelConfig)
    model = AcousticModel(cfg, FeatureConfig().n_mels, 29).train()
    featurizer = LogMel(FeatureConfig())
    optimizer = build_optimizer(model, OptimConfig(lr=1e-4))
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
    return {"preset": preset, "override": override, "batch": batch, "seconds": seconds,
            "params_m": round(model.num_parameters() / 1e6, 2), "step_s": round(per_step, 4),
            "audio_s_per_s": round(batch * seconds / per_step, 1),
            "split": {k: round(v / steps / per_step, 3) for k, v in spent.items()}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="small")
    p.add_argument("--seconds", type=float, default=3.0, help="utterance length (the demo corpus: 1-7 s)")
    p.add_argument("--batches", type=int, nargs="+", default=[40, 12, 6], help="utterances per batch")
    p.add_argument("--variants", nargs="+", default=["{}"], help="JSON model overrides, one per variant")
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--json", type=Path, help="also write the rows here")
    args = p.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores")
    print("| variant | params | batch | step s | audio-s/s | " + " | ".join(PHASES) + " |")
    print("|---|---|---|---|---|" + "---|" * len(PHASES))
    rows = []
    for variant in args.variants:
        for batch in args.batches:
            r = measure(args.preset, json.loads(variant), batch, args.seconds, args.steps)
            rows.append(r)
            print(f"| {variant} | {r['params_m']} M | {batch} x {args.seconds:g} s | {r['step_s']:.3f} | "
                  f"{r['audio_s_per_s']:.1f} | " + " | ".join(f"{100 * r['split'][k]:.0f} %" for k in PHASES) + " |",
                  flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
