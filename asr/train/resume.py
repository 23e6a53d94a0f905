"""Training checkpoints: what a run saves (`save`), which one it resumes from, and what changed since.

`trainer.resume`: "auto" takes the newest checkpoint of the run directory that loads (unreadable ones are moved
aside; if there were checkpoints and none loads, the run stops instead of silently starting over), "never" starts
fresh (the earlier run's records are moved to a dated folder, not overwritten or deleted), a path resumes from that
file. Changes to the configuration are printed key by key; a change that alters the network's shape or what its
inputs mean (`model.*` except dropout and the label, `features.*`) is refused in one line.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Optional

from asr import checkpoint as ckpt_io
from asr.checkpoint import CheckpointError
from asr.config import TrainConfig, to_container
from asr.errors import message_line
from asr.text import tokenizer_from_dict
from asr.train import distributed as dist_utils
from asr.train.components import Components
from asr.train.state import TrainState

log = logging.getLogger("asr.train")

# Keys that may change between a checkpoint and its resumed run without changing what the weights mean: dropout,
# the label, the intermediate CTC loss weight (a term of the objective, not of the network: fine-tuning with
# another weight is a resume like any other changed setting), and how the recurrent weights were initialised.
_FREE_MODEL_KEYS = {"model.dropout", "model.name", "model.inter_ctc_weight", "model.rnn_init"}


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists stay values."""
    if not isinstance(tree, dict):
        return {prefix.rstrip("."): tree}
    out: dict[str, Any] = {}
    for k, v in tree.items():
        out.update(flatten(v, f"{prefix}{k}."))
    return out


def config_changes(saved: dict, now: dict, defaults: Optional[dict] = None) -> dict[str, tuple[Any, Any]]:
    """{key: (value in the checkpoint, value now)} for every key whose value differs (missing = None). A key the
    checkpoint lacks (added to the schema after it was written) is no change while it holds its `defaults` value,
    which is what the older code did, so a run started before an upgrade resumes after it."""
    a, b, d = flatten(saved), flatten(now), flatten(defaults or {})
    return {k: (a.get(k), b.get(k)) for k in sorted(a.keys() | b.keys())
            if a.get(k) != b.get(k) and not (k not in a and k in d and b.get(k) == d[k])}


def refuse_shape_changes(path: Path, changes: dict[str, tuple[Any, Any]]) -> None:
    """Raise CheckpointError (one line) if a change alters the network's shape or the meaning of its inputs."""
    bad = {k: v for k, v in changes.items()
           if (k.startswith("model.") and k not in _FREE_MODEL_KEYS) or k.startswith("features.")}
    if bad:
        what = ", ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in bad.items())
        raise CheckpointError(
            f"cannot resume from {path}: the model or features changed since it was written ({what}); restore "
            f"those settings, or start a new run with trainer.resume=never or another run_dir")


# What a run writes besides train.log (a chronological log that simply goes on): moved aside by resume=never.
RUN_RECORDS = ("checkpoints", "tb", "metrics.jsonl", "summary.json")


def move_earlier_run_aside(run_dir: Path) -> Optional[Path]:
    """trainer.resume=never in a run directory that holds an earlier run: keep its checkpoints, TensorBoard
    events, metrics.jsonl and summary.json in previous-<time>/, so the new run neither resumes from them, nor
    prunes its own fresh checkpoints in their favour, nor mixes its curves with theirs."""
    present = [run_dir / name for name in RUN_RECORDS if (run_dir / name).exists()]
    if not present:
        return None
    target = run_dir / f"previous-{time.strftime('%Y%m%d-%H%M%S')}"
    n = 1
    while target.exists():
        n += 1
        target = run_dir / f"previous-{time.strftime('%Y%m%d-%H%M%S')}.{n}"
    target.mkdir()
    for p in present:
        os.replace(p, target / p.name)
    log.warning("trainer.resume=never: the earlier run's records in %s were moved to %s", run_dir, target)
    return target


