"""WER/CER scoring: jiwer as the oracle, hand-computed S/D/I, empty references, normalization."""
from __future__ import annotations

import math
import random

import jiwer
import pytest

from asr.metrics import ErrorCounts, UtteranceErrors, char_errors, score, word_errors

VOCAB = ["HELLO", "WORLD", "SPEECH", "MODEL", "CAT", "DOG'S", "TREE", "OPEN", "SOURCE", "GOOD"]


def random_pair(rng: random.Random) -> tuple[str, str]:
    ref = [rng.choice(VOCAB) for _ in range(rng.randint(1, 12))]
    hyp = []
    for w in ref:
        r = rng.random()
        if r < 0.1:
            continue  # deletion
        hyp.append(rng.choice(VOCAB) if r < 0.25 else w)  # substitution (maybe by the same word) or hit
        if rng.random() < 0.1:
            hyp.append(rng.choice(VOCAB))  # insertion
    if not hyp:
        hyp = [rng.choice(VOCAB)]
    return " ".join(ref), " ".join(hyp)


@pytest.mark.parametrize("seed", range(5))
def test_corpus_rates_match_jiwer(seed):
    rng = random.Random(seed)
    pairs = [random_pair(rng) for _ in range(40)]
    refs, hyps = [p[0] for p in pairs], [p[1] for p in pairs]
    word, char, per_utt = score([f"u{i}" for i in range(len(pairs))], refs, hyps)
    assert word.rate == pytest.approx(jiwer.wer(refs, hyps))
    assert char.rate == pytest.approx(jiwer.cer(refs, hyps))
    assert word.ref_units == sum(len(r.split()) for r in refs)
    assert char.ref_units == sum(len(r) for r in refs)  # spaces count as characters
    for (r, h), u in zip(pairs, per_utt):
        assert u.word.rate == pytest.approx(jiwer.wer(r, h))
        assert u.char.rate == pytest.approx(jiwer.cer(r, h))


def test_corpus_wer_is_total_errors_over_total_words_not_a_mean():
    word, _, per_utt = score(["short", "long"], ["A", "A B C D E F G H I J"], ["B", "A B C D E F G H I J"])
    assert [u.word.rate for u in per_utt] == [1.0, 0.0]
    assert word.rate == pytest.approx(1 / 11)  # the mean of the utterance rates would be 0.5


def test_hand_computed_substitution_deletion_insertion():
    assert word_errors("A B C", "A X C") == ErrorCounts(substitutions=1, hits=2, ref_units=3)
    assert word_errors("A B C", "A C") == ErrorCounts(deletions=1, hits=2, ref_units=3)
    assert word_errors("A B C", "A B C D") == ErrorCounts(insertions=1, hits=3, ref_units=3)
    assert word_errors("A B C", "") == ErrorCounts(deletions=3, ref_units=3)
    mixed = word_errors("THE CAT SAT ON THE MAT", "THE BAT SAT THE MAT TODAY")
    assert (mixed.substitutions, mixed.deletions, mixed.insertions, mixed.hits) == (1, 1, 1, 4)
    assert mixed.rate == pytest.approx(3 / 6)
    # characters: "AB CD" -> "AB D": one deletion ("C"); "AB CD" -> "ABCD": the space is deleted
    assert char_errors("AB CD", "AB D") == ErrorCounts(deletions=1, hits=4, ref_units=5)
    assert char_errors("AB CD", "ABCD") == ErrorCounts(deletions=1, hits=4, ref_units=5)
    assert char_errors("CAT", "CUT").substitutions == 1


def test_empty_references():
    word, char, per_utt = score(["e1", "e2", "n"], ["", "  ...  ", "HELLO WORLD"], ["HELLO THERE", "", "HELLO"])
    e1, e2, n = per_utt
    assert e1.word == ErrorCounts(insertions=2) and e1.char == ErrorCounts(insertions=len("HELLO THERE"))
    assert math.isinf(e1.word.rate)
    # punctuation-only reference normalizes to empty; empty against empty is no error at all
    assert e2.reference == "" and e2.word == ErrorCounts() and e2.word.rate == 0.0 and e2.char.rate == 0.0
    assert n.word == ErrorCounts(deletions=1, hits=1, ref_units=2)
    assert word == ErrorCounts(deletions=1, insertions=2, hits=1, ref_units=2)
    assert word.rate == pytest.approx(3 / 2)
    assert char.insertions == len("HELLO THERE") and char.ref_units == len("HELLO WORLD")
    assert score([], [], []) == (ErrorCounts(), ErrorCounts(), [])


def test_normalization_applies_to_both_sides():
    word, char, per_utt = score(["a"], ["Hello, world! It's well-known."], ["HELLO WORLD it\u2019s WELL KNOWN"])
    assert word.errors == 0 and char.errors == 0
    assert per_utt[0] == UtteranceErrors(id="a", reference="HELLO WORLD IT'S WELL KNOWN",
                                         hypothesis="HELLO WORLD IT'S WELL KNOWN", word=word, char=char)
    assert word.ref_units == 5


def test_mismatched_lengths_are_rejected():
    with pytest.raises(ValueError, match="as many"):
        score(["a", "b"], ["A"], ["A"])


def test_word_error_stats_count_each_confusion():
    from asr.metrics import word_error_stats
    refs = ["THE CAT SAT", "THE CAT", "A DOG", "", "SIT DOWN"]
    hyps = ["THE BAT SAT", "THE BAT", "DOG", "UM", "SIT DOWN NOW"]
    stats = word_error_stats(refs, hyps)
    assert stats.substitutions == {("CAT", "BAT"): 2}
    assert stats.deletions == {"A": 1}
    assert stats.insertions == {"UM": 1, "NOW": 1}
    # The counts agree with the corpus counts of the same pairs.
    from asr.metrics import score
    word, _, _ = score(list("abcde"), refs, hyps)
    assert (word.substitutions, word.deletions, word.insertions) == (2, 1, 2)


def test_seen_unseen_counts_each_reference_word_once_by_hand():
    """REF 'the cat sat on zorp' / HYP 'the bat sat zorp zorp': cat substituted, on deleted, one insertion (not
    a reference word: left out). Seen: the, cat, sat, on -> 2 wrong of 4; unseen: zorp -> right."""
    from asr.metrics import SeenUnseen, seen_unseen
    known = {"the", "cat", "sat", "on"}
    got = seen_unseen(["the cat sat on zorp", "glorp", ""], ["the bat sat zorp zorp", "", "noise"], known)
    assert got == SeenUnseen(seen_words=4, seen_wrong=2, unseen_words=2, unseen_wrong=1)  # 'glorp' deleted


def test_seen_unseen_against_the_per_word_alignment_of_jiwer():
    """Oracle: words wrong = substitutions + deletions of jiwer's alignment, whatever the split."""
    from asr.metrics import seen_unseen
    refs = ["a b c d e f", "b b c", "f e d c b a"]
    hyps = ["a x c e f f", "b c", "f e d"]
    for known in (set(), {"a", "b", "c"}, {"a", "b", "c", "d", "e", "f"}):
        got = seen_unseen(refs, hyps, known)
        out = jiwer.process_words(refs, hyps)
        assert got.seen_wrong + got.unseen_wrong == out.substitutions + out.deletions
        assert got.seen_words + got.unseen_words == sum(len(r.split()) for r in refs)
