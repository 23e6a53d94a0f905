"""CudaBeamDecoder (torchaudio CUCTC): refuses to build without CUDA; with CUDA, agrees with the reference."""
from __future__ import annotations

import pytest
import torch
from ctc_cases import TOKENIZER, frames, peaky_log_probs, text_of

from asr.decoding import greedy_decode, prefix_beam_search
from asr.errors import UserError

tok = TOKENIZER
HOPPER_OR_NEWER = torch.cuda.is_available() and torch.cuda.get_device_capability() >= (9, 0)
# torchaudio 2.11's CUCTC aborts the process on Hopper and newer (pytorch/audio#3754): the decoder refuses there.
needs_working_cuctc = pytest.mark.skipif(not torch.cuda.is_available() or HOPPER_OR_NEWER,
                                         reason="needs a CUDA GPU older than Hopper")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only refusal")
def test_without_cuda_it_is_a_user_error():
    from asr.decoding import CudaBeamDecoder

    with pytest.raises(UserError, match="needs CUDA"):
        CudaBeamDecoder(tok, beam_size=10)


@pytest.mark.skipif(not HOPPER_OR_NEWER, reason="checks the refusal on Hopper and newer")
def test_on_hopper_it_refuses_instead_of_aborting():
    from asr.decoding import CudaBeamDecoder

    with pytest.raises(UserError, match="3754"):
        CudaBeamDecoder(tok, beam_size=10)


@needs_working_cuctc
def test_agrees_with_reference_on_peaky_log_probs():
    from asr.decoding import CudaBeamDecoder

    dec = CudaBeamDecoder(tok, beam_size=29, blank_skip_threshold=1.0)
    xs = torch.stack([peaky_log_probs(s) for s in range(16)])
    lengths = torch.full((16,), 30)
    got = dec.decode(xs.cuda(), lengths.cuda())
    want = [text_of(prefix_beam_search(xs[b], beam_size=32)[0][0]) for b in range(16)]
    greedy = greedy_decode(xs, lengths, tok)
    agree = sum(g == w for g, w in zip(got, want))
    assert agree >= 15, list(zip(got, want))  # CUCTC keeps at most C = 29 prefixes: a near-tie may differ
    assert sum(g != w for g, w in zip(greedy, want)) >= 2  # the cases are not all won by the best path


@needs_working_cuctc
def test_hand_built_cases_and_lengths():
    from asr.decoding import CudaBeamDecoder

    dec = CudaBeamDecoder(tok, beam_size=10)
    cases = ["C_ATT _D_OG", "A_A", "AA", "____", "CAT"]
    T = max(map(len, cases))
    xs = torch.zeros(len(cases), T, tok.size)
    for b, spec in enumerate(cases):
        xs[b, : len(spec)] = frames([{s: 1.0} for s in spec])
        xs[b, len(spec):] = frames([{"Z": 1.0}] * (T - len(spec)))  # padding that must be ignored
    lengths = torch.tensor([len(c) for c in cases])
    assert dec.decode(xs.cuda(), lengths) == ["CAT DOG", "AA", "A", "", "CAT"]
    classic = frames([{"_": 0.6, "A": 0.4}] * 2, floor=1e-9)
    assert dec.decode(classic[None].cuda(), torch.tensor([2])) == ["A"]
    ids, score = dec.decode_ids(classic[None].cuda(), torch.tensor([2]))[0][0]
    assert ids == [tok.vocab.index("A")]
