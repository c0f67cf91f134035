"""Index folder-per-word data sets: Speech Commands (`gsc:`) and your own words (`folder:`).

Both layouts are `<root>/<word>/<clip>.{wav,flac,ogg}`, optionally with `_silence_/` clips
and `_background_noise_/` recordings. They differ only in the split rule and the labels:

- Speech Commands: `validation_list.txt` / `testing_list.txt` when present (train is the
  rest), else the official sha1-of-speaker `which_set` rule, applied as published even when
  it leaves splits empty (gsc12-dev is all test); natural labels "35s".
- Folder per word: a speaker-disjoint split of the files whose names carry a speaker id (when
  there are enough speakers), a seeded random split per word of the rest (and a note naming
  them); natural labels are the sorted folder names.

`_background_noise_` is never a class. Without a `_silence_` folder, silence clips are cut
from it (see kws.data.noise).
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from kws.audio import SUPPORTED_SUFFIXES
from kws.data.index import SPLITS, ClipEntry, DataError, NoiseSegment, SourceIndex
from kws.data.noise import cut_silence, measure_noise, silence_count, train_noise_segments
from kws.data.splits import (
    MIN_SPEAKERS_FOR_DISJOINT, gsc_hash_name, proportional_split, speaker_disjoint_split, speaker_of,
    stratified_random_split, which_set,
)
from kws.labels import BACKGROUND_NOISE_DIR, GSC_V2_WORDS, SILENCE

VALIDATION_LIST = "validation_list.txt"
TESTING_LIST = "testing_list.txt"


@dataclass(frozen=True)
class Layout:
    """What a folder holds, by name only: audio files per word folder, and noise files."""

    root: Path
    files: dict[str, tuple[str, ...]]  # word -> sorted absolute paths
    noise_files: tuple[str, ...]
    ignored: int  # non-audio files and hidden entries in word folders


def _audio_files(folder: Path) -> tuple[list[str], int]:
    files, ignored = [], 0
    with os.scandir(folder) as it:
        for d in it:
            # Hidden files include macOS "._x.wav" resource forks, which are not audio.
            if d.name.startswith(".") or not d.is_file():
                ignored += not d.name.startswith(".")
                continue
            if os.path.splitext(d.name)[1].lower() in SUPPORTED_SUFFIXES:
                files.append(d.path)
            else:
                ignored += 1
    return sorted(files), ignored


def scan_layout(root: Path) -> Layout:
    """List word folders and their audio files. Raises DataError if there is nothing to use."""
    if not root.exists():
        raise DataError(f"{root}: data folder not found")
    if not root.is_dir():
        raise DataError(f"{root}: not a folder (expected <root>/<word>/*.wav)")
    files: dict[str, tuple[str, ...]] = {}
    noise: tuple[str, ...] = ()
    ignored = 0
    with os.scandir(root) as it:
        dirs = sorted((d for d in it if d.is_dir() and not d.name.startswith(".")), key=lambda d: d.name)
    for d in dirs:
        found, skipped = _audio_files(Path(d.path))
        if d.name == BACKGROUND_NOISE_DIR:
            noise = tuple(found)  # its README and the like are expected, not worth a note
            continue
        ignored += skipped
        if d.name.startswith("_") and d.name != SILENCE:
            ignored += len(found)  # e.g. __MACOSX; only `_silence_` is a class folder
        elif found:
            files[d.name] = tuple(found)
    if not files:
        raise DataError(f"{root}: no word folders with audio files (expected <root>/<word>/*.wav)")
    return Layout(root, files, noise, ignored)


def _rel(root: Path, path: str) -> str:
    return Path(path).relative_to(root).as_posix()


def _read_list(path: Path) -> set[str]:
    if not path.exists():
        return set()
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return {ln.strip().replace("\\", "/").removeprefix("./") for ln in lines if ln.strip()}


def _gsc_split_of(layout: Layout, seed: int) -> tuple[dict[str, str], str, list[str]]:
    """path -> split for a Speech Commands folder, the rule's name, and notes."""
    root = layout.root
    all_files = [p for paths in layout.files.values() for p in paths]
    notes: list[str] = []
    if (root / VALIDATION_LIST).exists() or (root / TESTING_LIST).exists():
        val, test = _read_list(root / VALIDATION_LIST), _read_list(root / TESTING_LIST)
        if val & test:
            notes.append(f"{len(val & test)} files are in both split lists; they are used as test")
        rel = {p: _rel(root, p) for p in all_files}
        missing = (val | test) - set(rel.values())
        if missing:
            notes.append(f"{len(missing)} files named in the split lists are not on disk")
        split_of = {p: "test" if r in test else "validation" if r in val else "train" for p, r in rel.items()}
        return split_of, f"official split lists ({VALIDATION_LIST}, {TESTING_LIST}); train is the rest", notes

    word_files = [p for w, paths in layout.files.items() if w != SILENCE for p in paths]
    split_of = {p: which_set(os.path.basename(p)) for p in word_files}
    filled = Counter(split_of.values())
    empty = [s for s in SPLITS if not filled[s]]
    if word_files and empty:
        # Faithful to the rule: gsc12-dev holds only v0.02 test-partition speakers, so all of
        # it is test -- the canonical 12-class evaluation. The folder view re-splits it.
        notes.append(f"which_set puts no speaker in {' / '.join(empty)}: this folder is a "
                     f"{' + '.join(s for s in SPLITS if filled[s])} set as published; "
                     f"use folder:{root} for a seeded speaker-disjoint 80/10/10 split")
    # `_silence_` clips carry no speaker: they follow the speech's share of each split, so
    # an all-test set keeps the canonical ~1/11 of silence in its test split.
    silence = sorted(layout.files.get(SILENCE, ()))
    shares = {s: filled[s] / len(word_files) for s in SPLITS} if word_files else None
    split_of.update(zip(silence, proportional_split(len(silence), shares, seed)))
    return split_of, "sha1 speaker hash (Speech Commands which_set: 10 % validation, 10 % test)", notes


