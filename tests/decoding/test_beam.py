"""BeamSearchDecoder (flashlight via torchaudio) against the reference search, with a tiny ARPA LM and lexicons."""
from __future__ import annotations

import gzip
import logging
import math

import pytest
import torch
from ctc_cases import TOKENIZER, frames, peaky_log_probs, text_of

from asr.decoding import beam as beam_module
from asr.decoding import greedy_decode
from asr.decoding.arpa import unigram_words
from asr.decoding.beam import BeamSearchDecoder, write_lexicon
from asr.decoding.reference import exhaustive_search, prefix_beam_search
from asr.errors import UserError
from asr.text import BLANK, CharTokenizer, train_pieces

tok = TOKENIZER

# A hand-made bigram ARPA (KenLM refuses unigram-only models). "KAT" is not a word of this LM.
ARPA = """\\data\\
ngram 1=6
ngram 2=2

\\1-grams:
-1.0\t</s>\t0
-99\t<s>\t-0.3
-3.0\t<unk>\t0
-0.5\tCAT\t-0.2
-1.0\tDOG\t-0.2
-1.2\tTHE\t-0.2

\\2-grams:
-0.2\t<s> THE
-0.3\tTHE CAT

\\end\\
"""


@pytest.fixture(scope="module")
def lm_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("lm")
    (d / "tiny.arpa").write_text(ARPA)
    write_lexicon(["CAT", "KAT", "DOG", "THE"], d / "lexicon.txt")
    return d


@pytest.fixture(scope="module")
def free_decoder():
    return BeamSearchDecoder(tok, beam_size=50)


def decode1(decoder, x: torch.Tensor):
    return decoder.decode_with_timesteps(x[None], torch.tensor([x.shape[0]]))[0]


# "KAT" is acoustically a little better than "CAT" (K 0.55 vs C 0.45 on one frame).
KAT_OR_CAT = [{"_": 1}, {"K": 0.55, "C": 0.45}, {"_": 1}, {"A": 1}, {"_": 1}, {"T": 1}, {"_": 1}]


# ----------------------------------------------------------------------------------------- lexicon-free, no LM

def test_agrees_with_reference_prefix_beam_search(free_decoder):
    """Best transcript of flashlight (log_add on, beam 50 states) == reference (beam 32 prefixes), 16 seeds."""
    differs_from_greedy = 0
    for seed in range(16):
        x = peaky_log_probs(seed, T=30)
        ref_ids, _ = prefix_beam_search(x, beam_size=32)[0]
        got = decode1(free_decoder, x)[0].text
        assert got == text_of(ref_ids), f"seed {seed}"
        differs_from_greedy += got != greedy_decode(x[None], torch.tensor([30]), tok)[0]
    assert differs_from_greedy >= 2  # the cases are not all won by the best path already


def test_classic_example_beam_finds_best_labelling(free_decoder):
    x = frames([{"_": 0.6, "A": 0.4}] * 2, floor=1e-9)
    [best] = decode1(free_decoder, x)
    assert best.text == "A"
    assert math.exp(best.score) == pytest.approx(0.64, abs=1e-6)


def test_scores_equal_exhaustive_search_without_boundary_mass():
    """With log_add, a wide beam and no word-boundary mass, flashlight's n-best scores are the exact labelling
    probabilities (a 4-symbol vocabulary keeps brute force small)."""
    small = CharTokenizer(vocab=[BLANK, " ", "A", "B"])
    dec = BeamSearchDecoder(small, beam_size=1000, beam_threshold=1000.0, nbest=200)
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        x = torch.randn(4, 4, generator=g) * 2
        x[:, 1] = -40.0  # the boundary never fires: see test_leading_boundary_is_merged_into_the_start
        x = x.log_softmax(-1)
        exact = [(labels, s) for labels, s in exhaustive_search(x.double()) if s > -15]
        got = {tuple(h.ids): h.score for h in decode1(dec, x)}
        for labels, s in exact:
            assert got[labels] == pytest.approx(s, abs=1e-4)


def test_without_log_add_flashlight_is_greedy():
    """log_add=False keeps the max of merged states: the search returns the best single path's labelling."""
    dec = BeamSearchDecoder(tok, beam_size=50, log_add=False)
    xs = torch.stack([peaky_log_probs(s) for s in range(16)])
    lengths = torch.full((16,), 30)
    assert dec.decode(xs, lengths) == greedy_decode(xs, lengths, tok)


