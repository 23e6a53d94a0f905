"""asr.text.pieces: SentencePiece pieces learned from transcripts, checked against the text they came from (the
oracle: encode then decode gives the text back, word grouping gives its words), stored and read back exactly."""
from __future__ import annotations

import json
import pickle

import pytest

from asr.data.sentences import load_sentences
from asr.text import (
    BLANK,
    CharTokenizer,
    PieceTokenizer,
    load_tokenizer,
    save_tokenizer,
    tokenizer_from_dict,
    train_pieces,
)
from asr.text.pieces import ALPHABET, WORD_START

TEXTS = [s.text for s in load_sentences()[::50][:400]]  # WordNet's example sentences, spread over the file


@pytest.fixture(scope="module")
def tok() -> PieceTokenizer:
    return train_pieces(TEXTS[:300], vocab_size=128)


def test_round_trip_gives_the_text_back_including_unseen_sentences(tok):
    for text in TEXTS:  # the last 100 were not in the training text
        ids = tok.encode(text)
        assert all(0 < i < tok.size for i in ids)
        assert tok.ids_to_text(ids) == text


def test_pieces_are_fewer_than_characters_and_mark_word_starts(tok):
    chars = sum(len(t) for t in TEXTS[300:])
    pieces = sum(len(tok.encode(t)) for t in TEXTS[300:])
    assert pieces < 0.8 * chars
    for t in TEXTS[300:320]:
        starts = [p for p in tok.pieces(t) if p.startswith(WORD_START)]
        assert len(starts) == len(t.split())
    assert tok.vocab[0] == BLANK and tok.blank == 0 and tok.word_boundary is None


def test_every_kept_character_is_encodable_even_when_the_transcripts_lack_it():
    small = train_pieces(["THE CAT SAT", "A CAT"], vocab_size=64)
    for ch in ALPHABET:
        assert small.ids_to_text(small.encode(f"{ch}{ch} X")) == f"{ch}{ch} X"
    with pytest.raises(ValueError, match=r"\['1'\].*normalize"):
        small.encode("CAT 1")


def test_learning_is_deterministic_and_vocab_size_is_honoured():
    a, b = train_pieces(TEXTS[:200], 96), train_pieces(TEXTS[:200], 96)
    assert a == b and a.model_proto == b.model_proto
    assert a.size == 97  # 96 pieces plus the blank
    assert train_pieces(TEXTS[:200], 96, "bpe").vocab != a.vocab


def test_group_words_against_the_texts_words(tok):
    for text in TEXTS[300:330]:
        ids = tok.encode(text)
        starts, ends = list(range(len(ids))), [k + 0.5 for k in range(len(ids))]
        words = tok.group_words(ids, starts, ends)
        assert [w for w, _, _ in words] == text.split()
        # Oracle: the word's first piece is the k-th word-start piece; its last piece the one before the next.
        first = [k for k, i in enumerate(ids) if tok.vocab[i].startswith(WORD_START)]
        assert [s for _, s, _ in words] == [k if tok.vocab[ids[k]] != WORD_START else k + 1 for k in first]
        assert [e for _, _, e in words] == [k - 0.5 for k in first[1:]] + [len(ids) - 0.5]


def test_stored_forms_read_back_exactly(tok, tmp_path):
    d = json.loads(json.dumps(tok.to_dict()))
    again = tokenizer_from_dict(d)
    assert isinstance(again, PieceTokenizer) and again == tok and again.vocab == tok.vocab
    save_tokenizer(tok, tmp_path / "tokenizer.json")
    assert load_tokenizer(tmp_path / "tokenizer.json") == tok
    assert pickle.loads(pickle.dumps(tok)) == tok  # DataLoader workers
    # Checkpoints written before pieces store {"vocab": [...]}: characters.
    assert tokenizer_from_dict({"vocab": CharTokenizer().vocab}) == CharTokenizer()
    d["vocab"] = d["vocab"][::-1]
    with pytest.raises(ValueError, match="does not match"):
        tokenizer_from_dict(d)
    with pytest.raises(ValueError, match="unknown tokenizer kind 'wordpiece'"):
        tokenizer_from_dict({"kind": "wordpiece", "vocab": []})


def test_spell_is_the_words_pieces(tok):
    assert tok.spell("CATS") == tok.pieces("CATS") and tok.spell("CATS")[0].startswith(WORD_START)
    assert CharTokenizer().spell("CAT") == ["C", "A", "T", " "]
