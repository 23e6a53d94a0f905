"""The log-mel front-end: shapes and lengths of padded batches, librosa cross-check, normalization, devices."""
from __future__ import annotations

import librosa
import numpy as np
import pytest
import torch
from conftest import tone

from asr.config import FeatureConfig
from asr.model.features import LogMel

SR = 16000
# Odd and even sample counts around hop (160) boundaries, plus shorter than one window (400).
LENGTHS = [16000, 15999, 16001, 8160, 8159, 4321, 400, 161, 160, 1]


def _batch(lengths, seed=0):
    """A zero-padded batch of tone-plus-noise waveforms: waves (B, S_max), lengths (B,), list of unpadded."""
    waves = [torch.from_numpy(tone(n / SR + 1e-9, SR, freq=150 + 40 * i, seed=seed + i))[:n]
             for i, n in enumerate(lengths)]
    assert [w.numel() for w in waves] == list(lengths)
    batch = torch.zeros(len(waves), max(lengths))
    for i, w in enumerate(waves):
        batch[i, : w.numel()] = w
    return batch, torch.tensor(lengths), waves


@pytest.mark.parametrize("normalize", ["utterance", "none"])
def test_shapes_and_lengths_match_real_frames(normalize):
    mel = LogMel(FeatureConfig(normalize=normalize))
    batch, lengths, waves = _batch(LENGTHS)
    feats, frame_lengths = mel(batch, lengths)
    assert feats.shape == (len(LENGTHS), 1 + max(LENGTHS) // 160, 80) and feats.dtype == torch.float32
    assert frame_lengths.tolist() == [1 + n // 160 for n in LENGTHS]
    assert torch.equal(frame_lengths, mel.output_lengths(lengths))
    for w, t in zip(waves, frame_lengths.tolist()):
        alone, alone_len = mel(w[None], torch.tensor([w.numel()]))
        assert alone.shape[1] == t == int(alone_len)  # output_lengths == frames really produced


def test_batched_equals_per_utterance():
    mel = LogMel()
    batch, lengths, waves = _batch(LENGTHS)
    feats, frame_lengths = mel(batch, lengths)
    for i, w in enumerate(waves):
        alone, _ = mel(w[None], torch.tensor([w.numel()]))
        t = int(frame_lengths[i])
        torch.testing.assert_close(feats[i, :t], alone[0], atol=2e-4, rtol=1e-4)


def test_padded_frames_are_zero():
    for normalize in ("utterance", "none"):
        feats, frame_lengths = LogMel(FeatureConfig(normalize=normalize))(*_batch(LENGTHS)[:2])
        for i, t in enumerate(frame_lengths.tolist()):
            assert torch.count_nonzero(feats[i, t:]) == 0
            if t > 1:  # a single frame normalizes to zeros (its own mean)
                assert torch.count_nonzero(feats[i, :t]) > 0


def test_utterance_normalization():
    feats, frame_lengths = LogMel()(*_batch(LENGTHS[:6])[:2])  # long enough for stable statistics
    for i, t in enumerate(frame_lengths.tolist()):
        valid = feats[i, :t].double()  # (T, F)
        assert valid.mean(dim=0).abs().max() < 1e-4
        std = valid.std(dim=0, unbiased=False)
        # Slightly below 1 where a bin barely varies: the variance gets a 1e-5 floor before the square root.
        assert (std <= 1 + 1e-4).all() and (std > 0.95).all() and std.median() > 0.999


@pytest.mark.parametrize("seconds", [1.0, 0.537])
def test_matches_librosa(seconds):
    """Same definition as librosa's melspectrogram (Slaney mel, zero-padded centred frames), then log(x + floor)."""
    y = tone(seconds, SR, seed=3) + 0.2 * np.sin(2 * np.pi * 3000 * np.arange(int(seconds * SR)) / SR).astype(
        np.float32)
    cfg = FeatureConfig(normalize="none")
    feats, _ = LogMel(cfg)(torch.from_numpy(y)[None], torch.tensor([y.size]))
    ref = librosa.feature.melspectrogram(y=y, sr=SR, n_fft=512, win_length=400, hop_length=160, n_mels=80,
                                         center=True, pad_mode="constant", htk=False, norm="slaney", power=2)
    ref = np.log(ref + cfg.log_floor).T  # (T, F)
    assert feats.shape[1:] == ref.shape
    np.testing.assert_allclose(feats[0].numpy(), ref, atol=1e-3, rtol=1e-4)


def test_other_rate_and_sizes():
    cfg = FeatureConfig(sample_rate=8000, n_mels=40, n_fft=256)
    assert (cfg.win_length, cfg.hop_length) == (200, 80)
    feats, lengths = LogMel(cfg)(*_batch([8000, 4001])[:2])
    assert feats.shape == (2, 101, 40) and lengths.tolist() == [101, 51]


def test_fp32_under_autocast():
    batch, lengths, _ = _batch(LENGTHS[:3])
    plain, _ = LogMel()(batch, lengths)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        feats, _ = LogMel()(batch, lengths)
    assert feats.dtype == torch.float32
    torch.testing.assert_close(feats, plain)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    batch, lengths, _ = _batch(LENGTHS)
    mel = LogMel()
    cpu, cpu_len = mel(batch, lengths)
    mel = mel.to("cuda")
    gpu, gpu_len = mel(batch.cuda(), lengths.cuda())
    assert gpu.device.type == "cuda" and torch.equal(gpu_len.cpu(), cpu_len)
    torch.testing.assert_close(gpu.cpu(), cpu, atol=2e-3, rtol=1e-3)
    with torch.autocast(device_type="cuda", dtype=torch.float16):
        half, _ = mel(batch.cuda(), lengths.cuda())
    assert half.dtype == torch.float32 and torch.isfinite(half).all()


def _fit_global(lengths=LENGTHS[:6], seed=0) -> tuple[LogMel, torch.Tensor, torch.Tensor]:
    """A LogMel(normalize=corpus) fitted on one padded batch (two calls: the statistics must be accumulated)."""
    mel = LogMel(FeatureConfig(normalize="corpus"))
    batch, lengths_t, _ = _batch(lengths, seed=seed)
    frames = mel.fit_stats([(batch[:3], lengths_t[:3]), (batch[3:], lengths_t[3:])])
    assert frames == int(mel.output_lengths(lengths_t).sum())
    return mel, batch, lengths_t


def test_global_statistics_are_those_of_the_fitted_frames():
    """Oracle: numpy mean and standard deviation of the unnormalised log-mels' valid frames, concatenated."""
    mel, batch, lengths = _fit_global()
    raw, frames = LogMel(FeatureConfig(normalize="none"))(batch, lengths)
    valid = np.concatenate([raw[i, :t].double().numpy() for i, t in enumerate(frames.tolist())])  # (sum T, F)
    np.testing.assert_allclose(mel.mean.numpy(), valid.mean(axis=0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(mel.std.numpy(), valid.std(axis=0), rtol=1e-4, atol=1e-5)
    feats, frames = mel(batch, lengths)  # the fitted set itself comes out standardised, padding still zero
    valid = torch.cat([feats[i, :t] for i, t in enumerate(frames.tolist())]).double()
    assert valid.mean(dim=0).abs().max() < 1e-3 and (valid.std(dim=0, unbiased=False) - 1).abs().max() < 1e-3
    assert all(torch.count_nonzero(feats[i, t:]) == 0 for i, t in enumerate(frames.tolist()))


def test_global_normalization_is_per_frame_so_batching_does_not_change_it():
    mel, batch, lengths = _fit_global()
    feats, frames = mel(batch, lengths)
    for i in range(len(lengths)):
        n = int(lengths[i])
        alone, _ = mel(batch[i: i + 1, :n], lengths[i: i + 1])
        torch.testing.assert_close(feats[i, : int(frames[i])], alone[0], atol=2e-4, rtol=1e-4)


def test_global_statistics_travel_and_are_checked():
    from asr.model.features import FeatureStatsError
    mel, batch, lengths = _fit_global()
    fresh = LogMel(FeatureConfig(normalize="corpus"))
    fresh.load_stats(mel.stats(), "ckpt.pt")
    assert torch.equal(fresh(batch, lengths)[0], mel(batch, lengths)[0])
    with pytest.raises(FeatureStatsError, match="ckpt.pt: features.normalize=corpus but the checkpoint carries no"):
        LogMel(FeatureConfig(normalize="corpus")).load_stats(None, "ckpt.pt")
    with pytest.raises(FeatureStatsError, match=r"feature_stats.std must be a tensor of features.n_mels \(80\)"):
        LogMel(FeatureConfig(normalize="corpus")).load_stats({"mean": torch.zeros(80), "std": torch.ones(40)}, "x")
    LogMel().load_stats(None, "old.pt")  # per-utterance models from before the statistics existed still load
