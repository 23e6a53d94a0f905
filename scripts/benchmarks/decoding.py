"""Decoding: greedy, flashlight beam search (torchaudio's `ctc_decoder`; beam 10 and 50, without and with the
word 3-gram LM), our reference prefix beam search (pure Python, the tests' oracle) and pyctcdecode (a peer,
installed only in the benchmark's own virtualenv, run as a subprocess) at equal beam and LM weights, all on the
same cached log-probs: real-time factor (decoding seconds / audio seconds) and WER. Then the flashlight beam + LM
spread over all cores (`beam.workers=0`, asr.decoding.parallel; a test set is embarrassingly parallel).

Log-probs come from a trained checkpoint over manifests (the full run: the demo model on the demo dev + test
sets), or, without one (`--quick` in the suite), from a simulated acoustic model: WordNet sentences held out of
the LM's text, one peaked frame per character (20 % of them pointing at a wrong character, the right one second)
between blank frames, plus Gaussian logit noise.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import jiwer
import numpy as np
import torch

from asr.decoding import parallel
from asr.decoding.greedy import greedy_decode
from asr.decoding.ngram import build_arpa
from asr.decoding.parallel import ParallelBeamDecoder
from asr.decoding.reference import prefix_beam_search
from asr.text import CharTokenizer

from .common import Row

ROOT = Path(__file__).resolve().parents[2]
LM_WEIGHT, WORD_SCORE = 1.0, -1.0  # flashlight's, on KenLM log10 scores (the demo's tuned values)
PEER_RUNNER = Path(__file__).with_name("pyctcdecode_runner.py")


@dataclass
class Emissions:
    log_probs: list[np.ndarray]  # each (T', C) float32
    refs: list[str]
    frame_seconds: float  # audio seconds per output frame
    lm_text: Path  # sentences for the LM (never the refs)
    source: str
    model_rtf: Optional[float] = None  # front-end + acoustic model seconds per audio second (checkpoints only)

    @property
    def audio_seconds(self) -> float:
        return sum(lp.shape[0] for lp in self.log_probs) * self.frame_seconds

    def repeated(self, k: int) -> "Emissions":
        return Emissions(self.log_probs * k, self.refs * k, self.frame_seconds, self.lm_text, self.source,
                         self.model_rtf)


def simulated(n: int, tmp: Path, seed: int = 0) -> Emissions:
    """Log-probs of a simulated acoustic model over n held-out WordNet sentences (see the module docstring)."""
    from asr.data.sentences import load_sentences, split_sentences

    tok = CharTokenizer()
    pools = split_sentences(load_sentences(), {"train": 0.9, "test": 0.1}, np.random.default_rng(seed))
    lm_text = tmp / "lm_text.txt"
    lm_text.write_text("\n".join(s.text for s in pools["train"]) + "\n")
    rng = np.random.default_rng(seed + 1)
    out, refs = [], []
    for s in pools["test"][:n]:
        frames = []
        for c in tok.encode(s.text):
            logit = rng.normal(0.0, 1.0, tok.size)
            if rng.random() < 0.2:
                logit[rng.integers(1, tok.size)] += 6.0
                logit[c] += 5.0
            else:
                logit[c] += 6.0
            frames.append(logit)
            for _ in range(rng.integers(1, 3)):
                blank = rng.normal(0.0, 1.0, tok.size)
                blank[0] += 6.0
                frames.append(blank)
        logits = torch.tensor(np.array(frames), dtype=torch.float32)
        out.append(logits.log_softmax(-1).numpy())
        refs.append(s.text)
    return Emissions(out, refs, 0.04, lm_text, f"simulated acoustic model, {len(refs)} WordNet sentences")


def from_checkpoint(checkpoint: str, manifests: list[str], lm_text: Path) -> Emissions:
    from asr.data.manifest import read_manifest
    from asr.inference.loading import cache_log_probs, load_model

    loaded = load_model(checkpoint, "cpu")
    utts = [u for m in manifests for u in read_manifest(m)]
    cache = cache_log_probs(loaded, utts, batch_seconds=120.0, progress=False)
    out, refs = [], []
    for idx, lp, lengths in cache.batches:
        for k, i in enumerate(idx):
            out.append(lp[k, : int(lengths[k])].numpy())
            refs.append(utts[i].text)
    return Emissions(out, refs, loaded.frame_seconds, lm_text,
                     f"{checkpoint} on {', '.join(Path(m).name for m in manifests)} ({len(refs)} utterances)",
                     model_rtf=cache.model_seconds / cache.audio_seconds)


def _batches(em: Emissions, size: int = 32):
    for k in range(0, len(em.log_probs), size):
        chunk = em.log_probs[k:k + size]
        lengths = torch.tensor([x.shape[0] for x in chunk])
        pad = torch.zeros(len(chunk), int(lengths.max()), chunk[0].shape[1])
        for j, x in enumerate(chunk):
            pad[j, : x.shape[0]] = torch.from_numpy(x)
        yield pad, lengths


def _flashlight(beam: int, lm: Optional[Path]):
    from asr.decoding.beam import BeamSearchDecoder

    return BeamSearchDecoder(CharTokenizer(), beam_size=beam, lm_path=str(lm) if lm else None,
                             lm_weight=LM_WEIGHT, word_score=WORD_SCORE)


def _timed(em: Emissions, decode) -> tuple[list[str], float]:
    hyps: list[str] = []
    t0 = time.perf_counter()
    for pad, lengths in _batches(em):
        hyps += decode(pad, lengths)
    return hyps, time.perf_counter() - t0


def parallel_beam_lm(em: Emissions, beam: int, lm: Path, workers: int) -> tuple[list[str], float]:
    """Flashlight beam + LM over `workers` processes (`beam.workers`, asr.decoding.parallel); every worker builds
    its decoder on a warm-up batch before the clock starts."""
    decoder = ParallelBeamDecoder(CharTokenizer(), workers, beam_size=beam, lm_path=str(lm), lm_weight=LM_WEIGHT,
                                  word_score=WORD_SCORE)
    try:
        decoder(*next(_batches(em)))
        return _timed(em, decoder)
    finally:
        parallel.shutdown()


def pyctcdecode(em: Emissions, beam: int, lm: Optional[Path], python: str, tmp: Path) -> tuple[list[str], float]:
    """The peer in its own interpreter: same log-probs, beam and LM; alpha/beta match flashlight's weights
    (pyctcdecode scales KenLM's log10 scores to natural logs itself, hence / ln 10)."""
    data = tmp / "emissions.npz"
    np.savez(data, *em.log_probs)
    labels = ["" if t == "<blank>" else t for t in CharTokenizer().vocab]
    spec = {"emissions": str(data), "labels": labels, "beam": beam, "lm": str(lm) if lm else None,
            "alpha": LM_WEIGHT / math.log(10), "beta": WORD_SCORE, "out": str(tmp / "peer.json")}
    (tmp / "spec.json").write_text(json.dumps(spec))
    subprocess.run([python, str(PEER_RUNNER), str(tmp / "spec.json")], check=True)
    result = json.loads((tmp / "peer.json").read_text())
    return result["hyps"], result["seconds"]


def run(quick: bool, scales: list[int], checkpoint: Optional[str] = None, manifests: Optional[list[str]] = None,
        lm_text: Optional[str] = None, peer_python: Optional[str] = None) -> list[Row]:
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="asr-bench-decode-") as tmp_name:
        tmp = Path(tmp_name)
        if checkpoint:
            base = from_checkpoint(checkpoint, manifests or [], Path(lm_text or ROOT / "data/synthetic/lm_text.txt"))
        else:
            base = simulated(24 if quick else 200, tmp)
        lm = build_arpa(base.lm_text, 3, tmp / "lm.arpa")
        tok = CharTokenizer()
        greedy = lambda lp, n: greedy_decode(lp, n, tok)  # noqa: E731
        decoders = [("greedy", None, greedy)]
        for beam in ([10] if quick else [10, 50]):
            decoders.append((f"flashlight beam {beam}", (beam, None), _flashlight(beam, None).decode))
            decoders.append((f"flashlight beam {beam} + LM", (beam, lm), _flashlight(beam, lm).decode))
        for scale in scales:
            em = base.repeated(scale)
            audio = em.audio_seconds
            for name, peer_args, decode in decoders:
                hyps, seconds = _timed(em, decode)
                alt_name, alt_rtf, extra = "", None, {"WER %": 100 * jiwer.wer(em.refs, hyps)}
                if peer_args is not None and peer_python and scale == scales[0]:  # the peer once, at the smallest work
                    peer_hyps, peer_s = pyctcdecode(em, peer_args[0], peer_args[1], peer_python, tmp)
                    alt_name, alt_rtf = "pyctcdecode", peer_s / audio
                    extra["pyctcdecode WER %"] = 100 * jiwer.wer(em.refs, peer_hyps)
                rows.append(Row("decoding", name, scale, "RTF", seconds / audio, alt_name, alt_rtf,
                                higher_is_better=False, extra={**extra, "audio s": round(audio)}))
            workers = os.cpu_count() or 1
            hyps, seconds = parallel_beam_lm(em, 10, lm, workers)
            _, one = _timed(em, decoders[2][2])
            rows.append(Row("decoding", f"flashlight beam 10 + LM over {workers} processes", scale, "RTF",
                            seconds / audio, "the same in one process", one / audio, higher_is_better=False,
                            extra={"WER %": 100 * jiwer.wer(em.refs, hyps)}))
        n_ref = 4 if quick else 20  # pure Python: a few utterances are enough for its speed
        sub = Emissions(base.log_probs[:n_ref], base.refs[:n_ref], base.frame_seconds, base.lm_text, base.source)
        t0 = time.perf_counter()
        hyps = [tok.decode(prefix_beam_search(lp, 10)[0][0]) for lp in sub.log_probs]
        ref_s = time.perf_counter() - t0
        fl_hyps, fl_s = _timed(sub, decoders[1][2])
        rows.append(Row("decoding", f"flashlight beam 10 vs our reference prefix beam, {n_ref} utterances", 1, "RTF",
                        fl_s / sub.audio_seconds, "reference prefix beam (Python)", ref_s / sub.audio_seconds,
                        higher_is_better=False,
                        extra={"WER % reference": 100 * jiwer.wer(sub.refs, hyps),
                               "WER % flashlight": 100 * jiwer.wer(sub.refs, fl_hyps)}))
        if base.model_rtf is not None:  # a user's `asr-eval` of one hour: model once, then the three decoders
            parts = {r.case: r.ours for r in rows if r.scale == 1}
            beam = 10 if quick else 50
            names = ["greedy", f"flashlight beam {beam}", f"flashlight beam {beam} + LM"]
            seconds = 3600 * (base.model_rtf + sum(parts[n] for n in names))
            rows.append(Row("decoding", "evaluate 1 h of audio: model + greedy + beam + beam + LM (sum of parts)", 1,
                            "seconds", seconds, higher_is_better=False,
                            extra={"model RTF": base.model_rtf, "decoders": ", ".join(names)}))
    rows[0].extra["input"] = base.source
    return rows
