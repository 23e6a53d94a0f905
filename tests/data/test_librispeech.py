"""LibriSpeech download -> verify -> extract -> prepare, against a small archive in the official layout
served from 127.0.0.1 (see test_download.FileServer)."""
from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import tarfile
from pathlib import Path

import pytest
from conftest import write_librispeech_tree
from test_download import FileServer, _no_proxy  # noqa: F401 (autouse fixture, re-exported)

from asr.data import librispeech
from asr.data.cli import main as cli_main
from asr.data.download import ArchiveError, DownloadError, UnsafeArchiveError
from asr.data.manifest import read_manifest
from asr.errors import UserError
from asr.text import CharTokenizer, load_tokenizer, normalize

TOP_LEVEL = {"README.TXT": "LibriSpeech ASR corpus (test copy)\n", "CHAPTERS.TXT": ";ID |READER|MINUTES\n",
             "SPEAKERS.TXT": ";ID |SEX| SUBSET |MINUTES| NAME\n"}


def build_archive(work: Path, subset: str = "dev-clean", extra: list[tarfile.TarInfo] | None = None,
                  inner: str | None = None) -> tuple[bytes, list[dict]]:
    """A .tar.gz laid out like the official one: LibriSpeech/{README.TXT,...,<subset>/<spk>/<chap>/...}."""
    src = work / "src"
    truth = write_librispeech_tree(src / "LibriSpeech", inner or subset, utts_per_chapter=2)
    for name, text in TOP_LEVEL.items():
        (src / "LibriSpeech" / name).write_text(text)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(src / "LibriSpeech", arcname="LibriSpeech")
        for ti in extra or []:
            payload = b"evil" if ti.isfile() else None
            if payload is not None:
                ti.size = len(payload)
            tar.addfile(ti, io.BytesIO(payload) if payload is not None else None)
    shutil.rmtree(src)
    return buf.getvalue(), truth


@pytest.fixture(scope="module")
def dev_clean(tmp_path_factory) -> tuple[bytes, list[dict]]:
    return build_archive(tmp_path_factory.mktemp("archive"))


@pytest.fixture
def server(dev_clean):
    with FileServer() as srv:
        srv.files["/dev-clean.tar.gz"] = dev_clean[0]
        yield srv


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def test_tables_list_every_subset_and_lm_file():
    assert set(librispeech.SUBSETS) == {"train-clean-100", "train-clean-360", "train-other-500", "dev-clean",
                                        "dev-other", "test-clean", "test-other"}
    sums = [r.md5 for r in librispeech.SUBSETS.values()]
    assert all(re.fullmatch(r"[0-9a-f]{32}", s) for s in sums) and len(set(sums)) == 7
    assert all(r.name == f"{k}.tar.gz" for k, r in librispeech.SUBSETS.items())
    assert set(librispeech.LM_FILES) == {"3-gram.pruned.1e-7.arpa.gz", "3-gram.pruned.3e-7.arpa.gz", "4-gram.arpa.gz",
                                         "librispeech-lexicon.txt", "librispeech-vocab.txt"}


def test_download_extract_prepare(server, dev_clean, tmp_path):
    data, truth = dev_clean
    root = tmp_path / "LibriSpeech"
    out = librispeech.download(["dev-clean"], root, mirror=server.url, checksums={"dev-clean": md5(data)},
                               progress=False)
    assert out == {"dev-clean": root / "dev-clean"}
    assert (root / "dev-clean" / ".complete").is_file()
    assert sorted(p.name for p in root.iterdir()) == sorted(["dev-clean", *TOP_LEVEL])  # no archive, no staging
    assert (root / "README.TXT").read_text() == TOP_LEVEL["README.TXT"]
    assert [r["range"] for r in server.requests] == [None]

    manifests = librispeech.prepare(root, progress=False)
    assert manifests == {"dev-clean": root / "manifests" / "dev-clean.jsonl"}
    first = json.loads(manifests["dev-clean"].read_text().splitlines()[0])
    assert not Path(first["audio_filepath"]).is_absolute()  # relative: the tree can be moved as a whole
    utts = read_manifest(manifests["dev-clean"])
    want = {t["id"]: t for t in truth}
    assert [u.id for u in utts] == sorted(want)
    for u in utts:
        t = want[u.id]
        assert u.text == normalize(t["text"]) == t["text"]
        assert u.duration == pytest.approx(t["frames"] / 16000, abs=1e-9)
        assert u.speaker == t["speaker"]
        spk, chap, _ = u.id.split("-")
        assert Path(u.audio_filepath).resolve() == (root / "dev-clean" / spk / chap / f"{u.id}.flac").resolve()

    # idempotent: a second call makes no request and leaves the tree alone
    assert librispeech.download(["dev-clean"], root, mirror=server.url, progress=False) == out
    assert len(server.requests) == 1


