"""Training: learning, NaN skipping, exact kill-and-resume, SIGTERM checkpoints, config errors, TensorBoard.

All on CPU on the tiny built-in corpus (real TTS speech); each run is a few seconds to a minute.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import compose_train, tiny_train_overrides

from asr import checkpoint as ckpt_io
from asr.config import ConfigError, TrainConfig, to_object
from asr.data.manifest import Utterance, read_manifest, write_manifest
from asr.model.acoustic import AcousticModel
from asr.model.features import LogMel
from asr.text import CharTokenizer
from asr.train.components import filter_trainable

ROOT = Path(__file__).resolve().parents[2]


def _cfg(tiny_corpus, run_dir, **extra) -> TrainConfig:
    return to_object(compose_train(tiny_train_overrides(tiny_corpus, run_dir, **extra)), TrainConfig)


def _cli(args: list[str], **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "asr.train.loop", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def _wait_until(condition, proc: subprocess.Popen, what: str, timeout_s: float = 240) -> None:
    """Poll a training subprocess until `condition()` holds; fail if it exits first or never gets there."""
    give_up = time.monotonic() + timeout_s
    while not condition():
        assert proc.poll() is None, proc.stdout.read()
        if time.monotonic() > give_up:
            proc.kill()
            pytest.fail(f"training subprocess never reached {what}")
        time.sleep(0.05)


def _losses(run_dir: Path) -> dict[int, float]:
    """Last logged loss of every step (a resumed run re-logs the steps after its checkpoint)."""
    out = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        out[rec["step"]] = rec["loss"]
    return out


def test_ctc_feasibility_filter_names_and_drops(tmp_path, tiny_corpus, caplog):
    cfg = _cfg(tiny_corpus, tmp_path)
    utts = read_manifest(tiny_corpus["train"])[:3]
    bad = Utterance(id="too-long-text", audio_filepath=utts[0].audio_filepath, duration=0.5,
                    text="A" * 30)  # 0.5 s -> 13 output frames at 4x subsampling; "A"*30 needs 59
    tok = CharTokenizer()
    model = AcousticModel(cfg.model, cfg.features.n_mels, tok.size)
    kept = filter_trainable([*utts, bad], tok, LogMel(cfg.features), model, cfg)
    assert [u.id for u in kept] == [u.id for u in utts]
    assert "too-long-text" in caplog.text and "CTC-infeasible" in caplog.text


def test_overfits_a_few_utterances(tmp_path, tiny_corpus):
    """A handful of utterances, memorised to a near-zero CER: the whole loop learns."""
    few = read_manifest(tiny_corpus["train"])[:4]
    write_manifest(tmp_path / "few.jsonl", few)
    corpus = {"train": tmp_path / "few.jsonl", "dev": tmp_path / "few.jsonl"}
    cfg = _cfg(corpus, tmp_path / "run", **{
        "trainer.max_steps": 250, "trainer.max_epochs": 1000, "trainer.val_every_epochs": 1000,
        "optim.lr": 3e-3, "optim.warmup_steps": 20, "augment.spec_augment": "false", "augment.speed_perturb": "[]",
        "model.dropout": 0.0, "model.conv_dropout": 0.0, "data.sortagrad": "false"})
    from asr.train.loop import main
    summary = main(cfg)
    losses = _losses(tmp_path / "run")
    assert losses[len(losses)] < 0.2 * losses[1]
    assert summary["history"][-1]["dev"]["cer_greedy"] < 0.10, summary["history"][-1]


@pytest.mark.parametrize("workers", [0, 2])
def test_exact_resume_after_sigkill(tmp_path, tiny_corpus, workers):
    """N uninterrupted steps == K steps, SIGKILL, resume, N-K steps: same per-step losses, same parameters.

    As shipped: DataLoader workers (the demo uses 1, the LibriSpeech presets 6-8; torch's multi-worker iterator
    calls iter() on the sampler twice, which once lost the restored position), shuffled batches from the first
    epoch on, and a run that crosses an epoch boundary after the resume."""
    n = 24
    common = {"trainer.deterministic": "true", "trainer.max_steps": n, "trainer.checkpoint_every_steps": 1,
              "trainer.keep_last": 50, "data.max_batch_seconds": 8, "data.max_duration": 8,
              "data.dev_max_utterances": 4, "data.num_workers": workers, "data.sortagrad": "false",
              "trainer.val_every_epochs": 1000}
    full = _cli(tiny_train_overrides(tiny_corpus, tmp_path / "full", **common))
    assert full.wait(timeout=300) == 0, full.stdout.read()

    run = tmp_path / "killed"
    p = _cli(tiny_train_overrides(tiny_corpus, run, **common))
    _wait_until(lambda: ckpt_io.step_path(run / "checkpoints", 4).exists(), p, "the step-4 checkpoint")
    p.send_signal(signal.SIGKILL)
    p.wait()
    killed_at = max(int(c.stem.split("-")[1]) for c in ckpt_io.list_checkpoints(run / "checkpoints"))
    assert killed_at < n
    resumed = _cli(tiny_train_overrides(tiny_corpus, run, **common))
    out = resumed.stdout.read()
    assert resumed.wait(timeout=300) == 0, out
    assert "resumed from" in out

    a, b = _losses(tmp_path / "full"), _losses(run)
    assert sorted(a) == sorted(b) == list(range(1, n + 1))
    assert a == b
    epochs = {json.loads(line)["step"]: json.loads(line)["epoch"] for line in
              (run / "metrics.jsonl").read_text().splitlines()}
    assert epochs[killed_at + 1] < epochs[n], "the resumed part must cross an epoch boundary"
    wa = ckpt_io.load(ckpt_io.step_path(tmp_path / "full" / "checkpoints", n))["model"]
    wb = ckpt_io.load(ckpt_io.step_path(run / "checkpoints", n))["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_sigterm_writes_checkpoint_and_exits_143(tmp_path, tiny_corpus):
    run = tmp_path / "term"
    p = _cli(tiny_train_overrides(tiny_corpus, run, **{"trainer.max_steps": 10_000, "trainer.max_epochs": 1000}))
    _wait_until(lambda: (run / "metrics.jsonl").exists()
                and len((run / "metrics.jsonl").read_text().splitlines()) >= 3, p, "three logged steps")
    p.send_signal(signal.SIGTERM)
    out = p.stdout.read()
    assert p.wait(timeout=120) == 143, out
    newest = ckpt_io.list_checkpoints(run / "checkpoints")[-1]  # (epoch ends may have written earlier ones)
    assert ckpt_io.load(newest)["state"]["step"] == max(_losses(run))
    assert "exiting with status 143" in out


def test_nan_batch_is_skipped_without_touching_parameters(tmp_path, tiny_corpus):
    from asr.train.components import build
    from asr.train.state import TrainState
    from asr.train.step import train_step
    cfg = _cfg(tiny_corpus, tmp_path)
    c = build(cfg, tmp_path)
    batch = c.train_dataset[[0, 1]]
    train_step(c, batch, TrainState())  # one good step so the optimizer has state
    before = {k: v.clone() for k, v in c.raw_model.state_dict().items()}
    opt_before = {k: v.clone() for k, v in c.optimizer.state_dict()["state"][0].items()}
    batch.waves[0, 100:200] = float("nan")
    result = train_step(c, batch, TrainState(step=1))
    assert result.updated and result.skipped
    assert all(torch.equal(before[k], v) for k, v in c.raw_model.state_dict().items())
    assert all(torch.equal(opt_before[k], v) for k, v in c.optimizer.state_dict()["state"][0].items())


def test_consecutive_bad_steps_abort_naming_the_knob(tmp_path, tiny_corpus):
    from asr.errors import UserError
    from asr.train.components import build
    from asr.train.loop import train_one_epoch
    from asr.train.state import TrainState
    cfg = _cfg(tiny_corpus, tmp_path, **{"trainer.max_bad_steps": 2})
    c = build(cfg, tmp_path)
    real = c.train_loader

    def poisoned():
        for batch in real:
            batch.waves[:] = float("nan")
            yield batch
    with pytest.raises(UserError, match="trainer.max_bad_steps"):
        train_one_epoch(dataclasses.replace(c, train_loader=poisoned()), TrainState())


@pytest.mark.parametrize("override,key", [
    ("model.conv_time_strides=[2,2,2]", "model.conv_time_strides"),
    ("model.rnn_type=transformer", "model.rnn_type"),
    ("data.max_duration=500", "data.max_duration"),
])
def test_config_errors_name_the_key(tmp_path, tiny_corpus, override, key):
    from hydra.errors import ConfigCompositionException
    # A choice field (an Enum in the schema) is refused while Hydra composes; a range rule at to_object.
    with pytest.raises((ConfigError, ConfigCompositionException), match=key.replace(".", r"\.")):
        to_object(compose_train([*tiny_train_overrides(tiny_corpus, tmp_path), override]), TrainConfig)


@pytest.mark.parametrize("cfg,key", [({"optim": {"lr": "fast"}}, "optim.lr"), ({"optim": {"lrr": 1}}, "optim.lrr"),
                                     ({"trainer": {"max_epochs": [1]}}, "trainer.max_epochs")])
def test_wrong_type_or_unknown_key_names_the_key(cfg, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        to_object(cfg, TrainConfig)


@pytest.mark.parametrize("bad,expected", [
    ("model.rnn_type=transformer", "model.rnn_type: Invalid value 'transformer', expected one of [lstm, gru]"),
    ("optim.lrr=1", "optim.lrr: Key 'lrr' not in 'OptimConfig'"),
    ("+optim.lrr=1", "optim.lrr: unknown key"),
    ("optim.lr=fast", "optim.lr: Value 'fast'"),
    ("model=huge", "Could not find 'model/huge'; choose one of: large, small, streaming"),
    ("optim.lr=[1,", "cannot parse the command line"),
])
def test_cli_config_error_is_one_line_exit_2(tmp_path, tiny_corpus, bad, expected):
    """Every configuration error of the user's making, Hydra's own included: one line on stderr, exit 2, and no
    output folder created."""
    p = _cli([*tiny_train_overrides(tiny_corpus, tmp_path / "run"), bad])
    out = p.stdout.read()
    assert p.wait(timeout=120) == 2, out
    assert out.startswith("asr-train: error: ") and out.count("\n") == 1 and expected in out, out
    assert not (tmp_path / "run").exists()


def test_cli_flags_before_overrides_and_sweeps(tmp_path, tiny_corpus):
    """run_dir= moves Hydra's folder whatever the order of flags and overrides; a sweep needs -m; a multirun with
    one fixed run_dir is refused (each job would resume the one before)."""
    args = tiny_train_overrides(tiny_corpus, tmp_path / "run")
    p = _cli(["--cfg", "job", *args])
    out = p.stdout.read()
    assert p.wait(timeout=120) == 0 and f"run_dir: {tmp_path / 'run'}" in out, out
    for extra, expected in ((["optim.lr=1e-3,2e-3"], "optim.lr: a list of values is a sweep; add -m"),
                            (["-m", "optim.lr=1e-3,2e-3"], "a multirun gives each job its own folder")):
        p = _cli([*extra, *args])
        out = p.stdout.read()
        assert p.wait(timeout=120) == 2 and out.count("\n") == 1 and expected in out, out
    assert not (tmp_path / "run").exists()


def test_a_signal_during_start_up_stops_at_the_first_step_with_a_checkpoint(tmp_path, tiny_corpus, monkeypatch):
    """SIGTERM while the run is still being built (a launcher killed during start-up) used to meet Python's default
    action: that rank died at once, and under torchrun its peers failed in their next collective with no checkpoint.
    Now the handler is in place from main()'s first line, and the run stops at the first step boundary."""
    from asr.train import loop
    built = loop.build

    def build_then_signal(*args, **kwargs):
        run = built(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)
        return run

    monkeypatch.setattr(loop, "build", build_then_signal)
    run = tmp_path / "early"
    with pytest.raises(SystemExit) as exit_info:
        loop.main(_cfg(tiny_corpus, run, **{"trainer.max_steps": 10_000, "trainer.max_epochs": 1000}))
    assert exit_info.value.code == 143
    assert [c.name for c in ckpt_io.list_checkpoints(run / "checkpoints")] == ["step-00000001.pt"]
    assert "checkpoint written at step 1; exiting with status 143" in (run / "train.log").read_text()


