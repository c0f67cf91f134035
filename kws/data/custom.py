"""Your own words: synthetic examples of any word, negatives, hard negatives, default noise.

Four kinds of data-source part (kws.data.source hands them here):

- `say:WORDS`, `say:N:WORDS`: N synthetic clips (default SAY_PER_WORD) of each comma-separated
  word, made by the generator (`python -m kws.data.synth`, see build_words) into
  `<cache>/synth/` on first use (seconds for a few words) and reused after: the build is keyed
  by the words, N and the generator's own settings. Splits are speaker-disjoint (the generator's), `_silence_` clips are cut from the
  build's synthetic noise; that noise is not training noise (see `default_noise`).
- `train:PATH`: your words, `PATH/<word>/*.wav`, every clip in the training split. With a
  handful of recordings a held-out split would cost a fifth of them; the few-shot benchmark
  (bench.fewshot) gives exactly k recordings per word to training this way.
- `val:PATH`: the same layout, every clip in the validation split (early stopping and the
  best checkpoint on recordings no training clip came from: bench.fewshot's held-back takes).
- `negatives:PATH`: every audio file under PATH, at any depth, in the training split as a word
  that is no label, so `_unknown_` (hard negatives: the false detections `live.py
  --save-detections` kept).

train.py's custom-word options become such parts in kws.data.plan.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from pathlib import Path
from typing import Sequence

import numpy as np

from kws.audio import SAMPLE_RATE, SUPPORTED_SUFFIXES, AudioError, load_audio
from kws.data.index import SPLITS, ClipEntry, DataError, SourceIndex
from kws.data.kinds import SourceSpec, register_source
from kws.data.layout import index_layout
from kws.labels import SILENCE, UNKNOWN
from kws.paths import PROJECT_ROOT, SHARED_DATA, resolve_path

SAY_PER_WORD = 200  # synthetic clips per keyword: 700 voices' worth of variety in ~5 s per word
NEGATIVE_PER_WORD = 5  # synthetic clips per negative word (~140 words): variety of words over voices
HARD_NEGATIVE = "_hard_negative_"  # the word of `negatives:` clips: no label, so `_unknown_`
# How often a clip of each part is drawn, relative to one of your recordings (weight 1). Your
# recordings are few: each counts for several synthetic clips.
SAY_WEIGHT = 0.2
NEGATIVE_WEIGHT = 0.2
HARD_NEGATIVE_WEIGHT = 2.0  # a false trigger is one clip among thousands: drawn more often
SYNTH_SEED = 0  # one fixed build per word list (as kws.data.source does for `synth`) ...
SYNTH_ATTEMPTS = 3  # ... unless the generator crashes on it: then the next seeds
NEGATIVES = ("auto", "synth", "none")
# The shipped recorded noise: Speech Commands' background-noise clips in the development set.
RECORDED_NOISE = ("gsc12-dev", SILENCE)
NOISE_BUILD = ("noise",)  # the default synthetic noise comes from a one-clip build of this word
WRONG_DIR = "wrong"  # where the live app's "wrong" button moves a saved detection


# --------------------------------------------------------------------------- say:

def parse_say(arg: str) -> tuple[int, tuple[str, ...]]:
    """`[N:]word,word` -> (clips per word, words)."""
    head, sep, rest = arg.partition(":")
    per_word = SAY_PER_WORD
    if sep and head.strip().isdigit():
        per_word, arg = int(head), rest
    words = tuple(dict.fromkeys(w.strip() for w in arg.split(",") if w.strip()))
    if not words:
        raise DataError(f"say:{arg}: no words (expected say:WORD,WORD or say:N:WORD,WORD)")
    if per_word < 1:
        raise DataError(f"say:{arg}: clips per word must be >= 1")
    return per_word, words


def say_spec(words: Sequence[str], per_word: int = SAY_PER_WORD) -> str:
    bad = [w for w in words if any(c in w for c in ",+:*") or w != w.strip() or not w]
    if bad:
        raise DataError(f"words for synthetic speech may not contain , + : * or surrounding spaces: {bad}")
    return f"say:{per_word}:{','.join(words)}"


def _say_folder(words: tuple[str, ...], per_word: int, root: Path, seed: int) -> Path:
    from kws.data.synth import SYNTH_VERSION

    digest = hashlib.sha256("\n".join(words).encode()).hexdigest()[:10]
    stem = re.sub(r"[^a-z0-9]+", "-", "-".join(words[:3]).lower()).strip("-")[:40] or "words"
    # the generator's version in the name, as kws.data.source does for `synth` sets
    return root / "synth" / f"say-{stem}-{digest}-pw{per_word}-seed{seed}-v{SYNTH_VERSION}"


def _crash_mark(out: Path) -> Path:
    return out.with_name(out.name + ".crashed")


def _child(out: Path, words: tuple[str, ...], per_word: int, seed: int, progress: bool):
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "kws.data.synth", "--out", str(out), "--words", ",".join(words),
           "--per-word", str(per_word), "--seed", str(seed), "--workers", "1"]
    return subprocess.Popen(cmd, cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL,
                            stderr=None if progress else subprocess.PIPE, text=True)


def _settle(proc, out: Path, words: tuple[str, ...], seed: int) -> str | None:
    """Wait for a generator child: None when it built `out`, else the crash (recorded beside it)."""
    from kws.fsutil import atomic_write_text

    err = proc.communicate()[1] or ""
    if proc.returncode == 0:
        return None
    last = err.strip().splitlines()[-1:] or [f"exit status {proc.returncode}"]
    if proc.returncode > 0 and "error:" in last[0]:  # a refusal (bad word, no engine): no seed helps
        raise DataError(f"say:{','.join(words)}: synthetic speech generation failed ({last[0]})")
    problem = f"seed {seed}: the generator crashed ({last[0]})"
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(_crash_mark(out), problem + "\n")
    return problem


def _seeds(words: tuple[str, ...], per_word: int, root: Path):
    """(seed, folder) to try in order: the crashed ones skipped."""
    for seed in range(SYNTH_SEED, SYNTH_SEED + SYNTH_ATTEMPTS):
        out = _say_folder(words, per_word, root, seed)
        if not _crash_mark(out).is_file():
            yield seed, out


def build_words(words: Sequence[str], per_word: int, root: Path, progress: bool = True) -> Path:
    """A synthetic build of `words` (kws.data.synth) in the cache; returns its folder.

    A new build runs the generator in a child process, one clip at a time (`python -m
    kws.data.synth --workers 1`): a TTS engine that crashes on one voice (espeak-ng segfaults
    on a few voice/word pairs) then ends that child, where in a worker pool it would leave the
    build waiting forever. A build that crashes is retried with the next generator seed, and
    the crash is recorded beside it so later runs go straight to the seed that works. A build
    already made is handed to the generator in-process, which returns at once when it is current.
    """
    from kws.data.synth import SynthError, build_synth, read_manifest

    words = tuple(words)
    for seed, out in _seeds(words, per_word, root):
        if read_manifest(out) is not None:
            try:
                return Path(build_synth(out, words=words, per_word=per_word, seed=seed, workers=1, progress=progress))
            except (OSError, SynthError, ValueError) as e:
                raise DataError(f"say:{','.join(words)}: synthetic speech generation failed ({e})") from e
        if _settle(_child(out, words, per_word, seed, progress), out, words, seed) is None:
            return out
    marks = [_crash_mark(_say_folder(words, per_word, root, s)) for s in range(SYNTH_SEED, SYNTH_SEED + SYNTH_ATTEMPTS)]
    raise DataError(f"say:{','.join(words)}: the synthetic speech generator crashed with every seed tried "
                    f"({'; '.join(m.read_text().strip() for m in marks if m.is_file())})")


def build_many(jobs: Sequence[tuple[Sequence[str], int]], root: Path) -> list[Path]:
    """Several builds (words, clips per word) at once, one generator child per core."""
    todo = []
    for words, per_word in jobs:
        first = next(_seeds(tuple(words), per_word, root), None)
        if first is not None and not (first[1] / "manifest.json").is_file():
            todo.append((tuple(words), per_word, *first))
    todo.sort(key=lambda t: -len(t[0]) * t[1])
    running: list = []
    cores = max(1, os.cpu_count() or 1)
    for k, (words, per_word, seed, out) in enumerate(todo):
        if len(running) >= cores:
            _settle(*running.pop(0))
        # the largest build shows its progress bar; concurrent bars would overwrite each other
        running.append((_child(out, words, per_word, seed, progress=k == 0), out, words, seed))
    for job in running:
        _settle(*job)
    return [build_words(words, per_word, root, progress=False) for words, per_word in jobs]


def index_say(arg: str, root: Path, seed: int, name: str) -> SourceIndex:
    per_word, words = parse_say(arg)
    index = index_layout(build_words(words, per_word, root), "gsc", seed, name=name)
    # The build's noise stays out of the augmentation noise: default_noise decides that.
    return dataclasses.replace(index, noise=())


# --------------------------------------------------------------------------- train: and negatives:

def _only(index: SourceIndex, split: str, rule: str) -> SourceIndex:
    every = tuple(e for s in SPLITS for e in index.splits[s])
    return dataclasses.replace(index, splits={s: every if s == split else () for s in SPLITS}, split_rule=rule)


def index_train(path: Path, seed: int, name: str) -> SourceIndex:
    return _only(index_layout(path, "folder", seed, name=name), "train", "every clip in training (train:)")


def index_val(path: Path, seed: int, name: str) -> SourceIndex:
    return _only(index_layout(path, "folder", seed, name=name), "validation", "every clip in validation (val:)")


def audio_files_under(folder: Path) -> list[Path]:
    """Audio files at any depth, hidden entries skipped, sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [Path(dirpath) / f for f in filenames
                  if not f.startswith(".") and os.path.splitext(f)[1].lower() in SUPPORTED_SUFFIXES]
    return sorted(found)


