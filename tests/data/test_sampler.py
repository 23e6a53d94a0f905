"""DurationBucketSampler: coverage, budget, determinism, SortaGrad, DDP dealing and exact mid-epoch resume."""
from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader, Dataset

from asr.data.sampler import DurationBucketSampler, SamplerError, padding_ratio
from asr.errors import UserError

durations_st = st.lists(st.floats(min_value=0.05, max_value=8.0, allow_nan=False), min_size=0, max_size=120)
budget_st = st.floats(min_value=8.0, max_value=40.0)
FAST = settings(max_examples=60, deadline=None)


def _durations(n: int, seed: int = 0) -> list[float]:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, generator=g) * 9.0 + 0.5).tolist()


@FAST
@given(durations_st, budget_st, st.integers(1, 12), st.integers(0, 3), st.integers(0, 2**40), st.booleans())
def test_every_index_once_and_budget_holds(durs, budget, buckets, epoch, seed, sortagrad):
    s = DurationBucketSampler(durs, budget, num_buckets=buckets, seed=seed, sortagrad=sortagrad)
    s.set_epoch(epoch)
    batches = list(s)
    assert len(batches) == len(s)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(durs)))
    for b in batches:
        assert b and len(b) * max(durs[i] for i in b) <= budget


@FAST
@given(durations_st, budget_st, st.integers(1, 4), st.integers(0, 3), st.integers(0, 100))
def test_ranks_are_disjoint_equal_and_drop_only_the_remainder(durs, budget, world, epoch, seed):
    ranks = [DurationBucketSampler(durs, budget, num_buckets=4, seed=seed, rank=r, world_size=world)
             for r in range(world)]
    for s in ranks:
        s.set_epoch(epoch)
    per_rank = [list(s) for s in ranks]
    assert len({len(b) for b in per_rank}) == 1 and all(len(b) == len(s) for b, s in zip(per_rank, ranks))
    flat = [i for batches in per_rank for b in batches for i in b]
    assert len(flat) == len(set(flat))
    glob = ranks[0].global_batches(epoch)
    kept = len(glob) - len(glob) % world
    # Round-robin: global batch j goes to rank j % world; only the last (len % world) global batches are dropped.
    assert [b for b in itertools.chain(*zip(*per_rank))] == glob[:kept]
    dropped = {i for b in glob[kept:] for i in b}
    assert set(flat) | dropped == set(range(len(durs)))


@FAST
@given(durations_st, budget_st, st.integers(1, 3), st.integers(0, 2), st.data())
def test_first_k_then_resume_equals_full_epoch(durs, budget, world, epoch, data):
    rank = data.draw(st.integers(0, world - 1))
    make = lambda: DurationBucketSampler(durs, budget, num_buckets=3, seed=7, rank=rank, world_size=world)  # noqa: E731
    ref = make()
    ref.set_epoch(epoch)
    full = list(ref)
    k = data.draw(st.integers(0, len(full)))
    a = make()
    a.set_epoch(epoch)
    it = iter(a)
    first = list(itertools.islice(it, k))
    sd_yielded = a.state_dict()  # nothing prefetched here, so yielded == consumed
    sd_consumed = a.state_dict(consumed=k)
    assert sd_yielded["batches_yielded"] == sd_consumed["batches_yielded"] == k
    b = make()
    b.load_state_dict(sd_consumed)
    b.set_epoch(epoch)  # the same epoch keeps the restored position
    assert b.start_batch == k
    assert first + list(b) == full
    # After the resumed pass finishes, the position resets: the next pass is the whole epoch again.
    assert b.state_dict()["batches_yielded"] == 0
    assert list(b) == full


@pytest.mark.parametrize("epoch", [0, 3])
def test_state_at_resumes_exactly_where_the_loop_counted(epoch):
    """`state_at(epoch, n)` (what the trainer saves: the batches its loop consumed, whatever the DataLoader
    prefetched) resumes at batch n of that epoch: the resumed pass is the epoch's batches from n on, for every n
    (0 and the epoch's end included), on every rank, and agrees with `state_dict(consumed=n)`."""
    durs = _durations(200)
    for rank in (0, 1):
        make = lambda: DurationBucketSampler(durs, 20.0, num_buckets=4, seed=3, rank=rank, world_size=2)  # noqa: E731
        ref = make()
        ref.set_epoch(epoch)
        full = list(ref)
        for n in range(len(full) + 1):
            saver = make()
            saver.set_epoch(epoch)
            sd = saver.state_at(epoch, n)
            it = iter(saver)
            list(itertools.islice(it, n))
            assert sd == saver.state_dict(consumed=n)
            resumed = make()
            resumed.load_state_dict(sd)
            resumed.set_epoch(epoch)
            assert resumed.start_batch == n and list(resumed) == full[n:], (rank, n)
        with pytest.raises(SamplerError, match="outside"):
            make().load_state_dict(make().state_at(epoch, len(full) + 1))


def test_resume_twice_counts_from_the_start_of_each_pass():
    durs = _durations(300)
    full = list(DurationBucketSampler(durs, 30.0, seed=1))
    s = DurationBucketSampler(durs, 30.0, seed=1)
    got = list(itertools.islice(iter(s), 5))
    sd = s.state_dict(consumed=5)
    s2 = DurationBucketSampler(durs, 30.0, seed=1)
    s2.load_state_dict(sd)
    it = iter(s2)
    got += list(itertools.islice(it, 7))
    sd2 = s2.state_dict(consumed=7)  # counted within the resumed pass; the sampler adds its offset (5)
    assert sd2["batches_yielded"] == 12
    s3 = DurationBucketSampler(durs, 30.0, seed=1)
    s3.load_state_dict(sd2)
    assert got + list(s3) == full


