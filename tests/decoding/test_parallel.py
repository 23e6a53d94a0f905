"""asr.decoding.parallel: beam search over worker processes gives exactly the single-process decoder's
transcripts, in the batch's order, with and without a word LM; `beam.workers` is validated and wired."""
from __future__ import annotations

import os

import pytest
import torch
from ctc_cases import TOKENIZER, frames, peaky_log_probs

from asr.config import BeamConfig, ConfigError
from asr.decoding import parallel
from asr.decoding.beam import BeamSearchDecoder
from asr.decoding.ngram import build_arpa


@pytest.fixture(scope="module", autouse=True)
def _end_workers():
    yield
    parallel.shutdown()


def _batch(n: int = 7) -> tuple[torch.Tensor, torch.Tensor]:
    """n utterances of different lengths, padded: random peaky ones and two spelling real words."""
    items = [peaky_log_probs(seed, T=20 + 9 * seed) for seed in range(n - 2)]
    word = lambda w: frames([spec for ch in w for spec in ({ch: 0.9}, {"_": 0.9})])  # noqa: E731
    items += [torch.cat([word("THE"), frames([{" ": 0.9}]), word("CAT")]), word("DOG")]
    lengths = torch.tensor([x.shape[0] for x in items])
    batch = torch.full((n, int(lengths.max()), TOKENIZER.size), -30.0)
    for i, x in enumerate(items):
        batch[i, : x.shape[0]] = x
    return batch, lengths


@pytest.mark.parametrize("with_lm", [False, True])
def test_parallel_transcripts_equal_the_single_process_ones(tmp_path, with_lm):
    kwargs = dict(beam_size=8)
    if with_lm:
        text = tmp_path / "lm.txt"
        text.write_text("THE CAT\nTHE DOG\nA CAT AND A DOG\n")
        kwargs.update(lm_path=str(build_arpa(text, 2, tmp_path / "lm.arpa")), lm_weight=1.0)
    log_probs, lengths = _batch()
    expected = BeamSearchDecoder(TOKENIZER, **kwargs).decode(log_probs, lengths)
    decoder = parallel.ParallelBeamDecoder(TOKENIZER, 3, **kwargs)
    assert decoder(log_probs, lengths) == expected
    assert decoder(log_probs[:2], lengths[:2]) == expected[:2]  # fewer utterances than workers
    assert decoder(log_probs[:0], lengths[:0]) == []
    assert "CAT" in expected[-2] and "DOG" in expected[-1]


def test_workers_setting():
    assert parallel.resolve_workers(0) == (os.cpu_count() or 1)
    assert parallel.resolve_workers(3) == 3
    with pytest.raises(ConfigError, match="beam.workers"):
        BeamConfig(workers=-1).validate("beam", ["beam"])


def test_a_missing_lm_is_reported_before_any_worker_starts(tmp_path):
    from asr.inference.loading import build_decoder

    class Loaded:  # what build_decoder reads of a LoadedModel
        tokenizer = TOKENIZER

    with pytest.raises(Exception, match="beam.lm_path"):
        build_decoder("beam_lm", Loaded(), BeamConfig(workers=2, lm_path=str(tmp_path / "missing.arpa")))
