"""The one forward path: waves -> log-mel features -> (VTLP / SpecAugment, training only) -> acoustic model ->
log-probs.

Training steps, validation, TensorBoard images, inference and the benchmarks all call `forward`, so precision,
features and augmentation change in one place (as ESPnet's `encode()` and icefall's `compute_loss(is_training)`
serve every caller). Features are computed in fp32; under a reduced precision only the acoustic model runs in
autocast, and the log-probs come back in fp32, since the CTC loss must see fp32 (DESIGN.md, pitfalls).

Shapes: B batch, S samples, T frames, F mel bins, T' frames after subsampling, C vocabulary incl. blank.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

# trainer.precision -> the autocast dtype (None: plain fp32). The one place this map is written.
AMP_DTYPES: dict[str, Optional[torch.dtype]] = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}


def amp_dtype(precision: str) -> Optional[torch.dtype]:
    """The autocast dtype for a precision name ("fp32", "fp16", "bf16")."""
    return AMP_DTYPES[precision]


@dataclass(frozen=True)
class ForwardOutput:
    log_probs: torch.Tensor  # (B, T', C) fp32 log-softmax
    out_lengths: torch.Tensor  # (B,) valid output frames
    feats: torch.Tensor  # (B, T, F) the features the model saw (augmented when training)
    frames: torch.Tensor  # (B,) valid feature frames
    inter_log_probs: Optional[torch.Tensor] = None  # (B, T', C) fp32, an intermediate layer's (intermediate=True)


def forward(featurizer: torch.nn.Module, model: torch.nn.Module, waves: torch.Tensor, wave_lengths: torch.Tensor,
            *, precision: Optional[torch.dtype] = None, augment: Optional[torch.nn.Module] = None,
            generator: Optional[torch.Generator] = None, intermediate: bool = False) -> ForwardOutput:
    """Run (waves (B, S), wave_lengths (B,)) through `featurizer` and `model` (an AcousticModel, or its DDP
    wrapper); both tensors must already be on the model's device.

    precision: autocast dtype for the model (None = fp32; see `amp_dtype`). augment: feature augmentation
    (`asr.model.augment.FeatureAugment`: VTLP, SpecAugment masks), applied when given (training only), drawing its
    random choices from `generator`. intermediate: also return the intermediate CTC layer's log-probs
    (model.inter_ctc_weight > 0; training only).
    """
    feats, frames = featurizer(waves, wave_lengths)  # (B, T, F), (B,)
    if augment is not None:
        feats = augment(feats, frames, generator=generator)
    with torch.autocast(device_type=waves.device.type, dtype=precision, enabled=precision is not None):
        if intermediate:
            log_probs, out_lengths, inter = model(feats, frames, intermediate=True)  # (B, T', C), (B,), (B, T', C)
        else:
            (log_probs, out_lengths), inter = model(feats, frames), None  # (B, T', C), (B,)
    return ForwardOutput(log_probs.float(), out_lengths, feats, frames, None if inter is None else inter.float())
