"""`open_source(spec)`: one interface over every data source.

Specs (combine with `+`, e.g. `synth+gsc12-dev`):

- `synth`           the embedded synthetic speech commands, built into the cache on first use
- `synth:tiny`      a seconds-to-build version for tests;  `synth:N`  N clips per word
- `gsc:PATH`        an extracted Speech Commands v0.01 / v0.02 folder
- `folder:PATH`     your own words, `PATH/<word>/*.wav` (any rate, any length)
- `gsc12-dev`, `gsc-v1-sample`, `fsdd-dev`   the real-speech sets in ../shared/data
  (`gsc12-dev` is all test under the official rule; `folder:<its path>` re-splits it by speaker)
- `PART*W`          a sampling weight: each training clip of PART is drawn W times as often as
  a clip of weight 1 (e.g. `synth:400*0.3+gsc12-dev`: real clips outweigh synthetic ones)
- `say:WORDS`, `say:N:WORDS`   synthetic speech of any comma-separated words (kws.data.custom)
- `train:PATH`      a folder per word whose every clip is training data (kws.data.custom)
- `val:PATH`        a folder per word whose every clip is validation data (kws.data.custom)
- `negatives:PATH`  every audio file under PATH as a training clip of `_unknown_` (kws.data.custom)

Relative paths are taken from the working directory, then from the repository root (so
`gsc:../shared/data/gsc12-dev` works from anywhere inside the repo).
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from kws.audio import SAMPLE_RATE, AudioError, load_audio
from kws.data.cache import DEFAULT_WORKERS, ClipSet, cache_root, open_split_cache, slug
from kws.data.folds import Fold, apply_fold
from kws.data.index import SPLITS, BadFile, ClipEntry, DataError, SourceIndex, canonical_split, concat_indexes
from kws.data.layout import index_layout
from kws.data.noise import read_segment
from kws.data.views import (DEFAULT_LABELS, FAST_TRAIN_CLIPS, LABEL_SETS, LabelsArg, LabelView, resolve_labels,
                            stratified_subset)
from kws.labels import save_labels
from kws.data.kinds import SourceSpec, register_source, source_kind, source_kinds
from kws.paths import FSDD_DEV, GSC12_DEV, GSC_V1_SAMPLE, resolve_path

SHORTCUTS: dict[str, str] = {
    "gsc12-dev": f"gsc:{GSC12_DEV}",
    "gsc-v1-sample": f"gsc:{GSC_V1_SAMPLE}",
    "fsdd-dev": f"folder:{FSDD_DEV}",
}
SYNTH_SIZES = ("default", "tiny")
SYNTH_PER_WORD = 100  # the contract's default: at least 100 clips per word
# The synthetic set is one fixed data set (seed 0). open_source's `seed` drives sampling (fast
# subset, silence cuts, random splits); tying it to the generator would rebuild the whole
# set for every training seed.
SYNTH_SEED = 0


_WEIGHT = re.compile(r"^(?P<part>.+)\*(?P<w>[0-9]*\.?[0-9]+)$")


def _split_weight(text: str) -> tuple[str, float]:
    """`PART*W` -> (PART, W); no suffix -> (text, 1.0)."""
    m = _WEIGHT.match(text)
    if not m:
        return text, 1.0
    w = float(m["w"])
    if not w > 0:
        raise DataError(f"{text!r}: a part's weight must be > 0")
    return m["part"], w


@dataclass(frozen=True)
class SourcePart:
    """One part of an opened source: its spec text, root folder, kind and sampling weight."""

    name: str
    root: str
    kind: str  # "synth" | "gsc" | "folder"
    weight: float = 1.0

    @property
    def recorded(self) -> bool:
        """Real recordings (everything but generated speech)."""
        kind = source_kind(self.kind)
        return not (kind and kind.synthetic)


def _is_part_start(text: str) -> bool:
    text = _split_weight(text)[0]
    kind = source_kind(text.partition(":")[0])
    return text in SHORTCUTS or (kind is not None and (":" in text or kind.default_arg is not None))


def parse_spec(spec: str) -> list[SourceSpec]:
    """Split `A+B` and parse each part. A `+` inside a path stays part of the path."""
    if not isinstance(spec, str) or not spec.strip():
        raise DataError(f"empty data source spec {spec!r}")
    parts: list[str] = []
    for frag in spec.strip().split("+"):
        if parts and not _is_part_start(frag.strip()):
            parts[-1] += "+" + frag  # e.g. folder:/data/a+b/words
        else:
            parts.append(frag.strip())
    out = []
    for weighted in parts:
        text, weight = _split_weight(weighted)
        full = SHORTCUTS.get(text, text)
        name, _, arg = full.partition(":")
        kind = source_kind(name)
        if kind is not None and (arg or kind.default_arg is not None):
            out.append(SourceSpec(name, arg or kind.default_arg or "", text, weight))
        else:
            usages = ", ".join(k.usage for k in source_kinds())
            raise DataError(f"unknown data source {text!r}; expected {usages}, {', '.join(SHORTCUTS)}, "
                            f"or several joined by '+'")
    return out


def _synth_root(arg: str, root: Path) -> Path:
    """Build (once) and return the synthetic data set folder for `synth[:SIZE|:PER_WORD]`."""
    if arg in SYNTH_SIZES:
        size, per_word = arg, SYNTH_PER_WORD
    elif arg.isdigit() and int(arg) > 0:
        size, per_word = "default", int(arg)
    else:
        raise DataError(f"unknown synthetic set 'synth:{arg}'; expected synth, synth:tiny or synth:<clips per word>")
    # Always ask the generator: it returns at once when its manifest matches its settings and
    # engine versions, and rebuilds when they changed (which a file-exists check would miss).
    try:
        from kws.data.synth import SYNTH_VERSION, build_synth  # lazy: TTS engines load only when needed
    except ImportError as e:
        raise DataError(f"synthetic speech generator unavailable (kws.data.synth): {e}") from None
    # The generator's version is in the folder name: two checkouts of different versions sharing
    # one cache ($KWS_CACHE) each keep their own set instead of rebuilding each other's.
    out_dir = root / "synth" / f"{size}-pw{per_word}-seed{SYNTH_SEED}-v{SYNTH_VERSION}"
    try:
        return Path(build_synth(out_dir, per_word=per_word, seed=SYNTH_SEED, size=size))
    except (OSError, RuntimeError, ValueError) as e:  # e.g. no TTS engine on this machine
        raise DataError(f"synthetic speech generation failed ({type(e).__name__}: {e})") from e


def part_name(part: SourceSpec) -> str:
    """How an index names a folder part: the shortcut it was given as, else `KIND:<folder name>`."""
    return part.text if part.text in SHORTCUTS else f"{part.kind}:{resolve_path(part.arg).name}"


@register_source("synth", usage="synth, synth:tiny, synth:N", default_arg="default", synthetic=True)
def _read_synth(part: SourceSpec, root: Path, seed: int) -> SourceIndex:
    return index_layout(_synth_root(part.arg, root), "gsc", seed, name=part.text)


@register_source("gsc", usage="gsc:PATH", refold=True)
def _read_gsc(part: SourceSpec, root: Path, seed: int) -> SourceIndex:
    return index_layout(resolve_path(part.arg), "gsc", seed, name=part_name(part))


@register_source("folder", usage="folder:PATH", refold=True)
def _read_folder(part: SourceSpec, root: Path, seed: int) -> SourceIndex:
    return index_layout(resolve_path(part.arg), "folder", seed, name=part_name(part))


from kws.data import custom  # noqa: E402,F401  (registers say:, train:, val:, negatives:; after this module's own)


def index_spec(part: SourceSpec, root: Path, seed: int) -> SourceIndex:
    kind = source_kind(part.kind)
    assert kind is not None, part  # parse_spec only makes parts of registered kinds
    return kind.read(part, root, seed)


class DataSource:
    """A data source viewed through one label set: splits as ClipSets, noise, and a summary."""

    def __init__(
        self,
        index: SourceIndex,
        labels: LabelsArg = DEFAULT_LABELS,
        fast: bool = False,
        seed: int = 0,
        cache_dir: str | Path | None = None,
        spec: str = "",
        workers: int = DEFAULT_WORKERS,
        parts: Sequence[SourcePart] = (),
    ) -> None:
        label_tuple, notes = resolve_labels(labels, index)
        self.parts = tuple(parts) or (SourcePart(index.name, index.root, index.kind, 1.0),)
        self.index = index
        self.view = LabelView(label_tuple)
        self.spec = spec or index.name
        self.fast = fast
        self.seed = seed
        self.workers = workers
        self.cache_folder = cache_root(cache_dir) / "clips" / slug(index.name)
        self._notes = list(index.notes) + notes
        self._entries = self._select(index)
        self._clipsets: dict[str, ClipSet] = {}

    def _select(self, index: SourceIndex) -> dict[str, tuple[ClipEntry, ...]]:
        """The entries of each split seen through the label view, and the fast subset."""
        entries = {s: self.view.apply(index.splits[s]) for s in SPLITS}
        kept = {e.word for s in SPLITS for e in entries[s]}
        dropped = sorted(set(index.words) - kept)
        if dropped:
            self._notes.append(f"not in the label set, dropped: {', '.join(dropped)}")
        if self.fast and len(entries["train"]) > FAST_TRAIN_CLIPS:
            entries["train"] = stratified_subset(entries["train"], FAST_TRAIN_CLIPS, self.seed)
            self._notes.append(f"fast mode: stratified {FAST_TRAIN_CLIPS}-clip training subset (seed {self.seed})")
        return entries

    # -- the contract
    @property
    def name(self) -> str:
        return self.index.name

    @property
    def root(self) -> str:
        return self.index.root

    @property
    def labels(self) -> tuple[str, ...]:
        return self.view.labels

    def entries(self, split: str) -> tuple[ClipEntry, ...]:
        """The clips of a split before decoding (bad files still included)."""
        return self._entries[canonical_split(split)]

    def split(self, split: str) -> ClipSet:
        """The decoded split ("train", "validation", "test"); decoded into the cache on first use."""
        split = canonical_split(split)
        if split not in self._clipsets:
            self._clipsets[split] = open_split_cache(
                self._entries[split], self.cache_folder, split, self.view,
                workers=self.workers, name=f"{self.name}/{split}",
            )
        return self._clipsets[split]

    def part_of(self, split: str) -> np.ndarray:
        """Index into `parts` of each clip of a split (by the part's root folder)."""
        cs = self.split(split)
        roots = sorted(((p.root.rstrip("/") + "/", i) for i, p in enumerate(self.parts)), key=lambda t: -len(t[0]))
        return np.array([next((i for r, i in roots if ref.startswith(r)), -1) for ref in cs.files], dtype=np.int64)

    def weights(self, split: str) -> np.ndarray | None:
        """Per-clip sampling weights of a split (from `PART*W` specs), or None when all are 1."""
        if all(p.weight == 1.0 for p in self.parts):
            return None
        w = np.array([p.weight for p in self.parts] + [1.0])
        return w[self.part_of(split)]

    def build(self) -> dict[str, ClipSet]:
        """Decode every split into the cache (no-op for splits already cached)."""
        return {s: self.split(s) for s in SPLITS}

    @functools.cached_property
    def noise(self) -> np.ndarray:
        """Background noise for augmentation, float32 at 16 kHz: the training part only."""
        chunks = []
        for seg in self.index.noise:
            try:
                # Whole short files (silence clips) skip the memoised loader meant for long recordings.
                whole = seg.start == 0 and seg.stop is None
                chunks.append(load_audio(seg.path, max_seconds=None) if whole else read_segment(seg))
            except AudioError:
                continue  # already listed among the bad files
        return np.concatenate(chunks).astype(np.float32, copy=False) if chunks else np.zeros(0, np.float32)

    def bad_files(self) -> list[BadFile]:
        """Every file skipped so far: broken noise recordings and clips that failed to decode."""
        seen: dict[str, BadFile] = {b.path: b for b in self.index.bad}
        for cs in self._clipsets.values():
            for b in cs.bad:
                seen.setdefault(b.path, b)
        return sorted(seen.values(), key=lambda b: b.path)

    def summary(self) -> dict:
        """Name, root, clip counts per split and per label, bad files (decodes splits not yet cached)."""
        sets = self.build()
        return {
            "name": self.name,
            "spec": self.spec,
            "root": self.root,
            "split_rule": self.index.split_rule,
            "labels": list(self.labels),
            "fast": self.fast,
            "seed": self.seed,
            "clips": {s: len(cs) for s, cs in sets.items()},
            "per_label": {s: cs.counts() for s, cs in sets.items()},
            "speakers": {s: len({spk for spk in cs.speakers if spk}) for s, cs in sets.items()},
            "bad_files": [b.to_dict() for b in self.bad_files()],
            "noise_seconds": round(len(self.noise) / SAMPLE_RATE, 2),
            "notes": list(self._notes),
            "cache": {s: str(cs.path) for s, cs in sets.items()},
        }

    def save_labels(self, folder: str | Path) -> Path:
        """Write `class_labels.json` (the model's output order) into `folder`."""
        return save_labels(self.labels, folder)

    def __repr__(self) -> str:
        return f"DataSource({self.spec!r}, labels={len(self.labels)}, fast={self.fast}, seed={self.seed})"


def open_source(
    spec: str,
    labels: LabelsArg = DEFAULT_LABELS,
    fast: bool = False,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    *,
    workers: int | None = None,
    fold: Fold | str | None = None,
) -> DataSource:
    """Open a data source by spec (see the module doc). Cheap: clips decode on first `split()`.

    labels: "35", "35s", "12" (kws.data.LABEL_SETS), a list of labels, None / "auto" for the
    source's own (folder sources of custom words always keep their sorted folder names), or
    "default": kws.data.views.DEFAULT_RULE ("35s" for Speech Commands data, else "auto").
    fast: a stratified 5,000-clip training subset. seed: fast subset, silence cuts and random
    splits. cache_dir: default $KWS_CACHE or <repo>/data_cache. fold: "K/N" re-splits every
    recorded `gsc:`/`folder:` part by speaker for cross-validation (kws.data.folds); synthetic
    parts keep their own split, and so do `train:`, `val:` and `negatives:` parts.
    """
    root = cache_root(cache_dir)
    parts = parse_spec(spec)
    indexes = [index_spec(p, root, seed) for p in parts]
    if fold:
        fold = Fold.parse(fold) if isinstance(fold, str) else fold
        fixed: dict[str, int] = {}  # one speaker, one fold, across corpora
        indexes = [apply_fold(ix, fold, seed, fixed) if source_kind(p.kind).refold else ix  # type: ignore[union-attr]
                   for p, ix in zip(parts, indexes)]
    index = concat_indexes(indexes)
    if not any(index.splits.values()):
        raise DataError(f"{spec}: no clips found")
    return DataSource(index, labels, fast, seed, cache_dir, spec=spec,
                      workers=DEFAULT_WORKERS if workers is None else workers,
                      parts=[SourcePart(p.text, ix.root, p.kind, p.weight) for p, ix in zip(parts, indexes)])


def available_shortcuts() -> list[str]:
    """The ../shared/data shortcuts whose folders exist here."""
    return [name for name, full in SHORTCUTS.items() if Path(full.partition(":")[2]).is_dir()]


def describe_labels(labels: Sequence[str]) -> str:
    """ "35s (36)" for a named set, "custom (N)" otherwise."""
    for name, tup in LABEL_SETS.items():
        if tuple(labels) == tup:
            return f"{name} ({len(tup)})"
    return f"custom ({len(labels)})"
