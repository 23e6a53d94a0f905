"""The Kneser-Ney ARPA builder: hand-computed probabilities, normalization of every context, the ARPA format as
KenLM (flashlight) reads it, perplexity, edge cases and the `asr-data lm build` CLI."""
from __future__ import annotations

import json
import logging
import math
import random
from pathlib import Path

import numpy as np
import pytest

from asr.data.cli import main as data_main
from asr.decoding.ngram import (
    BOS,
    EOS,
    UNK,
    ArpaModel,
    LMError,
    build_arpa,
    estimate,
    estimate_discount,
    read_sentences,
)
from asr.errors import UserError

WORDS = ("THE A CAT DOG SAW RAN HOUSE TREE RIVER BIG SMALL RED OLD NEW AND BUT ON IN UNDER OVER HE SHE IT THEY "
         "WALKED FOUND LIKES GREEN BOAT HILL MORNING NIGHT QUICKLY SLOWLY WITH FROM BIRD SANG LOUD DOG'S").split()
REAL = [
    "Speech recognition turns spoken language into written text.",
    "The weather was cold, so we stayed inside and read old books.",
    "A good model learns patterns that it has never seen before!",
    "My grandmother's garden is full of roses and tomatoes.",
    "Trains leave the station every twenty minutes on weekdays.",
    "He wrote a letter to his brother who lives far away.",
    "Music filled the hall while the audience waited quietly.",
    "Please close the window before the rain comes in.",
    "The committee will announce its decision next week.",
    "Children played by the river until the sun went down.",
    "She opened the box and found a small silver key.",
    "Every language has its own rhythm and melody.",
]


def chain_sentences(n: int, sample_seed: int, chain_seed: int = 1) -> list[str]:
    """Sentences from a fixed random bigram chain with sparse, Zipf-like successors: natural count-of-counts, so
    the discounts of orders 3 and 4 are estimated, not fallen back on (checked below)."""
    rng = random.Random(chain_seed)
    zipf = [1.0 / (r + 1) for r in range(len(WORDS))]
    succ = {}
    for w in [BOS, *WORDS]:
        cand = list(dict.fromkeys(rng.choices(WORDS, weights=zipf, k=rng.randint(2, 10))))
        succ[w] = (cand, [1.0 / (r + 1) for r in range(len(cand))])
    rng = random.Random(sample_seed)
    out = []
    for _ in range(n):
        w, s = BOS, []
        while len(s) < 2 or (rng.random() > 0.15 and len(s) < 14):
            w = rng.choices(*succ[w])[0]
            s.append(w)
        out.append(" ".join(s).lower())
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("lm") / "corpus.txt"
    path.write_text("\n".join(REAL + chain_sentences(300, sample_seed=0)) + "\n")
    return path


@pytest.fixture(scope="module")
def arpa(corpus, tmp_path_factory):
    """Build each order once per module: {order: path}."""
    built: dict[int, Path] = {}

    def get(order: int) -> Path:
        if order not in built:
            built[order] = build_arpa(corpus, order, tmp_path_factory.mktemp(f"o{order}") / f"{order}gram.arpa")
        return built[order]
    return get


def read_sections(path: Path) -> tuple[dict[int, int], dict[int, list[list[str]]]]:
    """An independent raw parse: the \\data\\ header and the fields of every line of each section."""
    header: dict[int, int] = {}
    sections: dict[int, list[list[str]]] = {}
    current = None
    for line in path.read_text().splitlines():
        if line.startswith("ngram "):
            n, c = line[6:].split("=")
            header[int(n)] = int(c)
        elif line.startswith("\\") and line.endswith("-grams:"):
            current = int(line[1:-7])
            sections[current] = []
        elif line == "\\end\\":
            current = None
        elif line and current is not None:
            sections[current].append(line.split("\t"))
    return header, sections


# ------------------------------------------------------------------------------------------------- the estimator

