"""Word n-gram language models: interpolated modified Kneser-Ney estimation, written as ARPA (the reader,
`ArpaModel`, is in asr.decoding.arpa).

The estimator follows Chen & Goodman (1998, "An empirical study of smoothing techniques for language modeling",
section 3.5 and equation 26) the way KenLM's `lmplz` applies it (Heafield et al. 2013, "Scalable modified
Kneser-Ney language model estimation"), so the file is a drop-in for the flashlight/torchaudio KenLM decoder:

* counts: every sentence is `<s> w1 ... wk </s>`. The highest order uses raw counts; a lower-order n-gram uses its
  continuation count N1+(. w...) (how many distinct words precede it) unless it starts with `<s>`, which nothing
  can precede, so it keeps its raw count ("adjusted counts").
* discounts: three per order, D1, D2, D3+, from that order's count-of-counts n1..n4 of the adjusted counts:
  Y = n1 / (n1 + 2 n2), Dk = k - (k + 1) Y n(k+1) / nk. When they cannot be estimated (a count-of-count is zero,
  or a discount falls outside (0, k) -- typical of tiny or artificial text) the order falls back to
  (0.5, 1.0, 1.5), lmplz's `--discount_fallback` values, and a warning says so.
* interpolation: p(w|h) = (a(hw) - D(a(hw))) / sum_v a(hv) + gamma(h) p(w|h'), where h' drops the oldest word and
  gamma(h) = (D1 N1(h.) + D2 N2(h.) + D3+ N3+(h.)) / sum_v a(hv). Unigrams interpolate with the uniform
  distribution over the vocabulary (every word, `</s>` and `<unk>`; not `<s>`, which is never predicted), which
  gives `<unk>` the probability gamma() / |V|.
* ARPA: a seen n-gram stores its interpolated probability and a context h stores bow(h) = gamma(h), so the
  standard back-off lookup reproduces the interpolated model exactly and every context's distribution sums to 1.

Pure Python with dictionaries: fine for corpora up to a few million words (the built-in synthetic corpus is
~70k). For LibriSpeech-scale text use the official OpenSLR 11 LMs (`asr-data librispeech download-lm`).
"""
from __future__ import annotations

import json
import logging
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

# ArpaModel is re-exported; BOS, EOS, UNK, Ngram and LMError are shared with the reader.
from asr.decoding.arpa import BOS, EOS, UNK, ArpaModel, LMError, Ngram  # noqa: F401
from asr.fileio import atomic_write
from asr.text import normalize

log = logging.getLogger(__name__)

# lmplz's --discount_fallback default; used for an order whose count-of-counts cannot give discounts.
FALLBACK_DISCOUNTS = (0.5, 1.0, 1.5)
# ARPA convention (SRILM, lmplz) for the log10 probability of <s>, which is only ever a context.
BOS_LOGPROB = -99.0


# --------------------------------------------------------------------------------------------------- reading text

def read_sentences(path: str | Path) -> list[list[str]]:
    """Normalized word lists of a text file (one sentence per line) or a JSONL manifest ("text" field).

    A file is read as JSONL when its name ends in .jsonl/.json or its first non-empty line is a JSON object.
    Lines that normalize to nothing are skipped. Raises LMError naming the file when nothing is left.
    """
    path = Path(path)
    if not path.is_file():
        raise LMError(f"LM text not found: {path}")
    with path.open(encoding="utf-8", errors="replace") as f:
        lines = f.read().splitlines()
    first = next((ln.strip() for ln in lines if ln.strip()), "")
    jsonl = path.suffix in (".jsonl", ".json") or _is_json_object(first)
    sentences = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        text = _manifest_text(path, lineno, line) if jsonl else line
        words = normalize(text).split()
        if words:
            sentences.append(words)
    if not sentences:
        raise LMError(f"no sentences in {path}: the file is empty or has no words after normalization")
    return sentences


def _is_json_object(line: str) -> bool:
    if not line.startswith("{"):
        return False
    try:
        return isinstance(json.loads(line), dict)
    except json.JSONDecodeError:
        return False


