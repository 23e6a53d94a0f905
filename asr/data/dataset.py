"""Reading one batch: the sampler picks the indices, `AudioDataset[indices]` loads, perturbs and pads them.

Shapes: B batch, S samples, U label length. Fault-tolerant: an utterance whose audio cannot be read (or whose
text has characters outside the vocabulary) is skipped with one warning naming its id and file, and listed in
`Batch.skipped`; `BadDataGuard` aborts the run when too many are bad.

Augmentation is reproducible across workers and resumes: the random draw of utterance `i` in epoch `e` comes
from a generator seeded by (seed, e, i), never from worker-local state. With `speed_per_batch` one speed factor
serves the whole batch, drawn from (seed, e, smallest index in the batch): an utterance is in one batch per epoch,
so that names the batch. Stretching every utterance of a duration bucket alike keeps the batch as tightly packed
as the sampler made it; a factor per utterance turns ~5 % padding into ~12 % (docs/RESULTS.md).
"""
from __future__ import annotations

import logging
import signal
from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from asr.audio import AudioLoadError, load_audio
from asr.data.manifest import Utterance
from asr.errors import UserError
from asr.lengths import pad_waves
from asr.model.augment import add_noise, speed_perturb
from asr.text import Tokenizer

log = logging.getLogger(__name__)


