"""Decode every audio file of a manifest once, in threads, and say what is wrong with each (the doctor's input):
missing, unreadable header, decoding stopped early, frames, rate, channels and peak."""
from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Iterator, Sequence, TextIO

import soundfile as sf
from tqdm import tqdm

from asr.audio import AudioLoadError, audio_info


def _probe(path: str) -> dict:
    """Header and full decode of one file, as plain data (runs in worker threads)."""
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
    pool would copy the caller's torch/OpenMP threads and signal handlers (see asr/train/loop.py)."""
    if not jobs:
        jobs = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    bar = dict(total=len(paths), desc="decoding", unit="file", disable=not progress)
    with _quiet_native_stderr() as stderr:
        if jobs <= 1 or len(paths) < 16:
            return [_probe(p) for p in tqdm(paths, file=stderr, **bar)]
        with ThreadPoolExecutor(jobs, thread_name_prefix="doctor") as pool:
            return list(tqdm(pool.map(_probe, paths), file=stderr, **bar))
