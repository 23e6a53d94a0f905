"""`asr-transcribe`: audio files -> text with word timings, one JSON line per file.

    asr-transcribe checkpoint=runs/synthetic_small_adamw audio=[talk.flac,call.wav]
    asr-transcribe checkpoint=RUN audio=[long.flac] decoder=beam_lm beam.lm_path=lm.arpa output=out.jsonl

    {"audio": "talk.flac", "text": "HELLO WORLD", "decoder": "greedy", "duration": 2.1,
     "words": [{"word": "HELLO", "start": 0.32, "end": 0.64}, {"word": "WORLD", "start": 0.8, "end": 1.2}]}

Any rate and channel count soundfile reads is down-mixed and resampled to the model's rate. Long files are
cut into windows of chunk_seconds, each run with context_seconds of audio on both sides, and only the window's
own output frames are kept: the model's memory is bounded by the window while the decoder sees the whole file.
Word times come from a CTC forced alignment of the hypothesis to the log-probs.

A file that cannot be read (corrupt, empty, not audio) does not stop the batch: its line is
{"audio": "bad.wav", "error": "cannot decode bad.wav: ..."}, the other files are transcribed, and the command
then exits with status 2 and a one-line summary naming the failed files.

Shapes: S samples, T' frames after subsampling, C vocabulary incl. blank, U label length.
"""
from __future__ import annotations

import json
import logging
import math
import sys
from pathlib import Path
from typing import Any

import torch
import torchaudio.functional as AF
from omegaconf import DictConfig

from asr import hydra_cli
from asr.audio import AudioLoadError, load_audio
from asr.config import ConfigError, TranscribeConfig, to_object
from asr.ctc import required_frames
from asr.errors import UserError
from asr.inference import LoadedModel, build_decoder, load_engine, resolve_checkpoint
from asr.text import CharTokenizer

log = logging.getLogger("asr.transcribe")


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
def chunked_log_probs(loaded: LoadedModel, wave: torch.Tensor, chunk_seconds: float,
                      context_seconds: float) -> torch.Tensor:
    """wave (S,) -> log_probs (T', C) on the CPU, T' the frames the model gives the whole file at once.

    A file no longer than one window is run in one piece, exactly as the unchunked model would.
    """
    unit = loaded.samples_per_frame
    total = loaded.output_frames(wave.numel())
    pieces, kept = [], 0
    for a, s, e, b in windows(wave.numel(), unit, chunk_seconds, context_seconds, loaded.sample_rate):
        log_probs, n = loaded.log_probs(wave[a:b][None], torch.tensor([b - a]))
        first = (s - a) // unit
        count = total - kept if e == wave.numel() else (e - s) // unit
        piece = log_probs[0, first: min(first + count, int(n[0]))].cpu()
        pieces.append(piece)
        kept += piece.shape[0]
    if kept != total:  # the frame arithmetic above is exact for centred odd conv kernels; guard the invariant
        raise RuntimeError(f"chunking produced {kept} frames, expected {total}")
    return torch.cat(pieces)


def word_timings(log_probs: torch.Tensor, text: str, tokenizer: CharTokenizer, frame_seconds: float,
                 duration: float) -> list[dict[str, Any]]:
    """Words of `text` with start/end seconds from the CTC forced alignment of its characters to log_probs (T', C).

    A word spans from the first frame of its first character to the end of its last character's frames.
    """
    targets = tokenizer.encode(text)
    if not targets:
        return []
    if log_probs.shape[0] < required_frames(targets):  # cannot happen for a CTC decoder's own output; be safe
        log.warning("hypothesis longer than the output frames allow; words are given without times")
        return [{"word": w, "start": None, "end": None} for w in text.split()]
    path, scores = AF.forced_align(log_probs[None].float().cpu(), torch.tensor([targets], dtype=torch.int32),
                                   blank=tokenizer.blank)
    spans = AF.merge_tokens(path[0], scores[0].exp(), blank=tokenizer.blank)
    grouped = tokenizer.group_words(targets, [sp.start for sp in spans], [sp.end for sp in spans])
    return [{"word": w, "start": round(min(first * frame_seconds, duration), 3),
             "end": round(min(last * frame_seconds, duration), 3)} for w, first, last in grouped]