def test_resume_partial_archive_and_keep_it(server, dev_clean, tmp_path):
    data, _ = dev_clean
    root = tmp_path / "ls"
    (root / "archives").mkdir(parents=True)
    half = len(data) // 2
    (root / "archives" / "dev-clean.tar.gz.part").write_bytes(data[:half])
    librispeech.download(["dev-clean"], root, mirror=server.url + "/", keep_archives=True,
                         checksums={"dev-clean": md5(data)}, progress=False)
    assert [r["range"] for r in server.requests] == [f"bytes={half}-"]
    assert (root / "archives" / "dev-clean.tar.gz").read_bytes() == data
    assert (root / "dev-clean" / ".complete").is_file()


def test_wrong_checksum_leaves_nothing(server, tmp_path):
    root = tmp_path / "ls"
    with pytest.raises(DownloadError, match="0{32}"):
        librispeech.download(["dev-clean"], root, mirror=server.url, checksums={"dev-clean": "0" * 32},
                             progress=False)
    assert not (root / "dev-clean").exists()
    assert list((root / "archives").iterdir()) == []  # the .part was deleted


@pytest.mark.parametrize("kind", ["absolute", "dotdot", "symlink"])
def test_malicious_archive_is_refused(tmp_path, kind):
    outside = tmp_path / "outside.txt"
    ti = tarfile.TarInfo({"absolute": str(outside), "dotdot": "LibriSpeech/../../outside.txt",
                          "symlink": "LibriSpeech/dev-clean/etc"}[kind])
    if kind == "symlink":
        ti.type, ti.linkname = tarfile.SYMTYPE, "/etc"
    data, _ = build_archive(tmp_path / "build", extra=[ti])
    root = tmp_path / "ls"
    with FileServer() as srv:
        srv.files["/dev-clean.tar.gz"] = data
        with pytest.raises(UnsafeArchiveError, match=re.escape(ti.name)):
            librispeech.download(["dev-clean"], root, mirror=srv.url, checksums={"dev-clean": md5(data)},
                                 progress=False)
    assert not outside.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["build", "ls"]
    assert sorted(p.name for p in root.iterdir()) == ["archives"]  # no subset, no marker, no staging


def test_archive_without_the_subset_folder(tmp_path):
    data, _ = build_archive(tmp_path / "build", inner="test-clean")
    root = tmp_path / "ls"
    with FileServer() as srv:
        srv.files["/dev-clean.tar.gz"] = data
        with pytest.raises(ArchiveError, match=r"dev-clean.tar.gz has no LibriSpeech/dev-clean/"):
            librispeech.download(["dev-clean"], root, mirror=srv.url, checksums={"dev-clean": None},
                                 progress=False)
    assert sorted(p.name for p in root.iterdir()) == ["archives"]


def test_unknown_subset_is_a_user_error(server, tmp_path):
    with pytest.raises(UserError, match=r"'dev-cleen'.*train-clean-100, .*test-other"):
        librispeech.download(["dev-clean", "dev-cleen"], tmp_path, mirror=server.url, progress=False)
    with pytest.raises(UserError, match="no LibriSpeech subset"):
        librispeech.download([], tmp_path, mirror=server.url, progress=False)
    assert server.requests == []


def test_unmarked_subset_folder_is_never_overwritten(server, tmp_path):
    root = tmp_path / "ls"
    (root / "dev-clean" / "19").mkdir(parents=True)
    with pytest.raises(UserError, match=r"dev-clean exists but has no \.complete marker"):
        librispeech.download(["dev-clean"], root, mirror=server.url, checksums={"dev-clean": None}, progress=False)
    assert (root / "dev-clean" / "19").is_dir() and server.requests == []


def test_download_lm(tmp_path):
    vocab = b"A\nABOUT\nZEBRA\n"
    with FileServer() as srv:
        srv.files["/librispeech-vocab.txt"] = vocab
        got = librispeech.download_lm(tmp_path / "lm", files=["librispeech-vocab.txt"], mirror=srv.url,
                                      checksums={"librispeech-vocab.txt": md5(vocab)}, progress=False)
        assert got["librispeech-vocab.txt"].read_bytes() == vocab
        # without the override the official size (Kaldi's table) applies and this tiny file fails it
        with pytest.raises(DownloadError, match=r"librispeech-vocab.txt failed verification \(size"):
            librispeech.download_lm(tmp_path / "lm2", files=["librispeech-vocab.txt"], mirror=srv.url,
                                    progress=False)
    with pytest.raises(UserError, match="unknown LM file"):
        librispeech.download_lm(tmp_path / "lm", files=["5-gram.arpa.gz"])


