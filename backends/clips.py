"""Fixed clip sets for parity checks, int8 calibration and benchmarks.

Real speech (../shared/data/gsc12-dev) when it is there, else deterministic speech-like
synthetic clips; every report says which (`Clips.source`). Calibration and evaluation
clips are disjoint draws from one seeded permutation, so int8 is never scored on the
clips it was calibrated on.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kws.audio import CLIP_SAMPLES, SAMPLE_RATE
from kws.paths import GSC12_DEV


def dev_root() -> Path:
    """The real-speech development set: $KWS_DEV_CLIPS, else ../shared/data/gsc12-dev."""
    return Path(os.environ.get("KWS_DEV_CLIPS", GSC12_DEV))


@dataclass(frozen=True)
class Clips:
    waves: np.ndarray  # float32 [N, 16000]
    words: tuple[str, ...] | None  # folder word of each clip (real data), None for synthetic
    source: str  # human-readable: where the clips came from

    def __len__(self) -> int:
        return len(self.waves)

    def fitted(self, length: int) -> "Clips":
        """The same clips at `length` samples (centred: cut, or zero-padded), for a model whose clips are
        not 1 s long; these clips themselves when they already are."""
        if self.waves.shape[1] == length:
            return self
        from kws.audio import fit_length

        waves = np.ascontiguousarray(fit_length(self.waves, length), dtype=np.float32)
        return Clips(waves, self.words, f"{self.source}; centred in {length}-sample clips")


@functools.lru_cache(maxsize=4)
def _dev_files(root: str) -> tuple[str, ...]:
    files = sorted(str(p) for p in Path(root).glob("*/*.wav"))
    return tuple(files)


def get_clips(n: int, part: str = "eval", seed: int = 0, real: bool | None = None) -> Clips:
    """`n` clips; part="calib" and part="eval" never overlap. real=None: real when present."""
    if part not in ("calib", "eval"):
        raise ValueError(f"part must be 'calib' or 'eval', got {part!r}")
    root = dev_root()
    files = _dev_files(str(root)) if root.is_dir() else ()
    if real is True and not files:
        raise FileNotFoundError(f"{root}: real development clips not found")
    if real is False or not files:
        offset = 0 if part == "calib" else 1_000_003  # disjoint synthetic streams
        return Clips(speechlike_clips(n, seed=seed + offset), None,
                     f"synthetic speech-like clips (seed {seed}, {part}); {root} not found")
    from kws.audio import load_clip

    order = np.random.default_rng(seed).permutation(len(files))
    n_calib = min(256, len(files) // 4)  # calibration pool, held out of every evaluation
    pool = order[:n_calib] if part == "calib" else order[n_calib:]
    pick = sorted(pool[:n].tolist())
    waves = np.stack([load_clip(files[i]) for i in pick]).astype(np.float32)
    words = tuple(Path(files[i]).parent.name for i in pick)
    return Clips(waves, words, f"{len(pick)} real clips from {root} ({part} part, seed {seed})")


def speechlike_clips(n: int, seed: int = 0) -> np.ndarray:
    """Deterministic voiced 'syllables' (glottal harmonics through formants) in noise, float32 [n, 16000].

    Not speech, but with speech's structure: a pitch contour, formant peaks, onsets and
    silence around them, so log-mel features and network activations look like the real
    thing's rather than like white noise's. Every 8th clip is noise only (a silence class).
    """
    rng = np.random.default_rng(seed)
    t = np.arange(CLIP_SAMPLES) / SAMPLE_RATE
    out = np.empty((n, CLIP_SAMPLES), np.float32)
    for i in range(n):
        noise = rng.standard_normal(CLIP_SAMPLES) * 10 ** rng.uniform(-3.5, -2)
        if i % 8 == 7:
            out[i] = noise
            continue
        f0 = rng.uniform(90, 260) * (1 + rng.uniform(-0.25, 0.25) * t)  # gliding pitch
        phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
        formants = rng.uniform([250, 900, 2200], [900, 2300, 3500])
        y = np.zeros(CLIP_SAMPLES)
        for h in range(1, int(4000 / f0.max())):
            gain = sum(np.exp(-0.5 * ((h * f0 - f) / 120.0) ** 2) for f in formants) / h
            y += gain * np.sin(h * phase)
        start, dur = rng.uniform(0.05, 0.45), rng.uniform(0.25, 0.5)
        env = np.clip((t - start) / 0.03, 0, 1) * np.clip((start + dur - t) / 0.08, 0, 1)
        y = y * env / (np.abs(y * env).max() + 1e-9) * rng.uniform(0.05, 0.6)
        out[i] = y + noise
    return out
