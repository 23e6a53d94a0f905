"""What every tokenizer shares: the symbols (`vocab`, the CTC blank first), the text each id stands for, and from
those the decoding side (ids -> text, ids -> words with times) that every decoder and the word timings end in."""
from __future__ import annotations

from typing import Sequence, TypeVar

T = TypeVar("T")  # a position: an output frame or seconds

BLANK = "<blank>"


class Units:
    """Base of CharTokenizer and PieceTokenizer. A subclass sets `vocab` (symbols, `vocab[0]` the blank) and
    `unit_texts` (the text of each id: "" for the blank; a text beginning with a space starts a word, so the space
    character itself, or a piece's "▁")."""

    vocab: list[str]
    unit_texts: list[str]

    @property
    def size(self) -> int:
        """C: number of output classes including the blank."""
        return len(self.vocab)

    @property
    def blank(self) -> int:
        return 0

    def decode(self, ids) -> str:
        """Ids (blank ids read as nothing, no repeat collapsing) -> text."""
        return "".join(self.unit_texts[int(i)] for i in ids)

    def ids_to_text(self, ids) -> str:
        """Label ids (no blanks) -> text with single spaces and no leading or trailing space.

        Every decoder ends here, so "A  B" (two emitted word boundaries) and " AB" score the same as "A B" and "AB".
        """
        return " ".join(self.decode(ids).split())

    def group_words(self, ids: Sequence[int], starts: Sequence[T], ends: Sequence[T]) -> list[tuple[str, T, T]]:
        """Group label ids (no blanks) into words: `(word, start, end)` per word, where start is its first unit's
        `starts` entry and end its last unit's `ends` entry (frames, or seconds). A word starts at a unit whose text
        begins with a space; units that spell nothing else (the space, a bare "▁") take no time of a word, and empty
        words (repeated or leading boundaries) are dropped."""
        words: list[tuple[str, T, T]] = []
        parts: list[str] = []
        first = last = None
        for i, s, e in zip(ids, starts, ends):
            text = self.unit_texts[int(i)]
            if text.startswith(" "):
                if parts:
                    words.append(("".join(parts), first, last))
                parts = []
                text = text[1:]
            if not text:
                continue
            if not parts:
                first = s
            parts.append(text)
            last = e
        if parts:
            words.append(("".join(parts), first, last))
        return words