def _manifest_text(path: Path, lineno: int, line: str) -> str:
    try:
        rec = json.loads(line)
    except json.JSONDecodeError as exc:
        raise LMError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(rec, dict) or "text" not in rec:
        raise LMError(f"{path}:{lineno}: expected a JSON object with a \"text\" field")
    return str(rec["text"])


# ------------------------------------------------------------------------------------------------------ estimation

@dataclass(frozen=True)
class Discount:
    """Modified Kneser-Ney discounts of one order: D1, D2 and D3+ (D0 = 0 for <unk>'s zero count)."""

    d1: float
    d2: float
    d3: float
    fallback: bool = False  # True when the count-of-counts could not give estimates

    def __call__(self, count: int) -> float:
        return 0.0 if count <= 0 else self.d1 if count == 1 else self.d2 if count == 2 else self.d3


def estimate_discount(count_of_counts: Sequence[int]) -> tuple[Discount, str | None]:
    """Chen & Goodman's equation 26 from n1..n4; returns (discount, why it fell back or None)."""
    n = [0, *count_of_counts[:4]]
    zero = [k for k in range(1, 5) if n[k] == 0]
    if zero:
        return Discount(*FALLBACK_DISCOUNTS, fallback=True), f"no n-grams with adjusted count {zero[0]}"
    y = n[1] / (n[1] + 2 * n[2])
    d = [k - (k + 1) * y * n[k + 1] / n[k] for k in (1, 2, 3)]
    # A discount of 0 would give a context with only such counts a zero back-off weight (log10 0 in the ARPA);
    # one of k or more would remove all the mass of a count-k n-gram.
    for k, dk in enumerate(d, 1):
        if not 0.0 < dk < k:
            return Discount(*FALLBACK_DISCOUNTS, fallback=True), f"D{k} = {dk:.3f} is outside (0, {k})"
    return Discount(*d), None


@dataclass
class KneserNeyModel:
    """An estimated model: probabilities (not logs) of seen n-grams and back-off weights of contexts, by order."""

    order: int
    probs: list[dict[Ngram, float]]  # probs[n - 1][ngram of length n] = interpolated p(w | h)
    backoffs: list[dict[Ngram, float]]  # backoffs[n - 1][context of length n] = gamma(h); only for contexts
    discounts: list[Discount] = field(default_factory=list)  # discounts[n - 1] for order n


def count_ngrams(sentences: Iterable[Sequence[str]], order: int) -> list[Counter]:
    """Raw counts of every n-gram of length 1..order in `<s> sentence </s>`; result[n - 1] holds length n."""
    counts: list[Counter] = [Counter() for _ in range(order)]
    for words in sentences:
        toks = (BOS, *words, EOS)
        for n in range(1, order + 1):
            c = counts[n - 1]
            for i in range(len(toks) - n + 1):
                c[toks[i:i + n]] += 1
    return counts


def adjust_counts(raw: list[Counter]) -> list[dict[Ngram, int]]:
    """Kneser-Ney adjusted counts: raw at the highest order and for n-grams starting with <s>, else N1+(. ngram)."""
    order = len(raw)
    adjusted: list[dict[Ngram, int]] = [dict() for _ in range(order)]
    adjusted[-1] = dict(raw[-1])
    for n in range(order - 1, 0, -1):
        left = Counter(g[1:] for g in raw[n])  # distinct left extensions of each (n)-gram
        adjusted[n - 1] = {g: (c if g[0] == BOS else left[g]) for g, c in raw[n - 1].items()}
    return adjusted


