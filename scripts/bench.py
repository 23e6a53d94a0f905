"""The benchmark suite: every row is ours beside a real alternative on identical input, at 1x-8x the work.

    python scripts/bench.py --quick                       # a few minutes on 2 cores: all sub-benchmarks, small inputs
    python scripts/bench.py --out docs/bench              # the full run (tens of minutes): docs/bench.{md,json}
    python scripts/bench.py --only decoding --checkpoint runs/demo --manifests data/synthetic/manifests/dev.jsonl \
        --peer-python ../.bench-venv/bin/python           # decoding on a trained model, against pyctcdecode

Sub-benchmarks (scripts/benchmarks/): features (our batched log-mel vs librosa), loading (decode + speed
perturbation + features by worker count; data wait in a training loop), batching (duration buckets vs random
batches on LibriSpeech-like durations), step (audio-s/s of small and large, phase split), decoding (greedy,
flashlight beam with and without LM, our reference beam search, pyctcdecode; parallel decoding), backends (the
exported model under onnxruntime and TorchScript vs PyTorch, front-end included), pipeline
(`asr-train` end to end on a generated LibriSpeech-like FLAC corpus: x real time, data wait, GPU use). Benchmarks,
not tests: nothing asserts a time; absolute figures on shared machines are noisy, so compare within one run.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchmarks import backends, batching, decoding, features, loading, pipeline, step  # noqa: E402
from benchmarks.common import cpu_name, table  # noqa: E402

BENCHES = {"features": features.run, "loading": loading.run, "batching": batching.run, "step": step.run,
           "decoding": decoding.run, "backends": backends.run, "pipeline": pipeline.run}


def machine() -> str:
    gpu = f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return f"{cpu_name()}{gpu}; torch {torch.__version__}, {torch.get_num_threads()} threads"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small inputs, scales 1x and 2x (a few minutes on 2 cores)")
    p.add_argument("--only", default=",".join(BENCHES), help=f"comma-separated subset of {', '.join(BENCHES)}")
    p.add_argument("--scales", default=None, help="work multiples, e.g. 1,2,4,8 (default: 1,2 quick, 1,2,4,8 full)")
    p.add_argument("--checkpoint", help="decoding and backends: a trained checkpoint or run dir (default: simulated "
                   "log-probs / random weights)")
    p.add_argument("--manifests", nargs="*", default=["data/synthetic/manifests/dev.jsonl",
                                                     "data/synthetic/manifests/test.jsonl"],
                   help="decoding with --checkpoint: the utterances to decode")
    p.add_argument("--lm-text", help="decoding with --checkpoint: LM training text (default: the demo corpus's)")
    p.add_argument("--peer-python", help="decoding: a Python with pyctcdecode + kenlm (the benchmark's own venv)")
    p.add_argument("--pipeline-hours", type=float, help="pipeline: hours of generated audio (default by device)")
    p.add_argument("--pipeline-steps", type=int, help="pipeline: training steps")
    p.add_argument("--pipeline-batch-seconds", type=float, help="pipeline: audio-seconds per batch")
    p.add_argument("--pipeline-workers", type=int, help="pipeline: DataLoader workers")
    p.add_argument("--out", type=Path, help="write OUT.md and OUT.json")
    args = p.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        p.error(f"--only: unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHES)}")
    scales = [int(s) for s in args.scales.split(",")] if args.scales else ([1, 2] if args.quick else [1, 2, 4, 8])
    started = time.perf_counter()
    rows, timings = [], {}
    for name in names:
        t0 = time.perf_counter()
        print(f"== {name}", file=sys.stderr, flush=True)
        if name == "pipeline":
            spec = pipeline.PipelineSpec.for_device(args.quick)
            for field in ("hours", "steps", "batch_seconds", "workers"):
                value = getattr(args, f"pipeline_{field}")
                if value is not None:
                    setattr(spec, field, value)
            part = pipeline.run(args.quick, scales, spec)
        elif name == "backends":
            part = backends.run(args.quick, scales, checkpoint=args.checkpoint)
        elif name == "decoding":
            part = decoding.run(args.quick, scales, checkpoint=args.checkpoint, manifests=args.manifests,
                                lm_text=args.lm_text, peer_python=args.peer_python)
        else:
            part = BENCHES[name](args.quick, scales)
        rows += part
        timings[name] = round(time.perf_counter() - t0, 1)
        print(table(part), file=sys.stderr, flush=True)
    header = (f"Machine: {machine()}. Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC. "
              f"Command: python scripts/bench.py {' '.join(argv if argv is not None else sys.argv[1:])}. "
              f"Took {time.perf_counter() - started:.0f} s ({', '.join(f'{k} {v} s' for k, v in timings.items())}).")
    text = header + "\n\n" + table(rows)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".md").write_text(text + "\n")
        args.out.with_suffix(".json").write_text(json.dumps({"header": header, "rows": [r.to_dict() for r in rows]},
                                                            indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
