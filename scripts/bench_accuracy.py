"""Time-to-accuracy against the SpeechBrain peer: same corpus, cores, precision and wall-clock budget, one after
the other, at several seeds. Writes one table (markdown + JSON) and one plot (dev WER/CER against wall-clock
seconds, final test WER per trainer).

    bash scripts/setup.sh && .venv/bin/python scripts/bench_accuracy.py --minutes 14 --seeds 1 2

`--only peer` (or `ours`) runs one side's missing runs and stops; the full call then reuses them.

Ours is `scripts/demo.sh` itself (set-up, corpus, training under the budget, 3-gram LM, test scored with greedy,
beam and beam + LM with the LM weights tuned on dev), run with this budget and each seed. The peer is
`../shared/peers/speechbrain/run_sb_ctc.py` in its own virtualenv (its README says how to make one); it is never
imported here. Each side's dev curve is on its own dev set (the peer holds out 4 training speakers; ours is the
corpus's dev split); the test split is the same for both. A finished run (its result file present) is reused, so
an interrupted benchmark continues where it stopped (only on the same corpus: the manifests' sha256 is kept with
each run); delete --work to start over.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PEER = ROOT.parent / "shared" / "peers" / "speechbrain" / "run_sb_ctc.py"


def native_bf16() -> bool:
    """The demo's precision rule: bf16 autocast only where the CPU has native bf16 (AVX512-BF16 or AMX)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def run_logged(cmd: list[str], log_file: Path, env: dict | None = None) -> float:
    """Run cmd with stdout+stderr to log_file; returns wall seconds; exits with the log's tail on failure."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    print("$ " + " ".join(cmd), flush=True)
    t0 = time.monotonic()
    with log_file.open("w") as f:
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT, env=env).returncode
    if rc != 0:
        tail = log_file.read_text(errors="replace").splitlines()[-15:]
        sys.exit(f"command failed (exit {rc}), see {log_file}:\n" + "\n".join(tail))
    return time.monotonic() - t0


def corpus_fingerprint() -> str:
    """sha256 of the corpus manifests (ids, durations, texts): a finished run is reused only on the same corpus."""
    h = hashlib.sha256()
    for split in ("train", "dev", "test"):
        h.update((ROOT / "data" / "synthetic" / "manifests" / f"{split}.jsonl").read_bytes())
    return h.hexdigest()


def reusable(out: Path) -> bool:
    """A finished run (result.json) on this very corpus; anything else in `out` is removed to run again."""
    stamp = out / "corpus.sha256"
    if (out / "result.json").exists() and stamp.exists() and stamp.read_text().strip() == corpus_fingerprint():
        return True
    if out.exists():
        shutil.rmtree(out)
    return False


def finished(path: Path) -> str:
    """When a run's result was written (runs are reused, so the table says when each one ran)."""
    return datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def ours(seed: int, args, work: Path, precision: str) -> dict:
    """The demo, exactly (`scripts/demo.sh`: train under the budget, then test with greedy, beam and beam + LM);
    the run's record."""
    out = work / f"ours_s{seed}"
    result_file = out / "result.json"
    if (ROOT / "data/synthetic/manifests/train.jsonl").exists() and reusable(out):
        return {**json.loads(result_file.read_text()), "finished": finished(result_file)}
    env = {**os.environ, "RUN": str(out / "run"), "SEED": str(seed), "TRAIN_MINUTES": f"{args.minutes:g}",
           "PRECISION": precision, "TQDM_MININTERVAL": "30"}  # the peer gets the same precision
    wall = run_logged(["bash", "scripts/demo.sh"], work / f"ours_s{seed}.log", env)
    summary = json.loads((out / "run" / "summary.json").read_text())
    ev = json.loads((out / "run" / "eval" / "summary.json").read_text())
    test = ev["sets"]["test"]["decoders"]
    curve = [{"elapsed_s": h["elapsed_s"], "step": h["step"], "epoch": h["epoch"],
              "wer": 100 * h["dev"]["wer_greedy"], "cer": 100 * h["dev"]["cer_greedy"]} for h in summary["history"]]
    rec = {"trainer": "ours", "seed": seed, "steps": summary["steps"], "epochs": summary["epochs"],
           "demo_wall_s": round(wall, 1), "curve": curve, "checkpoint_step": ev["step"],
           "test": {d: {"wer": 100 * test[d]["wer"], "cer": 100 * test[d]["cer"]} for d in test}}
    result_file.write_text(json.dumps(rec, indent=1))
    (out / "corpus.sha256").write_text(corpus_fingerprint())
    return {**rec, "finished": finished(result_file)}


def peer(seed: int, args, work: Path, precision: str) -> dict:
    """The SpeechBrain runner under the same budget, cores and precision; its record in our format."""
    out = work / f"peer_s{seed}"
    result_file = out / "result.json"
    if not reusable(out):
        tmp = work / f"peer_s{seed}.running"
        run_logged([args.peer_python, str(args.peer), "--train-root", "data/synthetic/train", "--test-root",
                    "data/synthetic/test", "--minutes", str(args.minutes), "--precision", precision,
                    "--seed", str(seed), "--threads", str(args.threads), "--out-dir", str(tmp), "--overwrite"],
                   work / f"peer_s{seed}.log")
        tmp.rename(out)
        (out / "corpus.sha256").write_text(corpus_fingerprint())
    res = json.loads(result_file.read_text())
    test = next(iter(res["tests"].values()))
    curve = [{"elapsed_s": h["elapsed_s"], "epoch": h["epoch"], "wer": h["dev_WER"], "cer": h["dev_CER"]}
             for h in res["dev_history"]]
    return {"trainer": "peer", "seed": seed, "finished": finished(result_file), "steps": res["optimizer_steps"],
            "epochs": res["epochs_completed"],
            "train_process_s": res["train_wall_s"], "curve": curve,
            "test": {"greedy": {"wer": test["WER"], "cer": test["CER"]}}, "params": res["param_count"]}


