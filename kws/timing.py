"""Timing loops that survive a shared, noisy machine: the one place latency is measured.

`time_calls` warms a call up, then repeats it until a run count or a time budget is reached.
`interleaved_latency` times several candidates in interleaved rounds (A B C A B C ...) rather
than one after the other, so a burst of load from another process hits all of them alike.
Both time each call with the same `_timed` step. Report medians, not means, so one
descheduled call does not move the figure.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np


@dataclass(frozen=True)
class TimingPolicy:
    """Stop after `min_runs` timed runs or `max_seconds` of timed work, whichever comes first,
    but never before `floor_runs` (a p99 of 3 samples would be a made-up number)."""

    warmup_runs: int = 20
    min_runs: int = 1000
    max_seconds: float = 20.0
    floor_runs: int = 20

    def __post_init__(self) -> None:
        if self.min_runs < 1 or self.floor_runs < 1 or self.max_seconds <= 0 or self.warmup_runs < 0:
            raise ValueError(f"invalid timing policy {self}")


@dataclass(frozen=True)
class Timings:
    seconds: np.ndarray  # one entry per timed call
    stopped_by: str  # "runs" | "time"
    warmup_runs: int


def _timed(fn: Callable[[], object]) -> float:
    """Seconds of one call (perf_counter); `fn` must block until its result is ready."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def time_calls(fn: Callable[[], object], policy: TimingPolicy) -> Timings:
    """Time `fn()` repeatedly with perf_counter; `fn` must block until its result is ready
    (the backends return numpy arrays, so a GPU result is already synchronised)."""
    for _ in range(policy.warmup_runs):
        fn()
    out: list[float] = []
    spent = 0.0
    stopped_by = "runs"
    while len(out) < policy.min_runs:
        if spent >= policy.max_seconds and len(out) >= policy.floor_runs:
            stopped_by = "time"
            break
        dt = _timed(fn)
        out.append(dt)
        spent += dt
    return Timings(np.asarray(out, dtype=np.float64), stopped_by, policy.warmup_runs)


def time_once(fn: Callable[[], object]) -> tuple[float, object]:
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


def interleaved_latency(fns: Mapping[str, Callable[[], object]], rounds: int = 20, per_round: int = 10,
                        warmup: int = 5) -> dict[str, np.ndarray]:
    """Seconds per call of each zero-argument callable, interleaved; {name: array of samples}."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            samples[name].extend(_timed(fn) for _ in range(per_round))
    return {k: np.asarray(v) for k, v in samples.items()}


def summary_ms(samples: np.ndarray) -> dict[str, float]:
    # p10 beside the median: on a loaded machine the median is often a descheduled call, the p10 rarely
    return {"p10_ms": float(np.percentile(samples, 10) * 1e3), "p50_ms": float(np.median(samples) * 1e3),
            "p90_ms": float(np.percentile(samples, 90) * 1e3),
            "p99_ms": float(np.percentile(samples, 99) * 1e3), "n": int(len(samples))}
