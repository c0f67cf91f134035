"""Deterministic stand-ins for a KWS model and for speech, shared by the realtime tests.

Each "word" is a Hann-windowed tone burst at its own frequency; :class:`ToneModel` recognises
them by the share of the window's energy in each word's band, scaled by how much of the word
is inside the window (so confidence rises as a word enters the window and falls as it
leaves, like a real model's). Rows are independent, so batching never changes a result.
"""
from __future__ import annotations

import numpy as np

from kws.audio import SAMPLE_RATE

WORD_HZ = {"yes": 600.0, "no": 1000.0, "up": 1400.0, "stop": 1800.0}
LABELS = ("_silence_", "_unknown_", "yes", "no", "up", "stop")
WORD_S = 0.4
WORD_AMP = 0.3
BAND_HZ = 40.0


def tone_word(word: str, dur_s: float = WORD_S, amp: float = WORD_AMP) -> np.ndarray:
    n = round(dur_s * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    return (amp * np.hanning(n) * np.sin(2 * np.pi * WORD_HZ[word] * t)).astype(np.float32)


def make_stream(events: list[tuple[str, float]], total_s: float, noise_db: float = -60.0,
                seed: int = 0) -> np.ndarray:
    """White noise at `noise_db` dBFS with words starting at the given times (seconds)."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(round(total_s * SAMPLE_RATE)) * 10 ** (noise_db / 20)).astype(np.float32)
    for word, t0 in events:
        w = tone_word(word)
        s = round(t0 * SAMPLE_RATE)
        x[s : s + w.size] += w[: x.size - s]
    return x


FULL_WORD_ENERGY = float(np.sum(tone_word("yes") ** 2))


class ToneModel:
    """predict_fn: float32 [B, 16000] -> probs [B, len(LABELS)]; counts its calls."""

    def __init__(self, labels: tuple[str, ...] = LABELS) -> None:
        self.labels = labels
        self.calls = 0
        self.rows = 0
        freqs = np.fft.rfftfreq(SAMPLE_RATE, 1 / SAMPLE_RATE)
        self._bands = {w: np.abs(freqs - hz) <= BAND_HZ for w, hz in WORD_HZ.items() if w in labels}

    def __call__(self, waves: np.ndarray) -> np.ndarray:
        waves = np.asarray(waves, dtype=np.float32)
        assert waves.ndim == 2 and waves.shape[1] == SAMPLE_RATE, waves.shape
        self.calls += 1
        self.rows += waves.shape[0]
        out = np.zeros((waves.shape[0], len(self.labels)), dtype=np.float32)
        for r, x in enumerate(waves):
            power = np.abs(np.fft.rfft(x.astype(np.float64))) ** 2
            total = power.sum() + 1e-20
            energy = float(np.dot(x, x))
            p = np.zeros(len(self.labels))
            words = 0.0
            for w, band in self._bands.items():
                share = power[band].sum() / total
                presence = min(1.0, energy * share / (0.5 * FULL_WORD_ENERGY))
                p[self.labels.index(w)] = share * presence
                words += share * presence
            rest = 1.0 - words
            loud = min(1.0, energy / (0.05 * FULL_WORD_ENERGY))  # quiet windows are "silence"
            if "_unknown_" in self.labels:
                p[self.labels.index("_unknown_")] = rest * loud
            if "_silence_" in self.labels:
                p[self.labels.index("_silence_")] = rest * (1 - loud)
            out[r] = p / p.sum()
        return out


class SlowModel(ToneModel):
    """A ToneModel that takes `delay_s` per call (to make the engine fall behind)."""

    def __init__(self, delay_s: float) -> None:
        super().__init__()
        self.delay_s = delay_s

    def __call__(self, waves: np.ndarray) -> np.ndarray:
        import time

        time.sleep(self.delay_s)
        return super().__call__(waves)
