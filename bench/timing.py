"""Timing loops: warm-up, then repeat until a run count or a time budget is reached."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

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
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        out.append(dt)
        spent += dt
    return Timings(np.asarray(out, dtype=np.float64), stopped_by, policy.warmup_runs)


def time_once(fn: Callable[[], object]) -> tuple[float, object]:
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result
