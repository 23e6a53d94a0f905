"""asr.train.distributed: teardown waits for the peers only after a clean finish (a real one-rank gloo group)."""
from __future__ import annotations

import pytest
import torch.distributed as dist

from asr.train import distributed as dist_utils


@pytest.fixture
def gloo_group(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    yield
    if dist.is_initialized():
        dist.destroy_process_group()


@pytest.mark.parametrize("synchronize", [True, False])
def test_teardown_barrier_only_after_a_clean_finish(gloo_group, monkeypatch, synchronize):
    calls = []
    real_barrier = dist.barrier
    monkeypatch.setattr(dist, "barrier", lambda *a, **k: (calls.append("barrier"), real_barrier(*a, **k)))
    dist_utils.teardown(synchronize=synchronize)
    assert not dist.is_initialized()
    assert calls == (["barrier"] if synchronize else [])


def test_teardown_without_a_group_is_a_no_op():
    assert not dist.is_initialized()
    dist_utils.teardown()
