"""Training guarantees beyond "it learns": DDP gradient parity with one process, corrupt audio, the time
budget's schedule, best.pt selection, SIGUSR1 checkpoints and reduced precision on CPU.

All on CPU on the tiny built-in corpus (real TTS speech) with a tiny model; each test takes seconds.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_train_overrides
from omegaconf import OmegaConf
from test_train import _cfg, _cli, _losses, _wait_until

from asr import checkpoint as ckpt_io
from asr.config import ConfigError
from asr.data.manifest import read_manifest, write_manifest
from asr.errors import UserError
from asr.model.ctc import ctc_loss

ROOT = Path(__file__).resolve().parents[2]

# No randomness anywhere in a step: no SpecAugment, no speed perturbation, no dropout, SortaGrad order.
NO_RANDOMNESS = {"augment.spec_augment": "false", "augment.speed_perturb": "[]", "model.dropout": 0.0,
                 "model.conv_dropout": 0.0, "data.sortagrad": "true", "trainer.deterministic": "true"}
QUICK_DEV = {"data.dev_max_utterances": 2, "trainer.num_images": 0}


@pytest.fixture
def restore_global_state(tmp_path):
    """`main`/`build` set process-wide state (root logger level and a train.log handler, deterministic
    algorithms, thread count): put it back so later tests in this process are unaffected."""
    root = logging.getLogger()
    level = root.level
    det, warn_only = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    threads = torch.get_num_threads()
    yield
    for h in list(root.handlers):
        if isinstance(h, logging.FileHandler) and Path(h.baseFilename).is_relative_to(tmp_path):
            root.removeHandler(h)
            h.close()
    root.setLevel(level)
    torch.use_deterministic_algorithms(det, warn_only=warn_only)
    torch.set_num_threads(threads)


def _records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


# ------------------------------------------------------------------------------------------------ DDP parity


def _params_grads(model: torch.nn.Module, loss: torch.Tensor) -> dict[str, torch.Tensor]:
    names, params = zip(*[(n, p) for n, p in model.named_parameters() if p.requires_grad])
    return dict(zip(names, torch.autograd.grad(loss, params, retain_graph=True)))


def _close(a: dict, b: dict, rtol: float, atol: float) -> bool:
    return a.keys() == b.keys() and all(torch.allclose(a[k], b[k], rtol=rtol, atol=atol) for k in a)


def test_ddp_gradient_equals_single_process_on_the_same_global_batch(tmp_path, tiny_corpus, restore_global_state):
    """2 gloo ranks, one real train_step each: the gradient AdamW receives equals, on one process, the gradient
    of mean over ranks of (mean CTC loss over that rank's utterances), with rank r's batch = global batch r of
    the sampler's order. Batch-norm statistics are per rank (no SyncBatchNorm), so the reference runs the two
    batches through the model separately. Summing across ranks, or pooling all utterances into one mean,
    would give a different gradient (asserted too, so the comparison is known to discriminate)."""
    from asr.train.components import build

    # A batch budget for which the first two global batches differ in size: otherwise the pooled mean and the
    # mean of per-rank means coincide and the test could not tell them apart.
    for budget in (12, 10, 14, 16, 9, 20):
        cfg = _cfg(tiny_corpus, tmp_path / "ref", **NO_RANDOMNESS, **{
            "data.max_batch_seconds": budget, "data.max_duration": budget, "data.num_buckets": 1,
            "optim.grad_clip": 1e9, "optim.accum_steps": 1,
            "model.inter_ctc_weight": 0.0})  # the oracle below is the final layer's CTC loss alone
        ref = build(cfg, tmp_path / "ref")
        glob = ref.train_sampler.global_batches(0)
        if len(glob) >= 2 and len(glob[0]) != len(glob[1]):
            break
    else:
        pytest.fail("no batch budget gives two first global batches of different sizes")

    cfg_file = tmp_path / "probe.yaml"
    probe_cfg = dataclasses.replace(cfg, run_dir=str(tmp_path / "ddp"))
    cfg_file.write_text(OmegaConf.to_yaml(OmegaConf.structured(probe_cfg)))
    (tmp_path / "ddp").mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1"}  # an abort prints its stacks
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        str(ROOT / "tests" / "train" / "ddp_grad_probe.py"), str(cfg_file), str(tmp_path / "ddp")],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    ranks = [torch.load(tmp_path / "ddp" / f"rank{i}.pt", weights_only=True) for i in range(2)]

    # the sampler deals global batch j to rank j % 2
    ds = ref.train_dataset
    assert ranks[0]["ids"] == [ds.utts[i].id for i in glob[0]]
    assert ranks[1]["ids"] == [ds.utts[i].id for i in glob[1]]
    # DDP leaves identical gradients on every rank
    assert all(torch.equal(ranks[0]["grads"][k], ranks[1]["grads"][k]) for k in ranks[0]["grads"])

    model = ref.raw_model
    model.load_state_dict(ranks[0]["init"])
    model.train()
    per_rank = []
    for idx in glob[:2]:
        batch = ds[idx]
        feats, frames = ref.featurizer(batch.waves, batch.wave_lengths)
        log_probs, out_lengths = model(feats, frames)
        losses, zeroed = ctc_loss(log_probs, out_lengths, batch.targets, batch.target_lengths)
        assert not zeroed.any()
        per_rank.append(losses)
    # each rank reports its own mean loss; rank 0's must match the reference's first batch
    assert math.isclose(ranks[0]["loss"], float(per_rank[0].detach().mean()), rel_tol=1e-5)
    expected = _params_grads(model, (per_rank[0].mean() + per_rank[1].mean()) / 2)
    summed = _params_grads(model, per_rank[0].mean() + per_rank[1].mean())
    pooled = _params_grads(model, torch.cat(per_rank).mean())

    got = ranks[0]["grads"]
    assert got.keys() == expected.keys()
    # fp32 on CPU; only the order of the cross-rank reduction differs -> rtol 1e-4, atol 1e-6 (grads ~1e-3..1)
    rtol, atol = 1e-4, 1e-6
    bad = [k for k in expected if not torch.allclose(got[k], expected[k], rtol=rtol, atol=atol)]
    assert not bad, {k: float((got[k] - expected[k]).abs().max()) for k in bad}
    assert not _close(got, summed, rtol, atol) and not _close(got, pooled, rtol, atol)


# ------------------------------------------------------------------------------------------------ corrupt audio


def test_intermediate_ctc_step_loss_is_the_weighted_sum_of_both_ctc_losses(tmp_path, tiny_corpus,
                                                                           restore_global_state):
    """Oracle: torch's CTC loss on the final and on the layer-1 log-probs of a copy of the model, per utterance
    divided by target length, mixed (1 - w) and w; the step's loss (and so its gradient) is exactly that."""
    import copy

    import torch.nn.functional as F

    from asr.train.components import build
    from asr.train.state import TrainState
    from asr.train.step import train_step

    w = 0.4
    cfg = _cfg(tiny_corpus, tmp_path / "run", **NO_RANDOMNESS, **{"model.inter_ctc_weight": w})
    assert cfg.model.inter_layer == 1  # the middle of 2 layers
    c = build(cfg, tmp_path / "run")
    c.train_sampler.set_epoch(0)
    c.train_dataset.set_epoch(0)
    batch = next(iter(c.train_loader))
    model = copy.deepcopy(c.raw_model).train()
    with torch.no_grad():
        feats, frames = c.featurizer(batch.waves, batch.wave_lengths)
        log_probs, out, inter = model(feats, frames, intermediate=True)

    def per_utt(lp):
        raw = F.ctc_loss(lp.transpose(0, 1), batch.targets, out, batch.target_lengths, reduction="none")
        return raw / batch.target_lengths

    expected = ((1 - w) * per_utt(log_probs) + w * per_utt(inter)).mean()
    result = train_step(c, batch, TrainState())
    assert result.updated and not result.skipped
    assert math.isclose(result.loss, float(expected), rel_tol=1e-5)
    assert not math.isclose(result.loss, float(per_utt(log_probs).mean()), rel_tol=1e-3)


def _corrupt_corpus(tiny_corpus, tmp_path: Path, n_bad: int) -> tuple[dict, list[str], int]:
    """The tiny training set with its `n_bad` shortest utterances (the first SortaGrad batch) pointing at
    copies overwritten with garbage bytes. Returns (corpus, bad ids, number of training utterances)."""
    utts = read_manifest(tiny_corpus["train"])
    shortest = sorted(range(len(utts)), key=lambda i: (utts[i].duration, i))[:n_bad]
    rng = np.random.default_rng(0)
    (tmp_path / "bad").mkdir()
    for i in shortest:
        src = Path(utts[i].audio_filepath)
        dst = tmp_path / "bad" / src.name
        shutil.copyfile(src, dst)
        dst.write_bytes(rng.integers(0, 256, size=dst.stat().st_size, dtype=np.uint8).tobytes())
        utts[i] = dataclasses.replace(utts[i], audio_filepath=str(dst))
    write_manifest(tmp_path / "train.jsonl", utts)
    return {"train": tmp_path / "train.jsonl", "dev": tiny_corpus["dev"]}, [utts[i].id for i in shortest], len(utts)


@pytest.mark.parametrize("per_batch", [True, False])
def test_speed_perturbed_batches_stay_within_the_batch_budget(tmp_path, tiny_corpus, restore_global_state, per_batch):
    """data.max_batch_seconds bounds the padded audio a step computes on (GPU memory): with speed factor 0.8 every
    utterance plays 1.25x longer than the sampler's manifest durations say, so the sampler must pack on that.
    Measured on what the loader delivers (samples x batch size), over a whole epoch."""
    from asr.train.components import build

    budget = 8.0
    cfg = _cfg(tiny_corpus, tmp_path, **{"augment.speed_perturb": "[0.8]",
                                         "augment.speed_per_batch": str(per_batch).lower(),
                                         "data.max_batch_seconds": budget, "data.max_duration": 6.0,
                                         "data.num_workers": 0})
    c = build(cfg, tmp_path)
    c.train_sampler.set_epoch(1)
    padded = [b.waves.shape[0] * b.waves.shape[1] / cfg.features.sample_rate for b in c.train_loader]
    assert max(padded) <= budget + 1e-6
    assert max(padded) > 0.75 * budget  # batches are still packed up to the budget, not left half empty


def test_corrupt_audio_below_max_bad_fraction_is_skipped_and_named(tmp_path, tiny_corpus, restore_global_state):
    """3 unreadable files, two epochs (each bad file is met twice), threshold 3.5 utterances: the guard counts
    *distinct* bad utterances, so the run completes; each bad id is named once in train.log."""
    from asr.train.loop import main
    n_bad = 3
    corpus, bad_ids, n = _corrupt_corpus(tiny_corpus, tmp_path, n_bad)
    run = tmp_path / "run"
    summary = main(_cfg(corpus, run, **QUICK_DEV, **{
        "trainer.max_epochs": 2, "data.max_bad_fraction": (n_bad + 0.5) / n}))
    assert summary["stopped_by"] == "epoch" and summary["epochs"] == 2
    assert all(math.isfinite(rec["loss"]) and not rec["skipped"] for rec in _records(run))
    log_text = (run / "train.log").read_text()
    for uid in bad_ids:
        assert log_text.count(f"skipping utterance {uid}") == 1, uid
    assert log_text.count("skipping utterance") == n_bad


def test_corrupt_audio_above_max_bad_fraction_aborts_naming_the_knob(tmp_path, tiny_corpus):
    """The same 3 files with a threshold of 2.5 utterances: `asr-train` exits 2 with one line naming
    data.max_bad_fraction and a bad utterance, and no traceback."""
    n_bad = 3
    corpus, bad_ids, n = _corrupt_corpus(tiny_corpus, tmp_path, n_bad)
    p = _cli(tiny_train_overrides(corpus, tmp_path / "run", **QUICK_DEV, **{
        "trainer.max_epochs": 1, "data.max_bad_fraction": (n_bad - 0.5) / n}))
    out = p.stdout.read()
    assert p.wait(timeout=300) == 2, out
    errors = [line for line in out.splitlines() if line.startswith("asr-train: error:")]
    assert len(errors) == 1, out
    assert "data.max_bad_fraction" in errors[0] and re.search(rf"\b{n_bad} of \d+ utterances", errors[0])
    assert any(uid in errors[0] for uid in bad_ids)
    assert "Traceback" not in out


# ------------------------------------------------------------------------------------------------ time budget


@pytest.fixture(scope="module")
def budget_run(tmp_path_factory, tiny_corpus):
    """One run under trainer.max_minutes=0.15 (9 s) with 1000 epochs allowed, no warm-up, validation (4 dev
    utterances) and a checkpoint at every epoch end as in a real run: (cfg, summary, metrics records)."""
    from asr.train.loop import main
    run = tmp_path_factory.mktemp("budget") / "run"
    cfg = _cfg(tiny_corpus, run, **{"data.dev_max_utterances": 4, "trainer.num_images": 0,
                                    "trainer.max_minutes": 0.15, "trainer.max_epochs": 1000, "optim.warmup_steps": 0})
    root = logging.getLogger()
    handlers, level, threads = list(root.handlers), root.level, torch.get_num_threads()
    try:
        summary = main(cfg)
    finally:
        for h in root.handlers[:]:
            if h not in handlers:
                root.removeHandler(h)
                h.close()
        root.setLevel(level)
        torch.set_num_threads(threads)
    return cfg, summary, _records(run)


def test_time_budget_stops_by_time_and_anneals(budget_run):
    cfg, summary, recs = budget_run
    assert summary["stopped_by"] == "time"
    assert len(recs) >= 8, "too few steps in the budget to judge the schedule"  # ~40 on an idle 2-core VM
    lrs = [rec["lr"] for rec in recs]
    assert all(b <= a for a, b in zip(lrs, lrs[1:])), lrs  # no warm-up: the cosine only goes down
    assert lrs[-1] < 0.25 * cfg.optim.lr  # far down the cosine (a budget ignored by the schedule stays near peak)


def test_time_budget_last_lr_is_at_the_floor(budget_run):
    """Under a budget the one-cycle progress is the fraction of the budget spent, so the last step (which starts
    less than one step before the deadline) must run at the floor lr * final_lr_frac, up to the granularity of
    steps: with n steps in the budget the last one starts at progress >= 1 - 5/n (a 5x margin over the mean time
    between steps). The bound is the documented cosine (asr/train/optim.py), written out here independently."""
    cfg, _, recs = budget_run
    peak, floor = cfg.optim.lr, cfg.optim.lr * cfg.optim.final_lr_frac
    p_min = 1 - 5 / len(recs)
    bound = floor + 0.5 * (peak - floor) * (1 + math.cos(math.pi * p_min))
    last = recs[-1]["lr"]
    p_last = math.acos(min(1.0, max(-1.0, 2 * (last - floor) / (peak - floor) - 1))) / math.pi
    assert floor * (1 - 1e-9) <= last <= bound, f"last lr {last:.3g} (progress {p_last:.3f}), floor {floor:.3g}, " \
                                                f"allowed up to {bound:.3g} (progress >= {p_min:.3f})"


# ------------------------------------------------------------------------------------------------ best.pt


def test_best_checkpoint_is_the_lowest_mean_dev_wer(tmp_path, tiny_corpus, restore_global_state):
    """Several validations over two dev sets: best.pt holds the step of the history entry with the lowest mean
    greedy WER (the first one on ties) and that step's weights."""
    from asr.train.loop import main
    run = tmp_path / "run"
    corpus = {"train": tiny_corpus["train"], "dev": tiny_corpus["dev"]}
    # A high lr so the WER moves within a few steps (at 3e-2 one dev set dips below 1.0 at step 2 and comes back;
    # the first validation, the last one and the argmin then all differ). Ties are resolved the same way anyway.
    summary = main(_cfg(corpus, run, **{
        "+data.dev_manifests.test": tiny_corpus["test"],
        "data.dev_max_utterances": 3, "trainer.num_images": 0, "trainer.val_every_steps": 1,
        "trainer.max_steps": 8, "trainer.keep_last": 100, "optim.lr": 3e-2}))
    history = summary["history"]
    assert len({h["step"] for h in history}) >= 4, history
    assert all({"dev", "test"} <= h.keys() for h in history)
    means = [(h["dev"]["wer_greedy"] + h["test"]["wer_greedy"]) / 2 for h in history]
    best = min(range(len(history)), key=lambda i: (means[i], i))  # first one on ties
    blob = ckpt_io.load(run / "checkpoints" / "best.pt")
    assert blob["state"]["step"] == history[best]["step"], (means, [h["step"] for h in history])
    assert math.isclose(blob["state"]["best_wer"], means[best], rel_tol=1e-9)
    assert math.isclose(summary["best_wer"], means[best], rel_tol=1e-9)
    rolling = ckpt_io.load(ckpt_io.step_path(run / "checkpoints", history[best]["step"]))
    assert rolling["model"].keys() == blob["model"].keys()
    assert all(torch.equal(rolling["model"][k], blob["model"][k]) for k in blob["model"])
    # the last checkpoint differs when the best is an earlier step (so the weight check is not vacuous)
    last = ckpt_io.load(ckpt_io.list_checkpoints(run / "checkpoints")[-1])
    if last["state"]["step"] != history[best]["step"]:
        assert not all(torch.equal(last["model"][k], blob["model"][k]) for k in blob["model"])


# ------------------------------------------------------------------------------------------------ SIGUSR1


def test_sigusr1_writes_checkpoint_and_exits_143(tmp_path, tiny_corpus):
    run = tmp_path / "usr1"
    p = _cli(tiny_train_overrides(tiny_corpus, run, **QUICK_DEV, **{"trainer.max_steps": 10_000,
                                                                    "trainer.max_epochs": 1000}))
    _wait_until(lambda: (run / "metrics.jsonl").exists()
                and len((run / "metrics.jsonl").read_text().splitlines()) >= 3, p, "three logged steps")
    p.send_signal(signal.SIGUSR1)
    out = p.stdout.read()
    assert p.wait(timeout=120) == 143, out
    newest = ckpt_io.list_checkpoints(run / "checkpoints")[-1]
    assert ckpt_io.load(newest)["state"]["step"] == max(_losses(run))
    assert "received signal %d" % signal.SIGUSR1 in out
    assert "exiting with status 143" in out


# ------------------------------------------------------------------------------------------------ precision


def test_bf16_on_cpu_trains(tmp_path, tiny_corpus, restore_global_state):
    """trainer.precision=bf16 on CPU: the model's matmuls really run in bf16 (autocast), the CTC loss stays
    fp32 and finite, no step is skipped, and the parameters move."""
    from asr.train.components import build
    from asr.train.state import TrainState
    from asr.train.step import train_step
    cfg = _cfg(tiny_corpus, tmp_path, **NO_RANDOMNESS, **{"trainer.precision": "bf16", "data.max_batch_seconds": 12,
                                                           "data.max_duration": 12})
    c = build(cfg, tmp_path)
    assert c.amp_dtype == torch.bfloat16
    head_dtypes = []
    c.raw_model.head.register_forward_hook(lambda _m, _i, out: head_dtypes.append(out.dtype))
    before = {k: v.detach().clone() for k, v in c.raw_model.named_parameters()}
    state = TrainState()
    for batch in c.train_loader:
        result = train_step(c, batch, state)
        state.batches_in_epoch += 1
        state.step += 1
        assert math.isfinite(result.loss), result  # the CTC loss itself is fp32 (asr/model/forward.py hands it fp32)
        assert result.updated and not result.skipped and math.isfinite(result.grad_norm), result
        if state.step == 3:
            break
    # The head runs once per step, twice with intermediate CTC (the middle layer goes through it too).
    assert head_dtypes == [torch.bfloat16] * 3 * (2 if cfg.model.inter_ctc_weight > 0 else 1)
    changed = [k for k, p in c.raw_model.named_parameters() if not torch.equal(p, before[k])]
    assert set(changed) == set(before), set(before) - set(changed)
    assert all(torch.isfinite(p).all() for p in c.raw_model.parameters())


def test_fp16_on_cpu_is_refused_naming_the_key(tmp_path, tiny_corpus, restore_global_state):
    from asr.train.components import build
    with pytest.raises(ConfigError, match=r"trainer\.precision") as exc:
        build(_cfg(tiny_corpus, tmp_path, **{"trainer.precision": "fp16"}), tmp_path)
    assert isinstance(exc.value, UserError) and "bf16" in str(exc.value)