def index_negatives(path: Path, name: str) -> SourceIndex:
    if not path.is_dir():
        raise DataError(f"{path}: hard-negatives folder not found")
    files = audio_files_under(path)
    if not files:
        raise DataError(f"{path}: no audio files (.wav, .flac, .ogg) at any depth; expected the clips that "
                        f"live.py --save-detections keeps")
    entries = tuple(ClipEntry(str(p), HARD_NEGATIVE, "") for p in files)
    return SourceIndex(name=name, root=str(path), kind="folder", splits={"train": entries, "validation": (), "test": ()},
                       natural_labels=(UNKNOWN,), split_rule="every clip in training, as _unknown_ (negatives:)",
                       notes=(f"{len(files)} hard negatives, trained as {UNKNOWN}",))


# --------------------------------------------------------------------------- the kinds kws.data.source reads

@register_source("say", usage="say:WORDS, say:N:WORDS", synthetic=True)
def _read_say(part: SourceSpec, root: Path, seed: int) -> SourceIndex:
    return index_say(part.arg, root, seed, name=part.text[:80])


@register_source("train", usage="train:PATH")
def _read_train(part: SourceSpec, root: Path, seed: int) -> SourceIndex:
    path = resolve_path(part.arg)
    return index_train(path, seed, name=f"train:{path.name}")


