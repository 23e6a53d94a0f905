"""Which torch device a command runs on (training and inference alike)."""
from __future__ import annotations

import torch

from asr.config import ConfigError


def pick_device(spec: str, key: str = "trainer.device", local_rank: int = 0) -> torch.device:
    """"auto" -> this rank's GPU if there is one, else the CPU; `key` names the config key in errors."""
    if spec == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    if spec.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"{key}: {spec!r} asked for but CUDA is not available; use {key}=cpu")
    if spec == "cuda":
        return torch.device(f"cuda:{local_rank}")
    try:
        return torch.device(spec)
    except RuntimeError:
        raise ConfigError(f"{key}: {spec!r} is not a device; use auto, cpu, cuda or cuda:N") from None
