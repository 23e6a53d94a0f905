"""`asr-serve`'s schema: the model to serve (a checkpoint, or an exported model), where to listen, the decoders a
request may choose, and the limits that keep one request from taking the server down. configs/serve.yaml
extends it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from asr.config.base import check
from asr.config.inference import Decoder, InferenceConfig


@dataclass
class ServeConfig(InferenceConfig):
    """The model: exactly one of `checkpoint` and `exported` (InferenceConfig's: an .onnx or TorchScript .pt)."""

    host: str = "127.0.0.1"  # loopback: only this machine; 0.0.0.0 serves the network (there is no authentication)
    port: int = 8000  # TCP port; 0 = any free port (the URL is logged at start)
    decoder: Decoder = Decoder.greedy  # used when a request names none; must be one of `decoders`
    # What a request may choose; null = greedy, beam (+ beam_lm with an LM, from beam.lm_path or recorded with it).
    decoders: Optional[list[Decoder]] = None
    max_upload_mb: float = 20.0  # largest request body (the audio file and its form fields), MiB; larger -> 413
    max_audio_seconds: float = 120.0  # longest audio accepted, seconds; longer -> 413
    workers: int = 2  # requests the model and decoder work on at a time (threads); the others wait their turn
    max_pending: int = 32  # transcriptions in the server at once (running + waiting); more get 503 (bounds memory)
    upload_timeout_seconds: float = 30.0  # an upload that sends no byte for this long gets 408 and frees its place
    chunk_seconds: float = 30.0  # window the model runs on at a time (long files); bounds its memory
    context_seconds: float = 2.0  # extra audio on each side of a window, run but not kept
    shutdown_seconds: float = 30.0  # on SIGTERM/SIGINT, wait this long for requests in flight, then cancel them

    def __post_init__(self) -> None:
        # A server must say unambiguously what it serves (InferenceConfig alone would take the exported file
        # and ignore the checkpoint).
        check(not (self.checkpoint and self.exported), "exported",
              f"give either checkpoint=PATH or exported=PATH, not both (got checkpoint={self.checkpoint} and "
              f"exported={self.exported})")
        super().__post_init__()
        check(bool(self.host), "host", "must not be empty; 127.0.0.1 serves this machine only, 0.0.0.0 every network")
        check(0 <= self.port <= 65535, "port", f"must be in 0..65535 (0 = any free port), got {self.port}")
        self.decoder = Decoder.parse(self.decoder, "decoder")
        if self.decoders is not None:  # null: decided once the model is loaded (its recorded LM adds beam_lm)
            self.decoders = [Decoder.parse(d, "decoders") for d in self.decoders]
            check(bool(self.decoders) and len(set(self.decoders)) == len(self.decoders), "decoders",
                  f"{[str(d) for d in self.decoders]} must be distinct names from {Decoder.names()}")
            check(self.decoder in self.decoders, "decoder", f"{self.decoder} is not among decoders "
                  f"{[str(d) for d in self.decoders]}; add it or choose one of them")
        self.beam.validate("beam", self.decoders or [self.decoder], lm_may_come_with_model=True)
        check(self.max_upload_mb > 0, "max_upload_mb", f"must be > 0, got {self.max_upload_mb}")
        check(self.max_audio_seconds > 0, "max_audio_seconds", f"must be > 0, got {self.max_audio_seconds}")
        check(self.workers >= 1, "workers", f"must be >= 1, got {self.workers}")
        check(self.max_pending >= self.workers, "max_pending",
              f"must be >= workers ({self.workers}), got {self.max_pending}")
        check(self.upload_timeout_seconds > 0, "upload_timeout_seconds", f"must be > 0, got {self.upload_timeout_seconds}")
        check(self.chunk_seconds > 0, "chunk_seconds", f"must be > 0, got {self.chunk_seconds}")
        check(self.context_seconds >= 0, "context_seconds", f"must be >= 0, got {self.context_seconds}")
        check(self.shutdown_seconds >= 0, "shutdown_seconds", f"must be >= 0, got {self.shutdown_seconds}")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 2**20)