def table(records: list[dict]) -> str:
    rows = ["| trainer | seed | finished | updates | epochs | dev WER at budget | test greedy WER / CER | test beam | "
            "test beam + LM |", "|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        t = r["test"]
        cell = (lambda d: f"{t[d]['wer']:.2f} / {t[d]['cer']:.2f}" if d in t else "—")
        last = r["curve"][-1] if r["curve"] else {"wer": float("nan")}
        rows.append(f"| {r['trainer']} | {r['seed']} | {r['finished']} | {r['steps']} | {r['epochs']} | "
                    f"{last['wer']:.2f} | {cell('greedy')} | {cell('beam')} | {cell('beam_lm')} |")
    return "\n".join(rows)


def curve_table(records: list[dict]) -> str:
    """The learning curves as rows: every validation of every run (wall-clock seconds, dev WER and CER)."""
    rows = ["| trainer | seed | seconds | epoch | dev WER | dev CER |", "|---|---|---|---|---|---|"]
    for r in records:
        rows += [f"| {r['trainer']} | {r['seed']} | {p['elapsed_s']:.0f} | {p['epoch']} | {p['wer']:.2f} | "
                 f"{p['cer']:.2f} |" for p in r["curve"]]
    return "\n".join(rows)


def plot(records: list[dict], png: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    colors = {"ours": "tab:blue", "peer": "tab:orange"}
    styles = ["-", "--", ":", "-."]
    for r in records:
        xs = [p["elapsed_s"] for p in r["curve"]]
        style = dict(color=colors[r["trainer"]], linestyle=styles[(r["seed"] - 1) % len(styles)], marker="o", ms=3)
        axes[0].plot(xs, [p["wer"] for p in r["curve"]], label=f"{r['trainer']} seed {r['seed']}", **style)
        axes[1].plot(xs, [p["cer"] for p in r["curve"]], label=f"{r['trainer']} seed {r['seed']}", **style)
    for ax, what in zip(axes[:2], ("WER", "CER")):
        ax.set_xlabel("wall-clock seconds of training")
        ax.set_ylabel(f"dev {what} % (greedy, each trainer's own dev set)")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    labels, values, cols = [], [], []
    for r in records:
        for dec in ("greedy", "beam_lm"):
            if dec in r["test"]:
                labels.append(f"{r['trainer']} s{r['seed']}\n{dec}")
                values.append(r["test"][dec]["wer"])
                cols.append(colors[r["trainer"]] if dec == "greedy" else "tab:green")
    bars = axes[2].bar(range(len(values)), values, color=cols)
    axes[2].bar_label(bars, fmt="%.1f", fontsize=8)
    axes[2].set_xticks(range(len(values)), labels, fontsize=7)
    axes[2].set_ylabel("test WER % (same test split)")
    fig.suptitle(title)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=14.0, help="wall-clock training budget of each run")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2], help="seed 1 is the demo's own")
    p.add_argument("--threads", type=int, default=2, help="the peer's torch threads (ours uses all cores)")
    p.add_argument("--peer-python", default=str(ROOT.parent / ".peer-venv" / "bin" / "python"),
                   help="python of the virtualenv with speechbrain (never the project's)")
    p.add_argument("--peer", type=Path, default=PEER, help="the peer's runner script")
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "bench_accuracy")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "bench_accuracy",
                   help="writes OUT.md, OUT.json and OUT.png")
    p.add_argument("--skip-peer", action="store_true", help="ours only (the peer's records are left out)")
    p.add_argument("--only", choices=["ours", "peer"],
                   help="run this side's missing runs now and stop (no table); a later full call reuses them")
    args = p.parse_args(argv)
    precision = "bf16" if native_bf16() else "fp32"  # demo.sh's default rule; passed to both trainers
    if not args.skip_peer and not args.peer.exists():  # checked before training anything
        sys.exit(f"--peer {args.peer} not found: pass the path of run_sb_ctc.py (the default assumes this checkout "
                 f"sits beside shared/) or --skip-peer")
    if not args.skip_peer and not Path(args.peer_python).exists():
        sys.exit(f"--peer-python {args.peer_python} not found: make the peer's virtualenv "
                 f"({args.peer.parent}/README.md) or pass --skip-peer")
    args.work.mkdir(parents=True, exist_ok=True)
    records = []
    for seed in args.seeds:  # one after the other, never two at once: they share the cores
        if args.only != "peer":
            records.append(ours(seed, args, args.work, precision))  # first: demo.sh also installs, makes the corpus
        if not args.skip_peer and args.only != "ours":
            records.append(peer(seed, args, args.work, precision))
    if args.only:
        print(f"{args.only}: {len(records)} run(s) finished in {args.work}; run again without --only for the table")
        return
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    title = f"{args.minutes:g}-minute budget, {os.cpu_count()} cores ({cpu}), {precision}, {when}"
    md = (f"Command: `python scripts/bench_accuracy.py --minutes {args.minutes:g} --seeds "
          f"{' '.join(map(str, args.seeds))}`; machine: {title}.\n\n{table(records)}\n\n"
          f"Learning curves (greedy, each trainer's own dev set):\n\n{curve_table(records)}\n")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text(md)
    args.out.with_suffix(".json").write_text(json.dumps({"title": title, "records": records}, indent=1))
    plot(records, args.out.with_suffix(".png"), title)
    print(md)
    print(f"wrote {args.out.with_suffix('.md')}, .json and .png")


if __name__ == "__main__":
    main()
