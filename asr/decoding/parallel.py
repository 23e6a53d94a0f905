"""Beam search spread over processes (`beam.workers`): flashlight's decoder runs on one core and a test set is
embarrassingly parallel, so each batch of log-probs (B, T', C) is cut into up to N contiguous parts decoded in N
worker processes, and the hypotheses come back in the batch's order.

Workers are spawned, not forked (the parent holds torch's thread pools and the trainer's signal handlers), run
torch with one thread, and live for the whole evaluation (one pool per process, `shutdown()` ends it). A worker
builds a decoder the first time it sees a setting (beam, LM, weights) and keeps it, so LM tuning's grid loads each
LM once per worker and setting. Each worker holds its own copy of the LM: mind the memory with large ARPA files
(a KenLM binary is memory-mapped and shared).
"""
from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import Any, Optional

import torch

from asr.text import Tokenizer, tokenizer_from_dict

_pool: Optional[ProcessPoolExecutor] = None
_pool_size = 0
_decoders: dict[str, Any] = {}  # in a worker: setting -> BeamSearchDecoder


def resolve_workers(workers: int) -> int:
    """beam.workers -> a process count: 0 means every core."""
    return max(1, os.cpu_count() or 1) if workers == 0 else workers


def _init_worker() -> None:
    torch.set_num_threads(1)


def _decode_part(key: str, vocab: dict, kwargs: dict, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[str]:
    from asr.decoding.beam import BeamSearchDecoder

    if key not in _decoders:
        _decoders[key] = BeamSearchDecoder(tokenizer_from_dict(vocab), **kwargs)
    return _decoders[key].decode(log_probs, lengths)


def _get_pool(workers: int) -> ProcessPoolExecutor:
    global _pool, _pool_size
    if _pool is None or _pool_size != workers:
        shutdown()
        _pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_init_worker)
        _pool_size = workers
    return _pool


def shutdown() -> None:
    """End the worker processes (the next parallel decode starts new ones)."""
    global _pool, _pool_size
    if _pool is not None:
        _pool.shutdown(wait=True, cancel_futures=True)
    _pool, _pool_size = None, 0


class ParallelBeamDecoder:
    """`BeamSearchDecoder(tokenizer, **kwargs).decode` over `workers` processes: (log_probs (B, T', C) CPU,
    lengths (B,)) -> B transcripts, identical to the single-process decoder's."""

    def __init__(self, tokenizer: Tokenizer, workers: int, **kwargs: Any):
        self.vocab = tokenizer.to_dict()
        self.workers = workers
        self.kwargs = kwargs
        self.key = repr(sorted(kwargs.items()))

    def __call__(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[str]:
        B = int(lengths.shape[0])
        if B == 0:
            return []
        pool = _get_pool(self.workers)
        bounds = torch.linspace(0, B, min(self.workers, B) + 1).round().long().tolist()
        futures = []
        for a, b in zip(bounds[:-1], bounds[1:]):
            part_len = lengths[a:b]
            part = log_probs[a:b, : int(part_len.max())].contiguous()
            futures.append(pool.submit(_decode_part, self.key, self.vocab, self.kwargs, part, part_len))
        return [text for f in futures for text in f.result()]
