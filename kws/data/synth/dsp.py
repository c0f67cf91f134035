"""The signal processing of a clip, as pure functions of their inputs: silence trimming, the
polyphase resampling to 16 kHz, the channel (shelves, resonances, band-limiting, soft clipping),
the synthetic room impulse (early echoes and a diffuse tail), time compression, the level of the
speech, the word's placement in the 1 s clip, and the PCM16 WAV bytes.
"""
from __future__ import annotations

import functools
import io
import math
import wave
from fractions import Fraction

import numpy as np
from scipy import signal

from kws.audio import CLIP_SAMPLES, SAMPLE_RATE, to_int16
from kws.data.synth.plan import Channel, Room
from kws.data.synth.settings import EARLY_REFLECTIONS


def trim_silence(x: np.ndarray, sr: int = SAMPLE_RATE, floor_db: float = 40.0) -> np.ndarray:
    """Cut leading/trailing parts more than `floor_db` below the loudest 10 ms frame."""
    hop = max(1, sr // 100)
    n = len(x) // hop
    if n == 0:
        return x
    frames = x[: n * hop].reshape(n, hop)
    db = 10 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-12)
    loud = np.nonzero(db > max(db.max() - floor_db, -75.0))[0]
    if loud.size == 0:
        return x[:0]
    start = max(0, (loud[0] - 1) * hop)  # keep one frame of margin for soft onsets
    stop = min(len(x), (loud[-1] + 2) * hop)
    return x[start:stop]


def _biquad(kind: str, f0: float, gain_db: float, q: float, sr: int) -> np.ndarray:
    """RBJ audio-EQ-cookbook biquad as one sos row."""
    a = 10 ** (gain_db / 40)
    w0 = 2 * math.pi * min(f0, 0.45 * sr) / sr
    cw, sw = math.cos(w0), math.sin(w0)
    if kind == "peak":
        alpha = sw / (2 * q)
        b = [1 + alpha * a, -2 * cw, 1 - alpha * a]
        den = [1 + alpha / a, -2 * cw, 1 - alpha / a]
    else:
        alpha = sw / 2 * math.sqrt(2)  # shelf slope S = 1
        sa = 2 * math.sqrt(a) * alpha
        if kind == "low":
            b = [a * ((a + 1) - (a - 1) * cw + sa), 2 * a * ((a - 1) - (a + 1) * cw), a * ((a + 1) - (a - 1) * cw - sa)]
            den = [(a + 1) + (a - 1) * cw + sa, -2 * ((a - 1) + (a + 1) * cw), (a + 1) + (a - 1) * cw - sa]
        else:
            b = [a * ((a + 1) + (a - 1) * cw + sa), -2 * a * ((a - 1) + (a + 1) * cw), a * ((a + 1) + (a - 1) * cw - sa)]
            den = [(a + 1) - (a - 1) * cw + sa, 2 * ((a - 1) - (a + 1) * cw), (a + 1) - (a - 1) * cw - sa]
    return np.asarray([*(v / den[0] for v in b), 1.0, den[1] / den[0], den[2] / den[0]])


def apply_channel(x: np.ndarray, ch: Channel, sr: int = SAMPLE_RATE) -> np.ndarray:
    sos = [_biquad("low", ch.low_hz, ch.low_db, 0.7, sr), _biquad("high", ch.high_hz, ch.high_db, 0.7, sr),
           _biquad("peak", ch.peak_hz, ch.peak_db, ch.peak_q, sr),
           _biquad("peak", ch.notch_hz, ch.notch_db, ch.notch_q, sr)]
    if ch.band == "telephone":
        sos.extend(signal.butter(4, [300, 3400], btype="bandpass", fs=sr, output="sos"))
    elif ch.band == "lowpass":
        sos.extend(signal.butter(6, ch.lowpass_hz, btype="lowpass", fs=sr, output="sos"))
    y = signal.sosfilt(np.asarray(sos), x)
    if ch.drive > 0:  # level-independent: drive is relative to the peak, as an input stage set too hot
        peak = float(np.abs(y).max()) or 1.0
        y = np.tanh(ch.drive * y / peak) / math.tanh(ch.drive) * peak
    return y.astype(np.float32)