def test_discounts_follow_chen_goodman_eq26():
    d, why = estimate_discount([10, 5, 3, 2])
    # Y = 10 / (10 + 2*5) = 0.5; D1 = 1 - 2Y*5/10; D2 = 2 - 3Y*3/5; D3+ = 3 - 4Y*2/3
    assert why is None and not d.fallback
    assert (d.d1, d.d2, d.d3) == pytest.approx((0.5, 1.1, 3 - 4 / 3))
    assert d(0) == 0.0 and d(1) == d.d1 and d(2) == d.d2 and d(3) == d(7) == d.d3


@pytest.mark.parametrize("coc, reason", [([10, 0, 3, 2], "adjusted count 2"), ([0, 5, 3, 2], "adjusted count 1"),
                                         ([3, 1, 20, 1], "D2 =")])
def test_discounts_fall_back_when_counts_break_them(coc, reason):
    d, why = estimate_discount(coc)
    assert d.fallback and (d.d1, d.d2, d.d3) == (0.5, 1.0, 1.5)
    assert reason in why


def test_hand_computed_bigram_model():
    # <s> A B </s> | <s> C B </s> | <s> A C </s>; tiny, so both orders use the fallback discounts 0.5, 1, 1.5.
    m = estimate([["A", "B"], ["C", "B"], ["A", "C"]], 2)
    # Unigram continuation counts: A 1 (<s>), B 2 (A, C), C 2 (<s>, A), </s> 2 (B, C), <unk> 0; sum 7.
    # gamma() = (0.5 + 1 + 1 + 1) / 7 = 1/2 spread uniformly over 5 words (A B C </s> <unk>).
    p1 = m.probs[0]
    assert p1[("A",)] == pytest.approx(0.5 / 7 + 0.1)
    assert p1[("B",)] == p1[("C",)] == p1[(EOS,)] == pytest.approx(1 / 7 + 0.1)
    assert p1[(UNK,)] == pytest.approx(0.1)
    assert (BOS,) not in p1
    # Context A: A B (1), A C (1): gamma = (0.5 + 0.5) / 2; p(B|A) = 0.5/2 + 0.5 p(B)
    assert m.backoffs[0][("A",)] == pytest.approx(0.5)
    assert m.probs[1][("A", "B")] == pytest.approx(13 / 35)
    # Context <s>: raw counts (nothing precedes <s>): <s> A (2), <s> C (1); gamma = (1 + 0.5) / 3.
    assert m.backoffs[0][(BOS,)] == pytest.approx(0.5)
    assert m.probs[1][(BOS, "A")] == pytest.approx(44 / 105)


def test_estimated_discounts_are_not_fallbacks_on_the_test_corpus(corpus):
    m = estimate(read_sentences(corpus), 4)
    assert [d.fallback for d in m.discounts[2:]] == [False, False]


def test_fallback_is_reported(tmp_path, caplog):
    text = tmp_path / "tiny.txt"
    text.write_text("the cat sat\nthe dog sat\n")
    with caplog.at_level(logging.WARNING, logger="asr.decoding.ngram"):
        build_arpa(text, 3, tmp_path / "tiny.arpa")
    assert "fallback" in caplog.text
    assert_normalized(ArpaModel.load(tmp_path / "tiny.arpa"))


# ------------------------------------------------------------------------------------------------- the ARPA model

def assert_normalized(model: ArpaModel) -> int:
    """Every context in the model (and the empty one) gives a distribution over the vocabulary that sums to 1."""
    predictable = sorted(model.vocab - {BOS})
    contexts = [()] + [g for n in range(model.order - 1) for g in model.backoffs[n]]
    for h in contexts:
        total = sum(10.0 ** model.logprob(w, h) for w in predictable)
        assert total == pytest.approx(1.0, abs=1e-4), f"context {h}: sum {total}"
    return len(contexts)


@pytest.mark.parametrize("order", [2, 3, 4])
def test_every_context_distribution_sums_to_one(arpa, order):
    model = ArpaModel.load(arpa(order))
    assert model.order == order
    assert assert_normalized(model) > 100


