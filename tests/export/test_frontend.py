"""asr.export.frontend: the conv1d-DFT log-mel equals the torchaudio one (oracle: asr.model.features.LogMel, itself
checked against librosa in tests/model/test_features.py) on padded batches, for every normalisation."""
from __future__ import annotations

import pytest
import torch

from asr.config import FeatureConfig
from asr.export.frontend import ConvLogMel
from asr.model.features import LogMel


@pytest.mark.parametrize("cfg", [FeatureConfig(), FeatureConfig(normalize="none"), FeatureConfig(normalize="corpus"),
                                 FeatureConfig(n_fft=400, win_ms=25.0, n_mels=40, sample_rate=16000)])
def test_matches_logmel_on_a_padded_batch(cfg):
    g = torch.Generator().manual_seed(0)
    lengths = torch.tensor([24000, 16001, 3999])
    waves = torch.zeros(3, 24000)
    for k, n in enumerate(lengths.tolist()):
        t = torch.arange(n) / 16000
        waves[k, :n] = 0.3 * torch.sin(2 * torch.pi * (200 + 300 * k) * t) + 0.05 * torch.randn(n, generator=g)
    logmel = LogMel(cfg)
    if cfg.normalize == "corpus":  # the training set's statistics: here, of these very waves
        logmel.fit_stats([(waves, lengths)])
    ref, ref_frames = logmel(waves, lengths)
    got, frames = ConvLogMel(logmel)(waves, lengths)
    assert torch.equal(frames, ref_frames) and got.shape == ref.shape
    # fp32 DFT-by-matmul vs FFT: rounding only (1e-4 on values of order 1-10 after log / normalisation).
    assert (got - ref).abs().max() < 1e-4
    assert (got[1, int(frames[1]):] == 0).all()  # padding stays zero


def test_silence_hits_the_log_floor_not_minus_infinity():
    cfg = FeatureConfig(normalize="none")
    got, _ = ConvLogMel(LogMel(cfg))(torch.zeros(1, 1600), torch.tensor([1600]))
    assert torch.isfinite(got).all() and torch.allclose(got, torch.log(torch.tensor(cfg.log_floor)))
