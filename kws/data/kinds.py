"""The kinds of data-source part a spec can name (`KIND` or `KIND:ARG`), each registered once with its reader.

Adding a data source is one module and one import line: a reader decorated
`@register_source("mykind")` that turns the part into a `SourceIndex` (files, words, speakers,
splits), and the module's import in kws.data.source. Parsing specs, the error for an unknown
kind, cross-validation folds and the synthetic/recorded distinction all read this registry.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from kws.data.index import SourceIndex


@dataclass(frozen=True)
class SourceSpec:
    """One parsed part of a spec: its registered kind, its argument, the text it was written as."""

    kind: str
    arg: str
    text: str
    weight: float = 1.0  # training sampling weight of each clip of this part


Reader = Callable[[SourceSpec, Path, int], SourceIndex]  # (part, cache root, seed) -> its index


@dataclass(frozen=True)
class SourceKind:
    name: str
    read: Reader
    usage: str  # how a spec writes it, for the error that lists every kind
    default_arg: str | None = None  # the argument when the spec gives none; None: an argument is required
    synthetic: bool = False  # generated speech: no recorded speaker to cross-validate by
    refold: bool = False  # re-split by speaker under --fold (a part whose split is fixed keeps it)


_KINDS: dict[str, SourceKind] = {}


def register_source(name: str, *, usage: str, default_arg: str | None = None, synthetic: bool = False,
                    refold: bool = False) -> Callable[[Reader], Reader]:
    def add(read: Reader) -> Reader:
        if name in _KINDS:
            raise ValueError(f"data source kind {name!r} is registered twice")
        _KINDS[name] = SourceKind(name, read, usage, default_arg, synthetic, refold)
        return read

    return add


def source_kind(name: str) -> SourceKind | None:
    return _KINDS.get(name)


def source_kinds() -> tuple[SourceKind, ...]:
    return tuple(_KINDS.values())
