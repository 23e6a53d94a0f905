"""DDP plumbing for `torchrun`: rank discovery, process group, reductions. Single-process runs need none of it."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def launched_rank() -> int:
    """This process's global rank as torchrun announced it (0 without torchrun); usable before `setup`."""
    return int(os.environ.get("RANK", "0")) if int(os.environ.get("WORLD_SIZE", "1")) > 1 else 0


def stop_with_launcher() -> None:
    """A rank started by torchrun gets SIGTERM when its launcher dies (Linux's parent-death signal), and so stops
    at the next step boundary with a checkpoint (asr/train/signals.py) and frees the run directory's lock. torchrun
    starts ranks in sessions of their own: a scheduler that kill -9s only the job's main process (the launcher)
    used to leave them training on, holding the lock, with no end in sight (issue 25)."""
    if "TORCHELASTIC_RUN_ID" not in os.environ or not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    pr_set_pdeathsig = 1  # <linux/prctl.h>
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() == 1:  # the launcher was gone before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def setup(device_type: str) -> DistInfo:
    """Initialise the process group when launched by torchrun (WORLD_SIZE > 1): NCCL on CUDA, gloo on CPU. A rank
    launched by torchrun also stops when its launcher dies (`stop_with_launcher`)."""
    stop_with_launcher()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return info


def teardown(synchronize: bool = True) -> None:
    """Destroy the process group. After a clean finish every rank first waits at a barrier, so no rank tears its
    gloo connections down while a peer is still finishing its last collective or checkpoint (a rank that left
    early made the other abort at exit now and then: "terminate called without an active exception"). After an
    error there is no barrier: the failed rank must not wait for peers that may never arrive; torchrun stops them."""
    if dist.is_available() and dist.is_initialized():
        if synchronize:
            dist.barrier()
        dist.destroy_process_group()


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """Sum a tensor across ranks (no-op without a process group); returns the summed tensor."""
    if dist.is_available() and dist.is_initialized():
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank if `flag` is True on any rank (so all ranks stop or checkpoint together)."""
    t = all_reduce_sum(torch.tensor([1.0 if flag else 0.0], device=device))
    return bool(t.item() > 0)


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
