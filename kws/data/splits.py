"""Split rules: the official Speech Commands hash, speaker-disjoint and seeded random splits.

Every rule is a pure function of file names (and a seed), so a split never depends on the
order files were listed in or on which other files happen to exist.
"""
from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from typing import Mapping, Sequence

import numpy as np

from kws.data.index import DEFAULT_FRACTIONS, SplitFractions

# From the Speech Commands reference code (tensorflow/examples/speech_commands/input_data.py):
# the hash is taken modulo this so that percentages stay stable as the set grows.
MAX_NUM_WAVS_PER_CLASS = 2**27 - 1
NOHASH = "_nohash_"
_NOHASH_RE = re.compile(r"_nohash_.*$")
# `<speaker>_nohash_<n>` (Speech Commands) or `<speaker>_<n>` (FSDD and most home recordings).
_SPEAKER_RE = re.compile(r"^(?P<speaker>.+?)(?:_nohash)?_\d+$")
MIN_SPEAKERS_FOR_DISJOINT = 3  # one speaker per split at the very least


def gsc_hash_name(filename: str) -> str:
    """The part of a Speech Commands file name that identifies its speaker (`_nohash_...` cut)."""
    base = filename.replace("\\", "/").rsplit("/", 1)[-1]
    return _NOHASH_RE.sub("", base)


def which_set(filename: str, fractions: SplitFractions = DEFAULT_FRACTIONS) -> str:
    """The official Speech Commands split of a file: "train", "validation" or "test".

    sha1 of the speaker part of the name, so every clip of a speaker lands in the same split
    and the assignment never changes when files are added.
    """
    hashed = hashlib.sha1(gsc_hash_name(filename).encode("utf-8")).hexdigest()
    percentage = (int(hashed, 16) % (MAX_NUM_WAVS_PER_CLASS + 1)) * (100.0 / MAX_NUM_WAVS_PER_CLASS)
    if percentage < fractions.validation * 100:
        return "validation"
    if percentage < (fractions.test + fractions.validation) * 100:
        return "test"
    return "train"


def speaker_of(stem: str) -> str | None:
    """Speaker id of a file stem named `<speaker>_<n>` or `<speaker>_nohash_<n>`, else None."""
    m = _SPEAKER_RE.match(stem)
    return m.group("speaker") if m else None


def _seeded_order(keys: Sequence[str], seed: int) -> list[str]:
    # Hash order rather than an RNG shuffle: adding one speaker moves only that speaker.
    return sorted(keys, key=lambda k: hashlib.sha1(f"{seed}:{k}".encode("utf-8")).hexdigest())


def speaker_disjoint_split(
    clips_per_speaker: Mapping[str, int],
    seed: int = 0,
    fractions: SplitFractions = DEFAULT_FRACTIONS,
) -> dict[str, str]:
    """speaker -> split, with every split holding at least one speaker.

    The sha1 rule alone can leave validation or test empty when there are few speakers (5
    speakers miss the 10 % validation bucket 59 % of the time), so speakers are taken in a
    seeded hash order and given to test, then validation, until each holds its share of clips.
    """
    speakers = _seeded_order(list(clips_per_speaker), seed)
    if len(speakers) < MIN_SPEAKERS_FOR_DISJOINT:
        raise ValueError(f"a speaker-disjoint split needs {MIN_SPEAKERS_FOR_DISJOINT} speakers, got {len(speakers)}")
    total = sum(clips_per_speaker.values())
    assignment: dict[str, str] = {}
    pos = 0
    for split, share, still_needed in (("test", fractions.test, 2), ("validation", fractions.validation, 1)):
        if share == 0:
            continue
        taken = 0
        # `still_needed`: leave at least one speaker for each split filled later.
        while pos < len(speakers) - still_needed and (taken == 0 or taken < share * total):
            assignment[speakers[pos]] = split
            taken += clips_per_speaker[speakers[pos]]
            pos += 1
    for spk in speakers[pos:]:
        assignment[spk] = "train"
    return assignment


def stratified_random_split(
    words: Sequence[str],
    seed: int = 0,
    fractions: SplitFractions = DEFAULT_FRACTIONS,
) -> list[str]:
    """A seeded split of items grouped by word: each word is split 80/10/10 on its own.

    Words with 3+ items get at least one in validation and test, so small custom vocabularies
    are still evaluated on every word.
    """
    by_word: dict[str, list[int]] = defaultdict(list)
    for i, w in enumerate(words):
        by_word[w].append(i)
    out = ["train"] * len(words)
    for word in sorted(by_word):
        idx = by_word[word]
        rng = np.random.default_rng([seed, int(hashlib.sha1(word.encode()).hexdigest()[:8], 16)])
        order = [idx[j] for j in rng.permutation(len(idx))]
        n = len(order)
        n_val = round(n * fractions.validation)
        n_test = round(n * fractions.test)
        if n >= 3:
            n_val = max(n_val, int(fractions.validation > 0))
            n_test = max(n_test, int(fractions.test > 0))
        for i in order[:n_test]:
            out[i] = "test"
        for i in order[n_test:n_test + n_val]:
            out[i] = "validation"
    return out


def proportional_split(n: int, shares: Mapping[str, float] | None, seed: int = 0) -> list[str]:
    """A seeded split of `n` interchangeable items with `shares` of them per split.

    Counts by largest remainder (so they sum to n); None means the default 80/10/10.
    """
    if shares is None or sum(shares.values()) <= 0:
        shares = {"train": 1 - DEFAULT_FRACTIONS.validation - DEFAULT_FRACTIONS.test,
                  "validation": DEFAULT_FRACTIONS.validation, "test": DEFAULT_FRACTIONS.test}
    names = list(shares)
    total = sum(shares.values())
    exact = np.array([n * shares[k] / total for k in names])
    counts = np.floor(exact).astype(int)
    for k in np.argsort(-(exact - counts), kind="stable")[: n - int(counts.sum())]:
        counts[k] += 1
    labels = [name for name, c in zip(names, counts) for _ in range(int(c))]
    order = np.random.default_rng([seed, 0x511]).permutation(n)
    return [labels[i] for i in order]
