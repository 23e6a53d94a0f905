"""`asr-train`: train the CTC acoustic model. Plain functions and explicit state, icefall-style:

    build() -> load_checkpoint_if_available() -> [train_one_epoch() -> validate_and_save()] -> main()

The pieces: the built parts (asr/train/components.py, read-only), the loop's state (asr/train/state.py, carried by checkpoints),
one step (asr/train/step.py), validation (asr/train/validation.py), checkpoints and resume (asr/train/resume.py), records
(asr/train/runlog.py), preemption (asr/train/signals.py), the run directory and its lock (asr/train/rundir.py).
"""
from __future__ import annotations

import contextlib
import json
import logging
import time
from pathlib import Path
from typing import Any, Optional

from omegaconf import DictConfig
from tqdm import tqdm

from asr import hydra_cli, tb
from asr.config import TrainConfig, to_object
from asr.errors import STORAGE_ERRNOS, UserError
from asr.train import distributed as dist_utils
from asr.train import rundir
from asr.train.components import Components, build
from asr.train.optim import lr_at, progress, set_lr
from asr.train.resume import load_checkpoint_if_available, save
from asr.train.runlog import RunLog, disabled
from asr.train.signals import EXIT_PREEMPTED, StopRequest, preemption_signals
from asr.train.state import Budget, TrainState
from asr.train.step import StepResult, train_step
from asr.train.validation import validate_and_save

__all__ = ["main", "cli", "train_one_epoch", "train_step", "TrainState", "StepResult", "preemption_signals"]

log = logging.getLogger("asr.train")


def train_one_epoch(run: Components, state: TrainState, runlog: Optional[RunLog] = None,
                    budget: Optional[Budget] = None, stop: Optional[StopRequest] = None) -> str:
    """One pass over this rank's batches (from the resume position). Returns why it ended:
    "epoch", "max_steps", "time" or "signal" (`stop.requested`, set by SIGTERM/SIGUSR1).

    The loop on one screen (icefall's train_one_epoch): the step, accounting, logging, checkpoints and the
    stop rules in the order they happen, rather than spread over helpers."""
    cfg, trainer = run.cfg, run.cfg.trainer
    runlog = runlog or disabled(run.device)
    budget = budget or Budget(None, carried=state.elapsed_s)
    run.model.train()
    run.train_sampler.set_epoch(state.epoch)
    run.train_dataset.set_epoch(state.epoch)
    if run.feature_augment is not None:
        run.feature_augment.set_epoch(state.epoch)
    bar = tqdm(total=len(run.train_sampler), initial=state.batches_in_epoch, desc=f"epoch {state.epoch}",
               disable=not (trainer.progress and run.dist.is_main), dynamic_ncols=True, leave=False)
    consecutive_bad = 0
    waited_since = time.perf_counter()
    for batch in run.train_loader:
        run.bad_data.update(batch)
        if len(batch) == 0:  # every utterance of the batch was unreadable (counted by bad_data)
            state.batches_in_epoch += 1
            continue
        budget.tick(state)
        done = progress(cfg.optim, state.step, cfg.optim.total_steps or run.estimated_total_steps, state.elapsed_s,
                        budget.seconds)
        set_lr(run.optimizer, lr_at(cfg.optim, state.step, done))
        if run.feature_augment is not None:
            run.feature_augment.set_progress(done)
        data_wait = time.perf_counter() - waited_since  # the loader's time to deliver this batch
        result = train_step(run, batch, state)
        state.batches_in_epoch += 1
        budget.tick(state)
        runlog.batch(result, data_wait)
        state.zeroed_utterances += result.zeroed  # every batch's, accumulated or not
        if result.updated:
            state.step += 1
            consecutive_bad = consecutive_bad + 1 if result.skipped else 0
            state.skipped_steps += result.skipped
            if consecutive_bad >= trainer.max_bad_steps:
                raise UserError(f"{consecutive_bad} consecutive steps had a non-finite loss or gradient; lower "
                                f"optim.lr, check the data with `asr-data doctor`, or raise trainer.max_bad_steps")
            # The postfix before runlog.step, which may start a new window (utt_s would read 0); refresh=False
            # so the bar keeps to its redraw interval (TQDM_MININTERVAL: 30 s when logged to a file).
            bar.set_postfix(loss=f"{result.loss:.3f}", lr=f"{run.optimizer.param_groups[0]['lr']:.2e}",
                            utt_s=f"{runlog.window.utterances_per_s():.1f}", refresh=False)
            bar.update(1)
            runlog.step(state, result, run.optimizer.param_groups[0]["lr"])
            if trainer.checkpoint_every_steps and state.step % trainer.checkpoint_every_steps == 0:
                save(run, state)
            if trainer.val_every_steps and state.step % trainer.val_every_steps == 0:
                validate_and_save(run, state, runlog.writer, budget)
                run.model.train()
            reason = _stop_reason(run, state, budget, stop)
            if reason:
                bar.close()
                return reason
        waited_since = time.perf_counter()
    bar.close()
    return "epoch"


def _stop_reason(run: Components, state: TrainState, budget: Budget, stop: Optional[StopRequest]) -> Optional[str]:
    """The same answer on every rank (signals and clocks are per process)."""
    if dist_utils.any_rank(stop is not None and stop.requested, run.device):
        return "signal"
    if run.cfg.trainer.max_steps and state.step >= run.cfg.trainer.max_steps:
        return "max_steps"
    if dist_utils.any_rank(budget.spent(state), run.device):
        return "time"
    return None


