"""Shared fixtures: small real audio corpora written to tmp_path (no mocks of soundfile)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

sys.path.insert(0, str(Path(__file__).parent))

WORDS = ["HELLO", "WORLD", "SPEECH", "MODEL", "CAT", "DOG'S", "TREE", "OPEN", "SOURCE", "GOOD"]


def tone(seconds: float, sample_rate: int = 16000, freq: float = 440.0, seed: int = 0) -> np.ndarray:
    """A tone with a little noise: real, decodable audio of a known length."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    return (0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def write_librispeech_tree(root: Path, subset: str, speakers=("19", "84"), chapters=("198", "121123"),
                           utts_per_chapter: int = 3, sample_rate: int = 16000, seed: int = 0) -> list[dict]:
    """Write ROOT/<subset>/<spk>/<chap>/<spk>-<chap>-<utt>.flac + <spk>-<chap>.trans.txt; return the truth."""
    rng = np.random.default_rng(seed)
    truth = []
    for spk in speakers:
        for chap in chapters:
            d = root / subset / spk / chap
            d.mkdir(parents=True, exist_ok=True)
            lines = []
            for u in range(utts_per_chapter):
                uid = f"{spk}-{chap}-{u:04d}"
                text = " ".join(rng.choice(WORDS, size=int(rng.integers(1, 5))))
                dur = float(rng.uniform(0.5, 2.0))
                wave = tone(dur, sample_rate, freq=200 + 50 * u, seed=int(rng.integers(1 << 30)))
                sf.write(d / f"{uid}.flac", wave, sample_rate, format="FLAC", subtype="PCM_16")
                lines.append(f"{uid} {text}")
                truth.append({"id": uid, "text": text, "speaker": spk, "frames": wave.size,
                              "path": str(d / f"{uid}.flac")})
            (d / f"{spk}-{chap}.trans.txt").write_text("\n".join(lines) + "\n")
    return truth


@pytest.fixture
def librispeech_tree(tmp_path: Path):
    """A two-subset LibriSpeech-layout tree of real FLAC files: (root, {subset: truth records})."""
    root = tmp_path / "LibriSpeech"
    truth = {s: write_librispeech_tree(root, s, seed=i) for i, s in enumerate(["dev-clean", "test-clean"])}
    return root, truth
