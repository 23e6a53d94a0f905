"""The training loop's state: what a checkpoint carries to resume exactly (`TrainState`), and the wall clock the
time budget and the learning-rate schedule share (`Budget`). The built parts (`runtime.Components`) hold none."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Optional


@dataclass
class TrainState:
    """Counters that a checkpoint must carry to resume exactly (saved as a plain dict)."""

    step: int = 0  # optimizer steps attempted (including skipped ones)
    epoch: int = 0  # current epoch (0-based)
    batches_in_epoch: int = 0  # batches of this epoch already consumed (rank-local): the sampler's position
    elapsed_s: float = 0.0  # wall-clock seconds of training so far, validation included (see Budget)
    best_wer: float = math.inf  # best mean greedy dev WER so far
    skipped_steps: int = 0  # steps skipped for a non-finite loss or gradient
    zeroed_utterances: int = 0  # utterances whose CTC loss was infinite and zeroed (counted, see asr/model/ctc.py)
    history: list = field(default_factory=list)  # validation results [{step, epoch, split: {wer, cer, loss}}]

    def start_next_epoch(self) -> None:
        self.epoch += 1
        self.batches_in_epoch = 0


@dataclass
class Budget:
    """`trainer.max_minutes` as one clock for the learning-rate schedule and the stop rule, so a budgeted run
    stops exactly when its schedule reaches the floor: wall-clock seconds of the training loop (validation and
    checkpoints included), carried across resumes in `TrainState.elapsed_s`."""

    seconds: Optional[float]  # None: no budget (the clock still runs, for the logs)
    carried: float = 0.0  # elapsed_s restored from the checkpoint
    started: float = field(default_factory=time.monotonic)

    def tick(self, state: TrainState) -> None:
        state.elapsed_s = self.carried + time.monotonic() - self.started

    def spent(self, state: TrainState) -> bool:
        return self.seconds is not None and state.elapsed_s >= self.seconds
