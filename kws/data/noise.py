"""Background noise: loading it, and cutting `_silence_` clips from it.

Each noise recording is divided in time, 80 / 10 / 10 %, between train, validation and test,
so a silence clip of the test split never shares a sample with the training noise.
"""
from __future__ import annotations

import functools
import math
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from kws.audio import CLIP_SAMPLES, AudioError, load_audio
from kws.data.index import SPLITS, BadFile, ClipEntry, NoiseSegment
from kws.labels import SILENCE

# The 12-class standard (Warden 2018): silence is 10 % as many clips as the words, 1/11 of a split.
SILENCE_FRACTION = 0.10
NOISE_SPLIT_BOUNDS: dict[str, tuple[float, float]] = {
    "train": (0.0, 0.8), "validation": (0.8, 0.9), "test": (0.9, 1.0),
}
# Log-uniform gain from -50 dB to 0 dB. The canonical test set's silence clips have an RMS
# spread from ~1e-5 to 0.3 (median 0.02); noise recordings sit around 0.1-0.3 RMS.
SILENCE_GAIN_DB = (-50.0, 0.0)


@functools.lru_cache(maxsize=16)
def _load_noise(path: str, mtime_ns: int, size: int) -> np.ndarray:
    # mtime/size in the key: an edited file is re-read, not served stale.
    x = load_audio(path, max_seconds=None)  # noise recordings may legitimately be long
    x.setflags(write=False)  # shared between callers through the cache
    return x


def load_noise(path: str | Path) -> np.ndarray:
    """A noise recording as read-only float32 mono at 16 kHz (memoised). Raises AudioError."""
    try:
        st = os.stat(path)
    except OSError:
        raise AudioError(path, "file not found", "missing") from None
    return _load_noise(str(path), st.st_mtime_ns, st.st_size)


def measure_noise(paths: Sequence[str]) -> tuple[dict[str, int], list[BadFile]]:
    """Length in samples of each usable noise file, and the files that could not be read."""
    lengths: dict[str, int] = {}
    bad: list[BadFile] = []
    for p in paths:
        try:
            lengths[p] = int(load_noise(p).shape[0])
        except AudioError as e:
            bad.append(BadFile(e.path, e.problem, e.kind))
    return lengths, bad


def split_segment(length: int, split: str) -> tuple[int, int]:
    lo, hi = NOISE_SPLIT_BOUNDS[split]
    return int(lo * length), int(hi * length)


def train_noise_segments(lengths: Mapping[str, int]) -> tuple[NoiseSegment, ...]:
    """The training part of every noise file: what augmentation may mix into training clips."""
    return tuple(NoiseSegment(p, *split_segment(n, "train")) for p, n in sorted(lengths.items()))


def silence_count(n_word_clips: int) -> int:
    return math.ceil(SILENCE_FRACTION * n_word_clips)


def cut_silence(
    lengths: Mapping[str, int],
    counts: Mapping[str, int],
    seed: int,
) -> tuple[dict[str, tuple[ClipEntry, ...]], list[str]]:
    """`counts[split]` 1 s silence clips per split, cut at seeded positions and gains.

    Returns the entries per split and notes for the summary (e.g. noise too short to keep the
    splits' noise apart).
    """
    out: dict[str, tuple[ClipEntry, ...]] = {}
    notes: list[str] = []
    for split_no, split in enumerate(SPLITS):
        n = counts.get(split, 0)
        if n <= 0:
            out[split] = ()
            continue
        ranges = [(p, *split_segment(L, split)) for p, L in sorted(lengths.items())]
        ranges = [(p, a, b) for p, a, b in ranges if b - a >= CLIP_SAMPLES]
        if not ranges:
            # Short noise files: better a silence class drawn from shared noise than none.
            ranges = [(p, 0, L) for p, L in sorted(lengths.items()) if L >= CLIP_SAMPLES]
            if ranges:
                notes.append(f"{split}: noise too short to reserve a {split} part; silence cut from whole files")
        if not ranges:
            notes.append(f"{split}: no noise file of 1 s or more; no silence clips")
            out[split] = ()
            continue
        rng = np.random.default_rng([seed, split_no, 0x5113])
        room = np.array([b - a - CLIP_SAMPLES + 1 for _, a, b in ranges], dtype=np.float64)
        which = rng.choice(len(ranges), size=n, p=room / room.sum())
        offsets = rng.random(n)
        gains_db = rng.uniform(*SILENCE_GAIN_DB, size=n)
        entries = []
        for k, off, g in zip(which, offsets, gains_db):
            path, a, _ = ranges[k]
            start = a + int(off * room[k])
            entries.append(ClipEntry(path, SILENCE, "", start=start, gain=round(float(10 ** (g / 20)), 6)))
        out[split] = tuple(sorted(entries, key=lambda e: (e.path, e.start)))
    return out, notes


def read_segment(seg: NoiseSegment) -> np.ndarray:
    return np.asarray(load_noise(seg.path)[seg.start:seg.stop])
