"""Training-only augmentation, seeded: SpecAugment on features, speed perturbation and noise on waveforms.

Shapes: B batch, T frames, F mel bins, S samples. Nothing here runs on dev/test data: `SpecAugment` is the
identity in eval mode, and the dataset applies the waveform transforms only when it was built with them.
"""
from __future__ import annotations

import math

import torch
import torchaudio.functional as AF
from torch import nn

from asr.config import AugmentConfig


class SpecAugment(nn.Module):
    """Frequency and time masks (Park et al. 2019, without time warping) on normalized log-mel features.

    Masked values are set to 0, the per-feature mean after utterance normalization, so a mask carries no
    information rather than a "silence" the model could learn to spot. Each utterance draws its own masks;
    time-mask widths are at most `time_mask_max_frac` of that utterance's own frame count, and every mask stays
    inside the valid frames, so the padding is never touched.
    """

    def __init__(self, cfg: AugmentConfig | None = None):
        super().__init__()
        self.cfg = cfg or AugmentConfig()

    @staticmethod
    def _randint(high: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Per-element uniform integers in [0, high] (inclusive), high (B,) int64 >= 0."""
        device = generator.device if generator is not None else torch.device("cpu")
        u = torch.rand(high.shape, generator=generator, device=device).to(high.device)
        return torch.minimum((u * (high + 1).to(u.dtype)).long(), high)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """feats (B, T, F), lengths (B,) valid frames -> masked copy (B, T, F); identity when not training."""
        c = self.cfg
        if not self.training or not c.spec_augment or feats.numel() == 0:
            return feats
        B, T, F = feats.shape
        dev = feats.device
        lengths = lengths.to(dev).long().clamp(0, T)
        frames = torch.arange(T, device=dev)[None, :]  # (1, T)
        bins = torch.arange(F, device=dev)[None, :]  # (1, F)
        valid = frames < lengths[:, None]  # (B, T)
        fmask = torch.zeros(B, F, dtype=torch.bool, device=dev)
        for _ in range(c.freq_masks):
            width = self._randint(torch.full((B,), min(c.freq_mask_width, F), device=dev), generator)
            start = self._randint(F - width, generator)
            fmask |= (bins >= start[:, None]) & (bins < (start + width)[:, None])
        tmask = torch.zeros(B, T, dtype=torch.bool, device=dev)
        max_width = torch.floor(lengths.double() * c.time_mask_max_frac).long()
        for _ in range(c.time_masks):
            width = self._randint(max_width, generator)
            start = self._randint(lengths - width, generator)
            tmask |= (frames >= start[:, None]) & (frames < (start + width)[:, None])
        mask = (fmask[:, None, :] | tmask[:, :, None]) & valid[:, :, None]  # (B, T, F)
        return feats.masked_fill(mask, 0.0)

    def extra_repr(self) -> str:
        c = self.cfg
        return (f"freq_masks={c.freq_masks}, freq_mask_width={c.freq_mask_width}, time_masks={c.time_masks}, "
                f"time_mask_max_frac={c.time_mask_max_frac}")


def speed_perturb(wave: torch.Tensor, sample_rate: int, factor: float) -> torch.Tensor:
    """Kaldi/sox-style speed perturbation: play `wave` (S,) `factor` times faster (tempo and pitch change).

    Implemented as resampling from sample_rate * factor to sample_rate, so the output has about S / factor
    samples. Factors are rounded to a rate in whole Hz, which is exact for the usual 0.9 / 1.1 at 16 kHz.
    """
    if factor <= 0:
        raise ValueError(f"speed factor must be > 0, got {factor}")
    orig = int(round(sample_rate * factor))
    if orig == sample_rate:
        return wave
    return AF.resample(wave, orig_freq=orig, new_freq=sample_rate)


def add_noise(wave: torch.Tensor, snr_db: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Add white Gaussian noise to `wave` (S,) at `snr_db` dB relative to its mean power; silence is returned as is."""
    power = float(wave.double().pow(2).mean()) if wave.numel() else 0.0
    if power <= 0.0:
        return wave
    noise_std = math.sqrt(power / (10.0 ** (snr_db / 10.0)))
    device = generator.device if generator is not None else wave.device
    noise = torch.randn(wave.shape, generator=generator, device=device, dtype=torch.float32).to(wave.device)
    return wave + (noise * noise_std).to(wave.dtype)
