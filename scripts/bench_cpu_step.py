"""CPU training-step throughput by batch size and model shape (the `step` sub-benchmark of scripts/bench.py,
with a choice of batch sizes and model overrides): audio-seconds per second of the trainer's own step
(asr.train.step.train_step) on generated batches.

    python scripts/bench_cpu_step.py --seconds 3 --batches 40 12 6 --variants '{}' '{"rnn_type": "gru"}'
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchmarks.step import measure  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="small")
    p.add_argument("--seconds", type=float, default=3.0, help="utterance length (the demo corpus: 1-7 s)")
    p.add_argument("--batches", type=int, nargs="+", default=[40, 12, 6], help="utterances per batch")
    p.add_argument("--variants", nargs="+", default=["{}"], help="JSON model overrides, one per variant")
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"], help="trainer.precision")
    p.add_argument("--json", type=Path, help="also write the rows here")
    args = p.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores")
    print("| variant | params | batch | step s | audio-s/s |")
    print("|---|---|---|---|---|")
    rows = []
    for variant in args.variants:
        for batch in args.batches:
            r = measure(args.preset, json.loads(variant), batch, args.seconds, args.steps, args.precision)
            rows.append(r)
            print(f"| {variant} | {r['params_m']} M | {batch} x {args.seconds:g} s | {r['step_s']:.3f} | "
                  f"{r['audio_s_per_s']:.1f} |", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
