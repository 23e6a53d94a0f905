"""AudioDataset / Batch / make_loader / BadDataGuard on real FLAC files written to tmp_path."""
from __future__ import annotations

import logging

import pytest
import soundfile as sf
import torch
from conftest import tone, write_librispeech_tree

from asr.data.dataset import AudioDataset, BadDataError, BadDataGuard, Batch, make_loader
from asr.data.manifest import Utterance
from asr.data.sampler import DurationBucketSampler
from asr.text import CharTokenizer


@pytest.fixture
def corpus(tmp_path):
    truth = write_librispeech_tree(tmp_path, "train", utts_per_chapter=3)
    utts = [Utterance(id=t["id"], audio_filepath=t["path"], duration=t["frames"] / 16000, text=t["text"],
                      speaker=t["speaker"]) for t in truth]
    return utts, {t["id"]: t for t in truth}


def _with_bad(tmp_path, utts):
    corrupt = tmp_path / "corrupt.flac"
    corrupt.write_bytes(b"fLaC" + bytes(range(256)) * 4)
    return utts + [Utterance("missing-0001", str(tmp_path / "nope.flac"), 1.0, "HELLO"),
                   Utterance("corrupt-0002", str(corrupt), 1.0, "WORLD")]


def test_collate_shapes_lengths_zero_padding_and_targets(corpus):
    utts, truth = corpus
    tok = CharTokenizer()
    ds = AudioDataset(utts, tok)
    idx = [0, 3, 5, 7]
    b = ds[idx]
    assert isinstance(b, Batch) and len(b) == 4 and b.skipped == []
    assert b.ids == [utts[i].id for i in idx] and b.texts == [utts[i].text for i in idx]
    assert b.waves.dtype == torch.float32 and b.waves.shape == (4, max(truth[u]["frames"] for u in b.ids))
    assert b.wave_lengths.dtype == torch.int64 and b.target_lengths.dtype == torch.int64
    assert b.wave_lengths.tolist() == [truth[u]["frames"] for u in b.ids]
    assert b.targets.shape == (4, max(len(utts[i].text) for i in idx))
    for k, uid in enumerate(b.ids):
        n, u = int(b.wave_lengths[k]), int(b.target_lengths[k])
        ref, _ = sf.read(truth[uid]["path"], dtype="float32")
        assert torch.allclose(b.waves[k, :n], torch.from_numpy(ref))
        assert not b.waves[k, n:].any() and not b.targets[k, u:].any()
        assert tok.decode(b.targets[k, :u].tolist()) == truth[uid]["text"]


def test_missing_and_corrupt_files_are_skipped_with_one_warning(corpus, tmp_path, caplog):
    utts = _with_bad(tmp_path, corpus[0])
    ds = AudioDataset(utts, CharTokenizer())
    bad = [len(utts) - 2, len(utts) - 1]
    with caplog.at_level(logging.WARNING, logger="asr.data.dataset"):
        b = ds[[0, *bad, 1]]
        ds[bad]  # the second time: no new warnings
    assert b.ids == [utts[0].id, utts[1].id] and b.skipped == ["missing-0001", "corrupt-0002"]
    assert len(b.errors) == 2 and "nope.flac" in b.errors[0] and "corrupt.flac" in b.errors[1]
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2
    assert "missing-0001" in warnings[0] and "nope.flac" in warnings[0]
    assert "corrupt-0002" in warnings[1] and "corrupt.flac" in warnings[1]
    empty = ds[bad]
    assert len(empty) == 0 and empty.waves.shape == (0, 0) and empty.targets.shape == (0, 0)
    assert empty.skipped == ["missing-0001", "corrupt-0002"]


def test_wrong_sample_rate_and_unknown_characters_are_skipped(corpus, tmp_path):
    utts = corpus[0]
    path8k = tmp_path / "rate-0001.flac"
    sf.write(path8k, tone(0.5, 8000), 8000, format="FLAC", subtype="PCM_16")
    ds = AudioDataset([utts[0], Utterance("rate-0001", str(path8k), 0.5, "HI"),
                       Utterance("chars-0002", utts[1].audio_filepath, 1.0, "hello!")], CharTokenizer())
    b = ds[[0, 1, 2]]
    assert b.ids == [utts[0].id] and b.skipped == ["rate-0001", "chars-0002"]
    assert "8000 Hz" in b.errors[0] and "chars-0002" in b.errors[1]


def test_bad_data_guard(corpus, tmp_path):
    utts = _with_bad(tmp_path, corpus[0])
    ds = AudioDataset(utts, CharTokenizer())
    bad = [len(utts) - 2, len(utts) - 1]
    lenient = BadDataGuard(max_fraction=2 / len(utts), total=len(utts))
    lenient.update(ds[[0, *bad]])
    lenient.update(ds[bad])  # the same ids again (a later epoch) do not count twice
    assert lenient.count == 2
    strict = BadDataGuard(max_fraction=0.1, total=len(utts))
    strict.update(ds[[0, bad[0]]])  # 1 of 14 is below 10%
    with pytest.raises(BadDataError) as err:
        strict.update(ds[[bad[1]]])
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"2 of {len(utts)} utterances could not be read")
    assert "missing-0001" in msg and "nope.flac" in msg and "corrupt-0002" in msg
    assert "asr-data doctor" in msg and "data.max_bad_fraction" in msg


