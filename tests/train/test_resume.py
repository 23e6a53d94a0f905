"""Resuming: unreadable checkpoints moved aside (never a silent restart), changed settings reported, shape changes
refused, a second trainer on the same run directory refused, `trainer.resume=never` keeps the old checkpoints."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest
import torch
from test_train import ROOT, _cfg, _cli, _wait_until

from asr import checkpoint as ckpt_io
from asr.checkpoint import CheckpointError
from asr.data.manifest import read_manifest, write_manifest
from asr.train import resume
from asr.train.loop import main

FAST = {"trainer.checkpoint_every_steps": 2, "trainer.keep_last": 10, "data.dev_max_utterances": 2,
        "trainer.val_every_epochs": 1000, "trainer.max_epochs": 1000}


def _ckpts(run):
    return [p.name for p in ckpt_io.list_checkpoints(run / "checkpoints")]


def test_config_changes_and_shape_rule():
    saved = {"model": {"rnn_hidden": 64, "dropout": 0.1}, "optim": {"lr": 1e-3}, "features": {"n_mels": 80}}
    now = {"model": {"rnn_hidden": 64, "dropout": 0.0}, "optim": {"lr": 2e-3}, "features": {"n_mels": 80}}
    changes = resume.config_changes(saved, now)
    assert changes == {"model.dropout": (0.1, 0.0), "optim.lr": (1e-3, 2e-3)}
    resume.refuse_shape_changes(ckpt_io.step_path("x", 1), changes)  # neither changes the network's shape
    with pytest.raises(CheckpointError, match=r"model\.rnn_hidden 64 -> 128.*trainer\.resume=never"):
        resume.refuse_shape_changes(ckpt_io.step_path("x", 1), {"model.rnn_hidden": (64, 128)})
    with pytest.raises(CheckpointError, match=r"features\.n_mels"):
        resume.refuse_shape_changes(ckpt_io.step_path("x", 1), {"features.n_mels": (80, 40)})


def test_keys_added_since_the_checkpoint_are_no_change_at_their_default():
    """A run written before model.frontend existed resumes after the upgrade; set to anything else, it is a change."""
    saved = {"model": {"rnn_hidden": 64}}
    defaults = {"model": {"rnn_hidden": 256, "frontend": "conv"}}
    assert resume.config_changes(saved, {"model": {"rnn_hidden": 64, "frontend": "conv"}}, defaults) == {}
    assert resume.config_changes(saved, {"model": {"rnn_hidden": 64, "frontend": "vgg"}}, defaults) == {
        "model.frontend": (None, "vgg")}
    assert resume.config_changes(saved, {"model": {"rnn_hidden": 64, "frontend": "conv"}}) == {
        "model.frontend": (None, "conv")}  # without the defaults every new key counts


def test_global_feature_statistics_are_fitted_once_and_travel_with_the_checkpoints(tmp_path, tiny_corpus):
    from asr.inference.loading import load_model
    run = tmp_path / "run"
    main(_cfg(tiny_corpus, run, **FAST, **{"trainer.max_steps": 2, "features.normalize": "corpus"}))
    blob = ckpt_io.load(ckpt_io.list_checkpoints(run / "checkpoints")[-1])
    stats = blob["feature_stats"]
    assert stats["mean"].shape == (80,) and stats["std"].min() > 0 and stats["mean"].abs().max() > 1
    loaded = load_model(run, device="cpu")
    assert torch.equal(loaded.featurizer.mean, stats["mean"]) and torch.equal(loaded.featurizer.std, stats["std"])
    # A resumed run takes the statistics from the checkpoint: even a bad refit could not change them.
    main(_cfg(tiny_corpus, run, **FAST, **{"trainer.max_steps": 4, "features.normalize": "corpus"}))
    newest = ckpt_io.load(ckpt_io.list_checkpoints(run / "checkpoints")[-1])
    assert newest["state"]["step"] == 4 and torch.equal(newest["feature_stats"]["mean"], stats["mean"])


def test_all_checkpoints_unreadable_stops_instead_of_restarting(tmp_path, tiny_corpus):
    """The reported defect: truncate every rolling checkpoint and run again. It used to restart from step 0,
    keep the corrupt higher-numbered files, prune each new checkpoint at once and die in mark_best."""
    run = tmp_path / "run"
    main(_cfg(tiny_corpus, run, **FAST, **{"trainer.max_steps": 6}))
    written = _ckpts(run)  # every 2 steps, and at the end of each 3-batch epoch
    assert {"step-00000002.pt", "step-00000004.pt", "step-00000006.pt"} <= set(written)
    for p in ckpt_io.list_checkpoints(run / "checkpoints"):
        p.write_bytes(p.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=r"no checkpoint .* loads .*step-00000006\.pt.*trainer\.resume=never"):
        main(_cfg(tiny_corpus, run, **FAST, **{"trainer.max_steps": 8}))
    assert _ckpts(run) == []  # moved aside, not deleted
    assert len(ckpt_io.corrupt_checkpoints(run / "checkpoints")) == len(written)
    # Asking again still refuses (the corrupt files are remembered), until the user chooses to start fresh.
    with pytest.raises(CheckpointError, match="trainer.resume=never"):
        main(_cfg(tiny_corpus, run, **FAST, **{"trainer.max_steps": 8}))
    summary = main(_cfg(tiny_corpus, run, **FAST, **{"trainer.max_steps": 4, "trainer.resume": "never"}))
    assert summary["steps"] == 4
    assert {"step-00000002.pt", "step-00000004.pt"} <= set(_ckpts(run)) and max(_ckpts(run)) == "step-00000004.pt"
    assert (run / "checkpoints" / "best.pt").is_file()
    kept = list(run.glob("previous-*"))
    assert len(kept) == 1 and len(list((kept[0] / "checkpoints").glob("*.corrupt"))) == len(written)
    assert (kept[0] / "metrics.jsonl").is_file() and (kept[0] / "tb").is_dir()  # the earlier run's curves too
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]  # the new run's own records only


def test_a_corrupt_newest_checkpoint_is_moved_aside_and_pruning_still_works(tmp_path, tiny_corpus, caplog):
    run = tmp_path / "run"
    opts = {**FAST, "trainer.keep_last": 2}
    main(_cfg(tiny_corpus, run, **opts, **{"trainer.max_steps": 6}))
    newest = ckpt_io.step_path(run / "checkpoints", 6)
    newest.write_bytes(b"garbage")
    summary = main(_cfg(tiny_corpus, run, **opts, **{"trainer.max_steps": 10}))
    assert summary["steps"] == 10
    assert "resumed from" in caplog.text and "step-00000004.pt" in caplog.text
    assert caplog.text.count("moved it aside") == 1
    kept = _ckpts(run)  # the two newest are kept, not the higher-numbered corrupt one
    assert len(kept) == 2 and kept[-1] == "step-00000010.pt" and kept[0] > "step-00000006.pt"
    assert (run / "checkpoints" / "step-00000006.pt.corrupt").read_bytes() == b"garbage"


def test_a_checkpoint_of_another_format_is_named_not_moved_aside(tmp_path, tiny_corpus):
    run = tmp_path / "run"
    main(_cfg(tiny_corpus, run, **FAST, **{"trainer.max_steps": 2}))
    path = ckpt_io.step_path(run / "checkpoints", 2)
    blob = ckpt_io.load(path)
    ckpt_io.save_atomic({**blob, "format_version": ckpt_io.FORMAT_VERSION + 1}, path)
    with pytest.raises(CheckpointError, match=r"step-00000002\.pt is not an asr checkpoint of format"):
        main(_cfg(tiny_corpus, run, **FAST, **{"trainer.max_steps": 4}))
    assert path.is_file() and not ckpt_io.corrupt_checkpoints(run / "checkpoints")


def test_resume_reports_changed_keys_and_refuses_a_model_change(tmp_path, tiny_corpus, caplog):
    run = tmp_path / "run"
    main(_cfg(tiny_corpus, run, **FAST, **{"trainer.max_steps": 2}))
    main(_cfg(tiny_corpus, run, **FAST, **{"trainer.max_steps": 4, "optim.lr": 2e-3}))
    lr = _cfg(tiny_corpus, run).optim.lr
    assert "2 changed setting(s)" in caplog.text and f"optim.lr: {lr!r} -> 0.002" in caplog.text
    assert "trainer.max_steps: 2 -> 4" in caplog.text
    main(_cfg(tiny_corpus, run, **FAST, **{"trainer.max_steps": 6, "optim.lr": 2e-3, "model.inter_ctc_weight": 0.5,
                                           "model.rnn_init": "orthogonal"}))
    weight = _cfg(tiny_corpus, run).model.inter_ctc_weight
    assert f"model.inter_ctc_weight: {weight!r} -> 0.5" in caplog.text  # a loss weight, not the network: resumed
    assert "model.rnn_init: 'uniform' -> 'orthogonal'" in caplog.text  # how the weights began: resumed
    assert json.loads((run / "summary.json").read_text())["steps"] == 6
    with pytest.raises(CheckpointError, match=r"model\.rnn_hidden 64 -> 96"):
        main(_cfg(tiny_corpus, run, **FAST, **{"trainer.max_steps": 8, "model.rnn_hidden": 96}))


PIECES = {"model.tokenizer": "sentencepiece", "model.vocab_size": 64, "model.conv_channels": "[8,8,8]",
          "model.conv_time_strides": "[2,2,2]"}


def test_a_subword_run_keeps_its_pieces_and_refuses_to_resume_with_others(tmp_path, tiny_corpus):
    """Pieces are learned from the training transcripts at every start (deterministically), written to the run
    dir and stored in each checkpoint; the same transcripts resume, edited ones (other pieces) are refused."""
    run = tmp_path / "run"
    main(_cfg(tiny_corpus, run, **FAST, **PIECES, **{"trainer.max_steps": 2}))
    stored = json.loads((run / "tokenizer.json").read_text())
    assert stored["kind"] == "sentencepiece"
    assert stored == ckpt_io.load(ckpt_io.step_path(run / "checkpoints", 2))["vocab"]
    main(_cfg(tiny_corpus, run, **FAST, **PIECES, **{"trainer.max_steps": 4}))
    assert json.loads((run / "summary.json").read_text())["steps"] == 4
    edited = tmp_path / "edited.jsonl"
    utts = read_manifest(tiny_corpus["train"])
    write_manifest(edited, [dataclasses.replace(u, text=f"{u.text} ZYZZYVA") for u in utts])
    with pytest.raises(CheckpointError, match="output units differ .* trainer.resume=never"):
        main(_cfg(tiny_corpus, run, **FAST, **PIECES, **{"trainer.max_steps": 6,
                                                          "data.train_manifests": f"[{edited}]"}))


def test_weights_that_do_not_fit_are_one_line(tmp_path, tiny_corpus):
    run = tmp_path / "run"
    main(_cfg(tiny_corpus, run, **FAST, **{"trainer.max_steps": 2}))
    path = ckpt_io.step_path(run / "checkpoints", 2)
    blob = ckpt_io.load(path)
    first = next(iter(blob["model"]))
    blob["model"][first] = torch.zeros(3, 3)  # as if written by a different version of the network code
    ckpt_io.save_atomic(blob, path)
    with pytest.raises(CheckpointError, match=r"weights do not fit this model .*size mismatch") as exc:
        main(_cfg(tiny_corpus, run, **FAST, **{"trainer.max_steps": 4}))
    assert "\n" not in str(exc.value)


def test_cli_errors_are_one_line_exit_2(tmp_path, tiny_corpus):
    """A model change on resume and a typo added with '+' (it used to train the full run and exit 0)."""
    from conftest import tiny_train_overrides
    run = tmp_path / "run"
    main(_cfg(tiny_corpus, run, **FAST, **{"trainer.max_steps": 2}))
    for extra, expected in ((["model.rnn_hidden=96"], "model.rnn_hidden 64 -> 96"),
                            (["+trainer.max_step=2"], "trainer.max_step: unknown key")):
        p = _cli([*tiny_train_overrides(tiny_corpus, run, **FAST), *extra])
        out = p.stdout.read()
        assert p.wait(timeout=120) == 2, out
        assert out.count("\n") == 1 and out.startswith("asr-train: error: ") and expected in out, out


def test_second_trainer_on_the_same_run_dir_is_refused(tmp_path, tiny_corpus):
    from conftest import tiny_train_overrides
    run = tmp_path / "run"
    args = tiny_train_overrides(tiny_corpus, run, **{**FAST, "trainer.max_steps": 100_000})
    first, second = _cli(args), None
    try:
        _wait_until(lambda: (run / "metrics.jsonl").exists(), first, "the first logged step")
        second = _cli(args)
        try:  # bounded: a trainer that takes no lock would train on beside the first one
            out, _ = second.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            pytest.fail("a second trainer on the same run directory was still running after 20 s: the run-directory "
                        "lock was not taken (asr/train/rundir.py exclusive(), called by asr.train.loop.main)")
        assert second.returncode == 2, out
        assert f"PID {first.pid}" in out and "in use" in out and out.count("\n") == 1
    finally:
        for proc in (first, second):
            if proc is not None:
                proc.kill()
                proc.wait()
    # The first run's files are untouched by the refused second one.
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps))


def test_killed_mid_write_temp_files_are_cleaned_on_resume(tmp_path, tiny_corpus):
    run = tmp_path / "run"
    main(_cfg(tiny_corpus, run, **FAST, **{"trainer.max_steps": 2}))
    stale = run / "checkpoints" / ".step-00000004.pt.k1ll3d.tmp"
    stale.write_bytes(b"half")
    main(_cfg(tiny_corpus, run, **FAST, **{"trainer.max_steps": 4}))
    assert not stale.exists()
    assert not list((run / "checkpoints").glob(".*.tmp"))


def test_no_hydra_folder_outside_the_run_dir(tmp_path, tiny_corpus):
    from conftest import tiny_train_overrides
    run = tmp_path / "elsewhere"
    r = subprocess.run([sys.executable, "-m", "asr.train.loop",
                        *tiny_train_overrides(tiny_corpus, run, **{"trainer.max_steps": 1, **FAST})],
                       cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert (run / ".hydra" / "config.yaml").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["elsewhere"]  # no runs/<data>_<model>_<optim>/.hydra


@pytest.mark.skipif(sys.platform != "linux", reason="needs Linux mount namespaces")
@pytest.mark.parametrize("fs", ["read-only", "full", "read-only-existing"])
def test_unwritable_run_dir_is_one_line_exit_2(tmp_path, tiny_corpus, fs):
    """A run directory on a read-only file system (EROFS) or a full one (ENOSPC): one line, exit 2; also an existing
    run, remounted read-only before it is resumed (Hydra's log file handler then fails first, issue 25). The file
    system is a tmpfs mounted in a private mount namespace of the child (unshare), so nothing leaks."""
    from conftest import tiny_train_overrides
    if subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode != 0:
        pytest.skip("unshare -rm (user + mount namespaces) is not permitted here")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    # 200 kB: logs fit, the first checkpoint does not
    opts = {"read-only": "ro,size=1m", "full": "size=200k", "read-only-existing": "size=20m"}[fs]

    def train(steps: int) -> str:
        return " ".join(f"'{a}'" for a in tiny_train_overrides(tiny_corpus, mnt / "run", **{
            **FAST, "trainer.max_steps": steps}))
    first = f"{sys.executable} -m asr.train.loop {train(2)} && mount -o remount,ro {mnt} && " \
        if fs == "read-only-existing" else ""
    script = f"mount -t tmpfs -o {opts} tmpfs {mnt} && {first}exec {sys.executable} -m asr.train.loop {train(4)}"
    r = subprocess.run(["unshare", "-rm", "sh", "-c", script], cwd=ROOT, capture_output=True, text=True,
                       timeout=300, env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "HOME": str(tmp_path)})
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("asr-train: error:")]
    assert r.returncode == 2, r.stderr[-3000:]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr[-3000:]
    expected = "Read-only file system" if fs.startswith("read-only") else "No space left on device"
    assert expected in lines[0] and "run_dir" in lines[0]
