"""AdamW and the learning-rate schedules (warm-up then decay: cosine, inverse square root, or held then linear).

The schedule is a pure function of *progress*, so a resumed run recomputes the exact same learning rate.
Progress is `step / total_steps`, or, under a wall-clock budget (`trainer.max_minutes`), the larger of that
and the fraction of the budget spent: a budgeted run still anneals to its floor before time runs out
instead of stopping at peak learning rate.
"""
from __future__ import annotations

import math

import torch

from asr.config import OptimConfig


def build_optimizer(model: torch.nn.Module, cfg: OptimConfig) -> torch.optim.AdamW:
    """AdamW with no weight decay on biases and normalisation parameters (1-D tensors)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas))


def lr_at(cfg: OptimConfig, step: int, progress: float) -> float:
    """Learning rate for optimizer step `step` (0-based) at `progress` in [0, 1] of the run."""
    warm = cfg.warmup_steps
    if warm and step < warm:
        return cfg.lr * (step + 1) / warm
    if cfg.schedule == "noam":
        return cfg.lr * math.sqrt(max(warm, 1) / (step + 1))
    floor = cfg.lr * cfg.final_lr_frac
    p = min(max(progress, 0.0), 1.0)
    if cfg.schedule == "wsd":  # the peak until 1 - decay_frac of the run, then a straight line to the floor
        return floor + (cfg.lr - floor) * min(1.0, (1.0 - p) / cfg.decay_frac)
    return floor + 0.5 * (cfg.lr - floor) * (1 + math.cos(math.pi * p))


def progress(cfg: OptimConfig, step: int, total_steps: int, elapsed_s: float, budget_s: float | None) -> float:
    """Fraction of the decay phase done: by steps after warm-up, or by time when a budget is set and ahead."""
    p = (step - cfg.warmup_steps) / max(total_steps - cfg.warmup_steps, 1)
    if budget_s:
        p = max(p, elapsed_s / budget_s)
    return min(p, 1.0)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
