"""`asr-train`: train the CTC acoustic model. Plain functions and explicit state, icefall-style:

    build() -> load_checkpoint_if_available() -> [train_one_epoch() -> validate() -> save()] -> main()

Shapes: B batch, S samples, T frames, F mel bins, T' frames after subsampling, C classes, U label length.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import signal
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from asr import checkpoint as ckpt_io
from asr import distributed as dist_utils
from asr import hydra_cli, resume, rundir, tb
from asr.config import TrainConfig, to_object
from asr.ctc import ctc_loss
from asr.decoding.greedy import greedy_decode
from asr.errors import UserError
from asr.metrics import score
from asr.optim import lr_at, progress, set_lr
from asr.runtime import Components, build, evaluate_loss_batches, resolve_run_dir, setup_logging

log = logging.getLogger("asr.train")

EXIT_PREEMPTED = 143  # 128 + SIGTERM: what schedulers (SLURM, k8s) expect from a job that checkpointed and left


@dataclass
class TrainState:
    """Counters that a checkpoint must carry to resume exactly."""

    step: int = 0  # optimizer steps attempted (including skipped ones)
    epoch: int = 0  # current epoch (0-based)
    batches_in_epoch: int = 0  # batches of this epoch already consumed (rank-local)
    elapsed_s: float = 0.0  # wall-clock seconds of training so far, validation included (see Budget)
    best_wer: float = math.inf  # best mean greedy dev WER so far
    skipped_steps: int = 0  # steps skipped for a non-finite loss or gradient
    history: list = field(default_factory=list)  # validation results [{step, epoch, split: {wer, cer, loss}}]


class StopRequest:
    """Set by SIGTERM/SIGUSR1 while a run is active: checkpoint at the next step boundary and exit 143."""

    def __init__(self) -> None:
        self.requested = False


@contextlib.contextmanager
def preemption_signals() -> Iterator[StopRequest]:
    """Handle SIGTERM/SIGUSR1 for the duration of a run, then restore the previous handlers (also on error).

    Scoped, not process-wide: `main()` is called in-process by tests and notebooks, and a handler left behind
    is inherited by every process forked later, which then ignores SIGTERM (a forked pool worker that cannot be
    terminated hung our own test suite). Outside the main thread Python cannot install handlers: then only
    `StopRequest.requested` set by the caller stops the run.
    """
    stop = StopRequest()

    def handler(signum, _frame):
        stop.requested = True
        log.warning("received signal %d: will checkpoint at the next step boundary and exit", signum)

    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGUSR1):
            previous[sig] = signal.signal(sig, handler)
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def save(c: Components, state: TrainState, best: bool = False) -> Optional[Path]:
    """Write a rolling checkpoint (rank 0 only); keep the last K; copy to best.pt when `best`."""
    if not c.dist.is_main:
        return None
    sampler_state = c.train_sampler.state_dict(consumed=c.consumed_in_pass)
    blob = {
        "format_version": ckpt_io.FORMAT_VERSION,
        "model": c.raw_model.state_dict(),
        "optimizer": c.optimizer.state_dict(),
        "scaler": c.scaler.state_dict(),
        "sampler": sampler_state,
        "rng": ckpt_io.rng_state(),
        "state": asdict(state),
        "config": OmegaConf.to_container(OmegaConf.structured(c.cfg)),
        "vocab": c.tokenizer.to_dict(),
        "features": asdict(c.cfg.features),
        "versions": ckpt_io.versions(),
    }
    ckpt_dir = c.run_dir / "checkpoints"
    path = ckpt_io.save_atomic(blob, ckpt_io.step_path(ckpt_dir, state.step))
    if best:
        ckpt_io.mark_best(path)
    ckpt_io.prune(ckpt_dir, c.cfg.trainer.keep_last, keep=path)
    return path


def load_checkpoint_if_available(c: Components, state: TrainState) -> TrainState:
    """`trainer.resume`: auto (newest loadable checkpoint in the run dir), never, or an explicit path."""
    found = resume.find(c.cfg.trainer.resume, c.run_dir / "checkpoints")
    if found is None:
        return state
    path, blob = found
    resume.report_changes(path, blob["config"], OmegaConf.to_container(OmegaConf.structured(c.cfg)))
    try:
        c.raw_model.load_state_dict(blob["model"])
    except RuntimeError as exc:  # same settings, different network: a checkpoint of another code version
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        raise ckpt_io.CheckpointError(f"cannot resume from {path}: its weights do not fit this model "
                                      f"({lines[-1] if lines else exc}); start a new run with "
                                      "trainer.resume=never or another run_dir") from None
    c.optimizer.load_state_dict(blob["optimizer"])
    c.scaler.load_state_dict(blob["scaler"])
    c.train_sampler.load_state_dict(blob["sampler"])
    ckpt_io.set_rng_state(blob["rng"])
    state = TrainState(**blob["state"])
    log.info("resumed from %s (step %d, epoch %d, batch %d of the epoch)", path, state.step, state.epoch,
             state.batches_in_epoch)
    return state


def train_step(c: Components, batch, state: TrainState) -> dict[str, Any]:
    """Forward + CTC + backward (+ optimizer step every accum_steps batches). Non-finite -> skip the update."""
    cfg = c.cfg
    batch = batch.to(c.device)
    feats, frames = c.featurizer(batch.waves, batch.wave_lengths)  # (B, T, F), (B,)
    gen = torch.Generator(device="cpu").manual_seed(cfg.trainer.seed * 1_000_003 + state.step)
    feats = c.spec_augment(feats, frames, generator=gen)
    # BatchNorm updates its running statistics in the forward pass: a NaN batch would poison them for good.
    buffers = [b.detach().clone() for b in c.raw_model.buffers()]
    with torch.autocast(device_type=c.device.type, dtype=c.amp_dtype, enabled=c.amp_dtype is not None):
        log_probs, out_lengths = c.model(feats, frames)  # (B, T', C), (B,)
    losses, zeroed = ctc_loss(log_probs, out_lengths, batch.targets, batch.target_lengths)
    loss = losses.mean()
    if not torch.isfinite(loss):
        with torch.no_grad():
            for b, saved in zip(c.raw_model.buffers(), buffers):
                b.copy_(saved)
    c.scaler.scale(loss / cfg.optim.accum_steps).backward()
    out = {"loss": loss.detach(), "zeroed": int(zeroed.sum()), "utts": len(batch),
           "audio_s": float(batch.wave_lengths.sum()) / cfg.features.sample_rate,
           "padding": 1.0 - float(batch.wave_lengths.sum()) / max(batch.waves.numel(), 1)}
    if (state.batches_in_epoch + 1) % cfg.optim.accum_steps:
        return out
    c.scaler.unscale_(c.optimizer)
    grad_norm = torch.nn.utils.clip_grad_norm_(c.model.parameters(), cfg.optim.grad_clip)
    finite = not dist_utils.any_rank(not (torch.isfinite(loss) and torch.isfinite(grad_norm)), c.device)
    if finite:
        c.scaler.step(c.optimizer)
    else:
        log.warning("step %d: non-finite loss (%.4g) or gradient norm (%.4g); update skipped. Batch ids: %s",
                    state.step, float(loss.detach()), float(grad_norm), ", ".join(batch.ids[:20]))
    c.scaler.update()
    c.optimizer.zero_grad(set_to_none=True)
    out.update(grad_norm=float(grad_norm), skipped=not finite, stepped=True)
    return out


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


def train_one_epoch(c: Components, state: TrainState, writer, budget: Optional[Budget] = None,
                    stop: Optional[StopRequest] = None) -> str:
    """One pass over this rank's batches (from the resume position). Returns why it ended:
    "epoch", "max_steps", "time" or "signal" (`stop.requested`, set by SIGTERM/SIGUSR1)."""
    cfg, tr = c.cfg, c.cfg.trainer
    c.model.train()
    c.train_sampler.set_epoch(state.epoch)
    c.train_dataset.set_epoch(state.epoch)
    bar = tqdm(total=len(c.train_sampler), initial=state.batches_in_epoch, desc=f"epoch {state.epoch}",
               disable=not (tr.progress and c.dist.is_main), dynamic_ncols=True, leave=False)
    c.consumed_in_pass = 0  # batches consumed from this pass over the sampler (it adds its resume offset)
    window = {"loss": 0.0, "n": 0, "utts": 0, "audio_s": 0.0, "padding": 0.0, "wait": 0.0, "t0": time.perf_counter()}
    consecutive_bad = 0
    budget = budget or Budget(None, carried=state.elapsed_s)
    t_wait = time.perf_counter()
    for batch in c.train_loader:
        window["wait"] += time.perf_counter() - t_wait
        c.bad_data.update(batch)
        c.consumed_in_pass += 1
        if len(batch) == 0:
            state.batches_in_epoch += 1
            t_wait = time.perf_counter()
            continue
        total_steps = cfg.optim.total_steps or c.estimated_total_steps
        budget.tick(state)
        set_lr(c.optimizer, lr_at(cfg.optim, state.step, progress(
            cfg.optim, state.step, total_steps, state.elapsed_s, budget.seconds)))
        out = train_step(c, batch, state)
        state.batches_in_epoch += 1
        budget.tick(state)
        for k in ("utts", "audio_s", "padding"):
            window[k] += out[k]
        window["loss"] += float(out["loss"]) if math.isfinite(float(out["loss"])) else 0.0
        window["n"] += 1
        if not out.get("stepped"):
            t_wait = time.perf_counter()
            continue
        state.step += 1
        if out["skipped"]:
            state.skipped_steps += 1
            consecutive_bad += 1
            if consecutive_bad >= tr.max_bad_steps:
                raise UserError(f"{consecutive_bad} consecutive steps had a non-finite loss or gradient; lower "
                                f"optim.lr, check the data with `asr-data doctor`, or raise trainer.max_bad_steps")
        else:
            consecutive_bad = 0
        c.log_step(state, out)
        if state.step % tr.log_every == 0:
            _log_window(c, writer, state, window)
        bar.update(1)
        bar.set_postfix(loss=f"{float(out['loss']):.3f}", lr=f"{c.optimizer.param_groups[0]['lr']:.2e}",
                        utt_s=f"{window['utts'] / max(time.perf_counter() - window['t0'], 1e-9):.1f}")
        if tr.checkpoint_every_steps and state.step % tr.checkpoint_every_steps == 0:
            save(c, state)
        if tr.val_every_steps and state.step % tr.val_every_steps == 0:
            validate_and_save(c, state, writer)
            c.model.train()
        reason = _stop_reason(c, state, budget, stop)
        if reason:
            bar.close()
            return reason
        t_wait = time.perf_counter()
    bar.close()
    return "epoch"


def _stop_reason(c: Components, state: TrainState, budget: Budget,
                 stop: Optional[StopRequest]) -> Optional[str]:
    """The same answer on every rank (signals and clocks are per process)."""
    if dist_utils.any_rank(stop is not None and stop.requested, c.device):
        return "signal"
    if c.cfg.trainer.max_steps and state.step >= c.cfg.trainer.max_steps:
        return "max_steps"
    if dist_utils.any_rank(budget.spent(state), c.device):
        return "time"
    return None


def _log_window(c: Components, writer, state: TrainState, w: dict) -> None:
    dt = max(time.perf_counter() - w["t0"], 1e-9)
    sums = dist_utils.all_reduce_sum(torch.tensor([w["loss"], w["n"], w["utts"], w["audio_s"]], device=c.device))
    loss, n, utts, audio = (float(x) for x in sums)
    tb.scalars(writer, {
        tb.TRAIN_LOSS: loss / max(n, 1), tb.TRAIN_LR: c.optimizer.param_groups[0]["lr"],
        tb.TRAIN_GRAD_NORM: c.last_grad_norm, tb.TRAIN_SKIPPED: state.skipped_steps,
        tb.TRAIN_ZEROED: c.zeroed_total, tb.TRAIN_UTT_PER_S: utts / dt, tb.TRAIN_AUDIO_PER_S: audio / dt,
        tb.TRAIN_PADDING: w["padding"] / max(w["n"], 1), tb.TRAIN_DATA_WAIT: min(w["wait"] / dt, 1.0)}, state.step)
    w.update(loss=0.0, n=0, utts=0, audio_s=0.0, padding=0.0, wait=0.0, t0=time.perf_counter())


@torch.no_grad()
def validate(c: Components, state: TrainState, writer) -> dict[str, dict[str, float]]:
    """Dev loss, greedy WER/CER and blank ratio per dev set (reduced across ranks); images for a few utterances."""
    c.model.eval()
    results: dict[str, dict[str, float]] = {}
    for split, (dataset, batches) in c.dev_sets.items():
        ids, refs, hyps = [], [], []
        sums = torch.zeros(4, dtype=torch.float64)  # loss sum, utterances, blank frames, frames
        desc = f"validate {split}"
        for batch, log_probs, out_lengths, losses in evaluate_loss_batches(c, dataset, batches, desc):
            hyp = greedy_decode(log_probs, out_lengths, c.tokenizer)
            ids += batch.ids
            refs += batch.texts
            hyps += hyp
            mask = torch.arange(log_probs.shape[1], device=log_probs.device)[None] < out_lengths[:, None]
            blank = (log_probs.argmax(-1) == 0) & mask
            sums += torch.tensor([float(losses.sum()), len(batch), float(blank.sum()), float(mask.sum())],
                                 dtype=torch.float64)
        word, char, _ = score(ids, refs, hyps)
        counts = torch.tensor([*sums.tolist(), word.errors, word.ref_words, char.errors, char.ref_words],
                              dtype=torch.float64, device=c.device)
        t = dist_utils.all_reduce_sum(counts).cpu().tolist()
        results[split] = {"loss": t[0] / max(t[1], 1), "blank_ratio": t[2] / max(t[3], 1),
                          "wer_greedy": t[4] / max(t[5], 1), "cer_greedy": t[6] / max(t[7], 1)}
        tb.scalars(writer, {tb.dev_tag(split, k): v for k, v in results[split].items()}, state.step)
        if writer is not None:
            tb.text(writer, f"{split}/samples", list(zip(ids, refs, hyps))[: 8], state.step)
            _images(c, split, dataset, writer, state.step)
    return results


def _images(c: Components, split: str, dataset, writer, step: int) -> None:
    """Spectrogram + posteriorgram of the first few dev utterances, the same ones at every validation."""
    n = min(c.cfg.trainer.num_images, len(dataset.utts))
    if n == 0:
        return
    batch = dataset[list(range(n))].to(c.device)
    feats, frames = c.featurizer(batch.waves, batch.wave_lengths)
    log_probs, out_lengths = c.raw_model(feats, frames)
    for i, uid in enumerate(batch.ids):
        tb.utterance_images(writer, f"{split}/posteriorgram_{i}", feats[i, : frames[i]],
                            log_probs[i, : out_lengths[i]], c.tokenizer.vocab, step, uid)


def validate_and_save(c: Components, state: TrainState, writer) -> dict:
    """Validate, record the result in the history, checkpoint (and best.pt when the mean dev WER improved).
    A step already validated (a step-based validation that fell on an epoch end or the last step) is only
    checkpointed again, so the history holds each step once."""
    if state.history and state.history[-1]["step"] == state.step:
        save(c, state)
        return {k: v for k, v in state.history[-1].items() if isinstance(v, dict)}
    results = validate(c, state, writer)
    mean_wer = sum(r["wer_greedy"] for r in results.values()) / max(len(results), 1)
    state.history.append({"step": state.step, "epoch": state.epoch, **results})
    improved = mean_wer < state.best_wer
    if improved:
        state.best_wer = mean_wer
    if c.dist.is_main:
        log.info("step %d epoch %d: %s", state.step, state.epoch, "; ".join(
            f"{s}: loss {r['loss']:.3f} WER {100 * r['wer_greedy']:.2f}% CER {100 * r['cer_greedy']:.2f}%"
            for s, r in results.items()))
    save(c, state, best=improved)
    return results


def main(cfg: DictConfig | TrainConfig | dict) -> dict[str, Any]:
    """Train to completion (or budget / signal). Returns the final metrics; callable from tests.

    Holds the run directory's lock (rank 0) and the SIGTERM/SIGUSR1 handlers for the run only; a full disk
    or a read-only run directory is a one-line UserError naming the path (the checkpoints already written stay
    intact: every write is atomic)."""
    cfg = to_object(cfg, TrainConfig)
    try:
        run_dir = resolve_run_dir(cfg)
        with contextlib.ExitStack() as scope:
            if dist_utils.launched_rank() == 0:
                scope.enter_context(rundir.exclusive(run_dir))
                rundir.remove_stale_temp_files(run_dir / "checkpoints")
            stop = scope.enter_context(preemption_signals())
            return _train(cfg, run_dir, stop)
    except OSError as exc:
        if exc.errno not in hydra_cli.STORAGE_ERRNOS:
            raise
        raise UserError(f"cannot write {exc.filename or cfg.run_dir}: {exc.strerror or exc}; free space or choose a "
                        f"writable run_dir=... (checkpoints already written are complete; the run resumes from "
                        f"them)") from None
    finally:
        dist_utils.teardown()


def _train(cfg: TrainConfig, run_dir: Path, stop: StopRequest) -> dict[str, Any]:
    c = build(cfg, run_dir)
    setup_logging(run_dir, c.dist.is_main)
    state = load_checkpoint_if_available(c, TrainState())
    writer = tb.open_writer(run_dir, c.dist.is_main)
    if c.dist.is_main:
        log.info("model: %s", c.raw_model.describe())
        log.info("run dir: %s; %d training utterances (%.2f h), %d batches/epoch/rank", run_dir,
                 len(c.train_dataset.utts), c.train_hours, len(c.train_sampler))
    budget = Budget(cfg.trainer.max_minutes * 60 if cfg.trainer.max_minutes else None, carried=state.elapsed_s)
    reason = "epoch"
    while state.epoch < cfg.trainer.max_epochs:
        reason = train_one_epoch(c, state, writer, budget, stop)
        if reason == "signal":
            save(c, state)
            log.warning("checkpoint written at step %d; exiting with status %d", state.step, EXIT_PREEMPTED)
            raise SystemExit(EXIT_PREEMPTED)
        if reason != "epoch":
            validate_and_save(c, state, writer)
            break
        state.epoch += 1
        state.batches_in_epoch = 0
        c.train_sampler.set_epoch(state.epoch)
        c.consumed_in_pass = 0
        if state.epoch % cfg.trainer.val_every_epochs == 0 or state.epoch == cfg.trainer.max_epochs:
            validate_and_save(c, state, writer)
        else:
            save(c, state)
    final = state.history[-1] if state.history else {}
    if writer is not None:
        hparams = {"model": cfg.model.name, "data": cfg.data.name, "lr": cfg.optim.lr,
                   "rnn_hidden": cfg.model.rnn_hidden, "rnn_layers": cfg.model.rnn_layers,
                   "subsampling": cfg.model.subsampling, "max_batch_seconds": cfg.data.max_batch_seconds,
                   "precision": cfg.trainer.precision}
        metrics = {f"hparam/{s}_{k}": v for s, r in final.items() if isinstance(r, dict) for k, v in r.items()}
        writer.add_hparams(hparams, metrics or {"hparam/none": 0.0}, run_name="hparams")
        writer.close()
    summary = {"run_dir": str(run_dir), "steps": state.step, "epochs": state.epoch, "stopped_by": reason,
               "best_wer": state.best_wer, "skipped_steps": state.skipped_steps, "history": state.history}
    if c.dist.is_main:
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def _report(summary: dict[str, Any]) -> None:
    last = summary["history"][-1] if summary["history"] else {}
    for split, r in last.items():
        if isinstance(r, dict):
            print(f"{split}: greedy WER {100 * r['wer_greedy']:.2f}%  CER {100 * r['cer_greedy']:.2f}%")
    print(f"run dir: {summary['run_dir']}")


def cli() -> None:
    """Hydra entry point (`asr-train data=... model=... optim.lr=...`)."""
    hydra_cli.run("asr-train", "train", "train_schema", TrainConfig, main, report=_report)


if __name__ == "__main__":
    cli()
