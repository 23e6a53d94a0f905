"""Padded tensors travel with their lengths: the one rule that turns lengths into a mask, and the one that pads
waveforms into a batch."""
from __future__ import annotations

from typing import Sequence

import torch


def lengths_to_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """(B,) lengths -> (B, max_len) bool, True on valid frames."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def pad_waves(waves: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """1-D waves (S_b,) -> (zero-padded (B, S_max) fp32, lengths (B,) int64); no waves give (0, 0) and (0,)."""
    lengths = torch.tensor([w.numel() for w in waves], dtype=torch.int64)
    padded = torch.zeros(len(waves), int(lengths.max()) if len(waves) else 0, dtype=torch.float32)
    for k, w in enumerate(waves):
        padded[k, : w.numel()] = w
    return padded, lengths
