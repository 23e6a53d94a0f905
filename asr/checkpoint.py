"""Self-describing checkpoints, written atomically, loaded with `weights_only=True`.

A checkpoint holds everything `asr-eval checkpoint=PATH` and an exact resume need: weights, optimizer,
scheduler, grad scaler, sampler position, RNG states, step/epoch, the full config, the vocabulary, the
feature parameters and package versions. Everything in it is a tensor or a plain Python container, so
loading never unpickles arbitrary objects (`torch.load(..., weights_only=True)`).
"""
from __future__ import annotations

import logging
import os
import pickle
import random
import re
import shutil
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from asr.errors import UserError, message_line
from asr.fileio import atomic_write

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
_STEP_FILE = re.compile(r"^step-(\d{8})\.pt$")


class CheckpointError(UserError):
    """A checkpoint is missing, corrupt or from an incompatible version; names the file."""


class CorruptCheckpointError(CheckpointError):
    """The file's content is not a readable checkpoint (truncated, garbage, another kind of file). Only these
    are moved aside on resume; a checkpoint of another format version, or one the OS cannot read, is not."""


def versions() -> dict[str, str]:
    import torchaudio

    import asr
    # str(): torch.__version__ is a TorchVersion object, which weights_only loading refuses to unpickle.
    return {"asr": asr.__version__, "torch": str(torch.__version__), "torchaudio": str(torchaudio.__version__),
            "python": ".".join(map(str, __import__("sys").version_info[:3]))}


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch (CPU + CUDA) RNG states as weights_only-safe values."""
    np_state = np.random.get_state()
    state = {"python": list(random.getstate()[1]) + [random.getstate()[2] or 0],
             "python_version": random.getstate()[0],
             "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                       "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((state["python_version"], tuple(py[:-1]), py[-1] or None))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_atomic(obj: dict[str, Any], path: str | Path) -> Path:
    """torch.save to a temp file in the same folder, fsync, rename: a crash never leaves a half file."""
    with atomic_write(path, "wb") as f:
        sink = _WriteErrors(f, Path(path))
        try:
            torch.save(obj, sink)
        except RuntimeError:
            # torch's zip writer reports a failed write (a full disk) as "unexpected pos ...": raise the OSError
            # that caused it, so callers see ENOSPC and the file name.
            if sink.error is not None:
                raise sink.error from None
            raise
    return path


class _WriteErrors:
    """A binary file wrapper that remembers the OSError of a failed write (see `save_atomic`)."""

    def __init__(self, f, path: Path) -> None:
        self._f = f
        self._path = path  # for messages: the temp file's own name is a file descriptor (os.fdopen)
        self.error: OSError | None = None

    def write(self, data) -> int:
        try:
            return self._f.write(data)
        except OSError as exc:
            if exc.filename is None:
                exc.filename = str(self._path)
            self.error = exc
            raise

    def flush(self) -> None:
        self._f.flush()


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint safely; raises CheckpointError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    exported = _exported_format(path)
    if exported:
        raise CheckpointError(f"{path} is a model exported by asr-export ({exported}), not a training checkpoint: "
                              f"pass it as exported={path} instead of checkpoint=")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except OSError as exc:
        if _bytes_readable(path):  # torch's zip reader raises OSError (EINVAL) on some truncations: the content
            raise CorruptCheckpointError(f"cannot load checkpoint {path}: truncated or corrupt "
                                         f"({exc.strerror or exc})") from None
        # permissions, I/O errors: the file may be fine
        raise CheckpointError(f"cannot read checkpoint {path}: {exc.strerror or exc}") from None
    except Exception as exc:
        # torch.save writes a zip archive. For anything else torch.load's message is noise (a text file gives
        # KeyError "101", an empty or random file an EOFError with no message), so say what the file is not.
        if not zipfile.is_zipfile(path):
            raise CorruptCheckpointError(f"cannot load checkpoint {path}: not a PyTorch checkpoint file (truncated, "
                                  "corrupt, or another kind of file)") from None
        if isinstance(exc, pickle.UnpicklingError):
            raise CorruptCheckpointError(f"cannot load checkpoint {path}: it holds Python objects that safe loading "
                                  "(weights_only=True) refuses; asr checkpoints hold only tensors and plain "
                                  "containers") from None
        why = message_line(exc)
        raise CorruptCheckpointError(f"cannot load checkpoint {path}: a zip archive but not a readable PyTorch "
                              f"checkpoint ({why})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path} is not an asr checkpoint of format {FORMAT_VERSION}")
    return ckpt


def _exported_format(path: Path) -> str | None:
    """"ONNX" or "TorchScript" when `path` is an exported model rather than a checkpoint (by its suffix, or the
    code/ and constants.pkl records torch.jit.save writes into its zip archive), else None."""
    if path.suffix == ".onnx":
        return "ONNX"
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError):
        return None
    return "TorchScript" if any(n.endswith("/constants.pkl") or "/code/" in n for n in names) else None


def _bytes_readable(path: Path) -> bool:
    """True when the OS reads every byte of `path`: a load that then fails is the file's fault, not the OS's."""
    try:
        with open(path, "rb") as f:
            while f.read(1 << 24):
                pass
        return True
    except OSError:
        return False


def run_dir_of(checkpoint_file: Path) -> Path | None:
    """The training run dir a checkpoint file lies in (<run>/checkpoints/<file>), or None outside a run."""
    return checkpoint_file.parent.parent if checkpoint_file.parent.name == "checkpoints" else None


def step_path(ckpt_dir: str | Path, step: int) -> Path:
    return Path(ckpt_dir) / f"step-{step:08d}.pt"


def list_checkpoints(ckpt_dir: str | Path) -> list[Path]:
    """Complete rolling checkpoints, oldest first (temp files never match)."""
    d = Path(ckpt_dir)
    if not d.is_dir():
        return []
    return sorted(p for p in d.iterdir() if _STEP_FILE.match(p.name))


def move_aside(path: Path) -> Path:
    """Rename an unreadable checkpoint to NAME.corrupt (kept for inspection, never deleted); it then no longer
    counts as a rolling checkpoint, so it can neither be resumed from nor block pruning."""
    target = path.with_name(path.name + ".corrupt")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.corrupt{n}")
    os.replace(path, target)
    return target


def corrupt_checkpoints(ckpt_dir: str | Path) -> list[Path]:
    """Checkpoints moved aside by `move_aside`, oldest name first."""
    d = Path(ckpt_dir)
    return sorted(p for p in d.glob("step-*.pt.corrupt*")) if d.is_dir() else []


def latest_loadable(ckpt_dir: str | Path, map_location="cpu",
                    move_corrupt: bool = True) -> tuple[Path, dict[str, Any]] | None:
    """Newest checkpoint that loads. Each corrupt one is moved aside (`move_aside`) with one warning (skipped
    without moving when `move_corrupt` is false: DDP ranks other than 0); any other CheckpointError (another
    format version, unreadable by the OS) stops the search, naming the file.

    Returns None only when the folder holds no checkpoint at all. When it held some and none loads, raises
    CheckpointError naming them: silently starting from step 0 would throw the run's work away.
    """
    for path in reversed(list_checkpoints(ckpt_dir)):
        try:
            return path, load(path, map_location)
        except CorruptCheckpointError as exc:
            if move_corrupt:
                log.warning("%s; moved it aside to %s", exc, move_aside(path).name)
    corrupt = corrupt_checkpoints(ckpt_dir)
    if corrupt:
        names = ", ".join(p.name for p in corrupt[-5:]) + (" ..." if len(corrupt) > 5 else "")
        raise CheckpointError(
            f"trainer.resume=auto: no checkpoint in {ckpt_dir} loads ({names} are unreadable and were moved "
            f"aside); start fresh with trainer.resume=never, or resume from a good copy with trainer.resume=PATH")
    return None


def prune(ckpt_dir: str | Path, keep_last: int, keep: Path | None = None) -> None:
    """Delete all but the newest `keep_last` rolling checkpoints; never `keep` (the one just written)."""
    for path in list_checkpoints(ckpt_dir)[:-keep_last]:
        if keep is None or path.resolve() != Path(keep).resolve():
            path.unlink(missing_ok=True)


def mark_best(path: str | Path) -> Path:
    """Copy a rolling checkpoint to best.pt atomically (copy + rename, so best.pt is never half-written)."""
    path = Path(path)
    best = path.parent / "best.pt"
    with atomic_write(best, "wb") as dst, open(path, "rb") as src:
        shutil.copyfileobj(src, dst)
    return best


def average_checkpoints(paths: list[Path]) -> tuple[dict[str, torch.Tensor], int]:
    """Element-wise mean of the model weights of several checkpoints (integer buffers from the last one), and
    the newest step among them. Each file is read once."""
    if not paths:
        raise CheckpointError("no checkpoints to average")
    avg: dict[str, torch.Tensor] = {}
    step = 0
    for p in paths:
        blob = load(p)
        step = max(step, int(blob.get("state", {}).get("step", 0)))
        sd = blob["model"]
        for k, v in sd.items():
            if v.is_floating_point():
                avg[k] = avg.get(k, torch.zeros_like(v, dtype=torch.float64)) + v.double()
            else:
                avg[k] = v.clone()
    # `sd` is the last checkpoint's: it gives each float tensor its dtype back.
    return {k: (v / len(paths)).to(sd[k].dtype) if sd[k].is_floating_point() else v for k, v in avg.items()}, step
