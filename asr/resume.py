"""Training checkpoints: what a run saves (`save`), which one it resumes from, and what changed since.

`trainer.resume`: "auto" takes the newest checkpoint of the run directory that loads (unreadable ones are moved
aside; if there were checkpoints and none loads, the run stops instead of silently starting over), "never" starts
fresh (earlier checkpoints are moved to a dated folder, not overwritten or deleted), a path resumes from that
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
from asr.config import to_container
from asr.runtime import Components
from asr.state import TrainState

log = logging.getLogger("asr.train")

# Keys that may change between a checkpoint and its resumed run without changing what the weights mean.
_FREE_MODEL_KEYS = {"model.dropout", "model.name"}


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists stay values."""
    if not isinstance(tree, dict):
        return {prefix.rstrip("."): tree}
    out: dict[str, Any] = {}
    for k, v in tree.items():
        out.update(flatten(v, f"{prefix}{k}."))
    return out


def config_changes(saved: dict, now: dict) -> dict[str, tuple[Any, Any]]:
    """{key: (value in the checkpoint, value now)} for every key whose value differs (missing = None)."""
    a, b = flatten(saved), flatten(now)
    return {k: (a.get(k), b.get(k)) for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)}


def refuse_shape_changes(path: Path, changes: dict[str, tuple[Any, Any]]) -> None:
    """Raise CheckpointError (one line) if a change alters the network's shape or the meaning of its inputs."""
    bad = {k: v for k, v in changes.items()
           if (k.startswith("model.") and k not in _FREE_MODEL_KEYS) or k.startswith("features.")}
    if bad:
        what = ", ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in bad.items())
        raise CheckpointError(
            f"cannot resume from {path}: the model or features changed since it was written ({what}); restore "
            f"those settings, or start a new run with trainer.resume=never or another run_dir")


def move_old_checkpoints_aside(ckpt_dir: Path) -> Optional[Path]:
    """trainer.resume=never in a run directory that has checkpoints: keep them, in checkpoints-before-<time>/,
    so the new run neither resumes from them nor prunes its own fresh checkpoints in their favour."""
    if not (ckpt_io.list_checkpoints(ckpt_dir) or ckpt_io.corrupt_checkpoints(ckpt_dir)
            or (ckpt_dir / "best.pt").exists()):
        return None
    target = ckpt_dir.with_name(f"{ckpt_dir.name}-before-{time.strftime('%Y%m%d-%H%M%S')}")
    n = 1
    while target.exists():
        n += 1
        target = target.with_name(f"{target.name.rsplit('.', 1)[0]}.{n}")
    os.replace(ckpt_dir, target)
    log.warning("trainer.resume=never: the earlier checkpoints of this run directory were moved to %s", target)
    return target


def find(mode: str, ckpt_dir: Path) -> Optional[tuple[Path, dict[str, Any]]]:
    """(path, checkpoint) to resume from for `trainer.resume=mode`, or None to start fresh."""
    if mode == "never":
        move_old_checkpoints_aside(ckpt_dir)
        return None
    if mode == "auto":
        return ckpt_io.latest_loadable(ckpt_dir)
    return Path(mode), ckpt_io.load(mode)


def report_changes(path: Path, saved_config: dict, config_now: dict) -> dict[str, tuple[Any, Any]]:
    """Log the configuration keys that changed since `path` was written; refuse shape changes."""
    changes = config_changes(saved_config, config_now)
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
    found = find(run.cfg.trainer.resume, run.run_dir / "checkpoints")
    if found is None:
        return state
    path, blob = found
    report_changes(path, blob["config"], to_container(run.cfg))
    try:
        run.raw_model.load_state_dict(blob["model"])
    except RuntimeError as exc:  # same settings, different network: a checkpoint of another code version
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        raise CheckpointError(f"cannot resume from {path}: its weights do not fit this model "
                              f"({lines[-1] if lines else exc}); start a new run with trainer.resume=never or "
                              "another run_dir") from None
    run.optimizer.load_state_dict(blob["optimizer"])
    run.scaler.load_state_dict(blob["scaler"])
    run.train_sampler.load_state_dict(blob["sampler"])
    ckpt_io.set_rng_state(blob["rng"])
    state = TrainState(**blob["state"])
    log.info("resumed from %s (step %d, epoch %d, batch %d of the epoch)", path, state.step, state.epoch,
             state.batches_in_epoch)
    return state
