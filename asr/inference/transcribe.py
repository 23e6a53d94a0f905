"""`asr-transcribe`: audio files -> text with word timings, as JSONL (default), CSV, SRT, VTT or CTM.

    asr-transcribe checkpoint=runs/synthetic_small_adamw audio=[talk.flac,call.wav]
    asr-transcribe checkpoint=RUN audio=data/synthetic/test decoder=beam_lm output=test.srt
    find talks -name '*.flac' | asr-transcribe checkpoint=RUN audio=- output=talks.ctm

    {"audio": "talk.flac", "text": "HELLO WORLD", "decoder": "greedy", "duration": 2.1,
     "words": [{"word": "HELLO", "start": 0.32, "end": 0.64}, {"word": "WORLD", "start": 0.8, "end": 1.2}]}

`audio` takes files, folders (recursively), globs, manifests and `-` (asr.inference.audio_inputs). Files are read in groups,
run through the model in duration-sorted batches and written in the order given (asr.inference.transcription, the pipeline
`asr-serve` and the Python API share). beam_lm uses the LM and weights `asr-eval tune_lm=true` recorded with the
model unless the command line sets them (asr.decoding.settings), and logs which it used.

A file that cannot be read (missing, corrupt, empty, not audio) does not stop the rest: its JSONL line is
{"audio": "bad.wav", "error": "cannot decode bad.wav: ..."}, the other files are transcribed, and the command
then exits with status 2 and a one-line summary naming the failed files.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from asr import hydra_cli
from asr.audio import AudioLoadError, load_audio
from asr.config import ConfigError, TranscribeConfig, to_object
from asr.errors import UserError
from asr.inference import audio_inputs
from asr.inference.loading import build_decoder, load_engine, resolve_checkpoint, resolve_decoding
from asr.inference.transcript_formats import Writer, pick_format
from asr.inference.transcription import DecodeFn, Engine, transcribe_waves

log = logging.getLogger("asr.inference.transcribe")

GROUP_FILES = 64  # files read and batched together; results are written after each group (bounded memory)


def transcribe_group(engine: Engine, decode: DecodeFn, paths: list[str], cfg: TranscribeConfig
                     ) -> list[dict[str, Any]]:
    """Transcript dicts of `paths`, in order; an unreadable file gives {"audio", "error"}."""
    waves: dict[int, torch.Tensor] = {}
    records: list[dict[str, Any]] = [{} for _ in paths]
    for k, path in enumerate(paths):
        try:
            waves[k] = load_audio(path, engine.sample_rate)  # (S,) mono, resampled
        except AudioLoadError as exc:  # this file's fault (missing, corrupt, empty, not audio): record it, go on
            records[k] = {"audio": path, "error": " ".join(str(exc).split())}
    keys = sorted(waves)
    done = transcribe_waves(engine, decode, str(cfg.decoder), [waves[k] for k in keys], [paths[k] for k in keys],
                            cfg.batch_seconds, cfg.chunk_seconds, cfg.context_seconds)
    for k, transcript in zip(keys, done):
        records[k] = transcript.to_dict()
    return records


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
    """Transcribe everything cfg.audio names; writes cfg.output (or JSONL to stdout) and returns the records.

    An unreadable file gets an {"audio", "error"} record and the rest go on; at the end a TranscribeError (a
    UserError: exit status 2 from the CLI) names the failed files.
    """
    cfg = to_object(cfg, TranscribeConfig)
    fmt = pick_format(cfg.output_format, cfg.output)
    if cfg.checkpoint:
        resolve_checkpoint(cfg.checkpoint)
    files = audio_inputs.expand(cfg.audio)
    if not files:
        raise ConfigError("audio: the list read from stdin is empty; pipe file names, one per line")
    # No file there at all is a typo on the command line: refuse before the model loads and before any output.
    if not any(Path(f).is_file() for f in files):
        more = f" (and none of the other {len(files) - 1} exists either)" if len(files) > 1 else ""
        raise ConfigError(f"audio: file not found: {files[0]}{more}")
    engine = load_engine(cfg)
    beam = resolve_decoding(engine, cfg.beam, [cfg.decoder])
    decode = build_decoder(str(cfg.decoder), engine, beam)
    writer = Writer(fmt, cfg.output, many=len(files) > 1)
    results, failed = [], []
    try:
        for g in range(0, len(files), GROUP_FILES):
            for rec in transcribe_group(engine, decode, files[g: g + GROUP_FILES], cfg):
                if "error" in rec:
                    failed.append(rec["audio"])
                    log.warning("%s: not transcribed: %s", rec["audio"], rec["error"])
                else:
                    log.info("%s: %.1f s, %d words", rec["audio"], rec["duration"], len(rec["words"]))
                results.append(rec)
                writer.write(rec)
    finally:
        writer.close()
    if cfg.output:
        log.info("%d file(s) transcribed into %s (%s)", len(results) - len(failed), writer.where(), fmt)
    if failed:
        raise TranscribeError(_failure_summary(failed, len(files)), results)
    return results


def _audio_as_list(args: list[str]) -> list[str]:
    """`audio=talk.flac` and bare words (`a.wav b.wav`, what a shell glob expands to, or `-`) -> one
    `audio=['talk.flac','a.wav','b.wav']` (quoted, so any path parses); `audio=[...]` list syntax is kept as is."""
    out, files = [], []
    for a in args:
        if a.startswith("audio=") and not a[len("audio="):].startswith("["):
            files.append(a[len("audio="):])
        elif a == "-" or ("=" not in a and not a.startswith(("-", "~", "+"))):
            files.append(a)
        else:
            out.append(a)
    if files:
        quoted = ",".join("'" + f.replace("'", "\\'") + "'" for f in files)
        out.append(f"audio=[{quoted}]")
    return out


def cli() -> None:
    """Hydra entry point (`asr-transcribe checkpoint=RUN_DIR audio=[a.flac,b.wav]` or `audio=a.flac`)."""
    sys.argv = [sys.argv[0], *_audio_as_list(sys.argv[1:])]
    hydra_cli.run("asr-transcribe", "transcribe", "transcribe_schema", TranscribeConfig, main)
