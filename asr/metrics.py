"""Corpus WER/CER with jiwer, and per-utterance error records.

* Both references and hypotheses go through `asr.text.normalize` first -- the normalization that made the
  training targets -- so a case or punctuation difference the model cannot learn is never an error.
* Corpus rates are total errors / total reference length, not the mean of per-utterance rates (a short
  utterance must not weigh as much as a long one).
* CER counts the spaces between words as characters, as `jiwer.cer` does and as fits a model that emits a space
  token: a missing word boundary is an error. The reference length for CER includes those spaces.
* An empty reference is handled here, never passed to jiwer (jiwer before 4.0 raises on it): every hypothesis
  word (character) is an insertion; an empty reference with an empty hypothesis is 0 errors.
"""
from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import jiwer

from asr.text import normalize


@dataclass(frozen=True)
class ErrorCounts:
    """Alignment counts against a reference of `ref_units` units: words (WER) or characters (CER)."""

    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0
    hits: int = 0
    ref_units: int = 0  # reference length in units: hits + substitutions + deletions

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def rate(self) -> float:
        """errors / ref_units: the WER of word counts, the CER of character counts. With no reference units:
        0.0 if no errors, else inf."""
        if self.ref_units == 0:
            return 0.0 if self.errors == 0 else math.inf
        return self.errors / self.ref_units

    def __add__(self, other: "ErrorCounts") -> "ErrorCounts":
        return ErrorCounts(self.substitutions + other.substitutions, self.deletions + other.deletions,
                           self.insertions + other.insertions, self.hits + other.hits,
                           self.ref_units + other.ref_units)


@dataclass(frozen=True)
class UtteranceErrors:
    """One utterance's normalized texts and its word and character error counts."""

    id: str
    reference: str  # normalized
    hypothesis: str  # normalized
    word: ErrorCounts
    char: ErrorCounts


def _counts(out) -> ErrorCounts:
    return ErrorCounts(substitutions=out.substitutions, deletions=out.deletions, insertions=out.insertions,
                       hits=out.hits, ref_units=out.hits + out.substitutions + out.deletions)


def word_errors(reference: str, hypothesis: str) -> ErrorCounts:
    """Word-level counts of two already-normalized strings."""
    if not reference:
        return ErrorCounts(insertions=len(hypothesis.split()))
    return _counts(jiwer.process_words(reference, hypothesis))


def char_errors(reference: str, hypothesis: str) -> ErrorCounts:
    """Character-level counts (spaces included) of two already-normalized strings."""
    if not reference:
        return ErrorCounts(insertions=len(hypothesis))
    return _counts(jiwer.process_characters(reference, hypothesis))


def score(ids: Sequence[str], refs: Sequence[str], hyps: Sequence[str]
          ) -> tuple[ErrorCounts, ErrorCounts, list[UtteranceErrors]]:
    """Normalize and align each pair: (corpus word counts, corpus character counts, per-utterance records)."""
    if not len(ids) == len(refs) == len(hyps):
        raise ValueError(f"score needs as many ids, references and hypotheses, got {len(ids)}, {len(refs)}, "
                         f"{len(hyps)}")
    corpus_word, corpus_char = ErrorCounts(), ErrorCounts()
    per_utt = []
    for utt_id, ref, hyp in zip(ids, refs, hyps):
        ref, hyp = normalize(ref), normalize(hyp)
        rec = UtteranceErrors(id=str(utt_id), reference=ref, hypothesis=hyp, word=word_errors(ref, hyp),
                              char=char_errors(ref, hyp))
        corpus_word += rec.word
        corpus_char += rec.char
        per_utt.append(rec)
    return corpus_word, corpus_char, per_utt


@dataclass
class WordErrorStats:
    """Which words the model confuses, over a corpus (icefall's `write_error_stats`): counts of each substituted
    pair (reference word, hypothesis word), each deleted and each inserted word."""

    substitutions: Counter = field(default_factory=Counter)  # (ref word, hyp word) -> count
    deletions: Counter = field(default_factory=Counter)  # ref word -> count
    insertions: Counter = field(default_factory=Counter)  # hyp word -> count


def word_error_stats(refs: Sequence[str], hyps: Sequence[str]) -> WordErrorStats:
    """Align each already-normalized (reference, hypothesis) pair by words and count the errors by word. A
    substitution run of unequal sides (jiwer aligns them pairwise) counts position by position."""
    stats = WordErrorStats()
    for ref, hyp in zip(refs, hyps):
        if not ref:
            stats.insertions.update(hyp.split())
            continue
        out = jiwer.process_words(ref, hyp)
        r, h = out.references[0], out.hypotheses[0]
        for chunk in out.alignments[0]:
            if chunk.type == "substitute":
                stats.substitutions.update(zip(r[chunk.ref_start_idx:chunk.ref_end_idx],
                                               h[chunk.hyp_start_idx:chunk.hyp_end_idx]))
            elif chunk.type == "delete":
                stats.deletions.update(r[chunk.ref_start_idx:chunk.ref_end_idx])
            elif chunk.type == "insert":
                stats.insertions.update(h[chunk.hyp_start_idx:chunk.hyp_end_idx])
    return stats


@dataclass(frozen=True)
class SeenUnseen:
    """Reference words recognised wrongly (substituted or deleted), split by whether the word occurs in the
    training transcripts: a greedy character model must spell an unseen word from its sound alone, so the split
    says how much of the WER is the acoustic model and how much is vocabulary (insertions belong to no
    reference word and are left out)."""

    seen_words: int = 0
    seen_wrong: int = 0
    unseen_words: int = 0
    unseen_wrong: int = 0


def seen_unseen(refs: Sequence[str], hyps: Sequence[str], known: set[str]) -> SeenUnseen:
    """Count the already-normalized references' words as seen (in `known`) or not, and wrong or not (outside the
    alignment's "equal" runs)."""
    counts = dict(seen_words=0, seen_wrong=0, unseen_words=0, unseen_wrong=0)
    for ref, hyp in zip(refs, hyps):
        words = ref.split()
        if not words:
            continue
        right = [False] * len(words)
        if hyp.split():
            out = jiwer.process_words(ref, hyp)
            for chunk in out.alignments[0]:
                if chunk.type == "equal":
                    right[chunk.ref_start_idx:chunk.ref_end_idx] = [True] * (chunk.ref_end_idx - chunk.ref_start_idx)
        for word, ok in zip(words, right):
            kind = "seen" if word in known else "unseen"
            counts[f"{kind}_words"] += 1
            counts[f"{kind}_wrong"] += not ok
    return SeenUnseen(**counts)
