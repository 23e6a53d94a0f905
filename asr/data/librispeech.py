"""LibriSpeech (OpenSLR 12): download, verify and extract subsets; write one JSONL manifest per subset.
Also the OpenSLR 11 language models, lexicon and vocabulary.

On-disk layout after `download` (the official archives hold `LibriSpeech/<subset>/...`; the prefix is
stripped so that ROOT is the LibriSpeech folder):

    ROOT/<subset>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac
    ROOT/<subset>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt
    ROOT/<subset>/.complete          in place before the subset appears; `download` then skips it
    ROOT/archives/<subset>.tar.gz    only with keep_archives=True (or while downloading)
    ROOT/manifests/<subset>.jsonl    written by `prepare`
"""
from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

from tqdm import tqdm

from asr.audio import audio_info
from asr.data.download import ArchiveError, download_file, safe_extract
from asr.data.manifest import Utterance, write_manifest
from asr.errors import UserError
from asr.text import CharTokenizer, normalize, save_tokenizer

log = logging.getLogger(__name__)

BASE_URL = "https://www.openslr.org/resources/12"
LM_BASE_URL = "https://www.openslr.org/resources/11"
MARKER = ".complete"
# Files at the top of every official archive, next to the subset folder; kept at ROOT for reference.
_TOP_LEVEL_DOCS = ("README.TXT", "CHAPTERS.TXT", "SPEAKERS.TXT", "BOOKS.TXT", "LICENSE.TXT")


@dataclass(frozen=True)
class Remote:
    """One file on the server and what it must verify against (None = not checked)."""
    name: str
    md5: str | None = None
    size: int | None = None
    sha256: str | None = None


# MD5s of the archives as published in https://www.openslr.org/resources/12/md5sum.txt. Transcribed from two
# independent copies that agree: PaddlePaddle/PaddleSpeech data/librispeech/librispeech.py (MD5_* constants)
# and MyrtleSoftware/myrtlespeech src/myrtlespeech/data/dataset/librispeech.py (data_files[...]["archive_md5"]).
SUBSETS: dict[str, Remote] = {
    "train-clean-100": Remote("train-clean-100.tar.gz", md5="2a93770f6d5c6c964bc36631d331a522"),
    "train-clean-360": Remote("train-clean-360.tar.gz", md5="c0e676e450a7ff2f54aeade5171606fa"),
    "train-other-500": Remote("train-other-500.tar.gz", md5="d1a0fd59409feb2c614ce4d30c387708"),
    "dev-clean": Remote("dev-clean.tar.gz", md5="42e2234ba48799c1f50f24a7926300a1"),
    "dev-other": Remote("dev-other.tar.gz", md5="c8d0bcc9cca99d4f8b62fcc847357931"),
    "test-clean": Remote("test-clean.tar.gz", md5="32fa31d27d2e1cad72775fee3f4849a9"),
    "test-other": Remote("test-other.tar.gz", md5="fb5a50374b501bb3bac4815ee91d3135"),
}

# OpenSLR 11 publishes no md5sum.txt that we could find, and we found no reliable MD5s for these files, so
# none are checked. What is checked instead: the byte sizes from Kaldi's own downloader
# (kaldi-asr/kaldi egs/librispeech/s5/local/download_lm.sh, `sizes[...]`), and for 4-gram.arpa.gz the
# SHA-256 that RWTH's setups pin (rwth-i6/i6_experiments common/datasets/librispeech/language_model.py).
LM_FILES: dict[str, Remote] = {
    "3-gram.pruned.1e-7.arpa.gz": Remote("3-gram.pruned.1e-7.arpa.gz", size=34094057),
    "3-gram.pruned.3e-7.arpa.gz": Remote("3-gram.pruned.3e-7.arpa.gz", size=13654242),
    "4-gram.arpa.gz": Remote("4-gram.arpa.gz", size=1355172078,
                             sha256="f2b2d1507637ddf459d3579159f7e8099ed7d77452ff1059aeeeaea33d274613"),
    "librispeech-lexicon.txt": Remote("librispeech-lexicon.txt", size=5627646),
    "librispeech-vocab.txt": Remote("librispeech-vocab.txt", size=1737588),
}


