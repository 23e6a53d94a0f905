"""CTC loss on fp32 log-probs and the feasibility rule.

Shapes: B batch, T' output frames, C classes (blank = 0), U label length.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F


def required_frames(labels: Sequence[int]) -> int:
    """Minimum T' for which CTC can emit `labels`: U plus one blank between each pair of equal neighbours."""
    repeats = sum(1 for a, b in zip(labels, labels[1:]) if a == b)
    return len(labels) + repeats


def is_feasible(labels: Sequence[int], num_frames: int) -> bool:
    """True when a T'-frame output can carry `labels` (otherwise the CTC loss is +inf)."""
    return num_frames >= required_frames(labels)


def batch_required_frames(targets: torch.Tensor, target_lengths: torch.Tensor) -> torch.Tensor:
    """`required_frames` for a padded batch: targets (B, U), target_lengths (B,) -> (B,)."""
    if targets.shape[1] < 2:
        return target_lengths.clone()
    valid = torch.arange(1, targets.shape[1], device=targets.device)[None, :] < target_lengths[:, None]
    repeats = ((targets[:, 1:] == targets[:, :-1]) & valid).sum(dim=1)
    return target_lengths + repeats


def ctc_loss(log_probs: torch.Tensor, out_lengths: torch.Tensor, targets: torch.Tensor,
             target_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-utterance CTC loss divided by target length (ESPnet/"mean" convention), and an infeasible mask.

    log_probs: (B, T', C) log-softmax output (any dtype; computed in fp32); targets: (B, U) padded.
    Returns (losses (B,) fp32, zeroed (B,) bool). `zero_infinity=True` is only a backstop: infeasible
    utterances are filtered before training, so any True in `zeroed` is counted and reported by the caller.
    """
    lp = log_probs.float().transpose(0, 1)  # (T', B, C) as torch's ctc_loss wants
    # The native kernel is used for padded batches; see DESIGN.md on why we do not chase cuDNN's path.
    losses = F.ctc_loss(lp, targets, out_lengths, target_lengths, blank=0, reduction="none", zero_infinity=True)
    zeroed = out_lengths < batch_required_frames(targets, target_lengths)
    return losses / target_lengths.clamp(min=1).to(losses.dtype), zeroed
