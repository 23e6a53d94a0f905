"""A small, readable CTC prefix beam search and a brute-force oracle: test references, not production decoders.

The prefix beam search follows Hannun, "Sequence Modeling with CTC", Distill 2017 (https://distill.pub/2017/ctc/):
each prefix (a label sequence, blanks removed and repeats collapsed) carries two probabilities, the mass of the
alignments that end in a blank (p_b) and of those that end in the prefix's last label (p_nb). Keeping them apart is
what lets "A A" (two labels) and "AA" (one held label) be told apart: a repeated label extends the prefix only from
the blank-ending mass; from the label-ending mass it collapses onto the same prefix.

Everything is in log space (natural log). Shapes: T frames, C classes including the blank.
"""
from __future__ import annotations

import itertools
import math
from collections import defaultdict

import numpy as np

NEG_INF = -math.inf


def _as_numpy(log_probs) -> np.ndarray:
    if hasattr(log_probs, "detach"):  # a torch tensor, on any device
        log_probs = log_probs.detach().cpu().double().numpy()
    arr = np.asarray(log_probs, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"log_probs must be (T, C), got shape {arr.shape}")
    return arr


def _logadd(*xs: float) -> float:
    m = max(xs)
    if m == NEG_INF:
        return NEG_INF
    return m + math.log(sum(math.exp(x - m) for x in xs))


def collapse(path, blank: int = 0) -> tuple[int, ...]:
    """The CTC many-to-one map: merge runs of the same label, then drop blanks."""
    return tuple(k for k, _ in itertools.groupby(path) if k != blank)


def prefix_beam_search(log_probs, beam_size: int, blank: int = 0) -> list[tuple[tuple[int, ...], float]]:
    """CTC prefix beam search over (T, C) log-probs (numpy array or tensor).

    Returns up to `beam_size` `(label ids, log-probability)` pairs, best first. The log-probability is the total
    over all alignments of that labelling that survived the pruning; with a beam at least as large as the number of
    distinct prefixes nothing is pruned and it is exact (what the tests check against `exhaustive_search`).
    """
    lp = _as_numpy(log_probs)
    T, C = lp.shape
    # prefix -> (log p_b, log p_nb); before any frame only the empty prefix exists, "ending in blank".
    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, NEG_INF)}
    for t in range(T):
        nxt: dict[tuple[int, ...], list[float]] = defaultdict(lambda: [NEG_INF, NEG_INF])
        for prefix, (p_b, p_nb) in beams.items():
            total = _logadd(p_b, p_nb)
            # Blank: the prefix is unchanged and now ends in a blank.
            entry = nxt[prefix]
            entry[0] = _logadd(entry[0], total + lp[t, blank])
            for c in range(C):
                if c == blank:
                    continue
                p = lp[t, c]
                last = prefix[-1] if prefix else None
                extended = nxt[prefix + (c,)]
                if c == last:
                    # "A_" + "A" is a new label; "A" + "A" collapses onto the same prefix "A".
                    extended[1] = _logadd(extended[1], p_b + p)
                    entry[1] = _logadd(entry[1], p_nb + p)
                else:
                    extended[1] = _logadd(extended[1], total + p)
        # Prefixes that no alignment reaches (e.g. "AA" after one frame) were touched above with zero mass: drop them.
        reachable = [kv for kv in nxt.items() if _logadd(*kv[1]) > NEG_INF]
        ranked = sorted(reachable, key=lambda kv: _logadd(*kv[1]), reverse=True)
        beams = {prefix: (p_b, p_nb) for prefix, (p_b, p_nb) in ranked[:beam_size]}
    scored = [(prefix, _logadd(p_b, p_nb)) for prefix, (p_b, p_nb) in beams.items()]
    return sorted(scored, key=lambda kv: kv[1], reverse=True)


def exhaustive_search(log_probs, blank: int = 0, max_paths: int = 2_000_000) -> list[tuple[tuple[int, ...], float]]:
    """Brute force: enumerate all C**T alignments, sum their probabilities per collapsed labelling.

    Returns every reachable labelling with its log-probability, best first. Only for tiny T and C (the oracle the
    beam searches are tested against); refuses more than `max_paths` alignments.
    """
    lp = _as_numpy(log_probs)
    T, C = lp.shape
    if C**T > max_paths:
        raise ValueError(f"{C}**{T} alignments is too many for exhaustive search (limit {max_paths})")
    per_label: dict[tuple[int, ...], list[float]] = defaultdict(list)
    frames = range(T)
    for path in itertools.product(range(C), repeat=T):
        per_label[collapse(path, blank)].append(sum(lp[t, k] for t, k in zip(frames, path)))
    scored = [(labels, _logadd(*scores)) for labels, scores in per_label.items()]
    return sorted([kv for kv in scored if kv[1] > NEG_INF], key=lambda kv: kv[1], reverse=True)
