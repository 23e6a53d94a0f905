"""Shared pieces of the benchmarks: result rows and their table, median timing, generated audio and durations.

Audio here is generated, not recorded: a harmonic "voice" with a moving pitch, vowel-like formant bands and
noise bursts, so FLAC compresses it like speech rather than like silence or white noise.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable, Optional

import numpy as np

SAMPLE_RATE = 16000


def cpu_name() -> str:
    """The CPU's model name and core count, for the header every benchmark report starts with."""
    import os
    import platform

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores"


@dataclass
class Row:
    """One measurement: ours beside an alternative (or alone) at `scale` x the base work."""

    bench: str  # features, loading, batching, step, decoding
    case: str  # what was measured
    scale: int  # 1, 2, 4, 8: multiple of the base work
    metric: str  # e.g. "audio-s/s", "padding %", "RTF"
    ours: float
    alt_name: str = ""  # the alternative (empty: none)
    alt: Optional[float] = None
    higher_is_better: bool = True
    extra: dict = field(default_factory=dict)  # other figures of the row (max abs difference, WER, phase split)

    @property
    def ratio(self) -> Optional[float]:
        """How many times better ours is (> 1: ours wins), whichever way the metric points."""
        if self.alt is None or self.alt == 0 or self.ours == 0:
            return None
        return self.ours / self.alt if self.higher_is_better else self.alt / self.ours

    def to_dict(self) -> dict:
        return {**asdict(self), "ratio": self.ratio}


def fmt(x: Optional[float]) -> str:
    if x is None:
        return "—"
    if isinstance(x, int):
        return f"{x:,}"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 1:
        return f"{x:.2f}"
    return f"{x:.3g}"


def scaling_note(rows: list[Row]) -> dict[tuple[str, str], str]:
    """(bench, case) -> how ours holds up from 1x to the largest scale: the rate per unit of work kept, in percent
    (above 100 %: fixed costs amortised). Below 80 % at 8x the work means the cost grew worse than linearly.
    """
    out: dict[tuple[str, str], str] = {}
    groups: dict[tuple[str, str], list[Row]] = {}
    for r in rows:
        groups.setdefault((r.bench, r.case), []).append(r)
    for key, rs in groups.items():
        rs = sorted(rs, key=lambda r: r.scale)
        if len(rs) < 2 or rs[0].ours == 0:
            continue
        first, last = rs[0], rs[-1]
        kept = last.ours / first.ours if first.higher_is_better else first.ours / last.ours
        verdict = "cost grows worse than linear" if kept < 0.8 else "no worse than linear"
        out[key] = f"{last.scale}x work: {100 * kept:.0f} % of the 1x rate per unit of work ({verdict})"
    return out


def table(rows: Iterable[Row]) -> str:
    """The markdown table of `rows` (one line each) and, below it, the scaling verdicts."""
    rows = list(rows)
    lines = ["| benchmark | case | work | metric | ours | alternative | theirs | ours vs theirs | details |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = f"{r.ratio:.2f}x" if r.ratio is not None else "—"
        details = ", ".join(f"{k} {fmt(v) if isinstance(v, (int, float)) else v}" for k, v in r.extra.items())
        lines.append(f"| {r.bench} | {r.case} | {r.scale}x | {r.metric} | {fmt(r.ours)} | {r.alt_name or '—'} | "
                     f"{fmt(r.alt)} | {ratio} | {details} |")
    notes = scaling_note(rows)
    if notes:
        lines += ["", "Scaling (ours, largest work vs 1x):", ""]
        lines += [f"- {bench} / {case}: {note}" for (bench, case), note in notes.items()]
    return "\n".join(lines)


def median_seconds(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Median wall-clock seconds of `fn()` over `repeats` calls after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def speechlike(seconds: float, seed: int) -> np.ndarray:
    """(S,) float32 in [-1, 1]: a harmonic source with a gliding pitch through moving formant bands, plus noise
    bursts (fricatives) and pauses; deterministic for a seed."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    f0 = rng.uniform(90, 220) * (1 + 0.15 * np.sin(2 * np.pi * rng.uniform(0.5, 2) * t))
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    formants = rng.uniform([300, 900, 2200], [900, 2200, 3200])
    wave = np.zeros(n)
    coarse = np.arange(0, n, 80)  # harmonic gains change slowly: compute them at 200 Hz and interpolate
    for k in range(1, 30):
        fk = k * f0[coarse]
        gain = sum(np.exp(-((fk - f) / 150.0) ** 2) for f in formants) / k ** 0.5
        wave += np.interp(np.arange(n), coarse, gain) * np.sin(k * phase)
    envelope = (np.sin(2 * np.pi * rng.uniform(2, 5) * t) > -0.3).astype(float)  # syllables and pauses
    noise = rng.standard_normal(n) * (np.sin(2 * np.pi * rng.uniform(1, 3) * t) > 0.7)
    wave = envelope * wave + 0.3 * noise + 0.003 * rng.standard_normal(n)
    return (0.5 * wave / (np.abs(wave).max() + 1e-9)).astype(np.float32)


def demo_durations(n: int, seed: int, lo: float = 1.0, hi: float = 20.0) -> list[float]:
    """n durations uniform in [lo, hi] seconds (the features / loading input: short and long utterances)."""
    return np.random.default_rng(seed).uniform(lo, hi, n).round(2).tolist()


def librispeech_like_durations(n: int, seed: int) -> list[float]:
    """n durations shaped like LibriSpeech train-clean-100 (1-35 s, mean about 12.7 s; most segments 12-17 s):
    66 % around 14.2 s (sd 1.5), 30 % uniform 1-16 s (short segments), 4 % uniform 17-35 s (the long tail)."""
    rng = np.random.default_rng(seed)
    kind = rng.choice(3, size=n, p=[0.66, 0.30, 0.04])
    d = np.where(kind == 0, rng.normal(14.2, 1.5, n),
                 np.where(kind == 1, rng.uniform(1, 16, n), rng.uniform(17, 35, n)))
    return np.clip(d, 1.0, 35.0).round(2).tolist()
