"""What a user may name as audio to transcribe, expanded to a list of files.

Each entry is one of: an audio file; a directory (searched recursively for AUDIO_SUFFIXES, sorted); a glob
(`talks/*.flac`, `**` recursive); a manifest (`.jsonl`, one JSON object per line with `audio_filepath`, the
format `asr-data` writes, paths relative to the manifest's folder as in training); or `-`, a list of entries read
from standard input, one per line.

An entry that names nothing that exists is kept as is: the transcription then reports that file as not found
beside the others, like a corrupt one.
"""
from __future__ import annotations

import glob
import sys
from pathlib import Path
from typing import Iterable, TextIO

from asr.config import ConfigError
from asr.data.manifest import read_audio_paths

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".aiff", ".aif", ".au")
MANIFEST_SUFFIXES = (".jsonl",)
_GLOB_CHARS = set("*?[")


def _from_directory(path: Path) -> list[str]:
    return sorted(str(p) for p in path.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())


def expand(entries: Iterable[str], stdin: TextIO | None = None) -> list[str]:
    """Files named by `entries` (see the module docstring), in the order given (a file named twice is run twice)."""
    files: list[str] = []
    for k, entry in enumerate(entries):
        entry = str(entry)
        if entry == "-":
            lines = [ln.strip() for ln in (stdin or sys.stdin) if ln.strip() and ln.strip() != "-"]
            files.extend(expand(lines))
            continue
        p = Path(entry)
        if p.is_dir():
            found = _from_directory(p)
            if not found:
                raise ConfigError(f"audio[{k}]: the folder {entry} holds no audio files "
                                  f"({', '.join(AUDIO_SUFFIXES)})")
            files.extend(found)
        elif p.is_file() and p.suffix.lower() in MANIFEST_SUFFIXES:
            files.extend(read_audio_paths(p))  # resolved as training and asr-eval resolve them
        elif not p.exists() and _GLOB_CHARS & set(entry):
            found = sorted(f for f in glob.glob(entry, recursive=True) if Path(f).is_file())
            if not found:
                raise ConfigError(f"audio[{k}]: the pattern {entry} matches no file")
            files.extend(found)
        else:
            files.append(entry)
    return files
