"""Audio -> text with word times: the one pipeline `asr-transcribe`, `asr-serve` and the Python API share.

    read -> (short files: duration-sorted padded batches | long files: windows with context) -> log-probs
         -> decode -> word times from a CTC forced alignment of the hypothesis

It runs any `Engine`: a checkpoint's `asr.inference.loading.LoadedModel` or an exported model
(`asr.inference.exported.ExportedModel`), which both offer the few members below. The model masks padding (per-utterance
normalisation over valid frames, masked BatchNorm, the backward LSTM run on each sequence reversed within its own
length), so a file gives the same transcript alone or batched with others.

Shapes: B batch, S samples, T' frames after subsampling, C vocabulary incl. blank, U label length.
"""
from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Optional, Protocol, Sequence

import torch
import torchaudio.functional as AF

from asr.lengths import pad_waves
from asr.model.ctc import required_frames
from asr.text import Tokenizer

log = logging.getLogger(__name__)

DecodeFn = Callable[[torch.Tensor, torch.Tensor], list[str]]  # (log_probs (B,T',C), lengths (B,)) -> B texts


class Engine(Protocol):
    """A model the pipeline can run (LoadedModel or ExportedModel)."""

    tokenizer: Tokenizer

    @property
    def sample_rate(self) -> int: ...

    @property
    def frame_seconds(self) -> float: ...

    @property
    def samples_per_frame(self) -> int: ...

    def log_probs(self, waves: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(waves (B, S), lengths (B,)) -> (log_probs (B, T', C), out_lengths (B,))."""

    def output_frames(self, num_samples: int) -> int:
        """T' for a file of num_samples samples."""

    def describe(self) -> str:
        """One line naming the model and where it came from."""


@dataclass
class Word:
    word: str
    start: Optional[float]  # seconds from the start of the audio (None: the alignment could not place it)
    end: Optional[float]


@dataclass
class Transcript:
    """One audio's result. `audio` names it (a path, an upload's file name, or "<array k>")."""

    audio: str
    text: str
    duration: float  # seconds
    decoder: str
    words: list[Word] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"audio": self.audio, "text": self.text, "decoder": self.decoder, "duration": round(self.duration, 3),
                "words": [asdict(w) for w in self.words]}


def windows(num_samples: int, unit: int, chunk_seconds: float, context_seconds: float, sample_rate: int
            ) -> list[tuple[int, int, int, int]]:
    """(a, s, e, b) sample bounds per window: own span [s, e), run span [a, b) = own span +- context.

    s, e (except the file's end) and a are multiples of `unit` (samples per output frame), so a window's own
    output frames start at exactly (s - a) / unit in the run span's output and number (e - s) / unit.
    """
    chunk = max(unit, int(chunk_seconds * sample_rate) // unit * unit)
    ctx = math.ceil(context_seconds * sample_rate / unit) * unit
    if num_samples <= chunk:
        return [(0, 0, num_samples, num_samples)]
    return [(max(0, s - ctx), s, min(s + chunk, num_samples), min(num_samples, s + chunk + ctx))
            for s in range(0, num_samples, chunk)]


@torch.no_grad()
def chunked_log_probs(engine: Engine, wave: torch.Tensor, chunk_seconds: float,
                      context_seconds: float) -> torch.Tensor:
    """wave (S,) -> log_probs (T', C) on the CPU, T' the frames the model gives the whole file at once.

    A file no longer than one window is run in one piece, exactly as the unchunked model would.
    """
    unit = engine.samples_per_frame
    total = engine.output_frames(wave.numel())
    pieces, kept = [], 0
    for a, s, e, b in windows(wave.numel(), unit, chunk_seconds, context_seconds, engine.sample_rate):
        log_probs, n = engine.log_probs(wave[a:b][None], torch.tensor([b - a]))
        first = (s - a) // unit
        count = total - kept if e == wave.numel() else (e - s) // unit
        piece = log_probs[0, first: min(first + count, int(n[0]))].cpu()
        pieces.append(piece)
        kept += piece.shape[0]
    if kept != total:  # the frame arithmetic above is exact for centred odd conv kernels; guard the invariant
        raise RuntimeError(f"chunking produced {kept} frames, expected {total}")
    return torch.cat(pieces)


@torch.no_grad()
def batched_log_probs(engine: Engine, waves: Sequence[torch.Tensor], batch_seconds: float, chunk_seconds: float,
                      context_seconds: float) -> list[torch.Tensor]:
    """waves [(S_k,)] -> [log_probs (T'_k, C)] on the CPU, in the order given.

    Files no longer than one window run together in duration-sorted padded batches of at most `batch_seconds`
    padded audio (the padding they share is small and masked); longer files run window by window on their own.
    """
    out: list[Optional[torch.Tensor]] = [None] * len(waves)
    chunk = chunk_seconds * engine.sample_rate
    short = sorted((k for k, w in enumerate(waves) if w.numel() <= chunk), key=lambda k: waves[k].numel())
    for k, w in enumerate(waves):
        if w.numel() > chunk:
            out[k] = chunked_log_probs(engine, w, chunk_seconds, context_seconds)
    budget = max(batch_seconds, chunk_seconds) * engine.sample_rate
    batch: list[int] = []
    for k in short + [-1]:  # -1 flushes the last batch
        if batch and (k < 0 or (len(batch) + 1) * waves[k].numel() > budget):
            padded, lengths = pad_waves([waves[i] for i in batch])
            log_probs, n = engine.log_probs(padded, lengths)
            for row, i in enumerate(batch):
                out[i] = log_probs[row, : int(n[row])].float().cpu()
            batch = []
        if k >= 0:
            batch.append(k)
    return [lp for lp in out if lp is not None]


def word_timings(log_probs: torch.Tensor, text: str, tokenizer: Tokenizer, frame_seconds: float,
                 duration: float) -> list[Word]:
    """Words of `text` with start/end seconds from the CTC forced alignment of its tokens (characters or pieces) to
    log_probs (T', C). A word spans from the first frame of its first token to the end of its last token's frames.
    """
    targets = tokenizer.encode(text)
    if not targets:
        return []
    if log_probs.shape[0] < required_frames(targets):  # cannot happen for a CTC decoder's own output; be safe
        log.warning("hypothesis longer than the output frames allow; words are given without times")
        return [Word(w, None, None) for w in text.split()]
    path, scores = AF.forced_align(log_probs[None].float().cpu(), torch.tensor([targets], dtype=torch.int32),
                                   blank=tokenizer.blank)
    spans = AF.merge_tokens(path[0], scores[0].exp(), blank=tokenizer.blank)
    grouped = tokenizer.group_words(targets, [sp.start for sp in spans], [sp.end for sp in spans])
    # Milliseconds, never past the audio's last whole millisecond (rounding up could pass the duration by 0.5 ms).
    last_ms = math.floor(duration * 1000) / 1000
    return [Word(w, min(round(first * frame_seconds, 3), last_ms), min(round(last * frame_seconds, 3), last_ms))
            for w, first, last in grouped]


def transcribe_log_probs(engine: Engine, decode: DecodeFn, decoder_name: str, log_probs: torch.Tensor,
                         duration: float, name: str) -> Transcript:
    """log_probs (T', C) of one audio -> its Transcript (decoded text, word times)."""
    text = decode(log_probs[None], torch.tensor([log_probs.shape[0]]))[0]
    words = word_timings(log_probs, text, engine.tokenizer, engine.frame_seconds, duration)
    return Transcript(audio=name, text=text, duration=duration, decoder=decoder_name, words=words)


def transcribe_waves(engine: Engine, decode: DecodeFn, decoder_name: str, waves: Sequence[torch.Tensor],
                     names: Sequence[str], batch_seconds: float = 120.0, chunk_seconds: float = 30.0,
                     context_seconds: float = 2.0) -> list[Transcript]:
    """Mono waves at the engine's rate [(S_k,)] -> their Transcripts, in the order given."""
    all_log_probs = batched_log_probs(engine, waves, batch_seconds, chunk_seconds, context_seconds)
    return [transcribe_log_probs(engine, decode, decoder_name, lp, w.numel() / engine.sample_rate, name)
            for w, lp, name in zip(waves, all_log_probs, names)]
