"""Checkpoints: atomic writes, weights_only loading, newest-loadable selection, pruning, averaging, RNG state."""
from __future__ import annotations

import random
import zipfile

import numpy as np
import pytest
import torch

from asr import checkpoint as ck


def _blob(step: int, value: float = 0.0) -> dict:
    return {"format_version": ck.FORMAT_VERSION, "model": {"w": torch.full((2, 2), value), "n": torch.tensor(step)},
            "state": {"step": step}, "versions": ck.versions(), "rng": ck.rng_state()}


def test_round_trip_loads_with_weights_only(tmp_path):
    path = ck.save_atomic(_blob(3, 1.5), ck.step_path(tmp_path, 3))
    blob = ck.load(path)
    assert blob["state"]["step"] == 3 and torch.equal(blob["model"]["w"], torch.full((2, 2), 1.5))
    assert all(isinstance(v, str) for v in blob["versions"].values())


def test_arbitrary_pickles_are_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))
    torch.save({"format_version": ck.FORMAT_VERSION, "x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(ck.CheckpointError, match=r"evil\.pt: it holds Python objects .*weights_only=True"):
        ck.load(tmp_path / "evil.pt")


def test_missing_truncated_and_foreign_files_name_the_file(tmp_path):
    with pytest.raises(ck.CheckpointError, match="not found"):
        ck.load(tmp_path / "nope.pt")
    good = ck.save_atomic(_blob(1), tmp_path / "a.pt")
    (tmp_path / "cut.pt").write_bytes(good.read_bytes()[:100])
    with pytest.raises(ck.CheckpointError, match="cut.pt"):
        ck.load(tmp_path / "cut.pt")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ck.CheckpointError, match="not an asr checkpoint"):
        ck.load(tmp_path / "other.pt")


def test_a_file_that_is_no_checkpoint_is_named_and_said_so(tmp_path):
    good = ck.save_atomic(_blob(1), tmp_path / "a.pt")
    not_torch = {"notes.txt": b"hello world\n", "empty.pt": b"", "cut.pt": good.read_bytes()[:100],
                 "noise.pt": bytes(range(256)) * 4}
    for name, data in not_torch.items():  # torch.load says "101", "" (no message at all) or a miniz error
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ck.CheckpointError) as exc:
            ck.load(tmp_path / name)
        assert str(exc.value) == (f"cannot load checkpoint {tmp_path / name}: not a PyTorch checkpoint file "
                                  "(truncated, corrupt, or another kind of file)")
    with zipfile.ZipFile(tmp_path / "docs.zip", "w") as z:  # a zip archive, but not torch.save's
        z.writestr("readme.txt", "hello")
    with pytest.raises(ck.CheckpointError, match=r"docs\.zip: a zip archive but not a readable PyTorch checkpoint"):
        ck.load(tmp_path / "docs.zip")


def test_an_exported_model_passed_as_a_checkpoint_says_to_use_exported(tmp_path, recwarn):
    """A TorchScript or ONNX file from asr-export given as checkpoint= names the key to use, without torch's
    weights_only noise (a warning and a message about TorchScript archives)."""
    ts = tmp_path / "model.pt"
    torch.jit.trace(torch.nn.Linear(2, 2), torch.zeros(1, 2)).save(str(ts))
    (tmp_path / "model.onnx").write_bytes(b"\x08\x07")  # suffix is enough: torch could never read it
    for path, kind in ((ts, "TorchScript"), (tmp_path / "model.onnx", "ONNX")):
        with pytest.raises(ck.CheckpointError) as exc:
            ck.load(path)
        assert str(exc.value) == (f"{path} is a model exported by asr-export ({kind}), not a training checkpoint: "
                                  f"pass it as exported={path} instead of checkpoint=")
    assert not [w for w in recwarn if "TorchScript" in str(w.message)]


