"""The one forward path (asr/model/forward.py): what every caller gets, checked against the pieces composed by hand."""
from __future__ import annotations

import torch

from asr.config import AugmentConfig, FeatureConfig, ModelConfig
from asr.model.acoustic import AcousticModel
from asr.model.augment import SpecAugment
from asr.model.features import LogMel
from asr.model.forward import amp_dtype, forward


def _parts():
    torch.manual_seed(0)
    feats = LogMel(FeatureConfig())
    model = AcousticModel(ModelConfig(conv_channels=[4, 4], rnn_hidden=16, rnn_layers=1, dropout=0.0), 80, 29).eval()
    waves = 0.1 * torch.randn(2, 16000)
    lengths = torch.tensor([16000, 9000])
    return feats, model, waves * (torch.arange(16000)[None] < lengths[:, None]), lengths


def test_fp32_forward_is_features_then_model():
    feats, model, waves, lengths = _parts()
    out = forward(feats, model, waves, lengths)
    f, frames = feats(waves, lengths)
    log_probs, out_lengths = model(f, frames)
    assert torch.equal(out.log_probs, log_probs) and torch.equal(out.out_lengths, out_lengths)
    assert torch.equal(out.feats, f) and torch.equal(out.frames, frames)
    assert out.out_lengths.tolist() == model.output_lengths(frames).tolist()


def test_reduced_precision_runs_the_model_in_bf16_and_returns_fp32():
    feats, model, waves, lengths = _parts()
    seen = []
    model.head.register_forward_hook(lambda _m, _i, o: seen.append(o.dtype))
    out = forward(feats, model, waves, lengths, precision=amp_dtype("bf16"))
    assert seen == [torch.bfloat16]
    assert out.log_probs.dtype == torch.float32 and out.feats.dtype == torch.float32  # CTC and STFT stay fp32
    ref = forward(feats, model, waves, lengths)
    assert (out.log_probs - ref.log_probs).abs().max() < 0.25  # the same model, at bf16's resolution


def test_augment_only_when_given():
    feats, model, waves, lengths = _parts()
    spec = SpecAugment(AugmentConfig(freq_masks=2, freq_mask_width=20, time_masks=2))
    plain = forward(feats, model, waves, lengths)
    g = torch.Generator().manual_seed(3)
    masked = forward(feats, model, waves, lengths, augment=spec, generator=g)
    assert not torch.equal(plain.feats, masked.feats)
    again = forward(feats, model, waves, lengths, augment=spec, generator=torch.Generator().manual_seed(3))
    assert torch.equal(masked.feats, again.feats)  # seeded: the same masks for the same generator state
