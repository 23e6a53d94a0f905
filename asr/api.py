"""The Python API: load a trained or exported model once, transcribe files, lists and waveforms with word times.

    import asr
    rec = asr.load("runs/demo")                          # a run dir, a checkpoint .pt, or an exported .onnx / .pt
    rec.transcribe("talk.flac").text                     # one file -> Transcript
    [t.text for t in rec.transcribe(["a.wav", "b.flac"])]  # a list -> list[Transcript], batched by duration
    rec.transcribe(samples, sample_rate=8000).words      # a NumPy / torch waveform (resampled to the model's rate)
    asr.load("runs/demo", decoder="beam_lm")             # the LM and weights `asr-eval tune_lm=true` recorded

It runs the pipeline `asr-transcribe` and `asr-serve` run (asr.inference.transcription), with the same decoding settings
(asr.decoding.settings). A file that cannot be read raises `asr.audio.AudioLoadError` naming it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch
import torchaudio.functional as AF

from asr.audio import load_audio
from asr.config import BeamConfig, Decoder, InferenceConfig
from asr.errors import UserError
from asr.inference.exported import sidecar_path
from asr.inference.loading import build_decoder, load_engine, resolve_decoding
from asr.inference.transcription import Engine, Transcript, transcribe_waves

Audio = Union[str, Path, np.ndarray, torch.Tensor]


class Recognizer:
    """A loaded model and one decoder. Build it with `Recognizer.load` (or `asr.load`)."""

    def __init__(self, engine: Engine, decoder: str, beam: BeamConfig, batch_seconds: float = 120.0,
                 chunk_seconds: float = 30.0, context_seconds: float = 2.0):
        self.engine, self.decoder, self.beam = engine, decoder, beam
        self.batch_seconds, self.chunk_seconds, self.context_seconds = batch_seconds, chunk_seconds, context_seconds
        self._decode = build_decoder(decoder, engine, beam)

    @classmethod
    def load(cls, model: Union[str, Path], decoder: str = "greedy", device: str = "cpu",
             lm_path: Optional[str] = None, lm_weight: Optional[float] = None, word_score: Optional[float] = None,
             beam_size: int = 50, **kwargs) -> "Recognizer":
        """model: a training run dir or checkpoint .pt, or an exported model (.onnx, or a TorchScript .pt with its
        .json sidecar). decoder: greedy, beam or beam_lm; beam_lm uses `lm_path` / `lm_weight` / `word_score`
        where given, else what `asr-eval tune_lm=true` recorded with the model. kwargs: batch_seconds,
        chunk_seconds, context_seconds."""
        path = Path(model)
        exported = path.is_file() and (path.suffix == ".onnx" or sidecar_path(path).is_file())
        decoder = str(Decoder.parse(decoder, "decoder"))
        beam = BeamConfig(beam_size=beam_size, lm_path=lm_path, lm_weight=lm_weight, word_score=word_score)
        beam.validate("beam", [decoder], lm_may_come_with_model=True)
        cfg = InferenceConfig(checkpoint=None if exported else str(path), exported=str(path) if exported else None,
                              device=device)
        engine = load_engine(cfg)
        return cls(engine, decoder, resolve_decoding(engine, beam, [decoder]), **kwargs)

    @property
    def sample_rate(self) -> int:
        return self.engine.sample_rate

    def _wave(self, audio: Audio, sample_rate: Optional[int], k: int) -> tuple[torch.Tensor, str]:
        if isinstance(audio, (str, Path)):
            return load_audio(audio, self.sample_rate), str(audio)
        if sample_rate is None:
            raise UserError(f"audio[{k}] is a waveform: pass sample_rate=... (the model runs at {self.sample_rate} Hz)")
        wave = torch.as_tensor(np.asarray(audio) if isinstance(audio, np.ndarray) else audio, dtype=torch.float32)
        if wave.ndim == 2:  # (samples, channels), as soundfile reads it
            wave = wave.mean(dim=1)
        if wave.ndim != 1 or wave.numel() == 0:
            raise UserError(f"audio[{k}] must be a non-empty 1-D waveform or (samples, channels), got shape "
                            f"{tuple(wave.shape)}")
        if sample_rate != self.sample_rate:
            wave = AF.resample(wave, sample_rate, self.sample_rate)
        return wave, f"<array {k}>"

    def transcribe(self, audio: Union[Audio, Sequence[Audio]], sample_rate: Optional[int] = None
                   ) -> Union[Transcript, list[Transcript]]:
        """One file or waveform -> a Transcript (text, words with start/end seconds, duration); a list -> a list,
        in the same order. `sample_rate` is that of waveforms (files carry their own)."""
        single = isinstance(audio, (str, Path, np.ndarray, torch.Tensor))
        items = [audio] if single else list(audio)
        waves, names = zip(*(self._wave(a, sample_rate, k) for k, a in enumerate(items))) if items else ((), ())
        out = transcribe_waves(self.engine, self._decode, self.decoder, list(waves), list(names), self.batch_seconds,
                               self.chunk_seconds, self.context_seconds)
        return out[0] if single else out


def load(model: Union[str, Path], **kwargs) -> Recognizer:
    """`Recognizer.load(model, **kwargs)`."""
    return Recognizer.load(model, **kwargs)
