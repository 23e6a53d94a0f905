"""What `asr-data doctor` prints and plots (the report of asr.data.doctor's checks), and the command itself."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterable, Sequence

from asr.data.doctor import KINDS, SHOW, Report, check_manifest
from asr.data.manifest import ManifestError
from asr.text import load_tokenizer


def histogram(durations: Sequence[float], bins: int = 12, width: int = 40) -> list[str]:
    """ASCII bars of the duration distribution, one line per equal-width bin."""
    if not durations:
        return []
    lo, hi = min(durations), max(durations)
    step = (hi - lo) / bins if hi > lo else 1.0
    counts = [0] * bins
    for d in durations:
        counts[min(bins - 1, int((d - lo) / step))] += 1
    top = max(counts)
    return [f"  {lo + i * step:6.2f} - {lo + (i + 1) * step:6.2f} s | {'#' * round(width * c / top):<{width}} {c}"
            for i, c in enumerate(counts)]


def format_report(r: Report, show: int = SHOW, full: bool = False) -> str:
    """The console report of one manifest. Checks that found nothing are one summary line (every row and a finer
    duration histogram with `full`, `asr-data doctor --all`)."""
    total = f"{r.total_seconds / 3600:.2f} h" if r.total_seconds >= 360 else f"{r.total_seconds / 60:.1f} min"
    lines = [f"== {r.manifest}", f"  {r.num_utterances} utterances, {total}"]
    if r.durations:
        lines[-1] += f", {min(r.durations):.2f}-{max(r.durations):.2f} s each"
    if r.decode_seconds > 0:
        lines.append(f"  decoded {r.decoded_seconds:.0f} s of audio in {r.decode_seconds:.1f} s "
                     f"({r.decoded_seconds / r.decode_seconds:.0f}x real time)")
    counts = r.counts()
    failed = [kind for kind in KINDS if counts[kind]]
    if failed or full:
        lines += ["", f"  {'severity':<8}  {'check':<45} {'count':>6}"]
    for kind, (sev, label) in KINDS.items():
        if counts[kind] or full:
            lines.append(f"  {sev if counts[kind] else 'ok':<8}  {label:<45} {counts[kind]:>6}")
    if not full:
        passed = len(KINDS) - len(failed)
        lines.append(f"  {'all ' if not failed else ''}{passed} {'other ' if failed else ''}checks passed"
                     " (asr-data doctor --all lists every check)")
    for kind, (sev, label) in KINDS.items():
        found = [f for f in r.findings if f.kind == kind]
        if not found:
            continue
        lines += ["", f"  {sev}: {label} ({len(found)}):"]
        lines += [f"    {f.utt_id}: {f.detail}" for f in found[:show]]
        if len(found) > show:
            lines.append(f"    ... and {len(found) - show} more")
    if failed or full:
        lines.append("")
    if r.median_chars_per_second is not None:
        lines.append(f"  median speaking rate: {r.median_chars_per_second:.1f} chars/s")
    if r.padding_bucketed is not None:
        lines.append(f"  padding in batches: {100 * r.padding_bucketed:.1f}% with duration buckets, "
                     f"{100 * r.padding_unbucketed:.1f}% with one bucket")
    lines += ["  durations:", *histogram(r.durations, bins=12 if full else 6)]
    lines.append(f"  result: {r.num_errors} error(s), {r.num_warnings} warning(s)")
    return "\n".join(lines)


def plot_durations(reports: Iterable[Report], path: str | Path) -> None:
    """Duration histograms of every manifest in one PNG (no pyplot: no global backend state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    reports = list(reports)
    fig = Figure(figsize=(8, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for r in reports:
        ax.hist(r.durations, bins=40, alpha=0.6, label=f"{Path(r.manifest).name} ({r.num_utterances})")
    # The range the trainer keeps (the same command-line values for every manifest).
    longest = max((max(r.durations) for r in reports if r.durations), default=0.0)
    cuts = [d for d in (reports[0].min_duration, reports[0].max_duration) if 0 < d <= longest] if reports else []
    for i, cut in enumerate(cuts):
        ax.axvline(cut, color="k", linestyle="--", linewidth=1, label="min/max duration" if i == 0 else None)
    ax.set_xlabel("duration (s)")
    ax.set_ylabel("utterances")
    ax.legend()
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(str(path), format="png")


def main(args) -> int:
    """`asr-data doctor` (args from asr.data.cli). Every manifest is checked even when an earlier one is unusable."""
    status, reports = 0, []
    tokenizer = None
    if args.tokenizer is not None:
        try:
            tokenizer = load_tokenizer(args.tokenizer)
        except (OSError, ValueError, KeyError) as exc:
            print(f"asr-data: error: --tokenizer: cannot read {args.tokenizer} ({type(exc).__name__}: {exc}); give "
                  "the tokenizer.json a model.tokenizer=sentencepiece run wrote in its run dir", file=sys.stderr)
            return 2
    for path in args.manifests:
        try:
            report = check_manifest(
                path, sample_rate=args.sample_rate, subsampling=args.subsampling, min_duration=args.min_duration,
                max_duration=args.max_duration, max_batch_seconds=args.max_batch_seconds,
                num_buckets=args.num_buckets, jobs=args.jobs, progress=sys.stderr.isatty(), tokenizer=tokenizer)
        except ManifestError as exc:
            print(f"asr-data: error: {exc}", file=sys.stderr)
            status = 2
            continue
        reports.append(report)
        print(format_report(report, full=args.all), flush=True)
        if report.num_errors and status == 0:
            status = 1
    if args.plot is not None and reports:
        plot_durations(reports, args.plot)
        print(f"wrote {args.plot}")
    return status