def test_leading_boundary_is_merged_into_the_start(free_decoder):
    """Flashlight starts every hypothesis in the silence state, so a boundary on the first frame is a repeat of
    it and those alignments count for the labelling without the leading space. The reference keeps " A" and
    "A" apart and picks "BA" (0.36 > 0.34 > 0.30); flashlight sees "A" = 0.30 + 0.34, the right answer for text,
    where leading spaces are stripped."""
    x = frames([{"B": 0.36, " ": 0.34, "_": 0.30}, {"A": 1.0}], floor=1e-9)
    ref = prefix_beam_search(x, beam_size=10)
    assert text_of(ref[0][0]) == "BA" and text_of(ref[1][0]) == "A"
    best = decode1(free_decoder, x)[0]
    assert best.text == "A"
    assert math.exp(best.score) == pytest.approx(0.64, abs=1e-6)


def test_timesteps_are_frames_of_first_emission(free_decoder):
    x = frames([{s: 1.0} for s in "C_ATT _D_OG"])
    [best] = decode1(free_decoder, x)[:1]
    assert best.text == "CAT DOG"
    assert tok.decode(best.ids) == "CAT DOG"
    assert best.frames == [0, 2, 3, 5, 7, 9, 10]


def test_batch_lengths_and_reuse(free_decoder):
    xs = torch.stack([peaky_log_probs(s) for s in range(6)])
    lengths = torch.tensor([30, 12, 30, 1, 25, 7])
    batched = free_decoder.decode(xs, lengths)
    singles = [free_decoder.decode(xs[b : b + 1, : lengths[b]], lengths[b : b + 1])[0] for b in range(6)]
    assert batched == singles
    assert free_decoder.decode(xs, lengths) == batched  # reusable: same answers on the next call
    assert free_decoder.decode(xs.double(), lengths) == batched  # any float dtype is brought to fp32


def test_nbest_texts_are_distinct():
    dec = BeamSearchDecoder(tok, beam_size=50, nbest=5)
    hyps = decode1(dec, peaky_log_probs(3))
    texts = [h.text for h in hyps]
    assert len(texts) == len(set(texts)) and 1 <= len(texts) <= 5
    assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)


# ------------------------------------------------------------------------------------------------ lexicon, LM

def test_lm_prefers_a_word_over_an_acoustically_better_non_word(lm_files, free_decoder, caplog):
    x = frames(KAT_OR_CAT)
    assert decode1(free_decoder, x)[0].text == "KAT"
    lexicon_only = BeamSearchDecoder(tok, lexicon_path=str(lm_files / "lexicon.txt"))
    assert decode1(lexicon_only, x)[0].text == "KAT"  # both are lexicon words: acoustics decide
    with_lm = BeamSearchDecoder(tok, lexicon_path=str(lm_files / "lexicon.txt"), lm_path=str(lm_files / "tiny.arpa"))
    assert decode1(with_lm, x)[0].text == "CAT"  # KAT is <unk> to the LM
    beam_module._LEXICONS.clear()  # the lexicon is built (and logged) once per process
    with caplog.at_level(logging.INFO, logger="asr.decoding.beam"):
        lm_only = BeamSearchDecoder(tok, lm_path=str(lm_files / "tiny.arpa"))
    assert lm_only.lexicon_source == "lm unigrams"
    assert "built one from the 3 unigrams" in caplog.text
    assert decode1(lm_only, x)[0].text == "CAT"  # lexicon = the LM's words, so KAT cannot come out


def test_decoders_of_one_lm_share_it_and_decode_as_if_alone(lm_files, caplog):
    """An LM-weight grid builds many decoders of one LM: it is loaded (and its lexicon built and logged) once per
    process, and each decoder still decodes with its own weights exactly as one built after a cold start."""
    x = frames(KAT_OR_CAT)
    beam_module._load_lm.cache_clear()
    beam_module._LEXICONS.clear()
    with caplog.at_level(logging.INFO, logger="asr.decoding.beam"):
        grid = [BeamSearchDecoder(tok, lm_path=str(lm_files / "tiny.arpa"), lm_weight=w, word_score=s)
                for w in (0.0, 2.0) for s in (-1.0, 1.0)]
    info = beam_module._load_lm.cache_info()
    assert (info.misses, info.hits) == (1, 3) and caplog.text.count("built one from the 3 unigrams") == 1
    shared = [decode1(d, x)[0].text for d in grid]
    cold = []
    for w in (0.0, 2.0):
        for s in (-1.0, 1.0):
            beam_module._load_lm.cache_clear()
            cold.append(decode1(BeamSearchDecoder(tok, lm_path=str(lm_files / "tiny.arpa"), lm_weight=w,
                                                  word_score=s), x)[0].text)
    assert shared == cold


