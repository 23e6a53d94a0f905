"""Duration-bucketed dynamic batches: which utterances go together, in what order; stateful and DDP-aware.

A batch's budget is its *padded* cost, ``len(batch) * max(durations in batch) <= max_seconds``, which is what
the GPU actually computes on. Utterances are grouped into buckets (quantiles of the duration distribution) so a
batch holds utterances of similar length and little of it is padding (see `padding_ratio`).

Order of one epoch (deterministic given ``seed`` and the epoch number, identical on every rank):

1. shuffle the utterances inside each bucket, 2. cut each bucket greedily into batches within the budget,
3. shuffle the order of all batches across buckets. With ``sortagrad`` the first epoch (epoch 0) instead runs
in ascending duration order without shuffling (DeepSpeech2's SortaGrad); with ``shuffle=False`` (evaluation)
or ``ascending=True`` (SpeechBrain's CRDNN recipes train so) every epoch does.

DDP: the global batch order is dealt round-robin, batch ``j`` to rank ``j % world_size``. Every rank must run the
same number of steps, so the last ``len(global) % world_size`` batches of the global order are **dropped** (not
padded with repeats, which would weight some utterances twice). The global order is reshuffled every epoch, so a
different few are dropped each time; with ``world_size == 1`` nothing is dropped.

Resuming mid-epoch
------------------
A DataLoader with workers pulls indices from the sampler ahead of the loop (``prefetch_factor * num_workers``
batches), so the sampler's own count of yielded batches overshoots what was trained on. The trainer therefore
counts the batches it has *consumed* in the epoch itself (``TrainState.batches_in_epoch``) and saves
``sampler.state_at(epoch, consumed)``. (``state_dict(consumed=k)``, with ``k`` counted from the start of the
current pass, gives the same for a caller that counts per pass.) So the loop is just::

    sampler.load_state_dict(saved)          # on resume (all ranks may load rank 0's state: positions agree)
    sampler.set_epoch(epoch)                # same epoch as saved -> keeps the restored position
    for batch in loader:                    # yields only the batches not yet consumed
        ...train...; consumed += 1
        saved = sampler.state_at(epoch, consumed)

A pass begins at its first ``next()``, not at ``iter()`` (torch's multi-worker DataLoader calls ``iter()`` twice).
``set_epoch`` with a *different* epoch resets the position to 0; once a pass is exhausted, ``state_dict()``
reports position 0 again (the next pass starts a fresh run of the epoch unless ``set_epoch`` moves on).
"""
from __future__ import annotations

import hashlib
from typing import Iterator, Sequence

import numpy as np

from asr.errors import UserError


class SamplerError(UserError, ValueError):
    """Bad sampler input (an utterance longer than the batch budget) or a state that cannot be resumed."""


def padding_ratio(batches: Sequence[Sequence[int]], durations: Sequence[float]) -> float:
    """Fraction of the padded seconds of `batches` that is padding (0 = no padding at all)."""
    padded = real = 0.0
    for b in batches:
        if len(b):
            ds = [float(durations[i]) for i in b]
            padded += len(ds) * max(ds)
            real += sum(ds)
    return (padded - real) / padded if padded > 0 else 0.0


def _greedy(indices: Sequence[int], durations: Sequence[float], max_seconds: float) -> list[list[int]]:
    """Cut `indices` (in the given order) into consecutive batches with len * max duration <= max_seconds."""
    batches: list[list[int]] = []
    cur: list[int] = []
    cur_max = 0.0
    for i in indices:
        d = durations[i]
        new_max = d if d > cur_max else cur_max
        if cur and (len(cur) + 1) * new_max > max_seconds:
            batches.append(cur)
            cur, new_max = [], d
        cur.append(i)
        cur_max = new_max
    if cur:
        batches.append(cur)
    return batches


