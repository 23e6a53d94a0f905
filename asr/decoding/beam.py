"""Beam search decoding with torchaudio's `ctc_decoder` (flashlight-text), optionally with a KenLM word n-gram LM.

Shapes: B batch, T' frames after subsampling, C vocabulary including the blank (id 0).

How flashlight sees our vocabulary. Its decoders take a token list in which the blank and the word boundary
("silence") are named; ours are "<blank>" and " ", so the token list we hand it is our vocabulary with those two
renamed to BLANK_NAME and SIL_NAME. The order is unchanged, so flashlight's token ids are our ids.

What flashlight does, read from flashlight-text's LexiconFreeDecoder.cpp / LexiconDecoder.cpp and measured by
tests/decoding/test_beam.py:

* A hypothesis is a CTC state (prefix, token of the last frame, whether it was a blank), not a prefix: with
  `log_add=False` merged states keep the max, so without an LM the search returns the labelling of the single
  best alignment, which is exactly greedy decoding. With `log_add=True` merged states add up and the LM-free search
  is a prefix beam search (Hannun 2017). Hence `log_add=None` (the default) picks True without an LM and False
  (flashlight's and wav2letter's usual) with one.
* Pruning ranks states, not prefixes, so a prefix's blank-ending and label-ending halves can be pruned separately;
  a beam of N states holds at most N prefixes and usually fewer. Give it a somewhat wider beam than the reference.
* Every hypothesis starts in a "silence" state: a word boundary in the first frames is a repeat of that state,
  not an emitted token ("|A" alignments count for "A"). Harmless for text, where leading spaces are stripped.
* In the lexicon-free decoder the LM scores *every token* (`lm.score(state, token)`): it is a token (character)
  LM there. A word n-gram LM needs the lexicon decoder, so with `lm_path` and no `lexicon_path` the lexicon is
  generated from the LM's unigrams (ARPA only: a KenLM binary's vocabulary cannot be read without the `kenlm`
  module) and the decoder logs that it did so.
* The lexicon decoder emits a word when its spelling is complete. Spellings end with the word boundary
  ("C A T |"), which lets a final letter be held over several frames, so the last word of an utterance, which our
  models end without a space, needs a boundary after it: `decode` appends one frame of certain silence to each
  utterance in lexicon mode (its score is 0, so it changes no ranking), and drops it from the timings.
* Subword pieces (asr.text.PieceTokenizer) have no boundary token: a word starts at a "▁" piece. The silence
  token is then the blank, spellings are the word's pieces alone, and a completed word returns the search to the
  lexicon's root, where the next word's first piece can follow at once. The root does not take a repeat of the
  piece that completed a word, so a final piece held over two frames must give way to a blank (CTC models emit a
  piece in one frame and blanks around it; the appended end frame is then a certain blank).
* Returned token lists begin with the start state's silence (timestep 0) and end with the end-of-utterance silence
  (timestep T'+1); a token's timestep is its frame + 1. `decode_with_timesteps` removes both and shifts the rest.
"""
from __future__ import annotations

import atexit
import contextlib
import ctypes
import functools
import hashlib
import logging
import math
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

import torch

from asr.decoding.arpa import UNK, LMError, check_lm_files, unigram_words
from asr.errors import UserError
from asr.text import CharTokenizer, Tokenizer

log = logging.getLogger(__name__)

BLANK_NAME = "-"  # what flashlight calls our "<blank>" (torchaudio's default blank_token)
SIL_NAME = "|"  # what flashlight calls our " " (torchaudio's default sil_token); ends each lexicon spelling
_KENLM_BINARY_MAGIC = b"mmap lm "  # first bytes of every KenLM binary file
_NO_EMISSION = -1e4  # log-score of the other tokens in the appended silence frame; far beyond any beam threshold


@dataclass
class BeamHypothesis:
    """One decoded hypothesis: text, label ids (no blanks), the frame of each id, and flashlight's total score."""

    text: str
    ids: list[int]
    frames: list[int]
    score: float


