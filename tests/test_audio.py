"""Audio I/O on real files written to tmp_path: formats, down-mix, resampling, and errors naming file and id."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import tone

from asr.audio import (
    AudioInfo,
    AudioLoadError,
    AudioTooLongError,
    audio_info,
    load_audio,
    read_audio_bytes,
    write_flac,
)
from asr.errors import UserError

SR = 16000
STEP = 1 / 32768  # one 16-bit quantization step


@pytest.mark.parametrize("fmt, subtype", [("FLAC", "PCM_16"), ("WAV", "PCM_16"), ("WAV", "FLOAT")])
def test_read_formats(tmp_path, fmt, subtype):
    wave = tone(0.5, SR)
    path = tmp_path / f"a.{fmt.lower()}"
    sf.write(path, wave, SR, format=fmt, subtype=subtype)
    out = load_audio(path)
    assert out.dtype == torch.float32 and out.shape == (wave.size,)
    assert np.abs(out.numpy() - wave).max() <= STEP


def test_audio_info_reads_the_header(tmp_path):
    path = tmp_path / "a.flac"
    sf.write(path, np.zeros((12345, 2), dtype=np.float32), 22050, format="FLAC", subtype="PCM_16")
    info = audio_info(path)
    assert info == AudioInfo(sample_rate=22050, channels=2, frames=12345)
    assert info.duration == pytest.approx(12345 / 22050)


def test_stereo_is_down_mixed(tmp_path):
    left, right = tone(0.3, SR, freq=300), tone(0.3, SR, freq=500, seed=1)
    path = tmp_path / "st.flac"
    sf.write(path, np.stack([left, right], axis=1), SR, format="FLAC", subtype="PCM_16")
    out = load_audio(path)
    assert out.ndim == 1 and np.abs(out.numpy() - (left + right) / 2).max() <= STEP


@pytest.mark.parametrize("rate, frames", [(44100, 44100), (44100, 44101), (22050, 11025), (8000, 8000)])
def test_resampling_length_and_pitch(tmp_path, rate, frames):
    path = tmp_path / "hi.wav"
    wave = 0.5 * np.sin(2 * np.pi * 440 * np.arange(frames) / rate).astype(np.float32)
    sf.write(path, wave, rate, subtype="FLOAT")
    out = load_audio(path, sample_rate=SR)
    assert abs(out.numel() - frames * SR / rate) <= 1
    spectrum = np.abs(np.fft.rfft(out.numpy()))
    peak_hz = np.argmax(spectrum) * SR / out.numel()
    assert abs(peak_hz - 440) < 5  # the tone keeps its pitch


def test_resample_false_rejects_other_rates(tmp_path):
    path = tmp_path / "cd.flac"
    sf.write(path, tone(0.2, 44100), 44100, format="FLAC", subtype="PCM_16")
    with pytest.raises(AudioLoadError) as err:
        load_audio(path, sample_rate=SR, utt_id="utt-7", resample=False)
    msg = str(err.value)
    assert str(path) in msg and "utt-7" in msg and "44100" in msg and "16000" in msg
    assert "\n" not in msg
    assert load_audio(path, sample_rate=44100, resample=False).numel() == tone(0.2, 44100).size


def test_missing_file(tmp_path):
    path = tmp_path / "nope.flac"
    with pytest.raises(AudioLoadError, match="not found") as err:
        load_audio(path, utt_id="84-121123-0000")
    assert str(path) in str(err.value) and "84-121123-0000" in str(err.value)
    with pytest.raises(AudioLoadError) as err:
        audio_info(path, utt_id="84-121123-0000")
    assert str(path) in str(err.value) and "84-121123-0000" in str(err.value)


def _corrupt_files(tmp_path):
    rand = tmp_path / "random.flac"
    rand.write_bytes(np.random.default_rng(0).bytes(4000))
    whole = tmp_path / "whole.flac"
    sf.write(whole, tone(1.0, SR), SR, format="FLAC", subtype="PCM_16")
    trunc = tmp_path / "truncated.flac"
    trunc.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    empty_bytes = tmp_path / "zero.wav"
    empty_bytes.write_bytes(b"")
    return [rand, trunc, empty_bytes]


def test_corrupt_files_raise_audio_load_error_naming_file_and_id(tmp_path):
    for path in _corrupt_files(tmp_path):
        with pytest.raises(AudioLoadError) as err:
            load_audio(path, utt_id="u1")
        assert str(path) in str(err.value) and "u1" in str(err.value), path
        assert isinstance(err.value, UserError)


def test_header_reads_but_data_does_not(tmp_path):
    trunc = _corrupt_files(tmp_path)[1]
    assert audio_info(trunc).frames == SR  # the header is intact ...
    with pytest.raises(AudioLoadError, match="cannot decode"):
        load_audio(trunc)  # ... the samples are not


def test_zero_frame_file(tmp_path):
    path = tmp_path / "empty.wav"
    sf.write(path, np.zeros(0, dtype=np.float32), SR)
    with pytest.raises(AudioLoadError, match="empty") as err:
        load_audio(path, utt_id="e1")
    assert "e1" in str(err.value)


def test_write_flac_round_trip_and_clipping(tmp_path):
    wave = torch.from_numpy(tone(0.25, SR))
    write_flac(tmp_path / "a.flac", wave)
    info = sf.info(str(tmp_path / "a.flac"))
    assert (info.format, info.subtype, info.samplerate, info.channels) == ("FLAC", "PCM_16", SR, 1)
    assert torch.allclose(load_audio(tmp_path / "a.flac"), wave, atol=STEP)
    write_flac(tmp_path / "loud.flac", np.array([2.0, -3.0, 0.5], dtype=np.float32))
    assert np.allclose(load_audio(tmp_path / "loud.flac").numpy(), [1.0, -1.0, 0.5], atol=STEP)


def test_read_audio_bytes_equals_load_audio(tmp_path):
    path = tmp_path / "st.flac"
    sf.write(path, np.stack([tone(0.7, 44100), tone(0.7, 44100, freq=300)], axis=1), 44100, format="FLAC",
             subtype="PCM_16")
    assert torch.equal(read_audio_bytes(path.read_bytes(), "upload.flac", SR), load_audio(path, SR))


def test_read_audio_bytes_errors_name_the_upload(tmp_path):
    for path in _corrupt_files(tmp_path):
        with pytest.raises(AudioLoadError) as err:
            read_audio_bytes(path.read_bytes(), "my talk.flac", SR)
        assert "my talk.flac" in str(err.value) and "\n" not in str(err.value), path
        assert "BytesIO" not in str(err.value)
    sf.write(tmp_path / "none.wav", np.zeros(0, dtype=np.float32), SR)  # a header and no samples
    with pytest.raises(AudioLoadError, match="empty: none.wav"):
        read_audio_bytes((tmp_path / "none.wav").read_bytes(), "none.wav", SR)


def test_read_audio_bytes_refuses_long_audio_from_the_header(tmp_path, monkeypatch):
    path = tmp_path / "long.wav"
    sf.write(path, tone(3.0, 8000), 8000)
    data = path.read_bytes()
    assert read_audio_bytes(data, "long.wav", SR, max_seconds=3.0).numel() == 3 * SR
    monkeypatch.setattr(sf.SoundFile, "read", lambda *a, **k: pytest.fail("decoded audio it should refuse"))
    with pytest.raises(AudioTooLongError, match=r"^long\.wav is 3\.0 s long; at most 2\.5 s") as err:
        read_audio_bytes(data, "long.wav", SR, max_seconds=2.5)
    assert (err.value.seconds, err.value.limit) == (pytest.approx(3.0), 2.5)
