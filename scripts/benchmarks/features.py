"""Features: our batched log-mel (asr.model.features.LogMel, padded batches, torch) against librosa's
`feature.melspectrogram` + log, one utterance at a time, with the same parameters (Slaney mel scale and norm,
zero centre padding, 25 ms Hann window, 10 ms hop, 512-point FFT, 80 bins, the same log floor).

Reports audio-seconds per second of each and the largest absolute difference of the log-mel values over all
valid frames (ours without utterance normalisation, so the two compute the same thing).
"""
from __future__ import annotations

import time

import librosa
import numpy as np
import torch

from asr.config import FeatureConfig
from asr.model.features import LogMel

from .common import SAMPLE_RATE, Row, demo_durations, speechlike

BATCH = 16  # utterances per batch on our side, sorted by length as the duration-bucketing sampler would


def librosa_logmel(wave: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """(S,) -> (T, F): the reference computation, librosa's defaults where they match ours."""
    mel = librosa.feature.melspectrogram(
        y=wave, sr=cfg.sample_rate, n_fft=cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length,
        window="hann", center=True, pad_mode="constant", power=2.0, n_mels=cfg.n_mels, htk=False, norm="slaney")
    return np.log(mel + cfg.log_floor).T


def _batches(waves: list[np.ndarray]) -> list[tuple[torch.Tensor, torch.Tensor, list[int]]]:
    order = sorted(range(len(waves)), key=lambda i: len(waves[i]))
    out = []
    for k in range(0, len(order), BATCH):
        idx = order[k:k + BATCH]
        lengths = torch.tensor([len(waves[i]) for i in idx])
        pad = torch.zeros(len(idx), int(lengths.max()))
        for j, i in enumerate(idx):
            pad[j, :len(waves[i])] = torch.from_numpy(waves[i])
        out.append((pad, lengths, idx))
    return out


def run(quick: bool, scales: list[int]) -> list[Row]:
    base = 20 if quick else 150
    rows = []
    base_durations = demo_durations(base, seed=1)
    base_waves = [speechlike(d, seed=i) for i, d in enumerate(base_durations)]
    for scale in scales:  # k x the work: the base utterances k times over (generating audio is not what is timed)
        durations, waves = base_durations * scale, base_waves * scale
        audio_s = sum(durations)
        batches = _batches(waves)
        ours = LogMel(FeatureConfig())  # utterance-normalised, as in training
        raw = LogMel(FeatureConfig(normalize="none"))
        cfg = raw.cfg
        ours(*batches[0][:2])  # warm-up (allocations, FFT plans)
        t0 = time.perf_counter()
        for pad, lengths, _ in batches:
            ours(pad, lengths)
        t_ours = time.perf_counter() - t0
        librosa_logmel(waves[0], cfg)  # warm-up (first-call imports and caches)
        t0 = time.perf_counter()
        reference = [librosa_logmel(w, cfg) for w in waves]
        t_librosa = time.perf_counter() - t0
        max_diff = 0.0
        for pad, lengths, idx in batches:
            feats, frames = raw(pad, lengths)
            for j, i in enumerate(idx):
                ref = reference[i]
                n = int(frames[j])
                assert n == ref.shape[0], f"frame count differs: ours {n}, librosa {ref.shape[0]}"
                max_diff = max(max_diff, float(np.abs(feats[j, :n].numpy() - ref).max()))
        rows.append(Row("features", f"{base} utterances per 1x, 1-20 s, 80 mels", scale, "audio-s/s",
                        audio_s / t_ours, "librosa per utterance", audio_s / t_librosa,
                        extra={"audio s": round(audio_s), "max abs diff": max_diff,
                               "torch threads": str(torch.get_num_threads())}))
    return rows


__all__ = ["run", "librosa_logmel", "SAMPLE_RATE"]
