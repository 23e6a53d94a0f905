"""What the server runs, and how one upload becomes one result.

`Engine` is the small protocol the server needs of a model: a checkpoint's `LoadedModel` and an exported model
(`asr.export.runtime.ExportedModel`) both offer it, so `asr-serve` never reaches into either. `Transcriber` holds
one engine and the decoders a request may choose, and is called from several threads at once:

* the acoustic model is read-only at inference (PyTorch modules in eval mode, onnxruntime sessions and TorchScript
  modules may run concurrently), so requests run it in parallel;
* greedy decoding is a pure function;
* flashlight's beam decoder object keeps its search state between calls, so one decode at a time per decoder
  (a lock); `beam.workers > 1` decodes in worker processes instead, each busy with one request at a time.

Everything a request computes lives in its own call, so concurrent requests cannot mix their results.

Shapes: S samples, T' frames after subsampling, C vocabulary incl. blank.
"""
from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from asr.audio import read_audio_bytes
from asr.config.serve import ServeConfig
from asr.decoding import parallel
from asr.inference import DecodeFn, build_decoder
from asr.serve.posteriorgram import data_url, posteriorgram_png
from asr.text import CharTokenizer
from asr.transcribe import chunked_log_probs, word_timings

log = logging.getLogger("asr.serve")


class Engine(Protocol):
    """A model the server can run (LoadedModel or ExportedModel)."""

    tokenizer: CharTokenizer

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
class _Decoder:
    decode: DecodeFn
    lock: Any  # a threading.Lock for decoders with state between calls, else a no-op context


class Transcriber:
    """An engine, the decoders `cfg.decoders` offers (built once, at start, so a bad LM fails there), and the
    limits of one request."""

    def __init__(self, engine: Engine, cfg: ServeConfig):
        self.engine = engine
        self.cfg = cfg
        self.decoders: dict[str, _Decoder] = {}
        for name in cfg.decoders:
            fn = build_decoder(str(name), engine, cfg.beam)
            stateless = str(name) == "greedy" or isinstance(fn, parallel.ParallelBeamDecoder)
            self.decoders[str(name)] = _Decoder(fn, contextlib.nullcontext() if stateless else threading.Lock())
        self._warm_up()

    def _warm_up(self) -> None:
        """Run every decoder once on a few frames of silence: starts beam.workers' process pool here, not racing
        in the first concurrent requests, and shows at start that each decoder works."""
        C = self.engine.tokenizer.size
        silence = torch.full((1, 4, C), -30.0)
        silence[..., self.engine.tokenizer.blank] = 0.0
        for name, dec in self.decoders.items():
            with dec.lock:
                dec.decode(silence, torch.tensor([4]))
            log.debug("decoder %s ready", name)

    def transcribe(self, data: bytes, filename: str, decoder: str, posteriorgram: bool = False) -> dict[str, Any]:
        """An audio file's bytes -> {filename, text, words [{word, start, end}], decoder, duration, frame_seconds,
        processing_seconds (+ posteriorgram: a PNG data URL)}.

        Raises AudioLoadError (not audio, corrupt, empty: naming `filename`) and its AudioTooLongError (longer than
        cfg.max_audio_seconds); `decoder` must be one of `self.decoders` (the caller checks).
        """
        t0 = time.perf_counter()
        engine, cfg = self.engine, self.cfg
        wave = read_audio_bytes(data, filename, engine.sample_rate, cfg.max_audio_seconds)  # (S,)
        duration = wave.numel() / engine.sample_rate
        log_probs = chunked_log_probs(engine, wave, cfg.chunk_seconds, cfg.context_seconds)  # (T', C) CPU
        dec = self.decoders[decoder]
        with dec.lock:
            text = dec.decode(log_probs[None], torch.tensor([log_probs.shape[0]]))[0]
        words = word_timings(log_probs, text, engine.tokenizer, engine.frame_seconds, duration)
        result: dict[str, Any] = {"filename": filename, "text": text, "words": words, "decoder": decoder,
                                  "duration": round(duration, 3), "frame_seconds": engine.frame_seconds}
        if posteriorgram:
            result["posteriorgram"] = data_url(posteriorgram_png(log_probs, engine.tokenizer, engine.frame_seconds))
        result["processing_seconds"] = round(time.perf_counter() - t0, 4)
        return result

    def close(self) -> None:
        """End beam.workers' decoding processes, if any were started."""
        if any(isinstance(d.decode, parallel.ParallelBeamDecoder) for d in self.decoders.values()):
            parallel.shutdown()