def test_a_checkpoint_truncated_at_any_size_is_corrupt_and_the_older_one_is_resumed(tmp_path):
    """Issue 25: cut between ~5 and ~68 KB, torch's zip reader raised OSError(EINVAL), which was taken for an OS
    failure: the file was not moved aside and the older good checkpoint never tried. Every cut is corruption."""
    blob = _blob(2)
    blob["model"] = {f"w{i}": torch.randn(64, 64, generator=torch.Generator().manual_seed(i)) for i in range(12)}
    good = ck.save_atomic(_blob(1), ck.step_path(tmp_path, 1))
    newest = ck.save_atomic(blob, ck.step_path(tmp_path, 2)).read_bytes()
    for size in range(0, len(newest), 2048):
        ck.step_path(tmp_path, 2).write_bytes(newest[:size])
        with pytest.raises(ck.CorruptCheckpointError, match=r"step-00000002\.pt"):
            ck.load(ck.step_path(tmp_path, 2))
    path, loaded = ck.latest_loadable(tmp_path)
    assert path == good and loaded["state"]["step"] == 1
    assert [p.name for p in tmp_path.iterdir() if "corrupt" in p.name]  # the cut newest was moved aside


def test_an_unreadable_file_is_not_taken_for_a_corrupt_one(tmp_path, monkeypatch):
    path = ck.save_atomic(_blob(1), tmp_path / "a.pt")

    def io_error(*args, **kwargs):
        raise OSError(5, "Input/output error")
    monkeypatch.setattr(torch, "load", io_error)
    monkeypatch.setattr(ck, "_bytes_readable", lambda p: False)  # the disk fails for every reader
    with pytest.raises(ck.CheckpointError, match="cannot read checkpoint .*a.pt: Input/output error") as exc:
        ck.load(path)
    assert not isinstance(exc.value, ck.CorruptCheckpointError)


def test_newest_loadable_skips_a_corrupt_newest_and_ignores_temp_files(tmp_path):
    for s in (1, 2):
        ck.save_atomic(_blob(s), ck.step_path(tmp_path, s))
    ck.step_path(tmp_path, 3).write_bytes(b"garbage")
    (tmp_path / ".step-00000004.pt.abc.tmp").write_bytes(b"half")
    path, blob = ck.latest_loadable(tmp_path)
    assert path == ck.step_path(tmp_path, 2) and blob["state"]["step"] == 2
    assert ck.latest_loadable(tmp_path / "empty") is None


def test_a_failed_write_leaves_the_old_file(tmp_path):
    path = ck.save_atomic(_blob(1, 1.0), tmp_path / "c.pt")

    class Boom:
        def __reduce__(self):
            raise RuntimeError("disk full")
    with pytest.raises(RuntimeError):
        ck.save_atomic({"x": Boom()}, path)
    assert ck.load(path)["state"]["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def test_a_full_disk_is_reported_with_the_checkpoint_path_not_a_file_descriptor(tmp_path, monkeypatch):
    """Issue 25: on a full disk the message said 'cannot write 11' (the temp file's descriptor, os.fdopen's name)."""
    import contextlib
    import errno

    class FullDisk:  # what atomic_write yields on a full disk: an os.fdopen file (its name: the descriptor)
        name = 11

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        def flush(self):
            pass

    monkeypatch.setattr(ck, "atomic_write", lambda path, mode: contextlib.nullcontext(FullDisk()))
    path = tmp_path / "step-00000001.pt"
    with pytest.raises(OSError) as exc:
        ck.save_atomic(_blob(1), path)
    assert exc.value.errno == errno.ENOSPC and exc.value.filename == str(path)


def test_prune_keeps_last_k_and_best_is_a_copy(tmp_path):
    for s in range(1, 6):
        ck.save_atomic(_blob(s), ck.step_path(tmp_path, s))
    best = ck.mark_best(ck.step_path(tmp_path, 2))
    ck.prune(tmp_path, keep_last=2)
    assert [p.name for p in ck.list_checkpoints(tmp_path)] == ["step-00000004.pt", "step-00000005.pt"]
    assert ck.load(best)["state"]["step"] == 2


def test_average_is_the_elementwise_mean_of_float_weights(tmp_path):
    paths = [ck.save_atomic(_blob(s, float(s)), ck.step_path(tmp_path, s)) for s in (1, 2, 3)]
    avg, step = ck.average_checkpoints(paths)
    assert torch.allclose(avg["w"], torch.full((2, 2), 2.0))
    assert step == 3
    assert avg["n"].item() == 3  # integer buffers come from the newest


def test_rng_state_restores_python_numpy_and_torch(tmp_path):
    state = ck.rng_state()
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    ck.save_atomic({"format_version": ck.FORMAT_VERSION, "rng": state}, tmp_path / "r.pt")
    ck.set_rng_state(ck.load(tmp_path / "r.pt")["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first
