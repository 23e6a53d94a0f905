"""The built-in corpus: the "tiny" preset generated for real (espeak-ng + flite) into tmp dirs, once per module."""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asr.data import synthetic, tts
from asr.data.cli import main as data_cli
from asr.data.manifest import read_manifest
from asr.data.sentences import WordNetMissing, load_sentences, split_sentences
from asr.errors import UserError
from asr.text import CharTokenizer, load_tokenizer, normalize

# Tests that synthesize (or read WordNet) need the engines; the checks made before any synthesis run anywhere.
needs_tts = pytest.mark.skipif(not (shutil.which("espeak-ng") and shutil.which("flite")
                                    and Path("/usr/share/wordnet/data.noun").is_file()),
                               reason="needs espeak-ng, flite and wordnet-base")

SPLITS = ("train", "dev", "test")
FLAC = re.compile(r"^(train|dev|test)/(\d+)/(\d+)/\2-\3-(\d{4})\.flac$")
TRANS = re.compile(r"^(train|dev|test)/(\d+)/(\d+)/\2-\3\.trans\.txt$")


def _generate(root: Path, **kw) -> dict[str, Path]:
    return synthetic.generate("tiny", root, progress=False, **kw)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth") / "tiny"
    manifests = _generate(root, jobs=2)
    return root, manifests, {s: read_manifest(manifests[s]) for s in SPLITS}


@pytest.fixture(scope="module")
def twin(tmp_path_factory):
    """The same preset and seed again, in one process: parallelism must not change anything."""
    root = tmp_path_factory.mktemp("synth") / "twin"
    manifests = _generate(root, jobs=1)
    return root, manifests, {s: read_manifest(manifests[s]) for s in SPLITS}


def _rel(utts, root: Path) -> list[tuple]:
    return [(u.id, Path(u.audio_filepath).resolve().relative_to(root.resolve()).as_posix(), u.text, u.speaker,
             u.duration) for u in utts]


@needs_tts
def test_layout_is_exact_librispeech(corpus):
    root, manifests, _ = corpus
    assert set(manifests) == set(SPLITS)
    assert all(manifests[s] == root / "manifests" / f"{s}.jsonl" for s in SPLITS)
    flacs, trans = set(), []
    for path in root.rglob("*"):
        rel = path.relative_to(root).as_posix()
        if path.is_dir() or rel.split("/")[0] not in SPLITS:
            continue
        if FLAC.match(rel):
            flacs.add(rel)
        else:
            assert TRANS.match(rel), f"unexpected file {rel}"
            trans.append(path)
    listed = set()
    for t in trans:
        for line in t.read_text().splitlines():
            uid, text = line.split(" ", 1)
            assert text == normalize(text) and text
            listed.add((t.parent / f"{uid}.flac").relative_to(root).as_posix())
    assert listed == flacs
    assert (root / "corpus.json").is_file() and not (root / ".partial").exists()


@needs_tts
def test_audio_is_16k_mono_flac_and_durations_match(corpus):
    _, _, utts = corpus
    for split in SPLITS:
        assert 10 <= len(utts[split]) <= 80
        for u in utts[split]:
            info = sf.info(u.audio_filepath)
            assert (info.format, info.subtype, info.samplerate, info.channels) == ("FLAC", "PCM_16", 16000, 1)
            assert u.duration == pytest.approx(info.frames / info.samplerate, abs=1e-6)
            assert 0.5 < u.duration < 12
    wave, _ = sf.read(utts["dev"][0].audio_filepath)
    assert 0.05 < np.abs(wave).max() <= 0.95 + 1e-3
    assert np.abs(wave[:400]).max() < 0.01  # the leading pause: only the noise floor
    assert np.count_nonzero(wave[:400]) > 0


@needs_tts
def test_speakers_and_sentences_are_disjoint_across_splits(corpus):
    _, _, utts = corpus
    speakers = {s: {u.speaker for u in utts[s]} for s in SPLITS}
    texts = {s: {u.text for u in utts[s]} for s in SPLITS}
    for a, b in (("train", "dev"), ("train", "test"), ("dev", "test")):
        assert not speakers[a] & speakers[b]
        assert not texts[a] & texts[b]
    assert all(re.fullmatch(r"\d{4}", spk) for s in SPLITS for spk in speakers[s])