def test_prepare_errors(librispeech_tree, tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(UserError, match=re.escape(f"LibriSpeech root {missing} not found; run "
                                                  f"`asr-data librispeech download --root {missing}` first")):
        librispeech.prepare(missing, progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no extracted subsets"):
        librispeech.prepare(tmp_path / "empty", progress=False)
    root, truth = librispeech_tree
    with pytest.raises(UserError, match="subset dev-other not found"):
        librispeech.prepare(root, ["dev-other"], progress=False)
    victim = Path(truth["test-clean"][3]["path"])
    victim.unlink()
    with pytest.raises(UserError, match=re.escape(truth["test-clean"][3]["id"]) + ".*" + re.escape(str(victim))):
        librispeech.prepare(root, ["test-clean"], progress=False)


def test_unknown_subset_names_the_valid_ones_for_prepare_and_download(librispeech_tree, tmp_path, capsys):
    root, _ = librispeech_tree
    valid = ", ".join(librispeech.SUBSETS)
    assert cli_main(["librispeech", "prepare", "--root", str(root), "--subsets", "dev-clean,train-clean-999"]) == 2
    assert capsys.readouterr().err == (f"asr-data: error: unknown LibriSpeech subset(s) 'train-clean-999' (not in "
                                       f"{root} either); --subsets takes: {valid}\n")
    assert not (root / "manifests").exists()  # refused before writing anything
    assert cli_main(["librispeech", "download", "--subsets", "train-clean-999", "--root", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (f"asr-data: error: unknown LibriSpeech subset(s) 'train-clean-999'; "
                                       f"--subsets takes: {valid}\n")
    # an official subset not yet downloaded still gets the download command
    with pytest.raises(UserError, match=r"subset dev-other not found .*--subsets dev-other` first"):
        librispeech.prepare(root, ["dev-other"], progress=False)
    # a folder of another name that is there is prepared, as without --subsets
    shutil.copytree(root / "dev-clean", root / "my-recordings")
    out = librispeech.prepare(root, ["my-recordings"], out_dir=tmp_path / "m", progress=False)
    assert len(read_manifest(out["my-recordings"])) == 12


def test_prepare_discovers_subsets_and_read_tree(librispeech_tree, tmp_path):
    root, truth = librispeech_tree
    (root / "archives").mkdir()
    (root / ".dev-other.staging" / "1" / "2").mkdir(parents=True)  # leftovers are not subsets
    (root / ".dev-other.staging" / "1" / "2" / "1-2.trans.txt").write_text("1-2-0000 X\n")
    out = librispeech.prepare(root, out_dir=tmp_path / "m", progress=False)
    assert out == {s: tmp_path / "m" / f"{s}.jsonl" for s in ("dev-clean", "test-clean")}
    for subset, recs in truth.items():
        utts = read_manifest(out[subset])
        assert [u.id for u in utts] == sorted(r["id"] for r in recs)
        assert {Path(u.audio_filepath).resolve() for u in utts} == {Path(r["path"]).resolve() for r in recs}
    direct = librispeech.read_tree(root / "dev-clean")
    assert all(Path(u.audio_filepath).is_absolute() for u in direct)
    assert [u.duration for u in direct] == [u.duration for u in read_manifest(out["dev-clean"])]
    assert load_tokenizer(tmp_path / "m" / "vocab.json") == CharTokenizer()  # saved with the data


def test_read_tree_rejects_duplicate_ids(librispeech_tree):
    root, truth = librispeech_tree
    first = truth["dev-clean"][0]
    trans = Path(first["path"]).parent / f"{first['speaker']}-{Path(first['path']).parent.name}.trans.txt"
    with trans.open("a") as f:
        f.write(f"{first['id']} AGAIN\n")
    with pytest.raises(UserError, match=f"{first['id']} appears twice"):
        librispeech.read_tree(root / "dev-clean")


def test_cli_errors_are_one_line(server, tmp_path, capsys):
    assert cli_main(["librispeech", "download", "--subsets", "dev-clean,nope", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("asr-data: error: unknown LibriSpeech subset") and "'nope'" in err
    assert cli_main(["librispeech", "prepare", "--root", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not found; run `asr-data librispeech download" in err
    # the test archive cannot match the official MD5: the mirror is named in the error
    root = tmp_path / "ls"
    assert cli_main(["librispeech", "download", "--subsets", "dev-clean", "--root", str(root),
                     "--mirror", server.url]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and librispeech.SUBSETS["dev-clean"].md5 in err and "--mirror" in err
    assert not (root / "dev-clean").exists()


def test_cli_prepare_prints_manifests(librispeech_tree, capsys):
    root, _ = librispeech_tree
    assert cli_main(["librispeech", "prepare", "--root", str(root), "--subsets", "dev-clean"]) == 0
    assert capsys.readouterr().out == f"dev-clean: {root / 'manifests' / 'dev-clean.jsonl'}\n"
