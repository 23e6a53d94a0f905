"""Greedy decoding on hand-built log-probs: collapse, blanks, lengths, spaces, emitting frames, word spans."""
from __future__ import annotations

import pytest
import torch
from ctc_cases import TOKENIZER, frames, peaky_log_probs

from asr.decoding import greedy_decode, greedy_ids
from asr.decoding.reference import collapse

tok = TOKENIZER


def one(spec) -> str:
    x = frames([{s: 1.0} for s in spec])
    return greedy_decode(x[None], torch.tensor([x.shape[0]]), tok)[0]


@pytest.mark.parametrize("spec, expected", [
    ("CC_AAT", "CAT"),  # runs collapse, blanks vanish
    ("A_A", "AA"),  # a blank separates two identical labels
    ("AA", "A"),
    ("____", ""),
    (" _A  _ B_ ", "A B"),  # word boundaries: leading/trailing stripped, repeats collapsed to one space
    ("DOG'S", "DOG'S"),
])
def test_greedy_hand_built(spec, expected):
    assert one(spec) == expected


def test_greedy_respects_lengths_in_a_batch():
    a = frames([{s: 1.0} for s in "C_AT__"])
    b = frames([{s: 1.0} for s in "DOGXYZ"])  # frames 3.. are padding and must be ignored
    x = torch.stack([a, b])
    assert greedy_decode(x, torch.tensor([6, 3]), tok) == ["CAT", "DOG"]
    assert greedy_decode(x, torch.tensor([0, 1]), tok) == ["", "D"]


def test_greedy_ids_report_the_first_frame_of_each_run():
    x = frames([{s: 1.0} for s in "_CC_A T"])
    [(ids, frame_idx)] = greedy_ids(x[None], torch.tensor([7]))
    assert tok.decode(ids) == "CA T"
    assert frame_idx == [1, 4, 5, 6]
    assert tok.group_words(ids, frame_idx, frame_idx) == [("CA", 1, 4), ("T", 6, 6)]


def test_grouping_into_words_skips_empty_words():
    ids = tok.encode(" HI  YOU ")
    frames_of = list(range(len(ids)))
    assert tok.group_words(ids, frames_of, frames_of) == [("HI", 1, 2), ("YOU", 5, 7)]


def test_best_path_is_not_the_best_labelling():
    # The classic case: blank 0.6 / A 0.4 on two frames. Best path "__" (0.36) says ""; the labelling "A" has
    # 0.24 + 0.24 + 0.16 = 0.64. Greedy follows the path; the beam searches (tests beside this one) find "A".
    x = frames([{"_": 0.6, "A": 0.4}] * 2, floor=0.0)
    assert greedy_decode(x[None], torch.tensor([2]), tok) == [""]


def test_greedy_matches_collapse_of_argmax_on_random_batches():
    xs = torch.stack([peaky_log_probs(s) for s in range(8)])
    lengths = torch.tensor([30, 29, 5, 17, 30, 1, 0, 12])
    got = greedy_decode(xs, lengths, tok)
    for b in range(8):
        path = xs[b, : lengths[b]].argmax(-1).tolist()
        assert got[b] == " ".join(tok.decode(collapse(path)).split())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_greedy_on_cuda_matches_cpu():
    xs = torch.stack([peaky_log_probs(s) for s in range(8)])
    lengths = torch.tensor([30, 29, 5, 17, 30, 1, 0, 12])
    cpu = greedy_ids(xs, lengths)
    assert greedy_ids(xs.cuda(), lengths.cuda()) == cpu
    assert greedy_decode(xs.cuda(), lengths, tok) == greedy_decode(xs, lengths, tok)
