"""Shared fixtures: small real audio corpora written to tmp_path (no mocks of soundfile)."""
from __future__ import annotations

import faulthandler
import logging
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

# The whole run's hard limit (seconds): past it every thread's stack is dumped to stderr and the process exits 1,
# so a hang (in a test, a fixture or at interpreter exit) costs minutes, never CI's 90. The suite takes about
# 5 minutes on 2 cores; a single test's limit is pytest-timeout's (pyproject.toml, thread method: stacks too).
SUITE_LIMIT_S = float(os.environ.get("ASR_TEST_SUITE_LIMIT_S", "1500"))


_watchdog_stream = None  # kept open for the life of the process: faulthandler writes to its descriptor


def pytest_configure(config):
    global _watchdog_stream
    if SUITE_LIMIT_S > 0 and not hasattr(config, "workerinput"):
        # pytest's capture has already pointed fd 2 at a temp file: write the dump to the real stderr, which
        # the capture manager keeps as a duplicate descriptor (fall back to fd 2 if pytest changes that).
        capman = config.pluginmanager.getplugin("capturemanager")
        real_fd = getattr(getattr(getattr(capman, "_global_capturing", None), "err", None), "targetfd_save", 2)
        _watchdog_stream = os.fdopen(os.dup(real_fd), "w")
        # Not cancelled at the end on purpose: a hang at exit (a pool's atexit join) must be caught too.
        faulthandler.dump_traceback_later(SUITE_LIMIT_S, exit=True, file=_watchdog_stream)


# SIGCHLD is left out: torch's DataLoader installs, once per process, a SIGCHLD handler that chains the previous
# one and reports dead workers (torch/utils/data/_utils/signal_handling.py); it is torch's, global by design.
_SIGNALS = [s for s in signal.valid_signals() if s not in (signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD)]


@pytest.fixture(autouse=True)
def no_leaked_signal_handlers():
    """Fail any test that leaves a signal handler changed: handlers are process-wide, and a leaked one is
    inherited by every process forked later (a leaked SIGTERM handler made pool workers unkillable)."""
    before = {s: signal.getsignal(s) for s in _SIGNALS}
    yield
    changed = {s: h for s, h in before.items() if signal.getsignal(s) != h}
    for s, h in changed.items():
        signal.signal(s, h if h is not None else signal.SIG_DFL)
    if changed:
        pytest.fail("the test left signal handlers changed: " + ", ".join(signal.Signals(s).name for s in changed))


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
    from asr.config import compose
    return compose("train", overrides)


@pytest.fixture
def keep_logging():
    """Hydra's CLI reconfigures the root logger onto the captured stderr, closed after the test: put it back."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def train_memorizer(tiny_corpus: dict, run_dir: Path, count: int = 3, steps: int = 300, features: dict | None = None,
                    first: int = 0, **model) -> list:
    """Train a tiny model until it has memorised the first `count` training utterances of the tiny corpus
    (300 steps, ~7 s on one core; deterministic) so deployment tests have real, non-empty transcripts to compare.
    Returns those utterances (`count` of them from the `first`); their text is what the model says."""
    from asr.config import (
        AugmentConfig,
        DataConfig,
        FeatureConfig,
        ModelConfig,
        OptimConfig,
        TrainConfig,
        TrainerConfig,
    )
    from asr.data.manifest import read_manifest, write_manifest
    from asr.train import loop as train

    utts = read_manifest(tiny_corpus["train"])[first:first + count]
    manifest = run_dir.parent / f"{run_dir.name}.jsonl"
    write_manifest(manifest, utts)
    model_cfg = dict(conv_channels=[8, 8], rnn_hidden=64, rnn_layers=1, dropout=0.0)
    model_cfg.update(model)
    train.main(TrainConfig(
        data=DataConfig(name="memorise", train_manifests=[str(manifest)], dev_manifests={"dev": str(manifest)},
                        max_batch_seconds=30.0, num_workers=0, min_duration=0.1, max_duration=20.0),
        features=FeatureConfig(**(features or {})), model=ModelConfig(**model_cfg),
        optim=OptimConfig(lr=1e-2, warmup_steps=5),
        augment=AugmentConfig(spec_augment=False, speed_perturb=[]),
        trainer=TrainerConfig(max_steps=steps, max_epochs=100_000, device="cpu", threads=1, progress=False,
                              num_images=0, log_every=1000, val_every_epochs=100_000),
        run_dir=str(run_dir)))
    return utts


@pytest.fixture(scope="session")
def deploy_run(tiny_corpus, tmp_path_factory) -> dict:
    """A bidirectional tiny model that says its three training utterances word for word:
    {"run": run dir, "utts": [Utterance]} (export, transcribe backends and the server test against it)."""
    run = tmp_path_factory.mktemp("deploy") / "run"
    return {"run": run, "utts": train_memorizer(tiny_corpus, run)}


@pytest.fixture(scope="session")
def streaming_run(tiny_corpus, tmp_path_factory) -> dict:
    """deploy_run's streaming twin: 2 x LSTM-64 + lookahead 2, unnormalised features (what model=streaming sets)."""
    run = tmp_path_factory.mktemp("deploy_streaming") / "run"
    return {"run": run, "utts": train_memorizer(tiny_corpus, run, features={"normalize": "none"}, rnn_layers=2,
                                                bidirectional=False, lookahead=2)}


@pytest.fixture(scope="session")
def piece_run(tiny_corpus, tmp_path_factory) -> dict:
    """deploy_run's subword twin: SentencePiece pieces learned from its three transcripts and 80 ms output frames
    (three stride-2 convs), as a subword preset would train. Pieces learned from three sentences are nearly
    letters, too many for the first speaker's fast utterances at 80 ms, so these are the second speaker's."""
    run = tmp_path_factory.mktemp("deploy_pieces") / "run"
    return {"run": run, "utts": train_memorizer(tiny_corpus, run, first=12, tokenizer="sentencepiece", vocab_size=64,
                                                conv_channels=[8, 8, 8], conv_time_strides=[2, 2, 2])}
