"""Adding a data source is one reader and one registry entry: a kind registered here opens like any other."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from kws.data import DataError, open_source, parse_spec
from kws.data.kinds import SourceSpec, _KINDS, register_source, source_kinds
from kws.data.layout import index_layout
from tests._tone_words import write_tone_words


@pytest.fixture
def reversed_kind():
    """`rev:PATH`: a folder of words, each clip labelled by its folder name spelled backwards."""

    @register_source("rev", usage="rev:PATH", refold=True)
    def read(part: SourceSpec, root: Path, seed: int):
        index = index_layout(Path(part.arg), "folder", seed, name=f"rev:{Path(part.arg).name}")
        splits = {s: tuple(dataclasses.replace(e, word=e.word[::-1]) for e in es) for s, es in index.splits.items()}
        return dataclasses.replace(index, splits=splits, natural_labels=tuple(w[::-1] for w in index.natural_labels))

    yield read
    _KINDS.pop("rev")


def test_a_registered_kind_parses_opens_and_combines(reversed_kind, tmp_path):
    words = write_tone_words(tmp_path / "w", ["abc", "xyz"], [f"s{i}_0" for i in range(10)], 400.0)
    assert parse_spec(f"rev:{words}*2") == [SourceSpec("rev", str(words), f"rev:{words}", 2.0)]
    src = open_source(f"rev:{words}", labels="auto", cache_dir=tmp_path / "cache")
    assert set(src.labels) >= {"cba", "zyx"}
    train = src.split("train")
    assert len(train) > 0 and {src.labels[int(y)] for y in train.y} <= {"cba", "zyx", "_silence_", "_unknown_"}
    assert any(k.name == "rev" for k in source_kinds())
    with pytest.raises(DataError, match=r"rev:PATH"):  # the error lists every registered kind
        parse_spec("nope:1")


def test_a_kind_registers_once(reversed_kind):
    with pytest.raises(ValueError, match="registered twice"):
        register_source("rev", usage="rev:PATH")(reversed_kind)
