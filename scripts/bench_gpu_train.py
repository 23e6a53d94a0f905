"""GPU training throughput of a model preset on generated batches: audio-seconds per second and peak memory.

Runs the step `asr-train` takes (asr.train.step.train_step on the Trainee asr.train.components.build_trainee builds: log-mel on
the GPU, SpecAugment, model under autocast, the objective with intermediate CTC in fp32, AdamW, gradient clipping,
GradScaler for fp16) on random waveforms with random transcripts, for each precision, and prints one table. Generated batches keep the figure about the model and the step, not the disk.

    python scripts/bench_gpu_train.py --model large --steps 200 --batch 32 --seconds 15
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchmarks import step as bench_step  # noqa: E402

from asr.data.dataset import Batch  # noqa: E402


def run(preset: str, precision: str, steps: int, batch: int, seconds: float, device: str = "cuda",
        warmup: int = 5) -> dict:
    trainee = bench_step.trainee(preset, precision=precision, device=device)
    dev, sr = trainee.device, trainee.cfg.features.sample_rate
    S = int(seconds * sr)
    g = torch.Generator(device="cpu").manual_seed(0)
    # Lengths spread like a duration bucket (75-100 % of the longest), transcripts at ~15 characters a second.
    lengths = (S * (0.75 + 0.25 * torch.rand(batch, generator=g))).long()
    lengths[0] = S
    waves = 0.1 * torch.randn(batch, S, generator=g)
    waves *= (torch.arange(S)[None] < lengths[:, None])
    U = int(seconds * 15)
    targets = torch.randint(1, 29, (batch, U), generator=g)
    target_lengths = (lengths.float() / S * U).long().clamp(min=1)
    data = Batch(ids=[str(i) for i in range(batch)], waves=waves, wave_lengths=lengths, targets=targets,
                 target_lengths=target_lengths, texts=[""] * batch).to(dev)
    audio_s = float(lengths.sum()) / sr
    cuda = dev.type == "cuda"
    bench_step.timed_steps(trainee, [data] * warmup)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    dt = bench_step.timed_steps(trainee, [data] * (steps + 1)) * (steps + 1) / steps  # timed_steps skips one
    finite = all(torch.isfinite(p).all() for p in trainee.raw_model.parameters())
    return {"model": preset, "params_M": round(trainee.raw_model.num_parameters() / 1e6, 1), "precision": precision,
            "batch": batch, "seconds": seconds, "steps": steps, "step_ms": round(1000 * dt / steps, 1),
            "audio_s_per_s": round(audio_s * steps / dt),
            "peak_GiB": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
            "final_loss_finite": bool(finite)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="large")
    ap.add_argument("--precisions", default="fp32,fp16,bf16")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out", type=Path, default=None, help="append JSON lines here")
    args = ap.parse_args()
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    print(f"device: {name}  torch {torch.__version__}")
    print(f"{'model':8s} {'params':>7s} {'prec':5s} {'B':>3s} {'step ms':>8s} {'audio-s/s':>10s} {'peak GiB':>9s}")
    for p in args.precisions.split(","):
        r = run(args.model, p, args.steps, args.batch, args.seconds, args.device)
        print(f"{r['model']:8s} {r['params_M']:6.1f}M {p:5s} {r['batch']:3d} {r['step_ms']:8.1f} "
              f"{r['audio_s_per_s']:10d} {r['peak_GiB'] or 0:9.2f}  loss finite: {r['final_loss_finite']}", flush=True)
        if args.out:
            with args.out.open("a") as f:
                f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
