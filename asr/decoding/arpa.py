"""Reading ARPA back-off n-gram language models: `ArpaModel` loads a (gzipped) ARPA file and scores words,
sentences and perplexity in log10, as KenLM reports them. Also the sentence tokens (<s>, </s>, <unk>) and the
LMError shared with the estimator in asr.decoding.ngram.
"""
from __future__ import annotations

import gzip
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from asr.errors import UserError
from asr.text import normalize

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
SENTENCE_TOKENS = {BOS, EOS, UNK, "<UNK>"}  # not words: kept out of lexicons (some LMs spell <unk> in capitals)

Ngram = tuple[str, ...]


class LMError(UserError):
    """A text corpus or ARPA file that cannot be used; the message names the file (and line)."""


def check_lm_files(lm_path: str | Path | None, lexicon_path: str | Path | None, key_prefix: str) -> None:
    """The one existence check of a decoder's LM and lexicon files, naming the config key (`key_prefix.lm_path`);
    run at the door by the CLIs' configs and again by `BeamSearchDecoder` for library callers."""
    if lm_path is not None and not Path(lm_path).is_file():
        raise LMError(f"{key_prefix}.lm_path: language model file not found: {lm_path}")
    if lexicon_path is not None and not Path(lexicon_path).is_file():
        raise LMError(f"{key_prefix}.lexicon_path: lexicon file not found: {lexicon_path}")


def sections(path: str | Path, max_order: int | None = None) -> Iterator[tuple[int, int | str, str]]:
    """Walk an ARPA file (plain or .gz): (line number, section, stripped line) for every non-empty line inside
    \\data\\ (section "data") or an \\N-grams: section (section N). Stops after `max_order`'s section when given
    (a 70 M-line LM need not be read for its unigrams); otherwise raises LMError on a file without \\end\\."""
    path = Path(path)
    if not path.is_file():
        raise LMError(f"ARPA file not found: {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    section: int | str | None = None
    with opener(path, "rt", encoding="utf-8", errors="replace") as f:
        for lineno, raw in enumerate(f, 1):
            line = raw.strip()
            if not line:
                continue
            if line == "\\data\\":
                section = "data"
            elif line == "\\end\\":
                return
            elif line.startswith("\\") and line.endswith("-grams:"):
                try:
                    section = int(line[1:-len("-grams:")])
                except ValueError:
                    raise LMError(f"{path}:{lineno}: bad section header {line!r}") from None
                if max_order is not None and section > max_order:
                    return
            elif section is None:
                raise LMError(f"{path}:{lineno}: not an ARPA file: a line outside any section ({line[:60]!r}); "
                              "an ARPA LM starts with \\data\\ (build one with `asr-data lm build`)")
            else:
                yield lineno, section, line
    if max_order is None:
        raise LMError(f"{path}: truncated ARPA file (no \\end\\)")


def unigram_words(path: str | Path) -> list[str]:
    """The words of an ARPA file's \\1-grams section, without the sentence tokens (<s>, </s>, <unk>); reads no
    further than that section."""
    return [fields[1] for _, section, line in sections(path, max_order=1) if section == 1
            and len(fields := line.split()) >= 2 and fields[1] not in SENTENCE_TOKENS]


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
        declared: dict[int, int] = {}
        logprobs: list[dict[Ngram, float]] = []
        backoffs: list[dict[Ngram, float]] = []
        for lineno, section, line in sections(path):
            if section == "data":
                if not line.startswith("ngram ") or "=" not in line:
                    raise LMError(f"{path}:{lineno}: expected 'ngram N=COUNT' in \\data\\, got {line!r}")
                n, count = line[len("ngram "):].split("=", 1)
                declared[int(n)] = int(count)
                continue
            if section not in declared:
                raise LMError(f"{path}:{lineno}: section \\{section}-grams: is not declared in \\data\\")
            while len(logprobs) < section:
                logprobs.append({})
                backoffs.append({})
            fields = line.split()
            n = section
            if len(fields) not in (n + 1, n + 2):
                raise LMError(f"{path}:{lineno}: expected a {n}-gram line, got {line!r}")
            g = tuple(fields[1:n + 1])
            logprobs[n - 1][g] = float(fields[0])
            if len(fields) == n + 2:
                backoffs[n - 1][g] = float(fields[n + 1])
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
