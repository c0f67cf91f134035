"""Evaluation sets: the test split of a `kws.data` source, optionally a balanced subset.

The bench evaluates every model on the same clips, so the subset (quick mode) is drawn once
per data source, deterministically, and its size is written into the JSON.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from bench.signals import balanced_pick, has_usable_noise, noise_from_clips
from kws.audio import from_int16
from kws.labels import SILENCE, UNKNOWN, has_12class_words, to_12class
from kws.paths import GSC12_DEV

# gsc12-dev is the project's real-speech development set; the bench adds it when present. It is
# read as a folder source so that its "test" split is the speakers held out of the shipped
# weights' training (the folder split is speaker-disjoint and seeded); the `gsc12-dev` spec
# would score all 1,815 clips, most of whose speakers the shipped weights were trained on.
# The synthetic build the shipped weights were trained on (synth:400): its test split holds
# speakers they never heard. Another build (e.g. the default `synth`, 100 per word) is generated
# from the same seed and shares most of its speakers with synth:400's training split.
DEFAULT_SPECS: tuple[str, ...] = ("synth:400",)
OPTIONAL_SPECS: tuple[tuple[str, Path], ...] = ((f"folder:{GSC12_DEV}", GSC12_DEV),)


@dataclass(frozen=True, eq=False)
class EvalSet:
    """Clips to score, with their labels and the source's background noise."""

    name: str  # short name used in tables and file names
    spec: str  # the `kws.data.open_source` spec it came from
    split: str
    labels: tuple[str, ...]
    waves: np.ndarray  # int16 [N, 16000]
    y: np.ndarray  # int64 [N]
    noise: np.ndarray  # float32 1-D, may be empty (then streams and mixtures use pink noise)
    noise_kind: str  # where `noise` comes from, for the report
    n_total: int  # clips in the split before subsetting

    def __len__(self) -> int:
        return int(self.y.size)

    def float_waves(self, idx: np.ndarray | slice = slice(None)) -> np.ndarray:
        return from_int16(self.waves[idx])

    def describe(self) -> dict:
        subset = "all" if len(self) == self.n_total else f"balanced subset of {len(self)}/{self.n_total}"
        return {"name": self.name, "spec": self.spec, "split": self.split, "clips": len(self),
                "clips_in_split": self.n_total, "subset": subset, "labels": list(self.labels),
                "noise": self.noise_kind, "noise_seconds": round(self.noise.size / 16000.0, 1),
                "unknown_share_12class": self.unknown_share()}

    def has_12class_words(self) -> bool:
        """Whether the clips (not merely the label list) hold a word of the 12-class task."""
        return has_12class_words(self.labels[k] for k in np.unique(self.y))

    def unknown_share(self) -> float | None:
        """Share of clips that are `_unknown_` on the 12-class task: a model that always answers
        "unknown" scores this much 12-class accuracy, so the report prints it beside that column."""
        if not self.has_12class_words():
            return None
        return float(np.mean([to_12class(self.labels[k]) == UNKNOWN for k in self.y]))


def default_specs() -> list[str]:
    """The embedded synthetic set, plus the real-speech dev set when it is on disk."""
    specs = list(DEFAULT_SPECS)
    specs += [name for name, path in OPTIONAL_SPECS if path.is_dir()]
    return specs


def spec_name(spec: str) -> str:
    """A short, file-name-safe name for a data spec ("gsc:/a/b/gsc12-dev" -> "gsc12-dev")."""
    base = spec.split(":", 1)[1] if ":" in spec and not spec.startswith(("synth", "gsc12-dev")) else spec
    base = Path(base).name if "/" in base else base
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in base) or "data"


def load_evalset(spec: str, split: str = "test", max_clips: int | None = None, seed: int = 0,
                 labels: str = "35s") -> EvalSet:
    """Open `spec` with kws.data and take its split (a balanced subset when max_clips is set)."""
    from kws.data import open_source

    src = open_source(spec, labels=labels, seed=seed)
    cs = src.split(split)
    n_total = len(cs)
    if n_total == 0:
        raise ValueError(f"data source {spec!r}: the {split!r} split is empty")
    y = np.asarray(cs.y, dtype=np.int64)
    noise, noise_kind = eval_noise(cs, lambda: np.asarray(src.noise, dtype=np.float32).ravel())
    if max_clips is not None and max_clips < n_total:
        idx = np.sort(balanced_pick(y, sorted(set(y.tolist())), max_clips, np.random.default_rng(seed)))
        waves, y = np.asarray(cs.waves[idx]), y[idx]
    else:
        waves = np.asarray(cs.waves)
    return EvalSet(name=spec_name(spec), spec=spec, split=split, labels=tuple(cs.labels), waves=waves, y=y,
                   noise=noise, noise_kind=noise_kind, n_total=n_total)


def eval_noise(cs, train_noise: Callable[[], np.ndarray]) -> tuple[np.ndarray, str]:
    """Noise to test with, and where it comes from.

    Preferred: the test split's own `_silence_` clips (kws.data cuts them from the held-out
    part of the noise recordings, and gsc12-dev ships real ones), so no model is tested on
    noise it was trained with. Then the source's training noise (said so in the report),
    then nothing (pink noise, said so too).
    """
    labels = tuple(cs.labels)
    y = np.asarray(cs.y)
    if SILENCE in labels:
        idx = np.flatnonzero(y == labels.index(SILENCE))
        noise = noise_from_clips(np.asarray(cs.waves[idx])) if idx.size else np.zeros(0, np.float32)
        if has_usable_noise(noise):
            return noise, f"{idx.size} test-split {SILENCE} clips, each normalised ({noise.size / 16000:.0f} s)"
    train = train_noise()  # loaded only when needed: it is read from the recordings
    if has_usable_noise(train):
        return train, f"the source's training-part background noise ({train.size / 16000:.0f} s)"
    return np.zeros(0, np.float32), "pink noise (synthetic; the source has no noise)"
