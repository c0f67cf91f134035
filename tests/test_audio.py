"""kws.audio: every bad input gets its own error naming the file; resampling, downmix,
length fitting and the wav/flac/ogg readers do what they claim."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from kws.audio import (
    CLIP_SAMPLES, MAX_SECONDS, SAMPLE_RATE, AudioError, check_waveform, fit_length, load_audio,
    load_clip, resample,
)


def tone(freq: float, sr: int, seconds: float = 1.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(sr * seconds))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write(path: Path, x: np.ndarray, sr: int = SAMPLE_RATE, subtype: str | None = "PCM_16") -> Path:
    sf.write(str(path), x, sr, subtype=subtype)
    return path


def expect_error(path: Path, kind: str, *words: str, **kwargs) -> AudioError:
    with pytest.raises(AudioError) as info:
        load_audio(path, **kwargs)
    err = info.value
    assert err.kind == kind, f"{path.name}: expected {kind}, got {err.kind}: {err}"
    assert str(err).startswith(str(path)), "the message must name the file first"
    assert err.path == str(path)
    for w in words:
        assert w in err.problem, f"{w!r} not in {err.problem!r}"
    return err


def spectrum_peak(x: np.ndarray, sr: int) -> tuple[float, float]:
    """(frequency of the strongest bin, its amplitude) of a Hann-windowed signal."""
    w = np.hanning(len(x))
    mag = np.abs(np.fft.rfft(x * w)) * 2 / w.sum()
    k = int(np.argmax(mag))
    return k * sr / len(x), float(mag[k])


# --------------------------------------------------------------------------- bad inputs

def test_missing_file(tmp_path):
    expect_error(tmp_path / "nope.wav", "missing", "not found")


def test_directory_is_not_a_file(tmp_path):
    (tmp_path / "d.wav").mkdir()
    expect_error(tmp_path / "d.wav", "missing", "not a regular file")


@pytest.mark.parametrize("name", ["notes.txt", "disguised.wav"])
def test_text_file_is_not_audio(tmp_path, name):
    p = tmp_path / name
    p.write_text("this is a shopping list, not a recording\n" * 20)
    expect_error(p, "not_audio", "not an audio file")


def test_zero_byte_file(tmp_path):
    p = tmp_path / "zero.wav"
    p.write_bytes(b"")
    expect_error(p, "empty", "0 bytes")


def test_valid_header_with_zero_frames(tmp_path):
    p = write(tmp_path / "noframes.wav", np.zeros(0, np.float32))
    expect_error(p, "empty", "zero-length")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_samples(tmp_path, bad):
    x = tone(440, SAMPLE_RATE)
    x[[10, 500, 9000]] = bad
    p = write(tmp_path / "nonfinite.wav", x, subtype="FLOAT")
    expect_error(p, "nan", "3 NaN or infinite")


def test_too_long_unless_asked(tmp_path):
    # 10 min + 1 s at 4 kHz, 8-bit: 2.4 MB instead of 19 MB at 16 kHz.
    seconds = MAX_SECONDS + 1
    x = np.zeros(int(4000 * seconds), np.float32)
    x[::40] = 0.25
    p = write(tmp_path / "session.wav", x, sr=4000, subtype="PCM_U8")
    expect_error(p, "too_long", "10.0 min", "max_seconds=None")
    y = load_audio(p, max_seconds=None)
    assert len(y) == int(SAMPLE_RATE * seconds)


def test_custom_length_limit(tmp_path):
    p = write(tmp_path / "one_second.wav", tone(440, SAMPLE_RATE))
    expect_error(p, "too_long", max_seconds=0.5)
    assert len(load_audio(p, max_seconds=2.0)) == SAMPLE_RATE


def test_unsupported_channel_layout(tmp_path):
    p = write(tmp_path / "surround.wav", np.zeros((SAMPLE_RATE, 6), np.float32))
    expect_error(p, "channels", "6 channels")
    assert load_audio(p, max_channels=6).shape == (SAMPLE_RATE,)  # allowed when asked


def test_truncated_header(tmp_path):
    good = write(tmp_path / "good.wav", tone(440, SAMPLE_RATE)).read_bytes()
    p = tmp_path / "cut_header.wav"
    p.write_bytes(good[:20])  # inside the fmt chunk
    expect_error(p, "truncated", "header")


def test_truncated_audio_data(tmp_path):
    # A copy killed half-way: libsndfile would quietly return the first half.
    good = write(tmp_path / "good.wav", tone(440, SAMPLE_RATE)).read_bytes()
    p = tmp_path / "cut_data.wav"
    p.write_bytes(good[: len(good) // 2])
    expect_error(p, "truncated", "promises 32000 bytes")


def test_unsupported_sample_rate(tmp_path):
    p = write(tmp_path / "lowrate.wav", np.zeros(1000, np.float32), sr=1000)
    expect_error(p, "sample_rate", "1000 Hz")


def test_check_waveform_arrays():
    with pytest.raises(AudioError, match="zero samples"):
        check_waveform(np.zeros(0, np.float32), "mic")
    with pytest.raises(AudioError, match="1 NaN"):
        check_waveform(np.array([0.0, np.nan], np.float32), "mic")
    x = np.ones(3, np.float32)
    assert check_waveform(x) is x


# --------------------------------------------------------------------------- signal processing

@pytest.mark.parametrize("sr", [8_000, 44_100, 48_000])
def test_resampled_tone_keeps_frequency_and_amplitude(tmp_path, sr):
    p = write(tmp_path / f"tone_{sr}.wav", tone(1000, sr, seconds=1.0, amp=0.5), sr=sr, subtype="FLOAT")
    y = load_audio(p)
    assert len(y) == SAMPLE_RATE
    freq, amp = spectrum_peak(y[1000:-1000], SAMPLE_RATE)  # skip the filter's edge transients
    assert abs(freq - 1000) <= SAMPLE_RATE / (SAMPLE_RATE - 2000)  # within one FFT bin
    assert amp == pytest.approx(0.5, rel=0.02)
    rms = float(np.sqrt(np.mean(y[1000:-1000] ** 2)))
    assert rms == pytest.approx(0.5 / np.sqrt(2), rel=0.01)


def test_resampler_is_band_limited():
    # 10 kHz at 48 kHz is above the new Nyquist (8 kHz): it must be filtered out, not
    # folded to 6 kHz as naive decimation would do.
    y = resample(tone(10_000, 48_000, amp=0.5), 48_000, SAMPLE_RATE)
    assert float(np.abs(np.fft.rfft(y[1000:-1000])).max()) * 2 / (len(y) - 2000) < 0.5 * 10 ** (-40 / 20)
    # 6 kHz (3/4 of the new Nyquist) passes within 0.2 dB.
    freq, amp = spectrum_peak(resample(tone(6_000, 48_000), 48_000, SAMPLE_RATE)[1000:-1000], SAMPLE_RATE)
    assert abs(freq - 6000) < 2 and amp == pytest.approx(0.5, rel=0.02)


def test_resample_identity_is_a_no_op():
    x = tone(440, SAMPLE_RATE)
    assert np.array_equal(resample(x, SAMPLE_RATE, SAMPLE_RATE), x)


def test_stereo_is_downmixed_by_averaging(tmp_path):
    x = tone(440, SAMPLE_RATE, amp=0.5)
    p = write(tmp_path / "left_only.wav", np.stack([x, np.zeros_like(x)], axis=1), subtype="FLOAT")
    np.testing.assert_allclose(load_audio(p), x / 2, atol=1e-6)
    q = write(tmp_path / "antiphase.wav", np.stack([x, -x], axis=1), subtype="FLOAT")
    assert np.abs(load_audio(q)).max() < 1e-6


def test_fit_length_pads_and_trims_with_offsets():
    x = np.arange(1, 11, dtype=np.float32)  # 10 samples, none zero
    centred = fit_length(x, 16)
    assert centred.tolist() == [0, 0, 0] + x.tolist() + [0, 0, 0]
    assert fit_length(x, 16, 0).tolist() == x.tolist() + [0] * 6  # offset = leading zeros
    assert fit_length(x, 16, 6).tolist() == [0] * 6 + x.tolist()
    assert fit_length(x, 16, 99).tolist() == [0] * 6 + x.tolist()  # clamped, never loses samples
    assert fit_length(x, 4).tolist() == [4, 5, 6, 7]  # centre crop
    assert fit_length(x, 4, 0).tolist() == [1, 2, 3, 4]  # offset = start of the window
    assert fit_length(x, 4, 8).tolist() == [7, 8, 9, 10]  # clamped to the end
    assert fit_length(x, 10) is x
    batch = np.stack([x, -x])
    assert fit_length(batch, 4, 2).tolist() == [[3, 4, 5, 6], [-3, -4, -5, -6]]


def test_load_clip_is_one_second(tmp_path):
    short = write(tmp_path / "short.wav", np.full(8000, 0.25, np.float32), subtype="FLOAT")
    clip = load_clip(short)
    assert clip.shape == (CLIP_SAMPLES,)
    assert np.count_nonzero(clip) == 8000 and clip[4000] == 0.25 and clip[0] == 0  # centred
    assert load_clip(short, offset=0)[:8000].min() == 0.25


def test_flac_is_lossless(tmp_path):
    pcm = np.round(tone(440, SAMPLE_RATE, amp=0.5) * 32767).astype(np.int16)
    p = write(tmp_path / "x.flac", pcm)
    np.testing.assert_array_equal(load_audio(p), pcm / np.float32(32768))  # the exact PCM16 samples
    q = write(tmp_path / "x22k.flac", pcm, sr=22_050)
    assert len(load_audio(q)) == round(len(pcm) * SAMPLE_RATE / 22_050)


def test_ogg_vorbis_loads(tmp_path):
    p = write(tmp_path / "x.ogg", tone(1000, 48_000, amp=0.5), sr=48_000, subtype="VORBIS")
    y = load_audio(p)
    assert abs(len(y) - SAMPLE_RATE) <= 16
    freq, amp = spectrum_peak(y[1000:-1000], SAMPLE_RATE)
    assert abs(freq - 1000) < 2 and amp == pytest.approx(0.5, rel=0.05)
