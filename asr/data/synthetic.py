"""The built-in speech corpus: WordNet example sentences read by open text-to-speech voices (espeak-ng, flite),
written in exact LibriSpeech layout so every LibriSpeech tool reads it unchanged.

    ROOT/<split>/<speaker>/<chapter>/<speaker>-<chapter>-<utt:04d>.flac   16 kHz mono PCM_16
    ROOT/<split>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt        "<id> <TEXT>" lines
    ROOT/manifests/<split>.jsonl    read back from the tree (asr.data.librispeech.read_tree), relative paths
    ROOT/corpus.json                what was generated (counts, hours, speakers); written last = complete
    ROOT/vocab.json                 the character vocabulary (asr.text.CharTokenizer)
    ROOT/lm_text.txt                every sentence of the training pool, one a line (LM text; no dev/test text)

A speaker is (engine, voice, variant, pitch, rate): pitch and rate are drawn per speaker from a seeded RNG and
jittered per utterance; each utterance also gets a random gain, 50-400 ms of silence at each end and a low
noise floor. Splits share neither speakers nor sentences: the sentences are partitioned first (90/5/5), and
dev/test speakers are new. Unseen voices: espeak-ng variants (the timbre: formants, pitch range) are split
into families, and whole families are held out for dev (DEV_VARIANTS) and test (TEST_VARIANTS), so the test
measures voices never heard in training. flite has only four distinct voices, so all of them train; dev/test
flite speakers differ from the training ones in pitch and rate only. Dev/test never depend on the amount of
training audio (their RNG streams are separate), so `minutes` can change without moving the benchmark.

Same seed -> the same sentences, speakers and samples (both engines are deterministic). The engines, voices and
the rendering of one utterance are in asr.data.tts, the plan (speakers, sentences) in asr.data.corpus_plan; this
module renders the plan and writes the corpus.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from asr.data.corpus_plan import plan_split
from asr.data.manifest import write_manifest
from asr.data.sentences import LICENSE, SOURCE, load_sentences, split_sentences
from asr.data.tts import SAMPLE_RATE, Job, find_engines, render_to_file
from asr.errors import UserError
from asr.text import CharTokenizer, save_tokenizer

VERSION = 2  # bump whenever the same (preset, seed, minutes) would give different audio or text
SPLITS = ("train", "dev", "test")
SENTENCE_FRACTIONS = {"train": 0.90, "dev": 0.05, "test": 0.05}
@dataclass(frozen=True)
class Preset:
    train_minutes: float     # training audio (the `minutes` argument overrides it)
    dev_minutes: float
    test_minutes: float
    speaker_minutes: float   # training minutes per speaker: sets the number of training speakers
    dev_speakers: int
    test_speakers: int
    seed: int = 0
    max_words: int = 25      # longest sentence (words); "tiny" keeps utterances short
    flite_share: float = 0.5  # fraction of each split's speakers that are flite voices


PRESETS: dict[str, Preset] = {
    "tiny": Preset(train_minutes=1.5, dev_minutes=0.75, test_minutes=0.75, speaker_minutes=0.375, dev_speakers=2,
                   test_speakers=2, seed=1234, max_words=8),
    "demo": Preset(train_minutes=180.0, dev_minutes=10.0, test_minutes=10.0, speaker_minutes=1.5,
                   dev_speakers=16, test_speakers=16, seed=1234),
}


# ------------------------------------------------------------------------------------------------ generate


def _write_json(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=1) + "\n")
    os.replace(tmp, path)


def _existing(root: Path) -> dict | None:
    """ROOT/corpus.json (written last: a corpus is there), or None when absent or unreadable (interrupted)."""
    try:
        meta = json.loads((root / "corpus.json").read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def _is_complete(root: Path, key: dict, manifests: dict[str, Path]) -> bool:
    meta = _existing(root)
    return meta is not None and all(meta.get(k) == v for k, v in key.items()) \
        and all(p.is_file() for p in manifests.values())


def _settings(d: dict, with_version: bool) -> str:
    minutes = d.get("minutes")
    amount = f"{minutes:g}" if isinstance(minutes, (int, float)) else str(minutes)
    return f"preset {d.get('preset')}, seed {d.get('seed')}, {amount} min" + \
        (f", corpus version {d.get('version')}" if with_version else "")


def _refuse_other(root: Path, key: dict, force: bool) -> None:
    """A corpus made with other settings is replaced only with `force`: earlier runs may have trained on it."""
    meta = _existing(root)
    if force or meta is None or all(meta.get(k) == v for k, v in key.items()):
        return
    versions = meta.get("version") != key["version"]  # named only when they differ (an upgrade of this code)
    raise UserError(f"{root} already holds a synthetic corpus made with {_settings(meta, versions)}, not the "
                    f"{_settings(key, versions)} asked for; `asr-data synth --force` replaces it, or choose "
                    "another root folder")


def _render_all(jobs: list[Job], n_jobs: int, progress: bool) -> list[int]:
    bar = dict(total=len(jobs), desc="synthesizing", unit="utt", disable=not progress, file=sys.stderr)
    if n_jobs == 1:
        return [render_to_file(j) for j in tqdm(jobs, **bar)]
    # Threads, not processes: each job waits on a TTS subprocess, then resamples and writes with numpy/scipy/
    # libsndfile, which release the GIL. A forked pool would copy the caller's state: torch/OpenMP threads and
    # signal handlers (a trainer's SIGTERM handler made forked workers unkillable and hung our suite).
    with ThreadPoolExecutor(n_jobs, thread_name_prefix="synth") as pool:
        try:
            return list(tqdm(pool.map(render_to_file, jobs), **bar))
        except BaseException:  # a failed job or Ctrl-C: do not render the thousands still queued
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def _describe(key: dict, engines: dict, pools: dict, plans: dict, utts: dict) -> dict:
    splits, speakers = {}, {}
    for split in SPLITS:
        spk = {j.speaker.id: j.speaker for j in plans[split]}
        seconds = sum(u.duration for u in utts[split])
        splits[split] = {
            "utterances": len(utts[split]), "hours": round(seconds / 3600, 4),
            "speakers": len(spk), "sentences": len({j.sentence.text for j in plans[split]}),
            "sentence_pool": len(pools[split]),
            "utterances_by_engine": {e: sum(j.speaker.engine == e for j in plans[split]) for e in engines["binaries"]},
            "voices": sorted({f"{s.engine}:{s.voice}" + (f"+{s.variant}" if s.variant else "") for s in spk.values()}),
        }
        speakers.update({k: {f: v for f, v in asdict(s).items() if f != "id"} for k, s in spk.items()})
    return {**key, "sample_rate": SAMPLE_RATE, "layout": "LibriSpeech",
            "text_source": SOURCE, "text_license": LICENSE, "engines": engines["versions"],
            "heldout_variants": {"dev": engines["variants"]["dev"], "test": engines["variants"]["test"]},
            "splits": splits, "speakers": speakers}


def _build(root: Path, p: Preset, key: dict, engines: dict, n_jobs: int, progress: bool) -> dict:
    """Render everything into ROOT/.partial, then swap it in; corpus.json last. Returns corpus.json's content."""
    seed, minutes = key["seed"], key["minutes"]
    pools = split_sentences(load_sentences(max_words=p.max_words), SENTENCE_FRACTIONS,
                            np.random.default_rng([seed, 0]))
    work = root / ".partial"  # an interrupted run leaves only this (and no corpus.json)
    shutil.rmtree(work, ignore_errors=True)
    amounts = {"train": (minutes, max(2, round(minutes / p.speaker_minutes))),
               "dev": (p.dev_minutes, p.dev_speakers), "test": (p.test_minutes, p.test_speakers)}
    plans = {s: plan_split(s, *amounts[s], pools[s], engines, p.flite_share, seed, work / s) for s in SPLITS}
    for split_jobs in plans.values():
        chapters: dict[Path, list[str]] = {}
        for j in split_jobs:
            chapters.setdefault(Path(j.path).parent, []).append(f"{j.id} {j.sentence.text}")
        for folder, lines in chapters.items():
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{folder.parent.name}-{folder.name}.trans.txt").write_text("\n".join(lines) + "\n")
    everything = [j for s in SPLITS for j in plans[s]]
    start = time.monotonic()
    _render_all(everything, min(n_jobs, len(everything)), progress)
    elapsed = time.monotonic() - start

    from asr.data.librispeech import read_tree  # the same reader as for the real corpus
    (root / "corpus.json").unlink(missing_ok=True)
    for d in (*SPLITS, "manifests"):
        shutil.rmtree(root / d, ignore_errors=True)
    utts = {}
    for split in SPLITS:
        os.replace(work / split, root / split)
        utts[split] = read_tree(root / split)
        path = root / "manifests" / f"{split}.jsonl"
        base = path.parent.resolve()
        base.mkdir(parents=True, exist_ok=True)
        write_manifest(path, [replace(u, audio_filepath=os.path.relpath(u.audio_filepath, base))
                              for u in utts[split]])
    shutil.rmtree(work, ignore_errors=True)
    save_tokenizer(CharTokenizer(), root / "vocab.json")
    # Language-model text: every sentence of the *training* pool (far more than the audio reads), never a
    # dev/test sentence, so an LM built from it is honest about the held-out splits.
    (root / "lm_text.txt").write_text("\n".join(sent.text for sent in pools["train"]) + "\n")
    meta = _describe(key, engines, pools, plans, utts)
    _write_json(root / "corpus.json", meta)
    hours = sum(s["hours"] for s in meta["splits"].values())
    print(f"synthesized {len(everything)} utterances ({hours:.2f} h) in {elapsed:.0f} s with {n_jobs} "
          f"thread(s) into {root}", file=sys.stderr)
    return meta


