"""Label views (35 / 35s / 12 / your own words) and the fast-mode training subset."""
from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from kws.data.index import ClipEntry, DataError, SourceIndex
from kws.labels import GSC12_LABELS, GSC12_WORDS, GSC_V2_WORDS, SILENCE, UNKNOWN

LABEL_SETS: dict[str, tuple[str, ...]] = {
    "35": GSC_V2_WORDS,
    "35s": GSC_V2_WORDS + (SILENCE,),
    # 35s with a class for "no command": speech that is none of the words (sentences, near misses,
    # half words) has somewhere to go besides the nearest word, which an always-on detector needs
    "35su": GSC_V2_WORDS + (SILENCE, UNKNOWN),
    "12": GSC12_LABELS,
}
# Every named set is a view of this vocabulary; a folder whose words all lie inside it can be
# viewed through a named set (FSDD digits under "35s"), a custom vocabulary cannot.
GSC_VOCABULARY: frozenset[str] = frozenset(GSC_V2_WORDS + (SILENCE,))
NATURAL = ("auto", "natural", "folder")  # aliases of labels=None: the source's own labels
# What a source gets when no label set is asked for (DEFAULT_RULE says it in words, for --help).
DEFAULT_LABELS = "default"
DEFAULT_RULE = ("'35s' for Speech Commands data (synth, gsc:, and any source or mix whose words include all ten "
                "12-class words yes/no/up/down/left/right/on/off/stop/go, e.g. synth+folder:gsc12-dev); "
                "'auto' (the source's own words) for other folders, e.g. a folder of digits gets its 10 labels")
FAST_TRAIN_CLIPS = 5_000

LabelsArg = str | Sequence[str] | None


@dataclass(frozen=True)
class LabelView:
    """Maps fine labels (folder words) to the outputs of a model.

    A word that is a label maps to itself; with `_unknown_` among the labels, every other
    word except silence maps to it (the 12-class rule, kws.labels.to_12class); otherwise the
    word is dropped from the view.
    """

    labels: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.labels or not all(isinstance(x, str) and x for x in self.labels):
            raise DataError(f"labels must be a non-empty list of names, got {self.labels!r}")
        if len(set(self.labels)) != len(self.labels):
            raise DataError(f"duplicate labels in {self.labels!r}")

    def target(self, word: str) -> str | None:
        if word in self.labels:
            return word
        if UNKNOWN in self.labels and word != SILENCE:
            return UNKNOWN
        return None

    def index_of(self, word: str) -> int:
        target = self.target(word)
        if target is None:
            raise KeyError(word)
        return self.labels.index(target)

    def apply(self, entries: Sequence[ClipEntry]) -> tuple[ClipEntry, ...]:
        return tuple(e for e in entries if self.target(e.word) is not None)


def resolve_labels(labels: LabelsArg, index: SourceIndex) -> tuple[tuple[str, ...], list[str]]:
    """The label tuple a source is viewed through, and notes explaining any substitution.

    - "default": `default_labels(index)` (DEFAULT_RULE);
    - None / "auto": the source's natural labels ("35s" for Speech Commands, sorted folder
      names for a folder per word);
    - "35" / "35s" / "12": that set, unless the source holds words outside the Speech
      Commands vocabulary (a custom folder), which keeps its own labels (with a note);
    - a sequence: exactly those labels.
    """
    if labels == DEFAULT_LABELS:
        labels = default_labels(index)
        if labels != "35s":
            return index.natural_labels, [f"labels: the source's own {len(index.natural_labels)} words (default "
                                          "for data that is not the Speech Commands set; --labels 35s to override)"]
    if labels is None or (isinstance(labels, str) and labels in NATURAL):
        return index.natural_labels, []
    if isinstance(labels, str):
        if labels not in LABEL_SETS:
            raise DataError(f"unknown label set {labels!r}; expected one of {', '.join(LABEL_SETS)}, "
                            f"'auto', or a list of labels")
        # words starting with "_" are no word (hard negatives, _unknown_): they need no label of their own
        custom = sorted(w for w in set(index.words) - GSC_VOCABULARY if not w.startswith("_"))
        if custom:
            shown = ", ".join(custom[:5]) + (" ..." if len(custom) > 5 else "")
            return index.natural_labels, [f"words outside the Speech Commands vocabulary ({shown}): "
                                          f"label set {labels!r} replaced by the source's own labels"]
        return LABEL_SETS[labels], []
    return tuple(labels), []


def default_labels(index: SourceIndex) -> str:
    """ "35s" for Speech Commands data, "auto" for folders of other words (DEFAULT_RULE).

    A Speech Commands layout (synth, gsc:) is always "35s". A folder (or a mix with one) is the
    Speech Commands set when its words include all ten 12-class words: then the 35s view is
    complete and the 12-class figures mean something. A folder of digits or of a few commands
    would otherwise get 36 outputs, most of them for words it never holds.
    """
    if index.kind == "gsc" or set(GSC12_WORDS) <= set(index.words):
        return "35s"
    return "auto"


def stratified_subset(entries: Sequence[ClipEntry], n: int, seed: int) -> tuple[ClipEntry, ...]:
    """A seeded subset of `n` entries with each word's share preserved (largest remainder).

    Stratified by the fine word, not the view's label, so the "35s" and "12" views of a
    source pick the same clips (and share one cache). Every word keeps at least one clip.
    """
    if len(entries) <= n:
        return tuple(entries)
    by_word: dict[str, list[int]] = defaultdict(list)
    for i, e in enumerate(entries):
        by_word[e.word].append(i)
    words = sorted(by_word)
    exact = np.array([len(by_word[w]) * n / len(entries) for w in words])
    quota = np.maximum(np.floor(exact).astype(int), 1)
    # Hand out what is left by largest remainder (ties broken by word order: deterministic).
    left = n - int(quota.sum())
    if left > 0:
        for k in np.argsort(-(exact - np.floor(exact)), kind="stable")[:left]:
            quota[k] += 1
    while left < 0:  # the one-clip minimum overshot: take back from the biggest words
        quota[int(np.argmax(quota))] -= 1
        left += 1
    chosen: list[int] = []
    for w, q in zip(words, quota):
        idx = by_word[w]
        rng = np.random.default_rng([seed, int(hashlib.sha1(w.encode()).hexdigest()[:8], 16)])
        chosen += [idx[j] for j in rng.choice(len(idx), size=min(int(q), len(idx)), replace=False)]
    return tuple(entries[i] for i in sorted(chosen))