def test_kenlms_loading_banner_stays_out_of_the_console(lm_files, capfd, caplog):
    """KenLM writes a banner (binary-file hint, path, star progress bar) to the file descriptors on each ARPA load:
    it goes to the debug log, not the user's console; our own output before and after still arrives."""
    beam_module._load_lm.cache_clear()
    print("before")
    with caplog.at_level(logging.DEBUG, logger="asr.decoding.beam"):
        BeamSearchDecoder(tok, lm_path=str(lm_files / "tiny.arpa"))
    print("after")
    out, err = capfd.readouterr()
    assert out == "before\nafter\n" and "****" not in err and "binary file" not in err
    assert "KenLM loading" in caplog.text and "****" in caplog.text  # captured, kept for --debug logs


def test_lm_decoder_is_reusable_and_handles_a_batch(lm_files):
    dec = BeamSearchDecoder(tok, lm_path=str(lm_files / "tiny.arpa"))
    the_cat = frames([{s: 1.0} for s in "THE_ _CAT"])
    dog = frames([{s: 1.0} for s in "D_OGG"])
    xs = torch.zeros(2, 9, tok.size)
    xs[0], xs[1, :5] = the_cat, dog
    for _ in range(2):
        assert dec.decode(xs, torch.tensor([9, 5])) == ["THE CAT", "DOG"]


def test_lexicon_handles_a_held_last_letter_without_a_trailing_space(lm_files):
    """Our models end an utterance without a space; the appended silence frame completes the last word for free."""
    dec = BeamSearchDecoder(tok, lexicon_path=str(lm_files / "lexicon.txt"))
    x = frames([{s: 1.0} for s in "THE CATT"])
    [best] = decode1(dec, x)[:1]
    assert best.text == "THE CAT"
    assert best.score >= x.max(-1).values.sum().item() - 1e-4  # the best path's score: no frame stolen for a "|"
    assert best.frames == [0, 1, 2, 3, 4, 5, 6]  # the appended frame does not show


def test_lexicon_mode_only_outputs_lexicon_words(lm_files):
    words = {"CAT", "KAT", "DOG", "THE"}
    dec = BeamSearchDecoder(tok, lexicon_path=str(lm_files / "lexicon.txt"), nbest=3)
    xs = torch.stack([peaky_log_probs(s) for s in range(8)])
    for hyps in dec.decode_with_timesteps(xs, torch.full((8,), 30)):
        for h in hyps:
            assert set(h.text.split()) <= words


# ------------------------------------------------------------------------------------------------ subword pieces

# Learned pieces for these texts: THE = ▁ T H E, CAT = ▁CAT, DOG = ▁DOG, KAT = ▁ K AT (checked below).
PIECE_TEXTS = ["THE CAT SAT ON THE MAT", "THE DOG SAT", "A KAT IS NOT A CAT", "THE CATS AND THE DOGS", "ON THE MAT"] * 3


@pytest.fixture(scope="module")
def pieces():
    p = train_pieces(PIECE_TEXTS, 40)
    assert [p.pieces(w) for w in ("THE", "CAT", "DOG")] == [["\u2581", "T", "H", "E"], ["\u2581CAT"], ["\u2581DOG"]]
    return p


def piece_frames(p, spec: list) -> torch.Tensor:
    """frames() over piece names: each entry a piece (probability 1), "_" (blank) or a {piece: probability} dict."""
    return frames([s if isinstance(s, dict) else {s: 1.0} for s in spec], tokenizer=p)


THE = ["\u2581", "T", "H", "E"]


def test_pieces_lm_spells_its_words_in_pieces_and_picks_the_likelier_word(pieces, lm_files, tmp_path):
    """No boundary token: the blank is flashlight's silence, words are spelled in pieces, and the LM decides
    between two lexicon words where the acoustics lean the other way, as with characters."""
    x = piece_frames(pieces, ["_", *THE, "_", {"\u2581DOG": 0.55, "\u2581CAT": 0.45}, "_"])
    n = torch.tensor([x.shape[0]])
    assert greedy_decode(x[None], n, pieces) == ["THE DOG"]
    assert decode1(BeamSearchDecoder(pieces), x)[0].text == "THE DOG"
    with_lm = BeamSearchDecoder(pieces, lm_path=str(lm_files / "tiny.arpa"))
    [best] = decode1(with_lm, x)
    assert best.text == "THE CAT" and with_lm.lexicon_source == "lm unigrams"
    assert best.ids == pieces.encode("THE CAT") and best.frames == [1, 2, 3, 4, 6]
    assert write_lexicon(["CAT", "THE"], tmp_path / "lex.txt", pieces) == 2
    assert (tmp_path / "lex.txt").read_text() == "CAT\t\u2581CAT\nTHE\t\u2581 T H E\n"
    lex = BeamSearchDecoder(pieces, lexicon_path=str(tmp_path / "lex.txt"))
    assert decode1(lex, x)[0].text == "THE CAT"  # DOG is not in this lexicon