@contextmanager
def _exclusive(root: Path):
    """One writer per ROOT (e.g. every DDP rank calling generate): the others wait, then find it complete."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for another `asr-data synth` writing {root} ...", file=sys.stderr)
            fcntl.flock(f, fcntl.LOCK_EX)
        yield


def generate(preset: str, root: str | Path, minutes: float | None = None, seed: int | None = None,
             jobs: int | None = None, progress: bool = True, force: bool = False) -> dict[str, Path]:
    """Generate (or find already generated) the corpus under ROOT; returns {split: manifest path}.

    `minutes` overrides the preset's amount of training audio, `seed` its seed; `jobs` worker threads, each
    running one TTS process at a time (default: all cores). Skips the work if ROOT/corpus.json matches (preset,
    seed, minutes, version). A complete corpus made with other settings is a UserError unless `force`, which
    replaces it; an interrupted build (no corpus.json) is always redone.
    """
    if preset not in PRESETS:
        raise UserError(f"unknown synthetic corpus preset {preset!r}; choose one of {', '.join(PRESETS)}")
    p = PRESETS[preset]
    seed = p.seed if seed is None else int(seed)
    minutes = p.train_minutes if minutes is None else float(minutes)
    if not minutes > 0:
        raise UserError(f"--minutes must be > 0, got {minutes}")
    n_jobs = (os.cpu_count() or 1) if jobs is None else int(jobs)
    if n_jobs < 1:
        raise UserError(f"--jobs must be >= 1, got {jobs}")
    root = Path(root)
    manifests = {s: root / "manifests" / f"{s}.jsonl" for s in SPLITS}
    key = {"preset": preset, "seed": seed, "minutes": minutes, "version": VERSION}
    done = f"synthetic corpus already complete in {root} (preset {preset}, seed {seed}, {minutes:g} min); " \
           "delete the folder to regenerate"
    if _is_complete(root, key, manifests):
        print(done, file=sys.stderr)
        return manifests
    _refuse_other(root, key, force)
    owned = root / ".synthetic"
    if not owned.exists() and any((root / d).exists() for d in (*SPLITS, "manifests")):
        raise UserError(f"{root} holds train/dev/test/manifests folders not made by `asr-data synth`; "
                        "choose an empty --root")
    engines = find_engines()
    with _exclusive(root):
        if _is_complete(root, key, manifests):  # another process finished it while we waited
            print(done, file=sys.stderr)
            return manifests
        _refuse_other(root, key, force)  # ... or finished one with other settings
        owned.write_text("made by asr-data synth; its train/dev/test/manifests folders are replaced on "
                         "regeneration\n")
        _build(root, p, key, engines, n_jobs, progress)
    return manifests
