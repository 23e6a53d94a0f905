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


def read_manifest(path: str | Path, allow_empty: bool = False) -> list[Utterance]:
    """Parse a JSONL manifest. Raises ManifestError naming `path:line` for any malformed line."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"manifest not found: {path}")
    utts: list[Utterance] = []
    seen: set[str] = set()
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
            # Absolute, so the utterances can be written into a manifest in another folder and still point here.
            audio = Path(os.path.abspath(path.parent / str(rec["audio_filepath"])))
            utt_id = str(rec.get("id") or audio.stem)
            if utt_id in seen:
                raise ManifestError(f"{path}:{lineno}: duplicate utterance id {utt_id!r}")
            seen.add(utt_id)
            utts.append(Utterance(id=utt_id, audio_filepath=str(audio), duration=duration,
                                  text=str(rec["text"]), speaker=str(rec.get("speaker", ""))))
    if not utts and not allow_empty:
        raise ManifestError(f"manifest is empty: {path}")
    return utts


def write_manifest(path: str | Path, utts: list[Utterance]) -> None:
    """Write atomically (temp file + rename) so a crash never leaves half a manifest."""
    with atomic_write(path) as f:
        for u in utts:
            f.write(json.dumps(asdict(u), ensure_ascii=False) + "\n")
