"""The background noise: the generators of each kind (white, pink, brown, mains hum, a running
tap, and babble spoken by espeak from the filler words) and the seeded beds a build writes into
_background_noise_ and mixes into its clips.
"""
from __future__ import annotations

from dataclasses import asdict
from typing import Callable

import numpy as np
from scipy import signal

from kws.audio import SAMPLE_RATE
from kws.data.synth.dsp import to_16k
from kws.data.synth.espeak import EspeakLib, _espeak_params
from kws.data.synth.plan import Speaker, _draw_speaker, _weighted
from kws.data.synth.settings import ENGLISH_ACCENTS, FILLER_WORDS, SynthSettings
from kws.data.synth.voices import install_voice, voice_file_text


def _normalise(x: np.ndarray, rms_db: float = -20.0) -> np.ndarray:
    x = x - x.mean()
    x = x * (10 ** (rms_db / 20) / (np.sqrt(np.mean(x**2)) + 1e-12))
    peak = np.abs(x).max()
    return (x * (0.95 / peak) if peak > 0.95 else x).astype(np.float32)


def _coloured(n: int, rng: np.random.Generator, exponent: float) -> np.ndarray:
    """Noise with power ~ 1/f**exponent (0 white, 1 pink, 2 brown), shaped in the FFT domain."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    f[0] = f[1]
    spec *= (np.maximum(f, 20.0) / 20.0) ** (-exponent / 2)  # flat below 20 Hz: no DC drift
    return np.fft.irfft(spec, n)


def noise_white(n: int, rng: np.random.Generator) -> np.ndarray:
    return _normalise(rng.standard_normal(n))


def noise_pink(n: int, rng: np.random.Generator) -> np.ndarray:
    return _normalise(_coloured(n, rng, 1.0))


def noise_brown(n: int, rng: np.random.Generator) -> np.ndarray:
    return _normalise(_coloured(n, rng, 2.0))


def noise_hum(n: int, rng: np.random.Generator) -> np.ndarray:
    """Mains hum (50 or 60 Hz and harmonics, slowly wandering) over faint fan noise."""
    t = np.arange(n) / SAMPLE_RATE
    f0 = 50.0 if rng.random() < 0.5 else 60.0
    wander = np.cumsum(signal.lfilter([0.001], [1, -0.999], rng.standard_normal(n))) / SAMPLE_RATE
    x = np.zeros(n)
    for k in range(1, 13):
        amp = rng.uniform(0.2, 1.0) / k**0.8
        x += amp * np.sin(2 * np.pi * k * f0 * (t + 0.02 * wander) + rng.uniform(0, 2 * np.pi))
    fan = _coloured(n, rng, 1.0)
    x = x / np.sqrt(np.mean(x**2)) + 0.1 * fan / np.sqrt(np.mean(fan**2))
    return _normalise(x)


def noise_tap(n: int, rng: np.random.Generator) -> np.ndarray:
    """Running tap: band-passed hiss with a fluttering envelope plus many small bubble 'plinks'."""
    hiss = signal.sosfilt(signal.butter(4, [400, 6000], btype="bandpass", fs=SAMPLE_RATE, output="sos"),
                          rng.standard_normal(n))
    env = signal.lfilter([0.02], [1, -0.98], rng.standard_normal(n))
    hiss *= 1.0 + 2.0 * np.abs(env) / (np.abs(env).mean() + 1e-9) * 0.3
    x = hiss / np.sqrt(np.mean(hiss**2))
    n_bubbles = int(n / SAMPLE_RATE * 60)
    blen = int(0.03 * SAMPLE_RATE)
    tb = np.arange(blen) / SAMPLE_RATE
    for start in rng.integers(0, max(1, n - blen), n_bubbles):
        f = rng.uniform(500, 3000)
        chirp = np.sin(2 * np.pi * f * tb * (1 + 2 * tb))  # a bubble's pitch rises as it collapses
        x[start : start + blen] += rng.uniform(0.5, 3.0) * chirp * np.exp(-tb / rng.uniform(0.003, 0.012))
    return _normalise(x)


def noise_babble(n: int, rng: np.random.Generator, engine: EspeakLib) -> np.ndarray:
    """Crowd babble: 6 overlapping streams of random filler words, each from its own speaker."""
    mix = np.zeros(n)
    for s in range(6):
        sp = _draw_speaker(rng, f"babble{s}", ("espeak",))
        sp = Speaker(**{**asdict(sp), "accent": _weighted(rng, ENGLISH_ACCENTS)})
        vf = install_voice(engine.data_path, f"babble{s}",
                           voice_file_text(engine.data_path, sp.accent, sp.variant, sp.vtl, sp.pitch_scale))
        stream: list[np.ndarray] = []
        have = 0
        while have < n:
            words = [FILLER_WORDS[int(i)] for i in rng.integers(len(FILLER_WORDS), size=12)]
            text = " ".join(w + ("," if rng.random() < 0.3 else "") for w in words)
            x = engine.synth(text, vf, *_espeak_params(sp.rate, sp.pitch_level, sp.intonation),
                             seed=int(rng.integers(2**31 - 1)))
            x = to_16k(x, engine.sample_rate)
            stream.append(x)
            have += len(x)
        seg = np.concatenate(stream)
        seg = np.roll(seg, int(rng.integers(len(seg))))[:n]  # streams start mid-sentence
        mix += seg / (np.sqrt(np.mean(seg**2)) + 1e-9) * rng.uniform(0.5, 1.0)
    return _normalise(mix)


NOISE_FILES = {"white": "white_noise", "pink": "pink_noise", "brown": "brown_noise",
               "babble": "babble", "hum": "mains_hum", "tap": "running_tap"}


def make_noise_beds(settings: SynthSettings, engine: EspeakLib) -> dict[str, np.ndarray]:
    """The _background_noise_ recordings, one per kind, seeded independently of the clips."""
    n = int(settings.noise_seconds * SAMPLE_RATE)
    ss = np.random.SeedSequence([settings.seed, 0xB0150])
    rngs = dict(zip(NOISE_FILES, (np.random.default_rng(s) for s in ss.spawn(len(NOISE_FILES)))))
    gens: dict[str, Callable[[int, np.random.Generator], np.ndarray]] = {
        "white": noise_white, "pink": noise_pink, "brown": noise_brown, "hum": noise_hum, "tap": noise_tap,
        "babble": lambda m, r: noise_babble(m, r, engine),
    }
    return {k: gens[k](n, rngs[k]) for k in NOISE_FILES}
