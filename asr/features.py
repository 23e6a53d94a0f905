"""Log-mel front-end as an nn.Module: batched, on whatever device the waveforms live on.

Shapes: B batch, S samples, T frames (T = 1 + S // hop with centred frames), F mel bins.
"""
from __future__ import annotations

import torch
import torchaudio
from torch import nn

from asr.config import FeatureConfig
from asr.lengths import lengths_to_mask


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

    def output_lengths(self, sample_lengths: torch.Tensor) -> torch.Tensor:
        """Frames produced for `sample_lengths` samples (exactly what forward() returns)."""
        return frame_lengths(sample_lengths, self.cfg.hop_length)

    @torch.no_grad()
    def forward(self, waves: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # The STFT must run in fp32 even under autocast: fp16 power spectra overflow on loud audio.
        with torch.autocast(device_type=waves.device.type, enabled=False):
            spec = self.mel(waves.float())  # (B, F, T_max)
        feats = torch.log(spec + self.cfg.log_floor).transpose(1, 2)  # (B, T, F)
        return normalize_and_mask(feats, self.output_lengths(lengths), self.cfg)


def normalize_and_mask(feats: torch.Tensor, frame_lengths: torch.Tensor, cfg: FeatureConfig
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """log-mel (B, T, F) + frames (B,) -> (normalised features with zeroed padding, frames clamped to T).

    The one normalisation rule: `LogMel` and the exported front-end (asr/export/frontend.py) both call it.
    """
    frame_lengths = frame_lengths.clamp(max=feats.shape[1])
    mask = lengths_to_mask(frame_lengths, feats.shape[1])  # (B, T)
    if cfg.normalize == "utterance":
        m = mask.unsqueeze(-1).to(feats.dtype)  # (B, T, 1)
        n = m.sum(dim=1, keepdim=True).clamp(min=1.0)
        mean = (feats * m).sum(dim=1, keepdim=True) / n
        var = (((feats - mean) * m) ** 2).sum(dim=1, keepdim=True) / n
        feats = (feats - mean) / torch.sqrt(var + 1e-5)
    feats = feats.masked_fill(~mask.unsqueeze(-1), 0.0)
    return feats, frame_lengths
