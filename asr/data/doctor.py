"""`asr-data doctor`: a pre-flight check of manifests, reporting every problem by utterance id.

It reads each audio header and decodes every file (in `jobs` processes: a FLAC whose header is fine but
whose data is truncated only shows up when decoded), then checks what would hurt training: sample rate,
channels, manifest vs real duration, empty or un-normalized text, characters outside the vocabulary,
durations the trainer drops, utterances CTC cannot fit after subsampling (the loss would be +inf), and
speaking-rate outliers (often a transcript paired with the wrong audio). It also shows the duration
histogram and the padding a duration-bucketed sampler would waste.

Exit status: 0 clean (warnings allowed), 1 errors found, 2 unusable input (missing/empty/malformed manifest).
"""
from __future__ import annotations

import math
import os
import statistics
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence, TextIO

import soundfile as sf
from tqdm import tqdm

from asr.audio import AudioLoadError, audio_info
from asr.config import ConfigError, FeatureConfig
from asr.ctc import required_frames
from asr.data.manifest import ManifestError, Utterance, read_manifest
from asr.data.sampler import DurationBucketSampler, padding_ratio
from asr.text import CharTokenizer, normalize

DURATION_TOLERANCE = 0.05  # seconds; more than a few frames of disagreement means the manifest is stale
RATE_FACTOR = 2.5  # chars/s this many times above or below the median is flagged
MIN_UTTS_FOR_RATE = 5  # a median of fewer utterances says nothing
SHOW = 10  # ids printed per kind

# kind -> (severity, label). Errors break training or scoring; warnings are worth a look. Order = print order.
KINDS: dict[str, tuple[str, str]] = {
    "missing": ("error", "audio file missing"),
    "unreadable": ("error", "audio header unreadable"),
    "corrupt": ("error", "audio data undecodable or truncated"),
    "sample_rate": ("error", "sample rate differs from --sample-rate"),
    "bad_duration": ("error", "manifest duration not a number >= 0"),
    "duration_mismatch": ("error", f"manifest duration off by > {DURATION_TOLERANCE * 1000:.0f} ms"),
    "empty_text": ("error", "empty transcript"),
    "unknown_chars": ("error", "characters outside the vocabulary"),
    "ctc_infeasible": ("error", "too few frames for CTC after subsampling"),
    "multichannel": ("warning", "more than one channel (down-mixed on load)"),
    "silent": ("warning", "digital silence"),
    "not_normalized": ("warning", "text differs from normalize(text)"),
    "too_short": ("warning", "shorter than --min-duration (dropped)"),
    "too_long": ("warning", "longer than --max-duration (dropped)"),
    "rate_outlier": ("warning", f"speaking rate > {RATE_FACTOR}x off the median"),
}


@dataclass(frozen=True)
class Finding:
    kind: str  # a key of KINDS
    utt_id: str
    detail: str  # one line naming the file or the numbers


@dataclass
class Report:
    manifest: str
    num_utterances: int
    total_seconds: float  # sum of the valid manifest durations
    durations: list[float]  # per utterance: the real duration when readable, else the manifest's (if valid)
    findings: list[Finding] = field(default_factory=list)
    median_chars_per_second: float | None = None
    padding_bucketed: float | None = None  # padding fraction of batch seconds, DurationBucketSampler, num_buckets
    padding_unbucketed: float | None = None  # ... with one bucket (random batches), for comparison
    decode_seconds: float = 0.0  # wall time of the header + decode pass
    decoded_seconds: float = 0.0  # audio seconds decoded
    min_duration: float = 0.0  # the range the trainer keeps (for the plot)
    max_duration: float = math.inf

    def ids(self, kind: str) -> list[str]:
        return [f.utt_id for f in self.findings if f.kind == kind]

    def counts(self) -> Counter:
        return Counter(f.kind for f in self.findings)

    @property
    def num_errors(self) -> int:
        return sum(1 for f in self.findings if KINDS[f.kind][0] == "error")

    @property
    def num_warnings(self) -> int:
        return len(self.findings) - self.num_errors