def estimate(sentences: Sequence[Sequence[str]], order: int) -> KneserNeyModel:
    """Interpolated modified Kneser-Ney estimates of `sentences` (lists of words, without <s> and </s>)."""
    if order < 1:
        raise LMError(f"n-gram order must be >= 1, got {order}")
    if not sentences:
        raise LMError("cannot estimate an n-gram model from no sentences")
    longest = max(len(s) for s in sentences) + 2
    if order > longest:
        log.warning("order %d is more than the longest padded sentence (%d tokens); building an order-%d model",
                    order, longest, longest)
        order = longest
    adjusted = adjust_counts(count_ngrams(sentences, order))
    adjusted[0].setdefault((UNK,), 0)

    discounts = []
    for n, counts in enumerate(adjusted, 1):
        coc = Counter(c for g, c in counts.items() if g != (BOS,) and 0 < c <= 4)
        disc, why = estimate_discount([coc[k] for k in (1, 2, 3, 4)])
        if why:
            log.warning("cannot estimate Kneser-Ney discounts for %d-grams (%s; small or artificial text?); "
                        "using the fallback D1, D2, D3+ = %s", n, why, FALLBACK_DISCOUNTS)
        discounts.append(disc)

    probs: list[dict[Ngram, float]] = [dict() for _ in range(order)]
    backoffs: list[dict[Ngram, float]] = [dict() for _ in range(order)]

    # Unigrams, interpolated with the uniform distribution over the predictable vocabulary.
    d = discounts[0]
    uni = {g: c for g, c in adjusted[0].items() if g != (BOS,)}
    total = sum(uni.values())
    gamma = sum(d(c) for c in uni.values()) / total
    for g, c in uni.items():
        probs[0][g] = (c - d(c)) / total + gamma / len(uni)

    for n in range(2, order + 1):
        d = discounts[n - 1]
        by_context: dict[Ngram, list[tuple[Ngram, int]]] = defaultdict(list)
        for g, c in adjusted[n - 1].items():
            by_context[g[:-1]].append((g, c))
        lower = probs[n - 2]
        for h, exts in by_context.items():
            total = sum(c for _, c in exts)
            gamma = sum(d(c) for _, c in exts) / total
            backoffs[n - 2][h] = gamma
            for g, c in exts:
                probs[n - 1][g] = (c - d(c)) / total + gamma * lower[g[1:]]
    return KneserNeyModel(order=order, probs=probs, backoffs=backoffs, discounts=discounts)


# ------------------------------------------------------------------------------------------------------ ARPA files

def _special_first(g: Ngram) -> tuple:
    return (g[0] not in (UNK, BOS, EOS), g)


def write_arpa(model: KneserNeyModel, out: str | Path) -> Path:
    """Write `model` as an ARPA file atomically (temp file + rename); returns the path."""
    out = Path(out)
    with atomic_write(out) as f:
        f.write("\\data\\\n")
        # <s> is listed among the unigrams although it is never predicted (ARPA convention).
        sizes = [len(p) for p in model.probs]
        sizes[0] += (BOS,) not in model.probs[0]
        for n, size in enumerate(sizes, 1):
            f.write(f"ngram {n}={size}\n")
        for n in range(1, model.order + 1):
            f.write(f"\n\\{n}-grams:\n")
            probs, bows = dict(model.probs[n - 1]), model.backoffs[n - 1]
            if n == 1:
                probs[(BOS,)] = 0.0
            for g in sorted(probs, key=_special_first):
                p = probs[g]
                lp = BOS_LOGPROB if g == (BOS,) else math.log10(p)
                line = f"{lp:.6f}\t{' '.join(g)}"
                if g in bows:
                    line += f"\t{math.log10(bows[g]):.6f}"
                f.write(line + "\n")
        f.write("\n\\end\\\n")
    return out


def build_arpa(text: str | Path, order: int, out: str | Path, vocab_limit: int | None = None) -> Path:
    """Estimate an interpolated modified Kneser-Ney `order`-gram LM from `text` and write it as ARPA to `out`.

    text: one sentence per line, or a JSONL manifest (its "text" field); normalized with `asr.text.normalize`.
    vocab_limit: keep only the most frequent words (ties alphabetical); the others are counted as <unk>.
    """
    if vocab_limit is not None and vocab_limit < 1:
        raise LMError(f"vocab_limit must be >= 1 or None, got {vocab_limit}")
    sentences = read_sentences(text)
    if vocab_limit is not None:
        freq = Counter(w for s in sentences for w in s)
        keep = {w for w, _ in sorted(freq.items(), key=lambda wc: (-wc[1], wc[0]))[:vocab_limit]}
        sentences = [[w if w in keep else UNK for w in s] for s in sentences]
    model = estimate(sentences, order)
    log.info("%s: %d sentences, order %d, n-grams %s", text, len(sentences), model.order,
             [len(p) for p in model.probs])
    return write_arpa(model, out)
