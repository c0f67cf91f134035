"""What a data source *is* before anything is decoded: clip entries per split, noise, problems.

Indexing only lists and names files (no decoding), so opening a source is cheap; the decoded
clips live in the memory-mapped cache (:mod:`kws.data.cache`) built from these entries.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

SPLITS: tuple[str, ...] = ("train", "validation", "test")
SPLIT_ALIASES: dict[str, str] = {
    "train": "train", "training": "train",
    "validation": "validation", "val": "validation", "valid": "validation", "dev": "validation",
    "test": "test", "testing": "test",
}


class DataError(ValueError):
    """A data source that cannot be opened (bad spec, missing folder, empty data set)."""


def canonical_split(name: str) -> str:
    try:
        return SPLIT_ALIASES[name.lower()]
    except KeyError:
        raise DataError(f"unknown split {name!r}; expected one of {', '.join(SPLITS)}") from None


@dataclass(frozen=True)
class ClipEntry:
    """One 1 s clip to decode.

    A whole file fitted to 1 s (``start is None``), or a 1 s cut starting at sample ``start``
    (16 kHz) of a long file, scaled by ``gain`` -- how `_silence_` clips are cut from noise.
    """

    path: str  # absolute path
    word: str  # fine label: the word folder's name, or SILENCE
    speaker: str = ""  # "" when the file name carries no speaker id (noise, silence)
    start: int | None = None
    gain: float = 1.0

    @property
    def ref(self) -> str:
        """A unique, human-readable name for the clip (file, plus the cut position if any)."""
        return self.path if self.start is None else f"{self.path}#{self.start}"


@dataclass(frozen=True)
class NoiseSegment:
    """Samples [start, stop) at 16 kHz of a noise recording (stop None = to the end)."""

    path: str
    start: int = 0
    stop: int | None = None


@dataclass(frozen=True)
class BadFile:
    """A file that was skipped, and why (kind is kws.audio.AudioError.kind)."""

    path: str
    problem: str
    kind: str

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "problem": self.problem, "kind": self.kind}


@dataclass(frozen=True)
class SourceIndex:
    """The undecoded content of a source: entries per split, its natural labels, its noise."""

    name: str
    root: str
    kind: str  # "gsc" (Speech Commands layout) or "folder" (folder per word)
    splits: Mapping[str, tuple[ClipEntry, ...]]
    natural_labels: tuple[str, ...]  # the labels used when the caller asks for none
    noise: tuple[NoiseSegment, ...] = ()
    bad: tuple[BadFile, ...] = ()  # problems found while indexing (e.g. a broken noise file)
    notes: tuple[str, ...] = ()  # facts a user should see in the summary
    split_rule: str = ""

    @property
    def words(self) -> tuple[str, ...]:
        """Every fine label with at least one clip, sorted."""
        return tuple(sorted({e.word for entries in self.splits.values() for e in entries}))


def concat_indexes(parts: Iterable[SourceIndex]) -> SourceIndex:
    """One index holding every part's clips; natural labels are the ordered union."""
    parts = list(parts)
    if len(parts) == 1:
        return parts[0]
    labels: list[str] = []
    for p in parts:
        labels += [lab for lab in p.natural_labels if lab not in labels]
    return SourceIndex(
        name="+".join(p.name for p in parts),
        root=" + ".join(p.root for p in parts),
        kind="gsc" if all(p.kind == "gsc" for p in parts) else "folder",
        splits={s: tuple(e for p in parts for e in p.splits.get(s, ())) for s in SPLITS},
        natural_labels=tuple(labels),
        noise=tuple(n for p in parts for n in p.noise),
        bad=tuple(b for p in parts for b in p.bad),
        notes=tuple(f"{p.name}: {n}" for p in parts for n in p.notes),
        split_rule="; ".join(f"{p.name}: {p.split_rule}" for p in parts),
    )


@dataclass(frozen=True)
class SplitFractions:
    """Validation and test shares, as in the Speech Commands `which_set` rule."""

    validation: float = 0.10
    test: float = 0.10

    def __post_init__(self) -> None:
        if not (0 <= self.validation < 1 and 0 <= self.test < 1 and self.validation + self.test < 1):
            raise ValueError(f"bad split fractions: {self}")


DEFAULT_FRACTIONS = SplitFractions()