def _check_names(names, table: dict[str, Remote], what: str, option: str) -> list[str]:
    names = list(names or [])
    if not names:
        raise UserError(f"no {what} given; pass {option} with one or more of: {', '.join(table)}")
    unknown = [n for n in names if n not in table]
    if unknown:
        raise UserError(f"unknown {what} {', '.join(map(repr, unknown))}; {option} takes: {', '.join(table)}")
    return list(dict.fromkeys(names))  # de-duplicated, order kept


def _expect(remote: Remote, checksums: dict[str, str | None] | None) -> Remote:
    """`checksums` (tests, private mirrors) replaces every official expectation for the files it names."""
    for key in (_key(remote), remote.name):
        if checksums and key in checksums:
            return Remote(remote.name, md5=checksums[key])
    return remote


def _key(remote: Remote) -> str:
    return remote.name.removesuffix(".tar.gz")


def _install(archive: Path, subset: str, root: Path, marker_text: str, progress: bool) -> Path:
    """Extract `archive` (holding LibriSpeech/<subset>/...) and move the subset to ROOT/<subset>.

    The marker is written before the final rename, so ROOT/<subset> appears complete or not at all.
    """
    staging = root / f".{subset}.staging"
    for leftover in [staging, *root.glob(f".{staging.name}.*.partial")]:
        shutil.rmtree(leftover, ignore_errors=True)
    safe_extract(archive, staging, progress=progress)
    try:
        src = staging / "LibriSpeech" / subset
        if not src.is_dir():
            raise ArchiveError(f"{archive} has no LibriSpeech/{subset}/ folder; delete it and check that "
                               "--mirror serves the official LibriSpeech archives")
        (src / MARKER).write_text(marker_text)
        out = root / subset
        os.replace(src, out)
        for doc in _TOP_LEVEL_DOCS:
            if (staging / "LibriSpeech" / doc).is_file() and not (root / doc).exists():
                os.replace(staging / "LibriSpeech" / doc, root / doc)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def download(subsets, root: str | Path, mirror: str | None = None, keep_archives: bool = False, *,
             checksums: dict[str, str | None] | None = None, progress: bool = True) -> dict[str, Path]:
    """Download, verify (MD5) and extract LibriSpeech subsets to ROOT/<subset>/. Returns {subset: folder}.

    Idempotent: a subset whose ROOT/<subset>/.complete marker exists is skipped without a request.
    `mirror` replaces the base URL (default openslr.org); `checksums` maps subset (or archive) names to the
    MD5 to expect instead of the official one (None: no check), for tests and private mirrors.
    """
    names = _check_names(subsets, SUBSETS, "LibriSpeech subset(s)", "--subsets")
    root = Path(root)
    base = (mirror or BASE_URL).rstrip("/")
    for subset in names:
        # Our installs appear, marker included, by one rename: an unmarked folder was put there by hand or by
        # another tool. Never delete it; let the user decide.
        out = root / subset
        if out.exists() and not (out / MARKER).is_file():
            raise UserError(f"{out} exists but has no {MARKER} marker (not installed by asr-data); delete it to "
                            f"download {subset} again, or create {out / MARKER} to keep it as it is")
    done: dict[str, Path] = {}
    for subset in names:
        out = root / subset
        if (out / MARKER).is_file():
            log.info("%s: already complete in %s", subset, out)
            done[subset] = out
            continue
        remote = _expect(SUBSETS[subset], checksums)
        url = f"{base}/{remote.name}"
        archive = download_file(url, root / "archives" / remote.name, remote.md5, progress,
                                sha256=remote.sha256, size=remote.size)
        _install(archive, subset, root, f"{url}\nmd5 {remote.md5 or 'unchecked'}\n", progress)
        if not keep_archives:
            archive.unlink()
            try:
                archive.parent.rmdir()
            except OSError:  # not empty: other archives are kept there
                pass
        done[subset] = out
    return done


def download_lm(root: str | Path, files=None, mirror: str | None = None, *,
                checksums: dict[str, str | None] | None = None, progress: bool = True) -> dict[str, Path]:
    """Download OpenSLR 11 files (default: all of LM_FILES) to ROOT/<name>. Returns {name: path}."""
    names = _check_names(files or list(LM_FILES), LM_FILES, "LM file(s)", "--files")
    root = Path(root)
    base = (mirror or LM_BASE_URL).rstrip("/")
    out: dict[str, Path] = {}
    for name in names:
        remote = _expect(LM_FILES[name], checksums)
        out[name] = download_file(f"{base}/{name}", root / name, remote.md5, progress,
                                  sha256=remote.sha256, size=remote.size)
    return out


