"""The reference prefix beam search against brute force over every alignment."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from asr.decoding.reference import collapse, exhaustive_search, prefix_beam_search


def test_classic_example_best_labelling_beats_best_path():
    # blank 0.6 / A 0.4 on two frames: the best path "__" (0.36) collapses to ""; "A" sums A_, _A, AA = 0.64.
    lp = np.log([[0.6, 0.4], [0.6, 0.4]])
    best_path = collapse(lp.argmax(-1).tolist())
    assert best_path == ()
    for result in (exhaustive_search(lp), prefix_beam_search(lp, beam_size=4)):
        assert result[0][0] == (1,)
        assert math.exp(result[0][1]) == pytest.approx(0.64)
        assert dict(result)[()] == pytest.approx(math.log(0.36))


def test_repeated_label_needs_a_blank_between():
    # Only "A" is possible on frames 0 and 2, the middle frame is blank or A: "AA" only through A_A.
    with np.errstate(divide="ignore"):
        lp = np.log([[0.0, 1.0], [0.5, 0.5], [0.0, 1.0]])
    probs = {k: math.exp(v) for k, v in prefix_beam_search(lp, beam_size=10)}
    assert probs == pytest.approx({(1, 1): 0.5, (1,): 0.5})
    assert {k: math.exp(v) for k, v in exhaustive_search(lp)} == pytest.approx(probs)


def test_accepts_tensors_and_sorts_best_first():
    lp = torch.randn(4, 3, generator=torch.Generator().manual_seed(0)).log_softmax(-1)
    result = prefix_beam_search(lp, beam_size=100)
    scores = [s for _, s in result]
    assert scores == sorted(scores, reverse=True)
    assert [k for k, _ in result] == [k for k, _ in exhaustive_search(lp.numpy())]


def test_narrow_beam_keeps_at_most_beam_size_and_never_overestimates():
    lp = torch.randn(5, 4, generator=torch.Generator().manual_seed(1)).mul(2).log_softmax(-1).numpy()
    exact = dict(exhaustive_search(lp))
    narrow = prefix_beam_search(lp, beam_size=3)
    assert len(narrow) <= 3
    for labels, score in narrow:
        assert score <= exact[labels] + 1e-9


def test_exhaustive_refuses_large_inputs():
    with pytest.raises(ValueError, match="too many"):
        exhaustive_search(np.zeros((30, 29)))


@settings(max_examples=150, deadline=None)
@given(T=st.integers(1, 5), C=st.integers(2, 4), sharpness=st.floats(0.1, 4.0), seed=st.integers(0, 2**32 - 1))
def test_wide_prefix_beam_search_equals_exhaustive(T, C, sharpness, seed):
    lp = torch.randn(T, C, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    lp = (lp * sharpness).log_softmax(-1).numpy()
    exact = exhaustive_search(lp)
    assert math.fsum(math.exp(s) for _, s in exact) == pytest.approx(1.0)
    # A beam of 400 holds every prefix there can be: sum over L <= 5 of (C - 1)**L <= 364.
    beam = prefix_beam_search(lp, beam_size=400)
    assert dict(beam).keys() == dict(exact).keys()
    np.testing.assert_allclose([dict(beam)[k] for k, _ in exact], [s for _, s in exact], rtol=0, atol=1e-9)
    # The top labelling: the same one, or a tie in probability.
    assert beam[0][0] == exact[0][0] or beam[0][1] == pytest.approx(exact[0][1], abs=1e-12)
    assert beam[0][1] == pytest.approx(exact[0][1], abs=1e-9)
