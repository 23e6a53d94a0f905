"""Greedy (best path) CTC decoding: argmax per frame, collapse repeats, drop blanks.

Shapes: B batch, T' frames after subsampling, C vocabulary including the blank (id 0).
"""
from __future__ import annotations

import torch

from asr.lengths import lengths_to_mask
from asr.text import Tokenizer


def greedy_ids(log_probs: torch.Tensor, lengths: torch.Tensor, blank: int = 0) -> list[tuple[list[int], list[int]]]:
    """Best-path label ids and the frame that emitted each one.

    Args:
        log_probs: (B, T', C) scores (log-probs or logits: only the argmax matters), on any device.
        lengths: (B,) valid frames per utterance; frames at or beyond the length are ignored.
    Returns:
        For each utterance `(ids, frames)`: the collapsed label ids and, for each, the index of the first frame of
        its run (for word timings). Computed batched on the tensor's device; one transfer to the CPU at the end.
    """
    if log_probs.dim() != 3:
        raise ValueError(f"log_probs must be (B, T', C), got shape {tuple(log_probs.shape)}")
    B, T, _ = log_probs.shape
    best = log_probs.argmax(dim=-1)  # (B, T')
    lengths = lengths.to(best.device)
    valid = lengths_to_mask(lengths, T)  # (B, T')
    # A frame emits when it is not blank and differs from the frame before it (a run's first frame).
    changed = torch.ones_like(valid)
    changed[:, 1:] = best[:, 1:] != best[:, :-1]
    emit = valid & changed & (best != blank)
    best, emit = best.cpu(), emit.cpu()
    out = []
    for b in range(B):
        frames = emit[b].nonzero(as_tuple=True)[0]
        out.append((best[b, frames].tolist(), frames.tolist()))
    return out


def greedy_decode(log_probs: torch.Tensor, lengths: torch.Tensor, tokenizer: Tokenizer) -> list[str]:
    """(B, T', C) log-probs + (B,) lengths -> B transcripts (best path, repeats collapsed, blanks dropped)."""
    return [tokenizer.ids_to_text(ids) for ids, _ in greedy_ids(log_probs, lengths, tokenizer.blank)]

