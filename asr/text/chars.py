"""LibriSpeech-style text normalization and the character tokenizer (blank = 0).

The same `normalize` is used to build training targets and to score hypotheses, so the
scoring never rewards or punishes a formatting difference the model cannot learn.
"""
from __future__ import annotations

import re
import string
import unicodedata
from dataclasses import dataclass, field

from asr.text.units import BLANK, Units

_QUOTES = {"\u2019": "'", "\u2018": "'", "`": "'", "\u00b4": "'", "\u02bc": "'", "\u2032": "'"}
# Letters that Unicode does not decompose into a base letter + accent, spelled the way English writes them.
_LETTERS = {"\u00e6": "ae", "\u00c6": "AE", "\u00f8": "o", "\u00d8": "O", "\u0153": "oe", "\u0152": "OE",
            "\u00df": "ss", "\u00f0": "d", "\u00d0": "D", "\u00fe": "th", "\u00de": "TH", "\u0142": "l",
            "\u0141": "L", "\u0111": "d", "\u0110": "D", "\u0131": "i"}
_KEEP = set(string.ascii_uppercase + "' ")


def normalize(text: str) -> str:
    """Upper-case, fold accents and curly quotes, keep A-Z, apostrophe and space, collapse whitespace.

    Hyphens and other punctuation become spaces ("well-known" -> "WELL KNOWN"), the LibriSpeech convention.
    """
    text = unicodedata.normalize("NFKD", text)
    text = "".join(_QUOTES.get(ch) or _LETTERS.get(ch, ch) for ch in text if not unicodedata.combining(ch))
    text = text.upper()
    text = "".join(ch if ch in _KEEP else " " for ch in text)
    # Apostrophes that do not sit inside a word ("'TWAS" is kept, "DOGS' " -> "DOGS'", " ' " dropped).
    text = re.sub(r"(?<![A-Z])'(?![A-Z])", " ", text)
    return " ".join(text.split())


@dataclass
class CharTokenizer(Units):
    """Characters to ids and back. Index 0 is the CTC blank; space is a token (word boundary)."""

    vocab: list[str] = field(default_factory=lambda: [BLANK, " ", "'", *string.ascii_uppercase])

    def __post_init__(self) -> None:
        if not self.vocab or self.vocab[0] != BLANK:
            raise ValueError(f"vocabulary must start with the blank symbol {BLANK!r}, got {self.vocab[:3]!r}")
        if len(set(self.vocab)) != len(self.vocab):
            raise ValueError("vocabulary has duplicate symbols")
        self._index = {tok: i for i, tok in enumerate(self.vocab)}
        self.unit_texts = ["", *self.vocab[1:]]

    @property
    def word_boundary(self) -> str:
        """The symbol that separates words (the space)."""
        return " "

    def spell(self, word: str) -> list[str]:
        """A lexicon spelling of one word in vocabulary symbols: its characters, then the boundary (C, A, T, ' ')."""
        return [*word, " "]

    def unknown_chars(self, text: str) -> set[str]:
        """Characters of `text` that have no id (the doctor reports them)."""
        return {ch for ch in text if ch not in self._index}

    def encode(self, text: str) -> list[int]:
        """Ids of an already-normalized transcript; raises ValueError naming unknown characters."""
        missing = self.unknown_chars(text)
        if missing:
            raise ValueError(f"characters {sorted(missing)!r} are not in the vocabulary; normalize the text first")
        return [self._index[ch] for ch in text]

    def to_dict(self) -> dict:
        return {"vocab": list(self.vocab)}

    @classmethod
    def from_dict(cls, d: dict) -> "CharTokenizer":
        return cls(vocab=list(d["vocab"]))
