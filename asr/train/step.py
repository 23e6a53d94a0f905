"""One training step: the objective (the one loss, asr/model/ctc.py `compute_loss`) + backward, and the optimizer step every
`optim.accum_steps` batches. A non-finite loss or gradient skips the update and leaves every parameter, optimizer
moment and BatchNorm statistic as it was.

Loss normalisation under DDP: each rank's loss is the mean CTC loss (per target character, asr/model/ctc.py) over its own
utterances, and DDP averages gradients across ranks, so the effective loss is the mean over ranks of per-rank
means. Ranks whose batches hold different numbers of utterances weigh each rank equally, not each utterance (as
torchaudio's and icefall's recipes do); `tests/train/test_train_guarantees.py` checks the gradient against one process.

Shapes: B batch, S samples, T' frames after subsampling, C classes, U label length.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from typing import Optional

import torch

from asr.data.dataset import Batch
from asr.model.ctc import compute_loss
from asr.train import distributed as dist_utils
from asr.train.components import Trainee
from asr.train.state import TrainState

log = logging.getLogger("asr.train")


@dataclass(frozen=True)
class StepResult:
    """What one batch's step produced; read by the loop, the metrics log and TensorBoard."""

    loss: float  # mean CTC loss of the batch (nan/inf when non-finite)
    zeroed: int  # utterances whose loss was infinite (CTC-infeasible) and zeroed
    utterances: int  # B
    audio_s: float  # seconds of real (unpadded) audio
    padding: float  # padded fraction of the batch's samples
    updated: bool = False  # this batch completed an accumulation: an optimizer step was taken or skipped
    skipped: bool = False  # that step was skipped (non-finite loss or gradient on some rank)
    grad_norm: Optional[float] = None  # global gradient norm before clipping (when updated)

    @property
    def finite_loss(self) -> float:
        """The loss, or 0 when it is not finite (so window averages stay readable)."""
        return self.loss if math.isfinite(self.loss) else 0.0


def train_step(run: Trainee, batch: Batch, state: TrainState) -> StepResult:
    """Forward + CTC + backward on `batch`; the optimizer step when `state.batches_in_epoch + 1` completes an
    accumulation of `optim.accum_steps` batches. `run`: a training run's Components, or a benchmark's Trainee."""
    cfg = run.cfg
    batch = batch.to(run.device)
    gen = torch.Generator(device="cpu").manual_seed(cfg.trainer.seed * 1_000_003 + state.step)
    # BatchNorm updates its running statistics in the forward pass: a NaN batch would poison them for good.
    buffers = [b.detach().clone() for b in run.raw_model.buffers()]
    objective = compute_loss(run.featurizer, run.model, batch.waves, batch.wave_lengths, batch.targets,
                             batch.target_lengths, inter_ctc_weight=cfg.model.inter_ctc_weight,
                             precision=run.amp_dtype, augment=run.feature_augment, generator=gen)
    loss, zeroed = objective.loss, objective.zeroed
    if not torch.isfinite(loss):
        with torch.no_grad():
            for b, saved in zip(run.raw_model.buffers(), buffers):
                b.copy_(saved)
    run.scaler.scale(loss / cfg.optim.accum_steps).backward()
    real = float(batch.wave_lengths.sum())
    result = StepResult(loss=float(loss.detach()), zeroed=int(zeroed.sum()), utterances=len(batch),
                        audio_s=real / cfg.features.sample_rate, padding=1.0 - real / max(batch.waves.numel(), 1))
    if (state.batches_in_epoch + 1) % cfg.optim.accum_steps:
        return result
    run.scaler.unscale_(run.optimizer)
    grad_norm = torch.nn.utils.clip_grad_norm_(run.model.parameters(), cfg.optim.grad_clip)
    finite = not dist_utils.any_rank(not (torch.isfinite(loss) and torch.isfinite(grad_norm)), run.device)
    if finite:
        run.scaler.step(run.optimizer)
    else:
        log.warning("step %d: non-finite loss (%.4g) or gradient norm (%.4g); update skipped. Batch ids: %s",
                    state.step, result.loss, float(grad_norm), ", ".join(batch.ids[:20]))
    run.scaler.update()
    run.optimizer.zero_grad(set_to_none=True)
    return replace(result, updated=True, skipped=not finite, grad_norm=float(grad_norm))
