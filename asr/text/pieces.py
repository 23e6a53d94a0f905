"""SentencePiece subword pieces as output units (`PieceTokenizer`), learned from transcripts (`train_pieces`).

Pieces follow SentencePiece's convention: a piece that begins a word starts with "▁" (U+2581), so the text is the
pieces joined with "▁" read as a space, and there is no separate word-boundary token. Index 0 is the CTC blank and
piece i of the SentencePiece model is id i + 1. The model is trained on the training transcripts only,
deterministically (the same transcripts give the same pieces), and travels as its serialized bytes, so decoding a
checkpoint or an export needs nothing else.
"""
from __future__ import annotations

import base64
import io
import string
from typing import Iterable

from asr.text.units import BLANK, Units

WORD_START = "\u2581"  # SentencePiece's "▁": the piece begins a word
ALPHABET = string.ascii_uppercase + "'"  # every character asr.text.normalize keeps, besides the space
KIND = "sentencepiece"  # the "kind" of a stored PieceTokenizer (a stored CharTokenizer has none)


class PieceTokenizer(Units):
    """SentencePiece pieces to ids and back (blank = 0, piece i = id i + 1); the same methods as CharTokenizer."""

    def __init__(self, model_proto: bytes):
        import sentencepiece as spm

        self.model_proto = bytes(model_proto)
        self._sp = spm.SentencePieceProcessor(model_proto=self.model_proto)
        pieces = [self._sp.id_to_piece(i) for i in range(self._sp.get_piece_size())]
        self.vocab: list[str] = [BLANK, *pieces]
        # Text each id stands for: the word-start mark read as a space; SentencePiece's unknown piece reads as nothing.
        self.unit_texts = ["", *("" if self._sp.is_unknown(i) else p.replace(WORD_START, " ")
                                 for i, p in enumerate(pieces))]
        self._chars = {ch for p in self.unit_texts for ch in p} - {" "}

    def __getstate__(self) -> dict:  # DataLoader workers get the model bytes, not the C++ object
        return {"model_proto": self.model_proto}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["model_proto"])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PieceTokenizer) and other.model_proto == self.model_proto

    @property
    def word_boundary(self) -> None:
        """No token marks a word boundary: a word starts at a piece beginning with "▁"."""
        return None

    def unknown_chars(self, text: str) -> set[str]:
        """Characters of `text` that no piece spells (the space excepted)."""
        return {ch for ch in text if ch != " " and ch not in self._chars}

    def encode(self, text: str) -> list[int]:
        """Ids of an already-normalized transcript; raises ValueError naming unknown characters."""
        missing = self.unknown_chars(text)
        if missing:
            raise ValueError(f"characters {sorted(missing)!r} are not in the vocabulary; normalize the text first")
        return [i + 1 for i in self._sp.encode(text)]

    def pieces(self, text: str) -> list[str]:
        """The pieces `encode` gives, by name ("CATS" -> ["▁CAT", "S"])."""
        return [self.vocab[i] for i in self.encode(text)]

    def spell(self, word: str) -> list[str]:
        """A lexicon spelling of one word in vocabulary symbols: its pieces (no boundary token follows)."""
        return self.pieces(word)

    def to_dict(self) -> dict:
        """What checkpoints and export sidecars store: the kind, the symbols (for reading) and the model bytes."""
        return {"kind": KIND, "vocab": list(self.vocab), "model": base64.b64encode(self.model_proto).decode("ascii")}

    @classmethod
    def from_dict(cls, d: dict) -> "PieceTokenizer":
        tok = cls(base64.b64decode(d["model"]))
        if "vocab" in d and list(d["vocab"]) != tok.vocab:
            raise ValueError("the stored piece list does not match the stored SentencePiece model")
        return tok


def train_pieces(texts: Iterable[str], vocab_size: int, model_type: str = "unigram") -> PieceTokenizer:
    """A SentencePiece model of `vocab_size` pieces (fewer if the text cannot fill it) learned from normalized
    transcripts. Every character `asr.text.normalize` keeps gets a piece even when the transcripts lack it, so any
    normalized text can be encoded. One thread, identity normalization: the same texts always give the same model."""
    import sentencepiece as spm

    texts = [t for t in texts if t.strip()]
    if not texts:
        raise ValueError("no transcript to learn pieces from")
    out = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(texts), model_writer=out, vocab_size=vocab_size, model_type=model_type,
            character_coverage=1.0, required_chars=ALPHABET, normalization_rule_name="identity",
            unk_id=0, bos_id=-1, eos_id=-1, pad_id=-1, num_threads=1, hard_vocab_limit=False, minloglevel=2)
    except RuntimeError as exc:  # e.g. a vocabulary smaller than the characters it must hold
        raise ValueError(f"SentencePiece could not learn {vocab_size} pieces: {str(exc).strip()}") from None
    return PieceTokenizer(out.getvalue())
