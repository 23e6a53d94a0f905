"""Which checkpoint a run resumes from, and what changed in the configuration since it was written.

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
from pathlib import Path
from typing import Any, Optional

from asr import checkpoint as ckpt_io
from asr.checkpoint import CheckpointError

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
