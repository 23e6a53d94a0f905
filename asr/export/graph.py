"""What gets exported: waveform in, log-probs out, in one module (`Deployable`), plus the sidecar JSON that
describes it (vocabulary, sample rate, features, frame rate), so a runtime needs nothing of this project.

Shapes: B batch, S samples, T' output frames, C vocabulary incl. blank.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from asr.checkpoint import versions
from asr.export.frontend import ConvLogMel
from asr.inference.loading import LoadedModel

SIDECAR_VERSION = 1
INPUTS = ("waves", "lengths")
OUTPUTS = ("log_probs", "out_lengths")


class Deployable(nn.Module):
    """(waves (B, S) fp32 at the model's rate, zero-padded; lengths (B,) int64 samples)
    -> (log_probs (B, T', C) fp32, out_lengths (B,) int64).

    Each utterance's log-probs on its valid frames are what it gets alone (the model masks its padding), so a
    runtime may batch requests of any lengths. Frames past out_lengths are padding.
    """

    def __init__(self, loaded: LoadedModel):
        super().__init__()
        self.frontend = ConvLogMel(loaded.featurizer.cpu())
        self.model = loaded.model.cpu().eval()

    def forward(self, waves: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats, frames = self.frontend(waves, lengths)
        return self.model(feats, frames)


def sidecar(loaded: LoadedModel, fmt: str, model_file: str, parity: dict[str, Any]) -> dict[str, Any]:
    """The JSON written beside an exported model: everything a runtime needs, and where the model came from."""
    cfg = loaded.config
    stored = loaded.tokenizer.to_dict()
    # Pieces also need their SentencePiece model (the symbol list is "vocab"); characters are their "vocab" alone.
    pieces = {"tokenizer": {k: v for k, v in stored.items() if k != "vocab"}} if "kind" in stored else {}
    return {
        "sidecar_version": SIDECAR_VERSION,
        "format": fmt,
        "model_file": model_file,
        "inputs": {"waves": "float32 (batch, samples), zero-padded, mono at sample_rate",
                   "lengths": "int64 (batch,), valid samples per row"},
        "outputs": {"log_probs": "float32 (batch, frames, vocab): CTC log-probabilities, blank = vocab[0]",
                    "out_lengths": "int64 (batch,), valid frames per row"},
        "vocab": stored["vocab"],
        "blank": loaded.tokenizer.blank,
        **pieces,
        "sample_rate": loaded.sample_rate,
        "samples_per_frame": loaded.samples_per_frame,
        "frame_seconds": loaded.frame_seconds,
        "features": _plain(dataclasses.asdict(cfg.features)),
        "model": _plain(dataclasses.asdict(cfg.model)),
        "description": loaded.model.describe(),
        "streaming": None,
        "source": {"checkpoint": str(loaded.path), "step": loaded.step,
                   "averaged": [str(p) for p in loaded.averaged]},
        "parity": parity,
        "versions": versions(),
    }


def _plain(d: dict) -> dict:
    """Enum (Choice) values as their strings, so the JSON reads back as plain data."""
    return {k: (v.value if hasattr(v, "value") else v) for k, v in d.items()}