def main(cfg: DictConfig | TrainConfig | dict) -> dict[str, Any]:
    """Train to completion (or budget / signal). Returns the final metrics; callable from tests.

    Holds the run directory's lock (rank 0), and the SIGTERM/SIGUSR1 handlers for this call only, from its first
    line: a signal while the run is still being built (a torchrun launcher killed during start-up) is honoured at
    the first step boundary, on every rank, instead of killing one rank outright and leaving its peers to fail in
    their next collective with no checkpoint. A full disk or a read-only run directory is a one-line UserError
    naming the path (the checkpoints already written stay intact: every write is atomic)."""
    cfg = to_object(cfg, TrainConfig)
    finished = False
    try:
        run_dir = rundir.resolve_run_dir(cfg)
        with contextlib.ExitStack() as scope:
            stop = scope.enter_context(preemption_signals())
            if dist_utils.launched_rank() == 0:
                scope.enter_context(rundir.exclusive(run_dir))
                rundir.remove_stale_temp_files(run_dir / "checkpoints")
            summary = _train(cfg, run_dir, stop)
        finished = True
        return summary
    except OSError as exc:
        if exc.errno not in STORAGE_ERRNOS:
            raise
        raise UserError(f"cannot write {exc.filename or cfg.run_dir}: {exc.strerror or exc}; free space or choose a "
                        f"writable run_dir=... (checkpoints already written are complete; the run resumes from "
                        f"them)") from None
    finally:
        dist_utils.teardown(synchronize=finished)


def _train(cfg: TrainConfig, run_dir: Path, stop: StopRequest) -> dict[str, Any]:
    """Build, resume, run epochs until done, budget or signal; write summary.json. Returns the summary."""
    run = build(cfg, run_dir)
    with rundir.run_logging(run_dir, run.dist.is_main):
        state = load_checkpoint_if_available(run, TrainState())
        if run.dist.is_main:
            log.info("model: %s", run.raw_model.describe())
            sampler = run.train_sampler
            later = len(sampler.rank_batches(max(state.epoch, 1)))  # epoch 0 may be sorted (fewer, fuller batches)
            first = len(sampler.rank_batches(state.epoch))
            per_epoch = f"{first} batches this epoch" + (f", {later} in a shuffled one" if later != first else "")
            log.info("run dir: %s; %d training utterances (%.2f h); per rank %s", run_dir,
                     len(run.train_dataset.utts), run.train_hours, per_epoch)
        budget = Budget(cfg.trainer.max_minutes * 60 if cfg.trainer.max_minutes else None, carried=state.elapsed_s)
        with RunLog(run_dir, run.device, cfg.trainer.log_every, enabled=run.dist.is_main) as runlog:
            reason = _run_epochs(run, state, runlog, budget, stop)
            _write_hparams(cfg, state, runlog)
    summary = {"run_dir": str(run_dir), "steps": state.step, "epochs": state.epoch, "stopped_by": reason,
               "best_wer": state.best_wer, "skipped_steps": state.skipped_steps, "history": state.history}
    if run.dist.is_main:
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def _run_epochs(run: Components, state: TrainState, runlog: RunLog, budget: Budget, stop: StopRequest) -> str:
    """Epochs until trainer.max_epochs, a stop (steps, time: validate and checkpoint) or a signal (checkpoint,
    exit 143). Returns why it ended."""
    cfg = run.cfg
    reason = "epoch"
    while state.epoch < cfg.trainer.max_epochs:
        reason = train_one_epoch(run, state, runlog, budget, stop)
        if reason == "signal":
            budget.tick(state)
            save(run, state)
            log.warning("checkpoint written at step %d; exiting with status %d", state.step, EXIT_PREEMPTED)
            raise SystemExit(EXIT_PREEMPTED)
        if reason != "epoch":
            validate_and_save(run, state, runlog.writer, budget)
            break
        state.start_next_epoch()
        if state.epoch % cfg.trainer.val_every_epochs == 0 or state.epoch == cfg.trainer.max_epochs:
            validate_and_save(run, state, runlog.writer, budget)
        else:
            budget.tick(state)
            save(run, state)
    return reason


def _write_hparams(cfg: TrainConfig, state: TrainState, runlog: RunLog) -> None:
    """The run's hyper-parameters and final dev metrics in TensorBoard's HParams tab."""
    if runlog.writer is None:
        return
    final = state.history[-1] if state.history else {}
    hparams = {"model": cfg.model.name, "data": cfg.data.name, "lr": cfg.optim.lr,
               "rnn_hidden": cfg.model.rnn_hidden, "rnn_layers": cfg.model.rnn_layers,
               "subsampling": cfg.model.subsampling, "max_batch_seconds": cfg.data.max_batch_seconds,
               "precision": cfg.trainer.precision}
    metrics = {f"hparam/{s}_{k}": v for s, r in final.items() if isinstance(r, dict) for k, v in r.items()}
    tb.hparams(runlog.writer, hparams, metrics or {"hparam/none": 0.0})


def _report(summary: dict[str, Any]) -> None:
    """The last validation and the best one (what best.pt holds, and what asr-eval scores by default)."""
    history = summary["history"]
    if history:
        best = min(history, key=lambda h: sum(r["wer_greedy"] for r in h.values() if isinstance(r, dict)))
        for label, h in (("last validation", history[-1]), ("best (best.pt)", best)):
            scores = "; ".join(f"{split} greedy WER {100 * r['wer_greedy']:.2f}% CER {100 * r['cer_greedy']:.2f}%"
                               for split, r in h.items() if isinstance(r, dict))
            print(f"{label}, step {h['step']}: {scores}")
    print(f"stopped by: {summary['stopped_by']}; run dir: {summary['run_dir']}")


def cli() -> None:
    """Hydra entry point (`asr-train data=... model=... optim.lr=...`)."""
    hydra_cli.run("asr-train", "train", "train_schema", TrainConfig, main, report=_report)


if __name__ == "__main__":
    cli()
