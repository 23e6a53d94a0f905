"""Time-to-accuracy against the SpeechBrain peer: same corpus, cores, precision and wall-clock budget, one after
the other, at several seeds. Writes one table (markdown + JSON) and one plot (dev WER/CER against wall-clock
seconds, final test WER per trainer).

    bash scripts/setup.sh && .venv/bin/python scripts/bench_accuracy.py --minutes 14 --seeds 1 2

`--only peer` (or `ours`) runs one side's missing runs and stops; the full call then reuses them.

Ours is `scripts/demo.sh` itself (set-up, corpus, training under the budget, 3-gram LM, test scored with greedy,
beam and beam + LM with the LM weights tuned on dev), run with this budget and each seed. The peer is
`../shared/peers/speechbrain/run_sb_ctc.py` in its own virtualenv (its README says how to make one); it is never
imported here. The peer also gets our LM: `decode_sb_lm.py` beside it decodes its test set with SpeechBrain's own
CTC beam search and KenLM on the demo's ARPA file, its weights tuned on the same dev set as ours. Both sides' test
words wrong are split into words seen in the training transcripts and unseen ones (`asr.metrics.seen_unseen`). Each side's dev curve is on its own dev set (the peer holds out 4 training speakers; ours is the
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
           "test": {d: {"wer": 100 * test[d]["wer"], "cer": 100 * test[d]["cer"], **_ours_split(test[d])}
                    for d in test}}
    result_file.write_text(json.dumps(rec, indent=1))
    (out / "corpus.sha256").write_text(corpus_fingerprint())
    return {**rec, "finished": finished(result_file)}


def _ours_split(decoder: dict) -> dict:
    """asr-eval's seen/unseen counts of one decoder as the table's percentages ({} if it did not report them)."""
    x = decoder.get("seen_unseen")
    return {} if not x else _split_pct(x["seen_wrong"], x["seen_words"], x["unseen_wrong"], x["unseen_words"])


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
    # The peer logs epochs, not updates: a validation's update count is its epoch count (whole epochs plus the
    # fraction of the last) times the run's updates per epoch. An estimate, marked as such in the table.
    per_epoch = res["optimizer_steps"] / max(sum(h.get("epoch_fraction", 1.0) for h in res["dev_history"]), 1e-9)
    done, curve = 0.0, []
    for h in res["dev_history"]:
        done += h.get("epoch_fraction", 1.0)
        curve.append({"elapsed_s": h["elapsed_s"], "epoch": h["epoch"], "step": round(done * per_epoch),
                      "step_estimated": True, "wer": h["dev_WER"], "cer": h["dev_CER"]})
    greedy_tsv = out / Path(test["hypotheses"]).name
    rec = {"trainer": "peer", "seed": seed, "finished": finished(result_file), "steps": res["optimizer_steps"],
           "epochs": res["epochs_completed"], "train_process_s": res["train_wall_s"], "curve": curve,
           "test": {"greedy": {"wer": test["WER"], "cer": test["CER"], **seen_unseen_of(_tsv_pairs(greedy_tsv))}},
           "params": res["param_count"]}
    lm = peer_with_lm(seed, args, out)
    if lm is not None:
        rec["test"]["beam_lm"] = lm
    return rec


LM_ARPA = ROOT / "data" / "lm" / "synthetic_train_3gram.arpa"  # what scripts/demo.sh builds and tunes on dev
TRAIN_MANIFEST = ROOT / "data" / "synthetic" / "manifests" / "train.jsonl"  # the words "seen in training"


def peer_with_lm(seed: int, args, out: Path) -> dict | None:
    """The peer's beam + LM: `decode_sb_lm.py` (SpeechBrain's own CTCBeamSearcher with KenLM) on the peer's
    experiment, with the very ARPA file and dev set our demo tunes on, test decoded at beam 50 with the best
    pair. None when the ARPA file is missing (our side has not run here)."""
    result = out / "beam_lm.json"
    if not result.exists():
        if not LM_ARPA.exists():
            print(f"peer seed {seed}: {LM_ARPA} missing (made by our demo); the peer's beam + LM is left out")
            return None
        run_logged([args.peer_python, str(args.peer.parent / "decode_sb_lm.py"), "--exp-dir", str(out), "--arpa",
                    str(LM_ARPA), "--tune-root", "data/synthetic/dev", "--test-root", "data/synthetic/test",
                    "--threads", str(args.threads), "--json", str(result)], out.parent / f"peer_s{seed}_lm.log")
    res = json.loads(result.read_text())
    test = res["tests"]["test"]
    return {"wer": 100 * test["beam_lm_wer"], "cer": 100 * test["beam_lm_cer"], "alpha": res["best"]["alpha"],
            "beta": res["best"]["beta"], **seen_unseen_of(_tsv_pairs(out / Path(test["hypotheses"]).name))}


def _tsv_pairs(path: Path) -> list[tuple[str, str]]:
    """(reference, hypothesis) pairs of a peer hypothesis file (utt_id, ref, hyp; a header line)."""
    rows = [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines()[1:] if line.strip()]
    return [(r[1], r[2] if len(r) > 2 and r[2] != "<empty>" else "") for r in rows]


def seen_unseen_of(pairs: list[tuple[str, str]]) -> dict:
    """% of reference words wrong among words seen in the training transcripts and among unseen ones: the same
    rule (`asr.metrics.seen_unseen`) asr-eval applies to ours, here on the peer's hypotheses."""
    from asr.data.manifest import read_manifest
    from asr.metrics import seen_unseen
    from asr.text import normalize

    known = {w for u in read_manifest(TRAIN_MANIFEST) for w in normalize(u.text).split()}
    split = seen_unseen([normalize(r) for r, _ in pairs], [normalize(h) for _, h in pairs], known)
    return _split_pct(split.seen_wrong, split.seen_words, split.unseen_wrong, split.unseen_words)