class DurationBucketSampler:
    """Yields lists of utterance indices (one list = one batch) for this rank; see the module docstring.

    durations: seconds per utterance, indexed like the dataset. `len(sampler)` is the number of batches this
    rank yields in a full pass of the current epoch (it can differ slightly between epochs).
    """

    def __init__(self, durations: Sequence[float], max_seconds: float, num_buckets: int = 10, shuffle: bool = True,
                 seed: int = 0, sortagrad: bool = False, rank: int = 0, world_size: int = 1,
                 ascending: bool = False):
        if max_seconds <= 0:
            raise SamplerError(f"max_seconds must be > 0, got {max_seconds}")
        if num_buckets < 1:
            raise SamplerError(f"num_buckets must be >= 1, got {num_buckets}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise SamplerError(f"rank {rank} is not in [0, world_size={world_size})")
        self.durations = [float(d) for d in durations]
        for i, d in enumerate(self.durations):
            if not (0 <= d <= max_seconds):  # also catches NaN
                raise SamplerError(f"utterance index {i} has duration {d} s, outside [0, max_seconds={max_seconds}]; "
                                   f"filter utterances longer than the batch budget before sampling")
        self.max_seconds = float(max_seconds)
        self.num_buckets = int(num_buckets)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.sortagrad = bool(sortagrad)
        self.ascending = bool(ascending)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.epoch = 0
        self._buckets = self._make_buckets()
        self._fingerprint = hashlib.sha1(np.asarray(self.durations, dtype=np.float64).tobytes()).hexdigest()[:16]
        self._cache: tuple[tuple, list[list[int]]] | None = None
        self._start = 0  # position (within this rank's epoch) the next pass starts at
        self._pass_id = 0  # identifies the current pass so a stale iterator cannot touch the counters
        self._pass_start: int | None = None  # where the current/last pass began; None: no pass since reset
        self._pass_yielded = 0
        self._pass_done = False

    def _make_buckets(self) -> list[list[int]]:
        if not self.durations:
            return []
        d = np.asarray(self.durations)
        edges = np.quantile(d, np.linspace(0.0, 1.0, self.num_buckets + 1)[1:-1])
        which = np.searchsorted(edges, d, side="right")
        buckets = [np.flatnonzero(which == b).tolist() for b in range(self.num_buckets)]
        return [b for b in buckets if b]

    # ---- order -------------------------------------------------------------------------------------------
    def global_batches(self, epoch: int) -> list[list[int]]:
        """All batches of `epoch` in global order (before dealing to ranks)."""
        if epoch < 0:
            raise SamplerError(f"epoch must be >= 0, got {epoch}")
        if not self.shuffle or self.ascending or (self.sortagrad and epoch == 0):
            order = sorted(range(len(self.durations)), key=lambda i: (self.durations[i], i))
            return _greedy(order, self.durations, self.max_seconds)
        # (seed, epoch) as entropy rather than seed + epoch, so seed 1/epoch 0 and seed 0/epoch 1 differ.
        rng = np.random.default_rng([self.seed % (1 << 64), epoch])
        batches: list[list[int]] = []
        for bucket in self._buckets:
            perm = [bucket[j] for j in rng.permutation(len(bucket))]
            batches.extend(_greedy(perm, self.durations, self.max_seconds))
        return [batches[j] for j in rng.permutation(len(batches))]

    def rank_batches(self, epoch: int | None = None) -> list[list[int]]:
        """This rank's batches of `epoch` (default: the current one), in the order they are yielded."""
        epoch = self.epoch if epoch is None else epoch
        key = (epoch, self.seed)
        if self._cache is None or self._cache[0] != key:
            glob = self.global_batches(epoch)
            n = len(glob) // self.world_size
            self._cache = (key, [glob[self.rank + k * self.world_size] for k in range(n)])
        return self._cache[1]

    def __len__(self) -> int:
        return len(self.rank_batches())

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch the next pass runs; a different epoch than the current one resets the position."""
        if epoch < 0:
            raise SamplerError(f"epoch must be >= 0, got {epoch}")
        if epoch != self.epoch:
            self.epoch = int(epoch)
            self._start = 0
            self._pass_start = None

    @property
    def start_batch(self) -> int:
        """Position (batches of this epoch on this rank) the next pass starts at: 0, or a restored position."""
        return self._start

    def __iter__(self) -> Iterator[list[int]]:
        """A pass over the rest of the current epoch. A generator: the pass (and the restored position it
        uses up) begins at the first `next()`, not at `iter()`. torch's multi-worker DataLoader iterator calls
        `iter()` on its batch sampler twice while starting (in `_BaseDataLoaderIter.__init__` and again in
        `_reset`) and draws only from the second; an eager `iter()` would let the first, discarded iterator use
        up a restored mid-epoch position, and the resumed run would start the epoch over."""
        batches = self.rank_batches()
        start = min(self._start, len(batches))
        self._start = 0
        self._pass_id += 1
        pass_id = self._pass_id
        self._pass_start, self._pass_yielded, self._pass_done = start, 0, False
        for b in batches[start:]:
            if pass_id == self._pass_id:
                self._pass_yielded += 1
            yield list(b)
        if pass_id == self._pass_id:
            self._pass_done = True

    # ---- state -------------------------------------------------------------------------------------------
    def state_dict(self, consumed: int | None = None) -> dict:
        """Position to resume from. `consumed`: batches the caller has consumed from the current pass (see the
        module docstring); None uses the batches yielded so far, which is exact only without prefetching."""
        if self._pass_start is None:
            if consumed not in (None, 0):
                raise SamplerError(f"consumed={consumed} but no pass over the sampler has started")
            position = self._start
        elif consumed is None:
            position = 0 if self._pass_done else self._pass_start + self._pass_yielded
        else:
            if not 0 <= consumed <= self._pass_yielded:
                raise SamplerError(f"consumed={consumed} is outside [0, {self._pass_yielded}] (batches yielded in "
                                   f"this pass); count the batches consumed since the pass began")
            position = self._pass_start + consumed
        return {"epoch": self.epoch, "batches_yielded": position, "seed": self.seed, "rank": self.rank,
                **self._signature()}

    def state_at(self, epoch: int, position: int) -> dict:
        """The state to resume from `position` batches into `epoch` (what a training loop that counts the batches
        it consumed knows exactly, however far its DataLoader prefetched)."""
        return {"epoch": int(epoch), "batches_yielded": int(position), "seed": self.seed, "rank": self.rank,
                **self._signature()}

    def _signature(self) -> dict:
        """What a mid-epoch position depends on besides seed and epoch."""
        return {"world_size": self.world_size, "max_seconds": self.max_seconds, "num_buckets": self.num_buckets,
                "shuffle": self.shuffle, "sortagrad": self.sortagrad, "ascending": self.ascending,
                "num_utterances": len(self.durations),
                "fingerprint": self._fingerprint}

    def load_state_dict(self, sd: dict) -> None:
        """Restore epoch, seed and position so the next pass yields the rest of that epoch.

        A mid-epoch position is only meaningful for the same data, budget and world size; a mismatch raises
        SamplerError naming the key. `rank` is not restored (each rank keeps its own).
        """
        position = int(sd["batches_yielded"])
        if position > 0:
            for key, now in self._signature().items():
                if key in sd and sd[key] != now:
                    raise SamplerError(f"cannot resume mid-epoch: sampler {key} changed (saved {sd[key]!r}, now "
                                       f"{now!r}); restore the original data and settings, or start the epoch over")
        self.epoch = int(sd["epoch"])
        self.seed = int(sd["seed"])
        n = len(self.rank_batches())
        if not 0 <= position <= n:
            raise SamplerError(f"saved sampler position {position} is outside [0, {n}] for epoch {self.epoch}")
        self._start = position
        self._pass_start = None
