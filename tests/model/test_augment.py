"""SpecAugment (train-only, seeded, inside valid frames), VTLP, speed perturbation and noise."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import tone

from asr.config import AugmentConfig, ConfigError, FeatureConfig
from asr.model.augment import FeatureAugment, FrequencyWarp, SpecAugment, add_noise, speed_perturb
from asr.model.features import LogMel


def _batch(lengths=(100, 60, 30), F=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    T = max(lengths)
    feats = torch.randn(len(lengths), T, F, generator=g) + 3.0  # offset: no real value is exactly 0
    lengths = torch.tensor(lengths)
    feats[torch.arange(T)[None, :] >= lengths[:, None]] = 0.0
    return feats, lengths


def test_eval_mode_is_identity():
    feats, lengths = _batch()
    aug = SpecAugment(AugmentConfig(freq_masks=3, time_masks=3)).eval()
    assert aug(feats, lengths, torch.Generator().manual_seed(0)) is feats
    off = SpecAugment(AugmentConfig(spec_augment=False)).train()
    assert torch.equal(off(feats, lengths), feats)


def test_masks_stay_in_valid_frames_and_respect_widths():
    cfg = AugmentConfig(freq_masks=2, freq_mask_width=10, time_masks=2, time_mask_max_frac=0.2)
    aug = SpecAugment(cfg).train()
    feats, lengths = _batch()
    g = torch.Generator().manual_seed(1)
    masked_any = False
    for _ in range(20):
        out = aug(feats, lengths, g)
        assert torch.equal(feats, _batch()[0])  # input untouched
        zero = (out == 0) & (feats != 0)  # cells the augmentation zeroed
        for b, n in enumerate(lengths.tolist()):
            assert torch.equal(out[b, n:], feats[b, n:])  # padding untouched
            z = zero[b, :n]
            full_rows = z.all(dim=1)  # time-masked frames
            full_cols = z.all(dim=0)  # frequency-masked bins
            # every zeroed cell is explained by a whole masked frame or a whole masked bin
            assert torch.equal(z, full_rows[:, None] | full_cols[None, :])
            # (masks of at most 2 x 20% of the frames and 2 x 10 of the 40 bins never cover everything)
            assert int(full_rows.sum()) <= cfg.time_masks * int(n * cfg.time_mask_max_frac)
            assert int(full_cols.sum()) <= cfg.freq_masks * cfg.freq_mask_width
            masked_any |= bool(z.any())
        assert out.shape == feats.shape
    assert masked_any


def test_deterministic_with_the_same_generator():
    aug = SpecAugment(AugmentConfig(freq_masks=2, time_masks=2, time_mask_max_frac=0.1)).train()
    feats, lengths = _batch()
    a = aug(feats, lengths, torch.Generator().manual_seed(42))
    b = aug(feats, lengths, torch.Generator().manual_seed(42))
    c = aug(feats, lengths, torch.Generator().manual_seed(43))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_zero_length_and_empty_batches():
    aug = SpecAugment().train()
    feats, lengths = _batch(lengths=(5, 0))
    out = aug(feats, lengths, torch.Generator().manual_seed(0))
    assert torch.equal(out[1], feats[1])
    empty = torch.zeros(0, 0, 80)
    assert aug(empty, torch.zeros(0, dtype=torch.long)).shape == (0, 0, 80)


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_speed_perturb_changes_length_by_one_over_factor(factor):
    wave = torch.from_numpy(tone(1.0, freq=300.0))
    out = speed_perturb(wave, 16000, factor)
    assert abs(out.numel() - wave.numel() / factor) <= 2
    # Faster playback raises the pitch: the dominant frequency moves by the factor.
    peak = lambda w: float(torch.fft.rfft(w).abs().argmax()) * 16000 / w.numel()  # noqa: E731
    assert peak(out) == pytest.approx(300.0 * factor, rel=0.02)
    assert speed_perturb(wave, 16000, 1.0) is wave


def test_add_noise_hits_the_snr_and_is_seeded():
    wave = torch.from_numpy(tone(1.0))
    a = add_noise(wave, 10.0, torch.Generator().manual_seed(0))
    b = add_noise(wave, 10.0, torch.Generator().manual_seed(0))
    assert torch.equal(a, b)
    snr = 10 * torch.log10(wave.pow(2).mean() / (a - wave).pow(2).mean())
    assert float(snr) == pytest.approx(10.0, abs=0.3)
    silence = torch.zeros(100)
    assert torch.equal(add_noise(silence, 10.0), silence)


# ------------------------------------------------------------------------------------------------ VTLP


def _warp(lo: float, hi: float) -> FrequencyWarp:
    return FrequencyWarp(FeatureConfig(), (lo, hi)).train()


@pytest.mark.parametrize("alpha", [0.9, 1.12])
def test_vtlp_moves_a_tone_where_a_tone_at_alpha_f_lands(alpha):
    """Oracle: the log-mel of a 1 kHz tone warped by alpha peaks in the bin of a real tone at alpha x 1 kHz."""
    logmel = LogMel(FeatureConfig(normalize="none"))
    waves = torch.from_numpy(np.stack([tone(1.0, freq=1000.0), tone(1.0, freq=1000.0 * alpha)]))
    feats, frames = logmel(waves, torch.tensor([waves.shape[1]] * 2))
    warped = _warp(alpha, alpha)(feats[:1], frames[:1])
    mid = frames[0] // 2
    assert warped[0, mid].argmax() == feats[1, mid].argmax() != feats[0, mid].argmax()


def test_vtlp_factor_one_is_identity_and_eval_mode_is_identity():
    feats, lengths = _batch(F=80)
    assert torch.allclose(_warp(1.0, 1.0)(feats, lengths), feats, atol=1e-6)
    assert _warp(0.9, 1.1).eval()(feats, lengths) is feats


def test_vtlp_keeps_padding_zero_and_input_untouched_and_is_seeded():
    feats, lengths = _batch(F=80)
    warp = _warp(0.85, 1.15)
    a = warp(feats, lengths, torch.Generator().manual_seed(3))
    b = warp(feats, lengths, torch.Generator().manual_seed(3))
    c = warp(feats, lengths, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(feats, _batch(F=80)[0])
    for i, n in enumerate(lengths.tolist()):
        assert torch.count_nonzero(a[i, n:]) == 0


def test_vtlp_warp_keeps_the_frequency_range_and_is_monotonic():
    warp = _warp(0.8, 1.2)
    src = warp.source_frequencies(torch.tensor([0.8, 1.0, 1.2]))  # (3, F)
    assert torch.all(src[:, 1:] > src[:, :-1])  # no bin order is swapped
    assert torch.all(src <= warp.nyquist)  # the knee keeps Nyquist reachable


def test_feature_augment_runs_what_the_config_asks_for():
    assert not FeatureAugment.wanted(AugmentConfig(spec_augment=False))
    both = FeatureAugment(AugmentConfig(vtlp=[0.9, 1.1]), FeatureConfig())
    assert both.warp is not None and both.masks is not None
    only_warp = FeatureAugment(AugmentConfig(spec_augment=False, vtlp=[0.9, 1.1]), FeatureConfig())
    assert only_warp.warp is not None and only_warp.masks is None
    assert FeatureAugment.wanted(AugmentConfig(spec_augment=False, vtlp=[0.9, 1.1]))


@pytest.mark.parametrize("bad", [[1.1], [1.1, 0.9], [0.5, 1.0]])
def test_vtlp_config_is_validated(bad):
    with pytest.raises(Exception, match="augment.vtlp"):
        AugmentConfig(vtlp=bad)


def test_slaney_mel_centres_match_librosa():
    import librosa

    from asr.model.augment import slaney_mel_centres

    expected = librosa.mel_frequencies(82, fmin=0.0, fmax=8000.0, htk=False)[1:-1]
    assert np.allclose(slaney_mel_centres(80, 8000.0).numpy(), expected, rtol=1e-5, atol=1e-3)


def test_spec_augment_masks_start_at_the_configured_epoch():
    """augment.spec_augment_from_epoch=2: epochs 0 and 1 pass features through (VTLP would still run), epoch 2 on
    masks them exactly as an augmenter without the delay does with the same generator."""
    torch.manual_seed(0)
    feats, lengths = torch.randn(3, 50, 80) + 5.0, torch.tensor([50, 37, 12])  # no value is 0: masks show as 0
    delayed = FeatureAugment(AugmentConfig(spec_augment_from_epoch=2), FeatureConfig()).train()
    always = FeatureAugment(AugmentConfig(), FeatureConfig()).train()
    for epoch in (0, 1):
        delayed.set_epoch(epoch)
        assert torch.equal(delayed(feats, lengths, torch.Generator().manual_seed(7)), feats)
    delayed.set_epoch(2)
    got = delayed(feats, lengths, torch.Generator().manual_seed(7))
    assert (got == 0).any()
    assert torch.equal(got, always(feats, lengths, torch.Generator().manual_seed(7)))
    with pytest.raises(ConfigError, match="augment.spec_augment_from_epoch"):
        AugmentConfig(spec_augment_from_epoch=-1)


def test_spec_augment_masks_start_at_the_configured_progress():
    """augment.spec_augment_from_progress=0.4: below 40 % of the run (set by the loop before each step) features
    pass through; from there on they are masked exactly as without the delay, with the same generator."""
    torch.manual_seed(0)
    feats, lengths = torch.randn(2, 60, 80) + 5.0, torch.tensor([60, 41])
    delayed = FeatureAugment(AugmentConfig(spec_augment_from_progress=0.4), FeatureConfig()).train()
    always = FeatureAugment(AugmentConfig(), FeatureConfig()).train()
    for p in (0.0, 0.39):
        delayed.set_progress(p)
        assert torch.equal(delayed(feats, lengths, torch.Generator().manual_seed(3)), feats)
    delayed.set_progress(0.4)
    got = delayed(feats, lengths, torch.Generator().manual_seed(3))
    assert (got == 0).any()
    assert torch.equal(got, always(feats, lengths, torch.Generator().manual_seed(3)))
    # the default (0) masks from the first step, warm-up included, where the schedule's progress is negative
    default = FeatureAugment(AugmentConfig(), FeatureConfig()).train()
    default.set_progress(-0.08)
    assert torch.equal(default(feats, lengths, torch.Generator().manual_seed(3)), got)
    for bad in (-0.1, 1.0):
        with pytest.raises(ConfigError, match="augment.spec_augment_from_progress"):
            AugmentConfig(spec_augment_from_progress=bad)
