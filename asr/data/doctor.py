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
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch

from asr.config import ConfigError, FeatureConfig
from asr.data.manifest import Utterance, read_manifest
from asr.data.probe import probe_files
from asr.data.sampler import DurationBucketSampler, padding_ratio
from asr.model.ctc import required_frames
from asr.model.features import frame_lengths
from asr.model.frontends import subsampled_lengths
from asr.text import CharTokenizer, Tokenizer, normalize

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


def strides_for(subsampling: int) -> list[int]:
    """A conv stride layout with this product (`--subsampling`): [2] for 2, [2, 2] for 4, [n] otherwise."""
    if subsampling < 1:
        raise ConfigError(f"--subsampling: must be >= 1 (the product of model.conv_time_strides), got {subsampling}")
    return {1: [1], 2: [2], 4: [2, 2]}.get(subsampling, [subsampling])


def output_frames(duration_s: float, sample_rate: int, hop: int, time_strides: Sequence[int]) -> int:
    """T' the model emits for `duration_s` of audio, from the front-end's and the model's own length rules
    (asr.model.features.frame_lengths, asr.model.acoustic.subsampled_lengths): a change of kernel there changes it here."""
    samples = torch.tensor([int(round(duration_s * sample_rate))])
    return int(subsampled_lengths(frame_lengths(samples, hop), time_strides)[0])


# ---------------------------------------------------------------------------------------------- padding


def padding_waste(durations: Sequence[float], max_batch_seconds: float, num_buckets: int, seed: int = 0) -> float:
    """Padded fraction of batch seconds in one shuffled epoch of the trainer's DurationBucketSampler."""
    durs = [d for d in durations if 0 <= d <= max_batch_seconds]  # the sampler rejects the rest
    if not durs:
        return 0.0
    sampler = DurationBucketSampler(durs, max_batch_seconds, num_buckets, shuffle=True, seed=seed)
    return padding_ratio(sampler.global_batches(1), durs)  # epoch 1: past SortaGrad's sorted epoch 0


# ---------------------------------------------------------------------------------------------- checks


Add = Callable[[str, Utterance, str], None]  # add(kind, utterance, detail): record one finding


def _check_audio(u: Utterance, p: dict, sample_rate: int, add: Add) -> tuple[Optional[float], float]:
    """Findings about one utterance's audio file (its `_probe`); returns (real seconds or None, decoded seconds)."""
    if p.get("missing"):
        add("missing", u, f"audio file not found: {u.audio_filepath}")
        return None, 0.0
    if "header_error" in p:
        add("unreadable", u, p["header_error"])
        return None, 0.0
    real, decoded = p["frames"] / p["sample_rate"], 0.0
    if "decode_error" in p:
        add("corrupt", u, p["decode_error"])
    else:
        decoded = real
        if p["peak"] == 0.0:
            add("silent", u, f"{u.audio_filepath}: every sample is zero")
    if p["sample_rate"] != sample_rate:
        add("sample_rate", u, f"{u.audio_filepath}: {p['sample_rate']} Hz, expected {sample_rate} Hz")
    if p["channels"] > 1:
        add("multichannel", u, f"{u.audio_filepath}: {p['channels']} channels")
    if math.isfinite(u.duration) and u.duration >= 0 and abs(real - u.duration) > DURATION_TOLERANCE:
        add("duration_mismatch", u, f"manifest says {u.duration:.3f} s, file has {real:.3f} s")
    return real, decoded


def _check_text(u: Utterance, duration: Optional[float], tok: Tokenizer, frames_for: Callable[[float], int],
                subsampling: int, trained: bool, add: Add) -> Optional[float]:
    """Findings about one transcript and whether CTC can fit it in `duration`; returns its characters per
    second when the utterance trains (`trained`) and fits, else None."""
    norm = normalize(u.text)
    if not u.text.strip():
        add("empty_text", u, "transcript is empty")
        return None
    unknown = tok.unknown_chars(u.text)
    if unknown:
        add("unknown_chars", u, f"{''.join(sorted(unknown))!r} in {u.text!r}; normalize() gives {norm!r}")
    elif norm != u.text:
        add("not_normalized", u, f"{u.text!r} -> {norm!r}")
    if not norm or duration is None:
        return None  # nothing left to fit (the text finding above says why), or no length to fit it in
    labels = tok.encode(norm)
    have, need = frames_for(duration), required_frames(labels)
    if have < need:
        add("ctc_infeasible", u, f"{len(labels)} labels need {need} frames, {duration:.2f} s gives {have} "
                                 f"after {subsampling}x subsampling")
        return None
    # Only utterances that train: on very short clips leading silence dominates the rate.
    return len(norm) / duration if trained and duration > 0 else None


def check_utterances(utts: Sequence[Utterance], manifest: str = "<utterances>", *, sample_rate: int = 16000,
                     subsampling: int = 4, hop_length: int | None = None, min_duration: float = 0.3,
                     max_duration: float = 20.0, max_batch_seconds: float = 120.0, num_buckets: int = 10,
                     jobs: int | None = None, progress: bool = False,
                     tokenizer: Tokenizer | None = None) -> Report:
    """Run every check on already-parsed utterances (the trainer calls this on its merged manifests).

    Longer than most functions on purpose: one pass in manifest order, so each file is probed once and the
    findings keep that order; the per-file work is in `_check_audio` and `_check_text`."""
    strides = strides_for(subsampling)
    tok = tokenizer or CharTokenizer()
    hop = hop_length or FeatureConfig(sample_rate=sample_rate).hop_length
    t0 = time.perf_counter()
    probes = probe_files([u.audio_filepath for u in utts], jobs=jobs, progress=progress)
    decode_seconds = time.perf_counter() - t0
    findings: list[Finding] = []
    durations: list[float] = []
    rates: list[tuple[Utterance, float]] = []
    decoded_seconds = 0.0

    def add(kind: str, u: Utterance, detail: str) -> None:
        findings.append(Finding(kind, u.id, detail))

    for u, p in zip(utts, probes):
        valid = math.isfinite(u.duration) and u.duration >= 0
        if not valid:
            add("bad_duration", u, f"duration {u.duration!r} in the manifest")
        real, decoded = _check_audio(u, p, sample_rate, add)
        decoded_seconds += decoded
        duration = real if real is not None else u.duration if valid else None
        if duration is not None:
            durations.append(duration)
        if u.duration < min_duration:
            add("too_short", u, f"{u.duration:.2f} s < {min_duration} s")
        elif u.duration > max_duration:
            add("too_long", u, f"{u.duration:.2f} s > {max_duration} s")
        trained = duration is not None and min_duration <= duration <= max_duration
        rate = _check_text(u, duration, tok, lambda d: output_frames(d, sample_rate, hop, strides), subsampling,
                           trained, add)
        if rate is not None:
            rates.append((u, rate))

    median_rate = None
    if len(rates) >= MIN_UTTS_FOR_RATE:
        median_rate = statistics.median(r for _, r in rates)
        for u, r in rates:
            if r > median_rate * RATE_FACTOR or r < median_rate / RATE_FACTOR:
                add("rate_outlier", u, f"{r:.1f} chars/s (median {median_rate:.1f})")

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
