"""Run under torchrun by tests/train/test_train_guarantees.py: one real `train_step` per rank; save its gradients.

usage: torchrun --nproc_per_node=N tests/train/ddp_grad_probe.py CONFIG.yaml OUT_DIR

The gradients are snapshotted by an optimizer step pre-hook, i.e. exactly what AdamW receives after DDP's
all-reduce and the trainer's clipping (the test sets optim.grad_clip high so clipping is the identity).
Writes OUT_DIR/rank<r>.pt = {ids, loss, grads, init} where `init` is the model state before the step.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch
from omegaconf import OmegaConf

from asr.config import TrainConfig, to_object
from asr.train import distributed as dist_utils
from asr.train.components import build
from asr.train.state import TrainState
from asr.train.step import train_step


def main(cfg_path: str, out_dir: str) -> None:
    cfg = to_object(OmegaConf.load(cfg_path), TrainConfig)
    c = build(cfg, Path(cfg.run_dir))
    assert c.dist.world_size > 1, "run me under torchrun"
    init = {k: v.detach().clone() for k, v in c.raw_model.state_dict().items()}
    grads: dict[str, torch.Tensor] = {}

    def snapshot(_optimizer, _args, _kwargs):
        grads.update({n: p.grad.detach().clone() for n, p in c.raw_model.named_parameters() if p.grad is not None})

    c.optimizer.register_step_pre_hook(snapshot)
    c.model.train()
    c.train_sampler.set_epoch(0)
    c.train_dataset.set_epoch(0)
    batch = next(iter(c.train_loader))
    result = train_step(c, batch, TrainState())
    assert result.updated and not result.skipped, result
    torch.save({"ids": list(batch.ids), "loss": result.loss, "grads": grads, "init": init},
               Path(out_dir) / f"rank{c.dist.rank}.pt")
    dist_utils.teardown()


if __name__ == "__main__":
    main(*sys.argv[1:3])