# ----------------------------------------------------------------------------------------------------
# manifests


def _has_layout(folder: Path) -> bool:
    return next(folder.glob("*/*/*.trans.txt"), None) is not None


def read_tree(subset_dir: str | Path, progress: bool = False) -> list[Utterance]:
    """Utterances of a folder in LibriSpeech layout (<spk>/<chap>/*.trans.txt + FLAC), sorted by id.

    Reads audio headers only (duration = frames / sample rate); text is `asr.text.normalize`d; the speaker
    is the speaker folder's name. `audio_filepath` is absolute.
    """
    subset_dir = Path(subset_dir)
    transcripts = sorted(subset_dir.glob("*/*/*.trans.txt"))
    utts: dict[str, Utterance] = {}
    where: dict[str, Path] = {}
    for trans in tqdm(transcripts, desc=subset_dir.name, unit="chapter", disable=None if progress else True,
                      leave=False):
        speaker = trans.parent.parent.name
        try:
            lines = trans.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as exc:
            raise UserError(f"{trans} is not UTF-8 text ({exc.reason} at byte {exc.start}); "
                            "fix or re-extract it") from None
        for lineno, line in enumerate(lines, 1):
            fields = line.strip().split(maxsplit=1)
            if not fields:
                continue
            uid, text = fields[0], (fields[1] if len(fields) > 1 else "")
            if uid in utts:
                raise UserError(f"utterance id {uid} appears twice: {where[uid]} and {trans}:{lineno}; "
                                "remove one of the lines")
            flac = trans.parent / f"{uid}.flac"
            if not flac.is_file():
                raise UserError(f"utterance {uid} listed in {trans}:{lineno} has no audio file {flac}; "
                                f"delete {subset_dir} and download/extract it again")
            info = audio_info(flac, uid)
            utts[uid] = Utterance(id=uid, audio_filepath=str(flac.resolve()), duration=info.duration,
                                  text=normalize(text), speaker=speaker)
            where[uid] = trans
    return [utts[k] for k in sorted(utts)]


def prepare(root: str | Path, subsets=None, out_dir: str | Path | None = None,
            progress: bool = True) -> dict[str, Path]:
    """Write OUT_DIR/<subset>.jsonl (default OUT_DIR: ROOT/manifests) for each extracted subset, with
    audio paths relative to OUT_DIR.

    `subsets=None` takes every folder of ROOT in LibriSpeech layout. Returns {subset: manifest path}.
    """
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"LibriSpeech root {root} not found; run `asr-data librispeech download --root {root}` first")
    if subsets:
        names = list(dict.fromkeys(subsets))
        # A folder already in ROOT is prepared whatever its name (as without --subsets); a missing one must be
        # an official subset, or the download command suggested below would fail on the same name.
        unknown = [n for n in names if n not in SUBSETS and not (root / n).is_dir()]
        if unknown:
            raise UserError(f"unknown LibriSpeech subset(s) {', '.join(map(repr, unknown))} (not in {root} "
                            f"either); --subsets takes: {', '.join(SUBSETS)}")
        for name in names:
            if not (root / name).is_dir():
                raise UserError(f"subset {name} not found in {root}; run `asr-data librispeech download "
                                f"--root {root} --subsets {name}` first")
    else:
        names = sorted(d.name for d in root.iterdir()
                       if d.is_dir() and not d.name.startswith(".") and _has_layout(d))
        if not names:
            raise UserError(f"no extracted subsets in {root} (expected {root}/<subset>/<speaker>/<chapter>/"
                            f"*.trans.txt); run `asr-data librispeech download --root {root}` first")
    out_dir = Path(out_dir) if out_dir is not None else root / "manifests"
    written: dict[str, Path] = {}
    for name in names:
        utts = read_tree(root / name, progress=progress)
        if not utts:
            raise UserError(f"{root / name} holds no <speaker>/<chapter>/*.trans.txt transcripts; "
                            "is it a LibriSpeech subset folder?")
        path = out_dir / f"{name}.jsonl"
        # Paths relative to the manifest's folder, so ROOT can be moved as a whole (see asr.data.manifest).
        base = out_dir.resolve()
        write_manifest(path, [replace(u, audio_filepath=os.path.relpath(u.audio_filepath, base)) for u in utts])
        written[name] = path
    save_tokenizer(CharTokenizer(), out_dir / "vocab.json")  # the vocabulary travels with the manifests
    return written
