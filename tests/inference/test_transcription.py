"""The transcription pipeline (asr.inference.transcription): windows of long files, batches of short ones, word times."""
from __future__ import annotations

import pytest
import torch
from test_transcribe import loaded, tiny_run, tones  # noqa: F401  (module fixtures shared with the CLI's tests)

from asr.inference.loading import load_model
from asr.inference.transcription import (
    Word,
    batched_log_probs,
    chunked_log_probs,
    transcribe_waves,
    windows,
    word_timings,
)
from asr.text import CharTokenizer


def test_word_timings_follow_the_alignment():
    tok = CharTokenizer()
    ids = {ch: tok.vocab.index(ch) for ch in "AB C"}
    # frames: A A _ B _ _ ' ' _ C C _  (T' = 12)
    path = ["A", "A", None, "B", None, None, " ", None, "C", "C", None, None]
    lp = torch.full((len(path), tok.size), -10.0)
    for t, ch in enumerate(path):
        lp[t, 0 if ch is None else ids[ch]] = 0.0
    lp = lp.log_softmax(-1)
    words = word_timings(lp, "AB C", tok, frame_seconds=0.04, duration=0.47)
    assert words == [Word("AB", 0.0, 0.16), Word("C", 0.32, 0.4)]
    assert word_timings(lp, "", tok, 0.04, 0.47) == []


@pytest.mark.parametrize("num_samples", [1, 640, 16000 * 30, 16000 * 30 + 1, 16000 * 95 + 123])
def test_windows_tile_the_file(num_samples):
    unit = 640
    wins = windows(num_samples, unit, chunk_seconds=30, context_seconds=2, sample_rate=16000)
    assert wins[0][1] == 0 and wins[-1][2] == num_samples
    for (a, s, e, b), nxt in zip(wins, wins[1:] + [None]):
        assert 0 <= a <= s < e <= b <= num_samples and a % unit == 0 and s % unit == 0
        if nxt is not None:
            assert e == nxt[1] and e % unit == 0 and s - a <= 2 * 16000 + unit


def test_chunking_keeps_exactly_the_unchunked_frames(loaded):  # noqa: F811
    wave = torch.from_numpy(tones(7.3))
    whole, n = loaded.log_probs(wave[None], torch.tensor([wave.numel()]))
    whole = whole[0, : int(n[0])]
    # shorter than a chunk: one piece, identical to running the model on the whole file
    assert torch.equal(chunked_log_probs(loaded, wave, 30.0, 2.0), whole)
    # context covering the file: every window sees all of it, so the kept frames must be the unchunked ones
    assert torch.allclose(chunked_log_probs(loaded, wave, 2.0, 100.0), whole, atol=1e-5)
    # ordinary context: same frame count (the whole duration), close values
    assert chunked_log_probs(loaded, wave, 2.0, 1.0).shape == whole.shape


def test_a_batch_gives_each_file_what_it_gives_alone(loaded):  # noqa: F811
    """Short files run together in padded, duration-sorted batches; the model masks padding, so each file's
    log-probs match a run on its own, and the results come back in the order given."""
    waves = [torch.from_numpy(tones(s)) for s in (2.3, 0.7, 4.1, 1.2)]
    alone = [chunked_log_probs(loaded, w, 30.0, 2.0) for w in waves]
    together = batched_log_probs(loaded, waves, batch_seconds=8.0, chunk_seconds=30.0, context_seconds=2.0)
    assert [t.shape for t in together] == [a.shape for a in alone]
    for t, a in zip(together, alone):
        assert torch.allclose(t, a, atol=1e-4)
    # a file longer than a window runs on its own, windowed, between batched ones
    long = torch.from_numpy(tones(9.0))
    mixed = batched_log_probs(loaded, [waves[0], long, waves[1]], 8.0, chunk_seconds=3.0, context_seconds=1.0)
    assert torch.equal(mixed[1], chunked_log_probs(loaded, long, 3.0, 1.0))
    assert torch.allclose(mixed[2], alone[1], atol=1e-4)


def test_transcripts_keep_names_order_and_durations(loaded):  # noqa: F811
    from asr.decoding.greedy import greedy_decode
    waves = [torch.from_numpy(tones(s)) for s in (3.0, 1.0)]
    out = transcribe_waves(loaded, lambda lp, n: greedy_decode(lp, n, loaded.tokenizer), "greedy", waves, ["a", "b"])
    assert [t.audio for t in out] == ["a", "b"] and [t.duration for t in out] == [3.0, 1.0]
    for t in out:
        assert " ".join(w.word for w in t.words) == t.text and t.to_dict()["decoder"] == "greedy"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_memory_is_bounded_by_the_chunk(tiny_run):  # noqa: F811
    on_cuda = load_model(tiny_run["run"], "cuda")

    def peak(seconds: float, chunk: float) -> tuple[int, torch.Tensor]:
        wave = torch.from_numpy(tones(seconds))
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        out = chunked_log_probs(on_cuda, wave, chunk, 2.0)
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base, out

    whole_peak, whole = peak(180.0, 1000.0)  # a 3-minute file in one piece
    chunk_peak, chunked = peak(180.0, 30.0)  # the same file in 30 s windows (+ 2 s context each side)
    window_peak, _ = peak(34.0, 1000.0)  # one extended window's worth of audio in one piece
    print(f"peak CUDA memory: 180 s whole {whole_peak / 2**20:.1f} MiB, 180 s chunked {chunk_peak / 2**20:.1f} MiB, "
          f"34 s whole {window_peak / 2**20:.1f} MiB")
    assert chunked.shape == whole.shape
    assert chunk_peak < whole_peak / 3 and chunk_peak <= 1.2 * window_peak


