"""Log-mel front-end as an nn.Module: batched, on whatever device the waveforms live on.

Shapes: B batch, S samples, T frames (T = 1 + S // hop with centred frames), F mel bins.
"""
from __future__ import annotations

from typing import Iterable

import torch
import torchaudio
from torch import nn

from asr.config import FeatureConfig
from asr.errors import UserError
from asr.lengths import lengths_to_mask


class FeatureStatsError(UserError):
    """A checkpoint's feature statistics are missing or do not fit its features config."""


def frame_lengths(sample_lengths: torch.Tensor, hop_length: int) -> torch.Tensor:
    """T = 1 + S // hop: the frames a centred STFT gives for S samples (LogMel's rule, usable without one)."""
    return torch.div(sample_lengths, hop_length, rounding_mode="floor") + 1


class LogMel(nn.Module):
    """(waves (B, S), lengths (B,)) -> (feats (B, T, F), frame_lengths (B,)).

    Slaney mel scale and normalisation with zero ("constant") centre padding, i.e. the same definition as
    `librosa.feature.melspectrogram` defaults, so the two can be cross-checked. Padded frames past each
    utterance's length are zero after normalisation.
    """

    def __init__(self, cfg: FeatureConfig | None = None):
        super().__init__()
        self.cfg = cfg or FeatureConfig()
        c = self.cfg
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=c.sample_rate, n_fft=c.n_fft, win_length=c.win_length, hop_length=c.hop_length,
            n_mels=c.n_mels, power=2.0, center=True, pad_mode="constant", norm="slaney", mel_scale="slaney")
        # features.normalize=corpus: the training set's per-bin log-mel mean and standard deviation (`fit_stats`),
        # carried by checkpoints with the model's weights; the identity until fitted or loaded.
        self.register_buffer("mean", torch.zeros(c.n_mels))
        self.register_buffer("std", torch.ones(c.n_mels))

    def output_lengths(self, sample_lengths: torch.Tensor) -> torch.Tensor:
        """Frames produced for `sample_lengths` samples (exactly what forward() returns)."""
        return frame_lengths(sample_lengths, self.cfg.hop_length)

    @torch.no_grad()
    def forward(self, waves: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return normalize_and_mask(self.log_mel(waves), self.output_lengths(lengths), self.cfg, self.mean, self.std)

    def log_mel(self, waves: torch.Tensor) -> torch.Tensor:
        """(B, S) -> (B, T_max, F) fp32 log-mel, not normalised, padding frames included."""
        # The STFT must run in fp32 even under autocast: fp16 power spectra overflow on loud audio.
        with torch.autocast(device_type=waves.device.type, enabled=False):
            spec = self.mel(waves.float())  # (B, F, T_max)
        return torch.log(spec + self.cfg.log_floor).transpose(1, 2)

    def stats(self) -> dict[str, torch.Tensor]:
        """The training-set statistics as checkpoints carry them (identity unless features.normalize=corpus)."""
        return {"mean": self.mean.detach().cpu().clone(), "std": self.std.detach().cpu().clone()}

    def load_stats(self, stats: dict[str, torch.Tensor] | None, source: object) -> None:
        """Set the statistics from a checkpoint's `feature_stats` (absent in checkpoints written before them)."""
        if stats is None:
            if self.cfg.normalize == "corpus":
                raise FeatureStatsError(f"{source}: features.normalize=corpus but the checkpoint carries no "
                                        f"feature statistics; retrain, or use a checkpoint written with them")
            return
        for name in ("mean", "std"):
            value = stats.get(name)
            if not isinstance(value, torch.Tensor) or value.shape != (self.cfg.n_mels,):
                raise FeatureStatsError(f"{source}: feature_stats.{name} must be a tensor of features.n_mels "
                                        f"({self.cfg.n_mels}) values; the checkpoint is damaged or of another model")
            getattr(self, name).copy_(value)

    @torch.no_grad()
    def fit_stats(self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> int:
        """Set `mean`/`std` (F,) from the valid frames of (waves (B, S), lengths (B,)) batches, accumulated in
        fp64. Returns the number of frames they came from."""
        total = torch.zeros((), dtype=torch.float64)
        s1 = torch.zeros(self.cfg.n_mels, dtype=torch.float64)
        s2 = torch.zeros(self.cfg.n_mels, dtype=torch.float64)
        for waves, lengths in batches:
            feats = self.log_mel(waves).double()  # (B, T, F)
            frames = self.output_lengths(lengths).clamp(max=feats.shape[1])
            m = lengths_to_mask(frames.to(feats.device), feats.shape[1]).unsqueeze(-1)  # (B, T, 1)
            total += m.sum().cpu()
            s1 += (feats * m).sum(dim=(0, 1)).cpu()
            s2 += (feats ** 2 * m).sum(dim=(0, 1)).cpu()
        mean = s1 / total.clamp(min=1)
        var = (s2 / total.clamp(min=1) - mean ** 2).clamp(min=1e-10)
        self.mean.copy_(mean.float())
        self.std.copy_(var.sqrt().float())
        return int(total)


def normalize_and_mask(feats: torch.Tensor, frame_lengths: torch.Tensor, cfg: FeatureConfig,
                       mean: torch.Tensor | None = None, std: torch.Tensor | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """log-mel (B, T, F) + frames (B,) -> (normalised features with zeroed padding, frames clamped to T).
    `mean`/`std` (F,): the training set's statistics (features.normalize=corpus).

    The one normalisation rule: `LogMel` and the exported front-end (asr/export/frontend.py) both call it.
    """
    frame_lengths = frame_lengths.clamp(max=feats.shape[1])
    mask = lengths_to_mask(frame_lengths, feats.shape[1])  # (B, T)
    if cfg.normalize == "corpus":
        assert mean is not None and std is not None, "features.normalize=corpus needs the training-set statistics"
        feats = (feats - mean) / std
    elif cfg.normalize == "utterance":
        m = mask.unsqueeze(-1).to(feats.dtype)  # (B, T, 1)
        n = m.sum(dim=1, keepdim=True).clamp(min=1.0)
        mean = (feats * m).sum(dim=1, keepdim=True) / n
        var = (((feats - mean) * m) ** 2).sum(dim=1, keepdim=True) / n
        feats = (feats - mean) / torch.sqrt(var + 1e-5)
    feats = feats.masked_fill(~mask.unsqueeze(-1), 0.0)
    return feats, frame_lengths
