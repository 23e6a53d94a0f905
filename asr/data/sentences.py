"""The text of the built-in corpus: the quoted example sentences of WordNet 3.0.

Source: Debian's `wordnet-base` (/usr/share/wordnet/data.{noun,verb,adj,adv}); each synset line ends with a
gloss `| definition; "example one"; "example two"`. Licence: the WordNet 3.0 licence (Princeton University,
a permissive BSD-style licence: use, copy, modify and distribute for any purpose, keeping its copyright
notice, "WordNet 3.0 Copyright 2006 by Princeton University. All rights reserved."). The corpus records
this in corpus.json.

A sentence is kept only where the text-to-speech reading and the transcript cannot disagree: the example
may hold letters, in-word apostrophes and plain punctuation (which only shapes the prosody), but no digits,
symbols or periods inside it (abbreviations), no quotation marks (`to say' style quotes would leave stray
apostrophes in the transcript), no acronyms or Roman numerals (words with two capitals: the engines spell
them out or read them as numbers) and no common abbreviations written without a period.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from asr.errors import UserError
from asr.text import normalize

WORDNET_DIR = Path("/usr/share/wordnet")
WORDNET_FILES = ("data.noun", "data.verb", "data.adj", "data.adv")
SOURCE = "WordNet 3.0 example sentences (Debian wordnet-base)"
LICENSE = ("WordNet 3.0 licence (permissive): WordNet 3.0 Copyright 2006 by Princeton University. "
           "All rights reserved. https://wordnet.princeton.edu/license-and-commercial-use")

_QUOTED = re.compile(r'"([^"]*)"')
# Letters first, then letters, apostrophes, spaces and prosody punctuation; one optional final . ! or ?
_SPEAKABLE = re.compile(r"[A-Za-z][A-Za-z' ,;:!?\-]*[.!?]?")
_TWO_CAPITALS = re.compile(r"[A-Z][A-Za-z']*[A-Z]")
# Written without a period they still pass _SPEAKABLE, and the engines expand them ("etc" -> "et cetera").
_ABBREVIATIONS = {"etc", "mr", "mrs", "ms", "dr", "st", "jr", "sr", "vs", "ft", "lb", "oz", "km", "cm", "mm"}


class WordNetMissing(UserError):
    """The WordNet database files that hold the example sentences are not installed."""


@dataclass(frozen=True)
class Sentence:
    text: str    # the transcript: asr.text.normalize(prompt), only A-Z, apostrophe and space
    prompt: str  # what the engines read: the example as WordNet writes it (case and punctuation kept)


def _speakable(example: str) -> bool:
    if not _SPEAKABLE.fullmatch(example):
        return False
    words = re.findall(r"[A-Za-z']+", example)
    if any(_TWO_CAPITALS.search(w) for w in words):
        return False
    # Apostrophes only inside a word or as a plural possessive (dogs'); others are quotation marks.
    if any(w.startswith("'") or (w.endswith("'") and not w.lower().endswith("s'")) for w in words):
        return False
    return not any(w.lower() in _ABBREVIATIONS for w in words)


def load_sentences(wordnet_dir: str | Path = WORDNET_DIR, min_words: int = 3,
                   max_words: int = 25) -> list[Sentence]:
    """Every usable example sentence of `min_words`..`max_words` words, deduplicated by transcript.

    The order is deterministic (file order noun, verb, adj, adv; first occurrence wins), so a seeded
    shuffle of the result is reproducible on any machine with the same WordNet files.
    """
    return list(_load(Path(wordnet_dir).resolve(), min_words, max_words))


@lru_cache(maxsize=4)
def _load(wordnet_dir: Path, min_words: int, max_words: int) -> tuple[Sentence, ...]:
    paths = [wordnet_dir / name for name in WORDNET_FILES]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise WordNetMissing(f"WordNet data file {missing[0]} not found; install the sentence source with "
                             "`apt-get install wordnet-base` (Debian/Ubuntu)")
    seen: set[str] = set()
    out: list[Sentence] = []
    for path in paths:
        # The files are ASCII apart from a few Latin-1 bytes in glosses.
        with path.open(encoding="latin-1") as f:
            for line in f:
                if line.startswith("  ") or "|" not in line:  # licence header lines start with two spaces
                    continue
                for example in _QUOTED.findall(line.split("|", 1)[1]):
                    example = " ".join(example.split())
                    if not _speakable(example):
                        continue
                    text = normalize(example)
                    if text in seen or not min_words <= len(text.split()) <= max_words:
                        continue
                    seen.add(text)
                    out.append(Sentence(text=text, prompt=example))
    if not out:
        raise WordNetMissing(f"no example sentences found in {wordnet_dir}/data.*; reinstall "
                             "`apt-get install --reinstall wordnet-base`")
    return tuple(out)


def split_sentences(sentences: list[Sentence], fractions: dict[str, float],
                    rng: np.random.Generator) -> dict[str, list[Sentence]]:
    """Partition by a seeded shuffle into disjoint pools, e.g. {"train": .9, "dev": .05, "test": .05}.

    The last split takes the remainder; every split gets at least one sentence.
    """
    order = rng.permutation(len(sentences))
    names = list(fractions)
    if len(sentences) < len(names):
        raise UserError(f"only {len(sentences)} sentences for {len(names)} splits; allow longer sentences")
    total = sum(fractions.values())
    pools: dict[str, list[Sentence]] = {}
    start = 0
    for i, name in enumerate(names):
        left = len(names) - i - 1
        if left == 0:
            stop = len(order)
        else:
            stop = start + max(1, round(len(order) * fractions[name] / total))
            stop = min(stop, len(order) - left)
        pools[name] = [sentences[j] for j in order[start:stop]]
        start = stop
    return pools
