"""Noise robustness: clip accuracy against SNR (clean, 20, 10, 5, 0 dB) for each model.

Every clip gets its own noise excerpt (the source's background noise, or pink noise when it
has none), drawn once per data set from a fixed seed, so every model hears exactly the same
mixtures. `_silence_` clips are left out: a clip without speech has no SNR.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from bench.evalsets import EvalSet
from bench.signals import has_usable_noise, noise_bed
from bench.stats import mix_at_snr
from kws.metrics import score, scoring_space
from kws.audio import CLIP_SAMPLES
from kws.labels import SILENCE

PredictFn = Callable[[np.ndarray], np.ndarray]
CLEAN = None  # the "clean" column: the clips as recorded


@dataclass(frozen=True)
class NoiseConfig:
    snrs_db: tuple[float | None, ...] = (CLEAN, 20.0, 10.0, 5.0, 0.0)
    batch_size: int = 64
    seed: int = 0


@dataclass(frozen=True, eq=False)
class NoisySet:
    """The mixtures of one eval set at every SNR, float32 [N, 16000] each."""

    dataset: str
    y: np.ndarray
    mixtures: dict[float | None, np.ndarray]
    noise_kind: str


def build_noisy(ev: EvalSet, cfg: NoiseConfig) -> NoisySet:
    keep = np.flatnonzero(np.asarray([ev.labels[int(k)] != SILENCE for k in ev.y]))
    clean = ev.float_waves(keep)
    power = np.mean(clean.astype(np.float64) ** 2, axis=1)
    keep, clean = keep[power > 0], clean[power > 0]  # a digitally silent word clip has no SNR either
    rng = np.random.default_rng(cfg.seed)
    bed = noise_bed(ev.noise, CLIP_SAMPLES * len(keep), 0.1, rng).reshape(len(keep), CLIP_SAMPLES)
    mixtures: dict[float | None, np.ndarray] = {}
    for snr in cfg.snrs_db:
        if snr is CLEAN:
            mixtures[snr] = clean
            continue
        mixed = np.stack([mix_at_snr(c, n, snr) for c, n in zip(clean, bed)])
        peak = np.abs(mixed).max(axis=1, keepdims=True)
        mixtures[snr] = (mixed / np.maximum(peak, 1.0)).astype(np.float32)  # no clipping at 0 dB
    kind = ev.noise_kind if has_usable_noise(ev.noise) else "pink noise (synthetic)"
    return NoisySet(ev.name, ev.y[keep], mixtures, kind)


def predict_labels(predict: PredictFn, waves: np.ndarray, batch_size: int) -> np.ndarray:
    out = [np.argmax(predict(np.ascontiguousarray(waves[i:i + batch_size])), axis=1)
           for i in range(0, len(waves), batch_size)]
    return np.concatenate(out).astype(np.int64)


def evaluate_model(predict: PredictFn, model_labels: Sequence[str], data_labels: Sequence[str], noisy: NoisySet,
                   cfg: NoiseConfig) -> dict:
    """Accuracy and macro F1 at each SNR, scored as the matrix scores (stats.scoring_space)."""
    t0 = time.perf_counter()
    space = scoring_space(model_labels, data_labels)
    rows = []
    for snr, waves in noisy.mixtures.items():
        m = score(space, noisy.y, predict_labels(predict, waves, cfg.batch_size))
        rows.append({"snr_db": snr, "accuracy": m.accuracy, "macro_f1": m.macro_f1, "n": m.n})
    return {"noise": noisy.noise_kind, "scored_on": space.name, "per_snr": rows,
            "seconds": round(time.perf_counter() - t0, 2)}