@dataclass
class Batch:
    """A padded batch with lengths. waves (B, S) float32 and targets (B, U) int64 are zero-padded."""

    ids: list[str]
    waves: torch.Tensor  # (B, S) float32
    wave_lengths: torch.Tensor  # (B,) int64 samples
    targets: torch.Tensor  # (B, U) int64 token ids, 0 (blank) past each length
    target_lengths: torch.Tensor  # (B,) int64
    texts: list[str]
    skipped: list[str] = field(default_factory=list)  # ids requested but not loaded
    errors: list[str] = field(default_factory=list)  # one message per skipped id (names the id and file)

    def __len__(self) -> int:
        return len(self.ids)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "Batch":
        return replace(self, waves=self.waves.to(device, non_blocking=non_blocking),
                       wave_lengths=self.wave_lengths.to(device, non_blocking=non_blocking),
                       targets=self.targets.to(device, non_blocking=non_blocking),
                       target_lengths=self.target_lengths.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> "Batch":
        """Called by the DataLoader's pin-memory thread (pin_memory=True) so `.to(cuda, non_blocking=True)` overlaps."""
        return replace(self, waves=self.waves.pin_memory(), wave_lengths=self.wave_lengths.pin_memory(),
                       targets=self.targets.pin_memory(), target_lengths=self.target_lengths.pin_memory())


def collate(ids: list[str], waves: list[torch.Tensor], targets: list[list[int]], texts: list[str],
            skipped: list[str] | None = None, errors: list[str] | None = None) -> Batch:
    """Zero-pad waveforms (S,) and token id lists into a Batch; an empty list gives B = 0."""
    wave_pad, wave_lengths = pad_waves(waves)
    target_lengths = torch.tensor([len(t) for t in targets], dtype=torch.int64)
    target_pad = torch.zeros(len(targets), int(target_lengths.max()) if targets else 0, dtype=torch.int64)
    for i, t in enumerate(targets):
        target_pad[i, : len(t)] = torch.as_tensor(t, dtype=torch.int64)
    return Batch(ids=list(ids), waves=wave_pad, wave_lengths=wave_lengths, targets=target_pad,
                 target_lengths=target_lengths, texts=list(texts), skipped=list(skipped or []),
                 errors=list(errors or []))


def utterance_generator(seed: int, epoch: int, index: int, stream: int = 0) -> torch.Generator:
    """The generator for utterance `index` in `epoch` (`stream` > 0: an independent one for another purpose):
    the same in any worker, process or resumed run."""
    key = [seed % (1 << 64), epoch, index] + ([stream] if stream else [])
    state = np.random.SeedSequence(key).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed((int(state[0]) << 31) ^ int(state[1]))


class AudioDataset(Dataset):
    """`dataset[indices] -> Batch`: reads the utterances `indices` (a list from the sampler) as one batch.

    `speed_perturb` factors and `noise_snr_db` are for training data only; leave them at their defaults for
    dev/test. `speed_per_batch`: one factor per batch instead of one per utterance (see the module docstring).
    Transcripts must already be normalized (manifests store normalized text).
    """

    def __init__(self, utts: list[Utterance], tokenizer: Tokenizer, sample_rate: int = 16000,
                 speed_perturb: Sequence[float] = (), noise_snr_db: float | None = None, seed: int = 0,
                 speed_per_batch: bool = False):
        self.utts = list(utts)
        self.tokenizer = tokenizer
        self.sample_rate = int(sample_rate)
        self.speed_factors = [float(f) for f in speed_perturb]
        self.speed_per_batch = bool(speed_per_batch)
        self.noise_snr_db = noise_snr_db
        self.seed = int(seed)
        # Shared memory, so set_epoch in the main process reaches persistent DataLoader workers too
        # (they hold a copy of this object made when they started).
        self._epoch = torch.zeros(1, dtype=torch.int64).share_memory_()
        self._warned: set[str] = set()

    def __len__(self) -> int:
        return len(self.utts)

    @property
    def durations(self) -> list[float]:
        return [u.duration for u in self.utts]

    @property
    def epoch(self) -> int:
        return int(self._epoch[0])

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation draws of `epoch`; call it before iterating the loader for that epoch."""
        self._epoch[0] = int(epoch)

    def _speed_factor(self, g: torch.Generator) -> float:
        return self.speed_factors[int(torch.randint(len(self.speed_factors), (1,), generator=g))]

    def _batch_speed(self, indices: Sequence[int]) -> float | None:
        """The batch's one speed factor (`speed_per_batch`), else None (each utterance draws its own)."""
        if not (self.speed_factors and self.speed_per_batch and len(indices)):
            return None
        return self._speed_factor(utterance_generator(self.seed, self.epoch, min(int(i) for i in indices), stream=1))

    def _augment(self, wave: torch.Tensor, index: int, batch_speed: float | None) -> torch.Tensor:
        if not self.speed_factors and self.noise_snr_db is None:
            return wave
        g = utterance_generator(self.seed, self.epoch, index)
        if self.speed_factors:
            factor = self._speed_factor(g)  # drawn even when the batch's factor is used: noise draws stay put
            wave = speed_perturb(wave, self.sample_rate, factor if batch_speed is None else batch_speed)
        if self.noise_snr_db is not None:
            wave = add_noise(wave, self.noise_snr_db, g)
        return wave

    def _skip(self, utt: Utterance, message: str, skipped: list[str], errors: list[str]) -> None:
        message = " ".join(message.split())  # one line, whatever the decoder library printed
        if utt.id not in self._warned:
            self._warned.add(utt.id)
            log.warning("skipping utterance %s: %s", utt.id, message)
        skipped.append(utt.id)
        errors.append(message)

    def __getitem__(self, indices: Sequence[int]) -> Batch:
        ids, waves, targets, texts, skipped, errors = [], [], [], [], [], []
        batch_speed = self._batch_speed(indices)
        for i in indices:
            utt = self.utts[int(i)]
            try:
                target = self.tokenizer.encode(utt.text)
            except ValueError as exc:
                self._skip(utt, f"{utt.audio_filepath} (utterance {utt.id}): {exc}", skipped, errors)
                continue
            try:
                wave = load_audio(utt.audio_filepath, self.sample_rate, utt_id=utt.id, resample=False)
            except AudioLoadError as exc:
                self._skip(utt, str(exc), skipped, errors)
                continue
            ids.append(utt.id)
            waves.append(self._augment(wave, int(i), batch_speed))
            targets.append(target)
            texts.append(utt.text)
        return collate(ids, waves, targets, texts, skipped, errors)


def _identity(batch: Batch) -> Batch:
    return batch


def _default_signals(_worker_id: int) -> None:
    """In a DataLoader worker: SIGTERM/SIGUSR1 back to their defaults. Workers are forked from a trainer that
    handles both to checkpoint (asr/train/signals.py); a worker that inherited that handler would ignore the
    SIGTERM its DataLoader sends to stop it. Preemption is the trainer's business, not the workers'."""
    for sig in (signal.SIGTERM, signal.SIGUSR1):
        signal.signal(sig, signal.SIG_DFL)


def make_loader(dataset: AudioDataset, sampler, num_workers: int = 0, pin_memory: bool = False) -> DataLoader:
    """A DataLoader whose every item is one Batch: the sampler yields index lists, the dataset reads them.

    The sampler is iterated in the main process; the trainer counts consumed batches itself (`sampler.state_at`).
    Pinning is only requested when CUDA is available (it would fail on CPU-only machines).
    """
    # A private generator: otherwise every new DataLoader iterator draws its base seed from the *global* torch
    # RNG, and a run resumed mid-epoch would draw it at a different point than the uninterrupted run, changing
    # dropout masks afterwards (exact resume breaks). The dataset seeds its own augmentation per utterance.
    return DataLoader(dataset, batch_size=None, sampler=sampler, num_workers=num_workers, collate_fn=_identity,
                      pin_memory=bool(pin_memory and torch.cuda.is_available()),
                      persistent_workers=num_workers > 0, generator=torch.Generator().manual_seed(0),
                      worker_init_fn=_default_signals if num_workers > 0 else None)


class BadDataError(UserError):
    """Too many utterances could not be read; the message names the first few."""


class BadDataGuard:
    """Counts distinct skipped utterances; raises BadDataError once more than `max_fraction` of `total` are bad."""

    def __init__(self, max_fraction: float, total: int):
        self.max_fraction = float(max_fraction)
        self.total = int(total)
        self.bad: dict[str, str] = {}  # id -> message, in order of discovery

    @property
    def count(self) -> int:
        return len(self.bad)

    def update(self, batch: Batch) -> None:
        for k, uid in enumerate(batch.skipped):
            msg = batch.errors[k] if k < len(batch.errors) else f"utterance {uid}"
            self.bad.setdefault(uid, msg)
        if self.total > 0 and self.count > self.max_fraction * self.total:
            first = "; ".join(f"{uid}: {msg}" for uid, msg in list(self.bad.items())[:3])
            raise BadDataError(f"{self.count} of {self.total} utterances could not be read (first: {first}); fix them "
                               f"(see `asr-data doctor`) or raise data.max_bad_fraction (now {self.max_fraction})")
