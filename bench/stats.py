"""Pure statistics for the benchmark: no I/O, no torch, numpy only (no sklearn dependency).

Every function here is small and tested on synthetic inputs with known answers
(tests/test_bench_stats.py), because every number in the published report flows
through one of them.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable, Sequence

import numpy as np

PERCENTILES: tuple[int, ...] = (50, 90, 99)


# ----------------------------------------------------------------------------- latency


@dataclass(frozen=True)
class LatencySummary:
    """Summary of repeated timings, in milliseconds."""

    n: int
    mean_ms: float
    std_ms: float
    min_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def percentiles(samples: Sequence[float] | np.ndarray, qs: Iterable[float] = PERCENTILES) -> dict[str, float]:
    """{"p50": .., "p90": .., "p99": ..} with numpy's linear interpolation between order statistics.

    Linear interpolation (numpy's default, Hyndman & Fan type 7) is used so the numbers
    match what anyone re-deriving them with numpy or pandas gets.
    """
    x = np.asarray(samples, dtype=np.float64).ravel()
    if x.size == 0:
        raise ValueError("percentiles of an empty sample")
    if not np.all(np.isfinite(x)):
        raise ValueError("percentiles: sample holds NaN or infinite values")
    return {f"p{q:g}": float(np.percentile(x, q)) for q in qs}


def summarize_latency(seconds: Sequence[float] | np.ndarray) -> LatencySummary:
    """Timings in seconds -> summary in milliseconds."""
    ms = np.asarray(seconds, dtype=np.float64).ravel() * 1e3
    p = percentiles(ms)
    return LatencySummary(n=int(ms.size), mean_ms=float(ms.mean()), std_ms=float(ms.std(ddof=1)) if ms.size > 1 else 0.0,
                          min_ms=float(ms.min()), p50_ms=p["p50"], p90_ms=p["p90"], p99_ms=p["p99"],
                          max_ms=float(ms.max()))


# ----------------------------------------------------------------------------- intervals


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion k/n (NaNs for n = 0)."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (float(c - h), float(c + h))


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): Student-t interval of the mean of a few values (e.g. one per fold)."""
    from scipy.stats import t as student_t

    x = np.asarray(values, dtype=np.float64)
    if x.size == 0 or not np.all(np.isfinite(x)):
        raise ValueError("t_interval needs finite values")
    m = float(x.mean())
    if x.size == 1:
        return (m, float("nan"), float("nan"))
    half = float(student_t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size))
    return (m, m - half, m + half)


