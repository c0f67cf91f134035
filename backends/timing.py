"""Latency measurement that survives a shared, noisy machine.

Candidates are timed in interleaved rounds (A B C A B C ...) rather than one after the
other, so a burst of load from another process hits all of them alike; medians, not
means, so one descheduled call does not move the figure.
"""
from __future__ import annotations

import time
from typing import Callable, Mapping

import numpy as np


def interleaved_latency(fns: Mapping[str, Callable[[], object]], rounds: int = 20, per_round: int = 10,
                        warmup: int = 5) -> dict[str, np.ndarray]:
    """Seconds per call of each zero-argument callable, interleaved; {name: array of samples}."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            for _ in range(per_round):
                t0 = time.perf_counter()
                fn()
                samples[name].append(time.perf_counter() - t0)
    return {k: np.asarray(v) for k, v in samples.items()}


def summary_ms(samples: np.ndarray) -> dict[str, float]:
    # p10 beside the median: on a loaded machine the median is often a descheduled call, the p10 rarely
    return {"p10_ms": float(np.percentile(samples, 10) * 1e3), "p50_ms": float(np.median(samples) * 1e3),
            "p90_ms": float(np.percentile(samples, 90) * 1e3),
            "p99_ms": float(np.percentile(samples, 99) * 1e3), "n": int(len(samples))}
