"""CTC feasibility boundary: `required_frames` is exactly the shortest output that can carry a target.

Oracles independent of asr/model/ctc.py: torch's own `F.ctc_loss` with `zero_infinity=False` (finite at the
boundary, +inf one frame short) and, at the boundary, the closed form: with T' = U + repeats there is exactly
one CTC path (the labels with one blank between each pair of equal neighbours), so the loss is minus the sum
of the log-probabilities along it.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from asr.model.ctc import batch_required_frames, ctc_loss, is_feasible, required_frames
from asr.text import CharTokenizer

# (text, required frames): U + number of adjacent equal labels. A space is a label like any other.
CASES = [("A", 1), ("AB", 2), ("LL", 3), ("AAB", 4), ("ABB", 4), ("AAA", 5), ("HELLO", 6), ("A A", 3),
         ("BOOKKEEPER", 13), ("ABCDEFGHIJ", 10)]


def _only_path(labels: list[int]) -> list[int]:
    """The one alignment of `labels` in exactly required_frames(labels) frames."""
    path = []
    for k, lab in enumerate(labels):
        if k and labels[k - 1] == lab:
            path.append(0)
        path.append(lab)
    return path


def _batch(texts: list[str], frames: list[int], seed: int = 0):
    """Random log-probs (B, T', C) with per-utterance lengths `frames`, padded targets (B, U) (0 past lengths)."""
    tok = CharTokenizer()
    labels = [tok.encode(t) for t in texts]
    g = torch.Generator().manual_seed(seed)
    log_probs = torch.randn(len(texts), max(frames), tok.size, generator=g, dtype=torch.float64).log_softmax(-1)
    targets = torch.zeros(len(texts), max(len(x) for x in labels), dtype=torch.int64)
    for i, x in enumerate(labels):
        targets[i, : len(x)] = torch.tensor(x)
    return labels, log_probs, torch.tensor(frames), targets, torch.tensor([len(x) for x in labels])


def _torch_oracle(log_probs, out_lengths, targets, target_lengths) -> torch.Tensor:
    """Unnormalised per-utterance CTC loss, infinite when infeasible (no zero_infinity)."""
    return F.ctc_loss(log_probs.transpose(0, 1), targets, out_lengths, target_lengths, blank=0, reduction="none",
                      zero_infinity=False)


@pytest.mark.parametrize("text,need", CASES)
def test_required_frames_is_u_plus_adjacent_repeats(text, need):
    labels = CharTokenizer().encode(text)
    assert required_frames(labels) == need
    assert is_feasible(labels, need) and not is_feasible(labels, need - 1)
    assert len(_only_path(labels)) == need


def test_exactly_required_frames_is_finite_and_matches_oracles():
    # One padded batch mixing lengths: short targets are padded with 0 (the blank id) after long ones, and
    # the padding must not count as "repeats" (that would flag "AB" as infeasible at 2 frames).
    texts = [t for t, _ in CASES]
    labels, log_probs, out_lengths, targets, target_lengths = _batch(texts, [n for _, n in CASES])
    losses, zeroed = ctc_loss(log_probs, out_lengths, targets, target_lengths)
    assert losses.dtype == torch.float32
    assert int(zeroed.sum()) == 0, [t for t, z in zip(texts, zeroed) if z]
    assert torch.equal(batch_required_frames(targets, target_lengths), out_lengths)
    oracle = _torch_oracle(log_probs, out_lengths, targets, target_lengths)
    assert torch.isfinite(oracle).all()
    # the wrapper divides by U (the "mean" convention); fp32 vs float64 oracle -> rtol 1e-5
    torch.testing.assert_close(losses.double() * target_lengths, oracle, rtol=1e-5, atol=1e-5)
    for i, lab in enumerate(labels):
        path = _only_path(lab)
        closed_form = -sum(float(log_probs[i, t, c]) for t, c in enumerate(path))
        assert math.isclose(float(oracle[i]), closed_form, rel_tol=1e-9), texts[i]


def test_one_frame_short_is_infinite_and_zeroed_and_counted():
    texts = [t for t, _ in CASES]
    frames = [n - 1 if n > 1 else 1 for _, n in CASES]  # "A" cannot go below 1 frame: keep it as a feasible control
    _, log_probs, out_lengths, targets, target_lengths = _batch(texts, frames, seed=1)
    infeasible = torch.tensor([n > 1 for _, n in CASES])
    oracle = _torch_oracle(log_probs, out_lengths, targets, target_lengths)
    assert torch.equal(torch.isinf(oracle), infeasible)
    losses, zeroed = ctc_loss(log_probs, out_lengths, targets, target_lengths)
    assert torch.equal(zeroed, infeasible)
    assert int(zeroed.sum()) == len(CASES) - 1
    assert torch.isfinite(losses).all()
    assert torch.all(losses[infeasible] == 0)
    # the feasible one in the same batch is untouched by its neighbours being zeroed
    assert math.isclose(float(losses[0]), float(oracle[0]), rel_tol=1e-5)


def test_zeroed_utterances_contribute_no_gradient():
    """zero_infinity as a backstop: an infeasible utterance gives zero loss *and* zero gradient, not NaN."""
    _, log_probs, out_lengths, targets, target_lengths = _batch(["AAB", "LL"], [3, 3], seed=2)  # AAB needs 4
    logits = log_probs.clone().float().requires_grad_(True)
    losses, zeroed = ctc_loss(logits.log_softmax(-1), out_lengths, targets, target_lengths)
    assert zeroed.tolist() == [True, False]
    losses.mean().backward()
    assert torch.isfinite(logits.grad).all()
    assert torch.count_nonzero(logits.grad[0]) == 0
    assert torch.count_nonzero(logits.grad[1]) > 0
