"""Text normalization (LibriSpeech style) and the character tokenizer."""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asr.text import BLANK, CharTokenizer, load_tokenizer, normalize, save_tokenizer


@pytest.mark.parametrize("raw, expected", [
    ("hello world", "HELLO WORLD"),  # case
    ("Hello World", "HELLO WORLD"),
    ("Don\u2019t", "DON'T"),  # curly apostrophes become ASCII
    ("\u2018Twas", "'TWAS"),
    ("don`t", "DON'T"),
    ("I'm", "I'M"),
    ("well-known", "WELL KNOWN"),  # hyphens split words (LibriSpeech convention)
    ("a\u2014b", "A B"),  # em dash
    ("room 101 is free", "ROOM IS FREE"),  # digits are dropped (numbers must be spelled out upstream)
    ("caf\u00e9 na\u00efve", "CAFE NAIVE"),  # accents folded
    ("l'\u00e9t\u00e9", "L'ETE"),
    ("\u00c0\u00c7", "AC"),
    ("stra\u00dfe", "STRASSE"),
    ("\ufb01ne", "FINE"),  # ligature (NFKD)
    ("  a\tb\n c  ", "A B C"),  # whitespace collapsed and stripped
    ("\u00a0a\u2003b", "A B"),  # non-breaking and em spaces
    ("A.B.C.", "A B C"),
    ("Hello, world! How are you?", "HELLO WORLD HOW ARE YOU"),
    ("dogs' tails", "DOGS' TAILS"),  # a word-final apostrophe is part of the word
    ("rock 'n' roll", "ROCK 'N' ROLL"),
    (" ' ", ""),  # stray apostrophes vanish
    ("'", ""),
    ("he said ' no", "HE SAID NO"),
    ("5'", ""),
    ("", ""),
    ("   ", ""),
])
def test_normalize(raw, expected):
    assert normalize(raw) == expected


def test_normalize_modifier_letter_apostrophe():
    assert normalize("don\u02bct") == "DON'T"


def test_normalize_letters_without_decomposition():
    assert normalize("S\u00f8ren") == "SOREN"
    assert normalize("\u00c6sop") == "AESOP"


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_normalize_is_idempotent_and_in_vocabulary(text):
    once = normalize(text)
    assert normalize(once) == once
    assert not CharTokenizer().unknown_chars(once)
    assert once == once.strip() and "  " not in once


def test_tokenizer_layout():
    tok = CharTokenizer()
    assert tok.blank == 0 and tok.vocab[0] == BLANK
    assert tok.size == 29 == len(tok.vocab)  # blank, space, apostrophe, A-Z
    assert tok.encode(" ") == [1] and tok.encode("'") == [2] and tok.encode("AZ") == [3, 28]


def test_tokenizer_round_trip():
    tok = CharTokenizer()
    text = normalize("It's a well-known fact, isn't it?")
    ids = tok.encode(text)
    assert 0 not in ids
    assert tok.decode(ids) == text


def test_decode_skips_blanks_and_keeps_repeats():
    tok = CharTokenizer()
    a, b = tok.encode("A")[0], tok.encode("B")[0]
    assert tok.decode([0, a, a, 0, b, 0]) == "AAB"
    assert tok.decode([]) == ""


def test_unknown_characters():
    tok = CharTokenizer()
    assert tok.unknown_chars("h\u00e9llo 1") == {"h", "\u00e9", "l", "o", "1"}
    assert tok.unknown_chars("HELLO") == set()
    with pytest.raises(ValueError, match="normalize"):
        tok.encode("hello")
    with pytest.raises(ValueError, match="'1'"):
        tok.encode("ROOM 1")


def test_save_load(tmp_path):
    tok = CharTokenizer(vocab=[BLANK, " ", "A", "B"])
    save_tokenizer(tok, tmp_path / "vocab.json")
    assert json.loads((tmp_path / "vocab.json").read_text()) == {"vocab": [BLANK, " ", "A", "B"]}
    loaded = load_tokenizer(tmp_path / "vocab.json")
    assert loaded.vocab == tok.vocab and loaded.encode("AB A") == [2, 3, 1, 2]
    assert CharTokenizer.from_dict(CharTokenizer().to_dict()).vocab == CharTokenizer().vocab


@pytest.mark.parametrize("vocab, match", [([" ", BLANK], "blank"), ([], "blank"), ([BLANK, "A", "A"], "duplicate")])
def test_bad_vocabulary(vocab, match):
    with pytest.raises(ValueError, match=match):
        CharTokenizer(vocab=vocab)