class _Indices(Dataset):
    def __getitem__(self, indices):
        return list(indices)


def test_consumed_is_exact_with_prefetching_workers():
    durs = _durations(400, seed=2)
    full = list(DurationBucketSampler(durs, 20.0, seed=3))
    s = DurationBucketSampler(durs, 20.0, seed=3)
    loader = DataLoader(_Indices(), batch_size=None, sampler=s, num_workers=1, prefetch_factor=4)
    got = []
    for k, batch in enumerate(loader, 1):
        got.append(batch)
        if k == 6:
            sd = s.state_dict(consumed=k)
            overshoot = s.state_dict()["batches_yielded"]
            break
    assert sd["batches_yielded"] == 6 and overshoot > 6  # the worker pulled indices ahead of the loop
    r = DurationBucketSampler(durs, 20.0, seed=3)
    r.load_state_dict(sd)
    assert got + list(r) == full


def test_same_seed_same_order_other_epoch_or_seed_differs():
    durs = _durations(200)
    a, b = DurationBucketSampler(durs, 25.0, seed=5), DurationBucketSampler(durs, 25.0, seed=5)
    assert list(a) == list(b)
    e0 = list(a)
    a.set_epoch(1)
    assert list(a) != e0
    assert list(DurationBucketSampler(durs, 25.0, seed=6)) != e0


def test_sortagrad_first_epoch_ascending_then_shuffled():
    durs = _durations(200)
    s = DurationBucketSampler(durs, 25.0, seed=5, sortagrad=True)
    e0 = list(s)
    flat = [durs[i] for b in e0 for i in b]
    assert flat == sorted(flat)
    s.set_epoch(1)
    flat1 = [durs[i] for b in s for i in b]
    assert flat1 != sorted(flat1)
    # shuffle=False (evaluation): ascending every epoch.
    ev = DurationBucketSampler(durs, 25.0, shuffle=False)
    ev.set_epoch(3)
    assert list(ev) == e0


def test_ascending_order_every_epoch_and_resume_refuses_a_change_of_order():
    """data.order=ascending: every epoch is the evaluation order (ascending, unshuffled), whatever the seed; a
    mid-epoch position saved under one order is not resumed under the other."""
    durs = _durations(200)
    s = DurationBucketSampler(durs, 25.0, seed=5, ascending=True)
    ev = DurationBucketSampler(durs, 25.0, shuffle=False)
    for epoch in (0, 1, 4):
        s.set_epoch(epoch)
        ev.set_epoch(epoch)
        assert list(s) == list(ev)
    saved = s.state_at(4, 3)
    shuffled = DurationBucketSampler(durs, 25.0, seed=5)
    with pytest.raises(ValueError, match="ascending changed"):
        shuffled.load_state_dict(saved)


def test_bucketing_keeps_padding_low():
    durs = _durations(1000, seed=4)
    s = DurationBucketSampler(durs, 60.0, num_buckets=10, seed=0)
    one_bucket = DurationBucketSampler(durs, 60.0, num_buckets=1, seed=0)
    assert padding_ratio(list(s), durs) < 0.1 < padding_ratio(list(one_bucket), durs)
    assert padding_ratio([], durs) == 0.0
    assert padding_ratio([[0, 1]], [1.0, 3.0]) == pytest.approx(2.0 / 6.0)


def test_too_long_utterance_is_named():
    with pytest.raises(ValueError, match=r"index 2 .*duration 12\.5"):
        DurationBucketSampler([1.0, 2.0, 12.5], max_seconds=10.0)
    with pytest.raises(UserError, match="rank 2"):
        DurationBucketSampler([1.0], 10.0, rank=2, world_size=2)


def test_state_checks():
    durs = _durations(100)
    s = DurationBucketSampler(durs, 20.0, seed=1)
    it = iter(s)
    next(it), next(it)
    with pytest.raises(SamplerError, match="consumed=3"):
        s.state_dict(consumed=3)
    sd = s.state_dict(consumed=1)
    assert sd["epoch"] == 0 and sd["batches_yielded"] == 1 and sd["seed"] == 1
    other = DurationBucketSampler(durs[:-1], 20.0, seed=1)
    with pytest.raises(SamplerError, match="num_utterances"):
        other.load_state_dict(sd)
    ddp = DurationBucketSampler(durs, 20.0, seed=1, rank=0, world_size=2)
    with pytest.raises(SamplerError, match="world_size"):
        ddp.load_state_dict(sd)
    # set_epoch to another epoch discards a restored position.
    r = DurationBucketSampler(durs, 20.0, seed=1)
    r.load_state_dict(sd)
    r.set_epoch(1)
    assert r.start_batch == 0 and len(list(r)) == len(r)


def test_restored_position_survives_a_discarded_iterator():
    """torch's multi-worker DataLoader calls iter() on its batch sampler twice while starting and draws from the
    second iterator only: the first, discarded one must not use up the restored position."""
    durs = _durations(200, seed=4)
    full = list(DurationBucketSampler(durs, 20.0, seed=5))
    s = DurationBucketSampler(durs, 20.0, seed=5)
    s.load_state_dict({**DurationBucketSampler(durs, 20.0, seed=5).state_dict(), "batches_yielded": 3})
    iter(s)  # discarded, never advanced
    assert list(iter(s)) == full[3:]


def test_restored_position_through_a_dataloader_with_workers():
    durs = _durations(200, seed=6)
    full = list(DurationBucketSampler(durs, 20.0, seed=7))
    s = DurationBucketSampler(durs, 20.0, seed=7)
    s.load_state_dict({**s.state_dict(), "batches_yielded": 4})
    loader = DataLoader(_Indices(), batch_size=None, sampler=s, num_workers=1, prefetch_factor=2)
    assert list(loader) == full[4:]