@pytest.mark.parametrize("order", [2, 3, 4])
def test_header_counts_match_sections_and_backoffs_exactly_for_contexts(arpa, order):
    header, sections = read_sections(arpa(order))
    assert sorted(header) == sorted(sections) == list(range(1, order + 1))
    for n in header:
        assert header[n] == len(sections[n]) == len({tuple(f[1].split()) for f in sections[n]})
        assert all(len(f[1].split()) == n for f in sections[n])
    for n in range(1, order + 1):
        with_bow = {tuple(f[1].split()) for f in sections[n] if len(f) == 3}
        contexts = {tuple(f[1].split())[:-1] for f in sections[n + 1]} if n < order else set()
        assert with_bow == contexts, f"order {n}"
    for n in header:
        for f in sections[n]:
            assert float(f[0]) <= 0.0
    unigrams = {f[1]: float(f[0]) for f in sections[1]}
    assert {BOS, EOS, UNK} <= set(unigrams) and unigrams[BOS] == -99.0


def test_unk_gets_a_sensible_probability(arpa):
    model = ArpaModel.load(arpa(3))
    p_unk = 10 ** model.logprob(UNK)
    seen = [10 ** lp for g, lp in model.logprobs[0].items() if g[0] not in (BOS, UNK)]
    assert 0 < p_unk < max(seen)
    assert model.logprob("ZYZZYVA", ["THE"]) == model.logprob(UNK, ["THE"])


@pytest.mark.parametrize("order", [3, 4])
def test_kenlm_reads_the_file_and_agrees(arpa, order):
    pytest.importorskip("flashlight.lib.text.decoder.kenlm")
    from flashlight.lib.text.decoder.kenlm import KenLM
    from flashlight.lib.text.dictionary import Dictionary

    path = arpa(order)
    model = ArpaModel.load(path)
    words = sorted(model.vocab)
    vocab = Dictionary(words)
    kenlm = KenLM(str(path), vocab)
    rng = random.Random(3)
    sentences = [s.upper().split() for s in chain_sentences(5, sample_seed=7)]
    sentences += [[rng.choice(words[3:]) for _ in range(6)], ["THE", UNK, "RIVER"]]
    for sent in sentences:
        state, context = kenlm.start(False), [BOS]
        for w in sent:
            state, score = kenlm.score(state, vocab.get_index(w))
            assert score == pytest.approx(model.logprob(w, context), abs=1e-4), (sent, w)
            context.append(w)
        state, score = kenlm.finish(state)
        assert score == pytest.approx(model.logprob(EOS, context), abs=1e-4)
    for w in words[:10]:  # no context at all: the unigram distribution
        if w != BOS:
            _, score = kenlm.score(kenlm.start(True), vocab.get_index(w))
            assert score == pytest.approx(model.logprob(w), abs=1e-4)


def test_torchaudio_beam_decoder_accepts_the_lm(arpa, tmp_path):
    decoder_mod = pytest.importorskip("torchaudio.models.decoder")
    torch = pytest.importorskip("torch")
    path = arpa(3)
    words = sorted(ArpaModel.load(path).vocab - {BOS, EOS, UNK})
    lexicon = tmp_path / "lexicon.txt"
    lexicon.write_text("".join(f"{w} {' '.join(w)} |\n" for w in words))
    tokens = ["-", "|", "'", *"ABCDEFGHIJKLMNOPQRSTUVWXYZ"]
    dec = decoder_mod.ctc_decoder(lexicon=str(lexicon), tokens=tokens, lm=str(path), beam_size=5)
    emissions = torch.log_softmax(torch.from_numpy(np.random.default_rng(0).normal(size=(1, 30, len(tokens)))), -1)
    hyps = dec(emissions.float())
    assert set(hyps[0][0].words) <= set(words)


def test_heldout_perplexity_is_finite_and_beats_uniform(arpa):
    model = ArpaModel.load(arpa(3))
    heldout = chain_sentences(20, sample_seed=99)
    ppl = model.perplexity(heldout)
    uniform = len(model.vocab - {BOS})  # perplexity of the uniform unigram model
    assert math.isfinite(ppl) and 1.0 < ppl < uniform / 3
    # a string is normalized like the training text: case and punctuation do not matter
    assert model.sentence_logprob("the cat, saw!") == pytest.approx(model.sentence_logprob(["THE", "CAT", "SAW"]))