def test_signal_handlers_are_scoped_to_the_run(tmp_path, tiny_corpus):
    """main() installs SIGTERM/SIGUSR1 handlers for the run only and restores them, also when it fails."""
    from asr.errors import UserError
    from asr.train.loop import main
    from asr.train.signals import preemption_signals
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGUSR1)}
    with pytest.raises(RuntimeError):
        with preemption_signals() as stop:
            assert signal.getsignal(signal.SIGTERM) not in (before[signal.SIGTERM], None)
            os.kill(os.getpid(), signal.SIGUSR1)
            time.sleep(0.01)
            assert stop.requested
            raise RuntimeError("the run failed")
    assert {s: signal.getsignal(s) for s in before} == before
    bad = tmp_path / "missing.jsonl"
    with pytest.raises(UserError):
        main(_cfg({"train": bad, "dev": bad}, tmp_path / "run"))
    assert {s: signal.getsignal(s) for s in before} == before


def test_cfg_job_prints_composed_config(tiny_corpus, tmp_path):
    p = _cli([*tiny_train_overrides(tiny_corpus, tmp_path), "optim.lr=3e-4", "--cfg", "job"])
    out = p.stdout.read()
    assert p.wait(timeout=120) == 0
    assert "lr: 0.0003" in out and "rnn_hidden: 64" in out