def find(mode: str, run_dir: Path, is_main: bool = True) -> Optional[tuple[Path, dict[str, Any]]]:
    """(path, checkpoint) to resume from for `trainer.resume=mode`, or None to start fresh. Only the main
    rank moves files (earlier runs, corrupt checkpoints); other ranks look after it did (see `_find_all_ranks`)."""
    if mode == "never":
        if is_main:
            move_earlier_run_aside(run_dir)
        return None
    if mode == "auto":
        return ckpt_io.latest_loadable(run_dir / "checkpoints", move_corrupt=is_main)
    return Path(mode), ckpt_io.load(mode)


def _find_all_ranks(run: Components) -> Optional[tuple[Path, dict[str, Any]]]:
    """`find` on rank 0 first (it may move files), then on the other ranks; an error on any rank stops all of
    them (a rank left waiting at a collective would hang the job)."""
    mode, is_main = run.cfg.trainer.resume, run.dist.is_main
    found, error = None, None
    if is_main:
        try:
            found = find(mode, run.run_dir, is_main=True)
        except CheckpointError as exc:
            error = exc
    if dist_utils.any_rank(error is not None, run.device):  # also the barrier before the others look
        raise error or CheckpointError("rank 0 could not choose a checkpoint to resume from; see its error")
    return found if is_main else find(mode, run.run_dir, is_main=False)


def report_changes(path: Path, saved_config: dict, config_now: dict) -> dict[str, tuple[Any, Any]]:
    """Log the configuration keys that changed since `path` was written; refuse shape changes."""
    changes = config_changes(saved_config, config_now, to_container(TrainConfig()))
    refuse_shape_changes(path, changes)
    if changes:
        log.warning("resuming from %s with %d changed setting(s): %s", path.name, len(changes),
                    "; ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changes.items()))
    return changes


def save(run: Components, state: TrainState, best: bool = False) -> Optional[Path]:
    """Write a rolling checkpoint (rank 0 only), copy it to best.pt when `best`, keep the last K."""
    if not run.dist.is_main:
        return None
    blob = {
        "format_version": ckpt_io.FORMAT_VERSION,
        "model": run.raw_model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scaler": run.scaler.state_dict(),
        # The loop's own count of consumed batches is the exact position (the loader prefetches ahead of it).
        "sampler": run.train_sampler.state_at(state.epoch, state.batches_in_epoch),
        "rng": ckpt_io.rng_state(),
        "state": asdict(state),
        "config": to_container(run.cfg),
        "vocab": run.tokenizer.to_dict(),
        "features": to_container(run.cfg.features),
        "feature_stats": run.featurizer.stats(),
        "versions": ckpt_io.versions(),
    }
    ckpt_dir = run.run_dir / "checkpoints"
    path = ckpt_io.save_atomic(blob, ckpt_io.step_path(ckpt_dir, state.step))
    if best:
        ckpt_io.mark_best(path)
    ckpt_io.prune(ckpt_dir, run.cfg.trainer.keep_last, keep=path)
    return path


def load_checkpoint_if_available(run: Components, state: TrainState) -> TrainState:
    """`trainer.resume`: auto (newest loadable checkpoint in the run dir), never, or an explicit path."""
    found = _find_all_ranks(run)
    if found is None:
        return state
    path, blob = found
    report_changes(path, blob["config"], to_container(run.cfg))
    if tokenizer_from_dict(blob["vocab"]) != run.tokenizer:
        raise CheckpointError(f"cannot resume from {path}: its output units differ from the ones this run learned "
                              "(the training transcripts changed since it was written, so SentencePiece learned other "
                              "pieces); restore the manifests, or start a new run with trainer.resume=never or "
                              "another run_dir")
    try:
        run.raw_model.load_state_dict(blob["model"])
    except RuntimeError as exc:  # same settings, different network: a checkpoint of another code version
        raise CheckpointError(f"cannot resume from {path}: its weights do not fit this model "
                              f"({message_line(exc, last=True)}); start a new run with trainer.resume=never or "
                              "another run_dir") from None
    run.featurizer.load_stats(blob.get("feature_stats"), path)
    run.optimizer.load_state_dict(blob["optimizer"])
    run.scaler.load_state_dict(blob["scaler"])
    run.train_sampler.load_state_dict(blob["sampler"])
    ckpt_io.set_rng_state(blob["rng"])
    state = TrainState(**blob["state"])
    log.info("resumed from %s (step %d, epoch %d, batch %d of the epoch)", path, state.step, state.epoch,
             state.batches_in_epoch)
    return state
