"""Speaker-disjoint cross-validation folds over real-speech sources.

A 190-clip test split of 14 speakers gives an interval of about +-7 points; k-fold
cross-validation scores every clip once, each by a model that never heard its speaker.
Fold k of n re-splits a source: the speakers of fold k are the test split, about 10 % of the
other speakers (by clips) are validation (early stopping and the best checkpoint), the rest
train. Clips without a speaker id (`_silence_`) are dealt round-robin into folds per word.

Fold `all` holds no speaker out: every recorded clip trains except the validation share, as
the final model of a cross-validated recipe is trained once its estimate is known.

Speakers are given to folds largest-first, each to the fold with the fewest clips so far
(ties in seeded hash order), so five FSDD speakers become leave-one-speaker-out and 104 Speech
Commands speakers five folds of nearly equal size. A `fixed` map carries the assignment from
one source to the next, so a speaker recorded in two corpora (Speech Commands v0.01 and v0.02
share speaker ids) is held out from both at once.
"""
from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from typing import Mapping, MutableMapping

from kws.data.index import SPLITS, ClipEntry, DataError, NoiseSegment, SourceIndex
from kws.labels import SILENCE

VALIDATION_SHARE = 0.10  # of the non-test clips, by whole speakers


@dataclass(frozen=True)
class Fold:
    """Fold `k` (1-based, as people count) of `n`; k = 0 is `all` (no fold held out)."""

    k: int
    n: int

    def __post_init__(self) -> None:
        if not (self.n >= 2 and 0 <= self.k <= self.n):
            raise DataError(f"fold {self.k}/{self.n}: expected K/N with 1 <= K <= N and N >= 2, or 'all'")

    @classmethod
    def parse(cls, text: str) -> "Fold":
        if text.strip() == "all":
            return ALL
        k, sep, n = text.partition("/")
        if not sep or not k.strip().isdigit() or not n.strip().isdigit() or int(k) == 0:
            raise DataError(f"fold {text!r}: expected K/N with 1 <= K <= N (e.g. 2/5), or 'all'")
        return cls(int(k), int(n))

    def __str__(self) -> str:
        return "all" if self.k == 0 else f"{self.k}/{self.n}"


ALL = Fold(0, 2)  # no speaker held out (n only sizes the fold table; nothing is tested)


def _hash(seed: int, key: str) -> str:
    return hashlib.sha1(f"{seed}:{key}".encode("utf-8")).hexdigest()


def speaker_folds(clips_per_speaker: Mapping[str, int], n: int, seed: int = 0,
                  fixed: Mapping[str, int] | None = None) -> dict[str, int]:
    """speaker -> fold in [0, n): largest speakers first into the emptiest fold; `fixed` ones keep theirs."""
    fixed = dict(fixed or {})
    load = [0] * n
    out: dict[str, int] = {}
    for spk, c in clips_per_speaker.items():
        if spk in fixed:
            out[spk] = fixed[spk]
            load[fixed[spk]] += c
    free = sorted((s for s in clips_per_speaker if s not in fixed),
                  key=lambda s: (-clips_per_speaker[s], _hash(seed, s)))
    for spk in free:
        f = min(range(n), key=lambda i: (load[i], i))
        out[spk] = f
        load[f] += clips_per_speaker[spk]
    return out


def _validation_speakers(clips_per_speaker: Mapping[str, int], seed: int) -> set[str]:
    """About VALIDATION_SHARE of the clips, as whole speakers in hash order (at least one speaker)."""
    order = sorted(clips_per_speaker, key=lambda s: _hash(seed, "validation:" + s))
    total, taken, chosen = sum(clips_per_speaker.values()), 0, set()
    for spk in order[:-1]:  # leave at least one speaker to train on
        if chosen and taken >= VALIDATION_SHARE * total:
            break
        chosen.add(spk)
        taken += clips_per_speaker[spk]
    return chosen


def apply_fold(index: SourceIndex, fold: Fold, seed: int = 0,
               fixed: MutableMapping[str, int] | None = None) -> SourceIndex:
    """`index` re-split for `fold`; `fixed` (speaker -> 0-based fold) is read and extended."""
    entries = [e for s in SPLITS for e in index.splits[s]]
    cut = [e for e in entries if e.start is not None]  # silence cut from noise recordings keeps its split
    clips = [e for e in entries if e.start is None]
    speakers = Counter(e.speaker for e in clips if e.speaker)
    if fold.k and len(speakers) < fold.n:
        raise DataError(f"{index.name}: {len(speakers)} speakers cannot fill {fold.n} speaker-disjoint folds")
    fixed = fixed if fixed is not None else {}
    of_speaker = speaker_folds(speakers, fold.n, seed, fixed)
    fixed.update(of_speaker)
    held = fold.k - 1
    test = {s for s, f in of_speaker.items() if f == held}
    val = _validation_speakers({s: c for s, c in speakers.items() if s not in test}, seed)

    # Clips without a speaker: round-robin over folds per word in hash order, then the same
    # validation share of the non-test ones.
    by_word: dict[str, list[ClipEntry]] = defaultdict(list)
    for e in clips:
        if not e.speaker:
            by_word[e.word].append(e)
    anon_split: dict[str, str] = {}
    for word, es in by_word.items():
        es = sorted(es, key=lambda e: _hash(seed, e.ref))
        rest = []
        for i, e in enumerate(es):
            if i % fold.n == held:
                anon_split[e.ref] = "test"
            else:
                rest.append(e)
        n_val = round(len(rest) * VALIDATION_SHARE)
        for i, e in enumerate(rest):
            anon_split[e.ref] = "validation" if i < n_val else "train"

    splits: dict[str, list[ClipEntry]] = {s: [] for s in SPLITS}
    for e in clips:
        if e.speaker:
            s = "test" if e.speaker in test else "validation" if e.speaker in val else "train"
        else:
            s = anon_split[e.ref]
        splits[s].append(e)
    old_split = {e.ref: s for s in SPLITS for e in index.splits[s]}
    for e in cut:
        splits[old_split[e.ref]].append(e)

    # Noise taken from training silence clips must come from this fold's training clips only.
    silence_paths = {e.path for e in clips if e.word == SILENCE}
    noise = [seg for seg in index.noise if seg.path not in silence_paths]
    if len(noise) < len(index.noise):
        noise += [NoiseSegment(e.path) for e in splits["train"] if e.word == SILENCE]
    return replace(
        index,
        splits={s: tuple(v) for s, v in splits.items()},
        noise=tuple(noise),
        split_rule=f"cross-validation fold {fold} by speaker ({len(test)} test speakers, "
                   f"{len(val)} validation, {len(speakers) - len(test) - len(val)} train; seed {seed})",
        notes=index.notes + (f"fold {fold}: {sum(map(len, splits.values()))} clips re-split by speaker",),
    )
