"""The log-mel front-end in operators every exporter and runtime has: the STFT as a strided conv1d with a
windowed DFT basis (ONNX has no complex tensors, and torchaudio's STFT returns complex ones), then the same mel
matrix, log floor and normalisation as `asr.model.features.LogMel` (whose buffers it copies, so the two cannot drift).

Shapes: B batch, S samples, T frames (T = 1 + S // hop, centred frames), K = n_fft // 2 + 1 frequency bins,
F mel bins.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from asr.model.features import LogMel, frame_lengths, normalize_and_mask


class ConvLogMel(nn.Module):
    """(waves (B, S) fp32, lengths (B,) int64) -> (feats (B, T, F), frame_lengths (B,)), equal to `LogMel` within
    float rounding (tests/export/test_frontend.py states the tolerance).

    A DFT by matrix product costs n_fft x 2K multiply-adds per frame (~0.26 M at n_fft 512, i.e. ~26 M per audio
    second): more than an FFT, still a small fraction of the acoustic model's cost.
    """

    def __init__(self, logmel: LogMel):
        super().__init__()
        self.cfg = logmel.cfg
        spec = logmel.mel.spectrogram
        n_fft, win = spec.n_fft, spec.window.float()
        left = (n_fft - win.numel()) // 2  # torch.stft centres a shorter window inside n_fft
        window = nn.functional.pad(win, (left, n_fft - win.numel() - left))  # (n_fft,)
        k = torch.arange(n_fft // 2 + 1, dtype=torch.float64)[:, None]  # (K, 1)
        n = torch.arange(n_fft, dtype=torch.float64)[None, :]  # (1, n_fft)
        angle = 2 * math.pi * k * n / n_fft
        basis = torch.cat([torch.cos(angle), -torch.sin(angle)]) * window.double()  # (2K, n_fft)
        self.register_buffer("basis", basis.float()[:, None, :], persistent=False)  # (2K, 1, n_fft)
        self.register_buffer("fb", logmel.mel.mel_scale.fb.float().clone(), persistent=False)  # (K, F)
        self.register_buffer("mean", logmel.mean.detach().float().clone(), persistent=False)  # (F,) normalize=corpus
        self.register_buffer("std", logmel.std.detach().float().clone(), persistent=False)
        self.n_fft, self.hop = n_fft, spec.hop_length
        self.num_bins = n_fft // 2 + 1

    def log_mel(self, samples: torch.Tensor) -> torch.Tensor:
        """(B, S') samples, framed as they are (no centre padding) -> (B, T, F) log-mel, T = 1 + (S' - n_fft) // hop.
        The streaming step (asr/export/streaming.py) calls it on windows that already start n_fft / 2 early."""
        y = nn.functional.conv1d(samples[:, None, :], self.basis, stride=self.hop)  # (B, 2K, T)
        power = y[:, : self.num_bins] ** 2 + y[:, self.num_bins:] ** 2  # (B, K, T)
        mel = torch.matmul(power.transpose(1, 2), self.fb)  # (B, T, F)
        return torch.log(mel + self.cfg.log_floor)

    def forward(self, waves: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pad = self.n_fft // 2  # centre=True with zero ("constant") padding, as LogMel
        feats = self.log_mel(nn.functional.pad(waves.float(), (pad, pad)))  # (B, T, F) from (B, S + n_fft)
        return normalize_and_mask(feats, frame_lengths(lengths, self.hop), self.cfg, self.mean, self.std)
