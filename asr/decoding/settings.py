"""Decoding settings that travel with a model: the LM and the weights `asr-eval tune_lm=true` chose on dev.

`asr-eval tune_lm=true` records them in `decoding.json` beside the checkpoint it scored (`record`); `asr-export`
copies them, and the LM and lexicon files, into the export's folder and sidecar (`for_export`). Every inference
command then resolves its beam settings the same way (`resolve`): a value given on the command line wins, else
the recorded one, else the built-in default (LM weight 0.5, word score 0), and it says which it used and where it
came from.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional

from asr.config import BeamConfig, ConfigError
from asr.fileio import atomic_write

FILE_NAME = "decoding.json"
DEFAULT_LM_WEIGHT = 0.5
DEFAULT_WORD_SCORE = 0.0


@dataclass
class Recorded:
    """What a model carries: LM files (absolute paths) and the weights tuned for them; `origin` names the file."""

    lm_path: Optional[str]
    lexicon_path: Optional[str]
    lm_weight: float
    word_score: float
    origin: str
    tuned_on: str = ""  # "dev (WER 20.1 %)": the set the weights were chosen on

    def to_dict(self) -> dict[str, Any]:
        return {"lm_path": self.lm_path, "lexicon_path": self.lexicon_path, "lm_weight": self.lm_weight,
                "word_score": self.word_score, "tuned_on": self.tuned_on}

    @classmethod
    def from_dict(cls, d: dict[str, Any], origin: str, base: Path) -> "Recorded":
        """Relative LM paths are relative to `base` (an export's folder)."""
        def where(p: Optional[str]) -> Optional[str]:
            return None if not p else str(p if Path(p).is_absolute() else base / p)
        try:
            return cls(where(d.get("lm_path")), where(d.get("lexicon_path")), float(d["lm_weight"]),
                       float(d["word_score"]), origin, str(d.get("tuned_on", "")))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{origin}: not usable decoding settings ({type(exc).__name__}: {exc}); delete it or "
                              f"run `asr-eval tune_lm=true` again") from None


def record(checkpoint: Path, beam: BeamConfig, tuned_on: str) -> Path:
    """Write the tuned `beam` settings beside `checkpoint` (its folder's decoding.json); returns that path."""
    out = checkpoint.parent / FILE_NAME
    rec = Recorded(str(Path(beam.lm_path).resolve()) if beam.lm_path else None,
                   str(Path(beam.lexicon_path).resolve()) if beam.lexicon_path else None,
                   float(beam.lm_weight if beam.lm_weight is not None else DEFAULT_LM_WEIGHT),
                   float(beam.word_score if beam.word_score is not None else DEFAULT_WORD_SCORE), str(out), tuned_on)
    with atomic_write(out) as f:
        f.write(json.dumps({**rec.to_dict(), "checkpoint": checkpoint.name}, indent=1))
    return out


def for_checkpoint(checkpoint: Path) -> Optional[Recorded]:
    """The settings recorded beside `checkpoint`, or None."""
    path = checkpoint.parent / FILE_NAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read decoding settings ({exc}); delete it or run `asr-eval tune_lm=true` "
                          f"again") from None
    return Recorded.from_dict(data, str(path), path.parent)


def for_export(recorded: Optional[Recorded], export_dir: Path) -> Optional[dict[str, Any]]:
    """Copy the recorded LM (and lexicon) into `export_dir` and return the sidecar's "decoding" entry (paths
    relative to the sidecar), so a shipped export keeps its tuned decoding; None when nothing was recorded."""
    if recorded is None:
        return None
    entry = recorded.to_dict()
    for key in ("lm_path", "lexicon_path"):
        src = entry[key]
        if src:
            if not Path(src).is_file():
                raise ConfigError(f"{recorded.origin}: {key} {src} no longer exists; re-run `asr-eval tune_lm=true` "
                                  f"with beam.{key}=... or delete {recorded.origin}")
            target = export_dir / Path(src).name
            if Path(src).resolve() != target.resolve():
                shutil.copyfile(src, target)
            entry[key] = target.name
    return entry


def resolve(beam: BeamConfig, recorded: Optional[Recorded]) -> tuple[BeamConfig, str]:
    """The beam settings to decode with, and a line saying which and from where.

    Command line first, then `recorded`, then the defaults. Recorded weights apply only to the LM they were tuned
    for: with another beam.lm_path the defaults fill in whatever the command line left open.
    """
    same_lm = recorded is not None and recorded.lm_path is not None and (
        not beam.lm_path or Path(beam.lm_path).resolve() == Path(recorded.lm_path).resolve())
    tuned = recorded if same_lm else None
    lm_path = beam.lm_path or (tuned.lm_path if tuned else None)
    lexicon = beam.lexicon_path or (tuned.lexicon_path if tuned else None)
    weight = beam.lm_weight if beam.lm_weight is not None else tuned.lm_weight if tuned else DEFAULT_LM_WEIGHT
    score = beam.word_score if beam.word_score is not None else tuned.word_score if tuned else DEFAULT_WORD_SCORE
    out = replace(beam, lm_path=lm_path, lexicon_path=lexicon, lm_weight=weight, word_score=score)

    def source(cli_value: Any) -> str:
        return "command line" if cli_value is not None else tuned.origin if tuned else "default"
    if not lm_path:
        return out, "no language model"
    note = f" (tuned on {tuned.tuned_on})" if tuned and tuned.tuned_on else ""
    return out, (f"LM {lm_path} ({source(beam.lm_path)}), lm_weight={weight:g} ({source(beam.lm_weight)}), "
                 f"word_score={score:g} ({source(beam.word_score)}){note}")


def require_lm(beam: BeamConfig, decoders: list[str], prefix: str = "beam") -> None:
    """After `resolve`: beam_lm needs a language model from the command line or recorded with the model."""
    if "beam_lm" in [str(d) for d in decoders] and not beam.lm_path:
        raise ConfigError(f"{prefix}.lm_path: the beam_lm decoder needs a language model and none is recorded with "
                          f"this model; set {prefix}.lm_path=PATH, or run `asr-eval tune_lm=true beam.lm_path=PATH` "
                          f"once to record the LM and its tuned weights beside the checkpoint")
