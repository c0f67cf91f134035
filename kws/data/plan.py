"""train.py's custom-word options (`--synth-words`, `--negatives`, `--hard-negatives`) as data parts.

`plan_custom` turns them into parts of the `--data` spec (kws.data.custom reads them) and
chooses the labels: your words, `_silence_`, `_unknown_`. The negatives are synthetic speech
of other words: the 35 Speech Commands words and the generator's filler words, less your
own, NEGATIVE_PER_WORD clips each. It sits above kws.data.source, which it opens to find
your words; the source in turn reads the parts through kws.data.custom.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from kws.data.cache import cache_root
from kws.data.custom import (HARD_NEGATIVE_WEIGHT, NEGATIVE_PER_WORD, NEGATIVE_WEIGHT, NEGATIVES, NOISE_BUILD,
                             SAY_PER_WORD, SAY_WEIGHT, WRONG_DIR, audio_files_under, build_many, say_spec)
from kws.data.index import DataError
from kws.data.source import open_source
from kws.labels import GSC_V2_WORDS, SILENCE, UNKNOWN
from kws.paths import resolve_path


@dataclass(frozen=True)
class CustomData:
    """What train.py's custom-word options made of `--data`: the full spec, labels and notes."""

    spec: str
    labels: tuple[str, ...] | str
    keywords: tuple[str, ...]
    notes: tuple[str, ...]


def negative_words(keywords: Sequence[str]) -> tuple[str, ...]:
    """Other words to learn as `_unknown_`: Speech Commands' and the generator's fillers, less yours."""
    from kws.data.synth import FILLER_WORDS

    mine = {k.lower() for k in keywords}
    return tuple(w for w in dict.fromkeys(GSC_V2_WORDS + tuple(FILLER_WORDS)) if w.lower() not in mine)


def custom_enabled(synth_words: str, negatives: str, hard_negatives: str | None) -> bool:
    return bool(synth_words) or negatives == "synth" or bool(hard_negatives)


def plan_custom(data: str, labels: str, *, synth_words: str = "", synth_per_word: int = SAY_PER_WORD,
                negatives: str = "auto", hard_negatives: str | None = None, seed: int = 0,
                cache_dir: str | Path | None = None) -> CustomData:
    """The spec and labels for `data` with synthetic words, negatives and hard negatives added.

    synth_words: "" (none), "auto" (the words of `data`) or comma-separated words (a word with
    no recording is learnt from synthetic speech alone). negatives: "synth" adds synthetic other
    words as `_unknown_`; "auto" does when synth_words is set; "none" never. hard_negatives: a
    folder of false detections, trained as `_unknown_`. Labels: `labels` when it names a set
    (it must then hold `_unknown_` for negatives), else your words + `_silence_` + `_unknown_`.
    """
    from kws.data.views import DEFAULT_LABELS, NATURAL

    if negatives not in NEGATIVES:
        raise DataError(f"negatives must be one of {', '.join(NEGATIVES)}, not {negatives!r}")
    if not custom_enabled(synth_words, negatives, hard_negatives):
        return CustomData(data, labels, (), ())
    own = open_source(data, labels="auto", seed=seed, cache_dir=cache_dir).index
    keywords = [w for w in own.words if not w.startswith("_")]
    listed: tuple[str, ...] = ()
    if synth_words and synth_words != "auto":
        listed = tuple(dict.fromkeys(w.strip() for w in synth_words.split(",") if w.strip()))
        keywords += [w for w in listed if w not in keywords]
    keywords = tuple(sorted(keywords))
    if not keywords:
        raise DataError(f"{data}: no words to learn (word folders, or --synth-words WORD,WORD)")
    parts, notes, builds = [data], [], []
    if synth_words:
        said = listed if listed else keywords
        parts.append(f"{say_spec(said, synth_per_word)}*{SAY_WEIGHT}")
        builds.append((said, synth_per_word))
        notes.append(f"synthetic speech: {synth_per_word} clips of each of {', '.join(said)}")
    if negatives == "synth" or (negatives == "auto" and synth_words):
        others = negative_words(keywords)
        parts.append(f"{say_spec(others, NEGATIVE_PER_WORD)}*{NEGATIVE_WEIGHT}")
        builds.append((others, NEGATIVE_PER_WORD))
        notes.append(f"negatives: {NEGATIVE_PER_WORD} synthetic clips of each of {len(others)} other words, "
                     f"as {UNKNOWN}")
    build_many(builds + [(NOISE_BUILD, 1)], cache_root(cache_dir))  # in parallel, before the parts are indexed
    if hard_negatives:
        check_hard_negatives(Path(hard_negatives))
        parts.append(f"negatives:{hard_negatives}*{HARD_NEGATIVE_WEIGHT}")
        notes.append(f"hard negatives: every clip under {hard_negatives}, as {UNKNOWN}")
    if labels in (DEFAULT_LABELS, *NATURAL):
        chosen: tuple[str, ...] | str = keywords + (SILENCE, UNKNOWN)
    else:
        chosen = labels
    return CustomData("+".join(parts), chosen, keywords, tuple(notes))


def check_hard_negatives(folder: Path) -> None:
    """Refuse a saved-detections folder that mixes unmarked detections with the ones marked wrong.

    The GUI's "wrong" button moves a detection into `<folder>/wrong/`; training on `<folder>`
    itself would teach every correct detection as `_unknown_` too.
    """
    path = resolve_path(str(folder))
    wrong = path / WRONG_DIR
    if wrong.is_dir() and any(p.parent != wrong and wrong not in p.parents for p in audio_files_under(path)):
        raise DataError(f"{path}: holds detections and, in {WRONG_DIR}/, the ones marked wrong; pass "
                        f"--hard-negatives {wrong} to train on the false ones only")

