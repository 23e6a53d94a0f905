"""Training-only augmentation, seeded: VTLP and SpecAugment on features, speed perturbation and noise on waveforms.

Shapes: B batch, T frames, F mel bins, S samples. Nothing here runs on dev/test data: `FeatureAugment` is the
identity in eval mode, and the dataset applies the waveform transforms only when it was built with them.
"""
from __future__ import annotations

import math

import torch
import torchaudio.functional as AF
from torch import nn

from asr.config import AugmentConfig, FeatureConfig


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


def slaney_mel_centres(n_mels: int, f_max: float) -> torch.Tensor:
    """(n_mels,) centre frequencies in Hz of the Slaney mel filterbank over [0, f_max] (LogMel's scale): mel bins
    equally spaced on the Slaney scale, linear below 1 kHz (3 mels per 200 Hz), logarithmic above."""
    f_break, mel_break, log_step = 1000.0, 15.0, math.log(6.4) / 27.0

    def to_mel(f: torch.Tensor) -> torch.Tensor:
        log_part = mel_break + torch.log(f.clamp(min=f_break) / f_break) / log_step
        return torch.where(f < f_break, 3.0 * f / 200.0, log_part)

    def to_hz(m: torch.Tensor) -> torch.Tensor:
        return torch.where(m < mel_break, 200.0 * m / 3.0, f_break * torch.exp(log_step * (m - mel_break)))

    edges = torch.linspace(0.0, float(to_mel(torch.tensor(f_max, dtype=torch.float64))), n_mels + 2,
                           dtype=torch.float64)
    return to_hz(edges[1:-1]).float()


class FrequencyWarp(nn.Module):
    """Vocal-tract-length perturbation (Jaitly & Hinton 2013) on log-mel features: a new "speaker" per utterance.

    Each utterance draws a factor alpha uniformly from `factor_range`, and its spectrum is stretched along the
    frequency axis so that a formant at f moves to alpha * f; above `boundary` x Nyquist (x min(1, alpha)) the warp
    turns piecewise linear so that Nyquist stays at Nyquist (Kaldi's VTLN warp). Applied to the mel bins directly:
    output bin j takes the value the utterance has at the frequency that lands on bin j's centre, linearly
    interpolated between the two nearest mel bins. Unlike speed perturbation it changes neither the duration (so
    no extra padding in duration-bucketed batches) nor the pitch, and costs one batched matmul per batch.
    """

    def __init__(self, features: FeatureConfig, factor_range: tuple[float, float], boundary: float = 0.8):
        super().__init__()
        self.lo, self.hi = float(factor_range[0]), float(factor_range[1])
        self.boundary = boundary
        self.nyquist = features.sample_rate / 2
        self.register_buffer("centres", slaney_mel_centres(features.n_mels, self.nyquist), persistent=False)

    def source_frequencies(self, alpha: torch.Tensor) -> torch.Tensor:
        """alpha (B,) -> (B, F): the frequency whose value each output bin centre takes (f / alpha below the knee)."""
        f = self.centres[None, :]  # (1, F)
        a = alpha[:, None].to(f)  # (B, 1)
        knee = self.boundary * self.nyquist * torch.clamp(a, max=1.0)  # (B, 1), output frequency of the knee
        below = f / a
        above = knee / a + (f - knee) * (self.nyquist - knee / a) / (self.nyquist - knee)
        return torch.where(f <= knee, below, above)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """feats (B, T, F) -> warped copy (B, T, F); padded frames stay zero; identity when not training."""
        if not self.training or feats.numel() == 0:
            return feats
        B, T, F = feats.shape
        device = generator.device if generator is not None else torch.device("cpu")
        u = torch.rand(B, generator=generator, device=device).to(feats.device)
        alpha = self.lo + (self.hi - self.lo) * u  # (B,)
        src = self.source_frequencies(alpha).clamp(self.centres[0], self.centres[-1])  # (B, F) Hz
        upper = torch.searchsorted(self.centres, src.contiguous()).clamp(1, F - 1)  # (B, F) first centre >= src
        lower = upper - 1
        c_lo, c_hi = self.centres[lower], self.centres[upper]
        w = ((src - c_lo) / (c_hi - c_lo)).clamp(0.0, 1.0)  # (B, F) weight of the upper neighbour
        # As one (B, F_in, F_out) interpolation matrix per utterance: a batched matmul is far cheaper on a CPU
        # than gathering along F with a (B, T, F) index.
        interp = torch.zeros(B, F, F, dtype=feats.dtype, device=feats.device)
        interp.scatter_add_(1, lower[:, None, :], (1 - w)[:, None, :].to(feats.dtype))
        interp.scatter_add_(1, upper[:, None, :], w[:, None, :].to(feats.dtype))
        return torch.bmm(feats, interp)

    def extra_repr(self) -> str:
        return f"factor_range=({self.lo}, {self.hi}), boundary={self.boundary}"


class FeatureAugment(nn.Module):
    """Training-time feature augmentation: VTLP (`augment.vtlp`), then SpecAugment masks (`augment.spec_augment`).

    (feats (B, T, F), lengths (B,)) -> (B, T, F); the identity in eval mode. Both draw from the same generator.
    """

    def __init__(self, cfg: AugmentConfig, features: FeatureConfig):
        super().__init__()
        self.warp = FrequencyWarp(features, (cfg.vtlp[0], cfg.vtlp[1])) if cfg.vtlp else None
        self.masks = SpecAugment(cfg) if cfg.spec_augment else None
        self.masks_from_epoch = cfg.spec_augment_from_epoch
        self.masks_from_progress = cfg.spec_augment_from_progress
        self.epoch = 0
        self.progress = 0.0

    def set_epoch(self, epoch: int) -> None:
        """The training epoch about to run (the loop calls it, as for the sampler): masks start at
        `augment.spec_augment_from_epoch`."""
        self.epoch = int(epoch)

    def set_progress(self, progress: float) -> None:
        """The run's progress in [0, 1] before a step (the learning-rate schedule's, `asr.train.optim.progress`): masks
        start once it reaches `augment.spec_augment_from_progress`, at the same point of a budget on any host."""
        self.progress = max(float(progress), 0.0)  # the schedule's progress is negative during warm-up

    @staticmethod
    def wanted(cfg: AugmentConfig) -> bool:
        """Whether `cfg` asks for any feature augmentation (otherwise the trainer builds none)."""
        return bool(cfg.vtlp) or cfg.spec_augment

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor,
                generator: torch.Generator | None = None) -> torch.Tensor:
        if self.warp is not None:
            feats = self.warp(feats, lengths, generator)
        if (self.masks is not None and self.epoch >= self.masks_from_epoch
                and self.progress >= self.masks_from_progress):
            feats = self.masks(feats, lengths, generator)
        return feats


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
