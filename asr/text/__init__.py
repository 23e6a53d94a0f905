"""Text: normalization and the character tokenizer (chars.py), SentencePiece pieces (pieces.py), what both share
(units.py: ids -> text and words), and the one place a stored tokenizer (checkpoint, export sidecar, run dir) is
read back (`tokenizer_from_dict`)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Union

from asr.fileio import atomic_write
from asr.text.chars import BLANK, CharTokenizer, normalize
from asr.text.pieces import KIND, PieceTokenizer, train_pieces

__all__ = ["BLANK", "CharTokenizer", "PieceTokenizer", "Tokenizer", "normalize", "train_pieces", "tokenizer_from_dict",
           "save_tokenizer", "load_tokenizer"]

Tokenizer = Union[CharTokenizer, PieceTokenizer]


def tokenizer_from_dict(d: dict) -> Tokenizer:
    """The tokenizer `to_dict` stored: pieces when its kind says so, else characters (checkpoints before pieces)."""
    kind = d.get("kind", "char")
    if kind == KIND:
        return PieceTokenizer.from_dict(d)
    if kind != "char":
        raise ValueError(f"unknown tokenizer kind {kind!r} (this version knows 'char' and {KIND!r})")
    return CharTokenizer.from_dict(d)


def save_tokenizer(tokenizer: Tokenizer, path: str | Path) -> None:
    """Write `to_dict` as JSON, atomically."""
    with atomic_write(path) as f:
        f.write(json.dumps(tokenizer.to_dict(), indent=1) + "\n")


def load_tokenizer(path: str | Path) -> Tokenizer:
    return tokenizer_from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


