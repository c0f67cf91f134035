"""Loading-speed benchmark: clips/s decoding audio files (cold) vs reading the memmap cache (warm).

Cold decodes into a throw-away cache folder, so the real cache is neither used nor touched.
Warm reads that fresh cache the way a training loop does: shuffled batches, and one clip at
a time. The OS page cache is not dropped (that needs root), so "warm" is the steady state
of a second epoch and "cold" measures decoding, with the audio files possibly in RAM.
"""
from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from kws.data.cache import DEFAULT_WORKERS, open_split_cache
from kws.data.index import SPLITS
from kws.data.source import open_source

MAX_ITEM_READS = 20_000  # the per-clip loop is timed on at most this many clips


@dataclass(frozen=True)
class LoadBenchConfig:
    spec: str
    labels: str = "35s"
    fast: bool = False
    seed: int = 0
    split: str = "auto"  # "auto": the largest split (gsc12-dev is all test)
    batch_size: int = 256
    workers: int = DEFAULT_WORKERS
    epochs: int = 3  # warm passes; the best is reported


def _rate(n: int, seconds: float) -> float:
    return round(n / seconds, 1) if seconds > 0 else float("inf")


def bench_load(cfg: LoadBenchConfig) -> dict:
    """One result row for `cfg` (see the module doc for what cold and warm mean)."""
    src = open_source(cfg.spec, labels=cfg.labels, fast=cfg.fast, seed=cfg.seed, workers=cfg.workers)
    split = max(SPLITS, key=lambda sp: len(src.entries(sp))) if cfg.split == "auto" else cfg.split
    entries = src.entries(split)
    with tempfile.TemporaryDirectory(prefix="kws-bench-load-") as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        cold = open_split_cache(entries, folder, split, src.view, cfg.workers, name=f"{src.name}/{split}")
        cold_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        warm = open_split_cache(entries, folder, split, src.view, cfg.workers, name=f"{src.name}/{split}")
        open_s = time.perf_counter() - t0
        n = len(warm)

        order = np.random.default_rng(cfg.seed).permutation(n)
        checksum = 0.0  # consume the data so no read can be optimised away
        batch_s = item_s = float("inf")
        n_items = min(n, MAX_ITEM_READS)
        for _ in range(cfg.epochs):  # best epoch: the steady state, least disturbed by other jobs
            t0 = time.perf_counter()
            for i in range(0, n, cfg.batch_size):
                x, _ = warm.batch(order[i:i + cfg.batch_size])
                checksum += float(x[:, ::4000].sum())
            batch_s = min(batch_s, time.perf_counter() - t0)
            t0 = time.perf_counter()
            for i in order[:n_items]:
                checksum += float(warm[int(i)][0][8000])
            item_s = min(item_s, time.perf_counter() - t0)
        cache_bytes = cold.path.stat().st_size if cold.path is not None else 0

    cold_rate = _rate(len(entries), cold_s)
    warm_rate = _rate(n, batch_s)
    return {
        "source": cfg.spec,
        "name": src.name,
        **{k: v for k, v in asdict(cfg).items() if k != "spec"},
        "split": split,
        "clips": n,
        "bad_files": len(cold.bad),
        "cold_decode_seconds": round(cold_s, 3),
        "cold_clips_per_s": cold_rate,
        "warm_open_seconds": round(open_s, 4),
        "warm_batch_clips_per_s": warm_rate,
        "warm_item_clips_per_s": _rate(n_items, item_s),
        "warm_vs_cold_speedup": round(warm_rate / cold_rate, 1) if cold_rate else None,
        "cache_mib": round(cache_bytes / 2**20, 1),
        "checksum": round(checksum, 3),
    }
