"""timm-style model registry: @register_model, create_model(), list_models().

A model file (checkpoint, ONNX) names its model and carries its constructor arguments, and
those are data from outside: only the arguments its family declares here
(`@register_model(file_kwargs=...)`, each a number in a range) are ever passed on. Never a
path, a hub switch (`checkpoint_path`, `pretrained`, `pretrained_cfg`) or anything else.
"""
from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from torch import nn

DEFAULT_BACKBONE = "efficientnet_b0"  # the trainer's default model, and the default before any weights ship
_MODELS: dict[str, Callable[..., nn.Module]] = {}
_FILE_KWARGS: dict[str, Mapping[str, "FileKwarg"]] = {}
_REQUIRES: dict[str, Callable[[], None]] = {}


@dataclass(frozen=True)
class FileKwarg:
    """A constructor argument a model file may carry: a number of `kind` in [lo, hi]."""

    kind: type  # float or int
    lo: float
    hi: float

    def check(self, name: str, value: Any) -> int | float:
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if self.kind is int and not isinstance(value, int):
            number = False
        if not number or not math.isfinite(value) or not self.lo <= value <= self.hi:
            raise ValueError(f"constructor argument {name}={value!r}: expected {self.kind.__name__} in "
                             f"[{self.lo:g}, {self.hi:g}]")
        return self.kind(value)


def register_model(fn: Callable[..., nn.Module] | None = None, *,
                   file_kwargs: Mapping[str, FileKwarg] | None = None,
                   requires: Callable[[], None] | None = None):
    """Register a model constructor under its function name: `@register_model` or
    `@register_model(file_kwargs={...})` with the constructor arguments a file may carry.
    `requires` checks, cheaply, what the constructor will need from outside (pretrained files)
    and raises with the fix, so a trainer can fail before it spends minutes decoding data."""

    def add(f: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        name = f.__name__
        if name in _MODELS:
            raise ValueError(f"model {name!r} is registered twice")
        _MODELS[name] = f
        _FILE_KWARGS[name] = dict(file_kwargs or {})
        if requires is not None:
            _REQUIRES[name] = requires
        return f

    return add(fn) if fn is not None else add


def file_kwargs(name: str) -> Mapping[str, FileKwarg]:
    """The constructor arguments a file may carry for model `name` (none for most families)."""
    return _FILE_KWARGS.get(name, {})


def check_file_kwargs(name: str, kwargs: Any) -> dict[str, int | float]:
    """`kwargs` read from a file, checked against what `name` accepts; ValueError says what is wrong."""
    if not isinstance(kwargs, dict):
        raise ValueError(f"constructor arguments must be a mapping, got {type(kwargs).__name__}")
    allowed = file_kwargs(name)
    refused = sorted(str(k) for k in kwargs if k not in allowed)
    if refused:
        raise ValueError(f"constructor arguments {refused} are not accepted from a file for {name} "
                         f"(accepted: {', '.join(sorted(allowed)) or 'none'})")
    return {k: allowed[k].check(k, v) for k, v in kwargs.items()}


def check_requirements(name: str) -> None:
    """Raise (ValueError for an unknown name, the model's own error otherwise) if `name` cannot be built."""
    model_entrypoint(name)
    if name in _REQUIRES:
        _REQUIRES[name]()


def list_models(pattern: str = "*") -> list[str]:
    return sorted(n for n in _MODELS if fnmatch.fnmatch(n, pattern))


def is_model(name: str) -> bool:
    return name in _MODELS


def model_entrypoint(name: str) -> Callable[..., nn.Module]:
    try:
        return _MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; registered: {', '.join(list_models())}") from None