@needs_tts
def test_every_split_has_both_engines_and_heldout_voices_stay_out_of_training(corpus):
    root, _, utts = corpus
    meta = json.loads((root / "corpus.json").read_text())
    for split in SPLITS:
        engines = {meta["speakers"][u.speaker]["engine"] for u in utts[split]}
        assert engines == {"espeak-ng", "flite"}
        assert meta["splits"][split]["utterances"] == len(utts[split])
        assert meta["splits"][split]["hours"] == pytest.approx(sum(u.duration for u in utts[split]) / 3600,
                                                               abs=1e-4)
    variants = {s: {v["variant"] for v in meta["speakers"].values() if v["split"] == s and v["variant"]}
                for s in SPLITS}
    assert variants["dev"] <= set(tts.DEV_VARIANTS)
    assert variants["test"] <= set(tts.TEST_VARIANTS)
    assert not variants["train"] & (set(tts.DEV_VARIANTS) | set(tts.TEST_VARIANTS))
    assert {k: meta[k] for k in ("preset", "seed", "minutes", "version")} == {
        "preset": "tiny", "seed": synthetic.PRESETS["tiny"].seed, "minutes": synthetic.PRESETS["tiny"].train_minutes,
        "version": synthetic.VERSION}


@needs_tts
def test_lm_text_covers_training_sentences_and_no_dev_or_test_sentence(corpus):
    root, _, utts = corpus
    lm = set((root / "lm_text.txt").read_text().splitlines())
    assert {u.text for u in utts["train"]} <= lm
    assert len(lm) > len({u.text for u in utts["train"]})  # the whole training pool, not only what was read
    assert not lm & {u.text for s in ("dev", "test") for u in utts[s]}


@needs_tts
def test_text_uses_only_tokenizer_characters_and_vocab_is_saved(corpus):
    root, _, utts = corpus
    tok = CharTokenizer()
    assert load_tokenizer(root / "vocab.json").vocab == tok.vocab
    for split in SPLITS:
        for u in utts[split]:
            assert not tok.unknown_chars(u.text) and 1 <= len(u.text.split()) <= 8


@needs_tts
def test_same_seed_gives_identical_corpus_whatever_the_number_of_processes(corpus, twin):
    (root_a, _, a), (root_b, _, b) = corpus, twin
    for split in SPLITS:
        assert _rel(a[split], root_a) == _rel(b[split], root_b)
        for ua, ub in zip(a[split], b[split]):
            assert np.array_equal(sf.read(ua.audio_filepath, dtype="int16")[0],
                                  sf.read(ub.audio_filepath, dtype="int16")[0])


@needs_tts
def test_different_seed_gives_a_different_corpus(corpus, tmp_path):
    root_a, _, a = corpus
    manifests = _generate(tmp_path / "other", seed=7)
    b = {s: read_manifest(manifests[s]) for s in SPLITS}
    for split in SPLITS:
        assert [u.text for u in a[split]] != [u.text for u in b[split]]
    assert not {u.text for u in b["train"]} & {u.text for u in b["test"]}


@needs_tts
def test_rerun_skips_a_complete_corpus(corpus, capsys):
    root, manifests, _ = corpus
    before = {p: p.stat().st_mtime_ns for p in manifests.values()}
    assert _generate(root) == manifests
    assert "already complete" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in manifests.values()} == before
    assert data_cli(["synth", "--preset", "tiny", "--root", str(root)]) == 0
    assert str(manifests["dev"]) in capsys.readouterr().out


@needs_tts
def test_incomplete_or_different_corpus_is_regenerated_and_dev_test_ignore_minutes(twin):
    root, manifests, utts = twin
    (root / "corpus.json").unlink()  # as if interrupted before the completion marker
    (root / ".partial" / "train").mkdir(parents=True)
    (root / ".partial" / "train" / "junk.flac").write_bytes(b"half")
    _generate(root, minutes=0.5)
    assert not (root / ".partial").exists()
    assert json.loads((root / "corpus.json").read_text())["minutes"] == 0.5
    again = {s: read_manifest(manifests[s]) for s in SPLITS}
    assert sum(u.duration for u in again["train"]) < 0.6 * sum(u.duration for u in utts["train"])
    for split in ("dev", "test"):
        assert _rel(again[split], root) == _rel(utts[split], root)


@needs_tts
def test_missing_engine_is_a_clear_user_error(tmp_path, monkeypatch):
    binaries = {name: shutil.which(name) for name in ("espeak-ng", "flite")}
    for present, absent in (("flite", "espeak-ng"), ("espeak-ng", "flite")):
        bin_dir = tmp_path / f"only-{present}"
        bin_dir.mkdir()
        os.symlink(binaries[present], bin_dir / present)
        monkeypatch.setenv("PATH", str(bin_dir))
        with pytest.raises(tts.EngineMissing, match=rf"`{absent}` not found on PATH.*apt-get install"):
            _generate(tmp_path / "corpus")
    assert not (tmp_path / "corpus").exists()


def test_bad_arguments_and_foreign_folders_are_refused(tmp_path):
    with pytest.raises(UserError, match="unknown synthetic corpus preset 'huge'.*tiny, demo"):
        synthetic.generate("huge", tmp_path)
    with pytest.raises(UserError, match="--minutes must be > 0"):
        synthetic.generate("tiny", tmp_path, minutes=0)
    (tmp_path / "foreign" / "train").mkdir(parents=True)
    with pytest.raises(UserError, match="not made by `asr-data synth`"):
        synthetic.generate("tiny", tmp_path / "foreign")