def transcribe_file(loaded: LoadedModel, decode, decoder_name: str, path: str, cfg: TranscribeConfig
                    ) -> dict[str, Any]:
    wave = load_audio(path, loaded.sample_rate)  # (S,) mono, resampled; AudioLoadError names the file
    duration = wave.numel() / loaded.sample_rate
    log_probs = chunked_log_probs(loaded, wave, cfg.chunk_seconds, cfg.context_seconds)  # (T', C)
    text = decode(log_probs[None], torch.tensor([log_probs.shape[0]]))[0]
    words = word_timings(log_probs, text, loaded.tokenizer, loaded.frame_seconds, duration)
    return {"audio": path, "text": text, "decoder": decoder_name, "duration": round(duration, 3), "words": words}


class TranscribeError(UserError):
    """Some files could not be transcribed; `results` holds every line written, error lines included."""

    def __init__(self, message: str, results: list[dict[str, Any]]):
        super().__init__(message)
        self.results = results


def _failure_summary(failed: list[str], total: int, shown: int = 5) -> str:
    """One line however many failed: "7 of 9 files failed: a.wav, ..., e.wav and 2 more" (`shown` names)."""
    names = ", ".join(failed[:shown]) + (f" and {len(failed) - shown} more" if len(failed) > shown else "")
    return f"{len(failed)} of {total} files failed: {names}"


def main(cfg: DictConfig | TranscribeConfig | dict) -> list[dict[str, Any]]:
    """Transcribe every file of cfg.audio; writes JSON lines to cfg.output (or stdout) and returns them.

    A file whose audio cannot be read gets an {"audio", "error"} line and the rest go on; at the end a
    TranscribeError (a UserError: exit status 2 from the CLI) names the failed files.
    """
    cfg = to_object(cfg, TranscribeConfig)
    if cfg.checkpoint:
        resolve_checkpoint(cfg.checkpoint)
    # No file there at all is a typo on the command line: refuse before the model loads and before any output.
    # A missing file among others is that file's failure, like a corrupt one: an error line, and the rest go on.
    missing = [k for k, p in enumerate(cfg.audio) if not Path(p).is_file()]
    if missing and len(missing) == len(cfg.audio):
        k = missing[0]
        more = f" (and none of the other {len(missing) - 1} exists either)" if len(missing) > 1 else ""
        raise ConfigError(f"audio[{k}]: file not found: {cfg.audio[k]}{more}")
    loaded = load_engine(cfg)
    decode = build_decoder(cfg.decoder, loaded, cfg.beam)
    out = open(cfg.output, "w", encoding="utf-8") if cfg.output else sys.stdout
    results, failed = [], []
    try:
        for path in cfg.audio:
            try:
                rec = transcribe_file(loaded, decode, cfg.decoder, path, cfg)
            except AudioLoadError as exc:  # this file's fault (corrupt, empty, not audio): record it, go on
                rec = {"audio": path, "error": " ".join(str(exc).split())}
                failed.append(path)
                log.warning("%s: not transcribed: %s", path, rec["error"])
            else:
                log.info("%s: %.1f s, %d words", path, rec["duration"], len(rec["words"]))
            results.append(rec)
            out.write(json.dumps(rec, ensure_ascii=False) + "\n")
            out.flush()
    finally:
        if out is not sys.stdout:
            out.close()
    if failed:
        raise TranscribeError(_failure_summary(failed, len(cfg.audio)), results)
    return results


def _audio_as_list(args: list[str]) -> list[str]:
    """`audio=talk.flac` -> `audio=['talk.flac']`: one file needs no list syntax (quoted, so any path parses)."""
    out = []
    for a in args:
        value = a[len("audio="):] if a.startswith("audio=") else None
        if value is not None and not value.startswith("[") and "'" not in value:
            a = f"audio=['{value}']"
        out.append(a)
    return out


def cli() -> None:
    """Hydra entry point (`asr-transcribe checkpoint=RUN_DIR audio=[a.flac,b.wav]` or `audio=a.flac`)."""
    sys.argv = [sys.argv[0], *_audio_as_list(sys.argv[1:])]
    hydra_cli.run("asr-transcribe", "transcribe", "transcribe_schema", TranscribeConfig, main)
