"""Shared fixtures: small real audio corpora written to tmp_path (no mocks of soundfile)."""
from __future__ import annotations

import logging
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


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """The built-in tiny synthetic corpus (real TTS speech), generated once per test session: {split: manifest}."""
    from asr.data import synthetic
    root = tmp_path_factory.mktemp("synthetic_tiny")
    return synthetic.generate("tiny", root, jobs=2)


def tiny_train_overrides(corpus: dict, run_dir, **extra) -> list[str]:
    """Hydra overrides for a fast CPU run on the tiny corpus (a 2-layer BiLSTM-64)."""
    items = {
        "data": "synthetic_tiny", "data.synth_preset": "null",
        "data.train_manifests": f"[{corpus['train']}]", "data.dev_manifests": f"{{dev:{corpus['dev']}}}",
        "model.rnn_hidden": 64, "model.rnn_layers": 2, "model.conv_channels": "[8,8]",
        "trainer.device": "cpu", "trainer.threads": 1, "trainer.progress": "false", "trainer.num_images": 1,
        "optim.warmup_steps": 5, "run_dir": str(run_dir),
    }
    items.update(extra)
    return [f"{k}={v}" for k, v in items.items()]


def compose_train(overrides: list[str]):
    """Compose configs/train.yaml with overrides exactly as `asr-train` does (no Hydra run dir side effects)."""
    from hydra import compose, initialize_config_dir

    from asr.config import register_configs
    from asr.runtime import config_dir
    register_configs()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


@pytest.fixture
def keep_logging():
    """Hydra's CLI reconfigures the root logger onto the captured stderr, closed after the test: put it back."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
