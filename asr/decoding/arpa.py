"""Reading ARPA back-off n-gram language models: `ArpaModel` loads a (gzipped) ARPA file and scores words,
sentences and perplexity in log10, as KenLM reports them. Also the sentence tokens (<s>, </s>, <unk>) and the
LMError shared with the estimator in asr.decoding.ngram.
"""
from __future__ import annotations

import gzip
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from asr.errors import UserError
from asr.text import normalize

BOS, EOS, UNK = "<s>", "</s>", "<unk>"

Ngram = tuple[str, ...]


class LMError(UserError):
    """A text corpus or ARPA file that cannot be used; the message names the file (and line)."""


@dataclass
class ArpaModel:
    """A back-off n-gram LM read from an ARPA file; log10 probabilities, as KenLM reports them.

    Fine for the small models of tests and the built-in corpus; a pruned LibriSpeech 3-gram loads too but slowly.
    """

    order: int
    logprobs: list[dict[Ngram, float]]  # logprobs[n - 1][ngram of length n]
    backoffs: list[dict[Ngram, float]]  # log10 back-off weights, only where the file gives one

    @classmethod
    def load(cls, path: str | Path) -> "ArpaModel":
        path = Path(path)
        if not path.is_file():
            raise LMError(f"ARPA file not found: {path}")
        opener = gzip.open if path.suffix == ".gz" else open
        declared: dict[int, int] = {}
        logprobs: list[dict[Ngram, float]] = []
        backoffs: list[dict[Ngram, float]] = []
        section = None  # "data", an order n, or "end"
        with opener(path, "rt", encoding="utf-8") as f:
            for lineno, raw in enumerate(f, 1):
                line = raw.strip()
                if not line:
                    continue
                if line == "\\data\\":
                    section = "data"
                elif line == "\\end\\":
                    section = "end"
                    break
                elif line.startswith("\\") and line.endswith("-grams:"):
                    try:
                        section = int(line[1:-len("-grams:")])
                    except ValueError:
                        raise LMError(f"{path}:{lineno}: bad section header {line!r}") from None
                    if section not in declared:
                        raise LMError(f"{path}:{lineno}: section {line} is not declared in \\data\\")
                    while len(logprobs) < section:
                        logprobs.append({})
                        backoffs.append({})
                elif section == "data":
                    if not line.startswith("ngram ") or "=" not in line:
                        raise LMError(f"{path}:{lineno}: expected 'ngram N=COUNT' in \\data\\, got {line!r}")
                    n, count = line[len("ngram "):].split("=", 1)
                    declared[int(n)] = int(count)
                elif isinstance(section, int):
                    fields = line.split()
                    n = section
                    if len(fields) not in (n + 1, n + 2):
                        raise LMError(f"{path}:{lineno}: expected a {n}-gram line, got {line!r}")
                    g = tuple(fields[1:n + 1])
                    logprobs[n - 1][g] = float(fields[0])
                    if len(fields) == n + 2:
                        backoffs[n - 1][g] = float(fields[n + 1])
                else:
                    raise LMError(f"{path}:{lineno}: unexpected line outside any section: {line!r}")
        if section != "end":
            raise LMError(f"{path}: truncated ARPA file (no \\end\\)")
        if not declared or sorted(declared) != list(range(1, len(declared) + 1)):
            raise LMError(f"{path}: \\data\\ must declare orders 1..N, got {sorted(declared)}")
        for n, count in declared.items():
            found = len(logprobs[n - 1]) if n <= len(logprobs) else 0
            if found != count:
                raise LMError(f"{path}: \\data\\ declares {count} {n}-grams but the file has {found}")
        return cls(order=len(declared), logprobs=logprobs, backoffs=backoffs)

    @property
    def vocab(self) -> set[str]:
        """Every unigram, including <s>, </s> and <unk>."""
        return {g[0] for g in self.logprobs[0]}

    def _word(self, w: str) -> str:
        return w if (w,) in self.logprobs[0] else UNK

    def logprob(self, word: str, context: Sequence[str] = ()) -> float:
        """log10 p(word | context); context is the preceding words, oldest first. Unknown words become <unk>."""
        w = self._word(word)
        ctx = tuple(self._word(c) for c in context)[-(self.order - 1):] if self.order > 1 else ()
        acc = 0.0
        for k in range(len(ctx), -1, -1):
            h = ctx[len(ctx) - k:]
            lp = self.logprobs[k].get(h + (w,))
            if lp is not None:
                return acc + lp
            if k:
                acc += self.backoffs[k - 1].get(h, 0.0)
        raise LMError(f"word {w!r} has no unigram and the model has no <unk>")

    def sentence_logprob(self, sentence: str | Sequence[str], bos: bool = True, eos: bool = True) -> float:
        """log10 probability of a sentence; a string is normalized with `asr.text.normalize` and split."""
        words = normalize(sentence).split() if isinstance(sentence, str) else list(sentence)
        context = [BOS] if bos else []
        total = 0.0
        for w in [*words, EOS] if eos else words:
            total += self.logprob(w, context)
            context.append(w)
        return total

    def perplexity(self, sentences: Iterable[str | Sequence[str]]) -> float:
        """10 ** (-mean log10 p) over every predicted token, </s> included (the SRILM/KenLM convention)."""
        total, tokens = 0.0, 0
        for s in sentences:
            words = normalize(s).split() if isinstance(s, str) else list(s)
            total += self.sentence_logprob(words)
            tokens += len(words) + 1
        if not tokens:
            raise ValueError("perplexity of no sentences")
        return 10.0 ** (-total / tokens)