def _split_pct(seen_wrong: int, seen: int, unseen_wrong: int, unseen: int) -> dict:
    return {"seen_wrong_pct": 100 * seen_wrong / max(seen, 1), "unseen_wrong_pct": 100 * unseen_wrong / max(unseen, 1)}


def table(records: list[dict]) -> str:
    """Per run: updates, epochs, dev WER at the budget, test greedy / beam / beam + LM WER and CER, and the test
    words wrong among words seen in the training transcripts / unseen (greedy and beam + LM)."""
    rows = ["| trainer | seed | finished | updates | epochs | dev WER at budget | test greedy WER / CER | test beam | "
            "test beam + LM | words wrong seen / unseen, greedy | same, beam + LM |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        t = r["test"]
        cell = (lambda d: f"{t[d]['wer']:.2f} / {t[d]['cer']:.2f}" if d in t else "—")
        split = (lambda d: f"{t[d]['seen_wrong_pct']:.1f} / {t[d]['unseen_wrong_pct']:.1f}"
                 if "seen_wrong_pct" in t.get(d, {}) else "—")
        last = r["curve"][-1] if r["curve"] else {"wer": float("nan")}
        rows.append(f"| {r['trainer']} | {r['seed']} | {r['finished']} | {r['steps']} | {r['epochs']} | "
                    f"{last['wer']:.2f} | {cell('greedy')} | {cell('beam')} | {cell('beam_lm')} | {split('greedy')} | "
                    f"{split('beam_lm')} |")
    return "\n".join(rows)


def curve_table(records: list[dict]) -> str:
    """The learning curves as rows: every validation of every run (updates, wall-clock seconds, dev WER and CER;
    the peer's updates are estimated from its epochs, marked ~)."""
    rows = ["| trainer | seed | updates | seconds | epoch | dev WER | dev CER |", "|---|---|---|---|---|---|---|"]
    for r in records:
        rows += [f"| {r['trainer']} | {r['seed']} | {'~' if p.get('step_estimated') else ''}{p.get('step', '—')} | "
                 f"{p['elapsed_s']:.0f} | {p['epoch']} | {p['wer']:.2f} | {p['cer']:.2f} |" for p in r["curve"]]
    return "\n".join(rows)


def plot(records: list[dict], png: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 4, figsize=(20, 4.5))
    colors = {"ours": "tab:blue", "peer": "tab:orange"}
    styles = ["-", "--", ":", "-."]
    for r in records:
        xs = [p["elapsed_s"] for p in r["curve"]]
        style = dict(color=colors[r["trainer"]], linestyle=styles[(r["seed"] - 1) % len(styles)], marker="o", ms=3)
        axes[0].plot(xs, [p["wer"] for p in r["curve"]], label=f"{r['trainer']} seed {r['seed']}", **style)
        axes[1].plot(xs, [p["cer"] for p in r["curve"]], label=f"{r['trainer']} seed {r['seed']}", **style)
        axes[2].plot([p.get("step", float("nan")) for p in r["curve"]], [p["wer"] for p in r["curve"]],
                     label=f"{r['trainer']} seed {r['seed']}", **style)
    for ax, what, x in zip(axes[:3], ("WER", "CER", "WER"), ("wall-clock seconds of training",) * 2 +
                           ("optimizer updates (the peer's estimated from its epochs)",)):
        ax.set_xlabel(x)
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
    bars = axes[3].bar(range(len(values)), values, color=cols)
    axes[3].bar_label(bars, fmt="%.1f", fontsize=8)
    axes[3].set_xticks(range(len(values)), labels, fontsize=7)
    axes[3].set_ylabel("test WER % (same test split)")
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