def test_speed_perturb_is_reproducible_per_seed_epoch_and_index(corpus):
    utts, truth = corpus
    ds = AudioDataset(utts, CharTokenizer(), speed_perturb=(0.9, 1.1), seed=11)
    idx = list(range(len(utts)))
    e0 = ds[idx]
    frames = torch.tensor([truth[u]["frames"] for u in e0.ids])
    ratio = frames / e0.wave_lengths
    assert torch.all(((ratio - 0.9).abs() < 0.01) | ((ratio - 1.1).abs() < 0.01))
    assert ((ratio - 1.1).abs() < 0.01).any() and ((ratio - 0.9).abs() < 0.01).any()
    again = AudioDataset(utts, CharTokenizer(), speed_perturb=(0.9, 1.1), seed=11)
    assert torch.equal(again[idx].waves, e0.waves)
    # An utterance draws the same factor whatever batch it lands in.
    assert torch.equal(again[[3]].waves[0, : int(e0.wave_lengths[3])], e0.waves[3, : int(e0.wave_lengths[3])])
    ds.set_epoch(1)
    assert not torch.equal(ds[idx].wave_lengths, e0.wave_lengths)
    plain = AudioDataset(utts, CharTokenizer())  # dev/test: no perturbation
    assert plain[idx].wave_lengths.tolist() == frames.tolist()


def test_speed_per_batch_stretches_the_whole_batch_alike(corpus):
    utts, truth = corpus
    idx = list(range(len(utts)))
    factors = set()
    for epoch in range(6):
        ds = AudioDataset(utts, CharTokenizer(), speed_perturb=(0.9, 1.0, 1.1), seed=11, speed_per_batch=True)
        ds.set_epoch(epoch)
        batch = ds[idx]
        ratio = torch.tensor([truth[u]["frames"] for u in batch.ids]) / batch.wave_lengths
        assert (ratio - ratio[0]).abs().max() < 0.01  # one factor for every utterance of the batch
        factor = min((0.9, 1.0, 1.1), key=lambda f: abs(f - float(ratio[0])))
        assert abs(float(ratio[0]) - factor) < 0.01
        factors.add(factor)
        again = AudioDataset(utts, CharTokenizer(), speed_perturb=(0.9, 1.0, 1.1), seed=11, speed_per_batch=True)
        again.set_epoch(epoch)
        assert torch.equal(again[idx].waves, batch.waves)  # reproducible per seed, epoch and batch
    assert len(factors) > 1  # the factor is drawn, not fixed


def test_noise_is_reproducible(corpus):
    utts = corpus[0]
    a = AudioDataset(utts, CharTokenizer(), noise_snr_db=20.0, seed=1)[[0, 1]]
    b = AudioDataset(utts, CharTokenizer(), noise_snr_db=20.0, seed=1)[[0, 1]]
    clean = AudioDataset(utts, CharTokenizer())[[0, 1]]
    assert torch.equal(a.waves, b.waves) and not torch.equal(a.waves, clean.waves)
    assert not a.waves[0, int(a.wave_lengths[0]):].any()  # padding stays zero


def test_loader_with_a_worker_matches_in_process_across_epochs(corpus, tmp_path):
    utts = _with_bad(tmp_path, corpus[0])
    results = {}
    for workers in (0, 1):
        ds = AudioDataset(utts, CharTokenizer(), speed_perturb=(0.9, 1.0, 1.1), seed=5)
        sampler = DurationBucketSampler(ds.durations, 4.0, num_buckets=3, seed=2)
        loader = make_loader(ds, sampler, num_workers=workers, pin_memory=True)
        assert len(loader) == len(sampler)
        epochs = []
        for epoch in range(2):
            sampler.set_epoch(epoch)
            ds.set_epoch(epoch)  # reaches the persistent worker through shared memory
            epochs.append([(b.ids, b.skipped, b.waves.clone(), b.targets.clone()) for b in loader])
        results[workers] = epochs
    for e0, e1 in zip(results[0], results[1]):
        assert len(e0) == len(e1)
        for (ids0, sk0, w0, t0), (ids1, sk1, w1, t1) in zip(e0, e1):
            # Same utterances, same speed factors and epoch; the waves may differ in the last bit (seen: 6e-8):
            # a worker runs torch with one thread, the main process with several, and the resampling
            # convolution's summation order depends on that. A wrong factor or epoch differs by far more.
            assert ids0 == ids1 and sk0 == sk1 and torch.equal(t0, t1)
            assert w0.shape == w1.shape and torch.allclose(w0, w1, rtol=0, atol=1e-6)
    lengths = [[w.shape[1] for *_, w, _ in batches] for batches in results[0]]
    assert lengths[0] != lengths[1]  # a new epoch: new order and new speed factors


def test_batch_to_and_pin_memory(corpus):
    b = AudioDataset(corpus[0], CharTokenizer())[[0, 1]]
    moved = b.to("cpu")
    assert moved.ids == b.ids and torch.equal(moved.waves, b.waves)
    if torch.cuda.is_available():
        assert b.pin_memory().waves.is_pinned()


class _WorkerSignals(torch.utils.data.Dataset):
    def __getitem__(self, indices):
        import signal
        return [signal.getsignal(signal.SIGTERM) == signal.SIG_DFL, signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL]


def test_workers_do_not_inherit_the_trainers_signal_handlers():
    """A worker forked while the trainer handles SIGTERM (to checkpoint) must still die of the SIGTERM its
    DataLoader sends it; make_loader resets the dispositions in every worker."""
    from asr.train.signals import preemption_signals
    with preemption_signals():
        loader = make_loader(_WorkerSignals(), DurationBucketSampler([1.0, 1.0], 4.0, shuffle=False), num_workers=1)
        assert list(loader) == [[True, True]]
        del loader