# ---------------------------------------------------------------------------------------------- frames


def subsampled_frames(frames: int, strides: Sequence[int]) -> int:
    """Frames after a stack of time convs with kernel 3, padding 1: T' = floor((T - 1) / s) + 1 per layer."""
    for s in strides:
        frames = (frames - 1) // s + 1
    return frames


def output_frames(duration_s: float, sample_rate: int, hop: int, subsampling: int) -> int:
    """T' the model emits for `duration_s` of audio: front-end frames T = 1 + S // hop (LogMel.output_lengths),
    then stride-2 conv layers (2 -> one layer, 4 -> two). Nested floors compose, floor(floor(x/a)/b) =
    floor(x/ab), so any stack whose strides multiply to `subsampling` gives T' = (T - 1) // subsampling + 1."""
    if subsampling < 1:
        raise ValueError(f"subsampling must be >= 1, got {subsampling}")
    samples = int(round(duration_s * sample_rate))
    return subsampled_frames(1 + samples // hop, [subsampling])


# ---------------------------------------------------------------------------------------------- audio


def _probe(path: str) -> dict:
    """Header and full decode of one file, as plain data (runs in worker processes)."""
    if not os.path.isfile(path):
        return {"missing": True}
    try:
        info = audio_info(path)
    except AudioLoadError as exc:
        return {"header_error": str(exc)}
    out = {"sample_rate": info.sample_rate, "channels": info.channels, "frames": info.frames}
    if info.frames == 0:
        out["decode_error"] = f"{path}: the file holds no samples"
        return out
    decoded, peak = 0, 0.0
    try:
        with sf.SoundFile(path) as f:
            for block in f.blocks(blocksize=1 << 16, dtype="float32", always_2d=True):
                decoded += block.shape[0]
                if block.size:
                    peak = max(peak, float(abs(block).max()))
    except Exception as exc:  # libsndfile's error types vary by version and codec
        out["decode_error"] = f"{path}: decoding failed after {decoded} of {info.frames} frames: {exc}"
        return out
    if decoded != info.frames:
        out["decode_error"] = f"{path}: header says {info.frames} frames, decoded {decoded}"
    out["peak"] = peak
    return out


@contextmanager
def _quiet_native_stderr() -> Iterator[TextIO]:
    """libsndfile's FLAC/MP3 decoders print warnings straight to fd 2 (the findings already carry the error):
    point fd 2 at /dev/null for the block and yield a stream on the real stderr for the progress bar."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    real = os.fdopen(os.dup(saved), "w", buffering=1)
    try:
        yield real
    finally:
        real.close()
        os.dup2(saved, 2)
        os.close(saved)


def probe_files(paths: Sequence[str], jobs: int | None = None, progress: bool = False) -> list[dict]:
    """`_probe` every path, in `jobs` threads (default: all cores) with a tqdm bar on stderr.

    Threads, not a process pool: decoding runs in libsndfile and numpy, which release the GIL, and a forked
    pool would copy the caller's torch/OpenMP threads and signal handlers (see asr/train.py)."""
    if not jobs:
        jobs = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    bar = dict(total=len(paths), desc="decoding", unit="file", disable=not progress)
    with _quiet_native_stderr() as stderr:
        if jobs <= 1 or len(paths) < 16:
            return [_probe(p) for p in tqdm(paths, file=stderr, **bar)]
        with ThreadPoolExecutor(jobs, thread_name_prefix="doctor") as pool:
            return list(tqdm(pool.map(_probe, paths), file=stderr, **bar))


# ---------------------------------------------------------------------------------------------- padding


def padding_waste(durations: Sequence[float], max_batch_seconds: float, num_buckets: int, seed: int = 0) -> float:
    """Padded fraction of batch seconds in one shuffled epoch of the trainer's DurationBucketSampler."""
    durs = [d for d in durations if 0 <= d <= max_batch_seconds]  # the sampler rejects the rest
    if not durs:
        return 0.0
    sampler = DurationBucketSampler(durs, max_batch_seconds, num_buckets, shuffle=True, seed=seed)
    return padding_ratio(sampler.global_batches(1), durs)  # epoch 1: past SortaGrad's sorted epoch 0


# ---------------------------------------------------------------------------------------------- checks


def check_utterances(utts: Sequence[Utterance], manifest: str = "<utterances>", *, sample_rate: int = 16000,
                     subsampling: int = 4, hop_length: int | None = None, min_duration: float = 0.3,
                     max_duration: float = 20.0, max_batch_seconds: float = 120.0, num_buckets: int = 10,
                     jobs: int | None = None, progress: bool = False,
                     tokenizer: CharTokenizer | None = None) -> Report:
    """Run every check on already-parsed utterances (the trainer calls this on its merged manifests)."""
    if subsampling < 1:
        raise ConfigError(f"--subsampling: must be >= 1 (the product of model.conv_time_strides), got {subsampling}")
    tok = tokenizer or CharTokenizer()
    hop = hop_length or FeatureConfig(sample_rate=sample_rate).hop_length
    t0 = time.perf_counter()
    probes = probe_files([u.audio_filepath for u in utts], jobs=jobs, progress=progress)
    decode_seconds = time.perf_counter() - t0

    findings: list[Finding] = []
    durations: list[float] = []
    rates: list[tuple[str, float]] = []
    decoded_seconds = 0.0

    def add(kind: str, u: Utterance, detail: str) -> None:
        findings.append(Finding(kind, u.id, detail))

    for u, p in zip(utts, probes):
        real = None
        valid = math.isfinite(u.duration) and u.duration >= 0
        if not valid:
            add("bad_duration", u, f"duration {u.duration!r} in the manifest")
        if p.get("missing"):
            add("missing", u, f"audio file not found: {u.audio_filepath}")
        elif "header_error" in p:
            add("unreadable", u, p["header_error"])
        else:
            real = p["frames"] / p["sample_rate"]
            if "decode_error" in p:
                add("corrupt", u, p["decode_error"])
            else:
                decoded_seconds += real
                if p["peak"] == 0.0:
                    add("silent", u, f"{u.audio_filepath}: every sample is zero")
            if p["sample_rate"] != sample_rate:
                add("sample_rate", u, f"{u.audio_filepath}: {p['sample_rate']} Hz, expected {sample_rate} Hz")
            if p["channels"] > 1:
                add("multichannel", u, f"{u.audio_filepath}: {p['channels']} channels")
            if valid and abs(real - u.duration) > DURATION_TOLERANCE:
                add("duration_mismatch", u, f"manifest says {u.duration:.3f} s, file has {real:.3f} s")
        duration = real if real is not None else u.duration if valid else None
        if duration is not None:
            durations.append(duration)

        if u.duration < min_duration:
            add("too_short", u, f"{u.duration:.2f} s < {min_duration} s")
        elif u.duration > max_duration:
            add("too_long", u, f"{u.duration:.2f} s > {max_duration} s")

        norm = normalize(u.text)
        if not u.text.strip():
            add("empty_text", u, "transcript is empty")
            continue
        unknown = tok.unknown_chars(u.text)
        if unknown:
            add("unknown_chars", u, f"{''.join(sorted(unknown))!r} in {u.text!r}; normalize() gives {norm!r}")
        elif norm != u.text:
            add("not_normalized", u, f"{u.text!r} -> {norm!r}")
        if not norm or duration is None:
            continue  # nothing left to fit (the text finding above says why), or no length to fit it in
        labels = tok.encode(norm)
        have = output_frames(duration, sample_rate, hop, subsampling)
        need = required_frames(labels)
        if have < need:
            add("ctc_infeasible", u, f"{len(labels)} labels need {need} frames, {duration:.2f} s gives {have} "
                                     f"after {subsampling}x subsampling")
        elif min_duration <= duration <= max_duration and duration > 0:
            # Only utterances that train: on very short clips leading silence dominates the rate.
            rates.append((u.id, len(norm) / duration))

    median_rate = None
    if len(rates) >= MIN_UTTS_FOR_RATE:
        median_rate = statistics.median(r for _, r in rates)
        by_id = {u.id: u for u in utts}
        for uid, r in rates:
            if r > median_rate * RATE_FACTOR or r < median_rate / RATE_FACTOR:
                add("rate_outlier", by_id[uid], f"{r:.1f} chars/s (median {median_rate:.1f})")

    order = {k: i for i, k in enumerate(KINDS)}
    findings.sort(key=lambda f: order[f.kind])  # stable: manifest order within a kind
    kept = [u.duration for u in utts if min_duration <= u.duration <= max_duration]  # what the sampler sees
    total = sum(u.duration for u in utts if math.isfinite(u.duration) and u.duration > 0)
    return Report(
        manifest=manifest, num_utterances=len(utts), total_seconds=total,
        durations=durations, findings=findings, median_chars_per_second=median_rate,
        padding_bucketed=padding_waste(kept, max_batch_seconds, num_buckets) if kept else None,
        padding_unbucketed=padding_waste(kept, max_batch_seconds, 1) if kept else None,
        decode_seconds=decode_seconds, decoded_seconds=decoded_seconds, min_duration=min_duration,
        max_duration=max_duration)


def check_manifest(path: str | Path, **kwargs) -> Report:
    """Read `path` (ManifestError if missing, empty or malformed) and run `check_utterances` on it."""
    return check_utterances(read_manifest(path), manifest=str(path), **kwargs)


# ---------------------------------------------------------------------------------------------- output


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


def format_report(r: Report, show: int = SHOW) -> str:
    total = f"{r.total_seconds / 3600:.2f} h" if r.total_seconds >= 360 else f"{r.total_seconds / 60:.1f} min"
    lines = [f"== {r.manifest}", f"  {r.num_utterances} utterances, {total}"]
    if r.durations:
        lines[-1] += f", {min(r.durations):.2f}-{max(r.durations):.2f} s each"
    if r.decode_seconds > 0:
        lines.append(f"  decoded {r.decoded_seconds:.0f} s of audio in {r.decode_seconds:.1f} s "
                     f"({r.decoded_seconds / r.decode_seconds:.0f}x real time)")
    counts = r.counts()
    lines += ["", f"  {'severity':<8}  {'check':<45} {'count':>6}"]
    for kind, (sev, label) in KINDS.items():
        lines.append(f"  {sev if counts[kind] else 'ok':<8}  {label:<45} {counts[kind]:>6}")
    for kind, (sev, label) in KINDS.items():
        found = [f for f in r.findings if f.kind == kind]
        if not found:
            continue
        lines += ["", f"  {sev}: {label} ({len(found)}):"]
        lines += [f"    {f.utt_id}: {f.detail}" for f in found[:show]]
        if len(found) > show:
            lines.append(f"    ... and {len(found) - show} more")
    lines.append("")
    if r.median_chars_per_second is not None:
        lines.append(f"  median speaking rate: {r.median_chars_per_second:.1f} chars/s")
    if r.padding_bucketed is not None:
        lines.append(f"  padding in batches: {100 * r.padding_bucketed:.1f}% with duration buckets, "
                     f"{100 * r.padding_unbucketed:.1f}% with one bucket")
    lines += ["  durations:", *histogram(r.durations)]
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
    for path in args.manifests:
        try:
            report = check_manifest(
                path, sample_rate=args.sample_rate, subsampling=args.subsampling, min_duration=args.min_duration,
                max_duration=args.max_duration, max_batch_seconds=args.max_batch_seconds,
                num_buckets=args.num_buckets, jobs=args.jobs, progress=sys.stderr.isatty())
        except ManifestError as exc:
            print(f"asr-data: error: {exc}", file=sys.stderr)
            status = 2
            continue
        reports.append(report)
        print(format_report(report), flush=True)
        if report.num_errors and status == 0:
            status = 1
    if args.plot is not None and reports:
        plot_durations(reports, args.plot)
        print(f"wrote {args.plot}")
    return status