def test_console_says_which_validation_is_best_and_what_the_budget_has_left(capsys):
    from asr.train.loop import _report
    history = [{"step": 100, "epoch": 1, "dev": {"wer_greedy": 0.5, "cer_greedy": 0.2}},
               {"step": 200, "epoch": 2, "dev": {"wer_greedy": 0.6, "cer_greedy": 0.25}}]
    _report({"history": history, "stopped_by": "time", "run_dir": "runs/x"})
    assert capsys.readouterr().out.splitlines() == [
        "last validation, step 200: dev greedy WER 60.00% CER 25.00%",
        "best (best.pt), step 100: dev greedy WER 50.00% CER 20.00%",
        "stopped by: time; run dir: runs/x"]


def test_tensorboard_has_scalars_images_and_hparams(tmp_path, tiny_corpus, caplog):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from asr import tb
    from asr.train.loop import main
    caplog.set_level(logging.INFO, logger="asr.train")
    main(_cfg(tiny_corpus, tmp_path, **{"trainer.max_steps": 6, "trainer.log_every": 2,
                                         "data.dev_max_utterances": 4, "trainer.max_minutes": 30}))
    assert "(greedy; new best, saved as best.pt); 0." in caplog.text and " of 30.0 min used" in caplog.text
    assert "batches this epoch" in caplog.text
    assert sorted(p.name for p in (tmp_path / "tb").iterdir()) == [tb.TRAIN_RUN]  # one named run, hparams inside
    acc = EventAccumulator(str(tmp_path / "tb" / tb.TRAIN_RUN), size_guidance={"images": 0, "scalars": 0}).Reload()
    tags = acc.Tags()
    for tag in (tb.TRAIN_LOSS, tb.TRAIN_LR, tb.TRAIN_GRAD_NORM, tb.TRAIN_SKIPPED, tb.TRAIN_UTT_PER_S,
                tb.TRAIN_AUDIO_PER_S, tb.TRAIN_PADDING, tb.TRAIN_DATA_WAIT, "dev/loss", "dev/wer_greedy",
                "dev/cer_greedy", "dev/blank_ratio"):
        assert tag in tags["scalars"], tag
    assert "dev/posteriorgram_0" in tags["images"]
    assert any("samples" in t for t in tags["tensors"])
    assert "_hparams_/experiment" in acc.PluginTagToContent("hparams")


