"""Per-call time of an exported TorchScript model with and without the graph executor's optimisation pass.

Each mode runs in a fresh process (the executor's state is per process, as for a user's `asr-transcribe`): load the
file, then transcribe real utterances one per call, timing every call; the first calls show the executor's
(re-)optimisation pauses, the rest the steady rate. Modes alternate for `--rounds` rounds.

    python scripts/bench_torchscript.py --model runs/demo/export/model.pt --files data/synthetic/test --calls 12
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, sys, time
from pathlib import Path
import soundfile as sf, torch
from asr.inference.exported import load_torchscript
optimise = sys.argv[1] == "optimised"
files = json.loads(sys.argv[3])
module = load_torchscript(Path(sys.argv[2]))
times, audio = [], []
for f in files:
    w, sr = sf.read(f, dtype="float32")
    x, n = torch.from_numpy(w)[None], torch.tensor([len(w)])
    t = time.perf_counter()
    with torch.no_grad(), torch.jit.optimized_execution(optimise):
        module(x, n)
    times.append(time.perf_counter() - t)
    audio.append(len(w) / sr)
print(json.dumps({"times": times, "audio": audio}))
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, required=True, help="a TorchScript file written by asr-export")
    p.add_argument("--files", type=Path, required=True, help="a folder of .flac files (sorted; the first --calls)")
    p.add_argument("--calls", type=int, default=12)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    files = [str(f) for f in sorted(args.files.rglob("*.flac"))[:args.calls]]
    if not files:
        sys.exit(f"bench_torchscript: no .flac files under {args.files}")
    rows = []
    for r in range(args.rounds):
        for mode in ("optimised", "plain"):
            out = subprocess.run([sys.executable, "-c", CHILD, mode, str(args.model), json.dumps(files)],
                                 capture_output=True, text=True, check=True).stdout
            res = json.loads(out.strip().splitlines()[-1])
            t = res["times"]
            rows.append((r + 1, mode, t[0], max(t[:3]), statistics.median(t[3:]) if len(t) > 3 else float("nan"),
                         sum(t), sum(res["audio"])))
    print("| round | executor | 1st call s | slowest of first 3 s | median of the rest s | all calls s | audio s |")
    print("|---|---|---|---|---|---|---|")
    for r, mode, first, slow3, med, tot, audio in rows:
        print(f"| {r} | {mode} | {first:.3f} | {slow3:.3f} | {med:.3f} | {tot:.2f} | {audio:.1f} |")
    for mode in ("optimised", "plain"):
        tots = [row[5] for row in rows if row[1] == mode]
        print(f"{mode}: all calls {statistics.median(tots):.2f} s (median of {len(tots)} processes)")


if __name__ == "__main__":
    main()
