"""Signals against oneDNN's LSTM kernels, with and without an alternate signal stack (asr/signal_stack.py).

Each run is a child process that trains a BiLSTM on CPU (one thread) for --seconds while a second process sends it
SIGTERM every --interval-ms; the child has a Python SIGTERM handler (as `asr-train` has), so every signal is
handled. "bare" children handle them on the interrupted thread's stack, "protected" ones call
`ensure_alternate_signal_stack()` first. Prints how each run ended; exits 1 if a protected run did not finish.

    python scripts/check_signal_stack.py --runs 6 --seconds 5
    python scripts/check_signal_stack.py --only protected --runs 1 --seconds 3   # what the test runs
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child(protect: bool, seconds: float, interval_ms: float) -> None:
    import torch

    if protect:
        sys.path.insert(0, str(ROOT))
        from asr.signal_stack import ensure_alternate_signal_stack
        ensure_alternate_signal_stack()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    handled = [0]
    signal.signal(signal.SIGTERM, lambda *_: handled.__setitem__(0, handled[0] + 1))
    lstm = torch.nn.LSTM(160, 64, num_layers=2, bidirectional=True, batch_first=True)  # the small preset's shape
    sender = subprocess.Popen([sys.executable, "-c", _SENDER, str(os.getpid()), str(interval_ms / 1000)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    steps, start = 0, time.monotonic()
    try:
        while time.monotonic() - start < seconds:
            x = torch.randn(7 + steps % 5, 50 + (steps * 13) % 200, 160, requires_grad=True)  # (B, T, F)
            out, _ = lstm(x)
            out.sum().backward()
            steps += 1
    finally:
        sender.kill()
        sender.wait()
    print(f"finished: {steps} steps, {handled[0]} signals handled", flush=True)


_SENDER = """
import os, signal, sys, time
pid, pause = int(sys.argv[1]), float(sys.argv[2])
while os.getppid() == pid:  # a crashed child is a zombie (kill() still succeeds) and no longer our parent
    os.kill(pid, signal.SIGTERM)
    time.sleep(pause)
"""


def ended(returncode: int) -> str:
    if returncode < 0:
        return f"killed by {signal.Signals(-returncode).name}"
    return "finished" if returncode == 0 else f"exit {returncode}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=6, help="children per variant")
    ap.add_argument("--seconds", type=float, default=5.0, help="training time of each child")
    ap.add_argument("--interval-ms", type=float, default=0.5, help="pause between two signals")
    ap.add_argument("--only", choices=["bare", "protected"], help="run one variant")
    ap.add_argument("--child", choices=["bare", "protected"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child == "protected", args.seconds, args.interval_ms)
        return 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    failed_protected = 0
    for variant in [args.only] if args.only else ["bare", "protected"]:
        outcomes = []
        for _ in range(args.runs):
            t0 = time.monotonic()
            r = subprocess.run([sys.executable, __file__, "--child", variant, "--seconds", str(args.seconds),
                                "--interval-ms", str(args.interval_ms)], env=env, capture_output=True, text=True)
            last = (r.stdout + r.stderr).strip().splitlines()[-1:] or [""]
            outcomes.append(r.returncode)
            print(f"{variant:9s} {ended(r.returncode):22s} after {time.monotonic() - t0:5.1f} s  {last[0][:90]}",
                  flush=True)
        bad = sum(code != 0 for code in outcomes)
        print(f"{variant}: {bad} of {len(outcomes)} runs did not finish")
        if variant == "protected":
            failed_protected = bad
    return 1 if failed_protected else 0


if __name__ == "__main__":
    sys.exit(main())
