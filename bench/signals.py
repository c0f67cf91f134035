"""Building test audio: noise beds, long word streams and keyword-free streams (numpy only).

Kept apart from the engine and the models so the geometry of a stream (where each word
sits, at what SNR) is tested on its own: the streaming scores are only as honest as it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from bench.stats import WordEvent
from kws.audio import CLIP_SAMPLES, SAMPLE_RATE, from_int16

CROSSFADE_S = 0.02  # joins noise segments without the clicks an energy VAD would fire on
MIN_SEGMENT_S = 2.0
MAX_SEGMENT_S = 6.0
LEVEL_BLOCK_S = 0.5


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """1/f noise, unit RMS: the fallback background when a data source ships no noise files."""
    white = rng.standard_normal(n)
    spec = np.fft.rfft(white)
    f = np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE)
    spec /= np.sqrt(np.maximum(f, 20.0))  # flatten below 20 Hz so DC does not dominate
    x = np.fft.irfft(spec, n)
    return (x / (np.sqrt(np.mean(x * x)) + 1e-12)).astype(np.float32)


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.asarray(x, dtype=np.float64) ** 2)))


def noise_bed(source: np.ndarray, n_samples: int, level_rms: float, rng: np.random.Generator) -> np.ndarray:
    """`n_samples` of background noise at a constant RMS level.

    Random 2-6 s segments of `source` (a data source's `noise`) are brought to `level_rms`
    (per half second, see level_envelope) and cross-faded, so every part of the stream has
    the same noise power and the SNR of each word placed on it is the SNR asked for. An empty source (a data
    source without noise files) falls back to pink noise, and the caller records that.
    """
    if n_samples <= 0:
        return np.zeros(0, dtype=np.float32)
    src = np.asarray(source, dtype=np.float32).ravel()
    if not has_usable_noise(src):
        return (pink_noise(n_samples, rng) * level_rms).astype(np.float32)
    fade = int(CROSSFADE_S * SAMPLE_RATE)
    ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
    out = np.zeros(n_samples + fade, dtype=np.float32)
    pos = 0
    while pos < n_samples:
        seg_len = int(rng.uniform(MIN_SEGMENT_S, MAX_SEGMENT_S) * SAMPLE_RATE)
        seg_len = min(seg_len, src.size)
        start = int(rng.integers(0, src.size - seg_len + 1))
        seg = src[start:start + seg_len].copy()
        if rms(seg) == 0.0:  # a digitally silent stretch of the noise files: draw again
            continue
        seg *= level_envelope(seg, level_rms)
        seg[:fade] *= ramp
        seg[-fade:] *= ramp[::-1]
        end = min(pos + seg_len, out.size)
        out[pos:end] += seg[: end - pos]
        pos += seg_len - fade
    return out[:n_samples]


def level_envelope(x: np.ndarray, level_rms: float, block_s: float = LEVEL_BLOCK_S) -> np.ndarray:
    """Per-sample gain bringing `x` to `level_rms`, block by block (`block_s`).

    A noise source is a concatenation of recordings at very different levels; one gain per
    segment would leave a 30 dB step wherever a segment spans two of them. The gain between
    two block centres is set by the louder of the two blocks, so a loud stretch next to a
    quiet one is never boosted by the quiet one's gain (no spikes at the joins), and what
    happens inside a block (a clatter, a door) keeps its shape: false accepts come from those.
    """
    n = int(block_s * SAMPLE_RATE)
    nb = max(1, int(np.ceil(x.size / n)))
    xf = x.astype(np.float64)
    block = np.array([np.sqrt(np.mean(xf[k * n:(k + 1) * n] ** 2)) for k in range(nb)])
    block = np.maximum(block, 1e-3 * rms(x))  # near-silent blocks: no 60 dB boost of dither
    # sample i lies between block centres k and k+1 with k = floor(i/n - 0.5)
    k = np.clip(np.floor(np.arange(x.size) / n - 0.5).astype(np.int64), -1, nb - 1)
    left = block[np.clip(k, 0, nb - 1)]
    right = block[np.clip(k + 1, 0, nb - 1)]
    return (level_rms / np.maximum(left, right)).astype(np.float32)


@dataclass(frozen=True)
class Stream:
    """A long test recording and where its words are."""

    wave: np.ndarray  # float32 mono at SAMPLE_RATE
    events: tuple[WordEvent, ...]
    snr_db: float | None  # None for a keyword-free stream

    @property
    def duration_s(self) -> float:
        return self.wave.size / SAMPLE_RATE


def has_usable_noise(source: np.ndarray) -> bool:
    """Whether noise_bed will use `source` (else it falls back to pink noise)."""
    src = np.asarray(source).ravel()
    return src.size >= int(MIN_SEGMENT_S * SAMPLE_RATE) and rms(src) > 0


def noise_from_clips(clips: np.ndarray, min_rms: float = 1e-6) -> np.ndarray:
    """Join short noise clips (a test split's `_silence_` clips) into one noise source.

    The clips were cut at random gains; each is normalised to unit RMS so a join is not a
    jump in level, and consecutive clips overlap by a short cross-fade so it is not a click.
    Digitally silent clips carry no noise and are dropped.
    """
    x = np.asarray(clips, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"noise clips must be [N, samples], got {x.shape}")
    r = np.sqrt(np.mean(x * x, axis=1))
    x = x[r > min_rms] / r[r > min_rms, None]
    if x.shape[0] == 0:
        return np.zeros(0, dtype=np.float32)
    fade = int(CROSSFADE_S * SAMPLE_RATE)
    ramp = np.linspace(0.0, 1.0, fade)
    step = x.shape[1] - fade
    out = np.zeros(step * x.shape[0] + fade)
    for i, c in enumerate(x):
        c = c.copy()
        if i > 0:
            c[:fade] *= ramp
        if i < x.shape[0] - 1:
            c[-fade:] *= ramp[::-1]
        out[i * step:i * step + c.size] += c
    return out.astype(np.float32)


def word_stream(clips: np.ndarray, labels: Sequence[str], noise: np.ndarray, *, snr_db: float, noise_rms: float,
                gap_s: float, gap_jitter_s: float, rng: np.random.Generator,
                min_gap_s: float | None = None, lead_in_s: float = 0.0) -> Stream:
    """Words (1 s clips) separated by `gap_s` ± `gap_jitter_s` of noise, over a constant noise bed.

    Each clip is scaled so that its power over the 1 s clip is `snr_db` above the noise
    power, then added to the bed (the noise runs under the words too, as in a room).
    `min_gap_s`, when given, is the matching tolerance the caller will use: gaps shorter
    than it would let two words' windows overlap, so they are refused. `lead_in_s` of noise
    come before the first word, so an adaptive VAD has settled on the noise floor by then.
    """
    clips = np.asarray(clips)
    if clips.ndim != 2 or clips.shape[1] != CLIP_SAMPLES:
        raise ValueError(f"clips must be [N, {CLIP_SAMPLES}], got {clips.shape}")
    if len(labels) != clips.shape[0] or clips.shape[0] == 0:
        raise ValueError("need one label per clip and at least one clip")
    if gap_jitter_s < 0 or gap_s - gap_jitter_s <= 0:
        raise ValueError(f"gap {gap_s} s with jitter {gap_jitter_s} s can reach zero")
    if min_gap_s is not None and gap_s - gap_jitter_s < min_gap_s:
        raise ValueError(f"words closer than {gap_s - gap_jitter_s:.2f} s would overlap the "
                         f"{min_gap_s:.2f} s matching window; raise gap_s")
    gaps = rng.uniform(gap_s - gap_jitter_s, gap_s + gap_jitter_s, size=clips.shape[0] + 1)
    gaps[0] += max(lead_in_s, 0.0)
    starts = (np.cumsum(gaps[:-1]) + np.arange(clips.shape[0]) * (CLIP_SAMPLES / SAMPLE_RATE))
    start_samples = np.round(starts * SAMPLE_RATE).astype(np.int64)
    total = int(start_samples[-1] + CLIP_SAMPLES + round(gaps[-1] * SAMPLE_RATE))
    wave = noise_bed(noise, total, noise_rms, rng).astype(np.float64)
    events = []
    for clip, label, s0 in zip(clips, labels, start_samples):
        c = (from_int16(clip) if clip.dtype.kind == "i" else clip).astype(np.float64)  # int16 ClipSet rows -> [-1, 1]
        p = float(np.mean(c * c))
        if p <= 0:
            raise ValueError(f"a silent clip labelled {label!r} cannot be placed at an SNR")
        gain = np.sqrt(noise_rms ** 2 * 10.0 ** (snr_db / 10.0) / p)
        wave[s0:s0 + CLIP_SAMPLES] += gain * c
        events.append(WordEvent(str(label), s0 / SAMPLE_RATE, (s0 + CLIP_SAMPLES) / SAMPLE_RATE))
    peak = float(np.abs(wave).max())
    if peak > 1.0:  # keep the stream in [-1, 1] as a sound card would deliver it, without clipping
        wave /= peak
    return Stream(wave.astype(np.float32), tuple(events), float(snr_db))


def keyword_free_stream(noise: np.ndarray, *, seconds: float, noise_rms: float, rng: np.random.Generator) -> Stream:
    """Background noise only: every detection on it is a false accept."""
    n = int(round(seconds * SAMPLE_RATE))
    return Stream(noise_bed(noise, n, noise_rms, rng), (), None)


def balanced_pick(y: np.ndarray, keep: Sequence[int], n: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of up to `n` items whose label is in `keep`, cycling over labels so each word is
    about equally represented (a stream of 200 "yes" would say nothing about "no")."""
    y = np.asarray(y)
    pools = [list(rng.permutation(np.flatnonzero(y == k))) for k in keep]
    pools = [p for p in pools if p]
    out: list[int] = []
    while len(out) < n and any(pools):
        for p in pools:
            if p and len(out) < n:
                out.append(int(p.pop()))
    return np.array(rng.permutation(out), dtype=np.int64)
