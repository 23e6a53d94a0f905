"""Learning-rate schedules: warm-up, one-cycle decay to its floor, Noam, warm-up-stable-decay, and the
time-budget progress."""
from __future__ import annotations

import math

import pytest
import torch

from asr.config import OptimConfig
from asr.train.optim import build_optimizer, lr_at, progress


def test_onecycle_warms_up_linearly_then_decays_to_the_floor():
    cfg = OptimConfig(lr=1e-3, warmup_steps=10, final_lr_frac=0.1)
    assert lr_at(cfg, 0, 0.0) == pytest.approx(1e-4)
    assert lr_at(cfg, 9, 0.0) == pytest.approx(1e-3)
    assert lr_at(cfg, 10, 0.0) == pytest.approx(1e-3)
    assert lr_at(cfg, 50, 0.5) == pytest.approx(0.55e-3)
    assert lr_at(cfg, 99, 1.0) == pytest.approx(1e-4)


def test_wsd_holds_the_peak_then_decays_linearly_to_the_floor():
    cfg = OptimConfig(lr=1e-3, warmup_steps=10, final_lr_frac=0.1, schedule="wsd", decay_frac=0.25)
    assert lr_at(cfg, 0, 0.0) == pytest.approx(1e-4)  # the same warm-up
    assert lr_at(cfg, 10, 0.0) == pytest.approx(1e-3)
    assert lr_at(cfg, 60, 0.75) == pytest.approx(1e-3)  # held until the last quarter
    assert lr_at(cfg, 80, 0.875) == pytest.approx(0.55e-3)  # half-way down the straight line
    assert lr_at(cfg, 99, 1.0) == pytest.approx(1e-4)
    rates = [lr_at(cfg, 10 + k, k / 100) for k in range(101)]
    assert all(a >= b for a, b in zip(rates, rates[1:]))  # never rises after the warm-up
    linear = OptimConfig(lr=1e-3, warmup_steps=0, final_lr_frac=0.0, schedule="wsd", decay_frac=1.0)
    assert lr_at(linear, 30, 0.3) == pytest.approx(0.7e-3)  # decay_frac 1: a straight line from the peak


def test_noam_decays_with_the_inverse_square_root():
    cfg = OptimConfig(lr=1e-3, warmup_steps=100, schedule="noam")
    assert lr_at(cfg, 399, 0.0) == pytest.approx(1e-3 * math.sqrt(100 / 400))


def test_progress_follows_steps_or_the_time_budget_whichever_is_ahead():
    cfg = OptimConfig(warmup_steps=10)
    assert progress(cfg, 55, 100, 0.0, None) == pytest.approx(0.5)
    assert progress(cfg, 55, 100, 90.0, 100.0) == pytest.approx(0.9)
    assert progress(cfg, 500, 100, 0.0, None) == 1.0


def test_no_weight_decay_on_biases_and_norms():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    opt = build_optimizer(model, OptimConfig(weight_decay=0.1))
    decayed = {id(p) for p in opt.param_groups[0]["params"]}
    assert decayed == {id(model[0].weight)}
    assert opt.param_groups[1]["weight_decay"] == 0.0
