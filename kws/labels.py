"""Label sets. The order of a label list is the order of the model's outputs."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from kws.fsutil import atomic_write_text, read_json

# Speech Commands v0.02: 35 words, in the dataset's alphabetical order.
GSC_V2_WORDS: tuple[str, ...] = (
    "backward", "bed", "bird", "cat", "dog", "down", "eight", "five", "follow", "forward",
    "four", "go", "happy", "house", "learn", "left", "marvin", "nine", "no", "off", "on",
    "one", "right", "seven", "sheila", "six", "stop", "three", "tree", "two", "up",
    "visual", "wow", "yes", "zero",
)
# v0.01 lacks the five words added in v0.02.
GSC_V1_WORDS: tuple[str, ...] = tuple(
    w for w in GSC_V2_WORDS if w not in ("backward", "follow", "forward", "learn", "visual")
)
# The standard 12-class task (Warden 2018, section 6).
GSC12_WORDS: tuple[str, ...] = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
SILENCE = "_silence_"
UNKNOWN = "_unknown_"
BACKGROUND_NOISE_DIR = "_background_noise_"
GSC12_LABELS: tuple[str, ...] = GSC12_WORDS + (SILENCE, UNKNOWN)

LABELS_FILE = "class_labels.json"
MAX_LABELS = 1000  # a classifier head over more is not a keyword spotter (and a file must not size one)


def valid_labels(labels: object) -> bool:
    """Whether `labels`, read from a file (a checkpoint's config, an ONNX file's metadata), is a model's
    output labels: a list of 2-MAX_LABELS distinct non-empty strings (one string is not a list of letters)."""
    return (isinstance(labels, (list, tuple)) and 2 <= len(labels) <= MAX_LABELS
            and all(isinstance(x, str) and x for x in labels) and len(set(labels)) == len(labels))


def to_12class(word: str) -> str:
    """Map a 35-class (or silence) label to the 12-class task."""
    if word == SILENCE or word in GSC12_WORDS:
        return word
    return UNKNOWN


def has_12class_words(words: Iterable[str]) -> bool:
    """True when `words`, the words a data set's clips actually hold, include a word of the 12-class task.

    Only then does a 12-class figure say anything: on clips without any of the ten words (a
    folder of digits viewed through "35s") every clip maps to `_unknown_`, and a model that
    always answers "unknown" scores 100 %.
    """
    return not set(GSC12_WORDS).isdisjoint(words)


def save_labels(labels: list[str] | tuple[str, ...], folder: str | Path) -> Path:
    path = Path(folder) / LABELS_FILE
    atomic_write_text(path, json.dumps(list(labels), indent=1) + "\n")
    return path


def load_labels(path: str | Path) -> list[str]:
    path = Path(path)
    if path.is_dir():
        path = path / LABELS_FILE
    labels = read_json(path, "label file")
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels) or not labels:
        raise ValueError(f"{path}: expected a non-empty JSON list of strings")
    if len(set(labels)) != len(labels):
        raise ValueError(f"{path}: duplicate labels")
    return labels