@register_source("val", usage="val:PATH")
def _read_val(part: SourceSpec, root: Path, seed: int) -> SourceIndex:
    path = resolve_path(part.arg)
    return index_val(path, seed, name=f"val:{path.name}")


@register_source("negatives", usage="negatives:PATH")
def _read_negatives(part: SourceSpec, root: Path, seed: int) -> SourceIndex:
    path = resolve_path(part.arg)
    return index_negatives(path, name=f"negatives:{path.name}")


# --------------------------------------------------------------------------- noise

def default_noise(root: Path) -> tuple[np.ndarray, str]:
    """The project's noise for data without `_background_noise_`: (float32 at 16 kHz, what it is).

    Synthetic: the generator's white, pink, brown, babble, hum and tap beds (60 s each).
    Recorded: the `_silence_` clips of ../shared/data/gsc12-dev (Speech Commands' background
    recordings), where that folder exists.
    """
    from kws.labels import BACKGROUND_NOISE_DIR

    folder = build_words(NOISE_BUILD, 1, root, progress=False)
    synthetic = audio_files_under(folder / BACKGROUND_NOISE_DIR)
    shared = SHARED_DATA.joinpath(*RECORDED_NOISE)
    recorded = audio_files_under(shared) if shared.is_dir() else []
    chunks = []
    for p in synthetic + recorded:
        try:
            chunks.append(load_audio(p, max_seconds=None))
        except AudioError:
            continue  # a broken recording is no noise; the rest still is
    if not chunks:
        raise DataError(f"default noise: no readable noise files in {folder / BACKGROUND_NOISE_DIR}")
    noise = np.concatenate(chunks).astype(np.float32, copy=False)
    what = (f"default noise: {len(synthetic)} synthetic beds" + (f" + {len(recorded)} recorded background clips "
            f"({'/'.join(RECORDED_NOISE)})" if recorded else "") + f", {len(noise) / SAMPLE_RATE:.0f} s")
    return noise, what
