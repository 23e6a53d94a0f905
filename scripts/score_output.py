"""Score what `asr-transcribe` wrote against a manifest's transcripts: WER and CER, whatever the output format.

    python scripts/score_output.py --manifest data/synthetic/manifests/test.jsonl --output test.srt
    python scripts/score_output.py --manifest M.jsonl --output out.jsonl     # or .csv, .ctm, a folder of .srt/.vtt

Utterances are matched by the audio file's stem (LibriSpeech names each file by its utterance id); an utterance
of the manifest with no transcript in the output counts as all deletions, and the count is printed. Scoring is
`asr.metrics.score`, the one `asr-eval` uses, so the figures compare with asr-eval's.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import defaultdict
from pathlib import Path

from asr.data.manifest import read_manifest
from asr.metrics import score


def _subtitle_text(doc: str) -> str:
    """The cue texts of an SRT or WebVTT document, in order."""
    lines = []
    for line in doc.splitlines():
        line = line.strip()
        if not line or line == "WEBVTT" or "-->" in line or line.isdigit():
            continue
        lines.append(line)
    return " ".join(lines)


def read_output(path: Path) -> dict[str, str]:
    """utterance id (audio stem) -> transcript, from JSONL, CSV, CTM, one SRT/VTT, or a folder of them."""
    if path.is_dir():
        return {p.stem: _subtitle_text(p.read_text(encoding="utf-8"))
                for p in sorted(path.iterdir()) if p.suffix in (".srt", ".vtt")}
    suffix = path.suffix.lower()
    if suffix in (".srt", ".vtt"):
        folder = path.with_suffix("")
        if folder.is_dir() and not path.is_file():  # several files: one subtitle file each, in a folder
            return read_output(folder)
        return {path.stem: _subtitle_text(path.read_text(encoding="utf-8"))}
    if suffix == ".csv":
        with open(path, newline="", encoding="utf-8") as f:
            return {Path(r["audio"]).stem: r["text"] for r in csv.DictReader(f) if not r.get("error")}
    if suffix == ".ctm":
        words = defaultdict(list)
        for line in path.read_text(encoding="utf-8").splitlines():
            name, _, start, _, word, *_ = line.split()
            words[name].append((float(start), word))
        return {name: " ".join(w for _, w in sorted(ws)) for name, ws in words.items()}
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        if "error" not in rec:
            out[Path(rec["audio"]).stem] = rec["text"]
    return out


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--manifest", type=Path, required=True, help="JSONL manifest with the reference transcripts")
    p.add_argument("--output", type=Path, required=True,
                   help="asr-transcribe's output: .jsonl, .csv, .ctm, .srt/.vtt (or their folder)")
    args = p.parse_args(argv)
    utts = read_manifest(args.manifest)
    hyps = read_output(args.output)
    missing = [u.id for u in utts if u.id not in hyps]
    word, char, _ = score([u.id for u in utts], [u.text for u in utts], [hyps.get(u.id, "") for u in utts])
    print(f"{args.output}: WER {100 * word.rate:.2f}%  CER {100 * char.rate:.2f}%  over {len(utts)} utterances"
          + (f" ({len(missing)} without a transcript, counted as deleted)" if missing else ""))
    return {"wer": word.rate, "cer": char.rate, "missing": len(missing)}


if __name__ == "__main__":
    main(sys.argv[1:])
