"""The training objective: CTC loss on fp32 log-probs, the feasibility rule, and `compute_loss`, the one function
that turns a batch into the loss being minimised (DESIGN.md rule 8: the training step, validation and every
benchmark call it, so none of them computes a loss the trainer does not).

Shapes: B batch, S samples, T' output frames, C classes (blank = 0), U label length.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from asr.model.forward import ForwardOutput, forward


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


@dataclass(frozen=True)
class Objective:
    """What `compute_loss` returns: the objective per utterance, its mean, and the forward pass it came from."""

    loss: torch.Tensor  # () mean over the batch of `losses`: what the step back-propagates
    losses: torch.Tensor  # (B,) CTC, or (1 - w) x CTC + w x intermediate CTC with model.inter_ctc_weight = w > 0
    zeroed: torch.Tensor  # (B,) bool: CTC-infeasible utterances whose (final-layer) loss was zeroed
    output: ForwardOutput  # log-probs (B, T', C), lengths, the features the model saw


def compute_loss(featurizer: torch.nn.Module, model: torch.nn.Module, waves: torch.Tensor, wave_lengths: torch.Tensor,
                 targets: torch.Tensor, target_lengths: torch.Tensor, *, inter_ctc_weight: float,
                 precision: Optional[torch.dtype] = None, augment: Optional[torch.nn.Module] = None,
                 generator: Optional[torch.Generator] = None) -> Objective:
    """The training objective for (waves (B, S), wave_lengths (B,)) against (targets (B, U), target_lengths (B,)),
    all on the model's device: `asr.model.forward.forward` (augmented when `augment` is given: training), then the CTC
    loss of the final layer, mixed with the intermediate layer's when inter_ctc_weight > 0 (validation too, so the
    dev loss is the loss being minimised)."""
    out = forward(featurizer, model, waves, wave_lengths, precision=precision, augment=augment, generator=generator,
                  intermediate=inter_ctc_weight > 0)
    losses, zeroed = ctc_loss(out.log_probs, out.out_lengths, targets, target_lengths)
    if out.inter_log_probs is not None:  # intermediate CTC: the same targets, read at a lower layer
        inter, _ = ctc_loss(out.inter_log_probs, out.out_lengths, targets, target_lengths)
        losses = (1 - inter_ctc_weight) * losses + inter_ctc_weight * inter
    return Objective(losses.mean(), losses, zeroed, out)