def test_pieces_words_follow_each_other_without_a_blank_and_end_the_utterance(pieces, lm_files):
    """A word's first piece may follow the last word's last piece at once, a piece inside a word may be held,
    and the last word completes at the end (the appended frame is a certain blank)."""
    dec = BeamSearchDecoder(pieces, lm_path=str(lm_files / "tiny.arpa"), lm_weight=0.0)
    x = piece_frames(pieces, ["\u2581", "T", "T", "H", "E", "\u2581CAT"])
    [best] = decode1(dec, x)
    assert best.text == "THE CAT" and best.frames == [0, 1, 3, 4, 5]
    assert best.score == pytest.approx(x.max(-1).values.sum().item(), abs=1e-3)  # the best path, no frame lost


def test_pieces_a_held_last_piece_costs_a_blank_frame(pieces, lm_files):
    """Flashlight's limit with pieces: after a word completes the search is at the lexicon's root, which does not
    take a repeat of the piece that completed it, so a held last piece is scored as a blank there. The text is
    still right; the score pays log p(blank) for the frame (CTC models rarely hold a piece; docs/RESULTS.md)."""
    dec = BeamSearchDecoder(pieces, lm_path=str(lm_files / "tiny.arpa"), lm_weight=0.0)
    x = piece_frames(pieces, [*THE, "\u2581CAT", {"\u2581CAT": 0.9, "_": 0.1}])
    [best] = decode1(dec, x)
    assert best.text == "THE CAT"
    assert best.score == pytest.approx(x.max(-1).values[:-1].sum().item() + x[-1, 0].item(), abs=1e-3)
    assert x[-1, 0].item() < x[-1].max().item() - 2  # the held frame's blank score, not its piece's


# ------------------------------------------------------------------------------------------------ files, errors

def test_write_lexicon_and_unigram_words(tmp_path):
    assert write_lexicon(["CAT", "DOG'S", "CAT", ""], tmp_path / "lex.txt") == 2
    assert (tmp_path / "lex.txt").read_text() == "CAT\tC A T |\nDOG'S\tD O G ' S |\n"
    with gzip.open(tmp_path / "lm.arpa.gz", "wt") as f:
        f.write(ARPA)
    assert unigram_words(tmp_path / "lm.arpa.gz") == ["CAT", "DOG", "THE"]


def test_missing_files_name_the_key_and_path(tmp_path):
    with pytest.raises(UserError, match=r"decode\.lm_path: .*nope\.arpa"):
        BeamSearchDecoder(tok, lm_path=str(tmp_path / "nope.arpa"))
    with pytest.raises(UserError, match=r"beam\.lexicon_path: .*nope\.txt"):
        BeamSearchDecoder(tok, lexicon_path=str(tmp_path / "nope.txt"), key_prefix="beam")


def test_bad_lm_and_lexicon_files_are_user_errors(tmp_path):
    binary = tmp_path / "lm.bin"
    binary.write_bytes(b"mmap lm http://kheafield.com/code format version 5\n\0\0\0")
    with pytest.raises(UserError, match="KenLM binary"):
        BeamSearchDecoder(tok, lm_path=str(binary))
    unigram_only = tmp_path / "uni.arpa"
    unigram_only.write_text("\\data\\\nngram 1=3\n\n\\1-grams:\n-1\t</s>\n-99\t<s>\n-1\tCAT\n\n\\end\\\n")
    with pytest.raises(UserError, match="cannot load .*bigram"):
        BeamSearchDecoder(tok, lm_path=str(unigram_only))
    not_arpa = tmp_path / "words.txt"
    not_arpa.write_text("hello world\n")
    with pytest.raises(UserError, match=r"lm_path: .*words\.txt:1: not an ARPA file"):
        BeamSearchDecoder(tok, lm_path=str(not_arpa), key_prefix="beam")
    lexicon = tmp_path / "lex.txt"
    lexicon.write_text("CAT\tC A T |\ncafe\tc a f e |\n")
    with pytest.raises(UserError, match=r"lex\.txt:2: .*'a'"):
        BeamSearchDecoder(tok, lexicon_path=str(lexicon))


def test_wrong_shapes_are_refused(free_decoder):
    with pytest.raises(ValueError, match="classes"):
        free_decoder.decode(torch.zeros(1, 5, 10), torch.tensor([5]))
    with pytest.raises(ValueError, match="lengths"):
        free_decoder.decode(torch.zeros(2, 5, tok.size), torch.tensor([5]))