def _by_speaker(speakers: dict[str, str], seed: int) -> dict[str, str]:
    """path -> split from path -> speaker, every split holding at least one speaker."""
    assignment = speaker_disjoint_split(Counter(speakers.values()), seed)
    return {p: assignment[s] for p, s in speakers.items()}


def _split_rest(layout: Layout, split_of: dict[str, str], rest: list[str], seed: int) -> None:
    """Give `rest` (clips without a speaker: silence, unparsable names) a seeded split per word."""
    word_of = {p: w for w, paths in layout.files.items() for p in paths}
    rest = sorted(rest)
    for p, s in zip(rest, stratified_random_split([word_of[p] for p in rest], seed)):
        split_of[p] = s


def _folder_split_of(layout: Layout, seed: int) -> tuple[dict[str, str], str, list[str]]:
    """path -> split for a folder-per-word set: by speaker wherever a name gives one, else random.

    Files whose names carry no `<speaker>_<n>` id cannot be kept apart by speaker; they get
    the seeded random split and a note names them, but they never turn off the speaker-disjoint
    split of the files that do carry one.
    """
    word_files = [p for w, paths in layout.files.items() if w != SILENCE for p in paths]
    speakers = {p: speaker_of(Path(p).stem) for p in word_files}
    named = {p: s for p, s in speakers.items() if s is not None}
    unnamed = sorted(p for p, s in speakers.items() if s is None)
    n_speakers = len(set(named.values()))
    notes: list[str] = []
    split_of: dict[str, str] = {}
    rest = list(layout.files.get(SILENCE, ()))  # silence has no speaker
    if n_speakers >= MIN_SPEAKERS_FOR_DISJOINT:
        split_of.update(_by_speaker(named, seed))
        rule = f"speaker-disjoint ({n_speakers} speakers from <speaker>_<n> file names, seed {seed})"
        rest += unnamed
        if unnamed:
            rule += f"; {len(unnamed)} files without an id: seeded random per word"
            shown = ", ".join(_rel(layout.root, p) for p in unnamed[:5]) + (", ..." if len(unnamed) > 5 else "")
            notes.append(f"{len(unnamed)} of {len(word_files)} files carry no <speaker>_<n> id and were split "
                         f"at random (they may share a speaker with another split): {shown}")
    else:
        rest += word_files
        why = f"only {n_speakers} speakers" if named else "file names carry no <speaker>_<n> id"
        notes.append(f"{why}: seeded random split, not speaker-disjoint")
        rule = f"seeded random per word (seed {seed})"
    _split_rest(layout, split_of, rest, seed)
    return split_of, rule, notes


def _entries(layout: Layout, kind: str, split_of: dict[str, str]) -> dict[str, list[ClipEntry]]:
    splits: dict[str, list[ClipEntry]] = {s: [] for s in SPLITS}
    for word, paths in layout.files.items():
        for p in paths:
            stem = Path(p).stem
            if word == SILENCE:
                speaker = ""
            elif kind == "gsc":
                speaker = gsc_hash_name(stem)
            else:
                speaker = speaker_of(stem) or ""
            splits[split_of[p]].append(ClipEntry(p, word, speaker))
    return splits


def _natural_labels(kind: str, words: set[str]) -> tuple[str, ...]:
    if kind == "gsc":  # "35s", plus any extra word folders (e.g. synthetic fillers) after it
        return GSC_V2_WORDS + (SILENCE,) + tuple(sorted(words - set(GSC_V2_WORDS) - {SILENCE}))
    return tuple(sorted(words))


def index_layout(root: str | Path, kind: str, seed: int = 0, name: str | None = None) -> SourceIndex:
    """Index a `gsc` or `folder` layout (no decoding beyond the noise recordings)."""
    if kind not in ("gsc", "folder"):
        raise ValueError(f"unknown layout kind {kind!r}")
    root = Path(root).expanduser().resolve()
    layout = scan_layout(root)
    split_of, rule, notes = _gsc_split_of(layout, seed) if kind == "gsc" else _folder_split_of(layout, seed)
    if layout.ignored:
        notes.append(f"{layout.ignored} non-audio files in word folders ignored")
    splits = _entries(layout, kind, split_of)
    words = set(layout.files)

    lengths, bad = measure_noise(list(layout.noise_files))
    if SILENCE not in words and lengths:
        cut, cut_notes = cut_silence(lengths, {s: silence_count(len(splits[s])) for s in SPLITS}, seed)
        notes += [f"silence: {n}" for n in cut_notes]
        for s in SPLITS:
            splits[s] += cut[s]
        if any(cut.values()):
            words.add(SILENCE)
            notes.append(f"_silence_ cut from {len(lengths)} {BACKGROUND_NOISE_DIR} recordings (seed {seed})")
    # Without noise recordings, the training `_silence_` clips are the next best noise source.
    noise = train_noise_segments(lengths) if lengths else train_silence_as_noise(splits["train"])

    return SourceIndex(
        name=name or f"{kind}:{root.name}",
        root=str(root),
        kind=kind,
        splits={s: tuple(v) for s, v in splits.items()},
        natural_labels=_natural_labels(kind, words),
        noise=noise,
        bad=tuple(bad),
        notes=tuple(notes),
        split_rule=rule,
    )


def train_silence_as_noise(train: list[ClipEntry]) -> tuple[NoiseSegment, ...]:
    return tuple(NoiseSegment(e.path) for e in train if e.word == SILENCE and e.start is None)