def _fake_corpus(root: Path, **settings) -> dict:
    """What `generate` leaves behind, without synthesizing: corpus.json, the manifests, a split folder."""
    key = {"preset": "tiny", "seed": synthetic.PRESETS["tiny"].seed, "minutes": synthetic.PRESETS["tiny"].train_minutes,
           "version": synthetic.VERSION, **settings}
    (root / "manifests").mkdir(parents=True)
    for split in SPLITS:
        (root / split).mkdir()
        (root / "manifests" / f"{split}.jsonl").write_text("")
    (root / ".synthetic").write_text("made by asr-data synth\n")
    (root / "corpus.json").write_text(json.dumps({**key, "splits": {}}))
    return key


@pytest.fixture
def builds(monkeypatch) -> list[dict]:
    """Stand-ins for the engines and the build: records the settings of every build `generate` starts."""
    calls: list[dict] = []

    def build(root: Path, p, key: dict, engines, n_jobs, progress) -> dict:
        calls.append(key)
        (root / "corpus.json").write_text(json.dumps(key))
        return key

    monkeypatch.setattr(synthetic, "find_engines", lambda: {})
    monkeypatch.setattr(synthetic, "_build", build)
    return calls


def test_a_corpus_made_with_other_settings_is_replaced_only_with_force(tmp_path, builds, capsys):
    root = tmp_path / "corpus"
    made = _fake_corpus(root)
    before = (root / "corpus.json").read_text()
    assert data_cli(["synth", "--preset", "tiny", "--root", str(root), "--seed", "7"]) == 2
    err = capsys.readouterr().err
    assert err == (f"asr-data: error: {root} already holds a synthetic corpus made with preset tiny, seed 1234, "
                   "1.5 min, not the preset tiny, seed 7, 1.5 min asked for; `asr-data synth --force` replaces it, "
                   "or choose another root folder\n")
    with pytest.raises(UserError, match=r"made with preset tiny, seed 1234, 1\.5 min, not the preset tiny, seed "
                                        r"1234, 3 min asked for; `asr-data synth --force`"):
        _generate(root, minutes=3)
    assert builds == [] and (root / "corpus.json").read_text() == before
    # the same settings: complete, returned at once (with or without --force)
    assert _generate(root) == {s: root / "manifests" / f"{s}.jsonl" for s in SPLITS}
    assert data_cli(["synth", "--preset", "tiny", "--root", str(root), "--force"]) == 0
    assert "already complete" in capsys.readouterr().err and builds == []
    assert data_cli(["synth", "--preset", "tiny", "--root", str(root), "--seed", "7", "--force"]) == 0
    assert builds == [{**made, "seed": 7}]


def test_a_corpus_of_an_older_version_names_both_versions(tmp_path, builds):
    root = tmp_path / "corpus"
    _fake_corpus(root, version=synthetic.VERSION - 1)
    with pytest.raises(UserError, match=rf"seed 1234, 1\.5 min, corpus version {synthetic.VERSION - 1}, not the "
                                        rf"preset tiny, seed 1234, 1\.5 min, corpus version {synthetic.VERSION} "):
        _generate(root)
    assert builds == []


def test_an_interrupted_build_resumes_without_force(tmp_path, builds):
    root = tmp_path / "corpus"
    _fake_corpus(root, seed=7)
    (root / "corpus.json").unlink()  # interrupted: corpus.json is written last
    (root / ".partial" / "train").mkdir(parents=True)
    _generate(root)
    assert [b["seed"] for b in builds] == [synthetic.PRESETS["tiny"].seed]


@needs_tts
def test_sentences_are_speakable_normalized_and_split_disjointly():
    sentences = load_sentences(max_words=25)
    assert len(sentences) > 5000
    assert len({s.text for s in sentences}) == len(sentences)
    for s in sentences:
        assert s.text == normalize(s.prompt) and 3 <= len(s.text.split()) <= 25
        assert not re.search(r"[0-9\"`]", s.prompt) and not s.text.startswith("'")
    pools = split_sentences(sentences, {"train": 0.9, "dev": 0.05, "test": 0.05}, np.random.default_rng(0))
    sizes = {k: len(v) for k, v in pools.items()}
    assert sum(sizes.values()) == len(sentences) and sizes["dev"] == pytest.approx(0.05 * len(sentences), abs=2)
    assert not {s.text for s in pools["train"]} & {s.text for s in pools["dev"] + pools["test"]}


def test_missing_wordnet_names_the_package(tmp_path):
    with pytest.raises(WordNetMissing, match="apt-get install wordnet-base"):
        load_sentences(tmp_path)