def test_load_rejects_a_header_that_disagrees(arpa, tmp_path):
    text = arpa(2).read_text()
    bad = tmp_path / "bad.arpa"
    bad.write_text(text.replace("ngram 2=", "ngram 2=1", 1))
    with pytest.raises(LMError, match="declares"):
        ArpaModel.load(bad)
    bad.write_text(text.replace("\\end\\", ""))
    with pytest.raises(LMError, match="truncated"):
        ArpaModel.load(bad)


# ------------------------------------------------------------------------------------------------- inputs and edges

def test_order_beyond_the_longest_sentence(tmp_path, caplog):
    text = tmp_path / "short.txt"
    text.write_text("hello\nhello world\nworld\ngood day\n")
    with caplog.at_level(logging.WARNING, logger="asr.decoding.ngram"):
        build_arpa(text, 5, tmp_path / "short.arpa")
    assert "longest" in caplog.text
    model = ArpaModel.load(tmp_path / "short.arpa")
    assert model.order == 4  # <s> HELLO WORLD </s>
    assert_normalized(model)


def test_jsonl_manifest_text_is_normalized(tmp_path):
    manifest = tmp_path / "train.jsonl"
    recs = [{"audio_filepath": f"{i}.flac", "duration": 1.0, "text": t}
            for i, t in enumerate(["Hello, World!", "hello there", "It's well-known."])]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in recs))
    assert read_sentences(manifest) == [["HELLO", "WORLD"], ["HELLO", "THERE"], ["IT'S", "WELL", "KNOWN"]]
    model = ArpaModel.load(build_arpa(manifest, 2, tmp_path / "m.arpa"))
    assert model.vocab == {BOS, EOS, UNK, "HELLO", "WORLD", "THERE", "IT'S", "WELL", "KNOWN"}
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"duration": 1}\n')
    with pytest.raises(LMError, match=r"bad.jsonl:2"):
        read_sentences(bad)


def test_vocab_limit_maps_rare_words_to_unk(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("a a a b b c\na b d\n")
    model = ArpaModel.load(build_arpa(text, 2, tmp_path / "v.arpa", vocab_limit=2))
    assert model.vocab == {BOS, EOS, UNK, "A", "B"}
    assert (UNK, EOS) in model.logprobs[1]  # "c </s>" and "d </s>" were counted as "<unk> </s>"
    assert_normalized(model)


@pytest.mark.parametrize("content", ["", "\n\n", "!!! ...\n  \n"])
def test_empty_text_is_a_user_error_naming_the_file(tmp_path, content):
    text = tmp_path / "empty.txt"
    text.write_text(content)
    with pytest.raises(UserError, match="empty.txt"):
        build_arpa(text, 3, tmp_path / "x.arpa")
    assert not (tmp_path / "x.arpa").exists()
    with pytest.raises(UserError, match="not found"):
        build_arpa(tmp_path / "missing.txt", 3, tmp_path / "x.arpa")


def test_write_is_atomic_and_replaces(tmp_path, corpus):
    out = tmp_path / "lm" / "model.arpa"
    out.parent.mkdir()
    out.write_text("stale")
    build_arpa(corpus, 2, out)
    assert out.read_text().startswith("\\data\\")
    assert [p.name for p in out.parent.iterdir()] == ["model.arpa"]


# ------------------------------------------------------------------------------------------------------------ CLI

def test_cli_lm_build(tmp_path, corpus, capsys):
    out = tmp_path / "cli.arpa"
    assert data_main(["lm", "build", "--text", str(corpus), "--order", "3", "--out", str(out)]) == 0
    assert ArpaModel.load(out).order == 3
    assert str(out) in capsys.readouterr().out


def test_cli_lm_build_empty_text_exits_2(tmp_path, capsys):
    text = tmp_path / "nothing.txt"
    text.write_text("")
    rc = data_main(["lm", "build", "--text", str(text), "--order", "3", "--out", str(tmp_path / "o.arpa")])
    err = capsys.readouterr().err
    assert rc == 2
    assert len(err.strip().splitlines()) == 1 and "nothing.txt" in err and "Traceback" not in err

