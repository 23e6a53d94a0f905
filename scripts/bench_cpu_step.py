"""CPU training-step throughput by batch size and model shape (the `step` sub-benchmark of scripts/bench.py,
with a choice of batch sizes and model overrides): audio-seconds per second of the trainer's own step
(asr.train.step.train_step) on generated batches.

    python scripts/bench_cpu_step.py --seconds 3 --batches 40 12 6 --variants '{}' '{"rnn_type": "gru"}'

Generated batches hold utterances of one length; `--corpus N` times the first N batches of the trainer's own loader
on the demo corpus instead (mixed lengths, the data preset's buckets), the same batches for every variant: the step
cost training sees. (Generated 3-s batches put the 20 ms small preset at 1.05x the 40 ms one's step in bf16 where the
14-minute demo made 1.39x fewer updates.)

    python scripts/bench_cpu_step.py --corpus 40 --variants '{}' '{"conv_time_strides": [2, 2], "rnn_hidden": 256}'
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchmarks.step import audio_seconds, corpus_batches, measure, measure_batches  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="small")
    p.add_argument("--seconds", type=float, default=3.0, help="utterance length (the demo corpus: 1-7 s)")
    p.add_argument("--batches", type=int, nargs="+", default=[40, 12, 6], help="utterances per batch")
    p.add_argument("--variants", nargs="+", default=["{}"], help="JSON model overrides, one per variant")
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"], help="trainer.precision")
    p.add_argument("--corpus", type=int, metavar="N", help="time N batches of the demo corpus's own loader instead "
                   "of generated ones (--batches and --seconds are then unused)")
    p.add_argument("--rounds", type=int, default=1, help="--corpus: time the variants this many times, interleaved")
    p.add_argument("--json", type=Path, help="also write the rows here")
    args = p.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores")
    rows = corpus_rows(args) if args.corpus else generated_rows(args)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


def corpus_rows(args: argparse.Namespace) -> list[dict]:
    """Every variant on the same args.corpus loader batches (+1 warm-up), args.rounds times, interleaved."""
    batches = corpus_batches(args.corpus + 1)
    print(f"demo corpus: {len(batches) - 1} batches of the trainer's loader, {audio_seconds(batches[1:]):.0f} s of "
          f"audio (+1 warm-up)\n")
    print("| variant | params | round | step s | audio-s/s |")
    print("|---|---|---|---|---|")
    rows = []
    for k in range(args.rounds):
        for variant in args.variants:
            r = {**measure_batches(args.preset, json.loads(variant), batches, args.precision), "round": k + 1}
            rows.append(r)
            print(f"| {variant} | {r['params_m']} M | {k + 1} | {r['step_s']:.3f} | {r['audio_s_per_s']:.1f} |",
                  flush=True)
    return rows


def generated_rows(args: argparse.Namespace) -> list[dict]:
    """Every variant on generated batches of args.batches utterances of args.seconds."""
    print("| variant | params | batch | step s | audio-s/s |")
    print("|---|---|---|---|---|")
    rows = []
    for variant in args.variants:
        for batch in args.batches:
            r = measure(args.preset, json.loads(variant), batch, args.seconds, args.steps, args.precision)
            rows.append(r)
            print(f"| {variant} | {r['params_m']} M | {batch} x {args.seconds:g} s | {r['step_s']:.3f} | "
                  f"{r['audio_s_per_s']:.1f} |", flush=True)
    return rows


if __name__ == "__main__":
    main()
