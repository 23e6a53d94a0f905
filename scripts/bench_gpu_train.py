"""GPU training throughput of a model preset on generated batches: audio-seconds per second and peak memory.

Runs the same step as `asr-train` (log-mel on the GPU, SpecAugment, model under autocast, fp32 CTC loss, AdamW,
gradient clipping, GradScaler for fp16) on random waveforms with random transcripts, for each precision, and
prints one table. Generated batches keep the figure about the model and the step, not the disk.

    python scripts/bench_gpu_train.py --model large --steps 200 --batch 32 --seconds 15
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from asr.augment import SpecAugment
from asr.config import AugmentConfig, FeatureConfig, ModelConfig, OptimConfig, to_object
from asr.ctc import ctc_loss
from asr.features import LogMel
from asr.forward import amp_dtype, forward
from asr.model import AcousticModel
from asr.optim import build_optimizer

ROOT = Path(__file__).resolve().parents[1]


def run(preset: str, precision: str, steps: int, batch: int, seconds: float, device: str = "cuda",
        warmup: int = 5) -> dict:
    dev = torch.device(device)
    torch.manual_seed(0)
    mcfg = to_object(OmegaConf.load(ROOT / "configs" / "model" / f"{preset}.yaml"), ModelConfig)
    feats_cfg = FeatureConfig()
    featurizer, spec = LogMel(feats_cfg).to(dev), SpecAugment(AugmentConfig()).to(dev)
    model = AcousticModel(mcfg, feats_cfg.n_mels, 29).to(dev).train()
    opt = build_optimizer(model, OptimConfig(lr=1e-4))
    scaler = torch.amp.GradScaler(dev.type, enabled=precision == "fp16")
    amp = amp_dtype(precision)
    S = int(seconds * feats_cfg.sample_rate)
    g = torch.Generator(device="cpu").manual_seed(0)
    # Lengths spread like a duration bucket (75-100 % of the longest), transcripts at ~15 characters a second.
    lengths = (S * (0.75 + 0.25 * torch.rand(batch, generator=g))).long()
    lengths[0] = S
    waves = 0.1 * torch.randn(batch, S, generator=g)
    waves *= (torch.arange(S)[None] < lengths[:, None])
    U = int(seconds * 15)
    targets = torch.randint(1, 29, (batch, U), generator=g)
    target_lengths = (lengths.float() / S * U).long().clamp(min=1)
    waves, lengths, targets, target_lengths = (t.to(dev) for t in (waves, lengths, targets, target_lengths))
    audio_s = float(lengths.sum()) / feats_cfg.sample_rate

    def step():
        out = forward(featurizer, model, waves, lengths, precision=amp, augment=spec)
        losses, _ = ctc_loss(out.log_probs, out.out_lengths, targets, target_lengths)
        scaler.scale(losses.mean()).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
        return losses.mean()

    cuda = dev.type == "cuda"
    for _ in range(warmup):
        step()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = step()
    if cuda:
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    return {"model": preset, "params_M": round(model.num_parameters() / 1e6, 1), "precision": precision,
            "batch": batch, "seconds": seconds, "steps": steps, "step_ms": round(1000 * dt / steps, 1),
            "audio_s_per_s": round(audio_s * steps / dt),
            "peak_GiB": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
            "final_loss_finite": bool(torch.isfinite(loss))}


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
