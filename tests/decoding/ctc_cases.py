"""Hand-built and random CTC log-probs shared by the decoder tests (imported by name: pytest puts this folder on
sys.path for the test modules in it)."""
from __future__ import annotations

import numpy as np
import torch

from asr.text import CharTokenizer

TOKENIZER = CharTokenizer()  # the real 29-symbol vocabulary: <blank>, space, apostrophe, A-Z


def frames(spec: list[dict[str, float]], tokenizer: CharTokenizer = TOKENIZER, floor: float = 1e-4) -> torch.Tensor:
    """(T, C) log-probs from one {symbol: probability} dict per frame ("_" is the blank); other symbols share
    `floor`, then each frame is renormalized."""
    x = torch.full((len(spec), tokenizer.size), floor, dtype=torch.float64)
    for t, probs in enumerate(spec):
        for sym, p in probs.items():
            x[t, 0 if sym == "_" else tokenizer.vocab.index(sym)] = p
    return (x / x.sum(-1, keepdim=True)).log().float()


def peaky_log_probs(seed: int, T: int = 30, C: int = 29) -> torch.Tensor:
    """(T, C) log-probs shaped like a trained CTC model's: every frame has one dominant symbol (blank half the
    time) at 0.5-0.99 and one rival taking most of the rest, so best path and best labelling sometimes differ."""
    rng = np.random.default_rng(seed)
    p = rng.random((T, C)) * 1e-4
    for t in range(T):
        target = 0 if rng.random() < 0.5 else int(rng.integers(1, C))
        rival = int(rng.integers(0, C))
        dominant = rng.uniform(0.5, 0.99)
        p[t, rival] += 0.9 * (1 - dominant)
        p[t, target] += dominant
    return torch.tensor(np.log(p / p.sum(-1, keepdims=True)), dtype=torch.float32)


def text_of(ids, tokenizer: CharTokenizer = TOKENIZER) -> str:
    return " ".join(tokenizer.decode(ids).split())