def cluster_bootstrap_interval(correct: Sequence[bool], clusters: Sequence[str], reps: int = 2000,
                               seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of an accuracy when clips come in clusters (speakers).

    Clips of one speaker are not independent draws, so the clip-level Wilson interval is too
    narrow; resampling whole speakers with replacement gives an honest one.
    """
    ok = np.asarray(correct, dtype=np.float64)
    keys = np.asarray(clusters)
    if ok.size == 0 or ok.size != keys.size:
        raise ValueError("cluster_bootstrap_interval needs one cluster id per clip")
    _, inv = np.unique(keys, return_inverse=True)
    hits = np.bincount(inv, weights=ok)
    sizes = np.bincount(inv).astype(np.float64)
    rng = np.random.default_rng(seed)
    draw = rng.integers(0, len(sizes), size=(reps, len(sizes)))
    acc = hits[draw].sum(1) / sizes[draw].sum(1)
    lo, hi = np.quantile(acc, [(1 - level) / 2, (1 + level) / 2])
    return (float(lo), float(hi))


# ----------------------------------------------------------------------------- Pareto front


def pareto_front(latency: Sequence[float], accuracy: Sequence[float]) -> np.ndarray:
    """Boolean mask of the points no other point dominates (lower-or-equal latency AND
    higher-or-equal accuracy, strictly better in one). NaN points are never on the front.

    Exact duplicates do not dominate each other, so both stay on the front.
    """
    lat = np.asarray(latency, dtype=np.float64)
    acc = np.asarray(accuracy, dtype=np.float64)
    if lat.shape != acc.shape:
        raise ValueError("latency and accuracy must have the same length")
    valid = np.isfinite(lat) & np.isfinite(acc)
    mask = np.zeros(lat.shape, dtype=bool)
    for i in np.flatnonzero(valid):
        others = valid.copy()
        others[i] = False
        dominated = others & (lat <= lat[i]) & (acc >= acc[i]) & ((lat < lat[i]) | (acc > acc[i]))
        mask[i] = not dominated.any()
    return mask


# ----------------------------------------------------------------------------- streaming detection


@dataclass(frozen=True)
class WordEvent:
    """A word placed in a stream: its label and where its 1 s clip sits, in seconds."""

    label: str
    start_s: float
    end_s: float


@dataclass(frozen=True)
class MatchResult:
    n_events: int
    hits: int  # events with a detection of the right word inside their window
    wrong_words: int  # events with no right detection but a detection of another word
    misses: int  # events with no detection at all
    extra: int  # detections outside every window, or beyond the first in a window
    outcomes: tuple[str, ...]  # "hit" | "wrong" | "miss" per event

    @property
    def hit_rate(self) -> float:
        return self.hits / self.n_events if self.n_events else float("nan")

    @property
    def wrong_word_rate(self) -> float:
        return self.wrong_words / self.n_events if self.n_events else float("nan")

    @property
    def miss_rate(self) -> float:
        """1 - hit rate: a wrong word is a miss of the word that was said."""
        return 1.0 - self.hit_rate


def match_detections(detections: Sequence[tuple[str, float]], events: Sequence[WordEvent],
                     tol_before_s: float = 0.0, tol_after_s: float = 1.0) -> MatchResult:
    """Score detections (label, time_s) against ground-truth words.

    An event's window is [start - tol_before, end + tol_after]: a detector fires after it has
    heard the word, so late detections within `tol_after` still count. A detection belongs to
    the latest-starting event whose window holds it (the word just said). Windows may overlap
    only if the stream builder put words closer than the tolerance, which it refuses to do.
    """
    order = sorted(range(len(events)), key=lambda i: events[i].start_s)
    starts = np.array([events[i].start_s - tol_before_s for i in order], dtype=np.float64)
    ends = np.array([events[i].end_s + tol_after_s for i in order], dtype=np.float64)
    assigned: list[list[str]] = [[] for _ in order]
    extra = 0
    for label, t in sorted(detections, key=lambda d: d[1]):
        k = int(np.searchsorted(starts, t, side="right")) - 1  # latest window starting at or before t
        if k >= 0 and t <= ends[k]:
            assigned[k].append(label)
        else:
            extra += 1
    outcomes_sorted: list[str] = []
    for k, labels in enumerate(assigned):
        truth = events[order[k]].label
        if truth in labels:
            outcomes_sorted.append("hit")
            extra += len(labels) - 1  # the cooldown should have stopped a second firing
        elif labels:
            outcomes_sorted.append("wrong")
            extra += len(labels) - 1
        else:
            outcomes_sorted.append("miss")
    outcomes = [""] * len(events)
    for k, i in enumerate(order):
        outcomes[i] = outcomes_sorted[k]
    return MatchResult(n_events=len(events), hits=outcomes.count("hit"), wrong_words=outcomes.count("wrong"),
                       misses=outcomes.count("miss"), extra=extra, outcomes=tuple(outcomes))


def fa_per_hour(n_false_accepts: int, duration_s: float) -> float:
    """False accepts per hour of keyword-free audio."""
    if duration_s <= 0:
        raise ValueError("duration must be positive")
    return n_false_accepts * 3600.0 / duration_s


@dataclass(frozen=True)
class OperatingPoint:
    threshold: float
    miss_rate: float
    fa_per_hour: float


def threshold_for_fa_rate(points: Sequence[OperatingPoint], target_fa_per_hour: float = 1.0) -> OperatingPoint | None:
    """The operating point with the lowest miss rate whose FA/h is at or below the target.

    Ties go to the lowest threshold (the most sensitive setting that meets the target).
    None when no threshold in the sweep reaches the target.
    """
    ok = [p for p in points if np.isfinite(p.fa_per_hour) and p.fa_per_hour <= target_fa_per_hour]
    if not ok:
        return None
    return min(ok, key=lambda p: (p.miss_rate, p.threshold))


def miss_fa_curve(thresholds: Sequence[float], results: Sequence[MatchResult], false_accepts: Sequence[int],
                  free_duration_s: float) -> list[OperatingPoint]:
    """Operating points from per-threshold word-stream matches and keyword-free-stream FA counts."""
    if not (len(thresholds) == len(results) == len(false_accepts)):
        raise ValueError("thresholds, results and false_accepts must have the same length")
    return [OperatingPoint(threshold=float(t), miss_rate=float(r.miss_rate), fa_per_hour=fa_per_hour(n, free_duration_s))
            for t, r, n in zip(thresholds, results, false_accepts)]


# ----------------------------------------------------------------------------- signal levels


def mix_at_snr(signal: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """signal + noise scaled so that 10*log10(P_signal / P_noise) = snr_db (powers over the whole array).

    Powers are means over the clip, the usual definition for Speech Commands noise tests;
    silent signals cannot have an SNR and raise.
    """
    s = np.asarray(signal, dtype=np.float64)
    n = np.asarray(noise, dtype=np.float64)
    if s.shape != n.shape:
        raise ValueError(f"signal {s.shape} and noise {n.shape} must have the same shape")
    ps = float(np.mean(s * s))
    pn = float(np.mean(n * n))
    if ps <= 0:
        raise ValueError("signal is silent: SNR undefined")
    if pn <= 0:
        raise ValueError("noise is silent: cannot scale it to an SNR")
    gain = np.sqrt(ps / (pn * 10.0 ** (snr_db / 10.0)))
    return (s + gain * n).astype(np.float32)


def snr_db(signal: np.ndarray, noise: np.ndarray) -> float:
    s = np.asarray(signal, dtype=np.float64)
    n = np.asarray(noise, dtype=np.float64)
    return float(10.0 * np.log10(np.mean(s * s) / np.mean(n * n)))
