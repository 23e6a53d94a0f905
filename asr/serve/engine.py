"""What the server runs, and how one upload becomes one result.

`Transcriber` holds one `asr.inference.transcription.Engine` (a checkpoint's `LoadedModel` or an exported model) and the
decoders a request may choose, runs the pipeline of `asr.inference.transcription` on one upload, and is called from several
threads at once:

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
from typing import Any

import torch

from asr.audio import read_audio_bytes
from asr.config import ConfigError
from asr.config.inference import default_decoders
from asr.config.serve import ServeConfig
from asr.decoding import parallel
from asr.inference.loading import build_decoder, resolve_decoding
from asr.inference.transcription import DecodeFn, Engine, chunked_log_probs, transcribe_log_probs
from asr.serve.posteriorgram import data_url, posteriorgram_png

log = logging.getLogger("asr.serve")


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
        if cfg.decoders is None:  # the defaults, with beam_lm when an LM travels with the model
            cfg.decoders = default_decoders(resolve_decoding(engine, cfg.beam, []).lm_path)
            if cfg.decoder not in cfg.decoders:
                raise ConfigError(f"decoder: {cfg.decoder} is not among decoders {[str(d) for d in cfg.decoders]}; "
                                  f"set beam.lm_path=PATH or choose greedy or beam")
        beam = resolve_decoding(engine, cfg.beam, cfg.decoders)
        for name in cfg.decoders:
            fn = build_decoder(str(name), engine, beam)
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
            transcript = transcribe_log_probs(engine, dec.decode, decoder, log_probs, duration, filename)
        result: dict[str, Any] = {"filename": filename, **transcript.to_dict(), "frame_seconds": engine.frame_seconds}
        del result["audio"]
        if posteriorgram:
            result["posteriorgram"] = data_url(posteriorgram_png(log_probs, engine.tokenizer, engine.frame_seconds))
        result["processing_seconds"] = round(time.perf_counter() - t0, 4)
        return result

    def close(self) -> None:
        """End beam.workers' decoding processes, if any were started."""
        if any(isinstance(d.decode, parallel.ParallelBeamDecoder) for d in self.decoders.values()):
            parallel.shutdown()