def _flashlight_names(tokenizer: Tokenizer) -> dict[str, str]:
    """Our symbols that flashlight knows by another name: "<blank>" -> BLANK_NAME, the word boundary (characters:
    " ") -> SIL_NAME; every other symbol keeps its own."""
    names = {tokenizer.vocab[0]: BLANK_NAME}
    if tokenizer.word_boundary is not None:
        names[tokenizer.word_boundary] = SIL_NAME
    return names


def flashlight_tokens(tokenizer: Tokenizer) -> list[str]:
    """Our vocabulary as flashlight token names, same order (same ids)."""
    taken = {BLANK_NAME, SIL_NAME} & set(tokenizer.vocab)
    if taken:
        raise UserError(f"vocabulary symbols {sorted(taken)} are reserved for flashlight's blank and silence names")
    names = _flashlight_names(tokenizer)
    return [names.get(tok, tok) for tok in tokenizer.vocab]


def silence_name(tokenizer: Tokenizer) -> str:
    """Flashlight's silence token for this vocabulary: the word boundary, or the blank when there is none (pieces)."""
    return SIL_NAME if tokenizer.word_boundary is not None else BLANK_NAME


def spell(word: str, tokenizer: Optional[Tokenizer] = None) -> list[str]:
    """Flashlight spelling of a word: characters then the boundary ("CAT" -> C A T |), or its pieces (▁CAT S)."""
    tokenizer = tokenizer or CharTokenizer()
    names = _flashlight_names(tokenizer)
    return [names.get(sym, sym) for sym in tokenizer.spell(word)]


def write_lexicon(words: Iterable[str], path: str | Path, tokenizer: Optional[Tokenizer] = None) -> int:
    """Write a flashlight lexicon ("CAT\tC A T |" per line; characters unless `tokenizer` says otherwise), each
    distinct word once; return the number written."""
    seen: set[str] = set()
    lines = []
    for word in words:
        if word and word not in seen and not any(ch.isspace() for ch in word):
            seen.add(word)
            lines.append(f"{word}\t{' '.join(spell(word, tokenizer))}")
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return len(lines)


