"""JSONL manifests, one utterance a line, NeMo-compatible keys.

    {"audio_filepath": "...", "duration": 3.2, "text": "HELLO WORLD", "id": "84-121123-0000", "speaker": "84"}

Relative `audio_filepath`s are resolved against the manifest's folder, so a corpus can be moved as a whole.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

from asr.errors import UserError
from asr.fileio import atomic_write


class ManifestError(UserError):
    """A manifest is missing, empty or malformed; the message names the file and line."""


@dataclass(frozen=True)
class Utterance:
    id: str
    audio_filepath: str
    duration: float
    text: str
    speaker: str = ""


_REQUIRED = ("audio_filepath", "duration", "text")


def _records(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, JSON object) for every non-empty line of the manifest `path`; ManifestError naming path:line."""
    if not path.is_file():
        raise ManifestError(f"manifest not found: {path}")
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ManifestError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
            if not isinstance(rec, dict):
                raise ManifestError(f"{path}:{lineno}: expected a JSON object, got {type(rec).__name__}")
            yield lineno, rec


def _audio_path(path: Path, rec: dict) -> Path:
    """The record's audio file: relative paths are relative to the manifest's folder, and the result is absolute so
    the utterance can be written into a manifest in another folder and still point here."""
    return Path(os.path.abspath(path.parent / str(rec["audio_filepath"])))


def read_manifest(path: str | Path, allow_empty: bool = False) -> list[Utterance]:
    """Parse a JSONL manifest. Raises ManifestError naming `path:line` for any malformed line."""
    path = Path(path)
    utts: list[Utterance] = []
    seen: set[str] = set()
    for lineno, rec in _records(path):
        missing = [k for k in _REQUIRED if k not in rec]
        if missing:
            raise ManifestError(f"{path}:{lineno}: missing key(s) {missing}")
        try:
            duration = float(rec["duration"])
        except (TypeError, ValueError):
            raise ManifestError(f"{path}:{lineno}: duration {rec['duration']!r} is not a number") from None
        if not math.isfinite(duration) or duration < 0:
            raise ManifestError(f"{path}:{lineno}: duration {rec['duration']!r} must be a finite number >= 0")
        if not isinstance(rec["text"], str):
            raise ManifestError(f"{path}:{lineno}: text must be a string, got {rec['text']!r}")
        audio = _audio_path(path, rec)
        utt_id = str(rec.get("id") or audio.stem)
        if utt_id in seen:
            raise ManifestError(f"{path}:{lineno}: duplicate utterance id {utt_id!r}")
        seen.add(utt_id)
        utts.append(Utterance(id=utt_id, audio_filepath=str(audio), duration=duration,
                              text=str(rec["text"]), speaker=str(rec.get("speaker", ""))))
    if not utts and not allow_empty:
        raise ManifestError(f"manifest is empty: {path}")
    return utts


def read_audio_paths(path: str | Path) -> list[str]:
    """The audio files a manifest lists, in order, resolved as `read_manifest` resolves them: transcription needs
    only `audio_filepath` (no duration, no text). ManifestError naming path:line for a line without one."""
    path = Path(path)
    files = []
    for lineno, rec in _records(path):
        if not isinstance(rec.get("audio_filepath"), str):
            raise ManifestError(f"{path}:{lineno}: no \"audio_filepath\" (asr-data writes manifests with one); "
                                f"fix the line or pass the audio files themselves")
        files.append(str(_audio_path(path, rec)))
    return files


def write_manifest(path: str | Path, utts: list[Utterance]) -> None:
    """Write atomically (temp file + rename) so a crash never leaves half a manifest."""
    with atomic_write(path) as f:
        for u in utts:
            f.write(json.dumps(asdict(u), ensure_ascii=False) + "\n")
