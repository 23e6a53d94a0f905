"""Writing transcripts: JSONL (one object per file), CSV (one row per file), NIST CTM (one line per word), and
SRT / WebVTT subtitles (one file per audio; cues cut at pauses and at a length a reader can follow).

`writer(fmt, out)` returns an object with `write(transcript_dict)` and `close()`; a transcript dict is
`Transcript.to_dict()`, or {"audio", "error"} for a file that failed (JSONL and CSV keep that line, the others
skip it: there is nothing to time).
"""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any, Optional, TextIO

from asr.config import ConfigError

FORMATS = ("jsonl", "csv", "srt", "vtt", "ctm")
_BY_SUFFIX = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv", ".srt": "srt", ".vtt": "vtt", ".ctm": "ctm"}

MAX_CUE_SECONDS = 6.0  # a subtitle cue is cut before it would last longer than this
MAX_CUE_CHARS = 84  # ... or hold more characters than two 42-character lines
PAUSE_SECONDS = 0.8  # ... and at any pause between words at least this long


def pick_format(output_format: Optional[str], output: Optional[str]) -> str:
    """`output_format` if given, else by the output's suffix, else jsonl; an unknown one is refused in one line."""
    if output_format:
        if output_format not in FORMATS:
            raise ConfigError(f"output_format: {output_format!r} is not one of {', '.join(FORMATS)}")
        return output_format
    if not output:
        return "jsonl"
    suffix = Path(output).suffix.lower()
    if suffix not in _BY_SUFFIX:
        raise ConfigError(f"output: cannot tell the format of {output} from its suffix; use one of "
                          f"{', '.join(sorted(_BY_SUFFIX))} or set output_format={'|'.join(FORMATS)}")
    return _BY_SUFFIX[suffix]


def cues(words: list[dict[str, Any]]) -> list[tuple[float, float, str]]:
    """Timed words -> subtitle cues (start s, end s, text); words without times are attached to the cue before."""
    out: list[tuple[float, float, str]] = []
    cur: list[dict[str, Any]] = []

    def flush() -> None:
        timed = [w for w in cur if w["start"] is not None]
        if timed:
            out.append((timed[0]["start"], timed[-1]["end"], " ".join(w["word"] for w in cur)))
        cur.clear()

    for w in words:
        if cur and w["start"] is not None:
            timed = [c for c in cur if c["start"] is not None]
            text_len = sum(len(c["word"]) + 1 for c in cur) + len(w["word"])
            if timed and (w["end"] - timed[0]["start"] > MAX_CUE_SECONDS or text_len > MAX_CUE_CHARS
                          or w["start"] - timed[-1]["end"] >= PAUSE_SECONDS):
                flush()
        cur.append(w)
    flush()
    return out


def _timestamp(seconds: float, sep: str) -> str:
    ms = int(round(seconds * 1000))
    h, rem = divmod(ms, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, ms = divmod(rem, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def subtitles(rec: dict[str, Any], fmt: str) -> str:
    """One transcript as an SRT or WebVTT document."""
    sep = "," if fmt == "srt" else "."
    blocks = []
    for n, (start, end, text) in enumerate(cues(rec.get("words", [])), 1):
        times = f"{_timestamp(start, sep)} --> {_timestamp(max(end, start + 0.001), sep)}"
        blocks.append(f"{n}\n{times}\n{text}\n" if fmt == "srt" else f"{times}\n{text}\n")
    body = "\n".join(blocks)
    return body if fmt == "srt" else "WEBVTT\n\n" + body


def ctm_lines(rec: dict[str, Any]) -> list[str]:
    """NIST CTM: `<file> <channel> <start> <duration> <word> <confidence>`, the file named by its stem."""
    name = Path(rec["audio"]).stem
    return [f"{name} 1 {w['start']:.3f} {max(w['end'] - w['start'], 0.0):.3f} {w['word']} 1.00"
            for w in rec.get("words", []) if w["start"] is not None]


class Writer:
    """Streams transcripts to `out` (a path, or None for stdout) in `fmt`. SRT/VTT with one audio write `out`;
    with several they write one file per audio into a folder named like `out` without its suffix (stdout: refused,
    subtitles need a file per audio)."""

    def __init__(self, fmt: str, out: Optional[str], many: bool):
        self.fmt, self.many = fmt, many
        self.path = Path(out) if out else None
        self.folder: Optional[Path] = None
        self._stream: Optional[TextIO] = None
        self._csv = None
        self._used: set[str] = set()
        if fmt in ("srt", "vtt"):
            if self.path is None:
                raise ConfigError(f"output: {fmt} subtitles are written to files; set output=NAME.{fmt}")
            if many:
                self.folder = self.path.with_suffix("")
                self.folder.mkdir(parents=True, exist_ok=True)
            return
        self._stream = open(self.path, "w", encoding="utf-8", newline="") if self.path else sys.stdout
        if fmt == "csv":
            self._csv = csv.writer(self._stream)
            self._csv.writerow(["audio", "duration", "text", "error"])

    def subtitle_path(self, audio: str) -> Path:
        """`out` itself, or <folder>/<audio's stem>.srt; a stem met before gets -2, -3, ... (talks/a.wav, b/a.wav)."""
        assert self.path is not None
        if self.folder is None:
            return self.path
        stem, n = Path(audio).stem, 1
        name = stem
        while name in self._used:
            n += 1
            name = f"{stem}-{n}"
        self._used.add(name)
        return self.folder / f"{name}.{self.fmt}"

    def write(self, rec: dict[str, Any]) -> None:
        if self.fmt == "jsonl":
            self._stream.write(json.dumps(rec, ensure_ascii=False) + "\n")
        elif self.fmt == "csv":
            self._csv.writerow([rec["audio"], rec.get("duration", ""), rec.get("text", ""), rec.get("error", "")])
        elif "error" in rec:
            return
        elif self.fmt == "ctm":
            for line in ctm_lines(rec):
                self._stream.write(line + "\n")
        else:
            self.subtitle_path(rec["audio"]).write_text(subtitles(rec, self.fmt), encoding="utf-8")
        if self._stream is not None:
            self._stream.flush()

    def close(self) -> None:
        if self._stream is not None and self._stream is not sys.stdout:
            self._stream.close()

    def where(self) -> str:
        if self.folder is not None:
            return f"{self.folder}/ (one .{self.fmt} per file)"
        return str(self.path) if self.path else "stdout"
