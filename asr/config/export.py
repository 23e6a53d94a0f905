"""`asr-export`'s schema (configs/export.yaml extends it)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from asr.config.base import Choice, check


class ExportFormat(Choice):
    onnx = "onnx"  # onnxruntime, any language it has bindings for
    torchscript = "torchscript"  # torch.jit.load (C++ libtorch or Python, no project code)


@dataclass
class ExportConfig:
    checkpoint: Optional[str] = None  # required: a checkpoint .pt, or a run dir (its checkpoints/best.pt)
    average_last: int = 1  # N > 1: export the average of the newest N rolling checkpoints
    format: ExportFormat = ExportFormat.onnx  # onnx or torchscript
    out: Optional[str] = None  # model file to write; null = <run dir>/export/model.onnx (or model.pt)
    check_audio: list[str] = field(default_factory=list)  # parity files; empty = 4 of the run's dev utterances
    tolerance: float = 1e-3  # max |log-prob difference| to the PyTorch model on valid frames; above it, nothing written
    streaming_chunk_frames: int = 16  # streaming models: output frames per step of the stateful streaming export

    def __post_init__(self) -> None:
        check(bool(self.checkpoint), "checkpoint", "required; pass checkpoint=PATH (a .pt file or a training run dir)")
        check(self.average_last >= 1, "average_last", f"must be >= 1, got {self.average_last}")
        self.format = ExportFormat.parse(self.format, "format")
        check(self.tolerance > 0, "tolerance", f"must be > 0, got {self.tolerance}")
        check(self.streaming_chunk_frames >= 1, "streaming_chunk_frames",
              f"must be >= 1, got {self.streaming_chunk_frames}")
