"""Reading audio: soundfile for I/O (FLAC/WAV/OGG), mono down-mix, resampling with torchaudio.

Every failure becomes an `AudioLoadError` naming the file (and the utterance id when known), so a
corrupt file in a 100k-utterance corpus is a one-line warning, not a traceback from libsndfile.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from asr.errors import UserError


class AudioLoadError(UserError):
    """An audio file could not be read; the message names the file and utterance id."""


class AudioTooLongError(AudioLoadError):
    """Audio longer than a caller's limit (asr-serve's max_audio_seconds); the message names the file."""

    def __init__(self, name: str, seconds: float, limit: float):
        super().__init__(f"{name} is {seconds:.1f} s long; at most {limit:g} s are accepted")
        self.seconds, self.limit = seconds, limit


@dataclass(frozen=True)
class AudioInfo:
    sample_rate: int
    channels: int
    frames: int

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def _where(path, utt_id: str | None) -> str:
    return f"{path} (utterance {utt_id})" if utt_id else str(path)


def audio_info(path: str | Path, utt_id: str | None = None) -> AudioInfo:
    """Header only: sample rate, channels and frames, without decoding the samples."""
    try:
        info = sf.info(str(path))
    except Exception as exc:  # soundfile raises RuntimeError/LibsndfileError/OSError depending on the fault
        raise AudioLoadError(f"cannot read audio header of {_where(path, utt_id)}: {exc}") from exc
    return AudioInfo(int(info.samplerate), int(info.channels), int(info.frames))


def load_audio(path: str | Path, sample_rate: int = 16000, utt_id: str | None = None,
               resample: bool = True) -> torch.Tensor:
    """Decode a file to a mono float32 waveform at `sample_rate`.

    Returns: (S,) float32 in [-1, 1]. With `resample=False` a different file rate is an error
    (training data should be prepared at the model's rate; inference resamples).
    """
    if not Path(path).is_file():
        raise AudioLoadError(f"audio file not found: {_where(path, utt_id)}")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:
        raise AudioLoadError(f"cannot decode {_where(path, utt_id)}: {exc}") from exc
    return _mono_at_rate(data, sr, sample_rate, _where(path, utt_id), resample)


def read_audio_bytes(data: bytes, name: str, sample_rate: int = 16000, max_seconds: float | None = None
                     ) -> torch.Tensor:
    """`load_audio` for a file's bytes (an upload): (S,) mono float32 at `sample_rate`; errors name `name`.

    max_seconds: longer audio raises AudioTooLongError, judged from the header before anything is decoded (a
    small compressed file can hold hours), and checked again on the samples.
    """
    if not data:
        raise AudioLoadError(f"audio file is empty: {name}")
    buf = io.BytesIO(data)
    try:
        with sf.SoundFile(buf) as f:
            sr = int(f.samplerate)
            if max_seconds is not None and f.frames / sr > max_seconds:
                raise AudioTooLongError(name, f.frames / sr, max_seconds)
            samples = f.read(dtype="float32", always_2d=True)
    except AudioLoadError:
        raise
    except Exception as exc:  # soundfile raises RuntimeError/LibsndfileError/TypeError depending on the fault
        reason = str(exc).replace(f"Error opening {buf!r}: ", "")  # soundfile names the buffer object
        raise AudioLoadError(f"cannot decode {name}: {reason}") from exc
    if max_seconds is not None and samples.shape[0] / sr > max_seconds:
        raise AudioTooLongError(name, samples.shape[0] / sr, max_seconds)
    return _mono_at_rate(samples, sr, sample_rate, name, resample=True)


def _mono_at_rate(data: np.ndarray, sr: int, sample_rate: int, where: str, resample: bool) -> torch.Tensor:
    """(frames, channels) float32 at sr -> (S,) mono at sample_rate; `where` names the file in errors."""
    if data.shape[0] == 0:
        raise AudioLoadError(f"audio file is empty: {where}")
    wave = torch.from_numpy(np.ascontiguousarray(data.mean(axis=1)))
    if sr != sample_rate:
        if not resample:
            raise AudioLoadError(f"{where} is {sr} Hz, expected {sample_rate} Hz; "
                                 f"resample the corpus or set the feature sample_rate to {sr}")
        wave = AF.resample(wave, sr, sample_rate)
    return wave


def write_flac(path: str | Path, wave, sample_rate: int = 16000) -> None:
    """Write 16-bit mono FLAC (the LibriSpeech format)."""
    arr = wave.numpy() if isinstance(wave, torch.Tensor) else np.asarray(wave)
    sf.write(str(path), np.clip(arr, -1.0, 1.0), sample_rate, format="FLAC", subtype="PCM_16")