def test_ddp_two_cpu_processes(tmp_path, tiny_corpus):
    """torchrun, gloo, 2 ranks: finite loss, rank 0 alone writes checkpoints and TensorBoard, resume works."""
    run = tmp_path / "ddp"
    common = {"data.dev_max_utterances": 4, "data.max_batch_seconds": 12, "data.max_duration": 10}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "asr.train.loop"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1"}  # a rank that aborts prints its stacks
    r = subprocess.run([*cmd, *tiny_train_overrides(tiny_corpus, run, **common, **{"trainer.max_steps": 4})],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    losses = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [rec["step"] for rec in losses] == [1, 2, 3, 4]  # one writer: each step logged once
    assert all(torch.isfinite(torch.tensor(rec["loss"])) for rec in losses)
    assert len(list((run / "tb" / "train").glob("events.out.tfevents.*"))) == 1
    assert ckpt_io.list_checkpoints(run / "checkpoints")[-1].name == "step-00000004.pt"
    r = subprocess.run([*cmd, *tiny_train_overrides(tiny_corpus, run, **common, **{"trainer.max_steps": 6})],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "resumed from" in r.stdout + r.stderr
    assert max(_losses(run)) == 6


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_ranks_stop_with_a_checkpoint_when_their_launcher_is_killed(tmp_path, tiny_corpus):
    """kill -9 of the torchrun launcher alone (a scheduler that kills only the job's main process) used to leave
    both ranks training on in their own sessions, holding the run-directory lock. Now each rank gets SIGTERM when
    its parent dies: a checkpoint at the next step, exit, and the lock is free (issue 25)."""
    from asr.train import rundir
    run = tmp_path / "ddp"
    common = {"data.dev_max_utterances": 4, "data.max_batch_seconds": 12, "data.max_duration": 10,
              "trainer.max_steps": 100_000, "trainer.max_epochs": 100_000, "trainer.val_every_epochs": 100_000}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "asr.train.loop"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    output = tmp_path / "ranks.out"  # the ranks inherit it: their tracebacks, should one die
    with output.open("w") as out:
        launcher = subprocess.Popen([*cmd, *tiny_train_overrides(tiny_corpus, run, **common)], cwd=ROOT, env=env,
                                    stdout=out, stderr=subprocess.STDOUT)
    ranks: list[int] = []
    try:
        _wait_until(lambda: (run / "metrics.jsonl").exists(), launcher, "the first logged step")
        ranks = [int(p) for p in subprocess.run(["pgrep", "-P", str(launcher.pid)], capture_output=True,
                                                 text=True).stdout.split()]
        assert len(ranks) == 2, ranks
        launcher.kill()
        launcher.wait()
        deadline = time.monotonic() + 60
        while any(Path(f"/proc/{pid}").exists() and "zombie" not in _proc_state(pid) for pid in ranks):
            assert time.monotonic() < deadline, "the ranks were still running 60 s after their launcher died"
            time.sleep(0.2)
    finally:
        launcher.kill()
        for pid in ranks:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    log = (run / "train.log").read_text()
    assert "received signal 15" in log and "checkpoint written at step" in log, log + output.read_text()
    with rundir.exclusive(run):  # the lock is free: a new launch would resume
        pass


def _proc_state(pid: int) -> str:
    try:
        return next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                    if line.startswith("State:")).lower()
    except (OSError, StopIteration):
        return "zombie"


def test_multirun_sweeps_two_jobs(tmp_path, tiny_corpus):
    """`asr-train -m a=1,2` runs one job per value, each in its own sweep folder."""
    args = [a for a in tiny_train_overrides(tiny_corpus, tmp_path) if not a.startswith("run_dir=")]
    p = _cli(["-m", *args, "trainer.max_steps=1,2", "data.dev_max_utterances=2", f"hydra.sweep.dir={tmp_path}/sweep"])
    out = p.stdout.read()
    assert p.wait(timeout=300) == 0, out
    steps = sorted(json.loads((d / "summary.json").read_text())["steps"] for d in (tmp_path / "sweep").iterdir()
                   if (d / "summary.json").exists())
    assert steps == [1, 2]