def room_impulse(room: Room, rng: np.random.Generator, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Direct path + exponentially decaying noise tail (a diffuse-field room model)."""
    n = int(sr * min(1.2 * room.rt60, 0.75))
    t = np.arange(n) / sr
    tail = rng.standard_normal(n) * np.exp(-6.9078 * t / room.rt60)  # -60 dB at rt60
    tail = signal.lfilter([0.5], [1.0, -0.5], tail)  # walls absorb highs: a darker tail
    gap = int(sr * rng.uniform(0.002, 0.012))  # first reflections arrive after the direct sound
    tail[:gap] = 0.0
    # Early reflections (a desk, a near wall, the hand holding the phone): a few discrete echoes
    # before the diffuse tail, the comb-filter colour of a small room that a tail alone lacks.
    echoes = np.zeros(n)
    for _ in range(int(rng.integers(EARLY_REFLECTIONS[0], EARLY_REFLECTIONS[1] + 1))):
        at = int(rng.integers(sr // 1000, max(gap, sr // 1000 + 1)))
        echoes[at] += rng.choice((-1.0, 1.0)) * rng.uniform(0.1, 0.6)
    target = 10 ** (-room.drr_db / 10)  # reflected energy (echoes + tail) relative to the direct sound
    e_echo = float(np.sum(echoes**2))
    if e_echo > 0.5 * target:  # echoes take at most half of it
        echoes *= math.sqrt(0.5 * target / e_echo)
        e_echo = 0.5 * target
    tail = tail * math.sqrt((target - e_echo) / (float(np.sum(tail**2)) or 1.0)) + echoes
    tail[0] = 1.0
    return tail.astype(np.float32)


def fit_word(x: np.ndarray, max_len: int) -> np.ndarray:
    """Time-compress a word that is still too long (FFT resampling: shorter, slightly higher)."""
    if len(x) <= max_len:
        return x
    return signal.resample(x, max_len).astype(np.float32)


def active_rms(x: np.ndarray) -> float:
    """RMS over the frames within 30 dB of the loudest: the level of the speech itself."""
    hop = 160
    n = max(1, len(x) // hop)
    frames = np.resize(x, n * hop).reshape(n, hop).astype(np.float64)
    p = np.mean(frames**2, axis=1)
    act = p[p > p.max() * 1e-3]
    return float(math.sqrt(act.mean())) if act.size else 0.0


def place(word_dry_len: int, wet: np.ndarray, position: float, length: int = CLIP_SAMPLES) -> tuple[np.ndarray, int]:
    """Put the word at a random offset that never cuts the word itself (the reverb tail may be cut)."""
    free = max(0, length - word_dry_len)
    offset = int(round(position * free))
    out = np.zeros(length, np.float32)
    seg = wet[: length - offset]
    out[offset : offset + len(seg)] = seg
    return out, offset


def wav_bytes(x: np.ndarray, sr: int = SAMPLE_RATE) -> bytes:
    """PCM16 mono WAV with a plain 44-byte header (the `wave` module writes no timestamps)."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(to_int16(x).tobytes())
    return buf.getvalue()


@functools.lru_cache(maxsize=8)
def _resample_filter(up: int, down: int) -> np.ndarray:
    """scipy.resample_poly's own default anti-alias filter, designed once instead of per clip
    (the design was a quarter of the rendering time)."""
    max_rate = max(up, down)
    return signal.firwin(2 * 10 * max_rate + 1, 1.0 / max_rate, window=("kaiser", 5.0))


def to_16k(x: np.ndarray, sr: int) -> np.ndarray:
    """Band-limited polyphase resampling to 16 kHz; the same result as kws.audio.resample."""
    if sr == SAMPLE_RATE:
        return x.astype(np.float32, copy=False)
    ratio = Fraction(SAMPLE_RATE, sr)
    h = _resample_filter(ratio.numerator, ratio.denominator).astype(x.dtype)
    return signal.resample_poly(x, ratio.numerator, ratio.denominator, window=h).astype(np.float32, copy=False)