def _is_kenlm_binary(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(len(_KENLM_BINARY_MAGIC)) == _KENLM_BINARY_MAGIC


def _check_lexicon(path: Path, tokens: set[str], key: str) -> None:
    """Fail early, naming the line, on spellings that use a token the model does not have."""
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            unknown = sorted(set(fields[1:]) - tokens)
            if len(fields) < 2 or unknown:
                raise UserError(f"{key}: {path}:{n}: spelling uses tokens {unknown or '(none)'} that are not in "
                                f"the model's vocabulary (write spellings like 'CAT C A T {SIL_NAME}')")


_LEXICONS: dict[str, str] = {}  # sha1 of a generated lexicon's words -> its file (this process's temporary folder)


def _lexicon_file(words: list[str], tokenizer: Tokenizer) -> tuple[str, bool]:
    """A lexicon file spelling `words` in `tokenizer`'s symbols, written once per process per word list and
    vocabulary; (path, whether it was new)."""
    key = hashlib.sha1("\n".join([*tokenizer.vocab, "", *words]).encode("utf-8")).hexdigest()
    if key in _LEXICONS and Path(_LEXICONS[key]).is_file():
        return _LEXICONS[key], False
    folder = Path(tempfile.mkdtemp(prefix="asr-lexicon-"))
    atexit.register(shutil.rmtree, folder, True)
    write_lexicon(words, folder / "lexicon.txt", tokenizer)
    _LEXICONS[key] = str(folder / "lexicon.txt")
    return _LEXICONS[key], True


def shared_lm(lm_path: str, lexicon_path: str):
    """The KenLM model of `lm_path` indexed by `lexicon_path`'s words, loaded once per process (per file version):
    an LM-weight grid builds ~20 decoders of one LM, and a LibriSpeech 4-gram takes minutes to load."""
    lm, lex = Path(lm_path), Path(lexicon_path)
    return _load_lm(str(lm.resolve()), str(lex.resolve()), lm.stat().st_mtime_ns, lex.stat().st_mtime_ns)


@functools.lru_cache(maxsize=2)
def _load_lm(lm_path: str, lexicon_path: str, lm_stamp: int, lexicon_stamp: int):
    from flashlight.lib.text.decoder.kenlm import KenLM
    from flashlight.lib.text.dictionary import create_word_dict, load_words

    # The same word dictionary torchaudio's ctc_decoder builds from this lexicon (same function, same order), so
    # the LM's word indices are the decoder's.
    words = create_word_dict(load_words(lexicon_path))
    with _native_output_captured() as captured:
        try:
            return KenLM(lm_path, words)
        finally:
            said = captured().strip()
            if said:
                log.debug("KenLM loading %s said: %s", lm_path, said)


@contextlib.contextmanager
def _native_output_captured():
    """Send what C++ code writes to the process's stdout and stderr during the block to a temporary file; yields a
    function returning it. KenLM prints a banner on every ARPA load ("Loading the LM will be faster if you build a
    binary file", the path, a 100-star progress bar) straight to the file descriptors, past Python's logging. The
    LM loads before any request is served, so no other thread's output is expected in that window."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile() as tmp:
        try:
            os.dup2(tmp.fileno(), 1)
            os.dup2(tmp.fileno(), 2)
            yield lambda: (tmp.seek(0), tmp.read().decode("utf-8", "replace"))[1]
        finally:
            _libc_fflush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def _libc_fflush() -> None:
    """Flush C stdio buffers (what a library printf'd but has not written yet) while the capture is in place."""
    try:
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):  # no C library to call (not expected on Linux/macOS)
        pass


class BeamSearchDecoder:
    """CTC beam search (flashlight via torchaudio), built once and reused for every batch.

    Modes: lexicon-free over characters (no LM, the default); lexicon-constrained (`lexicon_path`, optionally with
    `lm_path`); word LM (`lm_path`; without `lexicon_path` the lexicon is the LM's unigram list). LM scores are
    KenLM's log10 probabilities times `lm_weight`; `word_score` is added per word, `sil_score` per boundary frame,
    `unk_score` per out-of-lexicon word (-inf: none). `key_prefix` is where these settings sit in the caller's
    config, for error messages ("decode" -> decode.lm_path).
    """

    def __init__(self, tokenizer: Tokenizer, beam_size: int = 50, beam_size_token: Optional[int] = None,
                 beam_threshold: float = 50.0, lm_path: str | None = None, lexicon_path: str | None = None,
                 lm_weight: float = 0.5, word_score: float = 0.0, unk_score: float = -math.inf,
                 sil_score: float = 0.0, log_add: Optional[bool] = None, nbest: int = 1,
                 key_prefix: str = "decode") -> None:
        from torchaudio.models.decoder import ctc_decoder  # imports flashlight-text; only when a beam is wanted

        self.tokenizer = tokenizer
        self.tokens = flashlight_tokens(tokenizer)
        self.sil_name = silence_name(tokenizer)
        self.sil_id = self.tokens.index(self.sil_name)
        self.nbest = nbest
        self.lexicon_source: str | None = None  # "file", "lm unigrams" or None (lexicon-free)
        check_lm_files(lm_path, lexicon_path, key_prefix)
        if log_add is None:
            log_add = lm_path is None

        if lexicon_path is not None:
            _check_lexicon(Path(lexicon_path), set(self.tokens), f"{key_prefix}.lexicon_path")
            self.lexicon_source = "file"
        elif lm_path is not None:
            lexicon_path = self._lexicon_from_lm(Path(lm_path), key_prefix)
            self.lexicon_source = "lm unigrams"
        try:
            # The LM is read once per process and shared by every decoder of the same LM and lexicon (only the
            # weights differ between the decoders of an LM-weight grid); the lexicon is read here.
            lm = shared_lm(lm_path, lexicon_path) if lm_path is not None else None
            self._decoder = ctc_decoder(
                lexicon=lexicon_path, tokens=self.tokens, lm=lm, nbest=nbest, beam_size=beam_size,
                beam_size_token=beam_size_token, beam_threshold=beam_threshold, lm_weight=lm_weight,
                word_score=word_score, unk_score=unk_score, sil_score=sil_score, log_add=log_add,
                blank_token=BLANK_NAME, sil_token=self.sil_name, unk_word=UNK)
        except RuntimeError as exc:  # KenLM's loader reports a bad file as a RuntimeError
            reason = [line for line in str(exc).splitlines() if line.strip()][-1:] or ["unknown error"]
            raise UserError(f"{key_prefix}.lm_path: cannot load {lm_path}: {reason[0]}") from None

    def _lexicon_from_lm(self, lm_path: Path, key_prefix: str) -> str:
        if _is_kenlm_binary(lm_path):
            raise UserError(f"{key_prefix}.lm_path: {lm_path} is a KenLM binary and {key_prefix}.lexicon_path is "
                            "not set; flashlight scores a word LM only through a lexicon, and a binary's vocabulary "
                            "cannot be read here: give the ARPA file or a lexicon")
        try:
            words = unigram_words(lm_path)
        except LMError as exc:
            raise UserError(f"{key_prefix}.lm_path: {exc}") from None
        usable = [w for w in words if not self.tokenizer.unknown_chars(w) and " " not in w]
        if not usable:
            raise UserError(f"{key_prefix}.lm_path: {lm_path} has no unigram spelled with the model's characters "
                            "(is it an ARPA file with a \\1-grams: section?)")
        out, fresh = _lexicon_file(usable, self.tokenizer)
        log.log(logging.INFO if fresh else logging.DEBUG, "no lexicon given: built one from the %d unigrams of %s "
                "(%d skipped: characters outside the vocabulary); flashlight uses a word LM only with a lexicon",
                len(usable), lm_path, len(words) - len(usable))
        return out

    @property
    def uses_lexicon(self) -> bool:
        return self.lexicon_source is not None

    def _emissions(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """fp32 contiguous CPU emissions; in lexicon mode one silence frame appended after each utterance."""
        x = log_probs.detach().to("cpu", torch.float32)
        lengths = lengths.detach().to("cpu", torch.long)
        if x.dim() != 3 or lengths.shape != (x.shape[0],):
            raise ValueError(f"expected log_probs (B, T', C) and lengths (B,), got {tuple(x.shape)} and "
                             f"{tuple(lengths.shape)}")
        if x.shape[2] != len(self.tokens):
            raise ValueError(f"log_probs have {x.shape[2]} classes but the vocabulary has {len(self.tokens)}")
        lengths = lengths.clamp(0, x.shape[1])
        if not self.uses_lexicon:
            return x.contiguous(), lengths
        B, T, C = x.shape
        padded = torch.full((B, T + 1, C), _NO_EMISSION, dtype=torch.float32)
        padded[:, :T] = x
        padded[torch.arange(B), lengths] = _NO_EMISSION
        padded[torch.arange(B), lengths, self.sil_id] = 0.0
        return padded, lengths + 1

    def decode_with_timesteps(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[list[BeamHypothesis]]:
        """(B, T', C) log-probs + (B,) lengths -> per utterance up to `nbest` distinct hypotheses, best first.

        `frames[i]` is the frame (0-based, in T') at which `ids[i]` was first emitted, for word timings.
        """
        x, dec_lengths = self._emissions(log_probs, lengths)
        results = self._decoder(x, dec_lengths)
        out = []
        for b, hyps in enumerate(results):
            n_frames = int(lengths[b])
            seen: set[str] = set()
            mine = []
            for h in hyps:
                ids, frames = [], []
                for tok, ts in zip(h.tokens.tolist(), h.timesteps.tolist()):
                    if 0 < ts <= n_frames:  # drops the start state (0) and the appended/end silences
                        ids.append(tok)
                        frames.append(ts - 1)
                if self.uses_lexicon:
                    text = " ".join(h.words)
                else:
                    text = self.tokenizer.ids_to_text(ids)
                if text in seen:  # states that differ only in a trailing boundary give the same text
                    continue
                seen.add(text)
                mine.append(BeamHypothesis(text=text, ids=ids, frames=frames, score=float(h.score)))
            out.append(mine)
        return out

    def decode(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[str]:
        """(B, T', C) log-probs + (B,) lengths -> B best transcripts."""
        return [hyps[0].text if hyps else "" for hyps in self.decode_with_timesteps(log_probs, lengths)]

    __call__ = decode
