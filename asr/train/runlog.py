"""Where a training run's records go: TensorBoard, run_dir/metrics.jsonl (one line per step) and the windowed
training scalars, icefall-style: a tracker that sums itself, reduces itself across ranks and writes itself.

Only rank 0 writes; on other ranks `RunLog(enabled=False)` takes part in the reductions and writes nothing.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch

from asr import tb
from asr.errors import storage_error
from asr.train import distributed as dist_utils
from asr.train.state import TrainState
from asr.train.step import StepResult

log = logging.getLogger("asr.train")


@dataclass
class TrainWindow:
    """Sums over the batches since the last TensorBoard write (rank-local until `reduce`)."""

    loss: float = 0.0  # sum of finite batch losses
    batches: int = 0
    utterances: int = 0
    audio_s: float = 0.0
    padding: float = 0.0  # sum of batch padding ratios
    data_wait_s: float = 0.0
    started: float = field(default_factory=time.perf_counter)

    def add(self, r: StepResult, data_wait_s: float) -> None:
        self.loss += r.finite_loss
        self.batches += 1
        self.utterances += r.utterances
        self.audio_s += r.audio_s
        self.padding += r.padding
        self.data_wait_s += data_wait_s

    def utterances_per_s(self) -> float:
        return self.utterances / max(time.perf_counter() - self.started, 1e-9)

    def scalars(self, device: torch.device) -> dict[str, float]:
        """The window's TensorBoard scalars, loss and throughput summed over all ranks."""
        dt = max(time.perf_counter() - self.started, 1e-9)
        sums = dist_utils.all_reduce_sum(torch.tensor([self.loss, self.batches, self.utterances, self.audio_s],
                                                      dtype=torch.float64, device=device))
        loss, batches, utts, audio = (float(x) for x in sums)
        return {tb.TRAIN_LOSS: loss / max(batches, 1), tb.TRAIN_UTT_PER_S: utts / dt, tb.TRAIN_AUDIO_PER_S: audio / dt,
                tb.TRAIN_PADDING: self.padding / max(self.batches, 1),
                tb.TRAIN_DATA_WAIT: min(self.data_wait_s / dt, 1.0)}


def _storage_errors_once(args: threading.ExceptHookArgs) -> None:
    """While a run logs: a full or read-only disk in TensorBoard's writer thread is not printed as a traceback.
    The thread keeps the error and the next write raises it in the training loop, which ends the run with one line
    naming the path (asr.train.loop.main); every other thread exception goes to Python's hook as usual."""
    if args.exc_value is not None and storage_error(args.exc_value) is not None:
        log.debug("%s in %s, reported by the training loop", args.exc_value, args.thread)
        return
    threading.__excepthook__(args)


class RunLog:
    """TensorBoard writer + metrics.jsonl + the current TrainWindow. Use as a context manager (closes files)."""

    def __init__(self, run_dir: Path, device: torch.device, log_every: int, enabled: bool = True):
        self.device = device
        self.log_every = log_every
        self.writer = tb.open_writer(run_dir, enabled)
        self._metrics = open(run_dir / "metrics.jsonl", "a", buffering=1) if enabled else None
        self.window = TrainWindow()
        self.last_grad_norm = 0.0

    def __enter__(self) -> "RunLog":
        self._previous_hook = threading.excepthook
        threading.excepthook = _storage_errors_once
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.close()
        finally:
            threading.excepthook = self._previous_hook

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self._metrics is not None:
            self._metrics.close()
            self._metrics = None

    def batch(self, r: StepResult, data_wait_s: float) -> None:
        self.window.add(r, data_wait_s)
        if r.zeroed:
            log.warning("%d utterance(s) of a batch had an infinite CTC loss and were zeroed", r.zeroed)

    def step(self, state: TrainState, r: StepResult, lr: float) -> None:
        """After an optimizer step: the metrics.jsonl line (the exact-resume test compares these), warnings for
        zeroed utterances, and the window's scalars every `log_every` steps (a collective: all ranks call it)."""
        if r.grad_norm is not None:
            self.last_grad_norm = r.grad_norm
        if self._metrics is not None:
            self._metrics.write(json.dumps({"step": state.step, "epoch": state.epoch, "loss": r.loss, "lr": lr,
                                            "grad_norm": r.grad_norm, "skipped": r.skipped}) + "\n")
        if state.step % self.log_every == 0:
            values = self.window.scalars(self.device)
            values.update({tb.TRAIN_LR: lr, tb.TRAIN_GRAD_NORM: self.last_grad_norm,
                           tb.TRAIN_SKIPPED: state.skipped_steps, tb.TRAIN_ZEROED: state.zeroed_utterances})
            tb.scalars(self.writer, values, state.step)
            self.window = TrainWindow()


def disabled(device: Optional[torch.device] = None, log_every: int = 1 << 30) -> RunLog:
    """A RunLog that writes nothing (tests that drive the loop directly)."""
    return RunLog(Path("."), device or torch.device("cpu"), log_every, enabled=False)
